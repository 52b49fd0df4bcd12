//! Big specs through the CLI: `nodestamp check` reports a definition over BuildKit's message
//! limit at its spec line, and `nodestamp inline-contents` (the build step that writes a
//! layer's large inline contents from the spec file in the engine) writes exactly what the
//! frontend compiled, or nothing.

mod common;

use std::collections::BTreeMap;

use common::{nodestamp, text};

use nodestamp_compile::inline::{self, Layer};
use nodestamp_spec as spec;

#[test]
fn check_reports_a_definition_over_the_limit_at_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.yaml");
    let script = "      echo xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n"
        .repeat(70_000);
    std::fs::write(
        &path,
        format!("version: 1\nos:\n  from: debian:bookworm\n  run:\n    - |\n{script}"),
    )
    .unwrap();
    let out = nodestamp(&["check", path.to_str().unwrap()]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("big.yaml:6:"), "{stderr}");
    assert!(stderr.contains("os.run[0]"), "{stderr}");
    assert!(
        stderr.contains("over the limit of 4128768 bytes"),
        "{stderr}"
    );
    assert!(stderr.contains("contents: { local: <path> }"), "{stderr}");
    // Only the entry's first line is shown, not its 70,000.
    assert!(
        stderr.lines().count() < 20,
        "{} lines",
        stderr.lines().count()
    );

    // The JSON report says the size too (hack/bench spec-size reads it).
    let out = nodestamp(&["check", "--format", "json", path.to_str().unwrap()]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["valid"], false);
    assert!(report["definition_bytes"].as_u64().unwrap() > 4_128_768);
    assert_eq!(report["diagnostics"][0]["path"], "os.run[0]");
}

#[test]
fn inline_contents_writes_a_layers_contents_and_refuses_others() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.yaml");
    let body = "version: 1\nos:\n  from: debian:bookworm\n  storage:\n    files:\n      \
                - { path: /etc/a, contents: { inline: \"a ${V:-x}\\n\" } }\n      \
                - { path: /etc/b, contents: { local: b } }\n  systemd:\n    units:\n      \
                - { name: x.service, contents: \"[Service]\\n\", dropins: [{ name: a.conf, contents: \"d\" }] }\n\
                kubernetes:\n  storage:\n    files:\n      - { path: /etc/k, contents: { inline: k } }\n";
    std::fs::write(&path, body).unwrap();
    let vars = BTreeMap::from([("V".to_string(), "1".to_string())]);
    let spec = spec::load("node.yaml", body.as_bytes(), &vars)
        .unwrap()
        .spec;
    let digest = inline::digest(&inline::blobs(&spec, Layer::Os));
    let out_dir = dir.path().join("out");
    let run = |sha: &str| {
        nodestamp(&[
            "inline-contents",
            "--spec",
            path.to_str().unwrap(),
            "--name",
            "node.yaml",
            "--layer",
            "os",
            "--sha256",
            sha,
            "--output",
            out_dir.to_str().unwrap(),
            "--build-arg",
            "V=1",
        ])
    };
    let out = run(&digest);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut names: Vec<String> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    // files[0] (files[1] is from the context) and the plan; no unit, no Kubernetes file.
    assert_eq!(names, ["f0", "plan.json"]);
    assert_eq!(
        std::fs::read_to_string(out_dir.join("f0")).unwrap(),
        "a 1\n"
    );
    let plan: inline::Plan =
        serde_json::from_slice(&std::fs::read(out_dir.join("plan.json")).unwrap()).unwrap();
    assert_eq!(plan.files.len(), 1);
    assert_eq!(plan.files[0].path, "/etc/a");
    assert_eq!(plan.files[0].mode, 0o644);

    // And applied to a root: the file lands at its path.
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let out = nodestamp(&[
        "inline-apply",
        "--from",
        out_dir.to_str().unwrap(),
        "--root",
        root.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read_to_string(root.join("etc/a")).unwrap(),
        "a 1\n"
    );

    // Contents other than the frontend's (another build arg, another version): an error
    // naming the layer, and nothing written.
    std::fs::remove_dir_all(&out_dir).unwrap();
    let out = run(&"0".repeat(64));
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("the os layer's inline contents"),
        "{stderr}"
    );
    assert!(!out_dir.exists());
}
