//! Engine tests of `kubernetes.images`: each image is a layer of its own on the Kubernetes side
//! (independent of the OS, of the other images), a wrong sha256 fails naming the image, bad
//! entries fail at their spec lines, and `--target test` checks the images. The archives are
//! hack/test-images' (build/components/context/images/, made by hack/setup components).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{
    Images, build, components_context, docker, layers, steps, text, unique_tag, write_spec,
};

/// The digest containerd records for an archive: its index.json entry.
fn archive_digest(archive: &Path) -> String {
    let out = Command::new("tar")
        .arg("-xOf")
        .arg(archive)
        .arg("index.json")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["manifests"][0]["digest"].as_str().unwrap().to_owned()
}

fn context() -> PathBuf {
    let ctx = components_context();
    assert!(
        ctx.join("images/hello-a.tar").is_file(),
        "{} is missing: run hack/test-images",
        ctx.join("images").display()
    );
    ctx
}

fn node_spec(os_file: &str, images: &str) -> String {
    format!(
        r#"version: 1
name: images
os:
  from: debian:bookworm
  storage:
    files:
      - {{ path: /etc/os-variant, contents: {{ inline: "{os_file}\n" }} }}
kubernetes:
  images:
{images}
"#
    )
}

const A: &str = "    - { ref: example.org/hello-a:1, archive: images/hello-a.tar }";
const B: &str = "    - { ref: example.org/hello-b:1, archive: images/hello-b.tar }";
const B2: &str = "    - { ref: example.org/hello-b:2, archive: images/hello-b.tar }";

#[test]
#[ignore = "needs the docker engine; run by hack/test"]
fn image_layers_do_not_depend_on_the_os_or_on_each_other() {
    let ctx = context();
    let dir = tempfile::tempdir().unwrap();
    let mut images = Images(Vec::new());
    let mut node = |name: &str, body: String| {
        let spec = write_spec(dir.path(), &format!("{name}.yaml"), &body);
        let tag = unique_tag(&format!("images-{name}"));
        images.0.push(tag.clone());
        let (ok, log) = build(Path::new(&spec), "node", Some(&tag), &[], &ctx);
        assert!(ok, "{name} failed:\n{log}");
        (layers(&tag), log, tag)
    };
    let (a, _, tag_a) = node("a", node_spec("one", &format!("{A}\n{B}")));
    let (os_changed, _, _) = node("os", node_spec("two", &format!("{A}\n{B}")));
    let (bumped, log_bumped, _) = node("bump", node_spec("one", &format!("{A}\n{B2}")));

    // The Kubernetes image alone: its layers are the image layers (and the configuration).
    let k8s = unique_tag("images-k8s");
    images.0.push(k8s.clone());
    let spec = write_spec(
        dir.path(),
        "k.yaml",
        &node_spec("one", &format!("{A}\n{B}")),
    );
    let (ok, log) = build(Path::new(&spec), "kubernetes", Some(&k8s), &[], &ctx);
    assert!(ok, "{log}");
    let k = layers(&k8s);
    assert!(
        k.len() >= 3,
        "two image layers and the configuration: {k:?}"
    );
    for l in &k {
        assert!(a.contains(l), "node a lacks Kubernetes layer {l}");
        assert!(
            os_changed.contains(l),
            "after an OS change, Kubernetes layer {l} is not byte-identical"
        );
    }
    assert_ne!(a, os_changed, "the OS change should change the OS layer");

    // Bumping image b: every OS layer and image a's layer unchanged, image b's layer new.
    let new: Vec<_> = bumped.iter().filter(|l| !a.contains(l)).collect();
    let gone: Vec<_> = a.iter().filter(|l| !bumped.contains(l)).collect();
    assert!(
        !new.is_empty() && new.len() <= 3,
        "bumping one image adds its layer (and the provenance on top): {new:?}"
    );
    assert!(!gone.is_empty(), "image b's old layer should be gone");
    let s = steps(&log_bumped);
    let os: Vec<_> = s.iter().filter(|(n, _)| n.starts_with("[os ")).collect();
    assert!(
        os.iter().all(|(_, c)| **c),
        "OS steps re-ran after an image bump: {os:?}"
    );
    let img_a: Vec<_> = s
        .iter()
        .filter(|(n, _)| n.contains("image example.org/hello-a:1"))
        .collect();
    assert!(
        !img_a.is_empty() && img_a.iter().all(|(_, c)| **c),
        "image a's step re-ran: {img_a:?}"
    );

    // In the node: the archive named by its ref with the archive's digest, and its record.
    let digest = archive_digest(&ctx.join("images/hello-a.tar"));
    let script = "cat /var/lib/nodestamp/images/*.import; \
        tar -xOf '/var/lib/nodestamp/images/example.org+hello-a=1.tar' index.json; \
        cat /etc/systemd/system/nodestamp-images.service; \
        readlink /etc/systemd/system/multi-user.target.wants/nodestamp-images.service";
    let out = docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        &tag_a,
        "sh",
        "-c",
        script,
    ]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    for want in [
        format!("example.org/hello-a:1 {digest}"),
        "\"io.containerd.image.name\":\"example.org/hello-a:1\"".to_string(),
        "After=containerd.service".to_string(),
        "Before=kubelet.service".to_string(),
        "/etc/systemd/system/nodestamp-images.service".to_string(),
    ] {
        assert!(t.contains(&want), "missing {want:?} in:\n{t}");
    }
}

#[test]
#[ignore = "needs the docker engine; run by hack/test"]
fn a_wrong_sha256_fails_naming_the_image_at_its_line() {
    let ctx = context();
    let dir = tempfile::tempdir().unwrap();
    let wrong = "0".repeat(64);
    let body = format!(
        "version: 1\nos: {{ from: debian:bookworm }}\nkubernetes:\n  images:\n{A}\n    - {{ ref: example.org/hello-b:1, archive: images/hello-b.tar, sha256: {wrong} }}\n"
    );
    let spec = write_spec(dir.path(), "sha.yaml", &body);
    let (ok, log) = build(Path::new(&spec), "kubernetes", None, &[], &ctx);
    assert!(!ok, "a wrong sha256 built:\n{log}");
    let actual = {
        let out = Command::new("sha256sum")
            .arg(ctx.join("images/hello-b.tar"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap()
            .to_owned()
    };
    assert!(
        log.contains(&format!("image example.org/hello-b:1 (images/hello-b.tar): the archive's sha256 is {actual}, the spec says {wrong}")),
        "{log}"
    );
    assert!(
        log.contains("sha.yaml:7:"),
        "the error should name the entry's line:\n{log}"
    );
}

#[test]
#[ignore = "needs the docker engine; run by hack/test"]
fn bad_image_entries_fail_at_their_lines() {
    let ctx = context();
    let dir = tempfile::tempdir().unwrap();
    // Spec errors: all at once, each at its line.
    let body = "version: 1\nos: { from: debian:bookworm }\nkubernetes:\n  images:\n    - { ref: Example.org/UPPER:1, archive: images/hello-a.tar }\n    - { ref: hello:1, archive: images/hello-a.tar }\n    - { ref: docker.io/library/hello:1, archive: images/hello-b.tar }\n    - { ref: ok:1 }\n";
    let spec = write_spec(dir.path(), "bad.yaml", body);
    let (ok, log) = build(Path::new(&spec), "kubernetes", None, &[], &ctx);
    assert!(!ok, "{log}");
    for want in [
        "bad.yaml:6:",
        "is not an image reference",
        "bad.yaml:8:",
        "docker.io/library/hello:1",
        "bad.yaml:9:",
        "archive",
    ] {
        assert!(log.contains(want), "missing {want:?}:\n{log}");
    }
    // Build-time errors, each in its entry's step at its line.
    for (name, archive, want) in [
        (
            "missing",
            "images/nope.tar",
            "images/nope.tar is not in the build context",
        ),
        ("notimage", "components/kubectl", "not an image archive"),
    ] {
        let body = format!(
            "version: 1\nos: {{ from: debian:bookworm }}\nkubernetes:\n  images:\n    - {{ ref: example.org/x:1, archive: {archive} }}\n"
        );
        let spec = write_spec(dir.path(), &format!("{name}.yaml"), &body);
        let (ok, log) = build(Path::new(&spec), "kubernetes", None, &[], &ctx);
        assert!(!ok, "{name} built:\n{log}");
        assert!(log.contains(want), "{name}: missing {want:?}:\n{log}");
        assert!(
            log.contains(&format!("{name}.yaml:6:")),
            "{name}: no spec line:\n{log}"
        );
    }
}

#[test]
#[ignore = "needs the docker engine; run by hack/test"]
fn target_test_checks_the_images() {
    let ctx = context();
    let dir = tempfile::tempdir().unwrap();
    let digest = archive_digest(&ctx.join("images/hello-a.tar"));
    let other = format!("sha256:{}", "1".repeat(64));
    let body = format!(
        "version: 1\nos: {{ from: debian:bookworm }}\nkubernetes:\n  images:\n{A}\ntests:\n  images:\n    - {{ ref: example.org/hello-a:1, digest: \"{digest}\" }}\n    - {{ ref: example.org/hello-a:1, digest: \"{other}\" }}\n    - {{ ref: example.org/hello-c:1 }}\n"
    );
    let spec = write_spec(dir.path(), "t.yaml", &body);
    let (ok, log) = build(Path::new(&spec), "test", None, &[], &ctx);
    assert!(!ok, "{log}");
    assert!(log.contains(&format!("t.yaml:10:7: tests.images[1]: image example.org/hello-a:1 has digest {digest}, expected {other}")), "{log}");
    assert!(log.contains("t.yaml:11:7: tests.images[2]: image example.org/hello-c:1 is not among the node's images"), "{log}");
    assert!(log.contains("2 of 3 checks failed"), "{log}");
}
