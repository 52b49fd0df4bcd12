//! Big specs on the engine: thousands of inline files and one of 8 MB build, because their
//! contents reach BuildKit in the spec file rather than in the definition (see the frontend's
//! `compile::inline`), and the layers stay independent: an OS-only change leaves the
//! Kubernetes layers identical and the reverse. The specs are generated in a temporary
//! directory. Run with `cargo test -- --ignored` (hack/test does).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use common::{Images, build, docker, layers, steps, text, unique_tag, write_spec};

const MODES: [&str; 4] = ["0600", "0640", "0644", "0755"];

/// `n` files of about 1 KB under `/etc/big-<layer>/`, the one at `changed` with other contents.
fn files(layer: &str, n: usize, changed: Option<usize>) -> String {
    let mut s = String::from("  storage:\n    files:\n");
    for i in 0..n {
        s += &format!(
            "      - path: /etc/big-{layer}/f{i:05}.conf\n        mode: {}\n        contents:\n          inline: |\n            {layer} file {i}{}\n",
            MODES[i % 4],
            if changed == Some(i) { " (changed)" } else { "" }
        );
        for _ in 0..15 {
            s += "            xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n";
        }
    }
    s
}

/// 4,000 OS files and 1,000 Kubernetes files of 1 KB, plus files that test what inline files
/// have always done: a build arg in the contents, an owner by name, a setuid mode, a base-image
/// file replaced.
fn spec_5000(os_changed: Option<usize>, k8s_changed: Option<usize>) -> String {
    let mut os = files("os", 4000, os_changed);
    os +=
        "      - { path: /etc/big-os/arg, contents: { inline: \"value=${BIGSPEC_VALUE}\\n\" } }\n";
    os += "      - { path: /etc/big-os/owned, user: nobody, group: nogroup, mode: 0640, contents: { inline: \"owned\\n\" } }\n";
    os += "      - { path: /usr/local/bin/big-suid, mode: 04755, contents: { inline: \"#!/bin/sh\\n\" } }\n";
    os += "      - { path: /etc/debian_version, mode: 0600, contents: { inline: \"big\\n\" } }\n";
    format!(
        "version: 1\nname: big\nos:\n  from: debian:bookworm\n{os}kubernetes:\n  version: \"1.32.3\"\n{}",
        files("k8s", 1000, k8s_changed)
    )
}

/// `docker export` of an image as `tar -tv` lines.
fn listing(tag: &str) -> String {
    let created = docker(&["create", tag, "/bin/true"]);
    assert!(created.status.success(), "{}", text(&created));
    let id = String::from_utf8_lossy(&created.stdout).trim().to_string();
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("docker export {id} | tar -tvf -"))
        .output()
        .unwrap();
    let _ = docker(&["rm", "-f", &id]);
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn cat(tag: &str, path: &str) -> String {
    let out = docker(&["run", "--rm", "--network", "none", tag, "cat", path]);
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// Builds the node and the kubernetes target of `spec`; returns the node's OS layers, its
/// Kubernetes layers and the node build's log.
fn build_split(
    dir: &Path,
    spec: &str,
    name: &str,
    images: &mut Images,
) -> (Vec<String>, Vec<String>, String) {
    let path = write_spec(dir, "big.yaml", spec);
    let [node, k8s] = ["node", "kubernetes"].map(|t| unique_tag(&format!("big-{t}-{name}")));
    images.0.extend([node.clone(), k8s.clone()]);
    let args = ["--build-arg", "BIGSPEC_VALUE=42"];
    let t = Instant::now();
    let (ok, log) = build(Path::new(&path), "node", Some(&node), &args, dir);
    assert!(ok, "{name} failed to build:\n{log}");
    eprintln!("{name}: node built in {:.1?}", t.elapsed());
    let (ok, out) = build(Path::new(&path), "kubernetes", Some(&k8s), &args, dir);
    assert!(ok, "{name} --target kubernetes failed:\n{out}");
    let (all, k8s) = (layers(&node), layers(&k8s));
    let at = all
        .iter()
        .position(|l| *l == k8s[0])
        .unwrap_or_else(|| panic!("the node has no Kubernetes layers: {all:?} / {k8s:?}"));
    assert_eq!(all[at..at + k8s.len()], k8s[..]);
    (all[..at].to_vec(), k8s, log)
}

/// 5,000 inline files build, land with their modes (and owner, build arg, setuid bit, a
/// replaced base file), and the layers stay independent across OS-only and Kubernetes-only
/// changes.
#[test]
#[ignore = "needs the docker engine; run by hack/test"]
fn five_thousand_inline_files_build_with_their_modes_and_independent_layers() {
    let dir = tempfile::tempdir().unwrap();
    let mut images = Images(Vec::new());
    let (os_a, k8s_a, log) = build_split(dir.path(), &spec_5000(None, None), "a", &mut images);
    assert!(
        log.contains("[os] inline contents: 4004 files from big.yaml"),
        "{log}"
    );
    assert!(
        log.contains("[kubernetes] inline contents: 1000 files from big.yaml"),
        "{log}"
    );

    let node = &images.0[0];
    let list = listing(node);
    let entry = |path: &str| {
        list.lines()
            .find(|l| l.ends_with(&format!(" {path}")))
            .unwrap_or_else(|| panic!("{path} not in the image"))
            .to_string()
    };
    let expect_mode = |mode: &str| match mode {
        "0600" => "-rw-------",
        "0640" => "-rw-r-----",
        "0644" => "-rw-r--r--",
        _ => "-rwxr-xr-x",
    };
    for (layer, n) in [("os", 4000), ("k8s", 1000)] {
        let found = list
            .lines()
            .filter(|l| l.contains(&format!(" etc/big-{layer}/f")))
            .count();
        assert_eq!(found, n, "{layer} files in the image");
        for i in [0, 1, 2, 3, n - 1] {
            let e = entry(&format!("etc/big-{layer}/f{i:05}.conf"));
            assert!(e.starts_with(expect_mode(MODES[i % 4])), "{e}");
            let size = format!("{layer} file {i}\n").len() + 15 * 65;
            assert!(e.contains(&format!(" {size} ")), "{size} bytes: {e}");
        }
    }
    assert!(entry("usr/local/bin/big-suid").starts_with("-rwsr-xr-x"));
    let owned = entry("etc/big-os/owned");
    assert!(owned.starts_with("-rw-r-----"), "{owned}");
    // nobody:nogroup in debian:bookworm.
    assert!(owned.contains(" 65534/65534 "), "{owned}");
    assert!(entry("etc/debian_version").starts_with("-rw-------"));
    assert_eq!(cat(node, "/etc/debian_version"), "big\n");
    assert_eq!(cat(node, "/etc/big-os/arg"), "value=42\n");
    assert!(cat(node, "/etc/big-k8s/f00999.conf").starts_with("k8s file 999\nxxxx"));

    // One OS file changed: the Kubernetes layers identical, their steps re-used.
    let (os_b, k8s_b, log) = build_split(dir.path(), &spec_5000(Some(1), None), "b", &mut images);
    assert_ne!(os_a, os_b, "the OS layers should differ");
    assert_eq!(
        k8s_a, k8s_b,
        "Kubernetes layer digests changed after an OS-only change"
    );
    let s = steps(&log);
    let k8s_steps: Vec<_> = s
        .iter()
        .filter(|(n, _)| n.starts_with("[kubernetes "))
        .collect();
    assert!(
        !k8s_steps.is_empty() && k8s_steps.iter().all(|(_, c)| **c),
        "Kubernetes steps not all re-used: {k8s_steps:?}"
    );
    assert!(cat(&images.0[2], "/etc/big-os/f00001.conf").starts_with("os file 1 (changed)\n"));

    // One Kubernetes file changed: the OS layers identical, their steps re-used.
    let (os_c, k8s_c, log) = build_split(dir.path(), &spec_5000(None, Some(1)), "c", &mut images);
    assert_eq!(
        os_a, os_c,
        "OS layer digests changed after a Kubernetes-only change"
    );
    assert_ne!(k8s_a, k8s_c, "the Kubernetes layers should differ");
    let s = steps(&log);
    let os_steps: Vec<_> = s.iter().filter(|(n, _)| n.starts_with("[os ")).collect();
    assert!(
        !os_steps.is_empty() && os_steps.iter().all(|(_, c)| **c),
        "OS steps not all re-used: {os_steps:?}"
    );
}

/// One inline file of 8 MB builds (4 MiB was the ceiling).
#[test]
#[ignore = "needs the docker engine; run by hack/test"]
fn an_eight_megabyte_inline_file_builds() {
    let dir = tempfile::tempdir().unwrap();
    let line = format!("            {}\n", "y".repeat(99));
    let spec = format!(
        "version: 1\nname: big8\nos:\n  from: debian:bookworm\n  storage:\n    files:\n      - path: /opt/blob.txt\n        contents:\n          inline: |\n{}",
        line.repeat(80_000)
    );
    let path = write_spec(dir.path(), "big8.yaml", &spec);
    let tag = unique_tag("big8");
    let _images = Images(vec![tag.clone()]);
    let t = Instant::now();
    let (ok, log) = build(Path::new(&path), "os", Some(&tag), &[], dir.path());
    assert!(ok, "the 8 MB spec failed to build:\n{log}");
    eprintln!("8 MB file: built in {:.1?}", t.elapsed());
    let out = docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        &tag,
        "wc",
        "-c",
        "/opt/blob.txt",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "8000000 /opt/blob.txt",
        "{}",
        text(&out)
    );
}

/// A definition still over BuildKit's limit (a 5 MB `run:` script, which stays in the
/// definition) fails in the frontend, before BuildKit is asked, at the entry's spec line with
/// the size and the limit — not with gRPC's "received message larger than max".
#[test]
#[ignore = "needs the docker engine; run by hack/test"]
fn a_definition_over_the_limit_fails_at_its_spec_line() {
    let dir = tempfile::tempdir().unwrap();
    let script = format!("      echo {}\n", "x".repeat(70)).repeat(70_000);
    let path = write_spec(
        dir.path(),
        "node.yaml",
        &format!(
            "version: 1\nos:\n  from: debian:bookworm\n  run:\n    - echo small\n    - |\n{script}"
        ),
    );
    let (ok, log) = build(Path::new(&path), "os", None, &[], dir.path());
    assert!(!ok, "the build should fail");
    // The spec has a `# syntax=` line first: the script starts on line 8.
    assert!(
        log.contains("node.yaml:8:7: os.run[1]: the build definition is 5.1 MiB"),
        "{}",
        &log[log.len().saturating_sub(3000)..]
    );
    assert!(log.contains("over the limit of 4128768 bytes"));
    assert!(!log.contains("larger than max"));
    assert!(
        log.lines().count() < 200,
        "{} lines of log",
        log.lines().count()
    );
}
