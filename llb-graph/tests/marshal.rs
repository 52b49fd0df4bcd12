//! Marshal tests: bytes decode back to the intended ops; equal graphs are byte-identical.

use llb_graph::pb::{self, file_action::Action, op::Op as K};
use llb_graph::{
    CacheSharing, ChownOpt, CopyOpts, Digest, Exec, FileActions, HttpOpts, ImageOpts, LocalOpts,
    Meta, Mount, NetMode, Owner, Platform, ResolveMode, SourceMap, SourceRange, State, decode_ops,
};
use prost::Message;

fn ops(def: &pb::Definition) -> Vec<pb::Op> {
    def.def
        .iter()
        .map(|b| pb::Op::decode(b.as_slice()).unwrap())
        .collect()
}

fn sample(spec_text: &str) -> State {
    let map = SourceMap::new("node.yaml", spec_text.as_bytes().to_vec(), "YAML");
    let range = SourceRange {
        start_line: 3,
        start_char: 2,
        end_line: 3,
        end_char: 10,
    };
    let os = State::image_with(
        "debian:bookworm",
        ImageOpts {
            resolve_mode: ResolveMode::Local,
            platform: Some(Platform::linux_amd64()),
        },
        Meta::named("[os 1/3] from debian:bookworm"),
    )
    .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
    let os = os
        .run(
            Exec::shell("apt-get install -y jq")
                .env("DEBIAN_FRONTEND", "noninteractive")
                .mount(Mount::cache(
                    "/var/cache/apt",
                    "apt-cache",
                    CacheSharing::Locked,
                ))
                .mount(Mount::secret("/run/secrets/token", "token", true)),
            Meta::named("[os 2/3] install packages").at(&map, range),
        )
        .root();
    let os = os.file(
        FileActions::new()
            .mkdir("/etc/nodestamp", 0o755, true, ChownOpt::default())
            .mkfile(
                "/etc/nodestamp/a",
                0o644,
                b"hello\n".to_vec(),
                ChownOpt {
                    user: Some(Owner::Name("core".into())),
                    group: None,
                },
            ),
        Meta::named("[os 3/3] files"),
    );
    let ctx = State::local(
        "context",
        LocalOpts {
            include_patterns: vec!["components/kubectl".into()],
            follow_paths: vec!["components/kubectl".into()],
            shared_key_hint: Some("context:components/kubectl".into()),
            ..Default::default()
        },
        Meta::default(),
    );
    let dl = State::http(
        "https://example.invalid/kubelet",
        HttpOpts {
            checksum: Some(format!("sha256:{}", "a".repeat(64))),
            filename: Some("kubelet".into()),
            perm: Some(0o755),
        },
        Meta::default(),
    );
    let k8s = State::scratch().file(
        FileActions::new()
            .timestamp(Some(0))
            .copy(
                &dl,
                "/kubelet",
                "/usr/local/bin/kubelet",
                CopyOpts {
                    create_dest_path: true,
                    ..Default::default()
                },
            )
            .copy(
                &ctx,
                "/components/kubectl",
                "/usr/local/bin/kubectl",
                CopyOpts {
                    create_dest_path: true,
                    mode: Some(0o755),
                    ..Default::default()
                },
            ),
        Meta::named("[kubernetes 1/1] components"),
    );
    State::merge(&[os, k8s], Meta::named("[node] merge"))
}

#[test]
fn equal_graphs_built_independently_are_byte_identical() {
    let a = sample("x").marshal().unwrap();
    let b = sample("x").marshal().unwrap();
    assert_eq!(a.encode_to_vec(), b.encode_to_vec());
    let c = sample("y").marshal().unwrap();
    assert_eq!(
        a.def, c.def,
        "source text is metadata, not part of op digests"
    );
    assert_ne!(a.encode_to_vec(), c.encode_to_vec());
}

#[test]
fn inputs_come_first_and_every_reference_resolves() {
    let def = sample("x").marshal().unwrap();
    let mut seen = std::collections::HashSet::new();
    for (i, bytes) in def.def.iter().enumerate() {
        let op = pb::Op::decode(bytes.as_slice()).unwrap();
        for input in &op.inputs {
            assert!(
                seen.contains(&input.digest),
                "op {i} refers to {} before it is defined",
                input.digest
            );
        }
        seen.insert(Digest::of(bytes).to_string());
    }
    let last = ops(&def).pop().unwrap();
    assert!(
        last.op.is_none() && last.inputs.len() == 1,
        "last op selects the result"
    );
}

/// The first source op whose identifier starts with `prefix`, with its op.
fn source<'a>(all: &'a [pb::Op], prefix: &str) -> (&'a pb::Op, &'a pb::SourceOp) {
    all.iter()
        .find_map(|o| match &o.op {
            Some(K::Source(s)) if s.identifier.starts_with(prefix) => Some((o, s)),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no source {prefix}…"))
}

#[test]
fn fields_decode_back() {
    let def = sample("x").marshal().unwrap();
    let all = ops(&def);
    let image = source(&all, "docker-image");
    assert_eq!(
        image.1.identifier,
        "docker-image://docker.io/library/debian:bookworm"
    );
    assert_eq!(image.1.attrs["image.resolvemode"], "local");
    assert_eq!(image.0.platform.as_ref().unwrap().architecture, "amd64");

    let (_, http) = source(&all, "https");
    assert_eq!(
        http.attrs["http.checksum"],
        format!("sha256:{}", "a".repeat(64))
    );
    assert_eq!(http.attrs["http.perm"], "0755");

    let (_, local) = source(&all, "local://");
    assert_eq!(local.identifier, "local://context");
    assert_eq!(
        local.attrs["local.includepattern"],
        r#"["components/kubectl"]"#
    );
    assert_eq!(
        local.attrs["local.followpaths"],
        r#"["components/kubectl"]"#
    );
    assert_eq!(
        local.attrs["local.sharedkeyhint"],
        "context:components/kubectl"
    );
    assert!(!local.attrs.contains_key("local.excludepatterns"));

    let (exec_op, exec) = all
        .iter()
        .find_map(|o| match &o.op {
            Some(K::Exec(e)) => Some((o, e)),
            _ => None,
        })
        .unwrap();
    let meta = exec.meta.as_ref().unwrap();
    assert_eq!(meta.args, ["/bin/sh", "-c", "apt-get install -y jq"]);
    assert_eq!(
        meta.env,
        [
            "DEBIAN_FRONTEND=noninteractive",
            "PATH=/usr/sbin:/usr/bin:/sbin:/bin"
        ]
    );
    assert_eq!(meta.cwd, "/");
    let dests: Vec<&str> = exec.mounts.iter().map(|m| m.dest.as_str()).collect();
    assert_eq!(
        dests,
        ["/", "/run/secrets/token", "/var/cache/apt"],
        "mounts sorted by destination"
    );
    assert_eq!((exec.mounts[0].input, exec.mounts[0].output), (0, 0));
    assert_eq!(exec.mounts[1].mount_type, pb::MountType::Secret as i32);
    assert_eq!(exec.mounts[1].output, -1);
    assert_eq!(
        exec.mounts[2].cache_opt.as_ref().unwrap().sharing,
        pb::CacheSharingOpt::Locked as i32
    );
    assert_eq!(exec_op.inputs.len(), 1);

    let files: Vec<&pb::FileOp> = all
        .iter()
        .filter_map(|o| match &o.op {
            Some(K::File(f)) => Some(f),
            _ => None,
        })
        .collect();
    let os_files = files
        .iter()
        .find(|f| matches!(f.actions[0].action, Some(Action::Mkdir(_))))
        .unwrap();
    assert_eq!(
        (os_files.actions[0].input, os_files.actions[0].output),
        (0, -1)
    );
    assert_eq!(
        (os_files.actions[1].input, os_files.actions[1].output),
        (1, 0),
        "second action chains on the first"
    );
    let Some(Action::Mkfile(mk)) = &os_files.actions[1].action else {
        panic!()
    };
    assert_eq!(
        (mk.mode, mk.data.as_slice(), mk.timestamp),
        (0o644, &b"hello\n"[..], -1)
    );
    let Some(pb::user_opt::User::ByName(n)) = mk
        .owner
        .as_ref()
        .unwrap()
        .user
        .as_ref()
        .unwrap()
        .user
        .as_ref()
    else {
        panic!()
    };
    assert_eq!((n.name.as_str(), n.input), ("core", 0));

    let k8s = files
        .iter()
        .find(|f| matches!(f.actions[0].action, Some(Action::Copy(_))))
        .unwrap();
    assert_eq!(
        k8s.actions[0].input, -1,
        "kubernetes layer starts from scratch"
    );
    assert_eq!(k8s.actions[0].secondary_input, 0);
    assert_eq!(
        (k8s.actions[1].input, k8s.actions[1].secondary_input),
        (2, 1)
    );
    let Some(Action::Copy(c)) = &k8s.actions[1].action else {
        panic!()
    };
    assert_eq!((c.mode, c.timestamp, c.create_dest_path), (0o755, 0, true));

    let merge = all
        .iter()
        .find_map(|o| match &o.op {
            Some(K::Merge(m)) => Some((o, m)),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        merge.1.inputs.iter().map(|i| i.input).collect::<Vec<_>>(),
        [0, 1]
    );
    assert_eq!(merge.0.inputs.len(), 2);
}

#[test]
fn metadata_carries_names_and_source_locations() {
    let def = sample("version: 1\nos:\n  packages: [jq]\n")
        .marshal()
        .unwrap();
    let decoded = decode_ops(&def).unwrap().ops;
    let exec_digest = decoded
        .iter()
        .find(|(_, o)| matches!(o.op, Some(K::Exec(_))))
        .unwrap()
        .0;
    assert_eq!(
        def.metadata[exec_digest.as_str()].description["llb.customname"],
        "[os 2/3] install packages"
    );
    let src = def.source.as_ref().unwrap();
    assert_eq!(src.infos.len(), 1);
    assert_eq!(src.infos[0].filename, "node.yaml");
    assert_eq!(src.infos[0].data, b"version: 1\nos:\n  packages: [jq]\n");
    let loc = &src.locations[exec_digest.as_str()].locations[0];
    assert_eq!(loc.ranges[0].start.unwrap().line, 3);
}

#[test]
fn merge_tidies_its_inputs() {
    let img = State::image("debian:bookworm");
    assert!(State::merge(&[], Meta::default()).is_scratch());
    assert!(State::merge(&[State::scratch(), State::scratch()], Meta::default()).is_scratch());
    let one = State::merge(&[State::scratch(), img.clone()], Meta::default());
    assert_eq!(one.digest().unwrap(), img.digest().unwrap());
    assert_eq!(
        State::scratch().marshal().unwrap(),
        pb::Definition::default()
    );
}

#[test]
fn a_shared_input_is_emitted_once() {
    let img = State::image("debian:bookworm");
    let a = img.run(Exec::shell("true"), Meta::default()).root();
    let b = img.run(Exec::shell("false"), Meta::default()).root();
    let def = State::merge(&[a, b], Meta::default()).marshal().unwrap();
    assert_eq!(def.def.len(), 5, "image once, two execs, merge, result");
}

#[test]
fn exec_mount_outputs_are_states() {
    let tools = State::image("nodestamp/frontend:dev");
    let layer = State::scratch().file(
        FileActions::new().mkdir("/usr", 0o755, false, ChownOpt::default()),
        Meta::default(),
    );
    let run = tools.run(
        Exec::new(["ln", "-s", "a", "/out/b"])
            .network(NetMode::None)
            .mount(Mount::layer(&layer, "/out"))
            .mount(Mount::readonly(&layer, "/in")),
        Meta::named("links"),
    );
    let out = run.output("/out").unwrap();
    assert!(
        run.output("/in").is_none(),
        "read-only mounts are not outputs"
    );
    let def = out.marshal().unwrap();
    let all = ops(&def);
    let result = all.last().unwrap();
    assert_eq!(
        result.inputs[0].index, 1,
        "/out is the second output after /"
    );
    let Some(K::Exec(e)) = &all[all.len() - 2].op else {
        panic!()
    };
    assert_eq!(e.network, pb::NetMode::None as i32);
    assert_eq!(
        e.mounts
            .iter()
            .map(|m| (m.dest.as_str(), m.output))
            .collect::<Vec<_>>(),
        [("/", 0), ("/in", -1), ("/out", 1)]
    );
}

#[test]
fn relative_paths_and_empty_commands_are_errors() {
    let bad = State::scratch().file(
        FileActions::new().mkfile("etc/x", 0o644, vec![], ChownOpt::default()),
        Meta::named("bad"),
    );
    assert!(bad.marshal().is_err());
    let empty = State::image("debian")
        .run(Exec::new(Vec::<String>::new()), Meta::default())
        .root();
    assert!(empty.marshal().is_err());
}

#[test]
fn json_view_is_keyed_by_digest() {
    let def = sample("x").marshal().unwrap();
    let v = llb_graph::json::definition_json(&def).unwrap();
    let ops = v["ops"].as_object().unwrap();
    assert_eq!(ops.len(), def.def.len() - 1);
    assert!(ops.keys().all(|k| k.starts_with("sha256:")));
    assert!(v["result"].as_str().unwrap().ends_with("#0"));
    let exec = ops.values().find(|o| o.get("exec").is_some()).unwrap();
    assert_eq!(exec["name"], "[os 2/3] install packages");
    assert_eq!(exec["location"][0], "node.yaml:3:3");
}

#[test]
fn ignore_cache_spreads_to_the_ops_using_the_result_and_skips_sources() {
    let named = |n: &str| Meta::named(n);
    let uncached = |n: &str| Meta {
        ignore_cache: true,
        ..Meta::named(n)
    };
    let img = State::image_with("debian:bookworm", ImageOpts::default(), uncached("image"));
    let os = img
        .run(Exec::shell("apt-get install"), uncached("os"))
        .root();
    let k8s = State::scratch().file(
        FileActions::new().mkdir("/etc", 0o755, true, ChownOpt::default()),
        named("kubernetes"),
    );
    let merged = State::merge(&[os, k8s], named("merge"));
    let top = merged.run(Exec::shell("true"), named("on top")).root();
    let def = top.marshal().unwrap();
    let by_name: std::collections::BTreeMap<String, &pb::OpMetadata> = def
        .metadata
        .values()
        .filter_map(|md| Some((md.description.get("llb.customname")?.clone(), md)))
        .collect();
    let ignored = |n: &str| by_name[n].ignore_cache;
    assert!(!ignored("image"), "sources are never marked");
    assert!(ignored("os"));
    assert!(
        !ignored("kubernetes"),
        "an op not using the result keeps its cache"
    );
    assert!(
        ignored("merge") && ignored("on top"),
        "users of the result run again"
    );
    assert_eq!(by_name["os"].caps.get("meta.ignorecache"), Some(&true));
    assert!(!by_name["kubernetes"].caps.contains_key("meta.ignorecache"));
    // The ops themselves are unchanged: the cache keys of a later build are the same.
    let plain = {
        let img = State::image_with("debian:bookworm", ImageOpts::default(), named("image"));
        let os = img.run(Exec::shell("apt-get install"), named("os")).root();
        let k8s = State::scratch().file(
            FileActions::new().mkdir("/etc", 0o755, true, ChownOpt::default()),
            named("kubernetes"),
        );
        let merged = State::merge(&[os, k8s], named("merge"));
        merged
            .run(Exec::shell("true"), named("on top"))
            .root()
            .marshal()
            .unwrap()
    };
    assert_eq!(plain.def, def.def);
}
