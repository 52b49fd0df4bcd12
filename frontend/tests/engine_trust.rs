//! Engine tests of the trust rules against the real BuildKit (`cargo test -- --ignored`; hack/test runs
//! them): engine-side failures show the spec lines of the failing step, a `local` symlink out of
//! the build context fails at its line (one to another context file is followed), the Kubernetes layer is byte-identical across builds with
//! `SOURCE_DATE_EPOCH` even with the cache pruned in between, secrets and build-time files leave
//! no trace in the image, and proxies reach `run` steps without entering the cache key.
//!
//! Specs live in `testdata/trust/`; they are written under a `# syntax=$FRONTEND_IMAGE` line.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Images, build, components_context, docker, layers, steps, text, unique_tag};

/// `testdata/trust/<name>` written into `dir` under the frontend's `# syntax=` line.
fn trust_spec(dir: &Path, name: &str) -> PathBuf {
    let body = std::fs::read_to_string(common::repo().join("testdata/trust").join(name)).unwrap();
    let body: String = body
        .lines()
        .filter(|l| !l.starts_with("# syntax="))
        .map(|l| format!("{l}\n"))
        .collect();
    // The syntax line replaces the one dropped, so line numbers stay those of the file.
    PathBuf::from(common::write_spec(dir, name, &body))
}

fn tempdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("nodestamp-trust-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Asserts that BuildKit printed the spec excerpt of `file` with `line` marked.
#[track_caller]
fn shows_line(log: &str, file: &str, line: usize, text: &str) {
    assert!(
        log.contains(&format!("{file}:{line}")),
        "no {file}:{line} in:\n{log}"
    );
    let marked = log
        .lines()
        .any(|l| l.trim_start().starts_with(&format!("{line} | >>>")) && l.contains(text));
    assert!(marked, "line {line} ({text:?}) not marked in:\n{log}");
}

// ---- engine-side failures ---------------------------------------------------------------------

/// Text of the scripts nodestamp generates (the package install, the `SOURCE_DATE_EPOCH`
/// wrapper): it runs from a file mounted into the step, never from the command line.
const GENERATED: &[&str] = &[
    "apt-get",
    "set -eu",
    "DEBIAN_FRONTEND",
    "nodestamp_since",
    "nodestamp_settle",
    "trap ",
    "SOURCE_DATE_EPOCH=",
];

/// The error lines of a build log: BuildKit's for the failing step (`#7 ERROR: process "…"
/// did not complete successfully`) and buildx's last one (`ERROR: failed to solve: …`).
fn error_lines(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| {
            let rest = match l.strip_prefix('#').and_then(|r| r.split_once(' ')) {
                Some((n, rest)) if n.chars().all(|c| c.is_ascii_digit()) => rest,
                _ => l,
            };
            rest.starts_with("ERROR:") || rest.starts_with("ERROR ")
        })
        .collect()
}

/// Asserts that no error line of `log` quotes a generated script, and that BuildKit's line for
/// the failing step shows `command` as its command line.
#[track_caller]
fn shows_command(log: &str, command: &str) {
    let errors = error_lines(log);
    for l in &errors {
        for g in GENERATED {
            assert!(!l.contains(g), "an error line quotes {g:?}: {l}\n{log}");
        }
    }
    let want = format!("ERROR: process \"{command}\" did not complete successfully");
    assert!(
        errors
            .iter()
            .any(|l| l.starts_with('#') && l.contains(&want)),
        "no {want:?} among {errors:#?}\n{log}"
    );
}

/// The build args of a run without and of a run with `SOURCE_DATE_EPOCH`, and the command line
/// prefix the epoch adds (the settling wrapper, mounted beside the script).
const EPOCHS: [(&[&str], &str); 2] = [
    (&[], ""),
    (
        &["--build-arg", "SOURCE_DATE_EPOCH=1700000000"],
        "/dev/nodestamp/settle ",
    ),
];

#[test]
#[ignore = "needs the docker engine; run by hack/test"]
fn a_missing_package_fails_showing_its_spec_line() {
    let dir = tempdir("missing-package");
    let spec = trust_spec(&dir, "missing-package.yaml");
    for (args, settle) in EPOCHS {
        let (ok, log) = build(&spec, "os", None, args, &dir);
        assert!(!ok, "built:\n{log}");
        missing_package_failure(&log, settle);
    }
}

#[track_caller]
fn missing_package_failure(log: &str, settle: &str) {
    assert!(
        log.contains("Unable to locate package nodestamp-no-such-package"),
        "{log}"
    );
    assert!(
        log.contains("[os 1/1] install packages: nodestamp-no-such-package"),
        "{log}"
    );
    shows_line(log, "missing-package.yaml", 7, "nodestamp-no-such-package");
    // The error line names the step and its spec line, not the generated install script.
    let error = common::engine().solve_error(
        "missing-package.yaml:7: step [os 1/1] install packages: nodestamp-no-such-package failed: exit code: 100",
    );
    assert!(log.contains(&error), "no {error:?} in:\n{log}");
    // BuildKit's line for the step shows its short command line, which names the step.
    shows_command(
        log,
        &format!("/bin/sh {settle}/dev/nodestamp/step install packages: nodestamp-no-such-package"),
    );
}

#[test]
#[ignore = "needs the docker engine; run by hack/test"]
fn a_failing_run_command_fails_showing_its_spec_line() {
    let dir = tempdir("failing-run");
    let spec = trust_spec(&dir, "failing-run.yaml");
    for (args, settle) in EPOCHS {
        let (ok, log) = build(&spec, "os", None, args, &dir);
        assert!(!ok, "built:\n{log}");
        assert!(log.contains("exit code: 3"), "{log}");
        assert!(
            log.contains("[os 2/2] run: echo nodestamp-run-fails"),
            "{log}"
        );
        shows_line(&log, "failing-run.yaml", 9, "exit 3");
        // The user's own command, as a Dockerfile's `RUN` shows it.
        shows_command(
            &log,
            &format!("/bin/sh {settle}-ec echo nodestamp-run-fails >&2; exit 3"),
        );
    }
}

/// BuildKit v0.13.2's http source does not check the response status when the checksum is
/// pinned (`source/http/source.go`, `Snapshot`): a 404 page is downloaded and fails as a digest
/// mismatch. Either way the step names the component and BuildKit shows its spec line.
#[test]
#[ignore = "needs the docker engine; run by hack/test"]
fn a_failing_download_fails_showing_its_spec_line() {
    let serve = common::repo().join("hack/serve");
    let out = Command::new("bash")
        .arg(&serve)
        .arg("start")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let url = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let dir = tempdir("download-404");
    let spec = trust_spec(&dir, "download-404.yaml");
    let arg = format!("COMPONENT_URL={url}");
    let (ok, log) = build(&spec, "kubernetes", None, &["--build-arg", &arg], &dir);
    assert!(!ok, "built:\n{log}");
    assert!(
        log.contains("invalid response status 404") || log.contains("digest mismatch"),
        "{log}"
    );
    assert!(log.contains("download component kubelet"), "{log}");
    shows_line(&log, "download-404.yaml", 10, "no-such-file");
}

#[test]
#[ignore = "needs the docker engine; run by hack/test"]
fn a_local_symlink_out_of_the_context_fails_at_its_line() {
    let dir = tempdir("symlink");
    let ctx = dir.join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("inside"), "inside\n").unwrap();
    std::os::unix::fs::symlink("/etc/hostname", ctx.join("abs")).unwrap();
    std::os::unix::fs::symlink("../../../../../../../etc/hostname", ctx.join("rel")).unwrap();
    for (link, line) in [("abs", 10), ("rel", 10)] {
        let body = format!(
            "version: 1\nos:\n  from: debian:bookworm\nkubernetes:\n  storage:\n    files:\n      - {{ path: /etc/inside, contents: {{ local: inside }} }}\n      # a symlink out of the context\n      - {{ path: /etc/escape, contents: {{ local: {link} }} }}\n"
        );
        let spec = PathBuf::from(common::write_spec(&dir, "symlink.yaml", &body));
        let (ok, log) = build(&spec, "kubernetes", None, &[], &ctx);
        assert!(!ok, "a symlink out of the context built ({link}):\n{log}");
        assert!(log.contains("not found"), "{log}");
        shows_line(&log, "symlink.yaml", line, &format!("local: {link}"));
    }
}

/// The way release directories are often laid out (`kubelet -> kubelet-v1.32.3`): a `local`
/// that is a symbolic link to another file of the context is read through the link, as a
/// component and as a file's contents, and lands as a regular file.
#[test]
#[ignore = "needs the docker engine; run by hack/test"]
fn a_local_symlink_to_another_context_file_is_followed() {
    let dir = tempdir("symlink-inside");
    let ctx = dir.join("ctx");
    std::fs::create_dir_all(ctx.join("releases")).unwrap();
    std::fs::create_dir_all(ctx.join("bin")).unwrap();
    std::fs::write(ctx.join("releases/tool-1.2.3"), "#!/bin/sh\necho 1.2.3\n").unwrap();
    std::os::unix::fs::symlink("../releases/tool-1.2.3", ctx.join("bin/tool")).unwrap();
    std::fs::write(ctx.join("tool.conf.v2"), "level = 2\n").unwrap();
    std::os::unix::fs::symlink("tool.conf.v2", ctx.join("tool.conf")).unwrap();
    let body = "version: 1\nos:\n  from: debian:bookworm\nkubernetes:\n  components:\n    - { name: tool, local: bin/tool, dest: /usr/local/bin/tool, mode: 0755 }\n  storage:\n    files:\n      - { path: /etc/tool.conf, contents: { local: tool.conf } }\n";
    let spec = PathBuf::from(common::write_spec(&dir, "symlink-inside.yaml", body));
    let out = dir.join("out");
    let dest = format!("type=local,dest={}", out.display());
    let (ok, log) = build(&spec, "kubernetes", None, &["-o", &dest], &ctx);
    assert!(ok, "{log}");
    for (path, want) in [
        ("usr/local/bin/tool", "#!/bin/sh\necho 1.2.3\n"),
        ("etc/tool.conf", "level = 2\n"),
    ] {
        let meta = std::fs::symlink_metadata(out.join(path)).unwrap();
        assert!(meta.is_file(), "{path} is not a regular file: {meta:?}");
        assert_eq!(std::fs::read_to_string(out.join(path)).unwrap(), want);
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(out.join("usr/local/bin/tool"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o755);
    let _ = std::fs::remove_dir_all(&dir);
}

// ---- SOURCE_DATE_EPOCH -------------------------------------------------------------------------

#[test]
#[ignore = "needs the docker engine; run by hack/test"]
fn the_kubernetes_layer_and_the_node_are_reproducible_across_a_cache_prune() {
    let dir = tempdir("reproducible");
    let spec = trust_spec(&dir, "reproducible.yaml");
    let ctx = components_context();
    // target → (tag before the prune, tag after it)
    let targets: Vec<(&str, String, String)> = ["kubernetes", "node"]
        .into_iter()
        .map(|t| {
            (
                t,
                unique_tag(&format!("repro-{t}-a")),
                unique_tag(&format!("repro-{t}-b")),
            )
        })
        .collect();
    let _images = Images(
        targets
            .iter()
            .flat_map(|(_, a, b)| [a.clone(), b.clone()])
            .collect(),
    );
    let args = ["--build-arg", "SOURCE_DATE_EPOCH=1700000000"];
    for (target, a, _) in &targets {
        let (ok, log) = build(&spec, target, Some(a), &args, &ctx);
        assert!(ok, "{log}");
        // Engines without symlink file actions make the links in a step of their own.
        if common::engine().has_symlink_file_action() {
            assert!(!log.contains("links: "), "a links step ran:\n{log}");
        } else {
            assert!(log.contains("links: "), "the links step should run:\n{log}");
        }
    }
    let out = docker(&["buildx", "prune", "-af"]);
    assert!(out.status.success(), "{}", text(&out));
    for (target, a, b) in &targets {
        let (ok, log) = build(&spec, target, Some(b), &args, &ctx);
        assert!(ok, "{log}");
        // Nothing came from the cache: every step ran again (the node build re-uses what the
        // Kubernetes build just made, so only the first build after the prune is checked).
        if *target == "kubernetes" {
            let cached = log.lines().filter(|l| l.ends_with(" CACHED")).count();
            assert_eq!(cached, 0, "the pruned build re-used steps:\n{log}");
        } else {
            for step in [
                "installed packages",
                "sha256 of local components",
                "build facts",
            ] {
                assert!(log.contains(step), "no provenance step {step:?}:\n{log}");
            }
        }
        assert_eq!(
            layers(a),
            layers(b),
            "{target}: layer digests differ after a prune"
        );
    }
    // The node is the base image, the Kubernetes layers and the three provenance layers.
    let (kubernetes, node) = (layers(&targets[0].1), layers(&targets[1].1));
    assert!(
        node.len() >= kubernetes.len() + 4,
        "kubernetes {kubernetes:?}\nnode {node:?}"
    );
}

// ---- the mounted scripts ------------------------------------------------------------------------

/// The entries of each layer of `docker save <tag>`, bottom first.
fn layer_entries(tag: &str, dir: &Path) -> Vec<Vec<String>> {
    let x = dir.join(format!("saved-{}", tag.replace(['/', ':'], "-")));
    let _ = std::fs::remove_dir_all(&x);
    std::fs::create_dir_all(&x).unwrap();
    let tar = x.join("image.tar");
    let out = docker(&["save", "-o", tar.to_str().unwrap(), tag]);
    assert!(out.status.success(), "{}", text(&out));
    let st = Command::new("tar")
        .args(["-xf", tar.to_str().unwrap(), "-C", x.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(st.success());
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(x.join("manifest.json")).unwrap()).unwrap();
    manifest[0]["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let out = Command::new("tar")
                .arg("-tf")
                .arg(x.join(l.as_str().unwrap()))
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", text(&out));
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(|e| e.trim_start_matches("./").to_string())
                .collect()
        })
        .collect()
}

/// `tar -tv --full-time` lines of the rootfs tar `tar` whose path is `dir/` or under it.
fn tar_lines_under(tar: &Path, dirs: &[&str]) -> Vec<String> {
    let out = Command::new("tar")
        .arg("-tvf")
        .arg(tar)
        .arg("--full-time")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| {
            let path = l.rsplit(' ').next().unwrap_or("").trim_start_matches("./");
            dirs.iter().any(|d| path.starts_with(&format!("{d}/")))
        })
        .map(str::to_string)
        .collect()
}

/// The generated steps run their scripts from files mounted at `/dev/nodestamp`; in the step's
/// container `/dev` is runc's tmpfs, not the root filesystem, so the mount point is made there
/// and nothing of it reaches the node. Measured: the node's `/dev` (and `/run`, where a mount
/// point on the root filesystem would be made, its time changed even after BuildKit removes
/// it) is the base image's, entry for entry and time for time, and no layer of those steps has
/// a `dev/` entry — with and without `SOURCE_DATE_EPOCH` (whose wrapper is mounted there too).
#[test]
#[ignore = "needs the docker engine; run by hack/test"]
fn the_mounted_scripts_leave_no_trace_in_the_node() {
    let dir = tempdir("no-trace");
    let base_spec = PathBuf::from(common::write_spec(
        &dir,
        "base.yaml",
        "version: 1\nname: no-trace-base\nos:\n  from: debian:bookworm\n",
    ));
    // Users, a set-user-ID file and a hard link to it (one step copies the section in, with the
    // files mounted at /dev/nodestamp-storage beside its script), a `run` entry.
    let body = "version: 1\nname: no-trace\nos:\n  from: debian:bookworm\n  passwd:\n    users:\n      - { name: core }\n  storage:\n    files:\n      - { path: /usr/local/bin/suid, mode: 04755, contents: { inline: \"#!/bin/sh\\n\" } }\n    links:\n      - { path: /usr/local/bin/hard, target: /usr/local/bin/suid, hard: true }\n  run:\n    - echo ran > /etc/nodestamp-ran\n";
    let spec = PathBuf::from(common::write_spec(&dir, "no-trace.yaml", body));
    let tar = |name: &str| dir.join(name);
    let to = |name: &str| format!("type=tar,dest={}", tar(name).display());

    // The root filesystem, without SOURCE_DATE_EPOCH (which sets the time of / and /dev).
    let (ok, log) = build(&base_spec, "os", None, &["-o", &to("base.tar")], &dir);
    assert!(ok, "{log}");
    let (ok, log) = build(&spec, "os", None, &["-o", &to("node.tar")], &dir);
    assert!(ok, "{log}");
    for step in [
        "groups: -; users: core",
        "files (2): onto the OS",
        "run: echo ran",
    ] {
        assert!(log.contains(step), "no step {step:?}:\n{log}");
    }
    let (base, node) = (
        tar_lines_under(&tar("base.tar"), &["dev", "run"]),
        tar_lines_under(&tar("node.tar"), &["dev", "run"]),
    );
    assert!(base.iter().any(|l| l.ends_with(" dev/")), "{base:?}");
    assert_eq!(
        node, base,
        "the node's /dev or /run is not the base image's"
    );

    // The layers.
    let base_tag = unique_tag("no-trace-base");
    let (plain, epoch) = (unique_tag("no-trace"), unique_tag("no-trace-epoch"));
    let _images = Images(vec![base_tag.clone(), plain.clone(), epoch.clone()]);
    let (ok, log) = build(&base_spec, "os", Some(&base_tag), &[], &dir);
    assert!(ok, "{log}");
    let below = layers(&base_tag).len();
    for (tag, args) in [
        (&plain, &[][..]),
        (&epoch, &["--build-arg", "SOURCE_DATE_EPOCH=1700000000"][..]),
    ] {
        let (ok, log) = build(&spec, "os", Some(tag), args, &dir);
        assert!(ok, "{log}");
        let entries = layer_entries(tag, &dir);
        assert!(entries.len() > below, "{tag}: no layer of its own");
        for (i, layer) in entries.iter().enumerate().skip(below) {
            let dev: Vec<&String> = layer.iter().filter(|e| e.starts_with("dev")).collect();
            assert!(dev.is_empty(), "{tag}: layer {i} has {dev:?}");
        }
        // The steps did their work.
        let all: Vec<&String> = entries.iter().flatten().collect();
        for want in ["etc/nodestamp-ran", "usr/local/bin/hard", "home/core/"] {
            assert!(all.iter().any(|e| *e == want), "{tag}: no {want}");
        }
    }
}

// ---- secrets and build-time files ----------------------------------------------------------------

/// Every blob of `docker save <tag>` (gzip layers decompressed), as bytes.
fn saved_blobs(tag: &str, dir: &Path) -> Vec<(String, Vec<u8>)> {
    let tar = dir.join("image.tar");
    let out = docker(&["save", "-o", tar.to_str().unwrap(), tag]);
    assert!(out.status.success(), "{}", text(&out));
    let x = dir.join("image");
    std::fs::create_dir_all(&x).unwrap();
    let st = Command::new("tar")
        .args(["-xf", tar.to_str().unwrap(), "-C", x.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(st.success());
    let mut blobs = Vec::new();
    let mut stack = vec![x];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let mut bytes = std::fs::read(&p).unwrap();
            if bytes.starts_with(&[0x1f, 0x8b]) {
                let out = Command::new("gzip")
                    .args(["-dc", p.to_str().unwrap()])
                    .output()
                    .unwrap();
                assert!(out.status.success());
                bytes = out.stdout;
            }
            blobs.push((p.display().to_string(), bytes));
        }
    }
    blobs
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
#[ignore = "needs the docker engine; run by hack/test"]
fn secrets_and_build_files_leave_no_trace_in_the_image() {
    let dir = tempdir("secrets");
    let spec = trust_spec(&dir, "secrets.yaml");
    let nonce = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let hook_marker = format!("nodestamp-secret-hook-{nonce}");
    let token = format!("nodestamp-secret-token-{nonce}");
    let hook = dir.join("apt-hook");
    std::fs::write(
        &hook,
        format!("// {hook_marker}\nDPkg::Post-Invoke {{ \"touch /etc/nodestamp-package-step-saw-the-secret\"; }};\n"),
    )
    .unwrap();
    let token_file = dir.join("token");
    std::fs::write(&token_file, &token).unwrap();
    let tag = unique_tag("secrets");
    let _images = Images(vec![tag.clone()]);
    let s1 = format!("id=apt-hook,src={}", hook.display());
    let s2 = format!("id=token,src={}", token_file.display());
    let ctx = dir.join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    let (ok, log) = build(
        &spec,
        "os",
        Some(&tag),
        &["--secret", &s1, "--secret", &s2],
        &ctx,
    );
    assert!(ok, "{log}");

    // The steps saw the secrets and the build-time files...
    let script = "set -e; ls /etc/nodestamp-package-step-saw-the-secret; cat /etc/token-file.sha256 /etc/token-env.sha256 /etc/build-file-seen; \
        for f in /etc/apt/apt.conf.d/99nodestamp-secret /run/secrets/token /etc/dpkg/dpkg.cfg.d/nodestamp-build-only /etc/nodestamp-build-only.conf; do \
          if [ -e \"$f\" ]; then echo \"LEFT $f\"; fi; done; \
        jq --version; ls /usr/share/doc/jq 2>/dev/null | wc -l | sed 's/^/DOCS /'";
    let out = docker(&["run", "--rm", "--network", "none", &tag, "sh", "-c", script]);
    let got = text(&out);
    assert!(out.status.success(), "{got}");
    let sha = |s: &str| {
        use std::io::Write;
        let mut c = Command::new("sha256sum")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
        let o = c.wait_with_output().unwrap();
        String::from_utf8_lossy(&o.stdout)
            .split(' ')
            .next()
            .unwrap()
            .to_string()
    };
    let token_sha = sha(&token);
    assert_eq!(
        got.matches(&token_sha).count(),
        2,
        "file and env secret hashes:\n{got}"
    );
    assert!(got.contains("/etc/nodestamp-build-only.conf"), "{got}");
    assert!(got.contains("jq-1."), "{got}");
    assert!(
        got.contains("DOCS 0"),
        "the dpkg build file excluded jq's docs:\n{got}"
    );
    // ...and left nothing behind: no mount points, no secret in any blob or in the config.
    assert!(!got.contains("LEFT "), "{got}");
    for (name, bytes) in saved_blobs(&tag, &dir) {
        assert!(
            !contains(&bytes, token.as_bytes()),
            "the token is in {name}"
        );
        assert!(
            !contains(&bytes, hook_marker.as_bytes()),
            "the apt secret is in {name}"
        );
        assert!(
            !contains(&bytes, b"build-time-file-marker"),
            "a build file is in {name}"
        );
    }
    let inspect = text(&docker(&["image", "inspect", &tag]));
    assert!(
        !inspect.contains(&token) && !inspect.contains(&hook_marker),
        "{inspect}"
    );
    assert!(!inspect.contains("TOKEN="), "{inspect}");
}

// ---- proxies ----------------------------------------------------------------------------------

#[test]
#[ignore = "needs the docker engine; run by hack/test"]
fn proxies_reach_run_steps_without_entering_the_cache_key() {
    let dir = tempdir("proxy");
    let spec = trust_spec(&dir, "proxy.yaml");
    let nonce = format!(
        "{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let (a, b) = (unique_tag("proxy-a"), unique_tag("proxy-b"));
    let _images = Images(vec![a.clone(), b.clone()]);
    let n = format!("NONCE={nonce}");
    let build_with = |tag: &str, proxy: &str| {
        let p = format!("HTTP_PROXY={proxy}");
        build(
            &spec,
            "os",
            Some(tag),
            &[
                "--build-arg",
                &n,
                "--build-arg",
                &p,
                "--build-arg",
                "NO_PROXY=localhost",
            ],
            &dir,
        )
    };
    let (ok, log) = build_with(&a, "http://proxy-a.invalid:3128");
    assert!(ok, "{log}");
    let seen = |tag: &str| {
        text(&docker(&[
            "run",
            "--rm",
            "--network",
            "none",
            tag,
            "cat",
            "/etc/proxy-seen",
        ]))
    };
    assert_eq!(
        seen(&a).trim(),
        format!("{nonce}:http://proxy-a.invalid:3128:localhost")
    );
    // Another proxy: the step is re-used, so the proxy is not part of its cache key.
    let (ok, log) = build_with(&b, "http://proxy-b.invalid:3128");
    assert!(ok, "{log}");
    let run: Vec<(String, bool)> = steps(&log)
        .into_iter()
        .filter(|(name, _)| name.starts_with("[os 1/1] run"))
        .collect();
    assert!(
        !run.is_empty() && run.iter().all(|(_, c)| *c),
        "{run:?}\n{log}"
    );
    assert_eq!(layers(&a), layers(&b));
    // Nor is it in the image config.
    let inspect = text(&docker(&["image", "inspect", &b]));
    assert!(!inspect.contains("proxy-b.invalid"), "{inspect}");
}
