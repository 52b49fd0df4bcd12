//! Engine tests with a real registry and a remote engine: the frontend image resolved from the
//! registry by its `# syntax=` line, registry and inline cache across a prune, pushing the node
//! image, a bake matrix sharing a registry cache, and a second Docker Engine used as the builder
//! through a docker context. The registry is Debian's docker-registry on 127.0.0.1
//! (`hack/registry`), the remote engine a second dockerd on 127.0.0.1 with its own data root
//! (`hack/remote-engine`); both are started here when they are not running. Run with
//! `cargo test -- --ignored` (hack/test does, and stops the remote engine afterwards).

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::{Images, build, components_context, docker, frontend_image, repo, steps, text};
use serde_json::Value;

/// Runs `hack/<script> <args>`, which must succeed; returns its last line of output.
fn hack(script: &str, args: &[&str]) -> String {
    let out = Command::new("bash")
        .arg(repo().join("hack").join(script))
        .args(args)
        .output()
        .expect("cannot run bash");
    assert!(
        out.status.success(),
        "hack/{script} {args:?}: {}",
        text(&out)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout.lines().last().unwrap_or_default().trim().to_owned()
}

/// The registry's address (host:port), started if it is not running.
fn registry() -> &'static str {
    static ADDR: OnceLock<String> = OnceLock::new();
    ADDR.get_or_init(|| hack("registry", &["start"]))
}

/// The docker context of the remote engine, started if not running. buildx builds on a
/// context's engine with `docker --context <name> buildx build` (it refuses `--builder <name>`
/// for a context other than the current one).
fn remote_context() -> &'static str {
    static CONTEXT: OnceLock<String> = OnceLock::new();
    CONTEXT.get_or_init(|| hack("remote-engine", &["start"]))
}

/// A reference in the registry unique to this test run.
fn registry_ref(repository: &str, test: &str) -> String {
    format!("{}/{repository}:{test}-{}", registry(), std::process::id())
}

/// Copies an image of the engine under test into the registry as `dest` (tag, push, untag), so
/// that the engine's own store never holds a name in the registry.
fn push(local: &str, dest: &str) {
    for args in [
        vec!["tag", local, dest],
        vec!["push", "--quiet", dest],
        vec!["image", "rm", dest],
    ] {
        let out = docker(&args);
        assert!(out.status.success(), "docker {args:?}: {}", text(&out));
    }
}

fn skopeo(args: &[&str]) -> Value {
    let out = Command::new("skopeo")
        .args(args)
        .output()
        .expect("skopeo (installed by hack/registry start)");
    assert!(out.status.success(), "skopeo {args:?}: {}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The compressed layer digests of an image in the registry, bottom first.
fn registry_layers(reference: &str) -> Vec<String> {
    let v = skopeo(&[
        "inspect",
        "--tls-verify=false",
        &format!("docker://{reference}"),
    ]);
    v["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_owned())
        .collect()
}

/// The image config of an image in the registry, as stored (with BuildKit's own keys).
fn registry_config(reference: &str) -> Value {
    skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--raw",
        "--config",
        &format!("docker://{reference}"),
    ])
}

/// The number of layers a registry cache holds. BuildKit 0.25 writes an image manifest whose
/// config is the cache configuration; 0.13 an image index listing the layers and the
/// configuration.
fn cache_blobs(reference: &str) -> usize {
    const CACHE_CONFIG: &str = "application/vnd.buildkit.cacheconfig.v0";
    let m = skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--raw",
        &format!("docker://{reference}"),
    ]);
    let media = |d: &Value| d["mediaType"].as_str().unwrap_or_default().to_owned();
    if let Some(layers) = m["layers"].as_array() {
        assert_eq!(media(&m["config"]), CACHE_CONFIG, "{reference}: {m}");
        layers.len()
    } else {
        let all = m["manifests"].as_array().expect("a manifest or an index");
        assert!(
            all.iter().any(|d| media(d) == CACHE_CONFIG),
            "{reference} has no cache configuration: {m}"
        );
        all.len() - 1
    }
}

fn docker_text(args: &[&str]) -> (bool, String) {
    let out = docker(args);
    (out.status.success(), text(&out))
}

/// Prunes the build cache of the engine under test, or of the engine of a docker context.
fn prune(context: Option<&str>) {
    let mut args = vec![];
    if let Some(c) = context {
        args.extend(["--context", c]);
    }
    args.extend(["buildx", "prune", "-af"]);
    let out = docker(&args);
    assert!(out.status.success(), "{}", text(&out));
}

fn scratch(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("engine-registry-{name}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Steps of the node's own graph (the OS, Kubernetes, provenance and node steps); not the
/// client's `[internal]` steps, and not the image sources (`[os] from debian:bookworm`,
/// `[provenance] tools image`): BuildKit resolves their names on every build, which runs
/// nothing, and shows them `DONE` or `CACHED` depending on timing.
fn node_steps(log: &str) -> Vec<(String, bool)> {
    steps(log)
        .into_iter()
        .filter(|(n, _)| {
            ["[os", "[kubernetes", "[provenance", "[node"]
                .iter()
                .any(|p| n.starts_with(p))
                && !n.starts_with("[os] from ")
                && !n.ends_with("] tools image")
        })
        .collect()
}

/// Every OS and Kubernetes step (and every step above them) was re-used: nothing ran.
fn assert_everything_reused(log: &str, what: &str) {
    let all = node_steps(log);
    for layer in ["[os ", "[kubernetes "] {
        assert!(
            all.iter().any(|(n, _)| n.starts_with(layer)),
            "{what}: no {layer}…] step in the progress output:\n{log}"
        );
    }
    let ran: Vec<&String> = all.iter().filter(|(_, c)| !c).map(|(n, _)| n).collect();
    assert!(
        ran.is_empty(),
        "{what}: these steps ran instead of coming from the cache: {ran:#?}\n{log}"
    );
}

/// The engine-test node with packages (testdata/engine/os-a.yaml): its OS steps run apt.
fn os_a() -> PathBuf {
    repo().join("testdata/engine/os-a.yaml")
}

#[test]
#[ignore = "needs the docker engine; run by hack/test"]
fn the_frontend_is_resolved_from_the_registry_by_its_syntax_line() {
    let frontend = registry_ref("nodestamp/frontend", "syntax");
    push(&frontend_image(), &frontend);
    assert!(
        !docker(&["image", "inspect", &frontend]).status.success(),
        "{frontend} must not be in the engine's image store"
    );
    let dir = scratch("syntax");
    let spec = dir.join("node.yaml");
    std::fs::write(
        &spec,
        format!(
            "# syntax={frontend}\nversion: 1\nname: syntax\nos:\n  from: debian:bookworm\n  \
             storage:\n    files:\n      - {{ path: /etc/hostname, contents: {{ inline: \"syntax\\n\" }} }}\n"
        ),
    )
    .unwrap();
    // No BUILDKIT_SYNTAX: the spec's first line alone picks the frontend.
    let out = dir.join("out");
    let dest = format!("type=local,dest={}", out.display());
    let (ok, log) = docker_text(&[
        "buildx",
        "build",
        "--progress=plain",
        "-f",
        spec.to_str().unwrap(),
        "--target",
        "os",
        "-o",
        &dest,
        dir.to_str().unwrap(),
    ]);
    assert!(ok, "{log}");
    assert!(
        log.contains(&format!(
            "resolve image config for docker-image://{frontend}"
        )),
        "BuildKit did not resolve the frontend {frontend}:\n{log}"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("etc/hostname")).unwrap(),
        "syntax\n"
    );
    // The registry served the tag to BuildKit (its access log is written by hack/registry).
    let access = std::fs::read_to_string(
        Path::new(
            &std::env::var("NODESTAMP_REGISTRY_DIR")
                .unwrap_or_else(|_| "/var/lib/nodestamp-registry".into()),
        )
        .join("registry.log"),
    )
    .unwrap();
    let (name, tag) = frontend
        .strip_prefix(&format!("{}/", registry()))
        .unwrap()
        .split_once(':')
        .unwrap();
    // BuildKit resolves the tag to a digest (HEAD), then fetches by digest.
    let resolved = format!("/v2/{name}/manifests/{tag} HTTP/1.1\" 200");
    assert!(
        access
            .lines()
            .any(|l| l.contains(&resolved) && l.contains("\"buildkit/")),
        "the registry's access log has no request from BuildKit for {name}:{tag}"
    );
}

#[test]
#[ignore = "needs the docker engine; run by hack/test"]
fn a_registry_cache_survives_a_prune() {
    let cache = registry_ref("nodestamp-test/cache", "registry");
    let ctx = components_context();
    let to = format!("type=registry,ref={cache},mode=max");
    let (ok, log) = build(&os_a(), "node", None, &["--cache-to", &to], &ctx);
    assert!(ok, "{log}");
    assert!(cache_blobs(&cache) > 3, "{cache} holds almost no layers");
    prune(None);
    let from = format!("type=registry,ref={cache}");
    let (ok, log) = build(&os_a(), "node", None, &["--cache-from", &from], &ctx);
    assert!(ok, "{log}");
    assert_everything_reused(
        &log,
        "rebuild with --cache-from type=registry after a prune",
    );
}

#[test]
#[ignore = "needs the docker engine; run by hack/test"]
fn the_node_image_is_pushed_with_an_inline_cache_that_survives_a_prune() {
    let image = registry_ref("nodestamp-test/node", "inline");
    let ctx = components_context();
    let (ok, log) = build(
        &os_a(),
        "node",
        Some(&image),
        &["--cache-to", "type=inline", "--push"],
        &ctx,
    );
    assert!(ok, "{log}");
    let _local = Images(vec![image.clone()]);
    // The pushed image is the node: its layers and labels are in the registry.
    assert!(registry_layers(&image).len() > 3);
    let config = registry_config(&image);
    let labels = &config["config"]["Labels"];
    assert_eq!(labels["io.nodestamp.kubernetes.version"], "1.32.3");
    assert_eq!(labels["org.opencontainers.image.title"], "engine-test");
    assert!(
        config["moby.buildkit.cache.v0"].is_string(),
        "the pushed image has no inline cache: {config}"
    );
    let _ = docker(&["image", "rm", &image]);
    prune(None);
    let (ok, log) = build(&os_a(), "node", None, &["--cache-from", &image], &ctx);
    assert!(ok, "{log}");
    assert_everything_reused(
        &log,
        "rebuild with --cache-from <inline-cache image> after a prune",
    );
}

#[test]
#[ignore = "needs the docker engine; run by hack/test"]
fn bake_builds_two_oses_times_two_kubernetes_versions_sharing_layers_and_cache() {
    let tag = format!("bake-{}", std::process::id());
    let out = Command::new("docker")
        .current_dir(repo())
        .args(["buildx", "bake", "--progress=plain", "-f"])
        .arg(repo().join("testdata/bake/docker-bake.hcl"))
        .env("REGISTRY", registry())
        .env("TAG", &tag)
        .env("FRONTEND", frontend_image())
        .env("CONTEXT", components_context())
        .env("SPEC", repo().join("testdata/bake/node.yaml"))
        .output()
        .expect("cannot run docker");
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    let image = |os: &str, k8s: &str| {
        let k8s = k8s.replace('.', "-");
        format!("{}/nodestamp-test/bake-node:{tag}-{os}-{k8s}", registry())
    };
    let versions = ["1.31.7", "1.32.3"];
    let mut layers = std::collections::BTreeMap::new();
    for os in ["bookworm", "trixie"] {
        for k8s in versions {
            let reference = image(os, k8s);
            let config = registry_config(&reference);
            assert_eq!(
                config["config"]["Labels"]["io.nodestamp.kubernetes.version"], k8s,
                "{reference}"
            );
            layers.insert((os, k8s), registry_layers(&reference));
        }
    }
    let common = |a: &[String], b: &[String]| -> Vec<String> {
        let b: BTreeSet<&String> = b.iter().collect();
        a.iter().filter(|l| b.contains(l)).cloned().collect()
    };
    let mut kubernetes = Vec::new();
    for k8s in versions {
        let (bookworm, trixie) = (&layers[&("bookworm", k8s)], &layers[&("trixie", k8s)]);
        // The Kubernetes layers (kubectl, the configuration) are the same bytes on both OSes.
        let shared = common(bookworm, trixie);
        assert!(
            shared.len() >= 2,
            "Kubernetes {k8s}: the two OS variants share {} layers, want the Kubernetes layers",
            shared.len()
        );
        // Below them, the OS layers have nothing in common.
        let first = bookworm.iter().position(|l| *l == shared[0]).unwrap();
        assert!(common(&bookworm[..first], trixie).is_empty());
        kubernetes.push(shared);
    }
    assert_ne!(
        kubernetes[0], kubernetes[1],
        "the two Kubernetes versions must differ in their configuration layer"
    );
    for os in ["bookworm", "trixie"] {
        // Both Kubernetes versions of one OS sit on the same OS layers.
        let (a, b) = (&layers[&(os, versions[0])], &layers[&(os, versions[1])]);
        let first = a.iter().position(|l| *l == kubernetes[0][0]).unwrap();
        assert!(first >= 2, "{os}: no OS layer below the Kubernetes layers");
        assert_eq!(a[..first], b[..first], "{os}: the OS layers differ");
    }
    for os in ["bookworm", "trixie"] {
        for k8s in versions {
            let cache = format!(
                "{}/nodestamp-test/bake-cache:{tag}-{os}-{}",
                registry(),
                k8s.replace('.', "-")
            );
            assert!(cache_blobs(&cache) > 0, "{cache} holds no layers");
        }
    }
}

/// A node the remote engine can turn into a disk without installing anything: boot files that
/// a kernel package would ship are plain files here (the disk is checked, not booted).
fn remote_spec(frontend: &str, base: &str) -> String {
    format!(
        "# syntax={frontend}\n\
version: 1
name: remote
os:
  from: {base}
  storage:
    files:
      - {{ path: /etc/hostname, contents: {{ inline: \"remote\\n\" }} }}
      - {{ path: /boot/vmlinuz-6.1.0-test, contents: {{ inline: \"not a kernel\\n\" }} }}
      - {{ path: /boot/initrd.img-6.1.0-test, contents: {{ inline: \"not an initrd\\n\" }} }}
      - {{ path: /usr/lib/systemd/boot/efi/systemd-bootx64.efi, contents: {{ inline: \"not a boot loader\\n\" }} }}
kubernetes:
  version: \"1.32.3\"
  components:
    - {{ name: kubectl, local: components/kubectl }}
# Fixture boot files only: no GRUB for the default hybrid firmware.
disk:
  firmware: uefi
"
    )
}

#[test]
#[ignore = "needs the docker engine; run by hack/test"]
fn a_remote_engine_builds_a_disk_from_registry_images_and_exports_it_to_the_client() {
    let remote = remote_context();
    let frontend = registry_ref("nodestamp/frontend", "remote");
    let base = registry_ref("nodestamp-test/debian", "remote-bookworm");
    push(&frontend_image(), &frontend);
    push("debian:bookworm", &base);
    // The remote engine has a store of its own: neither the client's images nor these names.
    for image in [
        frontend_image().as_str(),
        "debian:bookworm",
        &frontend,
        &base,
    ] {
        let out = docker(&["--context", remote, "image", "inspect", image]);
        assert!(!out.status.success(), "the remote engine has {image}");
    }
    let dir = scratch("remote");
    let spec = dir.join("node.yaml");
    std::fs::write(&spec, remote_spec(&frontend, &base)).unwrap();
    let out = dir.join("out");
    let dest = format!("type=local,dest={}", out.display());
    let (ok, log) = docker_text(&[
        "--context",
        remote,
        "buildx",
        "build",
        "--progress=plain",
        "-f",
        spec.to_str().unwrap(),
        "--target",
        "raw",
        "-o",
        &dest,
        components_context().to_str().unwrap(),
    ]);
    assert!(ok, "{log}");
    assert!(log.contains(&format!("docker-image://{frontend}")), "{log}");
    // The disk came back to the client: a GPT disk with its provenance beside it.
    let disk = std::fs::read(out.join("remote.raw")).expect("remote.raw in the client's directory");
    assert!(
        disk.len() > 64 << 20 && disk.len().is_multiple_of(1 << 20),
        "{} bytes",
        disk.len()
    );
    assert_eq!(&disk[512..520], b"EFI PART", "no GPT header");
    let facts: Value =
        serde_json::from_slice(&std::fs::read(out.join("remote.json")).unwrap()).unwrap();
    assert_eq!(facts["base"]["name"], base.as_str(), "{facts}");
    assert_eq!(facts["kubernetes"]["version"], "1.32.3", "{facts}");
    prune(Some(remote));
}
