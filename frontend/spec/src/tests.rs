//! Tests of loading: every field, valid and invalid, error positions, warnings, abuse.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::*;

const FULL: &str = include_str!("../../../testdata/specs/valid/full.yaml");
const MINIMAL: &str = include_str!("../../../testdata/specs/valid/minimal.yaml");
const JSON: &str = include_str!("../../../testdata/specs/valid/node.json");
const MANY: &str = include_str!("../../../testdata/specs/invalid/many-errors.yaml");

const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn load_with(src: &str, v: &[(&str, &str)]) -> Result<Loaded, Diagnostics> {
    load("node.yaml", src.as_bytes(), &vars(v))
}

#[track_caller]
fn ok(src: &str) -> Loaded {
    match load_with(src, &[]) {
        Ok(l) => l,
        Err(d) => panic!("expected a valid spec, got:\n{}", d.render(src)),
    }
}

#[track_caller]
fn errors(src: &str) -> Vec<Diagnostic> {
    match load_with(src, &[]) {
        Ok(_) => panic!("expected errors for:\n{src}"),
        Err(d) => d.errors().cloned().collect(),
    }
}

/// The only error of `src`.
#[track_caller]
fn error(src: &str) -> Diagnostic {
    let e = errors(src);
    assert_eq!(
        e.len(),
        1,
        "expected one error, got:\n{}",
        Diagnostics(e.clone())
    );
    e.into_iter().next().unwrap_or_else(|| unreachable!())
}

fn at(d: &Diagnostic) -> (u32, u32) {
    d.span.map_or((0, 0), |s| (s.start.line, s.start.col))
}

/// A spec with `body` under `os:` after `from:`.
fn os(body: &str) -> String {
    format!("version: 1\nos:\n  from: debian:bookworm\n{body}")
}

fn file(entry: &str) -> String {
    os(&format!("  storage:\n    files:\n      - {entry}\n"))
}

fn k8s(body: &str) -> String {
    format!("version: 1\nos: {{ from: debian:bookworm }}\nkubernetes:\n{body}")
}

fn disk(body: &str) -> String {
    format!("version: 1\nos: {{ from: debian:bookworm }}\ndisk:\n{body}")
}

// ---- valid specs -----------------------------------------------------------------------------

#[test]
fn full_fixture_reads_every_field() {
    let l = load_with(FULL, &[("KUBERNETES_VERSION", "1.31.3")])
        .unwrap_or_else(|d| panic!("{}", d.render(FULL)));
    assert_eq!(l.warnings, vec![], "no warnings expected");
    let s = l.spec;
    assert_eq!(s.version, 1);
    assert_eq!(s.name, "full-node.v1_a");
    assert_eq!(s.file_name, "node.yaml");

    let o = &s.os;
    assert_eq!(o.span.start.line, 5);
    assert_eq!(o.from.value, "registry.example:5000/os/debian:bookworm");
    assert_eq!((o.from.span.start.line, o.from.span.start.col), (5, 9));
    let pk: Vec<&str> = o.packages.iter().map(|p| p.value.as_str()).collect();
    assert_eq!(pk, ["linux-image-amd64", "libc6=2.36-9", "containerd"]);
    assert_eq!(
        (o.packages[1].span.start.line, o.packages[1].span.start.col),
        (6, 33)
    );
    let ka: Vec<&str> = o
        .kernel_arguments
        .iter()
        .map(|p| p.value.as_str())
        .collect();
    assert_eq!(ka, ["console=ttyS0", "quiet"]);

    let f = &o.storage.files;
    assert_eq!(f.len(), 4);
    assert_eq!(f[0].path, "/etc/hostname");
    assert_eq!(f[0].mode, Some(0o644));
    assert_eq!(f[0].user, Some(Owner::Name("core".into())));
    assert_eq!(f[0].group, Some(Owner::Id(0)));
    assert!(!f[0].overwrite);
    assert_eq!(f[0].contents, Contents::Inline("node\n".into()));
    assert_eq!((f[0].span.start.line, f[0].span.start.col), (10, 9));
    assert_eq!(f[1].mode, Some(0o600));
    assert_eq!(f[1].user, Some(Owner::Id(1000)));
    assert_eq!(f[1].group, Some(Owner::Name("core".into())));
    assert_eq!(f[1].contents, Contents::Local("files/motd".into()));
    assert_eq!(
        f[2].contents,
        Contents::Source {
            url: "https://example.invalid/ca.pem".into(),
            sha256: HEX.into()
        }
    );
    assert_eq!(f[2].mode, None);
    assert_eq!(f[3].contents, Contents::Inline(String::new()));

    let d = &o.storage.directories[0];
    assert_eq!(
        (d.path.as_str(), d.mode, d.user.clone(), d.group.clone()),
        (
            "/var/lib/node",
            Some(0o750),
            Some(Owner::Name("core".into())),
            Some(Owner::Name("core".into()))
        )
    );
    let ln = &o.storage.links;
    assert_eq!(
        (
            ln[0].path.as_str(),
            ln[0].target.as_str(),
            ln[0].hard,
            ln[0].overwrite
        ),
        ("/usr/local/bin/vi", "/usr/bin/vim.tiny", false, false)
    );
    assert!(ln[1].hard && ln[1].overwrite);

    let u = &o.systemd.units;
    assert_eq!(u.len(), 3);
    assert_eq!(
        (u[0].name.as_str(), u[0].enabled, u[0].mask),
        ("ssh.service", Some(true), false)
    );
    assert_eq!(u[1].name, "hello@.service");
    assert_eq!(u[1].enabled, Some(false));
    assert_eq!(
        u[1].contents.as_deref(),
        Some("[Service]\nExecStart=/bin/echo %i\n")
    );
    assert_eq!(u[1].dropins[0].name, "10-env.conf");
    assert_eq!(u[1].dropins[0].contents, "[Service]\nEnvironment=A=1\n");
    assert_eq!(
        (u[2].enabled, u[2].mask, u[2].contents.as_deref()),
        (None, true, None)
    );

    let user = &o.passwd.users[0];
    assert_eq!(user.name, "core");
    assert_eq!(user.uid, Some(1000));
    assert_eq!(user.groups, ["core", "sudo"]);
    assert_eq!(user.shell.as_deref(), Some("/bin/bash"));
    assert_eq!(user.password_hash.as_deref(), Some("$y$j9T$salt$hash"));
    assert_eq!(
        user.ssh_authorized_keys,
        ["ssh-ed25519 AAAAC3Nza core@example"]
    );
    assert_eq!(
        (o.passwd.groups[0].name.as_str(), o.passwd.groups[0].gid),
        ("core", Some(1000))
    );
    assert_eq!(o.run[0].value, "echo \"$HOME ${NOT_A_VAR}\" > /etc/built");

    let k = s.kubernetes.as_ref().unwrap_or_else(|| unreachable!());
    assert_eq!(k.version.as_ref().map(|v| v.value.as_str()), Some("1.31.3"));
    let c = &k.components;
    assert_eq!(c[0].name, "kubelet");
    assert_eq!(
        c[0].source,
        ComponentSource::Http {
            url: "https://dl.k8s.io/release/v1.31.3/bin/linux/amd64/kubelet".into(),
            sha256: "1".repeat(64)
        }
    );
    assert_eq!(
        (c[0].dest.as_deref(), c[0].mode, c[0].extract),
        (Some("/usr/local/bin/kubelet"), Some(0o755), false)
    );
    assert_eq!(
        c[1].source,
        ComponentSource::Local("components/containerd.tar.gz".into())
    );
    assert!(c[1].extract);
    assert!(k.storage.files[0].overwrite);
    assert_eq!(k.systemd.units[0].name, "kubelet.service");
    let sysctl: Vec<(&str, &str)> = k
        .sysctl
        .iter()
        .map(|(a, b)| (a.value.as_str(), b.value.as_str()))
        .collect();
    assert_eq!(
        sysctl,
        [
            ("net.ipv4.ip_forward", "1"),
            ("net.bridge.bridge-nf-call-iptables", "1")
        ]
    );
    assert_eq!(k.sysctl[0].0.span.start.line, 72);
    let m: Vec<&str> = k.modules.iter().map(|p| p.value.as_str()).collect();
    assert_eq!(m, ["overlay", "br_netfilter"]);

    let dk = s.disk.as_ref().unwrap_or_else(|| unreachable!());
    assert_eq!(dk.size, Some(8 << 30));
    assert_eq!(
        (dk.firmware, dk.bootloader, dk.filesystem),
        (Firmware::Uefi, Bootloader::SystemdBoot, Filesystem::Ext4)
    );
    assert_eq!(
        dk.formats,
        [Format::Raw, Format::Qcow2, Format::Vmdk, Format::Vhd]
    );
}

#[test]
fn minimal_spec_gets_defaults() {
    let s = ok(MINIMAL).spec;
    assert_eq!(s.name, "node");
    assert_eq!(s.os.from.value, "debian:bookworm");
    assert!(s.os.packages.is_empty() && s.kubernetes.is_none() && s.disk.is_none());
    let d = ok(&disk("  size: 1024\n")).spec.disk.unwrap_or_default();
    assert_eq!(
        (d.size, d.firmware, d.bootloader, d.filesystem),
        (
            Some(1024),
            Firmware::Hybrid,
            Bootloader::SystemdBoot,
            Filesystem::Ext4
        )
    );
    assert!(d.formats.is_empty());
    // Explicit nulls count as absent.
    let s = ok("version: 1\nname:\nos:\n  from: debian\n  packages: ~\nkubernetes: null\n").spec;
    assert_eq!(s.name, "node");
    assert!(s.kubernetes.is_none());
}

#[test]
fn json_specs_are_yaml() {
    let s = load("node.json", JSON.as_bytes(), &BTreeMap::new())
        .unwrap_or_else(|d| panic!("{}", d.render(JSON)))
        .spec;
    assert_eq!(s.name, "json-node");
    assert_eq!(
        s.os.storage.files[0].mode,
        Some(0o644),
        "a string \"0644\" is octal"
    );
    assert_eq!(
        s.os.storage.files[1].mode,
        Some(384),
        "a JSON number is decimal"
    );
    assert_eq!(s.disk.map(|d| d.size), Some(Some(512 << 20)));
}

/// A spec elsewhere in the repository (owned by other parts of the project), read at run time
/// so that this crate builds without it; `None` (and a note) when it is absent.
fn repo_spec(rel: &str) -> Option<String> {
    let path = format!("{}/../../testdata/{rel}", env!("CARGO_MANIFEST_DIR"));
    let src = std::fs::read_to_string(&path).ok();
    if src.is_none() {
        eprintln!("note: {path} not found, skipped");
    }
    src
}

#[test]
fn the_repository_specs_load() {
    for rel in [
        "examples/node.yaml",
        "golden/full/spec.yaml",
        "golden/minimal/spec.yaml",
    ] {
        if let Some(src) = repo_spec(rel)
            && let Err(d) = load(rel, src.as_bytes(), &BTreeMap::new())
        {
            panic!("{}", d.render(&src));
        }
    }
}

#[test]
fn engine_invalid_spec_reports_both_errors() {
    let Some(src) = repo_spec("engine/invalid.yaml") else {
        return;
    };
    let e = errors(&src);
    let got: Vec<String> = e.iter().map(Diagnostic::one_line).collect();
    assert_eq!(
        got,
        [
            "node.yaml:12:3: os.pakages: unknown key `pakages`; expected one of from, packages, kernel_arguments, storage, systemd, passwd, run, build",
            "node.yaml:17:15: os.storage.files[0].mode: expected an octal mode like 0644, got \"rwx\"",
        ]
    );
    assert_eq!(e[0].help.as_deref(), Some("did you mean `packages`?"));
}

// ---- all errors at once, positions, rendering -----------------------------------------------

#[test]
fn many_errors_at_once_with_positions() {
    let d = load_with(MANY, &[]).err().unwrap_or_default();
    let got: Vec<(u32, u32, &str)> =
        d.0.iter()
            .map(|d| {
                let (l, c) = at(d);
                (l, c, d.path.as_str())
            })
            .collect();
    assert_eq!(
        got,
        [
            (1, 10, "version"),
            (2, 7, "name"),
            (5, 3, "os.pakages"),
            (8, 15, "os.storage.files[0].path"),
            (9, 15, "os.storage.files[0].mode"),
            (10, 19, "os.storage.files[0].contents"),
            (13, 19, "os.storage.files[1].contents.verification"),
            (16, 17, "os.systemd.units[0].name"),
            (16, 35, "os.systemd.units[0].enabled"),
            (19, 23, "os.passwd.users[0].password"),
            (22, 24, "kubernetes.components[0].sha256"),
            (23, 15, "kubernetes.components[1].name"),
            (23, 31, "kubernetes.components[1].local"),
            (25, 9, "disk.size"),
            (26, 13, "disk.firmware"),
            (27, 13, "disk.formats[0]"),
        ]
    );
    assert!(d.0.iter().all(Diagnostic::is_error));
    assert_eq!(d.summary(), "16 errors, 0 warnings");
    let text = d.render(MANY);
    for needle in [
        "error: unsupported spec version \"2\"; this nodestamp reads version 1\n --> node.yaml:1:10\n",
        "  = help: did you mean `packages`?\n",
        "  = help: YAML 1.2 has no yes/no/on/off booleans; write true or false\n",
        "plaintext passwords are not accepted",
        "  = help: did you mean `qcow2`?\n",
        "unknown firmware \"efi\"; expected one of uefi, bios, hybrid",
        "  = help: did you mean `uefi`?\n",
        "  = help: write 8GiB",
        "  = help: unit names end in their type: did you mean `kubelet.service`?\n",
        "component `kubelet` is already defined on line 22",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
}

#[test]
fn rendering_points_at_the_value() {
    let src = file("{ path: /etc/x, mode: rwx }");
    let d = error(&src);
    assert_eq!(
        d.render(&src),
        "error: expected an octal mode like 0644, got \"rwx\"\n \
         --> node.yaml:6:31\n  |\n\
         6 |       - { path: /etc/x, mode: rwx }\n  \
         |                               ^^^ os.storage.files[0].mode\n"
    );
    let json = Diagnostics(vec![d]).to_json();
    assert_eq!(json[0]["span"]["start"]["line"], 6);
    assert_eq!(json[0]["span"]["start"]["col"], 31);
    assert_eq!(json[0]["span"]["end"]["col"], 34);
    assert_eq!(json[0]["path"], "os.storage.files[0].mode");
    assert_eq!(json[0]["file"], "node.yaml");
    let offset = json[0]["span"]["start"]["offset"].as_u64().unwrap_or(0) as usize;
    assert_eq!(&src[offset..offset + 3], "rwx");
}

#[test]
fn offsets_count_bytes_and_columns_count_characters() {
    let src = "version: 1\nos:\n  from: debian\n  run: [\"é€ ${NOPE}\"]\n";
    let d = error(src);
    assert_eq!(at(&d), (4, 13));
    let span = d.span.unwrap_or_default();
    assert_eq!(&src[span.start.offset..span.end.offset], "${NOPE}");
    assert_eq!(span.end.col - span.start.col, 7);
}

// ---- top level -------------------------------------------------------------------------------

#[test]
fn version() {
    let d = error("os: { from: debian }\n");
    assert_eq!(d.message, "missing required key `version` (1)");
    assert_eq!(at(&d), (1, 1));
    for bad in ["2", "0", "\"1.0\"", "v1", "[1]"] {
        let d = error(&format!("version: {bad}\nos: {{ from: debian }}\n"));
        assert_eq!((d.path.as_str(), at(&d)), ("version", (1, 10)), "{bad}");
    }
    assert_eq!(ok("version: \"1\"\nos: { from: debian }\n").spec.version, 1);
}

#[test]
fn name() {
    for good in ["node", "a", "0", "node-1.2_x"] {
        assert_eq!(
            ok(&format!("version: 1\nname: {good}\nos: {{ from: x }}\n"))
                .spec
                .name,
            good
        );
    }
    for bad in ["Node", "-x", "a b", "\"\"", "_x", "[a]"] {
        let d = error(&format!("version: 1\nname: {bad}\nos: {{ from: x }}\n"));
        assert_eq!(d.path, "name", "{bad}");
        assert_eq!(at(&d), (2, 7));
    }
}

#[test]
fn unknown_top_level_keys_and_shapes() {
    let d = error("version: 1\nos: { from: x }\nkubernets: {}\n");
    assert_eq!(d.help.as_deref(), Some("did you mean `kubernetes`?"));
    assert_eq!(at(&d), (3, 1));
    let d = error("- a\n- b\n");
    assert!(d.message.starts_with(
        "expected a mapping with the keys version, name, os, kubernetes, disk, tests, got a list"
    ));
    let d = error("just text\n");
    assert!(d.message.ends_with("got \"just text\""), "{}", d.message);
    let d = error("version: 1\n");
    assert_eq!(
        d.message,
        "missing required key `os` (a mapping with at least `from`)"
    );
    let d = error("version: 1\nos:\n");
    assert_eq!(
        d.message,
        "`os` has no value; expected a mapping with at least `from`"
    );
    let d = error("version: 1\nos: debian\n");
    assert!(
        d.message
            .starts_with("expected a mapping with the keys from, packages")
    );
    let d = error("version: 1\nos: { from: x }\nkubernetes: []\n");
    assert_eq!(d.path, "kubernetes");
}

// ---- os ----------------------------------------------------------------------------------------

#[test]
fn os_from() {
    let d = error("version: 1\nos: { packages: [jq] }\n");
    assert_eq!(
        d.message,
        "missing required key `from` (an image reference)"
    );
    assert_eq!(d.path, "os.from");
    for bad in ["Debian:12", "\"debian:\"", "\"a b\"", "debian@sha256:abc"] {
        let d = error(&format!("version: 1\nos:\n  from: {bad}\n"));
        assert_eq!((d.path.as_str(), at(&d)), ("os.from", (3, 9)), "{bad}");
    }
}

#[test]
fn os_packages_kernel_arguments_run() {
    let s = ok(&os(
        "  packages: [a, b]\n  kernel_arguments: [quiet]\n  run: [\"echo hi\", 'a && b']\n",
    ))
    .spec;
    assert_eq!(s.os.packages.len(), 2);
    assert_eq!(s.os.run[1].value, "a && b");
    let d = error(&os("  packages: [jq, -y]\n"));
    assert_eq!((d.path.as_str(), at(&d)), ("os.packages[1]", (4, 18)));
    assert!(d.help.unwrap_or_default().contains("cannot start with `-`"));
    let d = error(&os("  packages: [\"jq curl\"]\n"));
    assert_eq!(d.help.as_deref(), Some("list each package as its own item"));
    let d = error(&os("  packages: jq\n"));
    assert_eq!(d.message, "expected a list, got \"jq\"");
    let d = error(&os("  packages: [[a]]\n"));
    assert_eq!(d.message, "expected a package name, got a list");
    let d = error(&os("  kernel_arguments: [\"a b\"]\n"));
    assert_eq!(d.path, "os.kernel_arguments[0]");
    let d = error(&os("  run: [\"\"]\n"));
    assert_eq!(d.path, "os.run[0]");
    let l = ok(&os("  packages: [jq, jq]\n"));
    assert_eq!(l.warnings.len(), 1);
    assert_eq!(at(&l.warnings[0]), (4, 18));
}

#[test]
fn file_paths() {
    for bad in ["etc/x", "/etc/../x", "/etc//x", "/etc/x/", "/", "\"\""] {
        let d = error(&file(&format!("{{ path: {bad} }}")));
        assert_eq!(
            (d.path.as_str(), at(&d)),
            ("os.storage.files[0].path", (6, 17)),
            "{bad}"
        );
    }
    let d = error(&file("{ path: /etc/../x }"));
    assert_eq!(d.help.as_deref(), Some("write `/x`"));
    let d = error(&file("{ mode: 0644 }"));
    assert_eq!(d.message, "missing required key `path` (an absolute path)");
    assert_eq!(at(&d), (6, 9));
}

#[test]
fn file_modes() {
    let mode = |m: &str| ok(&file(&format!("{{ path: /x, mode: {m} }}")));
    assert_eq!(mode("0644").spec.os.storage.files[0].mode, Some(0o644));
    assert_eq!(mode("0o755").spec.os.storage.files[0].mode, Some(0o755));
    assert_eq!(mode("\"0600\"").spec.os.storage.files[0].mode, Some(0o600));
    assert_eq!(mode("04755").spec.os.storage.files[0].mode, Some(0o4755));
    assert_eq!(mode("0").spec.os.storage.files[0].mode, Some(0));
    let l = mode("644");
    assert_eq!(l.spec.os.storage.files[0].mode, Some(644));
    let w = &l.warnings[0];
    assert_eq!(w.severity, Severity::Warning);
    assert_eq!(at(w), (6, 27));
    assert_eq!(w.path, "os.storage.files[0].mode");
    assert!(
        w.help
            .as_deref()
            .unwrap_or_default()
            .starts_with("write 0644")
    );
    assert!(
        mode("384").warnings.is_empty(),
        "8 is no octal digit: plainly decimal"
    );
    for (bad, needle) in [
        ("rwx", "expected an octal mode like 0644, got \"rwx\""),
        ("010000", "above the largest mode 07777"),
        ("7777", "decimal 7777, above the largest mode 07777"),
        ("-1", "cannot be negative"),
        ("-0644", "cannot be negative"),
        ("0x1ed", "expected an octal mode"),
        ("0649", "not octal digits"),
        ("[1]", "expected an octal mode like 0644, got a list"),
        ("u+rw", "expected an octal mode"),
    ] {
        let d = error(&file(&format!("{{ path: /x, mode: {bad} }}")));
        assert!(d.message.contains(needle), "{bad}: {}", d.message);
        assert_eq!(at(&d), (6, 27), "{bad}");
    }
}

#[test]
fn file_owners() {
    let f = |u: &str| {
        ok(&file(&format!("{{ path: /x, user: {u}, group: {u} }}")))
            .spec
            .os
            .storage
            .files[0]
            .clone()
    };
    assert_eq!(f("root").user, Some(Owner::Name("root".into())));
    assert_eq!(f("0").group, Some(Owner::Id(0)));
    assert_eq!(f("\"1000\"").user, Some(Owner::Id(1000)));
    assert_eq!(f("{ id: 7 }").user, Some(Owner::Id(7)));
    assert_eq!(f("{ name: _apt }").user, Some(Owner::Name("_apt".into())));
    for bad in [
        "Root",
        "-1",
        "\"a b\"",
        "99999999999",
        "{ id: 1, name: a }",
        "{}",
        "{ uid: 1 }",
        "[a]",
    ] {
        let e = errors(&file(&format!("{{ path: /x, user: {bad} }}")));
        assert!(!e.is_empty(), "{bad}");
        assert!(
            e[0].path.starts_with("os.storage.files[0].user"),
            "{bad}: {}",
            e[0].path
        );
    }
}

#[test]
fn file_overwrite_and_contents() {
    assert!(
        ok(&file("{ path: /x, overwrite: true }"))
            .spec
            .os
            .storage
            .files[0]
            .overwrite
    );
    let d = error(&file("{ path: /x, overwrite: maybe }"));
    assert_eq!(d.message, "expected true or false, got \"maybe\"");
    let c = |c: &str| {
        ok(&file(&format!("{{ path: /x, contents: {c} }}")))
            .spec
            .os
            .storage
            .files[0]
            .contents
            .clone()
    };
    assert_eq!(c("{}"), Contents::Inline(String::new()));
    assert_eq!(c("{ inline: \"\" }"), Contents::Inline(String::new()));
    assert_eq!(
        c("{ inline: 0644 }"),
        Contents::Inline("0644".into()),
        "text kept as written"
    );
    assert_eq!(c("{ local: ./a/b }"), Contents::Local("./a/b".into()));
    assert_eq!(
        c(&format!(
            "{{ source: \"http://h/x\", verification: {{ hash: sha256-{HEX} }} }}"
        )),
        Contents::Source {
            url: "http://h/x".into(),
            sha256: HEX.into()
        }
    );
    for (bad, path, needle) in [
        (
            "{ inline: a, source: b }",
            "os.storage.files[0].contents",
            "exactly one of",
        ),
        (
            "{ local: /etc/passwd }",
            "os.storage.files[0].contents.local",
            "relative to the build context",
        ),
        (
            "{ local: ../secret }",
            "os.storage.files[0].contents.local",
            "`..` is not accepted",
        ),
        (
            "{ local: a/../../b }",
            "os.storage.files[0].contents.local",
            "`..` is not accepted",
        ),
        (
            "{ source: \"https://h/x\" }",
            "os.storage.files[0].contents.verification",
            "needs `verification",
        ),
        (
            &format!("{{ source: \"ftp://h/x\", verification: {{ hash: sha256-{HEX} }} }}"),
            "os.storage.files[0].contents.source",
            "http",
        ),
        (
            &format!("{{ source: \"https://h/x\", verification: {{ hash: sha512-{HEX} }} }}"),
            "os.storage.files[0].contents.verification.hash",
            "sha512",
        ),
        (
            &format!("{{ source: \"https://h/x\", verification: {{ hash: \"{HEX}\" }} }}"),
            "os.storage.files[0].contents.verification.hash",
            "sha256-",
        ),
        (
            "{ source: \"https://h/x\", verification: { hash: sha256-abc } }",
            "os.storage.files[0].contents.verification.hash",
            "64 lowercase",
        ),
        (
            "{ source: \"https://h/x\", verification: {} }",
            "os.storage.files[0].contents.verification.hash",
            "missing",
        ),
        (
            &format!("{{ inline: a, verification: {{ hash: sha256-{HEX} }} }}"),
            "os.storage.files[0].contents.verification",
            "only applies",
        ),
        (
            "{ inline: a, compression: gzip }",
            "os.storage.files[0].contents.compression",
            "unknown key",
        ),
        (
            "hello",
            "os.storage.files[0].contents",
            "expected a mapping",
        ),
    ] {
        let d = error(&file(&format!("{{ path: /x, contents: {bad} }}")));
        assert_eq!(d.path, path, "{bad}");
        assert!(d.message.contains(needle), "{bad}: {}", d.message);
    }
}

#[test]
fn directories_and_links() {
    let s = ok(&os("  storage:\n    directories: [{ path: /d, mode: 0700, user: 1, group: g }]\n    links: [{ path: /l, target: ../d }, { path: /h, target: /d/f, hard: true }]\n")).spec;
    assert_eq!(s.os.storage.directories[0].mode, Some(0o700));
    assert_eq!(s.os.storage.links[0].target, "../d");
    assert!(s.os.storage.links[1].hard);
    for (bad, path) in [
        (
            "directories: [{ path: d }]",
            "os.storage.directories[0].path",
        ),
        (
            "directories: [{ path: /d, overwrite: true }]",
            "os.storage.directories[0].overwrite",
        ),
        ("links: [{ path: /l }]", "os.storage.links[0].target"),
        (
            "links: [{ path: /l, target: \"\" }]",
            "os.storage.links[0].target",
        ),
        (
            "links: [{ path: /l, target: rel, hard: true }]",
            "os.storage.links[0].target",
        ),
        (
            "links: [{ path: /l, target: /x, hard: 1 }]",
            "os.storage.links[0].hard",
        ),
        (
            "links: [{ path: l/, target: /x }]",
            "os.storage.links[0].path",
        ),
    ] {
        let d = error(&os(&format!("  storage:\n    {bad}\n")));
        assert_eq!(d.path, path, "{bad}");
    }
}

#[test]
fn symlink_loops() {
    let d = error(&os("  storage:\n    links: [{ path: /a, target: /a }]\n"));
    assert_eq!(d.message, "symlink `/a` points at itself");
    assert_eq!(at(&d), (5, 21));
    let d = error(&os(
        "  storage:\n    links:\n      - { path: /x/a, target: b }\n      - { path: /x/b, target: ../x/c }\n      - { path: /x/c, target: /x/a }\n",
    ));
    assert_eq!(d.message, "symlinks form a loop: /x/a → /x/b → /x/c → /x/a");
    assert_eq!(at(&d), (6, 17));
    // A chain without a loop is fine, and so is a loop across layers reported once.
    ok(&os(
        "  storage:\n    links: [{ path: /a, target: /b }, { path: /b, target: /c }]\n",
    ));
    let src = format!(
        "{}kubernetes:\n  storage:\n    links: [{{ path: /b, target: /a }}]\n",
        os("  storage:\n    links: [{ path: /a, target: /b }]\n")
    );
    assert_eq!(errors(&src).len(), 1);
}

#[test]
fn duplicate_paths() {
    let d = error(&os(
        "  storage:\n    files: [{ path: /x }]\n    directories: [{ path: /x }]\n",
    ));
    assert_eq!(d.path, "os.storage.directories[0].path");
    assert_eq!(
        d.message,
        "`/x` is already defined by os.storage.files[0] (line 5)"
    );
    assert_eq!(d.help.as_deref(), Some("remove one of the two entries"));
    let d = error(&os("  storage:\n    files: [{ path: /x }, { path: /x }]\n"));
    assert_eq!(at(&d), (5, 35));
    assert!(d.help.unwrap_or_default().contains("overwrite: true"));
    ok(&os(
        "  storage:\n    files: [{ path: /x }, { path: /x, overwrite: true }]\n",
    ));
    // Across layers.
    let os_part = os("  storage:\n    files: [{ path: /etc/x }]\n");
    let d = error(&format!(
        "{os_part}kubernetes:\n  storage:\n    files: [{{ path: /etc/x }}]\n"
    ));
    assert_eq!(d.path, "kubernetes.storage.files[0].path");
    assert!(d.message.ends_with("in the OS layer"), "{}", d.message);
    assert_eq!(at(&d), (8, 21));
    ok(&format!(
        "{os_part}kubernetes:\n  storage:\n    files: [{{ path: /etc/x, overwrite: true }}]\n"
    ));
    // A component's dest counts too.
    let d = error(&k8s(
        "  components: [{ name: k, local: k, dest: /usr/bin/k }]\n  storage: { files: [{ path: /usr/bin/k }] }\n",
    ));
    assert_eq!(d.path, "kubernetes.storage.files[0].path");
}

#[test]
fn systemd_units() {
    for good in [
        "a.service",
        "a@.service",
        "a@b.service",
        "x.socket",
        "x.timer",
        "x.mount",
        "x.target",
        "x.path",
        "x.slice",
    ] {
        ok(&os(&format!(
            "  systemd: {{ units: [{{ name: {good}, enabled: true }}] }}\n"
        )));
    }
    for (bad, help) in [
        ("kubelet", "did you mean `kubelet.service`?"),
        ("kubelet.servce", "did you mean `.service`?"),
        ("a/b.service", ""),
    ] {
        let d = error(&os(&format!(
            "  systemd: {{ units: [{{ name: {bad}, enabled: true }}] }}\n"
        )));
        assert_eq!(
            (d.path.as_str(), at(&d)),
            ("os.systemd.units[0].name", (4, 30)),
            "{bad}"
        );
        assert!(d.help.unwrap_or_default().contains(help), "{bad}");
    }
    let unit = |u: &str| errors(&os(&format!("  systemd:\n    units: [{u}]\n")));
    assert_eq!(
        unit("{ name: a.service, enabled: true, mask: true }")[0].message,
        "a unit cannot be both masked and enabled"
    );
    assert!(
        unit("{ name: a.service, contents: x, mask: true }")[0]
            .message
            .starts_with("a masked unit cannot have contents")
    );
    assert_eq!(
        unit("{ enabled: true }")[0].path,
        "os.systemd.units[0].name"
    );
    assert_eq!(
        unit("{ name: a.service, enabled: 1 }")[0].path,
        "os.systemd.units[0].enabled"
    );
    assert_eq!(
        unit("{ name: a.service, dropins: [{ name: x }] }")[0].path,
        "os.systemd.units[0].dropins[0].name"
    );
    assert_eq!(
        unit("{ name: a.service, dropins: [{ contents: x }] }")[0].path,
        "os.systemd.units[0].dropins[0].name"
    );
    assert!(
        unit("{ name: a.service, dropins: [{ name: a.conf }, { name: a.conf }] }")[0]
            .message
            .contains("already defined")
    );
    assert_eq!(
        unit("{ name: a.service, enabled: true }, { name: a.service, mask: true }")[0].path,
        "os.systemd.units[1].name"
    );
    // Enabling a unit that the spec does not define is fine (it may come from a package).
    let l = ok(&os(
        "  systemd: { units: [{ name: from-a-package.service, enabled: true }] }\n",
    ));
    assert!(l.warnings.is_empty());
    let l = ok(&os("  systemd: { units: [{ name: idle.service }] }\n"));
    assert!(l.warnings[0].message.contains("does nothing"));
}

#[test]
fn units_across_layers() {
    let os_part = os("  systemd: { units: [{ name: k.service, contents: a }] }\n");
    let d = error(&format!(
        "{os_part}kubernetes:\n  systemd: {{ units: [{{ name: k.service, contents: b }}] }}\n"
    ));
    assert!(d.message.contains("both the OS layer"), "{}", d.message);
    ok(&format!(
        "{os_part}kubernetes:\n  systemd: {{ units: [{{ name: k.service, enabled: true }}] }}\n"
    ));
}

#[test]
fn kubernetes_unit_enabled_but_never_defined_warns() {
    let unit = "  systemd: { units: [{ name: kubelet.service, enabled: true }] }\n";
    let l = ok(&k8s(unit));
    assert_eq!(l.warnings.len(), 1, "{:?}", l.warnings);
    let w = &l.warnings[0];
    assert_eq!(w.path, "kubernetes.systemd.units[0].name");
    assert_eq!(at(w), (4, 30));
    assert!(
        w.message
            .starts_with("unit `kubelet.service` is enabled but nothing in the spec defines it"),
        "{}",
        w.message
    );
    assert!(w.help.as_deref().unwrap_or_default().contains("base image"));
    // Anything that can ship the unit silences it: contents, a file at a unit path (either
    // layer), an OS unit with contents, an extracted component, an OS package named like it.
    for fix in [
        "  systemd: { units: [{ name: kubelet.service, enabled: true, contents: \"[Service]\\n\" }] }\n".to_string(),
        format!("{unit}  storage: {{ files: [{{ path: /etc/systemd/system/kubelet.service }}] }}\n"),
        format!("{unit}  storage: {{ files: [{{ path: /usr/lib/systemd/system/kubelet.service }}] }}\n"),
        format!("{unit}  components: [{{ name: k, local: k.tgz, extract: true }}]\n"),
    ] {
        assert!(ok(&k8s(&fix)).warnings.is_empty(), "{fix}");
    }
    let with_pkg = k8s(unit).replace(
        "from: debian:bookworm",
        "from: debian:bookworm, packages: [kubelet]",
    );
    assert!(ok(&with_pkg).warnings.is_empty());
    let with_os_unit = k8s(unit).replace(
        "from: debian:bookworm",
        "from: debian:bookworm, systemd: { units: [{ name: kubelet.service, contents: x }] }",
    );
    assert!(ok(&with_os_unit).warnings.is_empty());
    // Disabled or masked units need no definition; templates match their package by stem.
    assert!(ok(&k8s("  systemd: { units: [{ name: x.service, enabled: false }, { name: y.service, mask: true }] }\n")).warnings.is_empty());
    let tpl = k8s("  systemd: { units: [{ name: getty@tty1.service, enabled: true }] }\n");
    assert!(
        ok(&tpl.replace(
            "from: debian:bookworm",
            "from: debian:bookworm, packages: [getty]"
        ))
        .warnings
        .is_empty()
    );
}

#[test]
fn build_secrets_files_and_run_mappings() {
    let l = ok(&os(concat!(
        "  build:\n",
        "    secrets:\n",
        "      - { id: apt-auth, target: /etc/apt/auth.conf.d/p.conf }\n",
        "      - { id: token, env: API_TOKEN }\n",
        "      - { id: plain }\n",
        "    files:\n",
        "      - { path: /etc/apt/sources.list.d/p.list, contents: { inline: x } }\n",
        "      - { path: /etc/ssl/ca.crt, user: 0, contents: { local: ca.crt } }\n",
        "  storage: { files: [{ path: /etc/apt/sources.list.d/p.list }] }\n",
        "  run:\n",
        "    - echo a\n",
        "    - command: echo b\n",
        "      secrets: [{ id: extra, env: EXTRA }]\n",
    )));
    let o = &l.spec.os;
    let t: Vec<(&str, &SecretTarget)> = o
        .build
        .secrets
        .iter()
        .map(|s| (s.id.as_str(), &s.target))
        .collect();
    assert_eq!(
        t,
        [
            (
                "apt-auth",
                &SecretTarget::File("/etc/apt/auth.conf.d/p.conf".into())
            ),
            ("token", &SecretTarget::Env("API_TOKEN".into())),
            ("plain", &SecretTarget::File("/run/secrets/plain".into())),
        ]
    );
    assert_eq!(o.build.files.len(), 2);
    assert_eq!(o.build.files[1].contents, Contents::Local("ca.crt".into()));
    assert_eq!(o.run[0].value, "echo a");
    assert!(o.run[0].secrets.is_empty());
    assert_eq!(o.run[1].value, "echo b");
    assert_eq!(
        o.run[1].secrets[0].target,
        SecretTarget::Env("EXTRA".into())
    );
    assert_eq!(at_span(o.run[1].span), (15, 7));

    let e = |body: &str| errors(&os(body));
    let d = &e("  build: { secrets: [{ id: a, target: /x, env: X }] }\n")[0];
    assert!(d.message.contains("not both"), "{}", d.message);
    let d = &e("  build: { secrets: [{ id: \"a b\" }] }\n")[0];
    assert_eq!(d.path, "os.build.secrets[0].id");
    let d = &e("  build: { secrets: [{ id: a, env: 1X }] }\n")[0];
    assert_eq!(d.path, "os.build.secrets[0].env");
    let d = &e("  build: { secrets: [{ id: a, target: rel }] }\n")[0];
    assert_eq!(d.path, "os.build.secrets[0].target");
    let d = &e("  build: { secrets: [{ target: /x }] }\n")[0];
    assert_eq!(d.path, "os.build.secrets[0].id");
    let d = &e("  build: { secrets: [{ id: a }, { id: b, target: /run/secrets/a }] }\n")[0];
    assert!(
        d.message.contains("already given by secret `a`"),
        "{}",
        d.message
    );
    let d = &e("  build: { files: [{ path: /a }, { path: /a }] }\n")[0];
    assert_eq!(d.path, "os.build.files[1].path");
    let d = &e("  build: { files: [{ path: /a, user: core }] }\n")[0];
    assert_eq!(d.path, "os.build.files[0].user");
    let d = &e("  build: { files: [{ path: /a, overwrite: true }] }\n")[0];
    assert_eq!(d.path, "os.build.files[0].overwrite");
    let d = &e("  build: { secret: [] }\n")[0];
    assert_eq!(d.help.as_deref(), Some("did you mean `secrets`?"));
    let d = &e("  run: [{ secrets: [{ id: a }] }]\n")[0];
    assert_eq!(
        d.message,
        "missing required key `command` (a shell command)"
    );
    let d = &e("  run: [{ command: x, secret: [] }]\n")[0];
    assert_eq!(d.path, "os.run[0].secret");
}

fn at_span(s: Span) -> (u32, u32) {
    (s.start.line, s.start.col)
}

#[test]
fn passwd() {
    let d = error(&os(
        "  passwd:\n    users: [{ name: core, password: hunter2 }]\n",
    ));
    assert_eq!(d.path, "os.passwd.users[0].password");
    assert_eq!(at(&d), (5, 27));
    assert!(d.help.unwrap_or_default().contains("password_hash"));
    let l = ok(&os(
        "  passwd:\n    users: [{ name: core, password_hash: hunter2 }]\n",
    ));
    assert!(
        l.warnings[0]
            .message
            .contains("does not look like a crypt(3) hash")
    );
    for (bad, path) in [
        ("users: [{ name: Core }]", "os.passwd.users[0].name"),
        ("users: [{ uid: 1 }]", "os.passwd.users[0].name"),
        ("users: [{ name: a, uid: -1 }]", "os.passwd.users[0].uid"),
        ("users: [{ name: a, uid: x }]", "os.passwd.users[0].uid"),
        (
            "users: [{ name: a, groups: [Wheel] }]",
            "os.passwd.users[0].groups[0]",
        ),
        (
            "users: [{ name: a, shell: bash }]",
            "os.passwd.users[0].shell",
        ),
        (
            "users: [{ name: a, ssh_authorized_keys: [\"a\\nb\"] }]",
            "os.passwd.users[0].ssh_authorized_keys[0]",
        ),
        (
            "users: [{ name: a, home_dir: /x }]",
            "os.passwd.users[0].home_dir",
        ),
        (
            "users: [{ name: a }, { name: a }]",
            "os.passwd.users[1].name",
        ),
        ("groups: [{ name: g, gid: 1.5 }]", "os.passwd.groups[0].gid"),
        ("groups: [{ gid: 1 }]", "os.passwd.groups[0].name"),
        (
            "groups: [{ name: g }, { name: g }]",
            "os.passwd.groups[1].name",
        ),
    ] {
        let d = error(&os(&format!("  passwd:\n    {bad}\n")));
        assert_eq!(d.path, path, "{bad}");
    }
}

// ---- kubernetes --------------------------------------------------------------------------------

#[test]
fn kubernetes_components() {
    let sha = "a".repeat(64);
    let c = ok(&k8s(&format!("  components:\n    - {{ name: kubelet, url: \"https://h/kubelet\", sha256: {sha} }}\n    - {{ name: containerd, local: c.tgz, extract: true, dest: /usr/local }}\n"))).spec;
    let comps = c.kubernetes.unwrap_or_default().components;
    assert_eq!(comps.len(), 2);
    assert!(matches!(&comps[0].source, ComponentSource::Http { sha256, .. } if *sha256 == sha));
    assert_eq!(comps[0].dest, None);
    assert!(comps[1].extract);
    for (bad, path, needle) in [
        (
            "{ name: Kubelet, local: k }".to_owned(),
            "kubernetes.components[0].name",
            "lowercase",
        ),
        (
            "{ local: k }".to_owned(),
            "kubernetes.components[0].name",
            "missing",
        ),
        (
            "{ name: k }".to_owned(),
            "kubernetes.components[0]",
            "needs `url` + `sha256`",
        ),
        (
            "{ name: k, url: \"https://h/k\" }".to_owned(),
            "kubernetes.components[0].sha256",
            "needs `sha256`",
        ),
        (
            format!("{{ name: k, url: \"https://h/k\", sha256: {sha}, local: k }}"),
            "kubernetes.components[0]",
            "not both",
        ),
        (
            format!("{{ name: k, local: k, sha256: {sha} }}"),
            "kubernetes.components[0].sha256",
            "only applies",
        ),
        (
            format!(
                "{{ name: k, url: \"https://h/k\", sha256: {} }}",
                "A".repeat(64)
            ),
            "kubernetes.components[0].sha256",
            "lowercase",
        ),
        (
            "{ name: k, url: \"https://h/k\", sha256: abc }".to_owned(),
            "kubernetes.components[0].sha256",
            "64",
        ),
        (
            format!("{{ name: k, url: \"file:///k\", sha256: {sha} }}"),
            "kubernetes.components[0].url",
            "http",
        ),
        (
            "{ name: k, local: /abs }".to_owned(),
            "kubernetes.components[0].local",
            "relative",
        ),
        (
            "{ name: k, local: ../k }".to_owned(),
            "kubernetes.components[0].local",
            "..",
        ),
        (
            "{ name: k, local: k, dest: usr/bin }".to_owned(),
            "kubernetes.components[0].dest",
            "absolute",
        ),
        (
            "{ name: k, local: k, mode: 999999 }".to_owned(),
            "kubernetes.components[0].mode",
            "above",
        ),
        (
            "{ name: k, local: k, extract: yes }".to_owned(),
            "kubernetes.components[0].extract",
            "true or false",
        ),
        (
            "{ name: k, lcoal: k }".to_owned(),
            "kubernetes.components[0]",
            "needs",
        ),
    ] {
        let e = errors(&k8s(&format!("  components:\n    - {bad}\n")));
        assert!(
            e.iter()
                .any(|d| d.path == path && d.message.contains(needle)),
            "{bad}: {}",
            Diagnostics(e.clone())
        );
    }
    let d = error(&k8s(
        "  components:\n    - { name: k, local: a }\n    - { name: k, local: b }\n",
    ));
    assert_eq!(
        (d.path.as_str(), at(&d)),
        ("kubernetes.components[1].name", (6, 15))
    );
    let e = errors(&k8s("  components:\n    - { name: k, lcoal: k }\n"));
    assert!(
        e.iter()
            .any(|d| d.help.as_deref() == Some("did you mean `local`?"))
    );
}

#[test]
fn kubernetes_version_sysctl_modules() {
    let k = ok(&k8s("  version: 1.30\n  sysctl:\n    b.c: 1\n    a.b: \"x y\"\n    vm.swappiness: 010\n  modules: [overlay]\n")).spec.kubernetes.unwrap_or_default();
    assert_eq!(
        k.version.map(|v| v.value),
        Some("1.30".into()),
        "plain 1.30 stays 1.30"
    );
    let pairs: Vec<(String, String)> = k
        .sysctl
        .into_iter()
        .map(|(a, b)| (a.value, b.value))
        .collect();
    assert_eq!(
        pairs,
        [
            ("b.c".into(), "1".into()),
            ("a.b".into(), "x y".into()),
            ("vm.swappiness".into(), "010".into())
        ]
    );
    for (bad, path) in [
        ("sysctl: { \"a b\": 1 }", "kubernetes.sysctl[\"a b\"]"),
        ("sysctl: { a: [1] }", "kubernetes.sysctl[\"a\"]"),
        ("sysctl: [a]", "kubernetes.sysctl"),
        ("modules: [\"overlay x=1\"]", "kubernetes.modules[0]"),
        ("modules: overlay", "kubernetes.modules"),
        ("version: [1]", "kubernetes.version"),
        ("verison: 1", "kubernetes.verison"),
    ] {
        let d = error(&k8s(&format!("  {bad}\n")));
        assert_eq!(d.path, path, "{bad}");
    }
    let d = error(&k8s("  sysctl: { a: 1, a: 2 }\n"));
    assert_eq!(d.message, "duplicate key `a`");
}

#[test]
fn kubelet_without_runtime_warns() {
    let sha = "a".repeat(64);
    let spec = k8s(&format!(
        "  components: [{{ name: kubelet, url: \"https://h/k\", sha256: {sha} }}]\n"
    ));
    let l = ok(&spec);
    assert_eq!(l.warnings.len(), 1);
    assert!(l.warnings[0].message.contains("no container runtime"));
    let with_pkg = spec.replace(
        "from: debian:bookworm",
        "from: debian:bookworm, packages: [containerd]",
    );
    assert!(ok(&with_pkg).warnings.is_empty());
}

// ---- disk ----------------------------------------------------------------------------------------

#[test]
fn disk_fields() {
    for (size, bytes) in [
        ("8GiB", 8u64 << 30),
        ("512MiB", 512 << 20),
        ("1TiB", 1 << 40),
        ("64KiB", 64 << 10),
        ("1048576", 1 << 20),
    ] {
        assert_eq!(
            ok(&disk(&format!("  size: {size}\n")))
                .spec
                .disk
                .unwrap_or_default()
                .size,
            Some(bytes)
        );
    }
    for bad in [
        "8GB", "\"8 GB\"", "8G", "8gib", "1.5GiB", "0", "-1", "1000", "big",
    ] {
        let d = error(&disk(&format!("  size: {bad}\n")));
        assert_eq!((d.path.as_str(), at(&d)), ("disk.size", (4, 9)), "{bad}");
    }
    let d = error(&disk("  size: 8GB\n"));
    assert_eq!(
        d.message,
        "expected a size in bytes or with a binary unit (KiB, MiB, GiB, TiB) like 8GiB, got \"8GB\""
    );
    for (key, bad, needle) in [
        ("firmware", "efi", "expected one of uefi, bios, hybrid"),
        ("bootloader", "grub", "only `systemd-boot` is supported"),
        ("filesystem", "xfs", "only `ext4` is supported"),
        (
            "formats",
            "[raw, vdi]",
            "expected one of raw, qcow2, vmdk, vhd, ova, gce",
        ),
    ] {
        let d = error(&disk(&format!("  {key}: {bad}\n")));
        assert!(d.message.contains(needle), "{key}: {}", d.message);
    }
    assert_eq!(
        error(&disk("  firmware: UEFI\n")).help.as_deref(),
        Some("did you mean `uefi`?")
    );
    assert_eq!(
        error(&disk("  bootloader: systemd_boot\n")).help.as_deref(),
        Some("did you mean `systemd-boot`?")
    );
    assert_eq!(
        error(&disk("  formats: [qcow]\n")).help.as_deref(),
        Some("did you mean `qcow2`?")
    );
    assert_eq!(
        error(&disk("  formats: [raw, VHD]\n")).path,
        "disk.formats[1]"
    );
    let l = ok(&disk("  formats: [raw, raw]\n"));
    assert_eq!(l.spec.disk.unwrap_or_default().formats, [Format::Raw]);
    assert_eq!(l.warnings.len(), 1);
    assert_eq!(error(&disk("  formats: raw\n")).path, "disk.formats");
    assert_eq!(
        error(&disk("  sise: 8GiB\n")).help.as_deref(),
        Some("did you mean `size`?")
    );
}

// ---- variables -----------------------------------------------------------------------------------

#[test]
fn build_arg_substitution() {
    let src = "version: 1\nname: ${NAME:-n}\nos:\n  from: debian:${SUITE}\nkubernetes:\n  version: ${KUBERNETES_VERSION}\n";
    let l = load_with(
        src,
        &[("SUITE", "trixie"), ("KUBERNETES_VERSION", "1.32.0")],
    )
    .unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(l.spec.name, "n");
    assert_eq!(l.spec.os.from.value, "debian:trixie");
    assert_eq!(
        l.spec.kubernetes.and_then(|k| k.version).map(|v| v.value),
        Some("1.32.0".into())
    );
    // Undefined variables: each reported at the reference itself.
    let d = load_with(src, &[]).err().unwrap_or_default();
    let got: Vec<(u32, u32, &str)> =
        d.0.iter()
            .map(|d| (at(d).0, at(d).1, d.message.as_str()))
            .collect();
    assert_eq!(
        got,
        [
            (4, 16, "undefined variable `SUITE`"),
            (6, 12, "undefined variable `KUBERNETES_VERSION`")
        ]
    );
    assert!(
        d.0[0]
            .help
            .as_deref()
            .unwrap_or_default()
            .contains("--build-arg SUITE=<value>")
    );
    // Substitution happens before validation of the value.
    let d = load_with(src, &[("SUITE", "Bad Suite"), ("KUBERNETES_VERSION", "1")])
        .err()
        .unwrap_or_default();
    assert_eq!(d.0[0].path, "os.from");
    let m = load_with(
        &file("{ path: \"/etc/${F}\", mode: \"${M}\" }"),
        &[("F", "x"), ("M", "0600")],
    )
    .unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(
        (
            m.spec.os.storage.files[0].path.as_str(),
            m.spec.os.storage.files[0].mode
        ),
        ("/etc/x", Some(0o600))
    );
    // `$$` escapes, inside quoted scalars the position is still exact.
    let d = error(&file("{ path: /x, contents: { inline: \"a $$ ${X}\" } }"));
    assert_eq!(at(&d), (6, 41));
    // Keys are not substituted.
    assert_eq!(
        error(&os("  ${X}: 1\n")).message.split(';').next(),
        Some("unknown key `${X}`")
    );
}

// ---- hostile and broken YAML -----------------------------------------------------------------

/// Loads `bytes`, failing if the loader hangs. A hang detector, not a speed measurement (those
/// are benchmarks): a 10 MiB spec takes seconds in a debug build under a parallel test load
/// (5.4 s once in CI), so the bound is generous.
#[track_caller]
fn quick(bytes: &[u8]) -> Result<Loaded, Diagnostics> {
    let t = Instant::now();
    let r = load("node.yaml", bytes, &BTreeMap::new());
    assert!(
        t.elapsed() < Duration::from_secs(60),
        "took {:?}",
        t.elapsed()
    );
    r
}

#[test]
fn alias_bomb_is_bounded() {
    let mut src =
        String::from("version: 1\nos: { from: x }\na0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        let p = i - 1;
        src.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    let d = quick(src.as_bytes()).err().unwrap_or_default();
    assert_eq!(d.0.len(), 1);
    assert!(
        d.0[0].message.contains("more than 1000000 YAML nodes"),
        "{}",
        d.0[0].message
    );
    assert!(
        d.0[0]
            .help
            .as_deref()
            .unwrap_or_default()
            .contains("alias bomb")
    );
}

#[test]
fn aliases_work_within_budget() {
    let src = "version: 1\nos:\n  from: debian\n  packages: &p [jq]\n  kernel_arguments: *p\n  systemd:\n    units:\n      - &u { name: a.service, enabled: true }\n";
    let s = ok(src).spec;
    assert_eq!(s.os.kernel_arguments[0].value, "jq");
    let item = s.os.kernel_arguments[0].span.start;
    assert_eq!(
        (item.line, item.col),
        (4, 17),
        "items of an aliased list point at the anchored original"
    );
    let d = error("version: 1\nos: &o { from: x, packages: *o }\n");
    assert!(
        d.message.contains("recursive") || d.message.contains("alias"),
        "{}",
        d.message
    );
    let d = error("version: 1\nos: { from: x, packages: *nope }\n");
    assert!(d.message.starts_with("invalid YAML"), "{}", d.message);
    let d = errors("version: 1\nos:\n  <<: { from: x }\n").remove(0);
    assert!(d.help.unwrap_or_default().contains("merge keys"));
}

#[test]
fn deep_nesting_is_an_error() {
    let block: String = (0..200)
        .map(|i| format!("{}- \n", " ".repeat(i * 2)))
        .collect();
    let d = quick(format!("version: 1\nos: {{ from: x }}\nx:\n{block}").as_bytes())
        .err()
        .unwrap_or_default();
    assert!(
        d.0[0].message.contains("nests deeper than 64 levels"),
        "{}",
        d.0[0].message
    );
    let flow = format!(
        "version: 1\nx: {}{}\n",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let d = quick(flow.as_bytes()).err().unwrap_or_default();
    assert_eq!(d.0.len(), 1);
    let flow = format!("version: 1\nx: {}{}\n", "{a: ".repeat(50), "}".repeat(50));
    assert!(quick(flow.as_bytes()).is_err());
}

#[test]
fn size_limit() {
    let big = format!(
        "version: 1\nos: {{ from: x }}\n# {}\n",
        "x".repeat(MAX_SIZE)
    );
    let d = quick(big.as_bytes()).err().unwrap_or_default();
    assert!(
        d.0[0].message.contains("larger than 10 MiB"),
        "{}",
        d.0[0].message
    );
    // 50 MB, the example.
    let huge = vec![b'a'; 50 * 1000 * 1000];
    assert!(quick(&huge).is_err());
    // Just under the limit, many nodes: accepted quickly or rejected, never slow.
    let many = format!(
        "version: 1\nos:\n  from: x\n  run:\n{}",
        "  - a\n".repeat(MAX_SIZE / 7)
    );
    let _ = quick(many.as_bytes());
}

#[test]
fn duplicate_keys() {
    let e = errors("version: 1\nos:\n  from: a\n  from: b\nversion: 1\n");
    let got: Vec<(u32, u32, &str)> = e
        .iter()
        .map(|d| (at(d).0, at(d).1, d.message.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (4, 3, "duplicate key `from`"),
            (5, 1, "duplicate key `version`")
        ]
    );
    assert_eq!(
        e[0].help.as_deref(),
        Some("the key is first defined on line 3; keep only one")
    );
}

#[test]
fn tabs_bom_utf8_empty() {
    let d = error("version: 1\nos:\n\tfrom: x\n");
    assert!(d.message.starts_with("invalid YAML"));
    assert_eq!(
        d.help.as_deref(),
        Some("YAML does not allow tabs for indentation; indent with spaces")
    );
    assert_eq!(at(&d), (3, 1));
    // The scanner stops at the scalar before the tab (3:9); the diagnostic points at the tab.
    for (src, pos) in [
        ("version: 1\nos:\n  from: debian\n\tpackages: [x]\n", (4, 1)),
        (
            "version: 1\nos:\n  from: debian\n\n  # c\n  \tpackages: [x]\n",
            (6, 3),
        ),
    ] {
        let d = error(src);
        assert_eq!(at(&d), pos, "{src:?}: {d:?}");
        let span = d.span.unwrap();
        assert_eq!(&src[span.start.offset..span.end.offset], "\t");
        assert_eq!(
            d.help.as_deref(),
            Some("YAML does not allow tabs for indentation; indent with spaces")
        );
    }
    // A tab inside a value is fine.
    assert_eq!(
        ok("version: 1\nos: { from: x, run: [\"a\tb\"] }\n")
            .spec
            .os
            .run[0]
            .value,
        "a\tb"
    );
    // BOM.
    let bom = "\u{feff}version: 1\nos:\n  from: x\n  packages: [-bad]\n";
    let d = error(bom);
    assert_eq!(at(&d), (4, 14));
    assert_eq!(&bom[d.span.unwrap_or_default().start.offset..][..4], "-bad");
    assert!(d.render(bom).contains("4 |   packages: [-bad]\n"));
    ok("\u{feff}version: 1\nos: { from: x }\n");
    // CRLF.
    let d = error("version: 1\r\nos:\r\n  from: x\r\n  packages: [-bad]\r\n");
    assert_eq!(at(&d), (4, 14));
    // Invalid UTF-8.
    let d = quick(b"version: 1\nos: { from: \xff }\n")
        .err()
        .unwrap_or_default();
    assert_eq!(
        d.0[0].message,
        "the spec is not valid UTF-8 (invalid byte 0xff)"
    );
    assert_eq!(at(&d.0[0]), (2, 13));
    // Empty in all its forms.
    for empty in ["", "\n\n", "# just a comment\n", "~\n", "---\n", "\u{feff}"] {
        let d = error(empty);
        assert!(
            d.message.starts_with("the spec is empty"),
            "{empty:?}: {}",
            d.message
        );
    }
    // More than one document.
    let d = error("version: 1\nos: { from: x }\n---\nversion: 1\n");
    assert!(d.message.contains("more than one YAML document"));
}

#[test]
fn garbage_never_panics() {
    let inputs: Vec<Vec<u8>> = vec![
        b"{".to_vec(),
        b"]".to_vec(),
        b"version: 1\nos: {from: x\n".to_vec(),
        b"\"unterminated".to_vec(),
        b"!!binary aGVsbG8=".to_vec(),
        b"? [a]\n: b\n".to_vec(),
        b"version: 1\nos: { ? from : x }\n".to_vec(),
        b"&a a: *a\n".to_vec(),
        b"%YAML 1.1\n---\nversion: 1\n".to_vec(),
        b"\x00\x01\x02".to_vec(),
        b"version: !!int 1\nos: { from: !custom x }\n".to_vec(),
        b"version: 1\nos: { from: x }\nkubernetes: { sysctl: { ? [a] : b } }\n".to_vec(),
        "version: 1\nos: { from: \"\u{1F600}\" }\n".as_bytes().to_vec(),
        b"version: 1\nos:\n  from: x\n  storage:\n    files:\n      - path: /a\n        contents:\n          inline: |\n            text\n          local: a\n".to_vec(),
    ];
    for input in inputs {
        let _ = quick(&input);
    }
    // Every prefix of the full fixture: errors, never panics.
    for end in (0..FULL.len()).filter(|&i| FULL.is_char_boundary(i)) {
        if let Err(d) = quick(&FULL.as_bytes()[..end]) {
            let _ = d.render(&FULL[..end]);
        }
    }
}

#[test]
fn kubernetes_images_normalise_their_refs_and_report_bad_entries_at_their_lines() {
    let sha = "b".repeat(64);
    let spec = ok(&k8s(&format!(
        "  images:\n    - {{ ref: pause:3.10, archive: images/pause.tar }}\n    - {{ ref: registry.k8s.io/coredns/coredns:v1.11.3, archive: images/dns.tar, sha256: {sha} }}\n"
    )))
    .spec;
    let imgs = spec.kubernetes.unwrap_or_default().images;
    assert_eq!(imgs.len(), 2);
    assert_eq!(imgs[0].reference, "docker.io/library/pause:3.10");
    assert_eq!(imgs[0].archive, "images/pause.tar");
    assert_eq!(imgs[0].sha256, None);
    assert_eq!(imgs[1].reference, "registry.k8s.io/coredns/coredns:v1.11.3");
    assert_eq!(imgs[1].sha256.as_deref(), Some(sha.as_str()));

    // Every bad entry at once, each at its line.
    let e = errors(&k8s(
        "  images:\n    - { ref: Pause:3.10, archive: a.tar }\n    - { ref: pause:3.10, archive: a.tar }\n    - { ref: docker.io/library/pause:3.10, archive: b.tar }\n    - { ref: x:1 }\n    - { ref: y:1, archive: y.tar, sha256: abc }\n    - { ref: z:1, archive: /abs.tar }\n    - { ref: w:1, archive: w.tar, digest: sha256:0 }\n",
    ));
    let got: Vec<(u32, String, String)> = e
        .iter()
        .map(|d| (at(d).0, d.path.clone(), d.message.clone()))
        .collect();
    let has = |line: u32, path: &str, needle: &str| {
        assert!(
            got.iter()
                .any(|(l, p, m)| *l == line && p == path && m.contains(needle)),
            "no error at line {line} {path} containing {needle:?} in {got:#?}"
        );
    };
    has(5, "kubernetes.images[0].ref", "is not an image reference");
    has(
        7,
        "kubernetes.images[2].ref",
        "`docker.io/library/pause:3.10` is already defined on line 6",
    );
    has(
        8,
        "kubernetes.images[3].archive",
        "missing required key `archive`",
    );
    has(9, "kubernetes.images[4].sha256", "64");
    has(
        10,
        "kubernetes.images[5].archive",
        "archive paths are relative to the build context",
    );
    has(11, "kubernetes.images[6].digest", "unknown key");
    assert_eq!(got.len(), 6, "{got:#?}");
}

#[test]
fn tests_images_take_a_ref_and_an_optional_digest() {
    let d = format!("sha256:{}", "c".repeat(64));
    let l = ok(&format!(
        "version: 1\nos: {{ from: debian:bookworm }}\ntests:\n  images:\n    - {{ ref: pause:3.10 }}\n    - {{ ref: registry.k8s.io/pause:3.10, digest: \"{d}\" }}\n"
    ));
    let t = l.spec.tests.unwrap_or_default();
    assert_eq!(t.images.len(), 2);
    assert_eq!(t.images[0].reference, "docker.io/library/pause:3.10");
    assert_eq!(t.images[0].digest, None);
    assert_eq!(t.images[1].digest.as_deref(), Some(d.as_str()));
    let e = errors(
        "version: 1\nos: { from: debian:bookworm }\ntests:\n  images:\n    - { ref: \"a b\" }\n    - { ref: pause, digest: abc }\n",
    );
    assert_eq!(e.len(), 2, "{}", Diagnostics(e.clone()));
    assert_eq!(at(&e[0]).0, 5);
    assert_eq!(e[1].path, "tests.images[1].digest");
    assert!(e[1].message.contains("sha256:"), "{}", e[1].message);
}
