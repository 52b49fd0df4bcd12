//! Engine tests of arm64 nodes and multi-platform builds on this amd64 machine: the node's
//! steps run under emulation (qemu-user through binfmt_misc, `hack/setup platforms`), the base
//! `debian:bookworm` is an image index of linux/amd64 and linux/arm64, nodestamp's own steps
//! run natively on the build platform. One small spec without a kernel (the disk targets get
//! placeholder kernel files: the disks are checked for their layout, the boot test is tier 3).
//! Run with `cargo test -- --ignored` (hack/test does).

mod common;

use std::path::{Path, PathBuf};

use common::{Images, build, docker, text, unique_tag, write_spec};
use serde_json::Value;

fn scratch(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("engine-platforms-{name}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// One spec for both platforms: the component comes from the platform's own directory of the
/// build context, the placeholder kernel files carry the architecture in their version.
const SPEC: &str = r#"version: 1
name: multi-node
os:
  from: debian:bookworm
  packages: [jq, systemd-boot-efi]
  storage:
    files:
      - { path: "/boot/vmlinuz-6.1.0-test-${TARGETARCH}", contents: { inline: "placeholder kernel\n" } }
      - { path: "/boot/initrd.img-6.1.0-test-${TARGETARCH}", contents: { inline: "placeholder initrd\n" } }
kubernetes:
  components:
    - { name: tool, local: "components/${TARGETARCH}/tool", dest: /usr/local/bin/tool, mode: 0755 }
tests:
  packages:
    - { name: jq }
  commands:
    - { run: "dpkg --print-architecture", stdout_contains: "${TARGETARCH}" }
    - { run: "jq -n 1+1", stdout_contains: "2" }
disk:
  size: 1GiB
  firmware: uefi
"#;

/// A build context with `components/<arch>/tool` for both architectures, and the spec.
fn context(dir: &Path) -> (PathBuf, PathBuf) {
    let ctx = dir.join("context");
    for arch in ["amd64", "arm64"] {
        let d = ctx.join("components").join(arch);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("tool"), format!("#!/bin/sh\necho tool for {arch}\n")).unwrap();
    }
    let spec = write_spec(dir, "node.yaml", SPEC);
    (PathBuf::from(spec), ctx)
}

#[test]
#[ignore = "needs the docker engine; run by hack/test"]
fn an_arm64_node_has_an_arm64_config_aarch64_binaries_and_its_own_components() {
    let dir = scratch("arm64");
    let (spec, ctx) = context(&dir);
    let tag = unique_tag("platforms-arm64");
    let _images = Images(vec![tag.clone()]);
    let (ok, log) = build(
        &spec,
        "node",
        Some(&tag),
        &["--platform", "linux/arm64"],
        &ctx,
    );
    assert!(ok, "{log}");
    let out = docker(&["image", "inspect", "-f", "{{.Os}}/{{.Architecture}}", &tag]);
    assert_eq!(text(&out).trim(), "linux/arm64", "image config platform");
    // The node's programs are aarch64 ELF (e_machine 0xb7 at offset 18), run under emulation.
    let out = docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--platform",
        "linux/arm64",
        &tag,
        "sh",
        "-c",
        "uname -m; dpkg --print-architecture; od -An -tx1 -j18 -N2 /usr/bin/jq; /usr/local/bin/tool",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().to_string())
        .collect();
    assert_eq!(
        lines,
        ["aarch64", "arm64", "b7 00", "tool for arm64"],
        "uname -m, dpkg architecture, jq's ELF machine, the component"
    );
    // nodestamp's own steps ran natively: the tools image was not asked for arm64.
    assert!(!log.contains("no match for platform"), "{log}");
}

#[test]
#[ignore = "needs the docker engine; run by hack/test"]
fn the_test_target_passes_under_emulation() {
    let dir = scratch("test");
    let (spec, ctx) = context(&dir);
    let out = dir.join("out");
    let dest = format!("type=local,dest={}", out.display());
    let (ok, log) = build(
        &spec,
        "test",
        None,
        &["--platform", "linux/arm64", "-o", &dest],
        &ctx,
    );
    assert!(ok, "{log}");
    let report: Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["passed"], 3, "{report}");
    assert_eq!(report["failed"], 0, "{report}");
}

/// The platforms of the manifests an OCI layout's image index lists.
fn index_platforms(layout: &Path) -> Vec<String> {
    let read = |p: &Path| -> Value { serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap() };
    let blob = |digest: &str| {
        layout
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    };
    let top = read(&layout.join("index.json"));
    let index = read(&blob(top["manifests"][0]["digest"].as_str().unwrap()));
    let mut platforms: Vec<String> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["platform"]["os"] != "unknown") // attestation manifests
        .map(|m| {
            let config = read(&blob(
                read(&blob(m["digest"].as_str().unwrap()))["config"]["digest"]
                    .as_str()
                    .unwrap(),
            ));
            format!(
                "{}/{} config {}/{}",
                m["platform"]["os"].as_str().unwrap(),
                m["platform"]["architecture"].as_str().unwrap(),
                config["os"].as_str().unwrap(),
                config["architecture"].as_str().unwrap()
            )
        })
        .collect();
    platforms.sort();
    platforms
}

#[test]
#[ignore = "needs the docker engine; run by hack/test"]
fn two_platforms_give_one_index_with_both_and_a_disk_for_each() {
    let dir = scratch("two");
    let (spec, ctx) = context(&dir);
    let both = "linux/amd64,linux/arm64";
    let tar = dir.join("node.oci.tar");
    let dest = format!("type=oci,dest={}", tar.display());
    let (ok, log) = build(
        &spec,
        "node",
        None,
        &["--platform", both, "-o", &dest],
        &ctx,
    );
    assert!(ok, "{log}");
    let layout = dir.join("layout");
    std::fs::create_dir_all(&layout).unwrap();
    let x = std::process::Command::new("tar")
        .arg("-xf")
        .arg(&tar)
        .arg("-C")
        .arg(&layout)
        .output()
        .unwrap();
    assert!(x.status.success(), "{}", text(&x));
    assert_eq!(
        index_platforms(&layout),
        [
            "linux/amd64 config linux/amd64",
            "linux/arm64 config linux/arm64"
        ]
    );

    // Disk targets: BuildKit's local exporter puts each platform's result in its own
    // directory (linux_amd64/, linux_arm64/), so both disks keep the spec's name.
    let out = dir.join("disks");
    let dest = format!("type=local,dest={}", out.display());
    let (ok, log) = build(&spec, "raw", None, &["--platform", both, "-o", &dest], &ctx);
    assert!(ok, "{log}");
    for (dir_name, efi, root_type) in [
        (
            "linux_amd64",
            "BOOTX64.EFI",
            "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709",
        ),
        (
            "linux_arm64",
            "BOOTAA64.EFI",
            "B921B045-1DF0-41C3-AF44-4C6F280D3FAE",
        ),
    ] {
        let disk = out.join(dir_name).join("multi-node.raw");
        assert!(disk.is_file(), "{} missing", disk.display());
        let part = std::process::Command::new("sgdisk")
            .args(["-i", "2"])
            .arg(&disk)
            .output()
            .unwrap();
        assert!(
            text(&part).contains(root_type),
            "{dir_name}: root partition type {root_type}: {}",
            text(&part)
        );
        // The ESP starts at 1 MiB: list its default loader directory.
        let dir = std::process::Command::new("mdir")
            .env("MTOOLS_SKIP_CHECK", "1")
            .arg("-b")
            .arg("-i")
            .arg(format!("{}@@1M", disk.display()))
            .arg("::/EFI/BOOT")
            .output()
            .unwrap();
        assert!(
            text(&dir).contains(efi),
            "{dir_name}: {efi} on the ESP: {}",
            text(&dir)
        );
    }
}

#[test]
#[ignore = "needs the docker engine; run by hack/test"]
fn an_unsupported_platform_fails_at_os_from_before_anything_runs() {
    let dir = scratch("riscv");
    let (spec, ctx) = context(&dir);
    let (ok, log) = build(&spec, "node", None, &["--platform", "linux/riscv64"], &ctx);
    assert!(!ok, "{log}");
    assert!(
        log.contains("os.from: the build is for platform linux/riscv64 (--platform), and nodestamp builds nodes for linux/amd64 and linux/arm64"),
        "{log}"
    );
    // The spec line of os.from is shown, and no step of the node ran.
    assert!(log.contains("from: debian:bookworm"), "{log}");
    assert!(!log.contains("[os "), "{log}");
}
