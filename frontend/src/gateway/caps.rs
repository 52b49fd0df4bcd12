//! Capabilities announced by the engine in its Ping reply.

use std::collections::BTreeMap;

use crate::proto::moby::buildkit::v1::apicaps::ApiCap;

/// The engine's capabilities: LLB caps (what a definition may use, e.g. `mergeop`) and gateway
/// API caps (what calls and fields the frontend may use, e.g. `frontend.inputs`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Caps {
    llb: BTreeMap<String, CapState>,
    frontend: BTreeMap<String, CapState>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct CapState {
    enabled: bool,
    disabled_reason: String,
}

impl Caps {
    /// From the two cap lists of a Ping reply.
    pub fn new(llb: &[ApiCap], frontend: &[ApiCap]) -> Self {
        fn index(caps: &[ApiCap]) -> BTreeMap<String, CapState> {
            caps.iter()
                .map(|c| {
                    let reason = if c.disabled_reason_msg.is_empty() {
                        c.disabled_reason.clone()
                    } else {
                        c.disabled_reason_msg.clone()
                    };
                    let state = CapState {
                        enabled: c.enabled,
                        disabled_reason: reason,
                    };
                    (c.id.clone(), state)
                })
                .collect()
        }
        Caps {
            llb: index(llb),
            frontend: index(frontend),
        }
    }

    /// Caps from plain lists of enabled ids (for tests and offline compilation).
    pub fn from_enabled<'a>(
        llb: impl IntoIterator<Item = &'a str>,
        frontend: impl IntoIterator<Item = &'a str>,
    ) -> Self {
        let on = |id: &str| {
            let state = CapState {
                enabled: true,
                ..CapState::default()
            };
            (id.to_owned(), state)
        };
        Caps {
            llb: llb.into_iter().map(on).collect(),
            frontend: frontend.into_iter().map(on).collect(),
        }
    }

    /// Whether the LLB cap `id` (e.g. `mergeop`, `file.symlink.create`) is present and enabled.
    pub fn has_llb(&self, id: &str) -> bool {
        self.llb.get(id).is_some_and(|c| c.enabled)
    }

    /// Whether the gateway API cap `id` (e.g. `frontend.inputs`) is present and enabled.
    pub fn has_frontend(&self, id: &str) -> bool {
        self.frontend.get(id).is_some_and(|c| c.enabled)
    }

    /// The enabled LLB cap ids, sorted.
    pub fn llb_enabled(&self) -> impl Iterator<Item = &str> {
        self.llb
            .iter()
            .filter(|(_, c)| c.enabled)
            .map(|(id, _)| id.as_str())
    }

    /// The enabled gateway API cap ids, sorted.
    pub fn frontend_enabled(&self) -> impl Iterator<Item = &str> {
        self.frontend
            .iter()
            .filter(|(_, c)| c.enabled)
            .map(|(id, _)| id.as_str())
    }

    /// Fails with an explanation for the first LLB cap in `ids` that is absent or disabled.
    pub fn require_caps(&self, ids: &[&str]) -> Result<(), MissingCapError> {
        for id in ids {
            if !self.has_llb(id) {
                let engine_reason = self
                    .llb
                    .get(*id)
                    .map(|c| c.disabled_reason.clone())
                    .filter(|r| !r.is_empty());
                return Err(MissingCapError {
                    cap: (*id).to_owned(),
                    engine_reason,
                });
            }
        }
        Ok(())
    }
}

/// An LLB capability nodestamp needs is missing from the engine.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.explain())]
pub struct MissingCapError {
    /// The cap id, e.g. `mergeop`.
    pub cap: String,
    /// The engine's own reason when it knows the cap but has it disabled.
    pub engine_reason: Option<String>,
}

impl MissingCapError {
    fn explain(&self) -> String {
        let (name, need, remedy) = match self.cap.as_str() {
            "mergeop" => (
                "MergeOp",
                "to join the OS and Kubernetes layers",
                "use Docker Engine ≥ 26 with the containerd snapshotter \
                 (\"features\":{\"containerd-snapshotter\":true}) or BuildKit ≥ 0.10",
            ),
            "diffop" => (
                "DiffOp",
                "to take the difference between two filesystem states",
                "use Docker Engine ≥ 26 with the containerd snapshotter \
                 (\"features\":{\"containerd-snapshotter\":true}) or BuildKit ≥ 0.10",
            ),
            "file.symlink.create" => (
                "FileOp symlink",
                "to create symbolic links without running a command",
                "use BuildKit ≥ 0.19",
            ),
            _ => ("", "", "use a newer BuildKit"),
        };
        let mut msg = format!(
            "this BuildKit engine lacks the LLB capability {:?}",
            self.cap
        );
        if !name.is_empty() {
            msg.push_str(&format!(" ({name}), which nodestamp needs {need}"));
        } else {
            msg.push_str(", which nodestamp needs");
        }
        msg.push_str("; ");
        msg.push_str(remedy);
        if let Some(reason) = &self.engine_reason {
            msg.push_str(&format!(" (the engine says: {reason})"));
        }
        msg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cap(id: &str, enabled: bool, reason: &str) -> ApiCap {
        ApiCap {
            id: id.into(),
            enabled,
            disabled_reason_msg: reason.into(),
            ..ApiCap::default()
        }
    }

    #[test]
    fn require_caps_accepts_enabled_caps() {
        let caps = Caps::new(&[cap("mergeop", true, ""), cap("diffop", true, "")], &[]);
        assert!(caps.require_caps(&["mergeop", "diffop"]).is_ok());
        assert_eq!(
            caps.llb_enabled().collect::<Vec<_>>(),
            ["diffop", "mergeop"]
        );
    }

    #[test]
    fn missing_mergeop_explains_the_remedy() {
        let caps = Caps::new(&[cap("diffop", true, "")], &[cap("mergeop", true, "")]);
        let err = caps.require_caps(&["mergeop"]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "this BuildKit engine lacks the LLB capability \"mergeop\" (MergeOp), which nodestamp \
             needs to join the OS and Kubernetes layers; use Docker Engine ≥ 26 with the \
             containerd snapshotter (\"features\":{\"containerd-snapshotter\":true}) or \
             BuildKit ≥ 0.10"
        );
    }

    #[test]
    fn disabled_cap_carries_the_engine_reason() {
        let caps = Caps::new(&[cap("mergeop", false, "snapshotter cannot merge")], &[]);
        let err = caps.require_caps(&["mergeop"]).unwrap_err();
        assert!(!caps.has_llb("mergeop"));
        assert!(
            err.to_string()
                .ends_with("(the engine says: snapshotter cannot merge)"),
            "{err}"
        );
    }
}
