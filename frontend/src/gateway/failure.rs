//! Spec lines for failures inside the engine (a package that does not exist, a `run` command
//! that exits non-zero, a download with the wrong checksum).
//!
//! BuildKit attaches an `errdefs.Source` to such an error only when the failing vertex's digest
//! is a key of the definition's `Source.locations`. From BuildKit 0.14 on (Docker 27+), the
//! solver re-marshals every op with Go's protobuf encoder before use and takes the vertex digest
//! from those bytes (`solver/llbsolver/vertex.go`, `recomputeDigests`), so the digests it reports
//! need not be the ones the frontend marshalled, and the lookup misses. The frontend therefore
//! builds the result itself (`Solve` with `evaluate`) and, when the engine's error carries no
//! source, finds the failing op in its own definition: by the vertex digest when it matches, or
//! else by the op the error describes (`errdefs.Solve`: the op as the solver saw it) — an exec by
//! its arguments, environment and working directory, a source by its identifier — and attaches
//! that op's spec ranges as BuildKit would.

use crate::proto::google::rpc;
use prost::Message as _;

use llb_graph::{SourceRange, pb};

use super::{FrontendError, SpecLocation};

const VERTEX_TYPE_SUFFIX: &str = "errdefs.Vertex+json";
const SOLVE_TYPE_SUFFIX: &str = "errdefs.Solve+json";
const SOURCE_TYPE_SUFFIXES: [&str; 2] = ["errdefs.Source+json", "errdefs.Source"];

/// The user's error for a failed solve of `def`: the engine's message and details, plus the
/// spec lines of the failing op when the engine did not attach them.
pub fn solve_failure(def: &pb::Definition, status: &tonic::Status) -> FrontendError {
    let details: Vec<prost_types::Any> = rpc::Status::decode(status.details())
        .map(|s| s.details)
        .unwrap_or_default();
    let has_source = details
        .iter()
        .any(|d| SOURCE_TYPE_SUFFIXES.iter().any(|s| d.type_url.ends_with(s)));
    let failed = failing_op(def, &details);
    let at = failed.as_deref().and_then(|d| location_of(def, d));
    let name = failed.as_deref().and_then(|d| step_name(def, d));
    FrontendError {
        message: user_message(status.message(), name, at.as_ref()),
        // BuildKit's own source, when it found it, is not repeated.
        location: if has_source { None } else { at },
        // Passed on: the failing vertex and BuildKit's own source. Not the exec's exit code
        // (`gatewayapi.ExitMessage`: with it the gateway may report the frontend process as the
        // one that failed, "failed to run Build function"), the op dump or the stack traces.
        details: details
            .into_iter()
            .filter(|d| {
                d.type_url.ends_with(VERTEX_TYPE_SUFFIX)
                    || SOURCE_TYPE_SUFFIXES.iter().any(|s| d.type_url.ends_with(s))
            })
            .map(|d| (d.type_url, d.value))
            .collect(),
    }
}

/// The spec location of the op of `def` that the error `details` name, if any.
pub fn locate(def: &pb::Definition, details: &[prost_types::Any]) -> Option<SpecLocation> {
    location_of(def, &failing_op(def, details)?)
}

/// BuildKit's message for a failed exec quotes the whole command line (`process "/bin/sh
/// /dev/nodestamp/step install packages: foo" did not complete successfully: exit code: 100`;
/// a generated script is in a mounted file, see `nodestamp_compile::script`). The user's
/// message names the step and its spec line instead, and keeps the outcome;
/// the tool's own output is in the step's log, which the client prints above the error.
/// Other messages (a checksum mismatch, …) are the engine's, unchanged.
fn user_message(engine: &str, step: Option<&str>, at: Option<&SpecLocation>) -> String {
    const DID_NOT_COMPLETE: &str = "\" did not complete successfully: ";
    let (Some(step), true) = (step, engine.starts_with("process \"")) else {
        return engine.to_owned();
    };
    let Some(i) = engine.rfind(DID_NOT_COMPLETE) else {
        return engine.to_owned();
    };
    let outcome = &engine[i + DID_NOT_COMPLETE.len()..];
    match at.and_then(|l| Some((l, l.ranges.first()?))) {
        Some((l, r)) => format!(
            "{}:{}: step {step} failed: {outcome}",
            l.filename, r.start_line
        ),
        None => format!("step {step} failed: {outcome}"),
    }
}

/// The progress name the frontend gave the op `digest`.
fn step_name<'a>(def: &'a pb::Definition, digest: &str) -> Option<&'a str> {
    def.metadata
        .get(digest)?
        .description
        .get("llb.customname")
        .map(String::as_str)
}

/// The digest, in `def`, of the op the error `details` name.
fn failing_op(def: &pb::Definition, details: &[prost_types::Any]) -> Option<String> {
    let source = def.source.as_ref()?;
    let json = |suffix: &str| -> Option<serde_json::Value> {
        let d = details.iter().find(|d| d.type_url.ends_with(suffix))?;
        serde_json::from_slice(&d.value).ok()
    };
    let by_digest = json(VERTEX_TYPE_SUFFIX)
        .and_then(|v| v.get("digest")?.as_str().map(str::to_owned))
        .filter(|d| source.locations.contains_key(d));
    if by_digest.is_some() {
        return by_digest;
    }
    let failed = json(SOLVE_TYPE_SUFFIX)?;
    let want = Fingerprint::of_json(failed.get("op")?)?;
    let ops = llb_graph::decode_ops(def).ok()?;
    ops.ops
        .iter()
        .filter(|(d, _)| source.locations.contains_key(&d.to_string()))
        .find(|(_, op)| Fingerprint::of_op(op).as_ref() == Some(&want))
        .map(|(d, _)| d.to_string())
}

/// The spec ranges of the op `digest` of `def`.
fn location_of(def: &pb::Definition, digest: &str) -> Option<SpecLocation> {
    let source = def.source.as_ref()?;
    let locs = source.locations.get(digest)?;
    let first = locs.locations.first()?;
    let info = source
        .infos
        .get(usize::try_from(first.source_index).ok()?)?;
    let ranges = locs
        .locations
        .iter()
        .filter(|l| l.source_index == first.source_index)
        .flat_map(|l| &l.ranges)
        .map(|r| {
            let (start, end) = (r.start.unwrap_or_default(), r.end.unwrap_or_default());
            let line = |v: i32| u32::try_from(v).unwrap_or(0);
            SourceRange {
                start_line: line(start.line),
                start_char: line(start.character),
                end_line: line(end.line),
                end_char: line(end.character),
            }
        })
        .collect();
    Some(SpecLocation {
        filename: info.filename.clone(),
        data: info.data.clone(),
        ranges,
    })
}

/// What identifies an op apart from its inputs (whose digests the engine may have changed).
#[derive(Debug, PartialEq, Eq)]
enum Fingerprint {
    Exec {
        args: Vec<String>,
        env: Vec<String>,
        cwd: String,
    },
    Source {
        identifier: String,
    },
}

impl Fingerprint {
    fn of_op(op: &pb::Op) -> Option<Self> {
        match op.op.as_ref()? {
            pb::op::Op::Exec(e) => {
                let meta = e.meta.as_ref()?;
                Some(Fingerprint::Exec {
                    args: meta.args.clone(),
                    env: meta.env.clone(),
                    cwd: meta.cwd.clone(),
                })
            }
            pb::op::Op::Source(s) => Some(Fingerprint::Source {
                identifier: s.identifier.clone(),
            }),
            _ => None,
        }
    }

    /// From the op as `errdefs.Solve` carries it (Go's JSON of `pb.Op`).
    fn of_json(op: &serde_json::Value) -> Option<Self> {
        let strings = |v: Option<&serde_json::Value>| -> Vec<String> {
            v.and_then(|v| v.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        if let Some(meta) = op.get("exec").and_then(|e| e.get("meta")) {
            return Some(Fingerprint::Exec {
                args: strings(meta.get("args")),
                env: strings(meta.get("env")),
                cwd: meta
                    .get("cwd")
                    .and_then(|c| c.as_str())
                    .unwrap_or_default()
                    .to_owned(),
            });
        }
        let identifier = op.get("source")?.get("identifier")?.as_str()?;
        Some(Fingerprint::Source {
            identifier: identifier.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_failed_process_is_named_by_its_step_and_spec_line() {
        let script = "/bin/sh -c set -eu\napt-get install -y foo\n";
        let engine = format!("process \"{script}\" did not complete successfully: exit code: 100");
        let at = SpecLocation {
            filename: "node.yaml".into(),
            data: Vec::new(),
            ranges: vec![SourceRange::line(7)],
        };
        let name = "[os 1/1] install packages: foo";
        assert_eq!(
            user_message(&engine, Some(name), Some(&at)),
            "node.yaml:7: step [os 1/1] install packages: foo failed: exit code: 100"
        );
        assert_eq!(
            user_message(&engine, Some(name), None),
            "step [os 1/1] install packages: foo failed: exit code: 100"
        );
        // Without the step, or for another failure, the engine's message stays.
        assert_eq!(user_message(&engine, None, Some(&at)), engine);
        let mismatch = "digest mismatch sha256:aa: sha256:bb";
        assert_eq!(user_message(mismatch, Some(name), Some(&at)), mismatch);
    }

    use llb_graph::{Exec, Meta, SourceMap, SourceRange as Range, State};

    use super::*;

    const SPEC: &str = "os:\n  run:\n    - exit 3\n";

    /// A definition whose last op runs `exit 3`, located at line 3 of the spec.
    fn definition() -> (pb::Definition, String) {
        let map = SourceMap::new("node.yaml", SPEC, "YAML");
        let range = Range {
            start_line: 3,
            start_char: 6,
            end_line: 3,
            end_char: 12,
        };
        let st = State::image("debian:bookworm")
            .run(
                Exec::new(["/bin/sh", "-ec", "exit 3"]).env("PATH", "/bin"),
                Meta::named("[os 1/1] run: exit 3").at(&map, range),
            )
            .root();
        let def = st.marshal().unwrap();
        let digest = def
            .source
            .as_ref()
            .unwrap()
            .locations
            .keys()
            .next()
            .unwrap()
            .clone();
        (def, digest)
    }

    fn any(suffix: &str, json: serde_json::Value) -> prost_types::Any {
        prost_types::Any {
            type_url: format!("github.com/moby/buildkit/{suffix}"),
            value: serde_json::to_vec(&json).unwrap(),
        }
    }

    fn line_3(loc: Option<SpecLocation>) {
        let loc = loc.expect("a location");
        assert_eq!(loc.filename, "node.yaml");
        assert_eq!(loc.data, SPEC.as_bytes());
        assert_eq!(
            loc.ranges,
            vec![SourceRange {
                start_line: 3,
                start_char: 6,
                end_line: 3,
                end_char: 12
            }]
        );
    }

    #[test]
    fn the_failing_vertex_is_found_by_its_digest() {
        let (def, digest) = definition();
        line_3(locate(
            &def,
            &[any(
                "errdefs.Vertex+json",
                serde_json::json!({ "digest": digest }),
            )],
        ));
    }

    #[test]
    fn a_vertex_the_engine_renamed_is_found_by_the_op_it_describes() {
        let (def, _) = definition();
        let other = "sha256:547b11b3b8334fdefcd36c185e89b3573e1685c1ee5337698e84a3e9625f8426";
        let op = serde_json::json!({
            "inputs": [{ "digest": "sha256:f505d751c4ab37f8ba8f4faa0dfa5376b6c71a685357a0bd635c13e4a879d3c4" }],
            "exec": { "meta": { "args": ["/bin/sh", "-ec", "exit 3"], "env": ["PATH=/bin"], "cwd": "/" } }
        });
        let details = [
            any(
                "errdefs.Vertex+json",
                serde_json::json!({ "digest": other }),
            ),
            any("errdefs.Solve+json", serde_json::json!({ "op": op })),
        ];
        line_3(locate(&def, &details));
        // A different command is not taken for it.
        let mut op = op;
        op["exec"]["meta"]["args"][2] = "exit 4".into();
        let details = [
            any(
                "errdefs.Vertex+json",
                serde_json::json!({ "digest": other }),
            ),
            any("errdefs.Solve+json", serde_json::json!({ "op": op })),
        ];
        assert_eq!(locate(&def, &details), None);
    }

    /// A generated step runs its script from a mounted file; its short command line names the
    /// step, and that is what finds it: the package install of a compiled spec, with and
    /// without `SOURCE_DATE_EPOCH` (whose wrapper is on the command line too).
    #[test]
    fn a_generated_step_is_found_by_its_short_command_line() {
        let text = include_str!("../../../testdata/trust/missing-package.yaml");
        let spec =
            nodestamp_spec::load("missing-package.yaml", text.as_bytes(), &Default::default())
                .unwrap()
                .spec;
        let other = "sha256:547b11b3b8334fdefcd36c185e89b3573e1685c1ee5337698e84a3e9625f8426";
        for epoch in [None, Some(1_700_000_000)] {
            let opts = nodestamp_compile::CompileOptions {
                source_date_epoch: epoch,
                ..Default::default()
            };
            let def = nodestamp_compile::compile(&spec, text.as_bytes(), &opts)
                .os
                .marshal()
                .unwrap();
            let ops = llb_graph::decode_ops(&def).unwrap().ops;
            let meta = ops
                .values()
                .find_map(|op| match &op.op {
                    Some(pb::op::Op::Exec(e)) => e.meta.clone(),
                    _ => None,
                })
                .unwrap();
            let line = meta.args.join(" ");
            assert!(
                line.ends_with("/dev/nodestamp/step install packages: nodestamp-no-such-package")
                    && !line.contains('\n'),
                "{line}"
            );
            let op = serde_json::json!({
                "exec": { "meta": { "args": meta.args, "env": meta.env, "cwd": meta.cwd } }
            });
            let details = [
                any(
                    "errdefs.Vertex+json",
                    serde_json::json!({ "digest": other }),
                ),
                any("errdefs.Solve+json", serde_json::json!({ "op": op })),
            ];
            let loc = locate(&def, &details).expect("the package step");
            assert_eq!(loc.ranges[0].start_line, 7, "{epoch:?}");
        }
    }

    #[test]
    fn an_error_with_its_source_keeps_it_and_its_details() {
        let (def, digest) = definition();
        let source = any("errdefs.Source+json", serde_json::json!({ "ranges": [] }));
        let vertex = any(
            "errdefs.Vertex+json",
            serde_json::json!({ "digest": digest }),
        );
        let status = rpc::Status {
            code: 2,
            message: "process did not complete successfully: exit code: 3".into(),
            details: vec![vertex.clone(), source.clone()],
        };
        let st = tonic::Status::with_details(
            tonic::Code::Unknown,
            status.message.clone(),
            status.encode_to_vec().into(),
        );
        let err = solve_failure(&def, &st);
        assert_eq!(
            err.message, status.message,
            "not a process message: unchanged"
        );
        assert_eq!(err.location, None, "BuildKit's own source is not repeated");
        let out = err.to_status();
        assert_eq!(out.details, vec![vertex.clone(), source]);

        // Without BuildKit's source, ours is added after the engine's details.
        let status = rpc::Status {
            details: vec![vertex.clone()],
            ..status
        };
        let st = tonic::Status::with_details(
            tonic::Code::Unknown,
            status.message.clone(),
            status.encode_to_vec().into(),
        );
        let out = solve_failure(&def, &st).to_status();
        assert_eq!(out.details.len(), 2);
        assert_eq!(out.details[0], vertex);
        assert_eq!(out.details[1].type_url, super::super::SOURCE_TYPE_URL);
    }
}
