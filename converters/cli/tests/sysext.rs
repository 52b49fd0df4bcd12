//! `nodestamp sysext`: a synthetic Kubernetes layer packed as a systemd system extension and
//! checked with the erofs tools: `fsck.erofs` passes, the extracted tree holds only `/usr`,
//! units and their enablement links moved to `/usr/lib/systemd/system`, `/etc` files as
//! factory defaults with a tmpfiles.d line, `extension-release.<name>` from the OS's
//! os-release; repeat builds are byte-identical; content outside /usr and /etc is refused.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

fn scratch(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("sysext-{name}"));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

fn w(root: &Path, p: &str, data: &[u8]) {
    let p = root.join(p);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, data).unwrap();
}

fn layer(root: &Path) {
    w(root, "usr/local/bin/kubectl", b"#!/bin/sh\necho kubectl\n");
    w(root, "usr/local/bin/containerd", b"containerd binary");
    w(root, "etc/containerd/config.toml", b"version = 2\n");
    w(
        root,
        "etc/systemd/system/containerd.service",
        b"[Service]\nExecStart=/usr/local/bin/containerd\n[Install]\nWantedBy=multi-user.target\n",
    );
    fs::create_dir_all(root.join("etc/systemd/system/multi-user.target.wants")).unwrap();
    symlink(
        "/etc/systemd/system/containerd.service",
        root.join("etc/systemd/system/multi-user.target.wants/containerd.service"),
    )
    .unwrap();
    w(
        root,
        "etc/sysctl.d/90-nodestamp-kubernetes.conf",
        b"net.ipv4.ip_forward = 1\n",
    );
}

fn sysext(layer: &Path, os: Option<&Path>, out: &Path) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nodestamp"));
    cmd.args(["sysext", "--name", "k8s", "--output-dir"])
        .arg(out)
        .arg(layer);
    if let Some(os) = os {
        cmd.arg("--os-root").arg(os);
    }
    let o = cmd.output().unwrap();
    (
        o.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

fn have_erofs() -> bool {
    Command::new("mkfs.erofs").arg("--help").output().is_ok()
}

#[test]
fn the_layer_becomes_a_usr_only_erofs_extension() {
    assert!(
        have_erofs(),
        "mkfs.erofs is missing: hack/setup installs erofs-utils"
    );
    let d = scratch("ok");
    layer(&d.join("layer"));
    w(
        &d.join("os"),
        "etc/os-release",
        b"PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\n",
    );
    let out = d.join("out");
    fs::create_dir_all(&out).unwrap();
    let (ok, log) = sysext(&d.join("layer"), Some(&d.join("os")), &out);
    assert!(ok, "{log}");
    let raw = out.join("k8s.raw");
    let entries: Vec<_> = fs::read_dir(&out).unwrap().collect();
    assert_eq!(entries.len(), 1, "only k8s.raw in the output");

    let x = d.join("x");
    let o = Command::new("fsck.erofs")
        .arg(format!("--extract={}", x.display()))
        .arg(&raw)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "fsck.erofs: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let top: Vec<String> = fs::read_dir(&x)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(top, ["usr"], "nothing outside /usr");
    let read = |p: &str| fs::read_to_string(x.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    assert_eq!(
        read("usr/lib/extension-release.d/extension-release.k8s"),
        "ID=debian\nVERSION_ID=12\n"
    );
    assert_eq!(read("usr/local/bin/kubectl"), "#!/bin/sh\necho kubectl\n");
    assert!(read("usr/lib/systemd/system/containerd.service").contains("ExecStart"));
    assert_eq!(
        fs::read_link(x.join("usr/lib/systemd/system/multi-user.target.wants/containerd.service"))
            .unwrap(),
        Path::new("/usr/lib/systemd/system/containerd.service")
    );
    assert_eq!(
        read("usr/lib/sysctl.d/90-nodestamp-kubernetes.conf"),
        "net.ipv4.ip_forward = 1\n"
    );
    assert_eq!(
        read("usr/share/factory/etc/containerd/config.toml"),
        "version = 2\n"
    );
    assert_eq!(
        read("usr/lib/tmpfiles.d/nodestamp-k8s.conf"),
        "C /etc/containerd - - - - /usr/share/factory/etc/containerd\n"
    );

    // Same layer, same bytes.
    let again = d.join("again");
    fs::create_dir_all(&again).unwrap();
    let (ok, log) = sysext(&d.join("layer"), Some(&d.join("os")), &again);
    assert!(ok, "{log}");
    assert_eq!(
        fs::read(&raw).unwrap(),
        fs::read(again.join("k8s.raw")).unwrap()
    );
}

#[test]
fn without_an_os_release_the_extension_applies_to_any_os() {
    let d = scratch("any");
    layer(&d.join("layer"));
    let out = d.join("out");
    fs::create_dir_all(&out).unwrap();
    let (ok, log) = sysext(&d.join("layer"), None, &out);
    assert!(ok, "{log}");
    let o = Command::new("dump.erofs")
        .args(["--path=/usr/lib/extension-release.d/extension-release.k8s"])
        .arg(out.join("k8s.raw"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let x = d.join("x");
    let o = Command::new("fsck.erofs")
        .arg(format!("--extract={}", x.display()))
        .arg(out.join("k8s.raw"))
        .output()
        .unwrap();
    assert!(o.status.success());
    assert_eq!(
        fs::read_to_string(x.join("usr/lib/extension-release.d/extension-release.k8s")).unwrap(),
        "ID=_any\n"
    );
}

#[test]
fn content_outside_usr_and_etc_is_refused_by_name() {
    let d = scratch("opt");
    layer(&d.join("layer"));
    w(&d.join("layer"), "opt/cni/bin/bridge", b"cni");
    let out = d.join("out");
    fs::create_dir_all(&out).unwrap();
    let (ok, log) = sysext(&d.join("layer"), None, &out);
    assert!(!ok);
    assert!(
        log.contains("carries /usr only") && log.contains("/opt"),
        "{log}"
    );
    assert!(!out.join("k8s.raw").exists(), "no output on failure");
}
