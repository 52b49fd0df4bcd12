//! Engine tests of the gateway conversation: the real Docker Engine BuildKit runs the frontend
//! image (`$FRONTEND_IMAGE`, default `nodestamp/frontend:dev`, built by `hack/build-frontend`)
//! through `docker buildx build`. Run with `cargo test -- --ignored` (hack/test does).

mod common;

use common::{docker, frontend_image, text, unique_tag, write_spec};

#[test]
#[ignore = "needs the docker engine; run by hack/test"]
fn builds_an_image_through_the_gateway() {
    let ctx = tempfile::tempdir().unwrap();
    // Not the default name: the frontend must honour the `filename` option.
    let spec = write_spec(
        ctx.path(),
        "edge.yaml",
        "version: 1\nname: edge\nos:\n  from: debian:bookworm\n",
    );
    let tag = unique_tag("gateway-ok");
    let out = docker(&[
        "buildx",
        "build",
        "--progress=plain",
        "--target",
        "node",
        "-f",
        &spec,
        "-t",
        &tag,
        ctx.path().to_str().unwrap(),
    ]);
    let log = text(&out);
    assert!(out.status.success(), "build failed:\n{log}");
    assert!(
        log.contains("[internal] load build definition from edge.yaml"),
        "{log}"
    );

    // The result came back through Return with our containerimage.config: the base image's
    // own config (resolved through ResolveImageConfig: Cmd ["bash"]) plus our labels.
    let inspect = docker(&[
        "image",
        "inspect",
        "--format",
        "{{json .Config.Cmd}} {{index .Config.Labels \"io.nodestamp.target\"}} {{index .Config.Labels \"org.opencontainers.image.title\"}}",
        &tag,
    ]);
    let _ = docker(&["image", "rm", "-f", &tag]);
    assert!(inspect.status.success(), "{}", text(&inspect));
    assert_eq!(
        String::from_utf8_lossy(&inspect.stdout).trim(),
        r#"["bash"] node edge"#
    );
}

#[test]
#[ignore = "needs the docker engine; run by hack/test"]
fn an_error_shows_the_spec_lines_around_it() {
    let ctx = tempfile::tempdir().unwrap();
    let spec = write_spec(
        ctx.path(),
        "node.yaml",
        "version: 1\nname: test\nos:\n  from: debian:bookworm\n  packges: [jq]\n",
    );
    let out = docker(&[
        "buildx",
        "build",
        "--progress=plain",
        "-f",
        &spec,
        ctx.path().to_str().unwrap(),
    ]);
    let log = text(&out);
    assert!(
        !out.status.success(),
        "the build should have failed:\n{log}"
    );
    // The message, then buildx's rendering of the errdefs.Source detail: file:line, the
    // surrounding lines, and the failing one marked with >>>.
    assert!(
        log.contains(&common::engine().solve_error("node.yaml:6:3: os.packges: unknown key")),
        "{log}"
    );
    assert!(log.contains("node.yaml:6\n"), "{log}");
    assert!(log.contains("   6 | >>>   packges: [jq]"), "{log}");
    assert!(log.contains("did you mean `packages`"), "{log}");
    assert!(log.contains("   5 |       from: debian:bookworm"), "{log}");
}

#[test]
#[ignore = "needs the docker engine; run by hack/test"]
fn buildkit_syntax_build_arg_selects_the_frontend() {
    let ctx = tempfile::tempdir().unwrap();
    let spec = ctx.path().join("node.yaml");
    std::fs::write(&spec, "version: 1\nname: plain\nkubernets: {}\n").unwrap();
    let syntax = format!("BUILDKIT_SYNTAX={}", frontend_image());
    let out = docker(&[
        "buildx",
        "build",
        "--progress=plain",
        "--build-arg",
        &syntax,
        "-f",
        spec.to_str().unwrap(),
        ctx.path().to_str().unwrap(),
    ]);
    let log = text(&out);
    // Only our frontend reports spec keys; the Dockerfile frontend would fail on the YAML.
    assert!(!out.status.success(), "{log}");
    assert!(log.contains("   3 | >>> kubernets: {}"), "{log}");
    assert!(
        log.contains("node.yaml:3:1: kubernets: unknown key"),
        "{log}"
    );
}
