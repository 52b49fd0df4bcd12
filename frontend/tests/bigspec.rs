//! Big specs: large inline contents travel in the spec file, not the definition, so the
//! definition grows by a small fixed amount per file; what limit remains is checked before the
//! engine is asked, with an error at the spec line. (Engine side: engine_bigspec.rs.)

use std::collections::BTreeMap;

use llb_graph::pb::op::Op as K;
use llb_graph::{State, decode_ops, pb};
use nodestamp_compile::inline::{self, Layer, SpecSource};
use nodestamp_compile::size;
use nodestamp_compile::{CompileOptions, Target, compile_target};
use nodestamp_spec as spec;
use prost::Message as _;

/// A spec with `os` + `k8s` files of `size` bytes of inline contents each (distinct, modes
/// 0600/0640/0644/0755 in turn).
fn big_spec(os: usize, k8s: usize, size: usize) -> String {
    let mut s = String::from("version: 1\nname: big\nos:\n  from: debian:bookworm\n");
    let files = |s: &mut String, layer: &str, n: usize| {
        s.push_str("  storage:\n    files:\n");
        for i in 0..n {
            let mode = ["0600", "0640", "0644", "0755"][i % 4];
            s.push_str(&format!(
                "      - path: /etc/big-{layer}/f{i:05}.conf\n        mode: {mode}\n        contents:\n          inline: |\n"
            ));
            let head = format!("{layer} file {i}\n");
            let mut body = head.clone();
            while body.len() < size {
                let line = "x".repeat(63.min(size - body.len() - 1));
                body.push_str(&line);
                body.push('\n');
            }
            for line in body.lines() {
                s.push_str(&format!("            {line}\n"));
            }
        }
    };
    files(&mut s, "os", os);
    if k8s > 0 {
        s.push_str("kubernetes:\n  version: \"1.32.3\"\n");
        files(&mut s, "k8s", k8s);
    }
    s
}

fn load(text: &str) -> spec::Spec {
    match spec::load("big.yaml", text.as_bytes(), &BTreeMap::new()) {
        Ok(l) => l.spec,
        Err(d) => panic!("{d}"),
    }
}

fn source() -> SpecSource {
    SpecSource {
        local_name: "dockerfile".into(),
        attrs: BTreeMap::from([("local.followpaths".into(), r#"["big.yaml"]"#.into())]),
        filename: "big.yaml".into(),
        build_args: BTreeMap::new(),
    }
}

fn definition(spec: &spec::Spec, text: &str, from_spec_file: bool) -> pb::Definition {
    let opts = CompileOptions {
        spec_source: from_spec_file.then(source),
        ..CompileOptions::default()
    };
    compile_target(spec, text.as_bytes(), &opts, &Target::Node)
        .marshal()
        .unwrap()
}

#[test]
fn five_thousand_files_stay_under_one_mib_and_grow_by_a_fixed_amount() {
    let mut sizes = Vec::new();
    for n in [1000, 5000] {
        let text = big_spec(n, 0, 1024);
        let spec = load(&text);
        let t = std::time::Instant::now();
        let def = definition(&spec, &text, true);
        let len = def.encoded_len();
        eprintln!(
            "{n} files: spec {} bytes, definition {len} bytes, compiled in {:?}",
            text.len(),
            t.elapsed()
        );
        sizes.push(len);
    }
    assert!(sizes[1] < 1024 * 1024, "5,000 files: {} bytes", sizes[1]);
    let per_file = (sizes[1] - sizes[0]) / 4000;
    // Nothing per file but its spec lines in the source map (emptied: a newline each).
    assert!(per_file < 32, "{per_file} bytes per file");
}

#[test]
fn large_contents_are_copied_from_a_step_reading_the_spec_file() {
    let text = big_spec(100, 100, 1024);
    let spec = load(&text);
    let def = definition(&spec, &text, true);
    let ops = decode_ops(&def).unwrap().ops;
    // No inline content in the definition: no mkfile carries one.
    for op in ops.values() {
        if let Some(K::File(f)) = &op.op {
            for a in &f.actions {
                if let Some(pb::file_action::Action::Mkfile(m)) = &a.action {
                    assert!(!m.data.windows(8).any(|w| w == b"os file "), "{}", m.path);
                }
            }
        }
    }
    // Per layer a step in the tools image with the spec file mounted read-only and the
    // expected contents' digest on its command line, and one applying them.
    let steps: Vec<&pb::ExecOp> = ops
        .values()
        .filter_map(|op| match &op.op {
            Some(K::Exec(e)) if e.meta.as_ref().unwrap().args[1] == "inline-contents" => Some(e),
            _ => None,
        })
        .collect();
    assert_eq!(steps.len(), 2);
    for layer in [Layer::Os, Layer::Kubernetes] {
        let digest = inline::digest(&inline::blobs(&spec, layer));
        let step = steps
            .iter()
            .find(|e| e.meta.as_ref().unwrap().args.contains(&digest))
            .unwrap_or_else(|| panic!("no step for {layer:?}"));
        let args = &step.meta.as_ref().unwrap().args;
        assert!(args.contains(&layer.as_str().to_string()), "{args:?}");
        assert!(args.contains(&"/spec/big.yaml".to_string()), "{args:?}");
        let spec_mount = step.mounts.iter().find(|m| m.dest == "/spec").unwrap();
        assert!(spec_mount.readonly);
    }
    let applies = ops
        .values()
        .filter(|op| match &op.op {
            Some(K::Exec(e)) => e.meta.as_ref().unwrap().args[1] == "inline-apply",
            _ => false,
        })
        .count();
    assert_eq!(applies, 2);
    // The Kubernetes layer never depends on the OS: its step reads only the spec file.
    let opts = CompileOptions {
        spec_source: Some(source()),
        ..CompileOptions::default()
    };
    let k8s = compile_target(&spec, text.as_bytes(), &opts, &Target::Kubernetes);
    let k8s_ops = decode_ops(&k8s.marshal().unwrap()).unwrap().ops;
    for op in k8s_ops.values() {
        if let Some(K::Source(s)) = &op.op {
            assert!(
                !s.identifier.contains("debian"),
                "kubernetes layer depends on {}",
                s.identifier
            );
        }
    }
}

#[test]
fn small_specs_keep_their_contents_in_the_definition() {
    let text = big_spec(10, 10, 1024);
    let spec = load(&text);
    let with = definition(&spec, &text, true);
    let without = definition(&spec, &text, false);
    assert_eq!(with, without);
}

#[test]
fn definitions_over_the_limit_fail_at_the_spec_line_with_the_sizes() {
    // No spec file in the engine (a git context): 5,000 files of 1 KB stay in the definition.
    let text = big_spec(5000, 0, 1024);
    let spec = load(&text);
    let def = definition(&spec, &text, false);
    let len = def.encoded_len();
    assert!(len > size::DEFINITION_LIMIT, "{len}");
    let err = size::check(&spec, len, &|_| false).unwrap();
    assert_eq!(err.path, "os.storage.files");
    assert_eq!(err.span.unwrap().start.line, 7, "{err:?}");
    let msg = err.one_line();
    assert!(msg.contains(&format!("({len} bytes)")), "{msg}");
    assert!(msg.contains("limit of 4128768 bytes"), "{msg}");
    assert!(err.help.unwrap().contains("local:"));
    // Read from the spec file, the same spec passes.
    assert!(size::check_offline(&spec, text.as_bytes()).1.is_none());

    // One huge run script: the error is at that entry.
    let text = format!(
        "version: 1\nos:\n  from: debian:bookworm\n  run:\n    - echo small\n    - |\n{}",
        "      echo xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n"
            .repeat(80_000)
    );
    let spec = load(&text);
    let err = size::check_offline(&spec, text.as_bytes()).1.unwrap();
    assert_eq!(err.path, "os.run[1]");
    // The block scalar's text starts on line 7.
    assert_eq!(err.span.unwrap().start.line, 7);
    assert!(
        err.one_line().starts_with("big.yaml:7:"),
        "{}",
        err.one_line()
    );
    assert!(err.message.contains("this entry alone"), "{}", err.message);
    // A point, not the 80,000 lines of the script: buildx prints every line of a range.
    let span = err.span.unwrap();
    assert_eq!(span.start, span.end);
}

#[test]
fn an_eight_megabyte_file_leaves_the_definition_small() {
    let text = big_spec(1, 0, 8_000_000);
    assert!(text.len() < spec::MAX_SIZE, "{}", text.len());
    let spec = load(&text);
    let def = definition(&spec, &text, true);
    // What remains is the source map: one newline per spec line kept for locations.
    assert!(def.encoded_len() < 256 * 1024, "{}", def.encoded_len());
}

#[test]
fn the_spec_file_step_is_the_only_new_source() {
    let text = big_spec(100, 0, 1024);
    let spec = load(&text);
    let opts = CompileOptions {
        spec_source: Some(source()),
        ..CompileOptions::default()
    };
    let st: State = compile_target(&spec, text.as_bytes(), &opts, &Target::Os);
    let ops = decode_ops(&st.marshal().unwrap()).unwrap().ops;
    let locals: Vec<&pb::SourceOp> = ops
        .values()
        .filter_map(|op| match &op.op {
            Some(K::Source(s)) if s.identifier.starts_with("local://") => Some(s),
            _ => None,
        })
        .collect();
    assert_eq!(locals.len(), 1);
    assert_eq!(locals[0].identifier, "local://dockerfile");
    assert_eq!(locals[0].attrs["local.followpaths"], r#"["big.yaml"]"#);
}

#[test]
fn the_spec_file_is_read_again_only_from_a_local_source() {
    use nodestamp_frontend::build::{self, Request};
    use nodestamp_frontend::gateway::{FrontendEnv, single_op_definition};
    let text = "version: 1\nos:\n  from: debian:${SUITE:-bookworm}\n";
    let env = FrontendEnv::from_vars([
        ("BUILDKIT_FRONTEND_OPT_0", "build-arg:SUITE=trixie"),
        (
            "BUILDKIT_FRONTEND_OPT_1",
            "build-arg:HTTP_PROXY=http://user:secret@proxy",
        ),
    ]);
    let amd64 = pb::Platform {
        os: "linux".into(),
        architecture: "amd64".into(),
        ..pb::Platform::default()
    };
    let req: Request = build::parse(&env, "node.yaml", text.as_bytes(), &amd64, &amd64).unwrap();
    let source = |identifier: &str| {
        let op = pb::Op {
            op: Some(K::Source(pb::SourceOp {
                identifier: identifier.into(),
                attrs: BTreeMap::from([("local.session".into(), "s1".into())]),
            })),
            ..pb::Op::default()
        };
        single_op_definition(op, pb::OpMetadata::default())
    };
    let got = build::spec_source(&source("local://dockerfile"), &req).unwrap();
    assert_eq!(got.local_name, "dockerfile");
    assert_eq!(got.filename, "node.yaml");
    assert_eq!(got.attrs["local.session"], "s1");
    // Only the build args the spec refers to go on the step's command line.
    assert_eq!(
        got.build_args,
        BTreeMap::from([("SUITE".to_string(), "trixie".to_string())])
    );
    assert_eq!(build::spec_source(&source("git://context.git"), &req), None);
}
