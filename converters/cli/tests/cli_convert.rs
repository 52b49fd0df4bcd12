//! `nodestamp convert` command line: exit status and messages for bad input.

use std::process::Command;

fn nodestamp(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_nodestamp"))
        .arg("convert")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn scratch(name: &str) -> std::path::PathBuf {
    let d = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("cli-{name}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn unknown_format_fails_cleanly() {
    let d = scratch("fmt");
    let out = d.join("x.iso");
    let (code, err) = nodestamp(&[
        "--format",
        "iso",
        "-o",
        out.to_str().unwrap(),
        d.to_str().unwrap(),
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("unknown disk format \"iso\""), "{err}");
    assert!(!out.exists());
}

#[test]
fn garbage_on_stdin_fails_cleanly() {
    let d = scratch("stdin");
    let out = d.join("n.qcow2");
    let mut child = Command::new(env!("CARGO_BIN_EXE_nodestamp"))
        .args([
            "convert",
            "--size",
            "1GiB",
            "-o",
            out.to_str().unwrap(),
            "-",
        ])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut i = child.stdin.take().unwrap();
        let _ = i.write_all(&[b'z'; 5000]);
    }
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_ne!(o.status.code(), Some(0));
    assert!(err.contains("not a tar archive"), "{err}");
    let left: Vec<_> = std::fs::read_dir(&d).unwrap().collect();
    assert!(left.is_empty(), "nothing left behind: {left:?}");
}

#[test]
fn missing_input_and_output_dir() {
    let d = scratch("missing");
    let (code, err) = nodestamp(&[
        "-o",
        d.join("a.qcow2").to_str().unwrap(),
        "/nonexistent/rootfs",
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("/nonexistent/rootfs"), "{err}");
    let (code, err) = nodestamp(&["--output-dir", "/nonexistent/out", d.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(err.contains("not writable"), "{err}");
}

/// `--size` follows the spec's rules: `10G` is refused with the help `nodestamp check` gives for
/// `disk.size: 10G`, and nothing is written.
#[test]
fn ambiguous_sizes_are_refused_with_the_specs_help() {
    let d = scratch("size");
    let out = d.join("n.qcow2");
    let (code, err) = nodestamp(&[
        "--size",
        "10G",
        "-o",
        out.to_str().unwrap(),
        d.to_str().unwrap(),
    ]);
    assert_ne!(code, 0);
    assert!(
        err.contains(r#"--size: expected a size in bytes or with a binary unit (KiB, MiB, GiB, TiB) like 8GiB, got "10G""#),
        "{err}"
    );
    assert!(!out.exists());

    // The same value in a spec: `nodestamp check` gives the same help line.
    let spec = d.join("node.yaml");
    std::fs::write(
        &spec,
        "version: 1\nos:\n  from: debian:bookworm\ndisk:\n  size: 10G\n",
    )
    .unwrap();
    let check = Command::new(env!("CARGO_BIN_EXE_nodestamp"))
        .args(["check", spec.to_str().unwrap()])
        .output()
        .unwrap();
    let check_err = String::from_utf8_lossy(&check.stderr).into_owned()
        + &String::from_utf8_lossy(&check.stdout);
    let help =
        "write 10GiB (10 × 2^30 bytes); decimal or ambiguous units like GB or G are not accepted";
    assert!(!check.status.success());
    assert!(check_err.contains(help), "{check_err}");
    assert!(err.contains(&format!("help: {help}")), "{err}");
}
