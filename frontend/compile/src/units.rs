//! What `systemctl enable` would do for a unit whose contents nodestamp knows: read the
//! `[Install]` section and derive the links, so the Kubernetes layer can carry them without
//! running systemctl against the OS.

/// `(directory suffix, target unit)` pairs from `[Install]`: `WantedBy=a b` → `("wants", a)`,
/// `RequiredBy=` → `("requires", …)`, `UpheldBy=` → `("upholds", …)`, plus `Alias=` names as
/// `("alias", name)`.
pub fn install_targets(contents: &str) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let mut in_install = false;
    for line in contents.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
            continue;
        }
        if line.starts_with('[') {
            in_install = line == "[Install]";
            continue;
        }
        if !in_install {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let kind = match key.trim() {
            "WantedBy" => "wants",
            "RequiredBy" => "requires",
            "UpheldBy" => "upholds",
            "Alias" => "alias",
            _ => continue,
        };
        out.extend(value.split_whitespace().map(|v| (kind, v.to_string())));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_install_section_only() {
        let unit = "[Unit]\nWantedBy=not-here.target\n[Service]\nExecStart=/bin/true\n\n[Install]\n# comment\nWantedBy=multi-user.target  graphical.target\nRequiredBy=x.service\nAlias=y.service\n";
        assert_eq!(
            install_targets(unit),
            [
                ("wants", "multi-user.target".to_string()),
                ("wants", "graphical.target".to_string()),
                ("requires", "x.service".to_string()),
                ("alias", "y.service".to_string())
            ]
        );
        assert!(install_targets("[Service]\nExecStart=/bin/true\n").is_empty());
    }
}
