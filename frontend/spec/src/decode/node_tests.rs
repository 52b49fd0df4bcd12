//! Decoding of the `tests:` section (strict, every problem reported with its span).

use super::super::node_tests::{
    CommandTest, FileTest, ImageTest, KernelArgTest, PackageTest, ServiceTest, Tests,
};
use super::check::{self, Check, Problem, Shown};
use super::yaml::Node;
use super::{Cx, index};

const TESTS: &[&str] = &[
    "files",
    "packages",
    "services",
    "kernel_arguments",
    "commands",
    "images",
];
const FILE_TEST: &[&str] = &["path", "exists", "mode", "owner", "contains"];
const PACKAGE_TEST: &[&str] = &["name", "installed", "version"];
const SERVICE_TEST: &[&str] = &["name", "enabled", "masked"];
const KARG_TEST: &[&str] = &["contains"];
const IMAGE_TEST: &[&str] = &["ref", "digest"];
const COMMAND_TEST: &[&str] = &["run", "exit_status", "stdout_contains", "stderr_contains"];

/// An image digest: `sha256:` and 64 lowercase hex digits.
fn image_digest(s: &str) -> Check {
    match s.strip_prefix("sha256:") {
        Some(hex) if check::sha256(hex).is_ok() => Ok(()),
        _ => Err(Problem::new(format!(
            "expected an image digest `sha256:` followed by 64 lowercase hex digits, got {}",
            Shown(s)
        ))),
    }
}

/// `user` or `user:group`, each a name or a numeric id.
fn owner(s: &str) -> Check {
    let mut parts = s.splitn(2, ':');
    for p in [parts.next(), parts.next()].into_iter().flatten() {
        if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        check::account_name(p).map_err(|_| {
            Problem::new(format!(
                "expected `user` or `user:group` (names or numeric ids), got {}",
                Shown(s)
            ))
        })?;
    }
    Ok(())
}

impl Cx<'_> {
    pub(super) fn tests(&mut self, node: &Node) -> Tests {
        let mut t = Tests {
            span: node.span,
            ..Tests::default()
        };
        let Some(f) = self.map(node, "tests", TESTS) else {
            return t;
        };
        let p = f.path("files");
        for (i, n) in self.list(&f, "files").iter().enumerate() {
            let path = index(&p, i);
            let Some(m) = self.map(n, &path, FILE_TEST) else {
                continue;
            };
            let fpath = self.required(&m, "path", "an absolute path", check::abs_path);
            let exists = self.bool(&m, "exists").unwrap_or(true);
            let mode = self.mode(&m, "mode");
            let own = self.field(&m, "owner", "`user` or `user:group`", owner);
            let contains = self.field(&m, "contains", "text the file holds", check::non_empty);
            if !exists && (mode.is_some() || own.is_some() || contains.is_some()) {
                self.error(
                    &path,
                    m.key_span("exists").unwrap_or(n.span),
                    "`exists: false` cannot be combined with mode, owner or contains",
                );
                continue;
            }
            if let Some(fp) = fpath {
                t.files.push(FileTest {
                    span: n.span,
                    path: fp.value,
                    exists,
                    mode,
                    owner: own.map(|o| o.value),
                    contains: contains.map(|c| c.value),
                });
            }
        }
        let p = f.path("packages");
        for (i, n) in self.list(&f, "packages").iter().enumerate() {
            let path = index(&p, i);
            let Some(m) = self.map(n, &path, PACKAGE_TEST) else {
                continue;
            };
            let name = self.required(&m, "name", "a package name", check::package);
            let installed = self.bool(&m, "installed").unwrap_or(true);
            let version = self.field(&m, "version", "a version", check::one_line);
            if !installed && version.is_some() {
                self.error(
                    &path,
                    m.key_span("version").unwrap_or(n.span),
                    "`installed: false` cannot be combined with version",
                );
                continue;
            }
            if let Some(name) = name {
                t.packages.push(PackageTest {
                    span: n.span,
                    name: name.value,
                    installed,
                    version: version.map(|v| v.value),
                });
            }
        }
        let p = f.path("services");
        for (i, n) in self.list(&f, "services").iter().enumerate() {
            let path = index(&p, i);
            let Some(m) = self.map(n, &path, SERVICE_TEST) else {
                continue;
            };
            let name = self.required(
                &m,
                "name",
                "a unit name like kubelet.service",
                check::unit_name,
            );
            let enabled = self.bool(&m, "enabled");
            let masked = self.bool(&m, "masked");
            if enabled.is_none() && masked.is_none() {
                self.error(
                    &path,
                    n.span,
                    "a service check needs `enabled` or `masked` (true or false)",
                );
                continue;
            }
            if let Some(name) = name {
                t.services.push(ServiceTest {
                    span: n.span,
                    name: name.value,
                    enabled,
                    masked,
                });
            }
        }
        let p = f.path("kernel_arguments");
        for (i, n) in self.list(&f, "kernel_arguments").iter().enumerate() {
            let path = index(&p, i);
            let Some(m) = self.map(n, &path, KARG_TEST) else {
                continue;
            };
            if let Some(c) = self.required(&m, "contains", "a kernel argument", check::kernel_arg) {
                t.kernel_arguments.push(KernelArgTest {
                    span: n.span,
                    contains: c.value,
                });
            }
        }
        let p = f.path("commands");
        for (i, n) in self.list(&f, "commands").iter().enumerate() {
            let path = index(&p, i);
            let Some(m) = self.map(n, &path, COMMAND_TEST) else {
                continue;
            };
            let run = self.required(&m, "run", "a shell command", check::non_empty);
            let exit_status = match m.get("exit_status") {
                None => Some(0),
                Some(e) => self
                    .uint(e, &m.path("exit_status"), "an exit status")
                    .and_then(|v| {
                        if v <= 255 {
                            Some(v as i32)
                        } else {
                            self.error(
                                &m.path("exit_status"),
                                e.span,
                                format!("an exit status is 0 to 255, got {v}"),
                            );
                            None
                        }
                    }),
            };
            let out = self.field(&m, "stdout_contains", "text", check::non_empty);
            let err = self.field(&m, "stderr_contains", "text", check::non_empty);
            if let (Some(run), Some(exit_status)) = (run, exit_status) {
                t.commands.push(CommandTest {
                    span: n.span,
                    run: run.value,
                    exit_status,
                    stdout_contains: out.map(|o| o.value),
                    stderr_contains: err.map(|e| e.value),
                });
            }
        }
        let p = f.path("images");
        for (i, n) in self.list(&f, "images").iter().enumerate() {
            let path = index(&p, i);
            let Some(m) = self.map(n, &path, IMAGE_TEST) else {
                continue;
            };
            let reference = self.required(
                &m,
                "ref",
                "an image reference like registry.k8s.io/pause:3.10",
                check::image_reference,
            );
            let digest = self.field(&m, "digest", "an image digest", image_digest);
            if let Some(r) = reference {
                t.images.push(ImageTest {
                    span: n.span,
                    reference: nodestamp_contract::images::normalize_ref(&r.value)
                        .unwrap_or(r.value),
                    digest: digest.map(|d| d.value),
                });
            }
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use crate as spec;

    const HEAD: &str = "version: 1\nos:\n  from: debian:bookworm\n";

    #[test]
    fn a_tests_section_decodes_with_defaults() {
        let text = format!(
            "{HEAD}tests:\n  files:\n    - {{ path: /etc/hostname, mode: 0644, owner: root:root, contains: node }}\n    - {{ path: /etc/gone, exists: false }}\n  packages:\n    - {{ name: jq, version: \"1.6*\" }}\n    - {{ name: telnet, installed: false }}\n  services:\n    - {{ name: ssh.service, enabled: true }}\n  kernel_arguments:\n    - {{ contains: console=ttyS0 }}\n  commands:\n    - {{ run: \"jq --version\", stdout_contains: jq- }}\n    - {{ run: \"false\", exit_status: 1 }}\n"
        );
        let s = spec::load("node.yaml", text.as_bytes(), &BTreeMap::new())
            .unwrap()
            .spec;
        let t = s.tests.unwrap();
        assert_eq!(t.len(), 8);
        assert_eq!(t.files[0].mode, Some(0o644));
        assert_eq!(t.files[0].owner.as_deref(), Some("root:root"));
        assert!(t.files[0].exists);
        assert!(!t.files[1].exists);
        assert!(t.packages[0].installed);
        assert!(!t.packages[1].installed);
        assert_eq!(t.services[0].enabled, Some(true));
        assert_eq!(t.kernel_arguments[0].contains, "console=ttyS0");
        assert_eq!(t.commands[0].exit_status, 0);
        assert_eq!(t.commands[1].exit_status, 1);
        assert_eq!(t.files[0].span.start.line, 6);
    }

    #[test]
    fn every_problem_in_tests_is_reported_at_its_line() {
        let text = format!(
            "{HEAD}tests:\n  files:\n    - {{ path: etc/x, mode: rwx }}\n    - {{ path: /x, exists: false, contains: y }}\n  servics: []\n  services:\n    - {{ name: ssh.service }}\n  commands:\n    - {{ run: x, exit_status: 300 }}\n    - {{ exit_status: 0 }}\n"
        );
        let d = spec::load("node.yaml", text.as_bytes(), &BTreeMap::new()).unwrap_err();
        let lines: Vec<String> = d.errors().map(|e| e.one_line()).collect();
        let all = lines.join("\n");
        for want in [
            "node.yaml:6:15: tests.files[0].path",
            "node.yaml:6:28: tests.files[0].mode",
            "tests.files[1]: `exists: false` cannot be combined",
            "node.yaml:8:3: tests.servics: unknown key",
            "tests.services[0]: a service check needs `enabled` or `masked`",
            "tests.commands[0].exit_status: an exit status is 0 to 255",
            "tests.commands[1].run: missing required key `run`",
        ] {
            assert!(all.contains(want), "{want:?} not in:\n{all}");
        }
    }
}
