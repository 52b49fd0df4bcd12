//! A readable JSON view of a marshaled definition, keyed by op digest, for golden tests and
//! debugging (`nodestamp-frontend --print-llb`). Equal graphs give equal views.

use serde_json::{Map, Value, json};

use crate::marshal::{DecodedOps, decode_ops};
use crate::pb;

fn input(op: &pb::Op, index: i64) -> Value {
    if index < 0 {
        return Value::String("scratch".into());
    }
    match op.inputs.get(index as usize) {
        Some(i) => Value::String(format!("{}#{}", i.digest, i.index)),
        None => Value::String(format!("<bad input {index}>")),
    }
}

fn owner(o: &Option<pb::ChownOpt>) -> Value {
    let uo = |u: &Option<pb::UserOpt>| match u.as_ref().and_then(|u| u.user.as_ref()) {
        Some(pb::user_opt::User::ByName(n)) => json!(n.name),
        Some(pb::user_opt::User::ById(id)) => json!(id),
        None => Value::Null,
    };
    match o {
        Some(c) => json!({ "user": uo(&c.user), "group": uo(&c.group) }),
        None => Value::Null,
    }
}

fn data(d: &[u8]) -> Value {
    match std::str::from_utf8(d) {
        Ok(s) => json!(s),
        Err(_) => json!({ "base64-len": d.len() }),
    }
}

fn mode(m: i32) -> Value {
    if m < 0 {
        Value::Null
    } else {
        json!(format!("0{m:o}"))
    }
}

fn strip_nulls(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(_, v)| {
                    !v.is_null() && *v != json!(false) && *v != json!([]) && *v != json!("")
                })
                .map(|(k, v)| (k, strip_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(strip_nulls).collect()),
        v => v,
    }
}

fn op_view(op: &pb::Op) -> Value {
    use pb::op::Op as K;
    let body = match &op.op {
        Some(K::Source(s)) => json!({ "source": { "identifier": s.identifier, "attrs": s.attrs } }),
        Some(K::Exec(e)) => {
            let meta = e.meta.clone().unwrap_or_default();
            let mounts: Vec<Value> = e
                .mounts
                .iter()
                .map(|m| {
                    let kind = match pb::MountType::try_from(m.mount_type).unwrap_or(pb::MountType::Bind) {
                        pb::MountType::Bind => "bind",
                        pb::MountType::Secret => "secret",
                        pb::MountType::Ssh => "ssh",
                        pb::MountType::Cache => "cache",
                        pb::MountType::Tmpfs => "tmpfs",
                    };
                    json!({
                        "dest": m.dest, "type": kind, "input": input(op, m.input),
                        "output": if m.output >= 0 { json!(m.output) } else { Value::Null },
                        "readonly": m.readonly, "selector": m.selector,
                        "cache": m.cache_opt.as_ref().map(|c| json!({"id": c.id, "sharing": c.sharing})),
                        "secret": m.secret_opt.as_ref().map(|s| json!({"id": s.id, "mode": mode(s.mode as i32), "optional": s.optional})),
                    })
                })
                .collect();
            json!({ "exec": {
                "args": meta.args, "env": meta.env, "cwd": meta.cwd, "user": meta.user,
                "network": match e.network { 1 => "host", 2 => "none", _ => "" },
                "mounts": mounts,
                "secretenv": e.secretenv.iter().map(|s| json!({"name": s.name, "id": s.id})).collect::<Vec<_>>(),
            }})
        }
        Some(K::File(f)) => {
            let n = op.inputs.len() as i64;
            let actions: Vec<Value> = f
                .actions
                .iter()
                .map(|a| {
                    let from = |i: i64| if i >= n { json!(format!("action#{}", i - n)) } else { input(op, i) };
                    use pb::file_action::Action as A;
                    let body = match &a.action {
                        Some(A::Mkdir(m)) => json!({"mkdir": {"path": m.path, "mode": mode(m.mode), "parents": m.make_parents, "owner": owner(&m.owner), "timestamp": m.timestamp}}),
                        Some(A::Mkfile(m)) => json!({"mkfile": {"path": m.path, "mode": mode(m.mode), "data": data(&m.data), "owner": owner(&m.owner), "timestamp": m.timestamp}}),
                        Some(A::Rm(r)) => json!({"rm": {"path": r.path, "allow_not_found": r.allow_not_found}}),
                        Some(A::Symlink(s)) => json!({"symlink": {"target": s.oldpath, "path": s.newpath, "owner": owner(&s.owner), "timestamp": s.timestamp}}),
                        Some(A::Copy(c)) => json!({"copy": {
                            "from": from(a.secondary_input), "src": c.src, "dest": c.dest, "mode": mode(c.mode),
                            "owner": owner(&c.owner), "unpack": c.attempt_unpack_docker_compatibility,
                            "create_dest_path": c.create_dest_path, "dir_contents": c.dir_copy_contents,
                            "follow_symlinks": c.follow_symlink, "include": c.include_patterns,
                            "exclude": c.exclude_patterns, "timestamp": c.timestamp,
                        }}),
                        None => json!({}),
                    };
                    json!({ "on": from(a.input), "output": a.output, "action": body })
                })
                .collect();
            json!({ "file": actions })
        }
        Some(K::Merge(m)) => {
            json!({ "merge": m.inputs.iter().map(|i| input(op, i.input)).collect::<Vec<_>>() })
        }
        Some(K::Diff(d)) => json!({ "diff": {
            "lower": d.lower.as_ref().map(|l| input(op, l.input)),
            "upper": d.upper.as_ref().map(|u| input(op, u.input)),
        }}),
        None => json!({}),
    };
    let mut v = body;
    if let (Some(p), Value::Object(m)) = (&op.platform, &mut v) {
        m.insert(
            "platform".into(),
            json!(format!("{}/{}", p.os, p.architecture)),
        );
    }
    v
}

/// The JSON view: `{"result": "<digest>#<index>", "ops": {"<digest>": {...}}}` with each op's
/// progress name and spec location where present.
pub fn definition_json(def: &pb::Definition) -> Result<Value, prost::DecodeError> {
    let DecodedOps { ops, result } = decode_ops(def)?;
    let mut out = Map::new();
    for (digest, op) in &ops {
        let mut v = op_view(op);
        if let Value::Object(m) = &mut v {
            if let Some(md) = def.metadata.get(digest.as_str())
                && let Some(name) = md.description.get("llb.customname")
            {
                m.insert("name".into(), json!(name));
            }
            if let Some(src) = &def.source
                && let Some(locs) = src.locations.get(digest.as_str())
            {
                let l: Vec<Value> = locs
                    .locations
                    .iter()
                    .flat_map(|l| {
                        let file = src
                            .infos
                            .get(l.source_index as usize)
                            .map(|i| i.filename.clone())
                            .unwrap_or_default();
                        l.ranges.iter().map(move |r| {
                            let s = r.start.unwrap_or_default();
                            json!(format!("{}:{}:{}", file, s.line, s.character + 1))
                        })
                    })
                    .collect();
                m.insert("location".into(), json!(l));
            }
        }
        out.insert(digest.to_string(), strip_nulls(v));
    }
    Ok(json!({
        "result": result.map(|(d, i)| format!("{d}#{i}")),
        "ops": out,
    }))
}
