//! `nodestamp provenance`: completes the frontend's build facts with what only the built rootfs
//! knows — the installed packages (read from the package database, nothing is executed) and the
//! sha256 of components taken from the build context — and writes `build.json`.

use std::fs;
use std::path::Path;

use anyhow::{Context, Result};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

/// One installed package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    pub name: String,
    pub version: String,
    pub architecture: String,
}

/// Installed packages from a dpkg `status` file (`Status: install ok installed` only).
pub fn parse_dpkg_status(text: &str) -> Vec<Package> {
    let mut out = Vec::new();
    for stanza in text.split("\n\n") {
        let (mut name, mut version, mut arch, mut installed) = (None, None, None, false);
        for line in stanza.lines() {
            if let Some((k, v)) = line.split_once(':') {
                let v = v.trim();
                match k {
                    "Package" => name = Some(v.to_string()),
                    "Version" => version = Some(v.to_string()),
                    "Architecture" => arch = Some(v.to_string()),
                    "Status" => installed = v.ends_with(" installed"),
                    _ => {}
                }
            }
        }
        if let (Some(name), Some(version), true) = (name, version, installed) {
            out.push(Package {
                name,
                version,
                architecture: arch.unwrap_or_default(),
            });
        }
    }
    out.sort_by(|a, b| (&a.name, &a.architecture).cmp(&(&b.name, &b.architecture)));
    out
}

/// Installed packages from an apk `installed` database (`P:` name, `V:` version, `A:` arch).
pub fn parse_apk_installed(text: &str) -> Vec<Package> {
    let mut out = Vec::new();
    for stanza in text.split("\n\n") {
        let (mut name, mut version, mut arch) = (None, None, String::new());
        for line in stanza.lines() {
            match line.split_at_checked(2) {
                Some(("P:", v)) => name = Some(v.to_string()),
                Some(("V:", v)) => version = Some(v.to_string()),
                Some(("A:", v)) => arch = v.to_string(),
                _ => {}
            }
        }
        if let (Some(name), Some(version)) = (name, version) {
            out.push(Package {
                name,
                version,
                architecture: arch,
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The package database of `rootfs`: `(manager, packages)`. RPM databases (sqlite) are not
/// read; they are reported as `rpm` with no list.
pub fn read_packages(rootfs: &Path) -> Result<(String, Option<Vec<Package>>)> {
    let dpkg = rootfs.join("var/lib/dpkg/status");
    if dpkg.is_file() {
        let text =
            fs::read_to_string(&dpkg).with_context(|| format!("reading {}", dpkg.display()))?;
        return Ok(("dpkg".into(), Some(parse_dpkg_status(&text))));
    }
    let apk = rootfs.join("lib/apk/db/installed");
    if apk.is_file() {
        let text =
            fs::read_to_string(&apk).with_context(|| format!("reading {}", apk.display()))?;
        return Ok(("apk".into(), Some(parse_apk_installed(&text))));
    }
    for rpm in ["usr/lib/sysimage/rpm", "var/lib/rpm"] {
        if rootfs.join(rpm).is_dir() {
            return Ok(("rpm".into(), None));
        }
    }
    Ok(("none".into(), None))
}

/// `build.json`: the frontend's facts plus packages and local components' checksums.
pub fn complete(mut facts: Value, rootfs: &Path) -> Result<Value> {
    let (manager, packages) = read_packages(rootfs)?;
    facts["packages"] = json!({
        "manager": manager,
        "installed": packages.map(|ps| ps.iter().map(|p| json!({
            "name": p.name, "version": p.version, "architecture": p.architecture,
        })).collect::<Vec<_>>()),
    });
    if let Some(components) = facts
        .pointer_mut("/kubernetes/components")
        .and_then(Value::as_array_mut)
    {
        for c in components {
            let plain_local = c.get("local").is_some() && c["extract"] != true;
            if !plain_local {
                continue;
            }
            let Some(dest) = c["dest"].as_str() else {
                continue;
            };
            let path = rootfs.join(dest.trim_start_matches('/'));
            if let Ok(bytes) = fs::read(&path) {
                c["sha256"] = Value::String(hex(&Sha256::digest(&bytes)));
            }
        }
    }
    Ok(facts)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Writes `value` to `output` (creating parents), every created entry timed at `epoch` if set.
pub fn write(value: &Value, output: &Path, epoch: Option<i64>) -> Result<()> {
    let mut created = Vec::new();
    let mut p = output.parent();
    while let Some(d) = p {
        if d.as_os_str().is_empty() || d.exists() {
            break;
        }
        created.push(d.to_path_buf());
        p = d.parent();
    }
    if let Some(parent) = output.parent() {
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    let mut text = serde_json::to_vec_pretty(value)?;
    text.push(b'\n');
    fs::write(output, text).with_context(|| format!("writing {}", output.display()))?;
    if let Some(e) = epoch {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(e.max(0) as u64);
        for path in std::iter::once(output.to_path_buf()).chain(created) {
            let f = fs::File::open(&path)?;
            f.set_times(fs::FileTimes::new().set_accessed(t).set_modified(t))
                .with_context(|| format!("setting times of {}", path.display()))?;
        }
    }
    Ok(())
}

/// Copies the tree `src` into `dst` (files, directories, modes), merging with what is there.
pub fn copy_tree(src: &Path, dst: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::create_dir_all(dst).with_context(|| format!("creating {}", dst.display()))?;
    let mut entries: Vec<_> = fs::read_dir(src)
        .with_context(|| format!("reading {}", src.display()))?
        .collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let from = e.path();
        let to = dst.join(e.file_name());
        let meta = fs::symlink_metadata(&from)?;
        if meta.is_dir() {
            copy_tree(&from, &to)?;
        } else if meta.is_file() {
            fs::copy(&from, &to).with_context(|| format!("copying {}", from.display()))?;
        } else {
            continue;
        }
        fs::set_permissions(
            &to,
            fs::Permissions::from_mode(meta.permissions().mode() & 0o7777),
        )?;
    }
    Ok(())
}

/// Sets the access and modification times of everything under `root` (not `root` itself,
/// which is the layer's root) to `epoch`, children before their directories.
pub fn set_times(root: &Path, epoch: i64) -> Result<()> {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(epoch.max(0) as u64);
    for e in fs::read_dir(root).with_context(|| format!("reading {}", root.display()))? {
        let p = e?.path();
        let meta = fs::symlink_metadata(&p)?;
        if meta.is_dir() {
            set_times(&p, epoch)?;
        }
        if !meta.file_type().is_symlink() {
            fs::File::open(&p)?
                .set_times(fs::FileTimes::new().set_accessed(t).set_modified(t))
                .with_context(|| format!("setting times of {}", p.display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Package: jq\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1.6-2.1\n\nPackage: gone\nStatus: deinstall ok config-files\nVersion: 1\n\nPackage: bash\nStatus: install ok installed\nArchitecture: amd64\nVersion: 5.2.15-2+b7\nDescription: x\n multi: line\n";

    #[test]
    fn dpkg_status_lists_installed_packages_sorted() {
        let ps = parse_dpkg_status(STATUS);
        let names: Vec<_> = ps
            .iter()
            .map(|p| (p.name.as_str(), p.version.as_str()))
            .collect();
        assert_eq!(names, [("bash", "5.2.15-2+b7"), ("jq", "1.6-2.1")]);
    }

    #[test]
    fn apk_database_is_read() {
        let ps = parse_apk_installed(
            "P:musl\nV:1.2.5-r0\nA:x86_64\n\nP:busybox\nV:1.36.1-r29\nA:x86_64\n",
        );
        assert_eq!(ps[0].name, "busybox");
        assert_eq!(ps[1].version, "1.2.5-r0");
    }

    #[test]
    fn complete_adds_packages_and_local_checksums() {
        let dir = std::env::temp_dir().join(format!("nodestamp-provenance-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let root = dir.as_path();
        fs::create_dir_all(root.join("var/lib/dpkg")).unwrap();
        fs::write(root.join("var/lib/dpkg/status"), STATUS).unwrap();
        fs::create_dir_all(root.join("usr/local/bin")).unwrap();
        fs::write(root.join("usr/local/bin/kubectl"), b"abc").unwrap();
        let facts = json!({
            "schema": "nodestamp.build/v1",
            "kubernetes": {"components": [
                {"name": "kubectl", "local": "components/kubectl", "dest": "/usr/local/bin/kubectl", "extract": false},
                {"name": "kubelet", "url": "https://x", "sha256": "11", "dest": "/usr/local/bin/kubelet", "extract": false},
            ]},
        });
        let v = complete(facts, root).unwrap();
        assert_eq!(v["packages"]["manager"], "dpkg");
        assert_eq!(v["packages"]["installed"][1]["name"], "jq");
        assert_eq!(v["packages"]["installed"][1]["version"], "1.6-2.1");
        assert_eq!(
            v["kubernetes"]["components"][0]["sha256"],
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(v["kubernetes"]["components"][1]["sha256"], "11");
        let out = root.join("out/usr/lib/nodestamp/build.json");
        write(&v, &out, Some(0)).unwrap();
        let back: Value = serde_json::from_slice(&fs::read(&out).unwrap()).unwrap();
        assert_eq!(back, v);
        let mtime = fs::metadata(root.join("out/usr"))
            .unwrap()
            .modified()
            .unwrap();
        assert_eq!(mtime, std::time::UNIX_EPOCH);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn extra_files_join_the_layer_with_their_modes_and_the_epoch() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("nodestamp-extra-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let src = dir.join("extra/usr/lib/nodestamp");
        fs::create_dir_all(&src).unwrap();
        fs::write(src.join("checks.sh"), "echo\n").unwrap();
        fs::set_permissions(src.join("checks.sh"), fs::Permissions::from_mode(0o755)).unwrap();
        let out = dir.join("out");
        write(&json!({}), &out.join("usr/lib/nodestamp/build.json"), None).unwrap();
        copy_tree(&dir.join("extra"), &out).unwrap();
        set_times(&out, 86_400).unwrap();
        let m = fs::metadata(out.join("usr/lib/nodestamp/checks.sh")).unwrap();
        assert_eq!(m.permissions().mode() & 0o7777, 0o755);
        let day = std::time::UNIX_EPOCH + std::time::Duration::from_secs(86_400);
        for p in [
            "usr",
            "usr/lib/nodestamp",
            "usr/lib/nodestamp/build.json",
            "usr/lib/nodestamp/checks.sh",
        ] {
            assert_eq!(
                fs::metadata(out.join(p)).unwrap().modified().unwrap(),
                day,
                "{p}"
            );
        }
        let _ = fs::remove_dir_all(&dir);
    }
}
