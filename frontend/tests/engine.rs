//! Engine tests of issue 2 (acceptance 2a–2d): testdata/engine specs built by the real Docker
//! Engine BuildKit through `docker buildx build`. Run with `cargo test -- --ignored`
//! (hack/test does, after hack/setup, hack/components and hack/build-frontend).

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{Images, build, components_context, docker, layers, repo, steps, text, unique_tag};

fn spec(name: &str) -> PathBuf {
    repo().join("testdata/engine").join(name)
}

/// Builds `name` as the node image and as the os image; returns (node layers, os layer count,
/// progress log of the node build). The node's top layer, the build provenance
/// (`/usr/lib/nodestamp/build.json`, which names the spec digest and the packages, so it
/// changes with either half), is left out: the layers returned are the OS and Kubernetes ones.
fn node_and_os(name: &str, images: &mut Images) -> (Vec<String>, usize, String) {
    let ctx = components_context();
    let node = unique_tag(&format!("node-{}", name.trim_end_matches(".yaml")));
    let os = unique_tag(&format!("os-{}", name.trim_end_matches(".yaml")));
    images.0.extend([node.clone(), os.clone()]);
    let (ok, log) = build(&spec(name), "node", Some(&node), &[], &ctx);
    assert!(ok, "{name} failed to build:\n{log}");
    let (ok, os_log) = build(&spec(name), "os", Some(&os), &[], &ctx);
    assert!(ok, "{name} --target os failed:\n{os_log}");
    let n_os = layers(&os).len();
    let mut node_layers = layers(&node);
    node_layers.pop();
    (node_layers, n_os, log)
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
    let (node_layers, n_os, _) = node_and_os("os-a.yaml", &mut images);
    assert!(
        node_layers.len() > n_os,
        "the node image has Kubernetes layers on top of the OS ones"
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
    let mut images = Images(Vec::new());
    let (a, a_os, _) = node_and_os("os-a.yaml", &mut images);

    // Only an OS package differs: every Kubernetes layer identical, Kubernetes steps CACHED.
    let (b, b_os, log) = node_and_os("os-b.yaml", &mut images);
    assert_ne!(a[..a_os], b[..b_os], "the OS layers should differ");
    assert_eq!(
        a[a_os..],
        b[b_os..],
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

    // Only a Kubernetes file differs: every OS layer identical, OS steps CACHED.
    let (c, c_os, log) = node_and_os("k8s-b.yaml", &mut images);
    assert_eq!(
        a[..a_os],
        c[..c_os],
        "OS layer digests changed after a Kubernetes-only change"
    );
    assert_ne!(a[a_os..], c[c_os..], "the Kubernetes layers should differ");
    let s = steps(&log);
    let os = numbered(&s, "[os ");
    assert!(
        !os.is_empty() && os.iter().all(|(_, c)| *c),
        "OS steps not all re-used: {os:?}"
    );
    assert!(
        numbered(&s, "[kubernetes ").iter().any(|(_, c)| !c),
        "the changed Kubernetes step should run"
    );

    // A component added: OS layers identical, and the existing component layers too.
    let (d, d_os, _) = node_and_os("k8s-c.yaml", &mut images);
    assert_eq!(
        a[..a_os],
        d[..d_os],
        "OS layer digests changed after adding a component"
    );
    let shared = a[a_os..].iter().filter(|l| d[d_os..].contains(l)).count();
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
        log.contains("ERROR: failed to solve") && log.contains("runc"),
        "{log}"
    );
}
