//! Writing a layer's extracted inline contents into the layer (`nodestamp inline-apply`, a
//! build step in the tools image with the layer mounted): what BuildKit's `rm` + `mkfile`
//! did per file, in one process. Paths resolve inside the root, symbolic links included (an
//! absolute link target means the root's), so nothing is written outside it.

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::{PermissionsExt, lchown};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};
use nodestamp_compile::inline::{PLAN_FILE, Plan, PlanOwner};

/// Symbolic links followed while resolving one path, as Linux allows.
const MAX_LINKS: usize = 40;

/// Writes every entry of `from`/plan.json into `root`, in order.
pub fn apply(from: &Path, root: &Path, epoch: Option<i64>) -> Result<usize> {
    let plan_path = from.join(PLAN_FILE);
    let plan: Plan = serde_json::from_slice(
        &fs::read(&plan_path).with_context(|| format!("reading {}", plan_path.display()))?,
    )
    .with_context(|| format!("parsing {}", plan_path.display()))?;
    let time = epoch.map(|e| SystemTime::UNIX_EPOCH + Duration::from_secs(e.max(0) as u64));
    let mut ids = Ids::new(root);
    let mut touched: Vec<PathBuf> = Vec::new();
    for e in &plan.files {
        let rel = Path::new(&e.path)
            .strip_prefix("/")
            .with_context(|| format!("{}: not an absolute path", e.path))?;
        let name = rel
            .file_name()
            .with_context(|| format!("{}: no file name", e.path))?;
        let parent = make_parents(root, rel.parent().unwrap_or(Path::new("")), &mut touched)?;
        let dest = parent.join(name);
        // Replace whatever is there (a file, a symbolic link — not its target — or a tree).
        match fs::symlink_metadata(&dest) {
            Ok(m) if m.is_dir() => fs::remove_dir_all(&dest),
            Ok(_) => fs::remove_file(&dest),
            Err(_) => Ok(()),
        }
        .with_context(|| format!("removing {}", e.path))?;
        let src = from.join(&e.src);
        fs::copy(&src, &dest).with_context(|| format!("writing {}", e.path))?;
        let uid = ids.resolve(&e.user, false, &e.path)?;
        let gid = ids.resolve(&e.group, true, &e.path)?;
        lchown(&dest, Some(uid), Some(gid)).with_context(|| format!("chown {}", e.path))?;
        // After chown, which clears setuid and setgid bits.
        fs::set_permissions(&dest, fs::Permissions::from_mode(e.mode))
            .with_context(|| format!("chmod {}", e.path))?;
        touched.push(dest);
        touched.push(parent);
    }
    if let Some(t) = time {
        touched.sort();
        touched.dedup();
        for p in &touched {
            fs::File::open(p)
                .and_then(|f| f.set_times(fs::FileTimes::new().set_accessed(t).set_modified(t)))
                .with_context(|| format!("setting the time of {}", p.display()))?;
        }
    }
    Ok(plan.files.len())
}

/// The directory `rel` inside `root`, made (0755, root-owned) where missing, following
/// symbolic links inside the root. Made directories are added to `made`.
fn make_parents(root: &Path, rel: &Path, made: &mut Vec<PathBuf>) -> Result<PathBuf> {
    let mut todo: Vec<OsString> = rel
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_owned()),
            _ => None,
        })
        .rev()
        .collect();
    let mut cur: Vec<OsString> = Vec::new();
    let mut links = 0;
    while let Some(part) = todo.pop() {
        if part == ".." {
            cur.pop();
            continue;
        }
        if part == "." {
            continue;
        }
        let path = cur
            .iter()
            .fold(root.to_path_buf(), |p, c| p.join(c))
            .join(&part);
        match fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_symlink() => {
                links += 1;
                if links > MAX_LINKS {
                    bail!("{}: too many levels of symbolic links", rel.display());
                }
                let target = fs::read_link(&path)?;
                if target.is_absolute() {
                    cur.clear();
                }
                for c in target.components().rev() {
                    match c {
                        Component::Normal(n) => todo.push(n.to_owned()),
                        Component::ParentDir => todo.push("..".into()),
                        _ => {}
                    }
                }
            }
            Ok(m) if m.is_dir() => cur.push(part),
            Ok(_) => bail!("/{}: not a directory in the layer", rel.display()),
            Err(_) => {
                fs::create_dir(&path).with_context(|| format!("creating {}", path.display()))?;
                fs::set_permissions(&path, fs::Permissions::from_mode(0o755))?;
                lchown(&path, Some(0), Some(0))?;
                made.push(path);
                cur.push(part);
            }
        }
    }
    Ok(cur.iter().fold(root.to_path_buf(), |p, c| p.join(c)))
}

/// User and group names of the layer (its `/etc/passwd` and `/etc/group`, read once).
struct Ids {
    root: PathBuf,
    users: Option<Vec<(String, u32)>>,
    groups: Option<Vec<(String, u32)>>,
}

impl Ids {
    fn new(root: &Path) -> Self {
        Ids {
            root: root.to_path_buf(),
            users: None,
            groups: None,
        }
    }

    fn resolve(&mut self, owner: &Option<PlanOwner>, group: bool, path: &str) -> Result<u32> {
        let name = match owner {
            None => return Ok(0),
            Some(PlanOwner::Id(id)) => return Ok(*id),
            Some(PlanOwner::Name(n)) if n == "root" => return Ok(0),
            Some(PlanOwner::Name(n)) => n,
        };
        let (file, table) = if group {
            ("etc/group", &mut self.groups)
        } else {
            ("etc/passwd", &mut self.users)
        };
        let table = table.get_or_insert_with(|| {
            fs::read_to_string(self.root.join(file))
                .unwrap_or_default()
                .lines()
                .filter_map(|l| {
                    let mut f = l.split(':');
                    let n = f.next()?;
                    let id = f.nth(1)?.parse().ok()?;
                    Some((n.to_owned(), id))
                })
                .collect()
        });
        match table.iter().find(|(n, _)| n == name) {
            Some((_, id)) => Ok(*id),
            None => bail!(
                "{path}: {} {name:?} is not in the layer's /{file}",
                if group { "group" } else { "user" }
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nodestamp_compile::inline::PlanEntry;
    use std::os::unix::fs::{MetadataExt, symlink};

    fn entry(src: &str, path: &str, mode: u32) -> PlanEntry {
        PlanEntry {
            src: src.into(),
            path: path.into(),
            mode,
            user: None,
            group: None,
        }
    }

    #[test]
    fn writes_replaces_and_stays_inside_the_root() {
        let t = tempfile::tempdir().unwrap();
        let (from, root, outside) = (
            t.path().join("in"),
            t.path().join("root"),
            t.path().join("out"),
        );
        for d in [&from, &root.join("etc"), &outside] {
            fs::create_dir_all(d).unwrap();
        }
        fs::write(root.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
        // A base file and a symbolic link to replace (the link's target stays), and an
        // absolute link to a directory, which means the root's /etc.
        fs::write(root.join("etc/old"), "old").unwrap();
        fs::set_permissions(root.join("etc/old"), fs::Permissions::from_mode(0o600)).unwrap();
        fs::write(root.join("etc/target"), "target").unwrap();
        symlink("/etc/target", root.join("etc/link")).unwrap();
        symlink("/etc", root.join("conf")).unwrap();
        let mut plan = Plan::default();
        for (i, (path, mode)) in [
            ("/etc/old", 0o644),
            ("/etc/link", 0o640),
            ("/conf/via-link", 0o4755),
            ("/new/dir/file", 0o600),
        ]
        .into_iter()
        .enumerate()
        {
            fs::write(from.join(format!("f{i}")), format!("contents {i}")).unwrap();
            plan.files.push(entry(&format!("f{i}"), path, mode));
        }
        fs::write(from.join(PLAN_FILE), serde_json::to_vec(&plan).unwrap()).unwrap();

        assert_eq!(apply(&from, &root, Some(1_700_000_000)).unwrap(), 4);
        let mode = |p: &str| fs::symlink_metadata(root.join(p)).unwrap().mode() & 0o7777;
        assert_eq!(
            fs::read_to_string(root.join("etc/old")).unwrap(),
            "contents 0"
        );
        assert_eq!(mode("etc/old"), 0o644);
        assert!(
            !fs::symlink_metadata(root.join("etc/link"))
                .unwrap()
                .is_symlink()
        );
        assert_eq!(
            fs::read_to_string(root.join("etc/target")).unwrap(),
            "target"
        );
        assert_eq!(
            fs::read_to_string(root.join("etc/via-link")).unwrap(),
            "contents 2"
        );
        assert_eq!(mode("etc/via-link"), 0o4755);
        assert_eq!(mode("new"), 0o755);
        assert_eq!(mode("new/dir/file"), 0o600);
        for p in ["new", "new/dir", "new/dir/file", "etc", "etc/old"] {
            assert_eq!(
                fs::metadata(root.join(p)).unwrap().mtime(),
                1_700_000_000,
                "{p}"
            );
        }
        assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);

        // An owner by name the layer does not know: an error naming the file.
        plan.files = vec![PlanEntry {
            user: Some(PlanOwner::Name("nobody".into())),
            ..entry("f0", "/etc/x", 0o644)
        }];
        fs::write(from.join(PLAN_FILE), serde_json::to_vec(&plan).unwrap()).unwrap();
        let err = apply(&from, &root, None).unwrap_err().to_string();
        assert!(err.contains("/etc/x: user \"nobody\""), "{err}");
    }

    #[test]
    fn links_cannot_lead_out_of_the_root() {
        let t = tempfile::tempdir().unwrap();
        let (from, root) = (t.path().join("in"), t.path().join("root"));
        fs::create_dir_all(&from).unwrap();
        fs::create_dir_all(&root).unwrap();
        symlink("../../../..", root.join("up")).unwrap();
        fs::write(from.join("f0"), "x").unwrap();
        let plan = Plan {
            files: vec![entry("f0", "/up/escaped", 0o644)],
        };
        fs::write(from.join(PLAN_FILE), serde_json::to_vec(&plan).unwrap()).unwrap();
        apply(&from, &root, None).unwrap();
        // `..` stops at the root, as in a chroot.
        assert!(root.join("escaped").exists());
    }
}
