//! Engine tests of what `docker buildx build` asks a frontend besides a build: `--call targets`,
//! `--call outline`, `--call check` / `--check`, and spec warnings in the build output. The
//! frontend image is `$FRONTEND_IMAGE` (see `common`), in both engines. The current engine
//! (buildx ≥ 0.15) is the default docker; the minimum engine (Docker 26.1 / BuildKit 0.13 / buildx 0.13.1) is
//! reached the way `hack/lib.sh use_engine min` does. Run with `cargo test -- --ignored`.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{frontend_image, text, write_spec};

/// A spec with nothing to warn about.
const PLAIN: &str = "version: 1\nname: calls\nos:\n  from: debian:bookworm\n";

/// `docker <args>` on the current engine, with the working directory `dir` (the build context
/// is `.`). The minimum engine's client settings, if `NODESTAMP_ENGINE=min` exported them, are
/// dropped as `hack/lib.sh use_engine current` drops them: these tests need buildx ≥ 0.15.
fn docker_in(dir: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new("docker");
    if std::env::var("DOCKER_HOST").is_ok_and(|h| h == format!("unix://{MIN_SOCKET}")) {
        let path = std::env::var("PATH").unwrap_or_default();
        let path: Vec<&str> = path
            .split(':')
            .filter(|p| *p != format!("{MIN_ROOT}/bin"))
            .collect();
        cmd.env_remove("DOCKER_HOST")
            .env_remove("DOCKER_CONFIG")
            .env("PATH", path.join(":"));
    }
    cmd.args(args)
        .current_dir(dir)
        .output()
        .expect("cannot run docker")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `docker buildx build -f <spec> <extra> .` in `dir`.
fn buildx(dir: &Path, spec: &str, extra: &[&str]) -> Output {
    let mut args = vec!["buildx", "build", "-f", spec];
    args.extend(extra);
    args.push(".");
    docker_in(dir, &args)
}

#[test]
#[ignore = "needs the docker engine; run by hack/test"]
fn call_targets_lists_every_target_and_what_this_spec_cannot_build() {
    let ctx = tempfile::tempdir().unwrap();
    let spec = write_spec(ctx.path(), "node.yaml", PLAIN);
    let out = buildx(ctx.path(), &spec, &["--call", "targets"]);
    let shown = stdout(&out);
    assert!(out.status.success(), "{}", text(&out));
    let lines: Vec<&str> = shown.lines().collect();
    assert_eq!(lines[0], "TARGET         DESCRIPTION", "{shown}");
    assert!(
        lines[1].starts_with("node (default) The node image: the OS and Kubernetes layers merged"),
        "{shown}"
    );
    assert!(
        shown.contains(
            "kubernetes     The Kubernetes layer alone, built from scratch (not for this spec: \
             needs a kubernetes: section)\n"
        ),
        "{shown}"
    );
    assert!(
        shown.contains("qcow2          A bootable disk of the node, calls.qcow2\n"),
        "{shown}"
    );
    assert!(
        shown.contains("(not for this spec: needs disk.formats)"),
        "{shown}"
    );
    assert_eq!(lines.len(), 14, "a header and thirteen targets:\n{shown}");

    // With a kubernetes: section the Kubernetes targets apply; JSON for tools.
    std::fs::write(
        &spec,
        format!(
            "# syntax={}\n{PLAIN}kubernetes:\n  modules: [overlay]\n",
            frontend_image()
        ),
    )
    .unwrap();
    let out = buildx(ctx.path(), &spec, &["--call", "targets,format=json"]);
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let kubernetes = v["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "kubernetes")
        .unwrap();
    assert_eq!(
        kubernetes["description"],
        "The Kubernetes layer alone, built from scratch"
    );
    // It points at the kubernetes: section (its mapping starts on line 7, the syntax line first).
    assert_eq!(kubernetes["location"]["ranges"][0]["start"]["line"], 7);
}

#[test]
#[ignore = "needs the docker engine; run by hack/test"]
fn call_outline_lists_each_variable_with_its_default_and_lines() {
    let ctx = tempfile::tempdir().unwrap();
    let body = "version: 1\nos:\n  from: debian:${SUITE:-bookworm}\n  packages: [curl]\n  \
                build:\n    secrets: [{id: apt-auth}]\nkubernetes:\n  version: ${K8S}\n";
    let spec = write_spec(ctx.path(), "node.yaml", body);
    let out = buildx(ctx.path(), &spec, &["--call", "outline"]);
    let shown = stdout(&out);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        shown.starts_with("TARGET:      node\nDESCRIPTION: The node image"),
        "{shown}"
    );
    // Lines count from the file's first line, the syntax line.
    assert!(
        shown.contains(
            "BUILD ARG   VALUE      DESCRIPTION\n\
             SUITE       bookworm   used by os.from (line 4)\n\
             K8S                    required; used by kubernetes.version (line 9)\n"
        ),
        "{shown}"
    );
    assert!(
        shown.contains("SECRET     REQUIRED\napt-auth   true\n"),
        "{shown}"
    );

    let out = buildx(
        ctx.path(),
        &spec,
        &["--call", "outline,format=json", "--build-arg", "K8S=1.32.3"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["args"][1]["name"], "K8S");
    assert_eq!(
        v["args"][1]["description"],
        "used by kubernetes.version (line 9)"
    );
    assert_eq!(
        v["args"][1]["location"]["ranges"][0],
        serde_json::json!({"start": {"line": 9, "character": 11}, "end": {"line": 9, "character": 17}})
    );
}

/// A spec with one warning, `mode: 644` on line 7 (after the syntax line).
const WARNS: &str = "version: 1\nos:\n  from: debian:bookworm\n  storage:\n    files:\n      \
                     - {path: /etc/a, mode: 644, contents: {inline: a}}\n";

#[test]
#[ignore = "needs the docker engine; run by hack/test"]
fn check_prints_a_warning_with_its_spec_lines_and_fails_like_a_dockerfile() {
    let ctx = tempfile::tempdir().unwrap();
    let spec = write_spec(ctx.path(), "node.yaml", WARNS);
    let out = buildx(ctx.path(), &spec, &["--check"]);
    let shown = stdout(&out);
    assert!(
        shown.starts_with("Check complete, 1 warning has been found!\n"),
        "{}",
        text(&out)
    );
    assert!(
        shown.contains(
            "WARNING: DecimalMode\nos.storage.files[0].mode: mode 644 has no leading 0, so it is \
             decimal 644 (octal 01204), not octal 0644"
        ),
        "{shown}"
    );
    assert!(
        shown.contains(
            "node.yaml:7\n--------------------\n   5 |       storage:\n   6 |         files:\n   \
             7 | >>>       - {path: /etc/a, mode: 644, contents: {inline: a}}\n"
        ),
        "{shown}"
    );

    // A Dockerfile with a warning gets the same exit status.
    std::fs::write(ctx.path().join("Dockerfile"), "FROM scratch as base\n").unwrap();
    let dockerfile = buildx(ctx.path(), "Dockerfile", &["--check"]);
    assert!(
        stdout(&dockerfile).contains("WARNING: FromAsCasing"),
        "{}",
        text(&dockerfile)
    );
    assert_eq!(out.status.code(), dockerfile.status.code());
    assert_eq!(out.status.code(), Some(1));

    // A clean spec passes, like a clean Dockerfile.
    let clean = write_spec(ctx.path(), "clean.yaml", PLAIN);
    let out = buildx(ctx.path(), &clean, &["--call", "check"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(stdout(&out), "Check complete, no warnings found.\n");
}

#[test]
#[ignore = "needs the docker engine; run by hack/test"]
fn check_of_a_broken_spec_fails_with_every_error_and_its_line() {
    let ctx = tempfile::tempdir().unwrap();
    let body = "version: 1\nos:\n  from: debian:bookworm\n  packges: [curl]\n  storage:\n    \
                files:\n      - {path: etc/a}\n";
    let spec = write_spec(ctx.path(), "node.yaml", body);
    let out = buildx(ctx.path(), &spec, &["--check"]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("2 errors in node.yaml:"), "{all}");
    assert!(
        all.contains("node.yaml:5:3: os.packges: unknown key `packges`"),
        "{all}"
    );
    assert!(
        all.contains(
            "node.yaml:8:16: os.storage.files[0].path: expected an absolute path like \
             /etc/hostname, got \"etc/a\""
        ),
        "{all}"
    );
    assert!(all.contains("   5 | >>>   packges: [curl]\n"), "{all}");
    assert!(all.contains("   8 | >>>       - {path: etc/a}\n"), "{all}");

    // A Dockerfile that does not parse fails the same way.
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM scratch\nFROBNICATE x\n",
    )
    .unwrap();
    let dockerfile = buildx(ctx.path(), "Dockerfile", &["--check"]);
    assert_eq!(
        out.status.code(),
        dockerfile.status.code(),
        "{}",
        text(&dockerfile)
    );
}

/// A Kubernetes-only spec (built from scratch: no base image, no exec) with one warning on
/// line 6.
const K8S_WARNS: &str = "version: 1\nos:\n  from: debian:bookworm\nkubernetes:\n  storage:\n    \
                         files: [{path: /etc/k, mode: 600, contents: {inline: k}}]\n";

/// Checks that a build of `K8S_WARNS` printed its warning: the progress line on the vertex that
/// loaded the spec, buildx's summary, and (with `--debug`) the rule, the help and the lines.
fn assert_warning_shown(out: &Output, debug: bool) {
    let all = text(out);
    assert!(out.status.success(), "{all}");
    let short = "DecimalMode: kubernetes.storage.files[0].mode: mode 600 has no leading 0, so it is \
                 decimal 600 (octal 01130), not octal 0600 (line 7)";
    assert!(all.contains(&format!("WARN: {short}")), "{all}");
    assert!(all.contains(&format!(" - {short}\n")), "{all}");
    assert!(all.contains("1 warning found"), "{all}");
    if debug {
        assert!(
            all.contains("A mode without a leading 0 is decimal, not octal\n"),
            "{all}"
        );
        assert!(
            all.contains(
                "node.yaml:7\n--------------------\n   5 |     kubernetes:\n   6 |       storage:\n   \
                 7 | >>>     files: [{path: /etc/k, mode: 600, contents: {inline: k}}]\n"
            ),
            "{all}"
        );
    }
}

#[test]
#[ignore = "needs the docker engine; run by hack/test"]
fn build_shows_spec_warnings_with_their_lines() {
    let ctx = tempfile::tempdir().unwrap();
    let spec = write_spec(ctx.path(), "node.yaml", K8S_WARNS);
    let args = [
        "--debug",
        "buildx",
        "build",
        "--progress=plain",
        "-f",
        &spec,
        "--target",
        "kubernetes",
        "--output",
        "type=cacheonly",
        ".",
    ];
    let out = docker_in(ctx.path(), &args);
    assert_warning_shown(&out, true);
    // Without --debug: the progress line and the summary.
    let out = docker_in(ctx.path(), &args[1..]);
    assert_warning_shown(&out, false);
}

// ---- the minimum engine -------------------------------------------------------------------

const MIN_ROOT: &str = "/opt/nodestamp/engine-min";
const MIN_SOCKET: &str = "/run/nodestamp-min/docker.sock";

/// `docker <args>` on the minimum engine, in `dir`, as `hack/lib.sh use_engine min` sets it up.
fn docker_min(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Output {
    assert!(
        Path::new(MIN_SOCKET).exists(),
        "the minimum engine is not running ({MIN_SOCKET} is missing): run hack/setup"
    );
    let path = format!(
        "{MIN_ROOT}/bin:{}",
        std::env::var("PATH").unwrap_or_default()
    );
    Command::new(format!("{MIN_ROOT}/bin/docker"))
        .args(args)
        .current_dir(dir)
        .env("DOCKER_HOST", format!("unix://{MIN_SOCKET}"))
        .env("DOCKER_CONFIG", format!("{MIN_ROOT}/config"))
        .env("PATH", path)
        .envs(envs.iter().copied())
        .output()
        .expect("cannot run the minimum engine's docker")
}

#[test]
#[ignore = "needs the docker engine; run by hack/test"]
fn minimum_engine_says_what_it_cannot_do_and_shows_warnings() {
    let ctx = tempfile::tempdir().unwrap();
    let version = docker_min(ctx.path(), &["buildx", "version"], &[]);
    assert!(
        stdout(&version).contains(" 0.13."),
        "not buildx 0.13: {}",
        text(&version)
    );
    let spec = write_spec(ctx.path(), "node.yaml", WARNS);
    // buildx 0.13 has neither --call nor --check: it refuses them before any build.
    for flag in [["--call", "targets"].as_slice(), &["--check"]] {
        let mut args = vec!["buildx", "build", "-f", &spec];
        args.extend(flag);
        args.push(".");
        let out = docker_min(ctx.path(), &args, &[]);
        let all = text(&out);
        assert!(!out.status.success(), "{all}");
        assert!(all.contains(&format!("unknown flag: {}", flag[0])), "{all}");
    }
    // Its experimental --print asks the same question, and gets the same answer.
    let out = docker_min(
        ctx.path(),
        &["buildx", "build", "-f", &spec, "--print", "targets", "."],
        &[("BUILDX_EXPERIMENTAL", "1")],
    );
    let shown = stdout(&out);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        shown.starts_with("TARGET         DESCRIPTION\nnode (default) "),
        "{shown}"
    );
    // --print lint shows the findings with their lines, but buildx 0.13 does not know the
    // check's status (result.statuscode): it exits 0 (docs/buildx.md says to use
    // `nodestamp check` there).
    let out = docker_min(
        ctx.path(),
        &["buildx", "build", "-f", &spec, "--print", "lint", "."],
        &[("BUILDX_EXPERIMENTAL", "1")],
    );
    let shown = stdout(&out);
    assert!(
        shown.contains("Check complete, 1 warning has been found!\n\nWARNING: DecimalMode\n"),
        "{}",
        text(&out)
    );
    assert!(
        shown.contains("   7 | >>>       - {path: /etc/a, mode: 644"),
        "{shown}"
    );
    assert_eq!(out.status.code(), Some(0));

    // BuildKit 0.13 has the Warn call, buildx 0.13 prints warnings: a build shows them.
    let spec = write_spec(ctx.path(), "node.yaml", K8S_WARNS);
    let out = docker_min(
        ctx.path(),
        &[
            "--debug",
            "buildx",
            "build",
            "--progress=plain",
            "-f",
            &spec,
            "--target",
            "kubernetes",
            "--output",
            "type=cacheonly",
            ".",
        ],
        &[],
    );
    assert_warning_shown(&out, true);
}
