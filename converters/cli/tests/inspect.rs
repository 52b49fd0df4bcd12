//! `nodestamp inspect` and `<name>.json`: a synthetic rootfs holding a build.json (as the
//! provenance step writes it) converted by `nodestamp convert`, then read back from the raw,
//! qcow2 and vhd disks, from the rootfs directory, and written beside the outputs.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

fn scratch(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("inspect-{name}"));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

fn nodestamp(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_nodestamp"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `nodestamp inspect <path>` (JSON), which must succeed.
fn inspect_json(path: &Path) -> Value {
    let (code, stdout, err) = nodestamp(&["inspect", path.to_str().unwrap()]);
    assert_eq!(code, 0, "{}: {err}", path.display());
    serde_json::from_str(&stdout).unwrap()
}

fn build_json() -> Value {
    json!({
        "schema": "nodestamp.build/v1",
        "name": "fixture",
        "nodestamp": {"version": "0.1.0"},
        "spec": {"file": "node.yaml", "digest": format!("sha256:{}", "a".repeat(64))},
        "base": {"name": "debian:bookworm", "digest": format!("sha256:{}", "b".repeat(64))},
        "kubernetes": {"version": "1.32.3", "components": [
            {"name": "kubelet", "url": "https://example.invalid/kubelet", "sha256": "c".repeat(64),
             "dest": "/usr/local/bin/kubelet", "extract": false}
        ]},
        "build_args": {"KUBERNETES_VERSION": "1.32.3"},
        "packages": {"manager": "dpkg", "installed": [
            {"name": "jq", "version": "1.6-2.1", "architecture": "amd64"}
        ]},
    })
}

fn fixture(root: &Path, with_build: bool) {
    let w = |p: &str, data: &[u8]| {
        let p = root.join(p);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, data).unwrap();
    };
    w("boot/vmlinuz-6.1.0-fixture-amd64", &vec![0x4b; 100_000]);
    w("boot/initrd.img-6.1.0-fixture-amd64", &vec![0x49; 100_000]);
    w(
        "usr/lib/systemd/boot/efi/systemd-bootx64.efi",
        b"MZ fixture systemd-boot",
    );
    w("etc/kernel/cmdline", b"console=ttyS0\n");
    if with_build {
        w(
            "usr/lib/nodestamp/build.json",
            &serde_json::to_vec_pretty(&build_json()).unwrap(),
        );
    }
}

#[test]
fn inspect_reads_provenance_back_from_every_disk_format_and_the_json_beside_it() {
    let d = scratch("disks");
    let root = d.join("rootfs");
    fixture(&root, true);
    let out = d.join("out");
    fs::create_dir_all(&out).unwrap();
    let (code, stdout, err) = nodestamp(&[
        "convert",
        "--quiet",
        "--format",
        "raw,qcow2,vhd",
        "--name",
        "fixture",
        "--size",
        "512MiB",
        "--output-dir",
        out.to_str().unwrap(),
        root.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(stdout.contains("provenance\t"), "{stdout}");
    let beside: Value = serde_json::from_slice(&fs::read(out.join("fixture.json")).unwrap())
        .expect("<name>.json beside the disks");
    assert_eq!(beside, build_json());

    for file in ["fixture.raw", "fixture.qcow2", "fixture.vhd"] {
        let v = inspect_json(&out.join(file));
        assert_eq!(v["build"], build_json(), "{file}");
        assert!(v["kind"].as_str().unwrap().starts_with("disk/"), "{v}");
    }
    let (code, stdout, _) = nodestamp(&[
        "inspect",
        "--format",
        "text",
        out.join("fixture.qcow2").to_str().unwrap(),
    ]);
    assert_eq!(code, 0);
    for want in [
        "name:        fixture",
        "kubernetes:  1.32.3",
        "kubelet",
        "KUBERNETES_VERSION=1.32.3",
        "jq 1.6-2.1",
    ] {
        assert!(stdout.contains(want), "{want:?} in:\n{stdout}");
    }
    assert_eq!(inspect_json(&root)["kind"], "rootfs");
}

/// `nodestamp convert` of a tar of `root` to qcow2, with `qemu-img` wrapped so that its calls
/// are logged: returns the `<name>.json` written beside the disk and the logged calls.
fn convert_tar_logging_qemu_img(d: &Path, root: &Path) -> (Value, String) {
    let tar = d.join("rootfs.tar");
    let st = Command::new("tar")
        .arg("-C")
        .arg(root)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    let real = Command::new("sh")
        .args(["-c", "command -v qemu-img"])
        .output()
        .unwrap();
    let real = String::from_utf8(real.stdout).unwrap().trim().to_string();
    assert!(!real.is_empty(), "qemu-img not found");
    let bin = d.join("bin");
    fs::create_dir_all(&bin).unwrap();
    let log = d.join("qemu-img.log");
    let wrapper = bin.join("qemu-img");
    fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\necho \"$*\" >> '{}'\nexec '{real}' \"$@\"\n",
            log.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755)).unwrap();
    let out = d.join("out");
    fs::create_dir_all(&out).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let o = Command::new(env!("CARGO_BIN_EXE_nodestamp"))
        .env("PATH", path)
        .args([
            "convert", "--quiet", "--format", "qcow2", "--size", "512MiB",
        ])
        .arg("--output-dir")
        .arg(&out)
        .args(["--name", "n"])
        .arg(&tar)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&fs::read(out.join("n.json")).unwrap()).unwrap();
    (v, fs::read_to_string(&log).unwrap_or_default())
}

/// Provenance split as the frontend writes it: build.json without the packages, packages.json,
/// and components.json with the sha256 of a local component. Returns the assembled document.
fn split_provenance(root: &Path) -> Value {
    let mut doc = build_json();
    doc["kubernetes"]["components"]
        .as_array_mut()
        .unwrap()
        .push(
            json!({"name": "crictl", "local": "components/crictl.tar.gz",
                     "dest": "/usr/local/bin", "extract": true, "sha256": "d".repeat(64)}),
        );
    let mut build = doc.clone();
    build.as_object_mut().unwrap().remove("packages");
    build["kubernetes"]["components"][1]
        .as_object_mut()
        .unwrap()
        .remove("sha256");
    let dir = root.join("usr/lib/nodestamp");
    fs::create_dir_all(&dir).unwrap();
    let w = |name: &str, v: &Value| {
        fs::write(dir.join(name), serde_json::to_vec_pretty(v).unwrap()).unwrap()
    };
    w("build.json", &build);
    w("packages.json", &doc["packages"]);
    w("components.json", &json!({"crictl": "d".repeat(64)}));
    doc
}

#[test]
fn a_tar_input_gets_its_json_from_the_tar() {
    let d = scratch("tar");
    let root = d.join("rootfs");
    fixture(&root, false);
    let doc = split_provenance(&root);
    let (v, calls) = convert_tar_logging_qemu_img(&d, &root);
    assert_eq!(v, doc, "the assembled document");
    // Seen on the way in: the qcow2 is not turned back into a raw disk to read it.
    assert!(calls.contains("convert -f raw -O qcow2"), "{calls}");
    assert!(
        !calls.contains("-O raw"),
        "read back from the disk: {calls}"
    );
    // The same document from the directory, and read back from the disk.
    assert_eq!(inspect_json(&root)["build"], doc);
    assert_eq!(inspect_json(&d.join("out/n.qcow2"))["build"], doc);
}

#[test]
fn a_directory_input_gets_the_assembled_json() {
    let d = scratch("dir-split");
    let root = d.join("rootfs");
    fixture(&root, false);
    let doc = split_provenance(&root);
    let out = d.join("out");
    fs::create_dir_all(&out).unwrap();
    let (code, _, err) = nodestamp(&[
        "convert",
        "--quiet",
        "--format",
        "raw",
        "--size",
        "512MiB",
        "--output-dir",
        out.to_str().unwrap(),
        root.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_slice(&fs::read(out.join("node.json")).unwrap()).unwrap();
    assert_eq!(v, doc);
}

#[test]
fn a_tar_with_a_link_on_the_way_gets_its_json_from_the_disk() {
    // /usr/lib/nodestamp is a symlink: only the finished filesystem tells where it leads.
    let d = scratch("tar-link");
    let root = d.join("rootfs");
    fixture(&root, false);
    let share = root.join("usr/share/nodestamp");
    fs::create_dir_all(&share).unwrap();
    fs::write(
        share.join("build.json"),
        serde_json::to_vec_pretty(&build_json()).unwrap(),
    )
    .unwrap();
    std::os::unix::fs::symlink("../share/nodestamp", root.join("usr/lib/nodestamp")).unwrap();
    let (v, calls) = convert_tar_logging_qemu_img(&d, &root);
    assert_eq!(v, build_json());
    assert!(calls.contains("convert -f qcow2 -O raw"), "{calls}");
}

#[test]
fn a_disk_without_provenance_says_so_and_gets_no_json() {
    let d = scratch("none");
    let root = d.join("rootfs");
    fixture(&root, false);
    let out = d.join("out");
    fs::create_dir_all(&out).unwrap();
    let (code, _, err) = nodestamp(&[
        "convert",
        "--quiet",
        "--format",
        "raw",
        "--size",
        "512MiB",
        "--output-dir",
        out.to_str().unwrap(),
        root.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(!out.join("node.json").exists());
    let (code, _, err) = nodestamp(&["inspect", out.join("node.raw").to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        err.contains("has no /usr/lib/nodestamp/build.json"),
        "{err}"
    );
    let garbage = d.join("garbage.bin");
    fs::write(&garbage, vec![1u8; 4096]).unwrap();
    let (code, _, err) = nodestamp(&["inspect", garbage.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("is not a nodestamp disk"), "{err}");
}
