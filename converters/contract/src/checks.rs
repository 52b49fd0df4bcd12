//! `checks.json`: the spec's `tests:` as the frontend writes them into the build graph and
//! `nodestamp verify` reads them. Each check keeps its key path (`tests.files[2]`) and its spec
//! location (`node.yaml:40:7`), so a failure is reported in the user's terms.

use serde::{Deserialize, Serialize};

/// The file's name in the layer `--target test` writes it to.
pub const CHECKS_FILE_NAME: &str = "checks.json";

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChecksFile {
    pub checks: Vec<Check>,
}

/// One check: where it comes from, and what it checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// The key path in the spec: `tests.files[2]`.
    pub key: String,
    /// The spec location: `node.yaml:40:7`.
    pub at: String,
    #[serde(flatten)]
    pub kind: CheckKind,
}

/// What a check checks. Serialized with a `kind` field: `file`, `package`, `service`,
/// `kernel_argument`, `command`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum CheckKind {
    /// A path exists (or not), with a mode, an owner (`user` or `user:group`) and contents.
    File {
        path: String,
        exists: bool,
        mode: Option<u32>,
        owner: Option<String>,
        contains: Option<String>,
    },
    /// A package is installed (or not); `version` exact, or a prefix ending in `*`.
    Package {
        name: String,
        installed: bool,
        version: Option<String>,
    },
    /// A unit is enabled and/or masked (or not).
    Service {
        name: String,
        enabled: Option<bool>,
        masked: Option<bool>,
    },
    /// The kernel command line holds this whole argument.
    KernelArgument { contains: String },
    /// The `index`th command of `tests.commands` (its results are `<index>.rc/.out/.err`).
    Command {
        index: usize,
        run: String,
        exit_status: i32,
        stdout_contains: Option<String>,
        stderr_contains: Option<String>,
    },
    /// A preloaded image (normalised reference) is in the node, with this digest when given.
    Image {
        reference: String,
        digest: Option<String>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_round_trip_with_a_kind_field() {
        let file = ChecksFile {
            checks: vec![
                Check {
                    key: "tests.files[0]".into(),
                    at: "node.yaml:6:7".into(),
                    kind: CheckKind::File {
                        path: "/etc/hostname".into(),
                        exists: true,
                        mode: Some(0o644),
                        owner: None,
                        contains: None,
                    },
                },
                Check {
                    key: "tests.kernel_arguments[0]".into(),
                    at: "node.yaml:9:7".into(),
                    kind: CheckKind::KernelArgument {
                        contains: "console=ttyS0".into(),
                    },
                },
            ],
        };
        let text = serde_json::to_string(&file).unwrap();
        assert!(text.contains(r#""kind":"file""#), "{text}");
        assert!(text.contains(r#""kind":"kernel_argument""#), "{text}");
        assert_eq!(serde_json::from_str::<ChecksFile>(&text).unwrap(), file);
    }

    #[test]
    fn unknown_kinds_and_misspelled_fields_are_errors() {
        let unknown = r#"{"checks":[{"key":"k","at":"a","kind":"socket","name":"x"}]}"#;
        let e = serde_json::from_str::<ChecksFile>(unknown).unwrap_err();
        assert!(e.to_string().contains("unknown variant `socket`"), "{e}");
        let missing = r#"{"checks":[{"key":"k","at":"a","kind":"package","name":"x"}]}"#;
        let e = serde_json::from_str::<ChecksFile>(missing).unwrap_err();
        assert!(e.to_string().contains("missing field `installed`"), "{e}");
    }
}
