//! Golden tests of the marshaled LLB: `testdata/golden/<case>/spec.yaml` compiles to the JSON
//! view in `expected.llb.json` (every target). Regenerate with `UPDATE_GOLDEN=1 cargo test`.
//! Plus the structural invariants the design rests on.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use llb_graph::pb::op::Op as K;
use llb_graph::{ResolveMode, State, decode_ops, json::definition_json};
use nodestamp_compile::{CompileOptions, Target, compile};
use nodestamp_spec as spec;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn opts(symlinks: bool) -> CompileOptions {
    CompileOptions {
        image_resolve_mode: ResolveMode::Local,
        session_id: Some("golden-session".into()),
        symlink_file_action: symlinks,
        ..CompileOptions::default()
    }
}

fn load(path: &Path, vars: &BTreeMap<String, String>) -> (spec::Spec, Vec<u8>) {
    let bytes = std::fs::read(path).unwrap();
    let name = path.file_name().unwrap().to_string_lossy().to_string();
    match spec::load(&name, &bytes, vars) {
        Ok(l) => (l.spec, bytes),
        Err(d) => panic!("{} does not load:\n{d}", path.display()),
    }
}

fn view(st: &State) -> serde_json::Value {
    definition_json(&st.marshal().unwrap()).unwrap()
}

#[test]
fn golden_llb() {
    let dir = root().join("testdata/golden");
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut cases: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(!cases.is_empty(), "no golden cases under {}", dir.display());
    let mut failures = Vec::new();
    for case in cases {
        let (spec, bytes) = load(&case.join("spec.yaml"), &BTreeMap::new());
        for (suffix, symlinks) in [("", false), (".symlink-cap", true)] {
            let c = compile(&spec, &bytes, &opts(symlinks));
            let got = serde_json::json!({
                "node": view(c.target(&Target::Node).unwrap()),
                "os": view(c.target(&Target::Os).unwrap()).get("result").cloned(),
                "kubernetes": view(c.target(&Target::Kubernetes).unwrap()).get("result").cloned(),
            });
            let text = serde_json::to_string_pretty(&got).unwrap() + "\n";
            let file = case.join(format!("expected{suffix}.llb.json"));
            if update {
                std::fs::write(&file, &text).unwrap();
            } else {
                let want = std::fs::read_to_string(&file).unwrap_or_default();
                if want != text {
                    failures.push(format!(
                        "{} differs (UPDATE_GOLDEN=1 regenerates); got:\n{text}",
                        file.display()
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn example() -> (spec::Spec, Vec<u8>) {
    let mut vars = BTreeMap::new();
    vars.insert("KUBERNETES_VERSION".to_string(), "1.31.3".to_string());
    load(&root().join("testdata/golden/full/spec.yaml"), &vars)
}

/// The Kubernetes layer's graph contains nothing of the OS: no OS image, no step on it.
#[test]
fn kubernetes_layer_never_touches_the_os() {
    let (spec, bytes) = example();
    for symlinks in [false, true] {
        let c = compile(&spec, &bytes, &opts(symlinks));
        let ops = decode_ops(&c.kubernetes.marshal().unwrap()).unwrap().ops;
        assert!(!ops.is_empty());
        let os_ops: std::collections::BTreeSet<_> = decode_ops(&c.os.marshal().unwrap())
            .unwrap()
            .ops
            .into_keys()
            .collect();
        for (digest, op) in &ops {
            assert!(
                !os_ops.contains(digest),
                "kubernetes graph shares op {digest} with the OS graph"
            );
            if let Some(K::Source(s)) = &op.op {
                assert!(
                    !s.identifier.contains("debian"),
                    "kubernetes graph uses the OS image: {}",
                    s.identifier
                );
            }
            if let Some(K::Exec(_)) = &op.op {
                assert!(
                    !symlinks,
                    "with symlink file actions the kubernetes layer has no exec at all"
                );
            }
        }
    }
}

fn replace(spec_text: &str, from: &str, to: &str) -> Vec<u8> {
    assert!(spec_text.contains(from), "fixture lacks {from:?}");
    spec_text.replacen(from, to, 1).into_bytes()
}

/// Changing only an OS package leaves the Kubernetes digest unchanged, and vice versa.
#[test]
fn layers_are_independent() {
    let text = std::fs::read_to_string(root().join("testdata/golden/full/spec.yaml")).unwrap();
    let vars = BTreeMap::from([("KUBERNETES_VERSION".to_string(), "1.31.3".to_string())]);
    let build = |bytes: Vec<u8>| {
        let s = spec::load("spec.yaml", &bytes, &vars).unwrap().spec;
        compile(&s, &bytes, &opts(false))
    };
    let base = build(text.clone().into_bytes());
    let os_changed = build(replace(&text, "- jq", "- tree"));
    let k8s_changed = build(replace(
        &text,
        "SystemdCgroup = true",
        "SystemdCgroup = false",
    ));
    let d = |s: &State| s.digest().unwrap().unwrap();
    assert_ne!(d(&base.os), d(&os_changed.os));
    assert_eq!(
        d(&base.kubernetes),
        d(&os_changed.kubernetes),
        "an OS package change touched the Kubernetes layer"
    );
    assert_ne!(d(&base.kubernetes), d(&k8s_changed.kubernetes));
    assert_eq!(
        d(&base.os),
        d(&k8s_changed.os),
        "a Kubernetes config change touched the OS layer"
    );
}

#[test]
fn same_spec_gives_byte_identical_definitions() {
    use prost::Message;
    let (spec, bytes) = example();
    let a = compile(&spec, &bytes, &opts(false))
        .node
        .marshal()
        .unwrap()
        .encode_to_vec();
    let (spec2, bytes2) = example();
    let b = compile(&spec2, &bytes2, &opts(false))
        .node
        .marshal()
        .unwrap()
        .encode_to_vec();
    assert_eq!(a, b);
}

/// A disk target runs the converter in the tools image on the node's root filesystem,
/// mounted read-only, and returns the output directory.
#[test]
fn disk_targets_convert_the_node_rootfs() {
    use nodestamp_compile::compile_target;
    use nodestamp_spec::Format;
    let (spec, bytes) = example();
    let o = opts(false);
    let node = compile(&spec, &bytes, &o).node.digest().unwrap().unwrap();
    let target = Target::parse("disk", &spec).unwrap();
    assert_eq!(target, Target::Disk(vec![Format::Qcow2, Format::Raw]));
    let disk = compile_target(&spec, &bytes, &o, &target);
    let def = disk.marshal().unwrap();
    let decoded = decode_ops(&def).unwrap();
    let (result, index) = decoded.result.unwrap();
    let Some(K::Exec(exec)) = &decoded.ops[&result].op else {
        panic!("the result is not an exec")
    };
    let op = &decoded.ops[&result];
    let args = &exec.meta.as_ref().unwrap().args;
    assert_eq!(
        args.join(" "),
        "nodestamp convert --quiet --format qcow2 --format raw --output-dir /out --name golden-node --size 4294967296 --firmware hybrid /rootfs",
        "disk.firmware defaults to hybrid"
    );
    let rootfs = exec.mounts.iter().find(|m| m.dest == "/rootfs").unwrap();
    assert!(rootfs.readonly);
    assert_eq!(op.inputs[rootfs.input as usize].digest, node.to_string());
    let out = exec.mounts.iter().find(|m| m.dest == "/out").unwrap();
    assert_eq!(
        (out.input, out.output),
        (-1, index),
        "the result is the scratch /out mount"
    );
    assert_eq!(exec.network, llb_graph::pb::NetMode::None as i32);

    assert_eq!(
        Target::parse("vhd", &spec).unwrap(),
        Target::Disk(vec![Format::Vhd])
    );
    // The packaged formats are targets too, named as the converter names them, with the
    // firmware the spec gives.
    for (name, format, file) in [
        ("ova", Format::Ova, "golden-node.ova"),
        ("gce", Format::Gce, "golden-node.gce.tar.gz"),
    ] {
        assert_eq!(
            Target::parse(name, &spec).unwrap(),
            Target::Disk(vec![format])
        );
        assert_eq!(format!("golden-node.{}", format.extension()), file);
    }
    // containerdisk: the qcow2 converter step, then a file op on scratch putting its output at
    // /disk/<name>.qcow2 with owner 107:107.
    let cd = compile_target(
        &spec,
        &bytes,
        &o,
        &Target::parse("containerdisk", &spec).unwrap(),
    );
    let def = cd.marshal().unwrap();
    let decoded = decode_ops(&def).unwrap();
    let (result, _) = decoded.result.unwrap();
    let Some(K::File(f)) = &decoded.ops[&result].op else {
        panic!("the containerdisk result is not a file op")
    };
    let text = format!("{f:?}");
    for needle in [
        "path: \"/disk\"",
        "src: \"/golden-node.qcow2\"",
        "dest: \"/disk/golden-node.qcow2\"",
        "Id(107)",
    ] {
        assert!(text.contains(needle), "{needle} not in {text}");
    }
    assert_eq!(f.actions[0].input, -1, "the image starts from scratch");
    let converter =
        &decoded.ops[&llb_graph::Digest::from_raw(&decoded.ops[&result].inputs[0].digest)];
    let Some(K::Exec(e)) = &converter.op else {
        panic!("the qcow2 comes from the converter")
    };
    assert!(
        e.meta
            .as_ref()
            .unwrap()
            .args
            .join(" ")
            .contains("--format qcow2 --output-dir /out"),
        "{e:?}"
    );
    let mut bios = spec.clone();
    bios.disk.as_mut().unwrap().firmware = nodestamp_spec::Firmware::Bios;
    let args = nodestamp_compile::disk::convert_request(&bios, &[Format::Ova]).argv();
    assert_eq!(
        args[..5].join(" ") + " " + &args[args.len() - 3..].join(" "),
        "nodestamp convert --quiet --format ova --firmware bios /rootfs"
    );
    let err = Target::parse("qcow", &spec).unwrap_err();
    assert!(
        err.contains("unknown target \"qcow\"") && err.contains("qcow2"),
        "{err}"
    );
    let (minimal, _) = load(
        &root().join("testdata/golden/minimal/spec.yaml"),
        &BTreeMap::new(),
    );
    let err = Target::parse("disk", &minimal).unwrap_err();
    assert!(err.contains("disk.formats"), "{err}");
}

/// Inline files replace what the base image has at their path (BuildKit's mkfile would keep
/// the old mode and write through a symlink), and special mode bits get a `chmod` step.
#[test]
fn files_replace_base_files_and_keep_special_mode_bits() {
    let path = root().join("testdata/engine/modes.yaml");
    let (spec, bytes) = load(&path, &BTreeMap::new());
    let c = compile(&spec, &bytes, &opts(false));
    let os = serde_json::to_string(&view(&c.os)).unwrap();
    let rm = os.find(r#""rm":{"allow_not_found":true,"path":"/etc/os-release"}"#);
    let mk = os.find(r#""mkfile":{"data":"ID=nodestamp-test\n""#);
    assert!(
        rm.is_some() && mk.is_some() && rm < mk,
        "no rm before the mkfile: {os}"
    );
    assert!(
        os.contains(r"chmod 4755 /usr/local/bin/os-suid\nchmod 1777 /var/lib/shared"),
        "{os}"
    );
    let k8s = serde_json::to_string(&view(&c.kubernetes)).unwrap();
    assert!(
        k8s.contains(
            r"chmod 2755 /layer/usr/local/bin/k8s-setgid\nchmod 1777 /layer/var/lib/k8s-shared"
        ),
        "{k8s}"
    );
    assert!(
        !k8s.contains("debian"),
        "the Kubernetes layer's chmod runs in the tools image"
    );
}
