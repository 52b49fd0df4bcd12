//! Engine tests of the build cache through `docker buildx build`: cache import after a prune
//! (`--cache-from type=local`, inline cache), `--no-cache`, `--no-cache-filter`, OS layers
//! reproducible across a prune with `SOURCE_DATE_EPOCH`, and cache sources that cannot be used
//! reported as for a Dockerfile build. They prune the engine's build cache. Run with
//! `cargo test -- --ignored --test-threads=1` (hack/test does).
//!
//! The spec is testdata/cache/node.yaml; its context holds a small made-up component.

mod common;

use std::path::{Path, PathBuf};

use common::{
    Images, build, cached_work_steps, docker, layers, prune_build_cache, text, unique_tag,
    work_steps, write_spec,
};

/// A build context with the cache spec (under the frontend's `# syntax=` line) and its
/// component; returns the spec path.
fn cache_context(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir.join("components")).unwrap();
    std::fs::write(dir.join("components/tool"), "#!/bin/sh\necho tool\n").unwrap();
    cache_spec(dir, "node.yaml")
}

/// `testdata/cache/<name>` written into `dir` as `node.yaml`, under the frontend's `# syntax=`
/// line.
fn cache_spec(dir: &Path, name: &str) -> PathBuf {
    let body = std::fs::read_to_string(common::repo().join("testdata/cache").join(name)).unwrap();
    let body: String = body
        .lines()
        .filter(|l| !l.starts_with("# syntax="))
        .map(|l| format!("{l}\n"))
        .collect();
    PathBuf::from(write_spec(dir, "node.yaml", &body))
}

/// Builds `target` of `spec` twice with `SOURCE_DATE_EPOCH`, the build cache pruned in between
/// (every OS step runs again), and asserts that the two images have the same layers. Returns
/// the two tags.
fn built_twice_across_a_prune(spec: &Path, target: &str, name: &str, dir: &Path) -> Images {
    let id = run_id(name);
    let (a, b) = (
        unique_tag(&format!("cache-{name}-a")),
        unique_tag(&format!("cache-{name}-b")),
    );
    let images = Images(vec![a.clone(), b.clone()]);
    let args = [
        "--build-arg",
        &id,
        "--build-arg",
        "SOURCE_DATE_EPOCH=1700000000",
    ];
    let (ok, log) = build(spec, target, Some(&a), &args, dir);
    assert!(ok, "{log}");
    prune_build_cache();
    let (ok, log) = build(spec, target, Some(&b), &args, dir);
    assert!(ok, "{log}");
    assert_all_ran("the OS steps after the prune", &log, &["[os "]);
    let (la, lb) = (layers(&a), layers(&b));
    let differ: Vec<usize> = (0..la.len().max(lb.len()))
        .filter(|i| la.get(*i) != lb.get(*i))
        .collect();
    assert!(
        differ.is_empty(),
        "layers {differ:?} differ:\n{la:?}\n{lb:?}"
    );
    images
}

/// A build arg unique to this test run, so that no other build shares its steps.
fn run_id(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("RUN_ID={test}-{}-{nanos}", std::process::id())
}

/// The work steps whose names start with one of `prefixes`.
fn steps_of(log: &str, prefixes: &[&str]) -> Vec<(String, bool)> {
    work_steps(log)
        .into_iter()
        .filter(|(n, _)| prefixes.iter().any(|p| n.starts_with(p)))
        .collect()
}

#[track_caller]
fn assert_all_reused(what: &str, steps: &[(String, bool)], log: &str) {
    assert!(!steps.is_empty(), "{what}: no such steps in:\n{log}");
    let ran: Vec<&String> = steps.iter().filter(|(_, r)| !r).map(|(n, _)| n).collect();
    assert!(ran.is_empty(), "{what}: these steps ran: {ran:?}\n{log}");
}

/// Asserts that no step of `log` whose name starts with one of `prefixes` (all work steps when
/// empty) was reported `CACHED`.
#[track_caller]
fn assert_all_ran(what: &str, log: &str, prefixes: &[&str]) {
    let steps: Vec<(String, bool)> = cached_work_steps(log)
        .into_iter()
        .filter(|(n, _)| prefixes.is_empty() || prefixes.iter().any(|p| n.starts_with(p)))
        .collect();
    assert!(!steps.is_empty(), "{what}: no such steps in:\n{log}");
    let reused: Vec<&String> = steps.iter().filter(|(_, r)| *r).map(|(n, _)| n).collect();
    assert!(
        reused.is_empty(),
        "{what}: these steps were re-used: {reused:?}\n{log}"
    );
}

/// Whether `inner` appears in `outer` as a contiguous run.
fn contains_run(outer: &[String], inner: &[String]) -> bool {
    !inner.is_empty() && outer.windows(inner.len()).any(|w| w == inner)
}

#[test]
#[ignore = "needs the docker engine; prunes the build cache; run by hack/test"]
fn a_local_cache_import_after_a_prune_reuses_every_step() {
    let dir = tempfile::tempdir().unwrap();
    let spec = cache_context(dir.path());
    let cache = dir.path().join("cache");
    let id = run_id("local");
    let (a, b) = (unique_tag("cache-local-a"), unique_tag("cache-local-b"));
    let _images = Images(vec![a.clone(), b.clone()]);

    prune_build_cache();
    let to = format!("type=local,dest={},mode=max", cache.display());
    let (ok, log) = build(
        &spec,
        "node",
        Some(&a),
        &["--build-arg", &id, "--cache-to", &to],
        dir.path(),
    );
    assert!(ok, "{log}");

    prune_build_cache();
    let from = format!("type=local,src={}", cache.display());
    let (ok, log) = build(
        &spec,
        "node",
        Some(&b),
        &["--build-arg", &id, "--cache-from", &from],
        dir.path(),
    );
    assert!(ok, "{log}");
    let os_k8s = steps_of(&log, &["[os ", "[kubernetes "]);
    assert!(
        os_k8s.iter().filter(|(n, _)| n.starts_with("[os ")).count() >= 4,
        "packages, users, files and run steps expected: {os_k8s:?}"
    );
    assert_all_reused("OS and Kubernetes steps after the import", &os_k8s, &log);
    assert_all_reused("every step after the import", &work_steps(&log), &log);
    assert_eq!(layers(&a), layers(&b), "the imported build differs");
}

#[test]
#[ignore = "needs the docker engine; prunes the build cache; run by hack/test"]
fn no_cache_runs_every_step() {
    let dir = tempfile::tempdir().unwrap();
    let spec = cache_context(dir.path());
    let id = run_id("nocache");
    let (ok, log) = build(&spec, "node", None, &["--build-arg", &id], dir.path());
    assert!(ok, "{log}");
    let (ok, log) = build(&spec, "node", None, &["--build-arg", &id], dir.path());
    assert!(ok, "{log}");
    assert_all_reused("a rebuild", &work_steps(&log), &log);

    let (ok, log) = build(
        &spec,
        "node",
        None,
        &["--build-arg", &id, "--no-cache"],
        dir.path(),
    );
    assert!(ok, "{log}");
    assert_all_ran("--no-cache", &log, &[]);
}

#[test]
#[ignore = "needs the docker engine; run by hack/test"]
fn no_cache_filter_os_reruns_the_os_steps_and_keeps_the_kubernetes_layer() {
    let dir = tempfile::tempdir().unwrap();
    let spec = cache_context(dir.path());
    let id = run_id("filter");
    let (a, b, k) = (
        unique_tag("cache-filter-a"),
        unique_tag("cache-filter-b"),
        unique_tag("cache-filter-k"),
    );
    let _images = Images(vec![a.clone(), b.clone(), k.clone()]);
    let (ok, log) = build(&spec, "node", Some(&a), &["--build-arg", &id], dir.path());
    assert!(ok, "{log}");
    let (ok, log) = build(
        &spec,
        "kubernetes",
        Some(&k),
        &["--build-arg", &id],
        dir.path(),
    );
    assert!(ok, "{log}");

    let (ok, log) = build(
        &spec,
        "node",
        Some(&b),
        &["--build-arg", &id, "--no-cache-filter", "os"],
        dir.path(),
    );
    assert!(ok, "{log}");
    assert_all_ran("OS steps", &log, &["[os "]);
    assert_all_reused("Kubernetes steps", &steps_of(&log, &["[kubernetes "]), &log);
    let kubernetes = layers(&k);
    let (la, lb) = (layers(&a), layers(&b));
    assert!(
        contains_run(&la, &kubernetes),
        "{kubernetes:?} not in {la:?}"
    );
    assert!(
        contains_run(&lb, &kubernetes),
        "{kubernetes:?} not in {lb:?}"
    );
    assert_ne!(la, lb, "the OS steps ran again: their layers are new");

    // A name that is no step group is an error naming the groups.
    let (ok, log) = build(
        &spec,
        "node",
        None,
        &["--build-arg", &id, "--no-cache-filter", "packages"],
        dir.path(),
    );
    assert!(!ok, "{log}");
    assert!(
        log.contains(r#"--no-cache-filter: unknown step group "packages""#)
            && log.contains("os (the OS layer"),
        "{log}"
    );
}

#[test]
#[ignore = "needs the docker engine; prunes the build cache; run by hack/test"]
fn a_node_with_os_packages_is_reproducible_across_a_prune() {
    let dir = tempfile::tempdir().unwrap();
    let spec = cache_context(dir.path());
    built_twice_across_a_prune(&spec, "node", "repro", dir.path());
}

/// The lines of `log` that mention `needle`, without BuildKit's step numbers (`#12 `), which
/// differ between a Dockerfile and a spec build.
fn lines_about(log: &str, needle: &str) -> std::collections::BTreeSet<String> {
    log.lines()
        .filter(|l| l.contains(needle))
        .map(
            |l| match l.strip_prefix('#').and_then(|r| r.split_once(' ')) {
                Some((n, rest)) if n.chars().all(|c| c.is_ascii_digit()) => rest.to_string(),
                _ => l.to_string(),
            },
        )
        .map(|l| l.trim().to_string())
        .collect()
}

#[test]
#[ignore = "needs the docker engine; run by hack/test"]
fn an_unusable_cache_source_is_reported_as_for_a_dockerfile() {
    let dir = tempfile::tempdir().unwrap();
    let spec = cache_context(dir.path());
    let id = run_id("unusable");
    let df_dir = dir.path().join("dockerfile");
    std::fs::create_dir_all(&df_dir).unwrap();
    std::fs::write(
        df_dir.join("Dockerfile"),
        "FROM debian:bookworm\nRUN true\n",
    )
    .unwrap();
    let missing = dir.path().join("no-such-cache");
    let missing = missing.to_str().unwrap();
    // A registry reference nothing answers for (port 9 on the loopback: connection refused).
    let unknown_ref = "127.0.0.1:9/nodestamp/no-such-cache:1";
    for (source, needle) in [
        (format!("type=local,src={missing}"), missing),
        (format!("type=registry,ref={unknown_ref}"), unknown_ref),
    ] {
        let out = docker(&[
            "buildx",
            "build",
            "--progress=plain",
            "--cache-from",
            &source,
            df_dir.to_str().unwrap(),
        ]);
        let df_log = text(&out);
        let (ok, log) = build(
            &spec,
            "node",
            None,
            &["--build-arg", &id, "--cache-from", &source],
            dir.path(),
        );
        assert_eq!(
            ok,
            out.status.success(),
            "{source}: the Dockerfile build {} and the spec build {}:\n{df_log}\n{log}",
            if out.status.success() {
                "succeeded"
            } else {
                "failed"
            },
            if ok { "succeeded" } else { "failed" }
        );
        let (df_lines, lines) = (lines_about(&df_log, needle), lines_about(&log, needle));
        assert!(
            !df_lines.is_empty(),
            "{source}: the Dockerfile build says nothing of it:\n{df_log}"
        );
        assert_eq!(
            df_lines, lines,
            "{source}: reported differently:\n{df_log}\n{log}"
        );
    }
}

#[test]
#[ignore = "needs the docker engine; prunes the build cache; run by hack/test"]
fn os_files_with_named_owners_and_hard_links_are_reproducible_across_a_prune() {
    let dir = tempfile::tempdir().unwrap();
    let spec = cache_spec(dir.path(), "in-place.yaml");
    let images = built_twice_across_a_prune(&spec, "os", "inplace", dir.path());
    let b = &images.0[1];

    // Owners, modes and the link are as the spec says; the directories the step added entries
    // to have SOURCE_DATE_EPOCH, and the hard link shares its target's inode.
    let out = docker(&[
        "run",
        "--rm",
        "--entrypoint",
        "stat",
        b,
        "-c",
        "%n %U:%G %a %h %i %Y",
        "/home/core",
        "/home/core/notes",
        "/home/core/notes/todo",
        "/usr/local/bin",
        "/usr/local/bin/hello",
        "/usr/local/bin/hi",
    ]);
    let stat = text(&out);
    assert!(out.status.success(), "{stat}");
    let lines: Vec<Vec<&str>> = stat.lines().map(|l| l.split(' ').collect()).collect();
    assert_eq!(lines.len(), 6, "{stat}");
    assert_eq!(lines[0][1..2], ["core:core"], "{stat}");
    assert_eq!(lines[0][5], "1700000000", "{stat}");
    assert_eq!(lines[1][1..3], ["core:core", "700"], "{stat}");
    assert_eq!(lines[2][1..4], ["core:core", "640", "1"], "{stat}");
    assert_eq!(lines[3][5], "1700000000", "{stat}");
    assert_eq!(lines[4][1..4], ["root:root", "755", "2"], "{stat}");
    assert_eq!(lines[5][1..5], lines[4][1..5], "{stat}");
}

/// Without `SOURCE_DATE_EPOCH` too, a hard link to a file of the same `os.storage` section is a
/// hard link in the image (one inode, link count 2), not a copy: both are made in one step.
#[test]
#[ignore = "needs the docker engine; run by hack/test"]
fn a_hard_link_to_a_file_of_its_section_is_a_link_in_the_image() {
    let dir = tempfile::tempdir().unwrap();
    let spec = cache_spec(dir.path(), "in-place.yaml");
    let id = run_id("hard-link");
    let tag = unique_tag("cache-hard-link");
    let _images = Images(vec![tag.clone()]);
    let (ok, log) = build(&spec, "os", Some(&tag), &["--build-arg", &id], dir.path());
    assert!(ok, "{log}");
    let out = docker(&[
        "run",
        "--rm",
        "--entrypoint",
        "stat",
        &tag,
        "-c",
        "%U:%G %a %h %i",
        "/usr/local/bin/hello",
        "/usr/local/bin/hi",
        "/home/core/notes/todo",
    ]);
    let stat = text(&out);
    assert!(out.status.success(), "{stat}");
    let lines: Vec<&str> = stat.lines().collect();
    assert_eq!(lines.len(), 3, "{stat}");
    assert!(lines[0].starts_with("root:root 755 2 "), "{stat}");
    assert_eq!(lines[0], lines[1], "not one inode:\n{stat}");
    assert!(lines[2].starts_with("core:core 640 1 "), "{stat}");
}
