//! Engine tests of the buildx attestation and image features: the SBOM (`--sbom=true`, checked
//! with a real SPDX validator, `pyspdxtools` from `hack/setup spdx`), `--provenance=mode=max`
//! beside it, and the image history (`docker history` names each layer by its step). Small
//! specs with a made-up local component, no package installs. Run with
//! `cargo test -- --ignored` (hack/test does).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Images, build, docker, repo, text, unique_tag, write_spec};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

fn scratch(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("engine-attest-{name}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A build context with `components/kubectl` of `size` bytes (a shell script padded with a
/// comment); returns the context and the component's sha256.
fn context(dir: &Path, size: usize) -> (PathBuf, String) {
    let ctx = dir.join("ctx");
    std::fs::create_dir_all(ctx.join("components")).unwrap();
    let mut bytes = b"#!/bin/sh\necho kubectl\n#".to_vec();
    let mut x: u32 = 12345;
    while bytes.len() + 1 < size {
        // Incompressible filler, so the layer's size shows the file.
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        bytes.push(b'a' + (x >> 16) as u8 % 26);
    }
    bytes.push(b'\n');
    std::fs::write(ctx.join("components/kubectl"), &bytes).unwrap();
    (ctx, hex::encode(Sha256::digest(&bytes)))
}

const SPEC: &str = "version: 1
name: attest-test
os:
  from: debian:bookworm
  storage:
    files:
      - { path: /etc/hostname, mode: 0644, contents: { inline: \"attest\\n\" } }
kubernetes:
  version: \"1.32.3\"
  components:
    - { name: kubectl, local: components/kubectl, dest: /usr/local/bin/kubectl, mode: 0755 }
  storage:
    files:
      - { path: /etc/containerd/config.toml, contents: { inline: \"version = 2\\n\" } }
";

/// `pyspdxtools` from `hack/setup spdx`.
fn spdx_validator() -> PathBuf {
    let p = repo().join("build/spdx-venv/bin/pyspdxtools");
    assert!(
        p.is_file(),
        "{} is missing: run hack/setup spdx (spdx-tools from PyPI)",
        p.display()
    );
    p
}

/// The in-toto statement the local exporter writes for an attestation, by file name.
fn statement(out: &Path, name: &str) -> Value {
    let path = out.join(name);
    let text = std::fs::read(&path).unwrap_or_else(|e| {
        let listing: Vec<_> = std::fs::read_dir(out)
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
            .unwrap_or_default();
        panic!("{}: {e}; the output holds {listing:?}", path.display())
    });
    serde_json::from_slice(&text).unwrap()
}

fn base_digest() -> String {
    let out = docker(&["image", "inspect", "-f", "{{.Id}}", "debian:bookworm"]);
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `dpkg`'s installed packages of a rootfs, read with a plain grep of its status file (not
/// nodestamp's own parser): name → version.
fn dpkg_versions(rootfs: &Path) -> std::collections::BTreeMap<String, String> {
    let status = std::fs::read_to_string(rootfs.join("var/lib/dpkg/status")).unwrap();
    let mut out = std::collections::BTreeMap::new();
    for stanza in status.split("\n\n") {
        let get = |k: &str| {
            stanza
                .lines()
                .find_map(|l| l.strip_prefix(k).map(|v| v.trim().to_string()))
        };
        if get("Status:").is_some_and(|s| s.ends_with(" installed")) {
            out.insert(get("Package:").unwrap(), get("Version:").unwrap());
        }
    }
    out
}

#[test]
#[ignore = "needs the docker engine; run by hack/test"]
fn sbom_true_writes_a_valid_spdx_sbom_of_the_node_next_to_max_provenance() {
    let dir = scratch("sbom");
    let (ctx, kubectl_sha) = context(&dir, 4096);
    let spec = write_spec(&ctx, "node.yaml", SPEC);
    let out = dir.join("out");
    let dest = format!("type=local,dest={}", out.display());
    let (ok, log) = build(
        Path::new(&spec),
        "node",
        None,
        &["--sbom=true", "--provenance=mode=max", "-o", &dest],
        &ctx,
    );
    assert!(ok, "{log}");
    assert!(
        log.contains("[sbom] SPDX document of attest-test → /sbom.spdx.json"),
        "the SBOM is made by nodestamp's own step, not a scanner image:\n{log}"
    );

    let stmt = statement(&out, "sbom.spdx.json");
    assert_eq!(stmt["predicateType"], "https://spdx.dev/Document");
    let doc = &stmt["predicate"];
    let predicate = dir.join("sbom.spdx.json");
    std::fs::write(&predicate, serde_json::to_vec_pretty(doc).unwrap()).unwrap();
    let v = Command::new(spdx_validator())
        .arg("-i")
        .arg(&predicate)
        .output()
        .unwrap();
    assert!(
        v.status.success(),
        "pyspdxtools rejects the SBOM: {}\n{doc:#}",
        text(&v)
    );

    let packages = doc["packages"].as_array().unwrap();
    let find = |id: &str| {
        packages
            .iter()
            .find(|p| p["SPDXID"] == id)
            .unwrap_or_else(|| panic!("no {id} in {doc:#}"))
    };
    // Kubernetes components with the sha256 of what the build context gave.
    let kubectl = find("SPDXRef-component-kubectl");
    assert_eq!(
        kubectl["checksums"][0]["checksumValue"],
        kubectl_sha.as_str()
    );
    // The base image with the digest the engine resolved it to.
    let base = find("SPDXRef-base");
    assert_eq!(
        format!(
            "sha256:{}",
            base["checksums"][0]["checksumValue"].as_str().unwrap()
        ),
        base_digest()
    );
    // Every OS package of the exported rootfs, each with its version.
    let installed = dpkg_versions(&out);
    assert!(installed.len() > 50, "{installed:?}");
    let listed: std::collections::BTreeMap<String, String> = packages
        .iter()
        .filter(|p| {
            p["SPDXID"]
                .as_str()
                .unwrap()
                .starts_with("SPDXRef-package-")
        })
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["versionInfo"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(listed, installed);
    let bash = packages.iter().find(|p| p["name"] == "bash").unwrap();
    let purl = bash["externalRefs"][0]["referenceLocator"]
        .as_str()
        .unwrap();
    assert!(purl.starts_with("pkg:deb/debian/bash@"), "{purl}");
    assert!(purl.contains("distro=debian-12"), "{purl}");

    // mode=max provenance is still BuildKit's, next to it.
    let prov = statement(&out, "provenance.json");
    assert!(
        prov["predicateType"]
            .as_str()
            .unwrap()
            .starts_with("https://slsa.dev/provenance/"),
        "{prov:#}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
#[ignore = "needs the docker engine; run by hack/test"]
fn docker_history_names_every_layer_by_its_step() {
    let dir = scratch("history");
    let size = 3 << 20;
    let (ctx, _) = context(&dir, size);
    let spec = write_spec(&ctx, "node.yaml", SPEC);
    let tag = unique_tag("attest-history");
    let _images = Images(vec![tag.clone()]);
    let (ok, log) = build(Path::new(&spec), "node", Some(&tag), &[], &ctx);
    assert!(ok, "{log}");

    let out = docker(&[
        "history",
        "--no-trunc",
        "--human=false",
        "--format",
        "{{.Size}}\t{{.CreatedBy}}",
        &tag,
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    // `docker history` lists the top layer first.
    let mut rows: Vec<(u64, String)> = stdout
        .lines()
        .map(|l| {
            let (size, by) = l.split_once('\t').unwrap();
            (size.parse().unwrap(), by.to_string())
        })
        .collect();
    rows.reverse();
    let ours: Vec<&str> = rows
        .iter()
        .map(|(_, by)| by.as_str())
        .skip_while(|by| !by.starts_with('['))
        .collect();
    assert_eq!(
        ours,
        [
            "[os 1/1] files (1)",
            "[kubernetes 1/2] install kubectl → /usr/local/bin/kubectl",
            "[kubernetes 2/2] configuration and units",
            "[provenance] installed packages → /usr/lib/nodestamp/packages.json",
            "[provenance] sha256 of local components: kubectl → /usr/lib/nodestamp/components.json",
            "[provenance] build facts → /usr/lib/nodestamp/build.json",
        ],
        "the progress names, one per layer, in order:\n{stdout}"
    );
    // Every layer has exactly one entry: the names sit on the right layers (the component's
    // layer holds its 3 MiB, the small file steps a few KiB).
    let layers = common::layers(&tag);
    assert_eq!(rows.len(), layers.len(), "{stdout}");
    let size_of = |name: &str| rows.iter().find(|(_, by)| by.starts_with(name)).unwrap().0;
    let kubectl = size_of("[kubernetes 1/2] install kubectl");
    assert!(
        kubectl >= size as u64 && kubectl < size as u64 + (64 << 10),
        "{kubectl}\n{stdout}"
    );
    for small in [
        "[os 1/1] files",
        "[kubernetes 2/2]",
        "[provenance] build facts",
    ] {
        assert!(size_of(small) < 64 << 10, "{small}\n{stdout}");
    }
    assert!(
        log.contains("[os 1/1] files (1)") && log.contains("[kubernetes 1/2] install kubectl"),
        "the same names as the progress output:\n{log}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// An OCI layout of `debian:bookworm` made locally (`docker save` of the engine's image store
/// writes one), the way `--build-context NAME=oci-layout://<dir>:<tag>` takes it; returns the
/// layout directory and the manifest digest of its `bookworm` tag.
fn oci_layout(dir: &Path) -> (PathBuf, String) {
    let layout = dir.join("layout");
    std::fs::create_dir_all(&layout).unwrap();
    let tar = dir.join("layout.tar");
    let out = docker(&["save", "-o", tar.to_str().unwrap(), "debian:bookworm"]);
    assert!(out.status.success(), "{}", text(&out));
    let x = Command::new("tar")
        .arg("-xf")
        .arg(&tar)
        .arg("-C")
        .arg(&layout)
        .output()
        .unwrap();
    assert!(x.status.success(), "{}", text(&x));
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let m = &index["manifests"][0];
    assert_eq!(
        m["annotations"]["org.opencontainers.image.ref.name"],
        "bookworm"
    );
    (layout, m["digest"].as_str().unwrap().to_string())
}

const CONTEXT_SPEC: &str = "version: 1
name: context-test
os:
  from: nodestamp-test/only-in-a-layout:1
  storage:
    files:
      - { path: /etc/motd, contents: { local: motd, context: extra } }
kubernetes:
  components:
    - { name: kubectl, local: kubectl, context: kube, dest: /usr/local/bin/kubectl }
";

#[test]
#[ignore = "needs the docker engine; run by hack/test"]
fn named_contexts_replace_os_from_and_feed_local_sources() {
    let dir = scratch("contexts");
    let (layout, digest) = oci_layout(&dir);
    // The main context has neither file: they come from the named directories.
    let ctx = dir.join("ctx");
    let kube = dir.join("kube");
    let extra = dir.join("extra");
    for d in [&ctx, &kube, &extra] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(
        kube.join("kubectl"),
        "#!/bin/sh\necho from-the-kube-context\n",
    )
    .unwrap();
    std::fs::write(extra.join("motd"), "from the extra context\n").unwrap();
    let spec = write_spec(&ctx, "node.yaml", CONTEXT_SPEC);
    let tag = unique_tag("attest-contexts");
    let _images = Images(vec![tag.clone()]);
    let base_ctx = format!(
        "nodestamp-test/only-in-a-layout:1=oci-layout://{}:bookworm",
        layout.display()
    );
    let kube_ctx = format!("kube={}", kube.display());
    let extra_ctx = format!("extra={}", extra.display());
    let mut args = vec!["--build-context", base_ctx.as_str(), "--build-context"];
    args.extend([kube_ctx.as_str(), "--build-context", extra_ctx.as_str()]);

    // Without the layout, os.from names an image nobody has.
    let (ok, log) = build(Path::new(&spec), "node", None, &args[2..], &ctx);
    assert!(!ok, "{log}");
    assert!(
        log.contains("os.from: cannot resolve image \"nodestamp-test/only-in-a-layout:1\""),
        "{log}"
    );

    let (ok, log) = build(Path::new(&spec), "node", Some(&tag), &args, &ctx);
    assert!(ok, "{log}");
    assert!(
        log.contains("[os] from nodestamp-test/only-in-a-layout:1 (build context)"),
        "{log}"
    );
    let label = docker(&[
        "image",
        "inspect",
        "-f",
        "{{index .Config.Labels \"org.opencontainers.image.base.digest\"}}",
        &tag,
    ]);
    assert_eq!(String::from_utf8_lossy(&label.stdout).trim(), digest);
    let cat = |path: &str| {
        let out = docker(&["run", "--rm", "--network", "none", &tag, "cat", path]);
        assert!(out.status.success(), "{path}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    assert_eq!(
        cat("/usr/local/bin/kubectl"),
        "#!/bin/sh\necho from-the-kube-context\n"
    );
    assert_eq!(cat("/etc/motd"), "from the extra context\n");
    // The layout's image is the base: its os-release is Debian 12's.
    assert!(cat("/etc/os-release").contains("VERSION_ID=\"12\""));

    // A context the spec names but the command line does not give: an error at its line,
    // listing those given.
    let (ok, log) = build(Path::new(&spec), "node", None, &args[..4], &ctx);
    assert!(!ok, "{log}");
    assert!(
        log.contains("node.yaml:8:") && log.contains("file /etc/motd: contents.context: no build context named \"extra\" was given (given: kube, nodestamp-test/only-in-a-layout:1)"),
        "{log}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
#[ignore = "needs the docker engine; run by hack/test"]
fn a_docker_image_context_replaces_os_from() {
    let dir = scratch("image-context");
    let ctx = dir.join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    let spec = write_spec(
        &ctx,
        "node.yaml",
        "version: 1\nname: image-context\nos:\n  from: nodestamp-test/not-an-image:1\n",
    );
    let (ok, log) = build(
        Path::new(&spec),
        "os",
        None,
        &[
            "--build-context",
            "nodestamp-test/not-an-image:1=docker-image://debian:trixie",
            "-o",
            &format!("type=local,dest={}", dir.join("out").display()),
        ],
        &ctx,
    );
    assert!(ok, "{log}");
    let release = std::fs::read_to_string(dir.join("out/etc/os-release")).unwrap();
    assert!(
        release.contains("VERSION_ID=\"13\""),
        "the trixie image: {release}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
