//! The scripts nodestamp generates: shell quoting, and how a step runs one.
//!
//! BuildKit shows a failed step's command line (`#7 ERROR: process "<argv joined by spaces>"
//! did not complete successfully`), so a generated script never goes on it: the script is a
//! file written by a file op on scratch and mounted read-only at [`SCRIPT_DIR`], and the
//! command line is `/bin/sh /dev/nodestamp/step <the step's name>`. A user's `run` entry stays
//! on its command line as written, as a Dockerfile's `RUN` does.

use llb_graph::{ChownOpt, Exec, FileActions, Meta, Mount, State};

use super::Ctx;

/// Where a step's command files are mounted (read-only). In the step's container `/dev` is
/// runc's tmpfs, not the root filesystem: the mount point is made in that tmpfs and vanishes
/// with it, so neither the step's layer nor the node has a trace of it (no entry, no changed
/// directory time). A mount point on the root filesystem would not do: BuildKit removes the
/// stub it leaves, but its directory keeps the step's time (measured with `/run/nodestamp` on
/// BuildKit 0.13 and 0.25; the engine test `the_mounted_scripts_leave_no_trace_in_the_node`).
pub const SCRIPT_DIR: &str = "/dev/nodestamp";

/// The generated script of a step, in [`SCRIPT_DIR`].
pub const STEP_FILE: &str = "/dev/nodestamp/step";

/// Longest step name on a command line.
const LABEL_MAX: usize = 80;

/// The step's progress name without its `[layer i/n] ` prefix, on one line and at most
/// [`LABEL_MAX`] characters: what names the step on its command line. The numbering stays
/// off it since the command line is part of the step's cache key, and adding a step renumbers
/// the others.
pub(crate) fn label(meta: &Meta) -> String {
    let name = meta.name.as_deref().unwrap_or("nodestamp step");
    let name = match name.strip_prefix('[').and_then(|r| r.split_once("] ")) {
        Some((_, rest)) if !rest.is_empty() => rest,
        _ => name,
    };
    let one_line: String = name
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if one_line.chars().count() <= LABEL_MAX {
        one_line
    } else {
        let mut s: String = one_line.chars().take(LABEL_MAX - 3).collect();
        s += "...";
        s
    }
}

/// An exec of `args` with `files` (name, text) in [`SCRIPT_DIR`]: a file op on scratch, named
/// after the step (`<name> (script)`) and mounted read-only. With `SOURCE_DATE_EPOCH` the files
/// get that time, as every file op's entries do.
pub(crate) fn with_files(
    ctx: &Ctx,
    meta: &Meta,
    args: Vec<String>,
    files: &[(&str, String)],
) -> Exec {
    let mut fa = FileActions::new().timestamp(ctx.opts.source_date_epoch);
    for (name, text) in files {
        fa = fa.mkfile(
            format!("/{name}"),
            0o644,
            text.as_bytes().to_vec(),
            ChownOpt::default(),
        );
    }
    let op = Meta {
        name: meta.name.as_ref().map(|n| format!("{n} (script)")),
        locations: Vec::new(),
        ..meta.clone()
    };
    let dir = State::scratch().file(fa, op);
    Exec::new(args).mount(Mount::readonly(&dir, SCRIPT_DIR))
}

/// The exec of the step `meta` running the generated `script`:
/// `/bin/sh /dev/nodestamp/step <step name>`, the script in the mounted file.
pub(crate) fn shell(ctx: &Ctx, meta: &Meta, script: String) -> Exec {
    with_files(
        ctx,
        meta,
        vec!["/bin/sh".into(), STEP_FILE.into(), label(meta)],
        &[("step", script)],
    )
}

/// The files an exec of `ops` finds in [`SCRIPT_DIR`] (name, text), read back from the file op
/// mounted there: what a step runs besides its command line. Empty when nothing is mounted
/// there.
pub fn command_files(
    ops: &std::collections::BTreeMap<llb_graph::Digest, llb_graph::pb::Op>,
    exec: &llb_graph::pb::Op,
) -> Vec<(String, String)> {
    use llb_graph::pb::{file_action::Action, op::Op};
    let Some(Op::Exec(e)) = &exec.op else {
        return Vec::new();
    };
    let Some(mount) = e.mounts.iter().find(|m| m.dest == SCRIPT_DIR) else {
        return Vec::new();
    };
    let input = usize::try_from(mount.input)
        .ok()
        .and_then(|i| exec.inputs.get(i));
    let file = input.and_then(|i| ops.get(&llb_graph::Digest::from_raw(&i.digest)));
    let Some(Op::File(f)) = file.and_then(|f| f.op.as_ref()) else {
        return Vec::new();
    };
    f.actions
        .iter()
        .filter_map(|a| match &a.action {
            Some(Action::Mkfile(m)) => Some((
                m.path.trim_start_matches('/').to_string(),
                String::from_utf8_lossy(&m.data).into_owned(),
            )),
            _ => None,
        })
        .collect()
}

/// Quotes `s` for POSIX sh: bare when safe, else single-quoted.
pub(crate) fn quote(s: &str) -> String {
    let safe = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"@%+=:,./-_".contains(&b));
    if safe {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Quotes and joins words.
pub(crate) fn words<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    items.into_iter().map(quote).collect::<Vec<_>>().join(" ")
}

/// Test helper: runs `script` under `sh -c` and fails the test, showing its stderr, when it
/// exits non-zero.
#[cfg(test)]
pub(crate) fn run_ok(script: &str) -> std::process::Output {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(script)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_the_shell() {
        assert_eq!(quote("jq"), "jq");
        assert_eq!(quote(""), "''");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(words(["a", "$(x)"]), "a '$(x)'");
        for s in [
            "plain",
            "with space",
            "quote ' inside",
            "$HOME `x` \"y\"",
            "new\nline",
        ] {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("printf %s {}", quote(s)))
                .output()
                .unwrap();
            assert_eq!(String::from_utf8(out.stdout).unwrap(), s);
        }
    }
}
