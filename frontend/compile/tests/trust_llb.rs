//! Issue 4 at the LLB level (no engine): secrets and build-time files reach the package and
//! `run` steps as mounts (never as file actions on the image), proxies travel in `ProxyEnv`
//! (which BuildKit leaves out of the cache key) rather than in the environment, and
//! `SOURCE_DATE_EPOCH` fixes the links step of the Kubernetes layer.

use std::collections::BTreeMap;

use llb_graph::decode_ops;
use llb_graph::pb::op::Op as K;
use llb_graph::pb::{self, ExecOp};
use nodestamp_compile::{CompileOptions, compile, script};
use nodestamp_spec as spec;

const SPEC: &str = r#"version: 1
os:
  from: debian:bookworm
  packages: [jq]
  build:
    secrets:
      - { id: apt-auth, target: /etc/apt/auth.conf.d/private.conf }
      - { id: token, env: API_TOKEN }
    files:
      - { path: /etc/apt/sources.list.d/private.list, contents: { inline: "deb https://apt.example/ stable main\n" } }
      - { path: /usr/local/share/ca-certificates/proxy.crt, mode: 0600, contents: { local: certs/proxy.crt } }
  run:
    - echo plain
    - command: cat /run/secrets/extra > /dev/null
      secrets: [{ id: extra }]
kubernetes:
  systemd:
    units:
      - { name: a.service, enabled: true, contents: "[Install]\nWantedBy=multi-user.target\n" }
"#;

/// Every exec of the node: its progress name, the op, and the command it runs (its arguments
/// joined, then the text of the files mounted for it: the generated script and, with
/// `SOURCE_DATE_EPOCH`, the settling wrapper).
fn execs(opts: &CompileOptions) -> Vec<(String, ExecOp, String)> {
    let l = spec::load("node.yaml", SPEC.as_bytes(), &BTreeMap::new()).unwrap();
    let def = compile(&l.spec, SPEC.as_bytes(), opts)
        .node
        .marshal()
        .unwrap();
    let names: BTreeMap<String, String> = def
        .metadata
        .iter()
        .map(|(d, m)| {
            (
                d.clone(),
                m.description
                    .get("llb.customname")
                    .cloned()
                    .unwrap_or_default(),
            )
        })
        .collect();
    let ops = decode_ops(&def).unwrap();
    ops.ops
        .iter()
        .filter_map(|(d, op)| match &op.op {
            Some(K::Exec(e)) => {
                let mut command = e.meta.as_ref()?.args.join(" ");
                for (_, text) in script::command_files(&ops.ops, op) {
                    command += "\n";
                    command += &text;
                }
                Some((
                    names.get(&d.to_string()).cloned().unwrap_or_default(),
                    e.clone(),
                    command,
                ))
            }
            _ => None,
        })
        .collect()
}

type Execs = [(String, ExecOp, String)];

fn step_with<'a>(execs: &'a Execs, prefix: &str) -> &'a (String, ExecOp, String) {
    execs
        .iter()
        .find(|(n, _, _)| n.starts_with(prefix))
        .unwrap_or_else(|| {
            panic!(
                "no step {prefix}: {:?}",
                execs.iter().map(|e| &e.0).collect::<Vec<_>>()
            )
        })
}

fn step<'a>(execs: &'a Execs, prefix: &str) -> &'a ExecOp {
    &step_with(execs, prefix).1
}

/// The command `prefix` runs: its arguments and its mounted script.
fn command<'a>(execs: &'a Execs, prefix: &str) -> &'a str {
    &step_with(execs, prefix).2
}

fn secret_mounts(e: &ExecOp) -> Vec<(String, String)> {
    e.mounts
        .iter()
        .filter(|m| m.mount_type == pb::MountType::Secret as i32)
        .map(|m| (m.dest.clone(), m.secret_opt.as_ref().unwrap().id.clone()))
        .collect()
}

fn bind_selectors(e: &ExecOp) -> Vec<(String, String, bool)> {
    e.mounts
        .iter()
        .filter(|m| {
            m.mount_type == pb::MountType::Bind as i32
                && m.dest != "/"
                && m.dest != script::SCRIPT_DIR
        })
        .map(|m| (m.dest.clone(), m.selector.clone(), m.readonly))
        .collect()
}

#[test]
fn secrets_and_build_files_are_mounts_of_the_package_and_run_steps() {
    let all = execs(&CompileOptions::default());
    let files = vec![
        (
            "/etc/apt/sources.list.d/private.list".to_string(),
            "/etc/apt/sources.list.d/private.list".to_string(),
            true,
        ),
        (
            "/usr/local/share/ca-certificates/proxy.crt".to_string(),
            "/usr/local/share/ca-certificates/proxy.crt".to_string(),
            true,
        ),
    ];
    let packages = step(&all, "[os 1/3] install packages");
    assert_eq!(
        secret_mounts(packages),
        [(
            "/etc/apt/auth.conf.d/private.conf".to_string(),
            "apt-auth".to_string()
        )]
    );
    assert_eq!(packages.secretenv.len(), 1);
    assert_eq!(
        (
            packages.secretenv[0].id.as_str(),
            packages.secretenv[0].name.as_str()
        ),
        ("token", "API_TOKEN")
    );
    assert_eq!(bind_selectors(packages), files);
    let plain = step(&all, "[os 2/3] run: echo plain");
    assert_eq!(bind_selectors(plain), files);
    assert_eq!(secret_mounts(plain).len(), 1);
    // Per-step secrets come on top of os.build.secrets; the default target is /run/secrets/<id>.
    let extra = step(&all, "[os 3/3] run: cat /run/secrets/extra");
    assert_eq!(
        secret_mounts(extra),
        [
            (
                "/etc/apt/auth.conf.d/private.conf".to_string(),
                "apt-auth".to_string()
            ),
            ("/run/secrets/extra".to_string(), "extra".to_string())
        ]
    );
    // Nothing else carries the secrets or the build files.
    for (name, e, _) in &all {
        if !name.starts_with("[os ") {
            assert!(
                secret_mounts(e).is_empty() && e.secretenv.is_empty(),
                "{name}"
            );
        }
        for m in &e.mounts {
            assert!(
                m.dest != "/" || m.readonly || m.output >= 0 || name.starts_with("[kubernetes"),
                "{name}"
            );
        }
    }
}

#[test]
fn build_files_are_not_written_into_the_image() {
    let l = spec::load("node.yaml", SPEC.as_bytes(), &BTreeMap::new()).unwrap();
    let os = compile(&l.spec, SPEC.as_bytes(), &CompileOptions::default()).os;
    let def = os.marshal().unwrap();
    let ops = decode_ops(&def).unwrap();
    // The only file op making them is the one on scratch that the steps mount.
    for op in ops.ops.values() {
        if let Some(K::File(f)) = &op.op {
            let text = format!("{f:?}");
            if text.contains("private.list") {
                // The chain starts from scratch (-1), not from a state of the image.
                assert_eq!(
                    f.actions[0].input, -1,
                    "build files written on top of a state: {text}"
                );
            }
        }
    }
}

#[test]
fn proxies_travel_in_proxy_env_not_in_the_environment() {
    let opts = CompileOptions {
        proxy: BTreeMap::from([
            (
                "HTTP_PROXY".to_string(),
                "http://proxy.invalid:3128".to_string(),
            ),
            ("NO_PROXY".to_string(), "localhost".to_string()),
        ]),
        ..CompileOptions::default()
    };
    let all = execs(&opts);
    for prefix in ["[os 1/3] install packages", "[os 2/3] run", "[os 3/3] run"] {
        let e = step(&all, prefix);
        let meta = e.meta.as_ref().unwrap();
        let p = meta.proxy_env.as_ref().expect("proxy_env set");
        assert_eq!(p.http_proxy, "http://proxy.invalid:3128", "{prefix}");
        assert_eq!(p.no_proxy, "localhost", "{prefix}");
        assert!(
            !meta
                .env
                .iter()
                .any(|v| v.to_ascii_uppercase().contains("PROXY")),
            "{prefix}: proxy in env {:?}",
            meta.env
        );
    }
    // Steps that never touch the network get none.
    for (name, e, _) in &all {
        if name.contains("links") || name.contains("finalize") || name.contains("systemctl") {
            assert!(e.meta.as_ref().unwrap().proxy_env.is_none(), "{name}");
        }
    }
    // Without proxy build args there is no ProxyEnv at all.
    for (name, e, _) in execs(&CompileOptions::default()) {
        assert!(e.meta.as_ref().unwrap().proxy_env.is_none(), "{name}");
    }
}

#[test]
fn source_date_epoch_fixes_the_links_step() {
    let opts = CompileOptions {
        source_date_epoch: Some(1_700_000_000),
        ..CompileOptions::default()
    };
    let all = execs(&opts);
    // The links are a layer of their own, and with an epoch the configuration layer is
    // normalized too: both set every entry's time.
    for name in [
        "[kubernetes 3/3] links",
        "[kubernetes 2/3] SOURCE_DATE_EPOCH: configuration",
    ] {
        let script = command(&all, name);
        assert!(
            script.contains("find /layer -exec touch -h -d @1700000000 -- {} +"),
            "{name}: {script}"
        );
    }
    let plain = execs(&CompileOptions::default());
    let script = command(&plain, "[kubernetes 2/2] links");
    assert!(!script.contains("touch"), "{script}");
}
