//! The command lines of the steps. BuildKit prints a failed step's command line
//! (`#7 ERROR: process "<args joined by spaces>" did not complete successfully`), so a step
//! that runs a script nodestamp generates has a short command line naming the step, the script
//! in a mounted file; a `run` entry of the spec has its own command on it, as written, as a
//! Dockerfile's `RUN` has.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use llb_graph::decode_ops;
use llb_graph::pb::op::Op as K;
use nodestamp_compile::reproducible::SETTLE_FILE;
use nodestamp_compile::script::{STEP_FILE, command_files};
use nodestamp_compile::{CompileOptions, Target, compile_target, provenance};
use nodestamp_spec as spec;

/// A spec with every kind of generated step: packages in both tiers, groups and users, files
/// with links (soft and hard) and special modes, units written, enabled and masked, `run`
/// entries (one line and several), Kubernetes links and a unit enabled on the node, local
/// components (their checksums in the provenance) and test commands.
const SPEC: &str = r##"version: 1
name: command-lines
os:
  from: debian:bookworm
  packages: [linux-image-amd64, jq]
  passwd:
    groups:
      - { name: ops, gid: 2000 }
    users:
      - { name: core, groups: [ops], ssh_authorized_keys: ["ssh-ed25519 AAAA core@example"] }
  storage:
    files:
      - { path: /usr/local/bin/suid, mode: 04755, contents: { inline: "#!/bin/sh\n" } }
    links:
      - { path: /usr/local/bin/vi, target: /usr/bin/vim.tiny }
      - { path: /usr/local/bin/hard, target: /usr/local/bin/suid, hard: true }
  systemd:
    units:
      - name: hello.service
        enabled: true
        contents: "[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n"
      - { name: ssh.service, enabled: true }
      - { name: apt-daily.timer, mask: true }
  run:
    - echo one > /etc/one
    - |
      set -x
      echo two > /etc/two
kubernetes:
  version: "1.32.3"
  components:
    - { name: kubectl, local: components/kubectl }
  storage:
    links:
      - { path: /usr/local/bin/k, target: kubectl }
  systemd:
    units:
      - { name: kubelet.service, enabled: true }
disk:
  size: 4GiB
  formats: [qcow2]
tests:
  commands:
    - { run: "true", exit_status: 0 }
    - { run: "printf 'a\nb'", stdout_contains: a }
"##;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The option sets every check runs under: without and with `SOURCE_DATE_EPOCH`, without and
/// with symlink file actions, with the provenance steps.
fn option_sets() -> Vec<CompileOptions> {
    let mut sets = Vec::new();
    for epoch in [None, Some(1_700_000_000)] {
        for symlinks in [false, true] {
            sets.push(CompileOptions {
                source_date_epoch: epoch,
                symlink_file_action: symlinks,
                provenance: Some(provenance::BuildInfo::default()),
                ..CompileOptions::default()
            });
        }
    }
    sets
}

/// Checks the command line of every exec of every target of `text`, and returns how many
/// generated steps and `run` entries it saw.
fn check(text: &str, vars: &BTreeMap<String, String>) -> (usize, usize) {
    let loaded = spec::load("node.yaml", text.as_bytes(), vars).unwrap();
    let s = &loaded.spec;
    let runs: Vec<&str> = s.os.run.iter().map(|r| r.value.as_str()).collect();
    let (mut generated, mut user) = (0, 0);
    for opts in option_sets() {
        let settle = opts.source_date_epoch.map(|_| SETTLE_FILE);
        for name in Target::NAMES {
            let Ok(target) = Target::parse(name, s) else {
                continue;
            };
            let def = compile_target(s, text.as_bytes(), &opts, &target)
                .marshal()
                .unwrap();
            let ops = decode_ops(&def).unwrap().ops;
            // What the failure matcher tells the ops apart by: never two alike.
            let mut seen = BTreeSet::new();
            for op in ops.values() {
                let Some(K::Exec(e)) = &op.op else {
                    continue;
                };
                let meta = e.meta.as_ref().unwrap();
                let args = &meta.args;
                let line = args.join(" ");
                let files = command_files(&ops, op);
                assert!(
                    seen.insert((args.clone(), meta.env.clone(), meta.cwd.clone())),
                    "{name}: two execs run {line:?}"
                );
                let with_settle = |rest: &[&str]| -> Vec<String> {
                    let mut v = vec!["/bin/sh".to_string()];
                    v.extend(settle.map(String::from));
                    v.extend(rest.iter().map(|s| s.to_string()));
                    v
                };
                if let Some(run) = runs
                    .iter()
                    .find(|r| args.last().map(String::as_str) == Some(**r))
                {
                    // A `run` entry: the user's command, verbatim.
                    assert_eq!(*args, with_settle(&["-ec", run]), "{name}");
                    user += 1;
                } else {
                    assert!(
                        !line.contains('\n') && line.len() <= 200,
                        "{name}: a long command line: {line:?}"
                    );
                }
                if args.iter().any(|a| a == STEP_FILE) {
                    // A generated script: `/bin/sh /dev/nodestamp/step <step name>`; an OS
                    // step with `SOURCE_DATE_EPOCH` runs it under the settling wrapper.
                    let plain = ["/bin/sh", STEP_FILE];
                    assert!(
                        args[..args.len() - 1] == plain
                            || args[..args.len() - 1] == with_settle(&[STEP_FILE])[..],
                        "{name}: {line}"
                    );
                    let script = files.iter().find(|(n, _)| n == "step");
                    assert!(
                        script.is_some_and(|(_, t)| t.contains('\n')),
                        "{name}: {line}: no script mounted: {files:?}"
                    );
                    generated += 1;
                }
                // The settling wrapper is there exactly when its path is on the command line.
                assert_eq!(
                    files.iter().any(|(n, _)| n == "settle"),
                    args.iter().any(|a| a == SETTLE_FILE),
                    "{name}: {line}"
                );
            }
        }
    }
    (generated, user)
}

#[test]
fn generated_steps_have_short_command_lines_and_run_entries_their_own() {
    let (generated, user) = check(SPEC, &BTreeMap::new());
    assert!(generated >= 8, "{generated} generated steps");
    assert!(user >= 2, "{user} run entries");
}

#[test]
fn the_example_has_short_command_lines() {
    let text = std::fs::read_to_string(root().join("testdata/examples/node.yaml")).unwrap();
    let (generated, _) = check(&text, &BTreeMap::new());
    assert!(generated >= 3, "{generated} generated steps");
}
