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

/// Where hack/setup unpacks the minimum engine (hack/lib.sh `ENGINE_MIN_ROOT`).
pub const ENGINE_MIN_ROOT: &str = "/opt/nodestamp/engine-min";
/// The minimum engine's dockerd socket (hack/lib.sh `ENGINE_MIN_RUN`).
pub const ENGINE_MIN_HOST: &str = "unix:///run/nodestamp-min/docker.sock";

/// A `docker` command for the engine `NODESTAMP_ENGINE` names (`current`, the default, or
/// `min`), as hack/lib.sh `use_engine` selects it: for `min`, its docker CLI, socket and
/// client configuration (whose cli-plugins hold its buildx). When the environment already
/// points at the engine (hack/test exports it), this changes nothing.
pub fn docker_command() -> Command {
    match std::env::var("NODESTAMP_ENGINE").as_deref() {
        Ok("min") => {
            let mut cmd = Command::new(format!("{ENGINE_MIN_ROOT}/bin/docker"));
            cmd.env("DOCKER_HOST", ENGINE_MIN_HOST)
                .env("DOCKER_CONFIG", format!("{ENGINE_MIN_ROOT}/config"));
            cmd
        }
        Ok("current") | Err(_) => Command::new("docker"),
        Ok(other) => panic!("unknown NODESTAMP_ENGINE {other:?} (accepted: current, min)"),
    }
}

pub fn docker(args: &[&str]) -> Output {
    docker_command()
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

/// The engine the tests run against, as the engine itself reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Engine {
    /// The daemon's version (`docker version`), e.g. `28.5.2+dfsg4`.
    pub docker: String,
    /// The buildx client's `(major, minor)` (`docker buildx version`).
    pub buildx: (u32, u32),
    /// BuildKit's `(major, minor)`: from `docker buildx inspect`, or — when the daemon's build
    /// does not stamp it (Debian's reports `v0.0.0+unknown`) — from the BuildKit release the
    /// Docker release vendors.
    pub buildkit: (u32, u32),
}

impl Engine {
    /// BuildKit ≥ 0.19 has the native symlink file action (`file.symlink.create`); older
    /// engines get the frontend's fallback step.
    pub fn has_symlink_file_action(&self) -> bool {
        self.buildkit >= (0, 19)
    }

    /// How `docker buildx build` prints a failed build's error line: buildx 0.13.1 prints
    /// `ERROR: failed to solve: <message>`, buildx 0.29.1 prefixes `failed to build: ` (both
    /// observed; versions in between are assumed to have the prefix from 0.20 on).
    pub fn solve_error(&self, message: &str) -> String {
        if self.buildx >= (0, 20) {
            format!("ERROR: failed to build: failed to solve: {message}")
        } else {
            format!("ERROR: failed to solve: {message}")
        }
    }
}

/// Asks the engine (`docker version`, `docker buildx inspect`) which one it is; cached.
pub fn engine() -> &'static Engine {
    static ENGINE: std::sync::OnceLock<Engine> = std::sync::OnceLock::new();
    ENGINE.get_or_init(|| {
        let out = docker(&["version", "--format", "{{.Server.Version}}"]);
        assert!(out.status.success(), "docker version: {}", text(&out));
        let docker_version = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let out = docker(&["buildx", "inspect"]);
        assert!(
            out.status.success(),
            "docker buildx inspect: {}",
            text(&out)
        );
        let stamped = text(&out)
            .lines()
            .find_map(|l| l.trim().strip_prefix("BuildKit version:"))
            .and_then(|v| major_minor(v.trim().trim_start_matches('v')))
            .filter(|&v| v != (0, 0));
        let buildkit = stamped
            .or_else(|| buildkit_of_docker(&docker_version))
            .unwrap_or_else(|| {
                panic!("cannot tell the BuildKit version of Docker {docker_version}")
            });
        let out = docker(&["buildx", "version"]);
        assert!(
            out.status.success(),
            "docker buildx version: {}",
            text(&out)
        );
        // "github.com/docker/buildx 0.29.1+ds1 0.29.1+ds1-4"
        let buildx = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .nth(1)
            .and_then(|v| major_minor(v.trim_start_matches('v')))
            .unwrap_or_else(|| panic!("cannot read the buildx version: {}", text(&out)));
        let engine = Engine {
            docker: docker_version,
            buildx,
            buildkit,
        };
        eprintln!(
            "engine: Docker {}, BuildKit {}.{}, buildx {}.{}",
            engine.docker, engine.buildkit.0, engine.buildkit.1, engine.buildx.0, engine.buildx.1
        );
        engine
    })
}

fn major_minor(v: &str) -> Option<(u32, u32)> {
    let mut it = v.split(|c: char| !c.is_ascii_digit());
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// The BuildKit minor release each Docker Engine release vendors (moby's `vendor.mod`).
pub fn buildkit_of_docker(docker: &str) -> Option<(u32, u32)> {
    let minor = match major_minor(docker)? {
        (26, _) => 13,
        (27, 0) => 14,
        (27, 1..=2) => 15,
        (27, 3) => 16,
        (27, 4) => 17,
        (27, _) => 18,
        (28, m) => 20 + m.min(5),
        _ => return None,
    };
    Some((0, minor))
}

#[cfg(test)]
mod tests {
    #[test]
    fn docker_releases_map_to_their_buildkit() {
        assert_eq!(super::buildkit_of_docker("26.1.5+dfsg1"), Some((0, 13)));
        assert_eq!(super::buildkit_of_docker("28.5.2+dfsg4"), Some((0, 25)));
        assert_eq!(super::buildkit_of_docker("25.0.0"), None);
    }
}
