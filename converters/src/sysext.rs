//! `nodestamp sysext`: the Kubernetes layer as a systemd system extension image.
//!
//! A sysext may only carry `/usr` (systemd-sysext overlays it on the host's `/usr`), so the
//! layer is mapped before it is packed:
//!
//! | in the layer                         | in the extension                                     |
//! |--------------------------------------|------------------------------------------------------|
//! | `/usr/**`                            | unchanged                                            |
//! | `/etc/systemd/system/**` (units, drop-ins, `*.wants/` links) | `/usr/lib/systemd/system/**`, link targets rewritten |
//! | `/etc/sysctl.d/*`, `/etc/modules-load.d/*` | `/usr/lib/sysctl.d/*`, `/usr/lib/modules-load.d/*` |
//! | any other `/etc/<top>/**`            | `/usr/share/factory/etc/<top>/**` plus a `C /etc/<top>` line in `/usr/lib/tmpfiles.d/nodestamp-<name>.conf` (copied into `/etc` at boot when missing) |
//! | anything else (`/opt`, `/var`, …)    | an error naming the paths                            |
//!
//! `usr/lib/extension-release.d/extension-release.<name>` gets `ID`/`VERSION_ID` from the OS's
//! os-release (or `ID=_any` without one). The tree is packed with `mkfs.erofs` (all files owned
//! by root, timestamps and UUID fixed, so the same layer gives the same bytes).

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// Where a layer path (relative, no leading `/`) goes in the extension, or `None` if it cannot.
pub fn map_path(rel: &str) -> Option<Mapped> {
    let rules: &[(&str, &str)] = &[
        ("etc/systemd/system", "usr/lib/systemd/system"),
        ("etc/sysctl.d", "usr/lib/sysctl.d"),
        ("etc/modules-load.d", "usr/lib/modules-load.d"),
    ];
    if rel == "usr" || rel.starts_with("usr/") {
        return Some(Mapped::To(rel.to_string()));
    }
    for (from, to) in rules {
        if rel == *from {
            return Some(Mapped::To(to.to_string()));
        }
        if let Some(rest) = rel.strip_prefix(from).and_then(|r| r.strip_prefix('/')) {
            return Some(Mapped::To(format!("{to}/{rest}")));
        }
    }
    let parent_of = |from: &str| from.strip_prefix(rel).is_some_and(|r| r.starts_with('/'));
    if rel == "etc" || rules.iter().any(|(from, _)| parent_of(from)) {
        return Some(Mapped::Parent);
    }
    if let Some(rest) = rel.strip_prefix("etc/") {
        return Some(Mapped::Factory {
            to: format!("usr/share/factory/etc/{rest}"),
            top: rest.split('/').next().unwrap_or(rest).to_string(),
        });
    }
    None
}

/// The fate of one layer path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mapped {
    To(String),
    /// `/etc/<top>/…` kept as factory defaults, copied to `/etc/<top>` by systemd-tmpfiles.
    Factory {
        to: String,
        top: String,
    },
    /// A parent directory of mapped paths (`/etc`, `/etc/systemd`): not copied itself.
    Parent,
}

/// A symlink target under `/etc/systemd/system` points at the unit's new home.
pub fn map_link_target(target: &str) -> String {
    match target.strip_prefix("/etc/systemd/system/") {
        Some(rest) => format!("/usr/lib/systemd/system/{rest}"),
        None => target.to_string(),
    }
}

/// The value of `key` in an os-release text, unquoted.
pub fn os_release_field(os_release: &str, key: &str) -> Option<String> {
    os_release.lines().find_map(|l| {
        l.strip_prefix(key)
            .and_then(|r| r.strip_prefix('='))
            .map(|v| v.trim().trim_matches('"').trim_matches('\'').to_string())
    })
}

/// The os-release of the OS at `root`: `/etc/os-release` first (often a link to
/// `../usr/lib/os-release`; an absolute link is resolved inside `root`, never against the
/// running system's files), then `/usr/lib/os-release`.
pub fn read_os_release(root: &Path) -> Option<String> {
    let etc = root.join("etc/os-release");
    let etc = match fs::read_link(&etc) {
        Ok(t) if t.is_absolute() => root.join(t.strip_prefix("/").unwrap_or(&t)),
        _ => etc,
    };
    [etc, root.join("usr/lib/os-release")]
        .iter()
        .find_map(|p| fs::read_to_string(p).ok())
}

/// `extension-release.<name>` for an OS whose os-release is `os_release` (if any).
pub fn extension_release(os_release: Option<&str>) -> String {
    let field = |key: &str| os_release.and_then(|t| os_release_field(t, key));
    match field("ID").filter(|s| !s.is_empty()) {
        None => "ID=_any\n".to_string(),
        Some(id) => match field("VERSION_ID").filter(|s| !s.is_empty()) {
            Some(v) => format!("ID={id}\nVERSION_ID={v}\n"),
            None => format!("ID={id}\n"),
        },
    }
}

/// Builds the extension tree of `layer` in `tree` (which must not exist).
pub fn stage(layer: &Path, tree: &Path, name: &str, os_release: Option<&str>) -> Result<()> {
    fs::create_dir_all(tree).with_context(|| format!("creating {}", tree.display()))?;
    let mut tops = BTreeSet::new();
    let mut refused = Vec::new();
    walk(layer, layer, tree, &mut tops, &mut refused)?;
    if !refused.is_empty() {
        bail!(
            "a systemd system extension carries /usr only (and /etc as factory defaults); the \
             Kubernetes layer also has {}: set those components' dest (or the storage paths) \
             under /usr, e.g. /usr/local/bin or /usr/libexec/cni",
            refused.join(", ")
        );
    }
    let release = tree.join(format!(
        "usr/lib/extension-release.d/extension-release.{name}"
    ));
    write(&release, extension_release(os_release).as_bytes())?;
    if !tops.is_empty() {
        let text: String = tops
            .iter()
            .map(|t| format!("C /etc/{t} - - - - /usr/share/factory/etc/{t}\n"))
            .collect();
        write(
            &tree.join(format!("usr/lib/tmpfiles.d/nodestamp-{name}.conf")),
            text.as_bytes(),
        )?;
    }
    Ok(())
}

fn write(path: &Path, data: &[u8]) -> Result<()> {
    if let Some(p) = path.parent() {
        fs::create_dir_all(p)?;
    }
    fs::write(path, data).with_context(|| format!("writing {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o644))?;
    Ok(())
}

fn walk(
    root: &Path,
    dir: &Path,
    tree: &Path,
    tops: &mut BTreeSet<String>,
    refused: &mut Vec<String>,
) -> Result<()> {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        let rel = path
            .strip_prefix(root)
            .unwrap_or(&path)
            .to_string_lossy()
            .into_owned();
        let meta = fs::symlink_metadata(&path)?;
        let dest = match map_path(&rel) {
            None => {
                refused.push(format!("/{rel}"));
                continue;
            }
            Some(Mapped::Parent) => {
                if meta.is_dir() {
                    walk(root, &path, tree, tops, refused)?;
                } else {
                    refused.push(format!("/{rel}"));
                }
                continue;
            }
            Some(Mapped::To(to)) => tree.join(to),
            Some(Mapped::Factory { to, top }) => {
                tops.insert(top);
                tree.join(to)
            }
        };
        copy_entry(&path, &dest, &meta)?;
        if meta.is_dir() {
            walk(root, &path, tree, tops, refused)?;
        }
    }
    Ok(())
}

fn copy_entry(src: &Path, dest: &Path, meta: &fs::Metadata) -> Result<()> {
    if let Some(p) = dest.parent() {
        fs::create_dir_all(p)?;
    }
    let ft = meta.file_type();
    if ft.is_dir() {
        fs::create_dir_all(dest)?;
        fs::set_permissions(
            dest,
            fs::Permissions::from_mode(meta.permissions().mode() & 0o7777),
        )?;
    } else if ft.is_symlink() {
        let target = fs::read_link(src)?;
        let mapped = map_link_target(&target.to_string_lossy());
        symlink(mapped, dest).with_context(|| format!("linking {}", dest.display()))?;
    } else if ft.is_file() {
        fs::copy(src, dest).with_context(|| format!("copying {}", src.display()))?;
        fs::set_permissions(
            dest,
            fs::Permissions::from_mode(meta.permissions().mode() & 0o7777),
        )?;
    } else {
        bail!(
            "{}: device files and sockets cannot go into a sysext",
            src.display()
        );
    }
    Ok(())
}

/// A UUID derived from the name, as text.
fn uuid(name: &str) -> String {
    let g = crate::gpt::Guid::derive(name, "sysext");
    let b = g.0;
    format!(
        "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
        b[0],
        b[1],
        b[2],
        b[3],
        b[4],
        b[5],
        b[6],
        b[7],
        b[8],
        b[9],
        b[10],
        b[11],
        b[12],
        b[13],
        b[14],
        b[15]
    )
}

/// Packs `tree` into an erofs image at `output` (written beside it, renamed when complete).
pub fn pack(tree: &Path, output: &Path, name: &str, epoch: i64) -> Result<()> {
    let tmp = output.with_extension("raw.tmp");
    let out = Command::new("mkfs.erofs")
        .arg(format!("-T{epoch}"))
        .arg(format!("-U{}", uuid(name)))
        .arg("--all-root")
        .arg("-x-1")
        .arg("--quiet")
        .arg(&tmp)
        .arg(tree)
        .output()
        .context("running mkfs.erofs (install erofs-utils)")?;
    if !out.status.success() {
        let _ = fs::remove_file(&tmp);
        bail!(
            "mkfs.erofs failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    fs::rename(&tmp, output).with_context(|| format!("writing {}", output.display()))
}

/// The whole step: stage `layer` and pack it as `<out_dir>/<name>.raw`.
pub fn build(
    layer: &Path,
    os_root: Option<&Path>,
    name: &str,
    out_dir: &Path,
    epoch: i64,
) -> Result<PathBuf> {
    let os_release = os_root.and_then(read_os_release);
    let work = std::env::temp_dir().join(format!("nodestamp-sysext-{}", std::process::id()));
    let _ = fs::remove_dir_all(&work);
    let tree = work.join("tree");
    let result = stage(layer, &tree, name, os_release.as_deref()).and_then(|()| {
        let output = out_dir.join(format!("{name}.raw"));
        pack(&tree, &output, name, epoch)?;
        Ok(output)
    });
    let _ = fs::remove_dir_all(&work);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_into_usr() {
        assert_eq!(
            map_path("usr/local/bin/kubelet"),
            Some(Mapped::To("usr/local/bin/kubelet".into()))
        );
        assert_eq!(
            map_path("etc/systemd/system/multi-user.target.wants/containerd.service"),
            Some(Mapped::To(
                "usr/lib/systemd/system/multi-user.target.wants/containerd.service".into()
            ))
        );
        assert_eq!(
            map_path("etc/sysctl.d/90-nodestamp-kubernetes.conf"),
            Some(Mapped::To(
                "usr/lib/sysctl.d/90-nodestamp-kubernetes.conf".into()
            ))
        );
        assert_eq!(map_path("etc"), Some(Mapped::Parent));
        assert_eq!(map_path("etc/systemd"), Some(Mapped::Parent));
        assert_eq!(
            map_path("etc/containerd/config.toml"),
            Some(Mapped::Factory {
                to: "usr/share/factory/etc/containerd/config.toml".into(),
                top: "containerd".into()
            })
        );
        assert_eq!(map_path("opt/cni/bin/bridge"), None);
        assert_eq!(map_path("opt"), None);
        assert!(matches!(map_path("etc/sys"), Some(Mapped::Factory { .. })));
        assert_eq!(
            map_link_target("/etc/systemd/system/containerd.service"),
            "/usr/lib/systemd/system/containerd.service"
        );
        assert_eq!(map_link_target("/dev/null"), "/dev/null");
    }

    #[test]
    fn extension_release_follows_the_os() {
        assert_eq!(
            extension_release(Some(
                "PRETTY_NAME=\"Debian\"\nID=debian\nVERSION_ID=\"12\"\n"
            )),
            "ID=debian\nVERSION_ID=12\n"
        );
        assert_eq!(extension_release(Some("ID=arch\n")), "ID=arch\n");
        assert_eq!(extension_release(None), "ID=_any\n");
    }
}
