//! Engine tests of the layer split: testdata/engine specs built by the real Docker
//! Engine BuildKit through `docker buildx build`. Run with `cargo test -- --ignored`
//! (hack/test does, after hack/setup, hack/components and hack/build-frontend).

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{Images, build, components_context, docker, layers, repo, steps, text, unique_tag};

fn spec(name: &str) -> PathBuf {
    repo().join("testdata/engine").join(name)
}

/// A node image's layers, split: the OS layers, then the Kubernetes layers, then whatever the
/// node adds on top of both (finalize, provenance).
struct NodeLayers {
    os: Vec<String>,
    kubernetes: Vec<String>,
    on_top: Vec<String>,
}

/// Builds `name` as the node image, and as the os and kubernetes images to learn which of the
/// node's layers are which; returns the split and the progress log of the node build.
fn node_layers(name: &str, images: &mut Images) -> (NodeLayers, String) {
    let ctx = components_context();
    let stem = name.trim_end_matches(".yaml");
    let [node, os, k8s] = ["node", "os", "kubernetes"].map(|t| unique_tag(&format!("{t}-{stem}")));
    images.0.extend([node.clone(), os.clone(), k8s.clone()]);
    let (ok, log) = build(&spec(name), "node", Some(&node), &[], &ctx);
    assert!(ok, "{name} failed to build:\n{log}");
    for (target, tag) in [("os", &os), ("kubernetes", &k8s)] {
        let (ok, out) = build(&spec(name), target, Some(tag), &[], &ctx);
        assert!(ok, "{name} --target {target} failed:\n{out}");
    }
    let (all, os, k8s) = (layers(&node), layers(&os), layers(&k8s));
    assert_eq!(
        all[..os.len()],
        os[..],
        "the node image starts with the OS image's layers"
    );
    let rest = &all[os.len()..];
    assert_eq!(
        rest[..k8s.len()],
        k8s[..],
        "the node image's Kubernetes layers are the kubernetes image's layers"
    );
    let split = NodeLayers {
        os,
        on_top: rest[k8s.len()..].to_vec(),
        kubernetes: k8s,
    };
    (split, log)
}

fn numbered(steps: &std::collections::BTreeMap<String, bool>, prefix: &str) -> Vec<(String, bool)> {
    steps
        .iter()
        .filter(|(n, _)| n.starts_with(prefix))
        .map(|(n, c)| (n.clone(), *c))
        .collect()
}

#[test]
#[ignore = "needs the docker engine; run by hack/test"]
fn node_image_runs_the_kubernetes_components_and_holds_both_layers() {
    let mut images = Images(Vec::new());
    let (split, _) = node_layers("os-a.yaml", &mut images);
    assert!(
        !split.kubernetes.is_empty(),
        "the node image has Kubernetes layers"
    );
    let tag = &images.0[0];
    let script = "containerd --version && kubectl version --client && runc --version \
        && dpkg-query -W -f='${Package} ${Status}\\n' jq iproute2 \
        && cat /etc/containerd/config.toml /etc/sysctl.d/90-nodestamp-kubernetes.conf /etc/modules-load.d/nodestamp-kubernetes.conf \
        && readlink /etc/systemd/system/multi-user.target.wants/containerd.service";
    let out = docker(&["run", "--rm", "--network", "none", tag, "sh", "-c", script]);
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    for want in [
        "containerd github.com/containerd/containerd",
        "Client Version: v",
        "runc version",
        "jq install ok installed",
        "iproute2 install ok installed",
        "oom_score = 0",
        "net.ipv4.ip_forward = 1",
        "br_netfilter",
        "/etc/systemd/system/containerd.service",
    ] {
        assert!(log.contains(want), "missing {want:?} in:\n{log}");
    }
}

#[test]
#[ignore = "needs the docker engine; run by hack/test"]
fn an_os_change_leaves_the_kubernetes_layers_alone_and_vice_versa() {
    // From an empty build cache, so that "the changed step runs" holds whatever ran before.
    let out = docker(&["buildx", "prune", "-af"]);
    assert!(out.status.success(), "{}", text(&out));
    let mut images = Images(Vec::new());
    let (a, _) = node_layers("os-a.yaml", &mut images);

    // Only an OS package differs: every Kubernetes layer identical, Kubernetes steps CACHED.
    let (b, log) = node_layers("os-b.yaml", &mut images);
    assert_ne!(a.os, b.os, "the OS layers should differ");
    assert_eq!(
        a.kubernetes, b.kubernetes,
        "Kubernetes layer digests changed after an OS-only change"
    );
    let s = steps(&log);
    let k8s = numbered(&s, "[kubernetes ");
    assert!(!k8s.is_empty(), "no Kubernetes steps in:\n{log}");
    assert!(
        k8s.iter().all(|(_, c)| *c),
        "Kubernetes steps not all re-used: {k8s:?}"
    );
    assert!(
        numbered(&s, "[os ").iter().any(|(_, c)| !c),
        "the changed OS step should run"
    );
    // What sits on top records both layers (provenance), so it follows either change.
    assert_ne!(a.on_top, b.on_top, "provenance should record the OS change");

    // Only a Kubernetes file differs: every OS layer identical, OS steps CACHED.
    let (c, log) = node_layers("k8s-b.yaml", &mut images);
    assert_eq!(
        a.os, c.os,
        "OS layer digests changed after a Kubernetes-only change"
    );
    assert_ne!(
        a.kubernetes, c.kubernetes,
        "the Kubernetes layers should differ"
    );
    let s = steps(&log);
    let os = numbered(&s, "[os ");
    assert!(
        !os.is_empty() && os.iter().all(|(_, c)| *c),
        "OS steps not all re-used: {os:?}"
    );
    // The changed step is the configuration's file action, which has no inputs: BuildKit never
    // reports such steps CACHED, so the log cannot tell. Its layer can: it alone is new, and
    // every component layer (and the links layer) kept its digest.
    assert_eq!(a.kubernetes.len(), c.kubernetes.len());
    let new: Vec<_> = c
        .kubernetes
        .iter()
        .filter(|l| !a.kubernetes.contains(l))
        .collect();
    assert_eq!(
        new.len(),
        1,
        "only the configuration layer should change: {new:?}"
    );

    // A component added: OS layers identical, and the existing component layers too.
    let (d, _) = node_layers("k8s-c.yaml", &mut images);
    assert_eq!(
        a.os, d.os,
        "OS layer digests changed after adding a component"
    );
    let shared = a
        .kubernetes
        .iter()
        .filter(|l| d.kubernetes.contains(l))
        .count();
    assert!(
        shared >= 3,
        "the unchanged component layers should be reused, {shared} shared"
    );
}

#[test]
#[ignore = "needs the docker engine; run by hack/test"]
fn an_invalid_spec_fails_naming_the_spec_lines() {
    let (ok, log) = build(
        &spec("invalid.yaml"),
        "node",
        None,
        &[],
        &components_context(),
    );
    assert!(!ok, "invalid.yaml built:\n{log}");
    assert!(
        log.contains("invalid.yaml:12:3: os.pakages: unknown key"),
        "{log}"
    );
    assert!(
        log.contains("invalid.yaml:17:15: os.storage.files[0].mode"),
        "{log}"
    );
    assert!(
        log.contains("  12 | >>>   pakages: [jq]"),
        "buildx should print the spec lines:\n{log}"
    );
}

#[test]
#[ignore = "needs the docker engine; run by hack/test"]
fn a_component_with_the_wrong_checksum_fails_naming_it() {
    let serve = repo().join("hack/serve");
    let out = Command::new("bash")
        .arg(&serve)
        .arg("start")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let url = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let arg = format!("COMPONENT_URL={url}");
    let (ok, log) = build(
        &spec("bad-sha.yaml"),
        "node",
        None,
        &["--build-arg", &arg],
        &components_context(),
    );
    let _ = Command::new("bash").arg(&serve).arg("stop").output();
    assert!(!ok, "bad-sha.yaml built:\n{log}");
    assert!(log.contains("digest mismatch"), "{log}");
    let error_step = log
        .lines()
        .filter(|l| l.contains("download component runc"))
        .count();
    assert!(
        error_step > 0,
        "the failing step should name the component:\n{log}"
    );
    assert!(
        log.contains(&common::engine().solve_error("")) && log.contains("runc"),
        "{log}"
    );
}

/// Files replacing base-image files get the spec's mode and replace a symlink rather than
/// writing through it; setuid/setgid/sticky bits survive in both layers.
#[test]
#[ignore = "needs the docker engine; run by hack/test"]
fn file_modes_are_the_specs_even_over_base_image_files() {
    let mut images = Images(Vec::new());
    let tag = unique_tag("modes");
    images.0.push(tag.clone());
    let (ok, log) = build(
        &spec("modes.yaml"),
        "node",
        Some(&tag),
        &[],
        &components_context(),
    );
    assert!(ok, "modes.yaml failed to build:\n{log}");
    // The image's files as `docker export` lists them (away from the paths Docker stubs).
    let created = docker(&["create", &tag, "/bin/true"]);
    assert!(created.status.success(), "{}", text(&created));
    let id = String::from_utf8_lossy(&created.stdout).trim().to_string();
    let listing = Command::new("sh")
        .arg("-c")
        .arg(format!("docker export {id} | tar -tvf -"))
        .output()
        .unwrap();
    let _ = docker(&["rm", "-f", &id]);
    let listing = String::from_utf8_lossy(&listing.stdout).to_string();
    let mode_of = |path: &str| {
        listing
            .lines()
            .find(|l| l.ends_with(&format!(" {path}")) || l.contains(&format!(" {path} -> ")))
            .map(|l| l.split_whitespace().next().unwrap_or("").to_string())
            .unwrap_or_else(|| panic!("{path} not in the image"))
    };
    assert_eq!(mode_of("etc/debian_version"), "-rw-------");
    assert_eq!(
        mode_of("etc/os-release"),
        "-rw-r--r--",
        "a regular file, not the base symlink"
    );
    assert_eq!(mode_of("usr/local/bin/os-suid"), "-rwsr-xr-x");
    assert_eq!(mode_of("var/lib/shared/"), "drwxrwxrwt");
    assert_eq!(mode_of("usr/local/bin/k8s-setgid"), "-rwxr-sr-x");
    assert_eq!(mode_of("var/lib/k8s-shared/"), "drwxrwxrwt");
    // The symlink's old target is untouched.
    let out = docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        &tag,
        "cat",
        "/usr/lib/os-release",
    ]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("ID=debian"),
        "{}",
        text(&out)
    );
}
