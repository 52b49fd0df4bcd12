//! Engine tests of build provenance in the node image (`/usr/lib/nodestamp/build.json`
//! and labels) read back with `nodestamp inspect` from `docker save`. Run with
//! `cargo test -- --ignored` (hack/test does).

mod common;

use std::path::PathBuf;

use common::{Images, build, components_context, docker, frontend_image, repo, text, unique_tag};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

fn spec(name: &str) -> PathBuf {
    repo().join("testdata/engine").join(name)
}

fn scratch(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("engine-inspect-{name}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
#[ignore = "needs the docker engine; run by hack/test"]
fn the_node_image_carries_its_provenance_as_build_json_and_labels() {
    let tag = unique_tag("inspect-node");
    let _images = Images(vec![tag.clone()]);
    let (ok, log) = build(
        &spec("os-a.yaml"),
        "node",
        Some(&tag),
        &[
            "--build-arg",
            "PROVENANCE_TEST=yes",
            "--build-arg",
            "HTTPS_PROXY=http://user:secret@proxy.invalid:3128",
        ],
        &components_context(),
    );
    assert!(ok, "{log}");
    for step in [
        "[provenance] installed packages → /usr/lib/nodestamp/packages.json",
        "[provenance] sha256 of local components: kubectl",
        "[provenance] build facts → /usr/lib/nodestamp/build.json",
    ] {
        assert!(log.contains(step), "{step:?} missing from:\n{log}");
    }

    let cat = |file: &str| {
        let out = docker(&["run", "--rm", "--network", "none", &tag, "cat", file]);
        assert!(out.status.success(), "{file}: {}", text(&out));
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains("secret"),
            "proxy credentials must not be recorded"
        );
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let b = cat("/usr/lib/nodestamp/build.json");
    let spec_bytes = std::fs::read(spec("os-a.yaml")).unwrap();
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(&spec_bytes)));
    assert_eq!(b["schema"], "nodestamp.build/v1");
    assert_eq!(b["name"], "engine-test");
    assert_eq!(b["spec"]["digest"], digest.as_str());
    assert_eq!(b["nodestamp"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(b["base"]["name"], "debian:bookworm");
    assert!(
        b["base"]["digest"].as_str().unwrap().starts_with("sha256:"),
        "{b}"
    );
    assert_eq!(b["kubernetes"]["version"], "1.32.3");
    let comps = b["kubernetes"]["components"].as_array().unwrap();
    assert_eq!(comps.len(), 3);
    assert_eq!(b["build_args"]["PROVENANCE_TEST"], "yes");
    // The facts only the built layers know sit beside it, each in a layer of its own.
    let sums = cat("/usr/lib/nodestamp/components.json");
    let kubectl_bytes = std::fs::read(components_context().join("components/kubectl")).unwrap();
    assert_eq!(
        sums["kubectl"],
        hex::encode(Sha256::digest(&kubectl_bytes)),
        "{sums}"
    );
    let packages = cat("/usr/lib/nodestamp/packages.json");
    assert_eq!(packages["manager"], "dpkg");
    let pkgs = packages["installed"].as_array().unwrap();
    for name in ["jq", "iproute2", "bash"] {
        let p = pkgs
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{name} missing from the package list"));
        assert!(!p["version"].as_str().unwrap().is_empty());
    }

    let out = docker(&[
        "image",
        "inspect",
        "--format",
        "{{json .Config.Labels}}",
        &tag,
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let labels: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(labels["io.nodestamp.spec.digest"], digest.as_str());
    assert_eq!(labels["io.nodestamp.version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(labels["io.nodestamp.kubernetes.version"], "1.32.3");
    assert_eq!(
        labels["io.nodestamp.provenance"],
        "/usr/lib/nodestamp/build.json"
    );
    assert!(
        labels["io.nodestamp.kubernetes.components"]
            .as_str()
            .unwrap()
            .contains("kubectl@local:components/kubectl"),
        "{labels}"
    );
    let args: Value =
        serde_json::from_str(labels["io.nodestamp.build-args"].as_str().unwrap()).unwrap();
    assert_eq!(args["PROVENANCE_TEST"], "yes");
    assert!(args.get("HTTPS_PROXY").is_none());
    assert_eq!(
        labels["org.opencontainers.image.base.digest"],
        b["base"]["digest"]
    );

    // docker save → nodestamp inspect (the binary shipped in the frontend image).
    let dir = scratch("save");
    let tar = dir.join("node.tar");
    let out = docker(&["save", "-o", tar.to_str().unwrap(), &tag]);
    assert!(out.status.success(), "{}", text(&out));
    let mount = format!("{}:/x:ro", dir.display());
    let out = docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        &mount,
        "--entrypoint",
        "nodestamp",
        &frontend_image(),
        "inspect",
        "/x/node.tar",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["kind"], "image");
    // One document: build.json with the packages and the local components' sha256.
    let mut assembled = b.clone();
    assembled["packages"] = packages.clone();
    for c in assembled["kubernetes"]["components"]
        .as_array_mut()
        .unwrap()
    {
        if let Some(sum) = c["name"].as_str().and_then(|n| sums.get(n)) {
            c["sha256"] = sum.clone();
        }
    }
    assert_eq!(v["build"], assembled);
    assert_eq!(v["build"]["packages"]["manager"], "dpkg");
    assert_eq!(v["labels"]["io.nodestamp.spec.digest"], digest.as_str());
}

#[test]
#[ignore = "needs the docker engine; run by hack/test"]
fn the_kubernetes_layer_exports_as_a_sysext_image() {
    let out = scratch("sysext");
    let dest = format!("type=local,dest={}", out.display());
    let (ok, log) = build(
        &spec("os-a.yaml"),
        "sysext",
        None,
        &["-o", &dest],
        &components_context(),
    );
    assert!(ok, "{log}");
    assert!(
        !log.contains("install packages"),
        "the sysext target must not build the OS layer:\n{log}"
    );
    let files: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files, ["engine-test.raw"]);
    let x = out.join("x");
    let o = std::process::Command::new("fsck.erofs")
        .arg(format!("--extract={}", x.display()))
        .arg(out.join("engine-test.raw"))
        .output()
        .expect("fsck.erofs (erofs-utils, installed by hack/setup)");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let top: Vec<String> = std::fs::read_dir(&x)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(top, ["usr"], "a sysext carries /usr only");
    let read = |p: &str| std::fs::read_to_string(x.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    assert_eq!(
        read("usr/lib/extension-release.d/extension-release.engine-test"),
        "ID=debian\nVERSION_ID=12\n"
    );
    assert!(x.join("usr/local/bin/containerd").is_file());
    assert!(x.join("usr/local/bin/kubectl").is_file());
    assert!(read("usr/lib/systemd/system/containerd.service").contains("ExecStart"));
    assert_eq!(
        std::fs::read_link(
            x.join("usr/lib/systemd/system/multi-user.target.wants/containerd.service")
        )
        .unwrap()
        .to_string_lossy(),
        "/usr/lib/systemd/system/containerd.service"
    );
    assert!(read("usr/share/factory/etc/containerd/config.toml").contains("oom_score = 0"));
    assert!(read("usr/lib/tmpfiles.d/nodestamp-engine-test.conf").contains("C /etc/containerd"));
    assert!(read("usr/lib/sysctl.d/90-nodestamp-kubernetes.conf").contains("ip_forward"));
}

fn inspect_spec(name: &str) -> PathBuf {
    repo().join("testdata/inspect").join(name)
}

/// `file:line:col` of the list item in `name` whose line contains `marker`.
fn item_at(name: &str, marker: &str) -> String {
    let text = std::fs::read_to_string(inspect_spec(name)).unwrap();
    let (i, line) = text
        .lines()
        .enumerate()
        .find(|(_, l)| l.contains(marker))
        .unwrap_or_else(|| panic!("{marker:?} not in {name}"));
    let col = line.find('{').unwrap() + 1;
    format!("{name}:{}:{col}", i + 1)
}

#[test]
#[ignore = "needs the docker engine; run by hack/test"]
fn the_test_target_passes_every_check_and_reports_them() {
    let out = scratch("test-pass");
    let dest = format!("type=local,dest={}", out.display());
    let (ok, log) = build(
        &inspect_spec("pass.yaml"),
        "test",
        None,
        &["-o", &dest],
        &components_context(),
    );
    assert!(ok, "{log}");
    assert!(
        log.contains("nodestamp test: all 10 checks passed"),
        "{log}"
    );
    let report: Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["passed"], 10);
    assert_eq!(report["failed"], 0);
    assert!(
        std::fs::read_to_string(out.join("report.txt"))
            .unwrap()
            .contains("all 10 checks passed")
    );
}

#[test]
#[ignore = "needs the docker engine; run by hack/test"]
fn each_kind_of_check_can_fail_naming_its_spec_line() {
    let (ok, log) = build(
        &inspect_spec("fail.yaml"),
        "test",
        None,
        &[],
        &components_context(),
    );
    assert!(!ok, "fail.yaml passed:\n{log}");
    for (marker, key, message) in [
        (
            "mode: 0600",
            "tests.files[1]",
            "/etc/kernel/cmdline has mode 0644, want 0600",
        ),
        (
            "name: tree",
            "tests.packages[1]",
            "package tree is not installed",
        ),
        (
            "masked: true",
            "tests.services[0]",
            "containerd.service is not masked",
        ),
        (
            "console=ttyS1",
            "tests.kernel_arguments[0]",
            "has no console=ttyS1",
        ),
        (
            "v9.99",
            "tests.commands[0]",
            "stdout of `kubectl version --client` does not contain \"v9.99\"",
        ),
        (
            "exit_status: 1",
            "tests.commands[1]",
            "command `true` exited 0, want 1",
        ),
    ] {
        let at = item_at("fail.yaml", marker);
        let want = format!("{at}: {key}: ");
        let line = log
            .lines()
            .find(|l| l.contains(&want))
            .unwrap_or_else(|| panic!("no line for {want:?} in:\n{log}"));
        assert!(line.contains(message), "{line:?} should say {message:?}");
    }
    assert!(
        log.contains("nodestamp test: 6 of 8 checks failed"),
        "{log}"
    );
    assert!(
        !log.contains("tests.files[0]:") && !log.contains("tests.packages[0]:"),
        "passing checks are not reported as failures:\n{log}"
    );
}

#[test]
#[ignore = "needs the docker engine; run by hack/test"]
fn the_node_carries_the_in_vm_checks_and_they_pass_in_the_image() {
    let tag = unique_tag("inspect-vm-checks");
    let _images = Images(vec![tag.clone()]);
    let (ok, log) = build(
        &inspect_spec("pass.yaml"),
        "node",
        Some(&tag),
        &[],
        &components_context(),
    );
    assert!(ok, "{log}");
    // The same script the unit runs at boot; here the kernel arguments come from the file
    // the converters boot with, since a container shares the host's /proc/cmdline.
    let out = docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-e",
        "NODESTAMP_CMDLINE=/etc/kernel/cmdline",
        &tag,
        "sh",
        "-c",
        "cat /usr/lib/systemd/system/nodestamp-checks.service \
         /usr/lib/systemd/system/multi-user.target.d/nodestamp-checks.conf \
         && sh /usr/lib/nodestamp/checks.sh",
    ]);
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    assert!(
        log.contains("ExecStart=/bin/sh /usr/lib/nodestamp/checks.sh"),
        "{log}"
    );
    assert!(log.contains("Wants=nodestamp-checks.service"), "{log}");
    assert!(
        log.contains(r#"NODESTAMP-CHECKS: {"passed":10,"failed":0}"#),
        "{log}"
    );
}
