//! `nodestamp check` end to end.

mod common;

use std::path::PathBuf;

use common::{nodestamp, text};

fn testdata(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/specs")
        .join(rel)
}

#[test]
fn broken_spec_prints_every_error_with_positions_and_exits_1() {
    let spec = testdata("invalid/many-errors.yaml");
    let spec = spec.to_str().expect("utf-8 path");
    let out = nodestamp(&["check", spec]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr:\n{stderr}");
    for pos in [
        ":1:10\n", ":5:3\n", ":9:15\n", ":16:35\n", ":25:9\n", ":27:13\n",
    ] {
        assert!(
            stderr.contains(&format!("--> {spec}{pos}")),
            "missing {pos:?} in:\n{stderr}"
        );
    }
    assert!(stderr.contains("9 |         mode: rwx\n"), "{stderr}");
    assert!(stderr.contains("^^^ os.storage.files[0].mode"), "{stderr}");
    assert!(
        stderr.contains("= help: did you mean `packages`?"),
        "{stderr}"
    );
    assert!(
        stderr.ends_with(&format!("{spec}: 16 errors, 0 warnings\n")),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn valid_spec_says_ok() {
    let spec = testdata("valid/minimal.yaml");
    let spec = spec.to_str().expect("utf-8 path");
    let out = nodestamp(&["check", spec]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!("ok: {spec} is a valid nodestamp spec (0 warnings)\n")
    );
}

#[test]
fn warnings_only_exit_0_and_build_args_substitute() {
    let dir = std::env::temp_dir().join(format!("nodestamp-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let spec = dir.join("node.yaml");
    std::fs::write(
        &spec,
        "version: 1\nos:\n  from: debian:${SUITE}\n  storage: { files: [{ path: /x, mode: 644 }] }\n",
    )
    .expect("write spec");
    let spec = spec.to_str().expect("utf-8 path");

    let out = nodestamp(&["check", spec, "--build-arg", "SUITE=trixie"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).ends_with("(1 warning)\n"));
    assert!(text(&out.stderr).starts_with("warning: mode 644 has no leading 0"));

    let out = nodestamp(&["check", "--format", "json", spec]);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json report");
    assert_eq!(report["valid"], false);
    assert_eq!(report["errors"], 1);
    assert_eq!(report["warnings"], 1);
    let first = &report["diagnostics"][0];
    assert_eq!(first["message"], "undefined variable `SUITE`");
    assert_eq!(first["path"], "os.from");
    assert_eq!(first["span"]["start"]["line"], 3);
    assert_eq!(first["span"]["start"]["col"], 16);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn unreadable_file_exits_2() {
    let out = nodestamp(&["check", "/nonexistent/node.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).starts_with("error: reading /nonexistent/node.yaml"));
}
