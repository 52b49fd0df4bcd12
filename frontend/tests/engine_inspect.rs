//! Engine tests of issue 5: build provenance in the node image (`/usr/lib/nodestamp/build.json`
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
    assert!(
        log.contains("[provenance 2/2] nodestamp provenance"),
        "{log}"
    );

    let out = docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        &tag,
        "cat",
        "/usr/lib/nodestamp/build.json",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let b: Value = serde_json::from_slice(&out.stdout).unwrap();
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
    let kubectl = comps.iter().find(|c| c["name"] == "kubectl").unwrap();
    assert_eq!(kubectl["sha256"].as_str().unwrap().len(), 64, "{kubectl}");
    assert_eq!(b["build_args"]["PROVENANCE_TEST"], "yes");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("secret"),
        "proxy credentials must not be recorded"
    );
    assert_eq!(b["packages"]["manager"], "dpkg");
    let pkgs = b["packages"]["installed"].as_array().unwrap();
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
    assert_eq!(v["build"], b);
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
