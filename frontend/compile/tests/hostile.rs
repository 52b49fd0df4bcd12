//! Hostile and broken input: one test per case. Every input goes through
//! the public loader on a watchdog thread (a panic or a hang fails the test), every diagnostic is
//! rendered against its source, and every spec that loads is compiled and marshaled.
//!
//! More detailed cases (exact positions, help texts) live in `frontend/src/spec/tests.rs`; this
//! file is the map from the issue to the tests. `local` through a symlink out of the build
//! context can only be seen by BuildKit: see `engine_trust.rs`.

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::time::Duration;

use nodestamp_compile::{CompileOptions, compile};
use nodestamp_spec::{self as spec, Diagnostic, Diagnostics, Loaded};

const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// Loads `bytes` on a watchdog thread: no panic, done within 10 s; renders diagnostics and
/// compiles what loads.
fn load(bytes: impl Into<Vec<u8>>) -> Result<Loaded, Diagnostics> {
    let bytes = bytes.into();
    let (tx, rx) = mpsc::channel();
    let worker = std::thread::spawn(move || {
        let r = spec::load("node.yaml", &bytes, &BTreeMap::new());
        let text = String::from_utf8_lossy(&bytes).into_owned();
        match &r {
            Ok(l) => {
                for w in &l.warnings {
                    let _ = w.render(&text);
                }
                let c = compile(&l.spec, &bytes, &CompileOptions::default());
                c.node.marshal().expect("a loaded spec marshals");
            }
            Err(d) => {
                let _ = d.render(&text);
                let _ = d.to_json();
            }
        }
        let _ = tx.send(r);
    });
    match rx.recv_timeout(Duration::from_secs(10)) {
        Ok(r) => r,
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("the loader hangs"),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            let _ = worker.join();
            panic!("the loader panicked")
        }
    }
}

#[track_caller]
fn errors(src: &str) -> Vec<Diagnostic> {
    match load(src) {
        Ok(_) => panic!("expected errors for:\n{src}"),
        Err(d) => d.errors().cloned().collect(),
    }
}

/// Asserts that `src` fails with an error at `path` whose message contains `needle`.
#[track_caller]
fn rejects(src: &str, path: &str, needle: &str) -> Diagnostic {
    let errs = errors(src);
    errs.iter()
        .find(|d| d.path == path && d.message.contains(needle))
        .cloned()
        .unwrap_or_else(|| panic!("no error at {path} containing {needle:?}: {errs:#?}"))
}

#[track_caller]
fn accepts(src: &str) -> Loaded {
    match load(src) {
        Ok(l) => l,
        Err(d) => panic!("expected a valid spec, got:\n{}", d.render(src)),
    }
}

fn os(body: &str) -> String {
    format!("version: 1\nos:\n  from: debian:bookworm\n{body}")
}

fn files(entries: &str) -> String {
    os(&format!("  storage:\n    files:\n{entries}"))
}

fn k8s(body: &str) -> String {
    format!("version: 1\nos: {{ from: debian:bookworm }}\nkubernetes:\n{body}")
}

// ---- path traversal and escapes -------------------------------------------------------------

#[test]
fn dotdot_in_path_is_rejected_with_the_normalized_form() {
    let d = rejects(
        &files("      - { path: /etc/../../root/.ssh/authorized_keys }\n"),
        "os.storage.files[0].path",
        "normalized absolute path",
    );
    assert_eq!(
        d.help.as_deref(),
        Some("write `/root/.ssh/authorized_keys`")
    );
    rejects(
        &os("  storage: { links: [{ path: /a/../b, target: /x }] }\n"),
        "os.storage.links[0].path",
        "no `..`",
    );
    rejects(
        &k8s(&format!(
            "  components: [{{ name: k, url: https://h/k, sha256: {HEX}, dest: /usr/../../etc/shadow }}]\n"
        )),
        "kubernetes.components[0].dest",
        "normalized absolute path",
    );
}

#[test]
fn dotdot_in_local_is_rejected() {
    for local in ["../secret", "a/../../secret", "a/..", ".."] {
        rejects(
            &files(&format!(
                "      - {{ path: /a, contents: {{ local: \"{local}\" }} }}\n"
            )),
            "os.storage.files[0].contents.local",
            "must stay inside the build context",
        );
        rejects(
            &k8s(&format!(
                "  components: [{{ name: k, local: \"{local}\" }}]\n"
            )),
            "kubernetes.components[0].local",
            "must stay inside the build context",
        );
    }
    // `..` inside a name is not a parent reference.
    accepts(&files(
        "      - { path: /a, contents: { local: \"a/b..c\" } }\n",
    ));
}

#[test]
fn absolute_local_is_rejected() {
    let d = rejects(
        &files("      - { path: /a, contents: { local: /etc/shadow } }\n"),
        "os.storage.files[0].contents.local",
        "relative to the build context",
    );
    assert!(d.help.unwrap_or_default().contains("etc/shadow"));
    rejects(
        &k8s("  components: [{ name: k, local: /usr/bin/kubectl }]\n"),
        "kubernetes.components[0].local",
        "relative to the build context",
    );
}

#[test]
fn control_characters_in_paths_are_rejected() {
    rejects(
        &files("      - { path: \"/etc/a\\nb\" }\n"),
        "os.storage.files[0].path",
        "control characters",
    );
    rejects(
        &files("      - { path: /a, contents: { local: \"a\\u0000b\" } }\n"),
        "os.storage.files[0].contents.local",
        "control characters",
    );
}

// ---- conflicts -------------------------------------------------------------------------------

#[test]
fn the_same_path_twice_needs_overwrite() {
    let twice = files("      - { path: /etc/a }\n      - { path: /etc/a }\n");
    let d = rejects(&twice, "os.storage.files[1].path", "already defined");
    assert!(d.help.unwrap_or_default().contains("overwrite: true"));
    accepts(&files(
        "      - { path: /etc/a }\n      - { path: /etc/a, overwrite: true }\n",
    ));
    // A file and a directory, a link and a file.
    rejects(
        &os("  storage:\n    directories: [{ path: /etc/a }]\n    files: [{ path: /etc/a }]\n"),
        "os.storage.directories[0].path",
        "already defined by os.storage.files[0]",
    );
}

#[test]
fn the_same_path_in_both_layers_needs_overwrite() {
    let src = "version: 1\nos:\n  from: x\n  storage: { files: [{ path: /etc/a }] }\nkubernetes:\n  storage: { files: [{ path: /etc/a }] }\n";
    let d = rejects(src, "kubernetes.storage.files[0].path", "in the OS layer");
    assert_eq!(d.span.unwrap().start.line, 6);
    accepts(&src.replace(
        "kubernetes:\n  storage: { files: [{ path: /etc/a }] }",
        "kubernetes:\n  storage: { files: [{ path: /etc/a, overwrite: true }] }",
    ));
    // A component's destination counts too, and cannot be overwritten.
    rejects(
        "version: 1\nos:\n  from: x\n  storage: { files: [{ path: /usr/bin/k }] }\nkubernetes:\n  components: [{ name: k, local: k, dest: /usr/bin/k }]\n",
        "kubernetes.components[0].path",
        "in the OS layer",
    );
}

#[test]
fn link_loops_are_rejected() {
    rejects(
        &os("  storage: { links: [{ path: /a, target: /a }] }\n"),
        "os.storage.links[0].target",
        "points at itself",
    );
    let d = rejects(
        &os("  storage: { links: [{ path: /a/b, target: ../c }, { path: /c, target: /a/b }] }\n"),
        "os.storage.links[0].target",
        "loop",
    );
    assert!(d.message.contains("/a/b → /c → /a/b"), "{}", d.message);
    // A chain without a loop is fine.
    accepts(&os(
        "  storage: { links: [{ path: /a, target: /b }, { path: /b, target: /c }] }\n",
    ));
}

#[test]
fn invalid_unit_names_are_rejected() {
    for (name, needle) in [
        ("kubelet", "expected a systemd unit name"),
        ("kubelet.servce", "unknown systemd unit type"),
        ("../../etc/passwd.service", "expected a systemd unit name"),
        ("a b.service", "expected a systemd unit name"),
        ("a@b@c.service", "expected a systemd unit name"),
    ] {
        rejects(
            &os(&format!(
                "  systemd: {{ units: [{{ name: \"{name}\", enabled: true }}] }}\n"
            )),
            "os.systemd.units[0].name",
            needle,
        );
    }
    rejects(
        &os("  systemd: { units: [{ name: a.service, dropins: [{ name: ../x.conf }] }] }\n"),
        "os.systemd.units[0].dropins[0].name",
        "drop-in file name",
    );
}

// ---- YAML abuse ------------------------------------------------------------------------------

#[test]
fn alias_bombs_are_bounded() {
    let mut src =
        String::from("version: 1\nos: { from: x }\na0: &a0 [x, x, x, x, x, x, x, x, x]\n");
    for i in 1..15 {
        let p = i - 1;
        src.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    let e = errors(&src);
    assert!(e[0].message.contains("YAML nodes"), "{}", e[0].message);
}

#[test]
fn deep_nesting_is_bounded() {
    let deep = format!(
        "version: 1\nx: {}{}\n",
        "[".repeat(200_000),
        "]".repeat(200_000)
    );
    let e = errors(&deep);
    assert_eq!(e.len(), 1, "{e:#?}");
    assert!(
        e[0].message.contains("nest") || e[0].message.contains("recursion"),
        "{}",
        e[0].message
    );
    let block: String = (0..500).map(|i| format!("{}a:\n", " ".repeat(i))).collect();
    assert!(!errors(&block).is_empty());
}

#[test]
fn a_50_mb_spec_is_rejected_quickly() {
    let mut big = os("  run:\n");
    while big.len() < 50_000_000 {
        big.push_str("    - echo aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n");
    }
    let e = errors(&big);
    assert_eq!(e.len(), 1);
    assert!(
        e[0].message.contains("larger than 10 MiB"),
        "{}",
        e[0].message
    );
}

#[test]
fn duplicate_keys_are_rejected() {
    let e = errors("version: 1\nos:\n  from: a\n  from: b\n");
    assert_eq!(e[0].message, "duplicate key `from`");
    assert_eq!(e[0].span.unwrap().start.line, 4);
    // Duplicate sysctl keys too (a mapping the user fills).
    let e = errors(&k8s("  sysctl: { a.b: 1, a.b: 2 }\n"));
    assert!(e[0].message.contains("duplicate key"), "{}", e[0].message);
}

#[test]
fn tab_indentation_is_rejected_with_help() {
    let e = errors("version: 1\nos:\n\tfrom: x\n");
    assert!(e[0].help.as_deref().unwrap_or_default().contains("tabs"));
}

#[test]
fn a_bom_is_accepted() {
    accepts("\u{feff}version: 1\nos: { from: x }\n");
}

#[test]
fn invalid_utf8_is_rejected_with_its_position() {
    let e = match load(b"version: 1\nos: { from: \xc3\x28 }\n".to_vec()) {
        Ok(_) => panic!("accepted invalid UTF-8"),
        Err(d) => d.0,
    };
    assert!(e[0].message.contains("not valid UTF-8"), "{}", e[0].message);
    assert_eq!(e[0].span.unwrap().start.line, 2);
}

#[test]
fn an_empty_file_is_rejected() {
    for empty in ["", "\n", "# comment only\n", "---\n", "null\n"] {
        assert!(
            errors(empty)[0].message.starts_with("the spec is empty"),
            "{empty:?}"
        );
    }
}

#[test]
fn a_json_spec_is_accepted() {
    let l = accepts(
        r#"{"version": 1, "os": {"from": "debian:bookworm", "packages": ["jq"],
            "storage": {"files": [{"path": "/etc/a", "mode": "0600"}]}},
           "disk": {"size": "8GiB", "formats": ["qcow2"]}}"#,
    );
    assert_eq!(l.spec.os.storage.files[0].mode, Some(0o600));
    // JSON numbers are YAML numbers: 420 is decimal, and the same as 0644.
    let l = accepts(
        r#"{"version": 1, "os": {"from": "x", "storage": {"files": [{"path": "/a", "mode": 420}]}}}"#,
    );
    assert_eq!(l.spec.os.storage.files[0].mode, Some(0o644));
}

// ---- values ----------------------------------------------------------------------------------

#[test]
fn modes_above_07777_or_negative_are_rejected() {
    for (mode, needle) in [
        ("010000", "above the largest mode 07777"),
        ("4096", "above the largest mode 07777"),
        ("-1", "negative"),
        ("-0644", "negative"),
        ("0o20000", "above"),
        ("99999999999999999999999999", "above"),
    ] {
        rejects(
            &files(&format!("      - {{ path: /a, mode: {mode} }}\n")),
            "os.storage.files[0].mode",
            needle,
        );
    }
    let l = accepts(&files("      - { path: /a, mode: 07777 }\n"));
    assert_eq!(l.spec.os.storage.files[0].mode, Some(0o7777));
}

#[test]
fn mode_without_leading_zero_warns() {
    let l = accepts(&files("      - { path: /a, mode: 644 }\n"));
    assert_eq!(l.warnings.len(), 1);
    assert_eq!(l.warnings[0].path, "os.storage.files[0].mode");
    assert!(
        l.warnings[0]
            .help
            .as_deref()
            .unwrap_or_default()
            .starts_with("write 0644")
    );
}

#[test]
fn plaintext_passwords_are_rejected() {
    let d = rejects(
        &os("  passwd: { users: [{ name: core, password: hunter2 }] }\n"),
        "os.passwd.users[0].password",
        "plaintext passwords are not accepted",
    );
    assert!(d.help.unwrap_or_default().contains("password_hash"));
    // The rejected value is never echoed back.
    assert!(!d.message.contains("hunter2"));
}

#[test]
fn malformed_sha256_is_rejected() {
    for bad in [
        "abc",
        "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef",
        "g123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    ] {
        rejects(
            &k8s(&format!(
                "  components: [{{ name: k, url: https://h/k, sha256: \"{bad}\" }}]\n"
            )),
            "kubernetes.components[0].sha256",
            "sha256",
        );
    }
    rejects(
        &files(
            "      - { path: /a, contents: { source: https://h/a, verification: { hash: sha256-abc } } }\n",
        ),
        "os.storage.files[0].contents.verification.hash",
        "sha256-",
    );
}

#[test]
fn urls_without_a_checksum_are_rejected() {
    // http and https alike: the checksum is what pins the download.
    for url in ["http://h/kubelet", "https://h/kubelet"] {
        rejects(
            &k8s(&format!("  components: [{{ name: k, url: \"{url}\" }}]\n")),
            "kubernetes.components[0].sha256",
            "needs `sha256`",
        );
        rejects(
            &files(&format!(
                "      - {{ path: /a, contents: {{ source: \"{url}\" }} }}\n"
            )),
            "os.storage.files[0].contents.verification",
            "needs `verification",
        );
    }
    // With a checksum, plain http is accepted (the digest is verified by the engine).
    accepts(&k8s(&format!(
        "  components: [{{ name: k, url: http://h/k, sha256: {HEX} }}]\n"
    )));
    rejects(
        &k8s(&format!(
            "  components: [{{ name: k, url: ftp://h/k, sha256: {HEX} }}]\n"
        )),
        "kubernetes.components[0].url",
        "http",
    );
}

#[test]
fn versions_other_than_1_are_rejected() {
    for v in ["2", "0", "\"1.0\"", "v1", "-1"] {
        rejects(
            &format!("version: {v}\nos: {{ from: x }}\n"),
            "version",
            "unsupported spec version",
        );
    }
    rejects(
        "os: { from: x }\n",
        "version",
        "missing required key `version`",
    );
}

#[test]
fn unknown_firmware_and_formats_suggest_the_accepted_ones() {
    let d = rejects(
        "version: 1\nos: { from: x }\ndisk: { firmware: uefii }\n",
        "disk.firmware",
        "unknown firmware \"uefii\"; expected one of uefi, bios, hybrid",
    );
    assert_eq!(d.help.as_deref(), Some("did you mean `uefi`?"));
    rejects(
        "version: 1\nos: { from: x }\ndisk: { firmware: legacy }\n",
        "disk.firmware",
        "expected one of uefi, bios, hybrid",
    );
    let d = rejects(
        "version: 1\nos: { from: x }\ndisk: { formats: [qcow] }\n",
        "disk.formats[0]",
        "expected one of raw, qcow2, vmdk, vhd, ova, gce",
    );
    assert_eq!(d.help.as_deref(), Some("did you mean `qcow2`?"));
}

#[test]
fn sizes_take_binary_units_only() {
    for (size, bytes) in [
        ("8GiB", 8u64 << 30),
        ("512MiB", 512 << 20),
        ("8589934592", 8 << 30),
    ] {
        let l = accepts(&format!(
            "version: 1\nos: {{ from: x }}\ndisk: {{ size: {size} }}\n"
        ));
        assert_eq!(l.spec.disk.unwrap().size, Some(bytes), "{size}");
    }
    for size in ["8 GB", "8GB", "8G", "8gib", "8 GiB", "1.5GiB", "0", "-8GiB"] {
        rejects(
            &format!("version: 1\nos: {{ from: x }}\ndisk: {{ size: \"{size}\" }}\n"),
            "disk.size",
            "",
        );
    }
    let d = rejects(
        "version: 1\nos: { from: x }\ndisk: { size: 8 GB }\n",
        "disk.size",
        "binary unit",
    );
    assert!(d.help.unwrap_or_default().starts_with("write 8GiB"));
}

#[test]
fn misspelt_keys_and_values_get_a_suggestion() {
    let d = rejects(&os("  pakages: [jq]\n"), "os.pakages", "unknown key");
    assert_eq!(d.help.as_deref(), Some("did you mean `packages`?"));
    let d = rejects(
        &os("  systemd: { units: [{ name: a.service, enabeld: true }] }\n"),
        "os.systemd.units[0].enabeld",
        "unknown key",
    );
    assert_eq!(d.help.as_deref(), Some("did you mean `enabled`?"));
    let d = rejects(
        &os("  systemd: { units: [{ name: a.servise, enabled: true }] }\n"),
        "os.systemd.units[0].name",
        "unknown systemd unit type",
    );
    assert_eq!(d.help.as_deref(), Some("did you mean `.service`?"));
    let d = rejects(
        "version: 1\nos: { from: x }\ndisk: { filesystem: ext3 }\n",
        "disk.filesystem",
        "only `ext4`",
    );
    assert_eq!(d.help.as_deref(), Some("did you mean `ext4`?"));
}
