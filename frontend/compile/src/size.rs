//! The one limit a spec's size still meets in the engine: BuildKit takes the build definition
//! in one gRPC message of at most 4 MiB. Large inline contents do not count (they travel in
//! the spec file, see [`crate::inline`]); what remains grows by about a hundred bytes
//! per file, unit or user, plus `run` scripts and other texts written into the definition.
//! [`check`] runs in the frontend before it talks to the engine and in `nodestamp check`, and
//! points at the part of the spec that makes most of the definition.

use std::collections::BTreeMap;

use crate::inline::{self, Layer};
use crate::{CompileOptions, Target, compile_target, provenance::BuildInfo};
use nodestamp_spec::diag::{Diagnostic, Span};
use nodestamp_spec::{Contents, Spec, Storage, Systemd};

/// gRPC's default message size in BuildKit's server.
pub const GRPC_LIMIT: usize = 4 * 1024 * 1024;

/// The largest definition nodestamp hands BuildKit: the gRPC limit less room for the rest of
/// the request.
pub const DEFINITION_LIMIT: usize = GRPC_LIMIT - 64 * 1024;

/// Definition bytes per entry beyond its texts (the action, its options, the path again).
const PER_ENTRY: usize = 64;

/// One part of the spec and the definition bytes it makes, roughly.
#[derive(Debug)]
struct Part {
    path: String,
    span: Option<Span>,
    bytes: usize,
}

/// Each entry that writes text into the definition, with its share.
fn parts(spec: &Spec, extracted: &dyn Fn(Layer) -> bool) -> Vec<(String, Vec<Part>)> {
    let mut sections = Vec::new();
    let storage = |prefix: &str, s: &Storage, ex: bool| {
        let files = s
            .files
            .iter()
            .enumerate()
            .map(|(i, f)| Part {
                path: format!("{prefix}.storage.files[{i}]"),
                span: Some(f.span),
                // Written by the inline steps: nothing in the definition but its spec lines.
                bytes: match &f.contents {
                    Contents::Inline(_) if ex => 8,
                    Contents::Inline(t) => PER_ENTRY + 2 * f.path.len() + t.len(),
                    Contents::Local(p) => PER_ENTRY + 2 * (f.path.len() + p.len()) + 200,
                    Contents::Source { url, .. } => {
                        PER_ENTRY + 2 * (f.path.len() + url.len()) + 200
                    }
                },
            })
            .collect();
        (format!("{prefix}.storage.files"), files)
    };
    let units = |prefix: &str, s: &Systemd| {
        let units = s
            .units
            .iter()
            .enumerate()
            .map(|(i, u)| {
                // Unit contents always travel in the definition.
                let mut bytes = PER_ENTRY + 2 * u.name.len();
                bytes += u.contents.as_ref().map_or(0, String::len);
                bytes += u.dropins.iter().map(|d| d.contents.len()).sum::<usize>();
                bytes += u.dropins.len() * PER_ENTRY;
                Part {
                    path: format!("{prefix}.systemd.units[{i}]"),
                    span: Some(u.span),
                    bytes,
                }
            })
            .collect();
        (format!("{prefix}.systemd.units"), units)
    };
    let os = &spec.os;
    sections.push(storage("os", &os.storage, extracted(Layer::Os)));
    sections.push(units("os", &os.systemd));
    let users = os
        .passwd
        .users
        .iter()
        .enumerate()
        .map(|(i, u)| Part {
            path: format!("os.passwd.users[{i}]"),
            span: Some(u.span),
            bytes: 2 * PER_ENTRY
                + u.ssh_authorized_keys.iter().map(String::len).sum::<usize>()
                + u.password_hash.as_ref().map_or(0, String::len),
        })
        .collect();
    sections.push(("os.passwd.users".into(), users));
    let run = os
        .run
        .iter()
        .enumerate()
        .map(|(i, r)| Part {
            path: format!("os.run[{i}]"),
            span: Some(r.span),
            bytes: PER_ENTRY + r.value.len(),
        })
        .collect();
    sections.push(("os.run".into(), run));
    let build_files = os
        .build
        .files
        .iter()
        .enumerate()
        .map(|(i, f)| Part {
            path: format!("os.build.files[{i}]"),
            span: Some(f.span),
            bytes: PER_ENTRY
                + 3 * f.path.len()
                + match &f.contents {
                    Contents::Inline(t) => t.len(),
                    _ => 200,
                },
        })
        .collect();
    sections.push(("os.build.files".into(), build_files));
    if let Some(k) = &spec.kubernetes {
        let ex = extracted(Layer::Kubernetes);
        sections.push(storage("kubernetes", &k.storage, ex));
        sections.push(units("kubernetes", &k.systemd));
    }
    sections
}

fn mib(n: usize) -> String {
    format!("{:.1} MiB", n as f64 / (1024.0 * 1024.0))
}

/// The error when a definition of `size` bytes is over [`DEFINITION_LIMIT`], located at the
/// entry that makes most of it (or, when no entry stands out, at the list that does).
/// `extracted` says which layers read their inline contents from the spec file.
pub fn check(spec: &Spec, size: usize, extracted: &dyn Fn(Layer) -> bool) -> Option<Diagnostic> {
    if size <= DEFINITION_LIMIT {
        return None;
    }
    let sections = parts(spec, extracted);
    let biggest = sections.iter().flat_map(|(_, p)| p).max_by_key(|p| p.bytes);
    let (section, entries) = sections
        .iter()
        .max_by_key(|(_, p)| p.iter().map(|p| p.bytes).sum::<usize>())
        .map(|(name, p)| (name.as_str(), p.as_slice()))
        .unwrap_or(("", &[]));
    let head = format!(
        "the build definition is {} ({size} bytes), over the limit of {DEFINITION_LIMIT} bytes \
         (BuildKit takes at most 4 MiB in one request)",
        mib(size),
    );
    let per_entry = entries
        .iter()
        .map(|p| p.bytes)
        .sum::<usize>()
        .checked_div(entries.len())
        .unwrap_or(0);
    // The first position only: buildx prints every line of the range, and an entry this big
    // has tens of thousands.
    let at = |span: Option<Span>| span.map(|s| Span::at(s.start));
    let d = match biggest {
        Some(p) if p.bytes * 2 > size => Diagnostic::error(
            &spec.file_name,
            &p.path,
            at(p.span),
            format!("{head}; this entry alone makes about {}", mib(p.bytes)),
        )
        .with_help(if p.path.starts_with("os.run") {
            "ship a long script as a file of the build context (an os.storage.files entry with \
             `contents: { local: <path> }`) and run that file"
        } else {
            "put large contents in a file of the build context and name it with \
             `contents: { local: <path> }`: it travels with the context, not in the definition"
        }),
        _ => Diagnostic::error(
            &spec.file_name,
            section,
            at(entries.first().and_then(|p| p.span)),
            format!(
                "{head}; the {} entries of {section} make about {} of it",
                entries.len(),
                mib(entries.iter().map(|p| p.bytes).sum())
            ),
        )
        .with_help(if per_entry > 1024 {
            "move large contents to files of the build context (`contents: { local: <path> }`): \
             they travel with the context, not in the definition"
        } else {
            "each entry adds about a hundred bytes: ship many files as one archive in the build \
             context (a kubernetes component with `extract: true`) or split the spec"
        }),
    };
    Some(d)
}

/// The check `nodestamp check` runs: compiles the spec as the frontend would on an engine that
/// holds the spec file (the node target, with provenance, and the test target when there are
/// tests) and checks the largest definition. Returns its size, and the error when it is over
/// the limit.
pub fn check_offline(spec: &Spec, source: &[u8]) -> (usize, Option<Diagnostic>) {
    let opts = CompileOptions {
        provenance: Some(BuildInfo {
            base_digest: None,
            build_args: BTreeMap::new(),
        }),
        spec_source: Some(inline::SpecSource {
            local_name: "dockerfile".into(),
            attrs: BTreeMap::new(),
            filename: spec.file_name.clone(),
            build_args: BTreeMap::new(),
        }),
        ..CompileOptions::default()
    };
    let mut targets = vec![Target::Node];
    if spec.tests.as_ref().is_some_and(|t| !t.is_empty()) {
        targets.push(Target::Test);
    }
    let mut size = 0;
    for t in &targets {
        let def = match compile_target(spec, source, &opts, t).marshal() {
            Ok(def) => def,
            Err(e) => {
                let d = Diagnostic::error(
                    &spec.file_name,
                    "",
                    None,
                    format!("internal error: cannot marshal the build graph: {e}"),
                );
                return (0, Some(d));
            }
        };
        size = size.max(prost::Message::encoded_len(&def));
    }
    (
        size,
        check(spec, size, &|l| inline::extracted(spec, l, true)),
    )
}
