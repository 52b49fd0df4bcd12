//! `systemd:` (in `os:` and `kubernetes:`): units and drop-ins.

use serde::Serialize;

use super::*;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Systemd {
    pub units: Vec<Unit>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Unit {
    pub span: Span,
    pub name: String,
    pub enabled: Option<bool>,
    pub mask: bool,
    pub contents: Option<String>,
    pub dropins: Vec<Dropin>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Dropin {
    pub span: Span,
    /// `*.conf`.
    pub name: String,
    pub contents: String,
}

const SYSTEMD: &[&str] = &["units"];
const UNIT: &[&str] = &["name", "enabled", "mask", "contents", "dropins"];
const DROPIN: &[&str] = &["name", "contents"];

impl Cx<'_> {
    pub(super) fn systemd(&mut self, node: &Node, path: &str, layer: Layer) -> Systemd {
        let mut sd = Systemd::default();
        let Some(f) = self.map(node, path, SYSTEMD) else {
            return sd;
        };
        for (i, n) in self.list(&f, "units").iter().enumerate() {
            sd.units
                .push(self.unit(n, &index(&f.path("units"), i), layer));
        }
        sd
    }

    pub(super) fn unit(&mut self, node: &Node, path: &str, layer: Layer) -> Unit {
        let mut unit = Unit {
            span: node.span,
            ..Unit::default()
        };
        let Some(f) = self.map(node, path, UNIT) else {
            return unit;
        };
        let name = self.required(
            &f,
            "name",
            "a unit name like kubelet.service",
            check::unit_name,
        );
        unit.enabled = self.bool(&f, "enabled");
        unit.mask = self.bool(&f, "mask").unwrap_or(false);
        unit.contents = f
            .get("contents")
            .and_then(|n| self.text(n, &f.path("contents"), "the unit file's text"))
            .map(|t| t.value);
        let dpath = f.path("dropins");
        let mut seen: HashMap<String, u32> = HashMap::new();
        for (i, n) in self.list(&f, "dropins").iter().enumerate() {
            let ipath = index(&dpath, i);
            let Some(df) = self.map(n, &ipath, DROPIN) else {
                continue;
            };
            let dname = self.required(
                &df,
                "name",
                "a file name like 10-override.conf",
                check::dropin_name,
            );
            let contents = df
                .get("contents")
                .and_then(|c| self.text(c, &df.path("contents"), "the drop-in's text"))
                .map(|t| t.value)
                .unwrap_or_default();
            if let Some(d) = &dname {
                if let Some(line) = seen.get(&d.value) {
                    self.error(
                        &df.path("name"),
                        d.span,
                        format!("drop-in `{}` is already defined on line {line}", d.value),
                    );
                } else {
                    seen.insert(d.value.clone(), d.span.start.line);
                }
            }
            unit.dropins.push(Dropin {
                span: n.span,
                name: dname.map(|d| d.value).unwrap_or_default(),
                contents,
            });
        }
        if unit.mask && unit.enabled == Some(true) {
            self.error_help(
                path,
                f.key_span("mask").unwrap_or(node.span),
                "a unit cannot be both masked and enabled",
                "remove `enabled: true` or `mask: true`",
            );
        }
        if unit.mask && unit.contents.is_some() {
            self.error_help(
                path,
                f.key_span("mask").unwrap_or(node.span),
                "a masked unit cannot have contents: masking replaces the unit file with a link to /dev/null",
                "remove `contents` or `mask: true`",
            );
        }
        if let Some(name) = name {
            if unit.contents.is_none()
                && unit.enabled.is_none()
                && !unit.mask
                && unit.dropins.is_empty()
            {
                self.warn(
                    "UnitWithoutEffect",
                    path,
                    name.span,
                    Problem::new(format!(
                        "unit `{}` has no contents, drop-ins, `enabled` or `mask`, so this entry does nothing",
                        name.value
                    )),
                );
            }
            self.units.push(UnitEntry {
                name: name.value.clone(),
                span: name.span,
                key_path: path.to_owned(),
                has_contents: unit.contents.is_some(),
                enabled: unit.enabled == Some(true),
                layer,
            });
            unit.name = name.value;
        }
        unit
    }
}
