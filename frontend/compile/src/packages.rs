//! Package databases: which packages a rootfs has installed, read from the package manager's
//! own files (nothing is executed). Used by `nodestamp provenance-packages` (packages.json of
//! the provenance, run on the OS layer) and `nodestamp verify`'s package checks.

use serde_json::{Value, json};

/// One installed package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    pub name: String,
    pub version: String,
    pub architecture: String,
}

/// A rootfs's package manager and, when its database can be read, the installed packages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageDb {
    /// `dpkg`, `apk`, `rpm` or `none`.
    pub manager: String,
    /// `None` when the database is not read (RPM's is sqlite) or there is none.
    pub installed: Option<Vec<Package>>,
}

/// Reads the installed packages out of a database file's text.
pub type Parser = fn(&str) -> Vec<Package>;

/// Where each readable database lives, relative to the rootfs, with its parser.
pub const READABLE: &[(&str, &str, Parser)] = &[
    ("dpkg", "var/lib/dpkg/status", parse_dpkg_status),
    ("apk", "lib/apk/db/installed", parse_apk_installed),
];

/// Directories whose presence marks an RPM system (its sqlite database is not read).
pub const RPM_DIRS: &[&str] = &["usr/lib/sysimage/rpm", "var/lib/rpm"];

impl PackageDb {
    /// No package manager found.
    pub fn none() -> Self {
        PackageDb {
            manager: "none".into(),
            installed: None,
        }
    }

    /// Parses the database of `manager` (one of [`READABLE`]).
    pub fn parse(manager: &str, text: &str) -> Option<Self> {
        READABLE
            .iter()
            .find(|(m, _, _)| *m == manager)
            .map(|(m, _, parse)| PackageDb {
                manager: (*m).into(),
                installed: Some(parse(text)),
            })
    }

    /// The `packages` object of `build.json`.
    pub fn to_json(&self) -> Value {
        json!({
            "manager": self.manager,
            "installed": self.installed.as_ref().map(|ps| ps.iter().map(|p| json!({
                "name": p.name, "version": p.version, "architecture": p.architecture,
            })).collect::<Vec<_>>()),
        })
    }
}

/// Installed packages from a dpkg `status` file (`Status: install ok installed` only).
pub fn parse_dpkg_status(text: &str) -> Vec<Package> {
    let mut out = Vec::new();
    for stanza in text.split("\n\n") {
        let (mut name, mut version, mut arch, mut installed) = (None, None, None, false);
        for line in stanza.lines() {
            if let Some((k, v)) = line.split_once(':') {
                let v = v.trim();
                match k {
                    "Package" => name = Some(v.to_string()),
                    "Version" => version = Some(v.to_string()),
                    "Architecture" => arch = Some(v.to_string()),
                    "Status" => installed = v.ends_with(" installed"),
                    _ => {}
                }
            }
        }
        if let (Some(name), Some(version), true) = (name, version, installed) {
            out.push(Package {
                name,
                version,
                architecture: arch.unwrap_or_default(),
            });
        }
    }
    out.sort_by(|a, b| (&a.name, &a.architecture).cmp(&(&b.name, &b.architecture)));
    out
}

/// Installed packages from an apk `installed` database (`P:` name, `V:` version, `A:` arch).
pub fn parse_apk_installed(text: &str) -> Vec<Package> {
    let mut out = Vec::new();
    for stanza in text.split("\n\n") {
        let (mut name, mut version, mut arch) = (None, None, String::new());
        for line in stanza.lines() {
            match line.split_at_checked(2) {
                Some(("P:", v)) => name = Some(v.to_string()),
                Some(("V:", v)) => version = Some(v.to_string()),
                Some(("A:", v)) => arch = v.to_string(),
                _ => {}
            }
        }
        if let (Some(name), Some(version)) = (name, version) {
            out.push(Package {
                name,
                version,
                architecture: arch,
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Package: jq\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1.6-2.1\n\nPackage: gone\nStatus: deinstall ok config-files\nVersion: 1\n\nPackage: bash\nStatus: install ok installed\nArchitecture: amd64\nVersion: 5.2.15-2+b7\nDescription: x\n multi: line\n";

    #[test]
    fn dpkg_status_lists_installed_packages_sorted() {
        let ps = parse_dpkg_status(STATUS);
        let names: Vec<_> = ps
            .iter()
            .map(|p| (p.name.as_str(), p.version.as_str()))
            .collect();
        assert_eq!(names, [("bash", "5.2.15-2+b7"), ("jq", "1.6-2.1")]);
    }

    #[test]
    fn apk_database_is_read() {
        let ps = parse_apk_installed(
            "P:musl\nV:1.2.5-r0\nA:x86_64\n\nP:busybox\nV:1.36.1-r29\nA:x86_64\n",
        );
        assert_eq!(ps[0].name, "busybox");
        assert_eq!(ps[1].version, "1.2.5-r0");
    }

    #[test]
    fn json_lists_packages_or_null() {
        let db = PackageDb::parse("dpkg", STATUS).unwrap();
        let v = db.to_json();
        assert_eq!(v["manager"], "dpkg");
        assert_eq!(v["installed"][1]["name"], "jq");
        assert_eq!(v["installed"][1]["architecture"], "amd64");
        assert_eq!(PackageDb::none().to_json()["installed"], Value::Null);
        assert!(PackageDb::parse("rpm", "").is_none());
    }
}
