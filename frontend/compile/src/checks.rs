//! `--target test`: the spec's `tests:` run inside BuildKit against the finished node.
//!
//! ```text
//!  node ──► commands: /bin/sh in the node image, no network, results on a scratch mount
//!  scratch ──► mkfile /checks.json (every check with its key path and spec location)
//!  tools image: nodestamp verify, node rootfs + results + checks mounted read-only
//!      ──► /out/report.json, /out/report.txt    (fails the build: one line per failed check)
//! ```
//! Files, packages, services and kernel arguments are read from the filesystem by the tools
//! image; the node image only ever runs the spec's own commands.

use llb_graph::{ChownOpt, Exec, FileActions, Mount, NetMode, State};
use nodestamp_contract::checks::{CHECKS_FILE_NAME, Check, CheckKind, ChecksFile};

use super::Ctx;
use super::script::quote;
use nodestamp_spec::node_tests::Tests;
use nodestamp_spec::{Span, Spec};

/// Where the commands' results are mounted.
pub const RESULTS: &str = "/nodestamp-results";

fn at(spec: &Spec, span: Span) -> String {
    format!("{}:{}:{}", spec.file_name, span.start.line, span.start.col)
}

/// Every check, as `nodestamp verify` (and the in-VM script) reads them.
pub fn checks_file(spec: &Spec, t: &Tests) -> ChecksFile {
    let mut checks = Vec::new();
    let mut push = |key: String, span: Span, kind: CheckKind| {
        checks.push(Check {
            key,
            at: at(spec, span),
            kind,
        });
    };
    for (i, f) in t.files.iter().enumerate() {
        push(
            format!("tests.files[{i}]"),
            f.span,
            CheckKind::File {
                path: f.path.clone(),
                exists: f.exists,
                mode: f.mode,
                owner: f.owner.clone(),
                contains: f.contains.clone(),
            },
        );
    }
    for (i, p) in t.packages.iter().enumerate() {
        push(
            format!("tests.packages[{i}]"),
            p.span,
            CheckKind::Package {
                name: p.name.clone(),
                installed: p.installed,
                version: p.version.clone(),
            },
        );
    }
    for (i, s) in t.services.iter().enumerate() {
        push(
            format!("tests.services[{i}]"),
            s.span,
            CheckKind::Service {
                name: s.name.clone(),
                enabled: s.enabled,
                masked: s.masked,
            },
        );
    }
    for (i, k) in t.kernel_arguments.iter().enumerate() {
        push(
            format!("tests.kernel_arguments[{i}]"),
            k.span,
            CheckKind::KernelArgument {
                contains: k.contains.clone(),
            },
        );
    }
    for (i, c) in t.commands.iter().enumerate() {
        push(
            format!("tests.commands[{i}]"),
            c.span,
            CheckKind::Command {
                index: i,
                run: c.run.clone(),
                exit_status: c.exit_status,
                stdout_contains: c.stdout_contains.clone(),
                stderr_contains: c.stderr_contains.clone(),
            },
        );
    }
    for (i, im) in t.images.iter().enumerate() {
        push(
            format!("tests.images[{i}]"),
            im.span,
            CheckKind::Image {
                reference: im.reference.clone(),
                digest: im.digest.clone(),
            },
        );
    }
    ChecksFile { checks }
}

/// The script running the commands in the node image: each in its own `sh -c`, from `/`,
/// stdin closed, results in `<dir>/<i>.{rc,out,err}`. It always succeeds; judging is
/// `nodestamp verify`'s job.
pub fn commands_script(t: &Tests, dir: &str) -> String {
    let mut s = String::from("cd /\n");
    for (i, c) in t.commands.iter().enumerate() {
        s += &format!(
            "sh -c {} </dev/null >{dir}/{i}.out 2>{dir}/{i}.err; echo $? >{dir}/{i}.rc\n",
            quote(&c.run)
        );
    }
    s += "exit 0\n";
    s
}

pub(crate) fn compile(ctx: &Ctx, spec: &Spec, node: &State) -> State {
    let empty = Tests::default();
    let t = spec.tests.as_ref().unwrap_or(&empty);
    let span = spec.tests.as_ref().map(|t| t.span);
    let text = serde_json::to_vec_pretty(&checks_file(spec, t)).unwrap_or_default();
    let checks = State::scratch().file(
        FileActions::new()
            .timestamp(ctx.opts.source_date_epoch)
            .mkfile(
                format!("/{CHECKS_FILE_NAME}"),
                0o644,
                text,
                ChownOpt::ids(0, 0),
            ),
        ctx.meta(format!("[test 1/3] {} checks", t.len()), span),
    );
    let results = (!t.commands.is_empty()).then(|| {
        let cspan = t.commands.first().map(|c| c.span);
        let meta = ctx.meta(
            format!("[test 2/3] run {} commands in the node", t.commands.len()),
            cspan,
        );
        let exec = crate::script::shell(ctx, &meta, commands_script(t, RESULTS))
            .network(NetMode::None)
            .mount(Mount::scratch(RESULTS));
        node.run(exec, meta)
            .output(RESULTS)
            .unwrap_or_else(State::scratch)
    });
    let tools = ctx.tools_image("test");
    let checks_path = format!("/checks/{CHECKS_FILE_NAME}");
    let mut args: Vec<String> = [
        "nodestamp",
        "verify",
        "--checks",
        &checks_path,
        "--rootfs",
        "/rootfs",
        "--output-dir",
        "/out",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if results.is_some() {
        args.extend(["--results".into(), "/results".into()]);
    }
    let mut exec = Exec::new(args)
        .network(NetMode::None)
        .readonly_root()
        .mount(Mount::readonly(node, "/rootfs"))
        .mount(Mount::readonly(&checks, "/checks"))
        .mount(Mount::scratch("/out"));
    if let Some(r) = &results {
        exec = exec.mount(Mount::readonly(r, "/results"));
    }
    tools
        .run(
            exec,
            ctx.meta(
                format!("[test 3/3] nodestamp verify: {} checks", t.len()),
                span,
            ),
        )
        .output("/out")
        .unwrap_or_else(State::scratch)
}

/// The in-VM checker installed in images whose spec has `tests:`.
pub const VM_SCRIPT: &str = "/usr/lib/nodestamp/checks.sh";
/// Its unit; started once multi-user.target is reached, results on the console.
pub const VM_UNIT: &str = "/usr/lib/systemd/system/nodestamp-checks.service";
/// `Wants=` in a drop-in of multi-user.target: enabled without a symlink.
pub const VM_WANTS: &str = "/usr/lib/systemd/system/multi-user.target.d/nodestamp-checks.conf";

const VM_UNIT_TEXT: &str = "[Unit]\n\
Description=nodestamp: the spec's tests, inside the booted node\n\
After=multi-user.target\n\
\n\
[Service]\n\
Type=oneshot\n\
ExecStart=/bin/sh /usr/lib/nodestamp/checks.sh\n\
StandardOutput=journal+console\n\
StandardError=journal+console\n";

const VM_PRELUDE: &str = r#"#!/bin/sh
# Generated by nodestamp from the spec's tests: section. The same checks as --target test,
# run inside the booted node. Prints one NODESTAMP-CHECK-FAIL line per failed check, then
# NODESTAMP-CHECKS: {"passed":N,"failed":M}. Exit status: 0 when every check passed.
pass=0; fail=0
ok() { pass=$((pass+1)); }
bad() { fail=$((fail+1)); echo "NODESTAMP-CHECK-FAIL: $1: $2"; }
check_file() { # at+key path exists mode owner contains
  if [ ! -e "$2" ]; then
    if [ "$3" = false ]; then ok; else bad "$1" "$2 does not exist"; fi; return
  fi
  if [ "$3" = false ]; then bad "$1" "$2 exists, want it absent"; return; fi
  if [ -n "$4" ] && [ "$(stat -L -c %a "$2")" != "$4" ]; then
    bad "$1" "$2 has mode 0$(stat -L -c %a "$2"), want 0$4"; return; fi
  if [ -n "$5" ]; then
    case "$5" in *:*) have="$(stat -L -c %U:%G "$2")"; num="$(stat -L -c %u:%g "$2")" ;;
      *) have="$(stat -L -c %U "$2")"; num="$(stat -L -c %u "$2")" ;; esac
    if [ "$have" != "$5" ] && [ "$num" != "$5" ]; then
      bad "$1" "$2 is owned by $(stat -L -c %U:%G "$2"), want $5"; return; fi
  fi
  if [ -n "$6" ] && ! grep -qF -- "$6" "$2"; then bad "$1" "$2 does not contain \"$6\""; return; fi
  ok
}
check_package() { # at+key name installed version
  v="$(dpkg-query -W -f '${Status} ${Version}' "$2" 2>/dev/null)"
  case "$v" in "install ok installed "*) v="${v#install ok installed }" ;; *) v= ;; esac
  if [ "$3" = false ]; then
    if [ -n "$v" ]; then bad "$1" "package $2 is installed ($v), want it absent"; else ok; fi; return
  fi
  if [ -z "$v" ]; then bad "$1" "package $2 is not installed"; return; fi
  if [ -n "$4" ]; then
    case "$4" in
      *\*) case "$v" in "${4%\*}"*) ;; *) bad "$1" "package $2 is $v, want $4"; return ;; esac ;;
      *) if [ "$v" != "$4" ]; then bad "$1" "package $2 is $v, want $4"; return; fi ;;
    esac
  fi
  ok
}
check_service() { # at+key name enabled masked
  m=false; [ "$(readlink "/etc/systemd/system/$2" 2>/dev/null)" = /dev/null ] && m=true
  if [ -n "$4" ] && [ "$4" != "$m" ]; then
    if [ "$4" = true ]; then bad "$1" "$2 is not masked"; else bad "$1" "$2 is masked (linked to /dev/null)"; fi; return
  fi
  if [ -n "$3" ]; then
    e=false
    for l in /etc/systemd/system/*.wants/"$2" /etc/systemd/system/*.requires/"$2" /usr/lib/systemd/system/*.wants/"$2"; do
      [ -L "$l" ] || [ -e "$l" ] && e=true
    done
    if [ "$3" = true ] && [ "$e" = false ]; then bad "$1" "$2 is not enabled (no .wants/ or .requires/ link)"; return; fi
    if [ "$3" = false ] && [ "$e" = true ]; then bad "$1" "$2 is enabled, want disabled"; return; fi
  fi
  ok
}
check_karg() { # at+key arg
  c="$(cat "${NODESTAMP_CMDLINE:-/proc/cmdline}" 2>/dev/null)"
  case " $(echo $c) " in *" $2 "*) ok ;; *) bad "$1" "the kernel command line ($c) has no $2" ;; esac
}
check_command() { # at+key run exit_status stdout_contains stderr_contains
  d="$(mktemp -d)"
  (cd / && sh -c "$2" </dev/null >"$d/out" 2>"$d/err"); rc=$?
  if [ "$rc" != "$3" ]; then bad "$1" "command \`$2\` exited $rc, want $3"
  elif [ -n "$4" ] && ! grep -qF -- "$4" "$d/out"; then bad "$1" "stdout of \`$2\` does not contain \"$4\""
  elif [ -n "$5" ] && ! grep -qF -- "$5" "$d/err"; then bad "$1" "stderr of \`$2\` does not contain \"$5\""
  else ok; fi
  rm -rf "$d"
}
check_image() { # at+key ref digest
  have="$(ctr -n k8s.io images ls "name==$2" 2>/dev/null | awk 'NR==2 {print $3}')"
  if [ -z "$have" ]; then bad "$1" "image $2 is not in containerd's k8s.io namespace"; return; fi
  if [ -n "$3" ] && [ "$have" != "$3" ]; then bad "$1" "image $2 has digest $have, expected $3"; return; fi
  ok
}
"#;

/// The in-VM checker: the same checks as `nodestamp verify`, in POSIX sh (the node may not
/// run the tools image's binary), kernel arguments from the running kernel's `/proc/cmdline`.
pub fn vm_script(spec: &Spec, t: &Tests) -> String {
    let mut s = String::from(VM_PRELUDE);
    let id = |key: String, span: Span| quote(&format!("{}: {key}", at(spec, span)));
    let opt = |o: Option<String>| quote(&o.unwrap_or_default());
    let b = |o: Option<bool>| o.map(|v| v.to_string()).unwrap_or_default();
    for (i, f) in t.files.iter().enumerate() {
        s += &format!(
            "check_file {} {} {} {} {} {}\n",
            id(format!("tests.files[{i}]"), f.span),
            quote(&f.path),
            f.exists,
            opt(f.mode.map(|m| format!("{m:o}"))),
            opt(f.owner.clone()),
            opt(f.contains.clone())
        );
    }
    for (i, p) in t.packages.iter().enumerate() {
        s += &format!(
            "check_package {} {} {} {}\n",
            id(format!("tests.packages[{i}]"), p.span),
            quote(&p.name),
            p.installed,
            opt(p.version.clone())
        );
    }
    for (i, v) in t.services.iter().enumerate() {
        s += &format!(
            "check_service {} {} {} {}\n",
            id(format!("tests.services[{i}]"), v.span),
            quote(&v.name),
            opt(Some(b(v.enabled))),
            opt(Some(b(v.masked)))
        );
    }
    for (i, k) in t.kernel_arguments.iter().enumerate() {
        s += &format!(
            "check_karg {} {}\n",
            id(format!("tests.kernel_arguments[{i}]"), k.span),
            quote(&k.contains)
        );
    }
    for (i, c) in t.commands.iter().enumerate() {
        s += &format!(
            "check_command {} {} {} {} {}\n",
            id(format!("tests.commands[{i}]"), c.span),
            quote(&c.run),
            c.exit_status,
            opt(c.stdout_contains.clone()),
            opt(c.stderr_contains.clone())
        );
    }
    for (i, im) in t.images.iter().enumerate() {
        s += &format!(
            "check_image {} {} {}\n",
            id(format!("tests.images[{i}]"), im.span),
            quote(&im.reference),
            opt(im.digest.clone())
        );
    }
    s += "echo \"NODESTAMP-CHECKS: {\\\"passed\\\":$pass,\\\"failed\\\":$fail}\"\n[ \"$fail\" = 0 ]\n";
    s
}

/// The in-VM checker's files (script, unit, multi-user.target drop-in) when the spec has
/// tests: `(path, mode, contents)`. They go into the provenance layer.
pub fn vm_files(spec: &Spec) -> Vec<(&'static str, u32, Vec<u8>)> {
    let Some(t) = spec.tests.as_ref().filter(|t| !t.is_empty()) else {
        return Vec::new();
    };
    vec![
        (VM_SCRIPT, 0o755, vm_script(spec, t).into_bytes()),
        (VM_UNIT, 0o644, VM_UNIT_TEXT.as_bytes().to_vec()),
        (
            VM_WANTS,
            0o644,
            b"[Unit]\nWants=nodestamp-checks.service\n".to_vec(),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn spec() -> Spec {
        let text = "version: 1\nos:\n  from: debian:bookworm\ntests:\n  files:\n    - { path: /etc/hostname, mode: 0644 }\n  commands:\n    - { run: 'echo \"it''s\" ok', stdout_contains: ok }\n    - { run: \"echo err >&2; exit 3\", exit_status: 3 }\n";
        nodestamp_spec::load("node.yaml", text.as_bytes(), &BTreeMap::new())
            .unwrap()
            .spec
    }

    #[test]
    fn checks_carry_their_key_path_and_spec_location() {
        let s = spec();
        let v = serde_json::to_value(checks_file(&s, s.tests.as_ref().unwrap())).unwrap();
        let c = v["checks"].as_array().unwrap();
        assert_eq!(c.len(), 3);
        assert_eq!(c[0]["key"], "tests.files[0]");
        assert_eq!(c[0]["at"], "node.yaml:6:7");
        assert_eq!(c[0]["mode"], 0o644);
        assert_eq!(c[2]["key"], "tests.commands[1]");
        assert_eq!(c[2]["index"], 1);
        assert_eq!(c[2]["exit_status"], 3);
    }

    #[test]
    fn the_commands_script_records_every_result_and_succeeds() {
        let s = spec();
        let dir = std::env::temp_dir().join(format!("nodestamp-cmds-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let script = commands_script(s.tests.as_ref().unwrap(), dir.to_str().unwrap());
        crate::script::run_ok(&script);
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
        assert_eq!(read("0.out"), "it's ok\n");
        assert_eq!(read("0.rc"), "0\n");
        assert_eq!(read("1.err"), "err\n");
        assert_eq!(read("1.rc"), "3\n");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_test_target_runs_against_the_node_with_provenance() {
        let s = spec();
        let src = b"x";
        let g =
            super::super::compile_target(&s, src, &Default::default(), &super::super::Target::Test);
        let json = llb_graph::json::definition_json(&g.marshal().unwrap()).unwrap();
        let text = json.to_string();
        assert!(text.contains("verify"), "{text}");
        assert!(text.contains("[test 2/3] run 2 commands in the node"));
    }

    #[test]
    fn the_vm_script_runs_the_same_checks_and_prints_a_machine_readable_result() {
        let dir = std::env::temp_dir().join(format!("nodestamp-vm-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("f");
        std::fs::write(&f, "hello world\n").unwrap();
        let cmdline = dir.join("cmdline");
        std::fs::write(&cmdline, "BOOT_IMAGE=/vmlinuz console=ttyS0 quiet\n").unwrap();
        let text = format!(
            "version: 1\nos:\n  from: debian:bookworm\ntests:\n  files:\n    - {{ path: {f}, contains: world }}\n    - {{ path: {f}, contains: nope }}\n    - {{ path: {f}/x, exists: false }}\n  packages:\n    - {{ name: bash }}\n    - {{ name: nodestamp-no-such-package }}\n  kernel_arguments:\n    - {{ contains: console=ttyS0 }}\n    - {{ contains: console=tty }}\n  commands:\n    - {{ run: \"echo hi; echo oops >&2; exit 4\", exit_status: 4, stdout_contains: hi, stderr_contains: oops }}\n    - {{ run: \"true\", exit_status: 1 }}\n",
            f = f.display()
        );
        let s = nodestamp_spec::load("node.yaml", text.as_bytes(), &BTreeMap::new())
            .unwrap()
            .spec;
        let script = vm_script(&s, s.tests.as_ref().unwrap());
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .env("NODESTAMP_CMDLINE", &cmdline)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "{stdout}");
        let has_dpkg = std::process::Command::new("dpkg-query")
            .arg("-W")
            .arg("bash")
            .output()
            .is_ok_and(|o| o.status.success());
        let (passed, failed) = if has_dpkg { (5, 4) } else { (4, 5) };
        assert!(
            stdout.contains(&format!(
                "NODESTAMP-CHECKS: {{\"passed\":{passed},\"failed\":{failed}}}"
            )),
            "{stdout}\n{script}"
        );
        for want in [
            "NODESTAMP-CHECK-FAIL: node.yaml:7:7: tests.files[1]:",
            "does not contain \"nope\"",
            "tests.packages[1]: package nodestamp-no-such-package is not installed",
            "tests.kernel_arguments[1]: the kernel command line",
            "tests.commands[1]: command `true` exited 0, want 1",
        ] {
            assert!(stdout.contains(want), "{want:?} in:\n{stdout}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
