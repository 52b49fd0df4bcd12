//! Helpers for the engine tests: `docker buildx build` against the real engine, progress
//! parsing, image inspection. The frontend image is `$FRONTEND_IMAGE` (default
//! `nodestamp/frontend:dev`, built by `hack/build-frontend`); the component context by
//! `hack/components`.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn frontend_image() -> String {
    std::env::var("FRONTEND_IMAGE").unwrap_or_else(|_| "nodestamp/frontend:dev".to_owned())
}

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The build context with the Debian-packaged Kubernetes components.
pub fn components_context() -> PathBuf {
    let dir = repo().join("build/components/context");
    assert!(
        dir.join("components").is_dir(),
        "{} is missing: run hack/components",
        dir.display()
    );
    dir
}

pub fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("cannot run docker")
}

pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Writes `body` under a `# syntax=` line to `dir/name`.
pub fn write_spec(dir: &Path, name: &str, body: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, format!("# syntax={}\n{body}", frontend_image())).unwrap();
    path.to_str().unwrap().to_owned()
}

pub fn unique_tag(test: &str) -> String {
    format!("nodestamp-test/{test}:{}", std::process::id())
}

/// `docker buildx build --progress=plain -f spec --target target [-t tag] [args] context`, with
/// the frontend chosen by `BUILDKIT_SYNTAX` (which BuildKit prefers to the spec's `# syntax=`
/// line), so `$FRONTEND_IMAGE` decides which frontend image every test build uses.
pub fn build(
    spec: &Path,
    target: &str,
    tag: Option<&str>,
    args: &[&str],
    context: &Path,
) -> (bool, String) {
    let spec = spec.to_str().unwrap();
    let syntax = format!("BUILDKIT_SYNTAX={}", frontend_image());
    let mut cmd = vec![
        "buildx",
        "build",
        "--progress=plain",
        "-f",
        spec,
        "--target",
        target,
    ];
    cmd.extend(["--build-arg", &syntax]);
    if let Some(t) = tag {
        cmd.extend(["-t", t]);
    }
    cmd.extend(args);
    cmd.push(context.to_str().unwrap());
    let out = docker(&cmd);
    (out.status.success(), text(&out))
}

/// The steps of a plain progress log: name → whether BuildKit re-used it. A step is re-used
/// when it is reported `CACHED`, or — for ops without inputs, which BuildKit evaluates while
/// computing cache keys and so never reports as `CACHED` (like sources: the all-cached
/// rebuild of testdata/engine/os-a.yaml shows `[kubernetes 4/5] configuration and units`
/// as `DONE 0.0s`) — `DONE 0.0s` with no output of its own.
pub fn steps(log: &str) -> BTreeMap<String, bool> {
    let mut names: BTreeMap<&str, &str> = BTreeMap::new();
    let mut reused: BTreeMap<&str, bool> = BTreeMap::new();
    let mut busy: BTreeMap<&str, bool> = BTreeMap::new();
    for line in log.lines() {
        let Some(rest) = line.strip_prefix('#') else {
            continue;
        };
        let Some((id, what)) = rest.split_once(' ') else {
            continue;
        };
        let what = what.trim();
        if what.starts_with('[') && !names.contains_key(id) {
            names.insert(id, what);
        } else if what == "CACHED" {
            reused.insert(id, true);
        } else if what == "DONE 0.0s" {
            reused
                .entry(id)
                .or_insert(!busy.get(id).copied().unwrap_or(false));
        } else if what.starts_with("DONE") || what.starts_with("ERROR") {
            reused.entry(id).or_insert(false);
        } else if names.contains_key(id) {
            busy.insert(id, true);
        }
    }
    names
        .into_iter()
        .map(|(id, name)| (name.to_string(), reused.get(id).copied().unwrap_or(false)))
        .collect()
}

/// The layer diff IDs of an image, bottom first.
pub fn layers(tag: &str) -> Vec<String> {
    let out = docker(&[
        "image",
        "inspect",
        "--format",
        "{{json .RootFS.Layers}}",
        tag,
    ]);
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Removes the tagged images when dropped.
pub struct Images(pub Vec<String>);

impl Drop for Images {
    fn drop(&mut self) {
        for t in &self.0 {
            let _ = docker(&["image", "rm", "-f", t]);
        }
    }
}

/// Whether a step is a source (the base image, the tools image, the spec and context sent by
/// the client: `[internal] …`): BuildKit fetches those by what they name and never runs them,
/// with or without the cache.
pub fn is_source_step(name: &str) -> bool {
    name.starts_with("[internal]") || name.contains("] from ") || name.ends_with("] tools image")
}

/// The steps that do work (every step but sources), with whether each was re-used.
pub fn work_steps(log: &str) -> Vec<(String, bool)> {
    steps(log)
        .into_iter()
        .filter(|(n, _)| !is_source_step(n))
        .collect()
}

/// The work steps with whether BuildKit reported each `CACHED`: strict, for asserting that a
/// step ran (a file step that ran can still end in `DONE 0.0s`, which [`steps`] counts as re-used).
pub fn cached_work_steps(log: &str) -> Vec<(String, bool)> {
    let mut names: BTreeMap<&str, &str> = BTreeMap::new();
    let mut cached: std::collections::BTreeSet<&str> = Default::default();
    for line in log.lines() {
        let Some((id, what)) = line.strip_prefix('#').and_then(|r| r.split_once(' ')) else {
            continue;
        };
        let what = what.trim();
        if what.starts_with('[') && !names.contains_key(id) {
            names.insert(id, what);
        } else if what == "CACHED" {
            cached.insert(id);
        }
    }
    names
        .into_iter()
        .filter(|(_, n)| !is_source_step(n))
        .map(|(id, n)| (n.to_string(), cached.contains(id)))
        .collect()
}

/// `docker buildx prune -af`: empties the engine's build cache (shared by every test).
pub fn prune_build_cache() {
    let out = docker(&["buildx", "prune", "-af"]);
    assert!(out.status.success(), "{}", text(&out));
}
