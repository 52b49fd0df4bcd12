//! Answers to `docker buildx build --call …` (BuildKit "subrequests"): the frontend option
//! `requestid` names the question, and the answer is a result without a filesystem whose
//! metadata holds `result.json` (the data, in the shape buildx decodes), `result.txt` (the same
//! as text, printed by clients that do not know the shape) and `version`.
//!
//! | `--call` | `requestid` | answer |
//! |---|---|---|
//! | `subrequests.describe` | `frontend.subrequests.describe` | the questions nodestamp answers |
//! | `targets` | `frontend.targets` | every target, the default marked, and whether this spec can build it |
//! | `outline` | `frontend.outline` | every `${VAR}` of the spec with its default and the lines using it, and the build secrets |
//! | `check` (`--check`) | `frontend.lint` | the spec's errors and warnings with their ranges; `result.statuscode` 1 when there are any |
//!
//! Everything here is a pure function of the spec's bytes and the build args.

use std::collections::BTreeMap;

use crate::proto::moby::buildkit::v1::frontend as gw;
use base64::Engine as _;
use llb_graph::pb;
use serde::Serialize;

use crate::build::{diagnostics_error, target_for};
use crate::gateway::{Bridge, Caps, FrontendError, SpecFile};
use nodestamp_compile::{self as compile, Target};
use nodestamp_spec::diag::{Diagnostic, Rule, Span};
use nodestamp_spec::{self as spec, Spec, Survey};

/// The frontend option naming the question.
pub const REQUEST_ID: &str = "requestid";
pub const DESCRIBE: &str = "frontend.subrequests.describe";
pub const TARGETS: &str = "frontend.targets";
pub const OUTLINE: &str = "frontend.outline";
pub const LINT: &str = "frontend.lint";

/// The version of every answer's shape (BuildKit's `targets`, `outline` and `lint` 1.0.0);
/// a client that knows an older version prints `result.txt` instead.
const VERSION: &str = "1.0.0";

/// The language BuildKit's source excerpts are labelled with.
const LANGUAGE: &str = "YAML";

/// Exporter metadata of an answer.
pub type Metadata = BTreeMap<String, Vec<u8>>;

/// A question nodestamp answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    Describe,
    Targets,
    Outline,
    Lint,
}

impl Request {
    /// The question in the `requestid` option; an unknown one is an error naming those
    /// nodestamp answers.
    pub fn parse(id: &str) -> Result<Request, FrontendError> {
        match id {
            DESCRIBE => Ok(Request::Describe),
            TARGETS => Ok(Request::Targets),
            OUTLINE => Ok(Request::Outline),
            LINT => Ok(Request::Lint),
            other => Err(FrontendError::new(format!(
                "unsupported request {other}: nodestamp answers --call {}",
                DEFINITIONS
                    .iter()
                    .map(|d| d.call)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }
}

/// What `subrequests.describe` says about one question.
struct Definition {
    name: &'static str,
    /// The `--call` value that asks it.
    call: &'static str,
    description: &'static str,
    opts: &'static [(&'static str, &'static str)],
    metadata: &'static [&'static str],
}

const DEFINITIONS: &[Definition] = &[
    Definition {
        name: OUTLINE,
        call: "outline",
        description: "List the build args (${VAR}) and secrets of the spec",
        opts: &[("target", "Target build stage")],
        metadata: &["result.json", "result.txt"],
    },
    Definition {
        name: TARGETS,
        call: "targets",
        description: "List the targets of the spec and what each builds",
        opts: &[],
        metadata: &["result.json", "result.txt"],
    },
    Definition {
        name: LINT,
        call: "check",
        description: "Check the spec: its errors and warnings",
        opts: &[],
        metadata: &["result.json", "result.txt", "result.statuscode"],
    },
    Definition {
        name: DESCRIBE,
        call: "subrequests.describe",
        description: "List available subrequest types",
        opts: &[],
        metadata: &["result.json", "result.txt"],
    },
];

// ---- JSON shapes (BuildKit's frontend/subrequests types, as Go's encoding/json writes them) --

#[derive(Serialize)]
struct RequestJson {
    name: &'static str,
    version: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
    description: &'static str,
    opts: Vec<NamedJson>,
    inputs: Vec<NamedJson>,
    metadata: Vec<NamedJson>,
    refs: Vec<NamedJson>,
}

#[derive(Serialize)]
struct NamedJson {
    name: &'static str,
    description: &'static str,
}

/// `pb.Location`: ranges in source `sourceIndex` of the answer's sources.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
struct LocationJson {
    source_index: i32,
    ranges: Vec<RangeJson>,
}

#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq)]
struct RangeJson {
    start: PositionJson,
    end: PositionJson,
}

/// 1-based line, 0-based character.
#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq)]
struct PositionJson {
    line: i32,
    character: i32,
}

/// `pb.SourceInfo`.
#[derive(Serialize)]
struct SourceInfoJson {
    filename: String,
    #[serde(serialize_with = "base64_bytes")]
    data: Vec<u8>,
    language: &'static str,
}

#[derive(Serialize)]
struct TargetListJson {
    targets: Vec<TargetJson>,
    #[serde(serialize_with = "base64_list")]
    sources: Vec<Vec<u8>>,
}

#[derive(Serialize)]
struct TargetJson {
    name: &'static str,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    default: bool,
    description: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    location: Option<LocationJson>,
}

#[derive(Serialize)]
struct OutlineJson {
    name: String,
    description: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    args: Vec<ArgJson>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    secrets: Vec<SecretJson>,
    #[serde(serialize_with = "base64_list")]
    sources: Vec<Vec<u8>>,
}

#[derive(Serialize)]
struct ArgJson {
    name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    description: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    value: String,
    location: LocationJson,
}

#[derive(Serialize)]
struct SecretJson {
    name: String,
    required: bool,
    location: LocationJson,
}

#[derive(Serialize)]
struct LintJson {
    warnings: Vec<WarningJson>,
    sources: Vec<SourceInfoJson>,
    #[serde(rename = "buildError", skip_serializing_if = "Option::is_none")]
    build_error: Option<BuildErrorJson>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WarningJson {
    rule_name: &'static str,
    description: &'static str,
    detail: String,
    location: LocationJson,
}

#[derive(Serialize)]
struct BuildErrorJson {
    message: String,
    location: LocationJson,
}

fn base64_bytes<S: serde::Serializer>(data: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(data))
}

fn base64_list<S: serde::Serializer>(list: &[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(
        list.iter()
            .map(|d| base64::engine::general_purpose::STANDARD.encode(d)),
    )
}

fn range_json(span: Span) -> RangeJson {
    let r = compile::range(span);
    let clamp = |v: u32| i32::try_from(v).unwrap_or(i32::MAX);
    RangeJson {
        start: PositionJson {
            line: clamp(r.start_line),
            character: clamp(r.start_char),
        },
        end: PositionJson {
            line: clamp(r.end_line),
            character: clamp(r.end_char),
        },
    }
}

fn location(spans: impl IntoIterator<Item = Span>) -> LocationJson {
    LocationJson {
        source_index: 0,
        ranges: spans.into_iter().map(range_json).collect(),
    }
}

fn answer(json: &impl Serialize, text: String) -> Metadata {
    let json = serde_json::to_vec_pretty(json).expect("plain structs always serialize");
    BTreeMap::from([
        ("result.json".to_owned(), json),
        ("result.txt".to_owned(), text.into_bytes()),
        ("version".to_owned(), VERSION.as_bytes().to_vec()),
    ])
}

/// Rows as Go's `tabwriter` aligns them: every cell but a row's last padded to its column's
/// width plus `padding` spaces.
fn table(rows: &[Vec<String>], padding: usize) -> String {
    let mut widths: Vec<usize> = Vec::new();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(row.len().saturating_sub(1)) {
            let w = cell.chars().count();
            match widths.get_mut(i) {
                Some(x) => *x = (*x).max(w),
                None => widths.push(w),
            }
        }
    }
    let mut out = String::new();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            out.push_str(cell);
            if i + 1 < row.len() {
                let pad = widths[i] + padding - cell.chars().count();
                out.push_str(&" ".repeat(pad));
            }
        }
        out.push('\n');
    }
    out
}

// ---- describe --------------------------------------------------------------------------------

/// `frontend.subrequests.describe`: the questions nodestamp answers.
pub fn describe() -> Metadata {
    let list: Vec<RequestJson> = DEFINITIONS
        .iter()
        .map(|d| RequestJson {
            name: d.name,
            version: VERSION,
            kind: "rpc",
            description: d.description,
            opts: d
                .opts
                .iter()
                .map(|(name, description)| NamedJson { name, description })
                .collect(),
            inputs: Vec::new(),
            metadata: d
                .metadata
                .iter()
                .map(|name| NamedJson {
                    name,
                    description: "",
                })
                .collect(),
            refs: Vec::new(),
        })
        .collect();
    let mut rows = vec![vec![
        "NAME".to_owned(),
        "VERSION".to_owned(),
        "DESCRIPTION".to_owned(),
    ]];
    rows.extend(DEFINITIONS.iter().map(|d| {
        vec![
            d.name.trim_start_matches("frontend.").to_owned(),
            VERSION.to_owned(),
            d.description.to_owned(),
        ]
    }));
    answer(&list, table(&rows, 1))
}

// ---- targets ---------------------------------------------------------------------------------

/// What a target builds, for `--call targets` and `--call outline`. `spec` gives the file
/// names and the formats of `disk`.
fn target_description(name: &str, spec: &Spec) -> String {
    let formats = spec
        .disk
        .as_ref()
        .map(|d| {
            d.formats
                .iter()
                .map(|f| f.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    match name {
        "node" => {
            "The node image: the OS and Kubernetes layers merged, with build provenance".to_owned()
        }
        "os" => "The OS layer alone".to_owned(),
        "kubernetes" => "The Kubernetes layer alone, built from scratch".to_owned(),
        "disk" if formats.is_empty() => "A bootable disk in each format of disk.formats".to_owned(),
        "disk" => format!("A bootable disk in each format of disk.formats ({formats})"),
        "sysext" => format!(
            "The Kubernetes layer as a systemd system extension, {}.raw",
            spec.name
        ),
        "test" => "Runs the spec's tests: against the node and reports each check".to_owned(),
        "containerdisk" => format!(
            "KubeVirt containerDisk: an image with the qcow2 at /disk/{}.qcow2 (uid/gid 107)",
            spec.name
        ),
        "gce" => format!(
            "The disk for Compute Engine's image import, {}.gce.tar.gz",
            spec.name
        ),
        "ova" => format!("The disk as an OVF package for vSphere, {}.ova", spec.name),
        format => format!("A bootable disk of the node, {}.{format}", spec.name),
    }
}

/// Why `spec` cannot build the target `name`, in a few words.
fn missing_for(name: &str) -> &'static str {
    match name {
        "kubernetes" | "sysext" => "needs a kubernetes: section",
        "disk" => "needs disk.formats",
        "test" => "needs a tests: section",
        _ => "not buildable from this spec",
    }
}

/// The part of the spec a target builds from, if it has one.
fn target_span(name: &str, spec: &Spec) -> Option<Span> {
    match name {
        "os" => Some(spec.os.span),
        "kubernetes" | "sysext" => spec.kubernetes.as_ref().map(|k| k.span),
        "disk" => spec.disk.as_ref().map(|d| d.span),
        "test" => spec.tests.as_ref().map(|t| t.span),
        _ => None,
    }
    .filter(|s| s.start.line > 0)
}

/// `frontend.targets`: every target, the default marked, and for those `spec` cannot build,
/// what they need. Fails only when the spec is not YAML (the error has its lines).
pub fn targets(
    filename: &str,
    source: &[u8],
    build_args: &BTreeMap<String, String>,
) -> Result<Metadata, FrontendError> {
    let survey = survey(filename, source, build_args)?;
    let spec = &survey.spec;
    let targets: Vec<TargetJson> = Target::NAMES
        .iter()
        .map(|name| {
            let mut description = target_description(name, spec);
            if target_for(name, spec, filename).is_err() {
                description.push_str(&format!(" (not for this spec: {})", missing_for(name)));
            }
            TargetJson {
                name,
                default: *name == "node",
                description,
                location: target_span(name, spec).map(|s| location([s])),
            }
        })
        .collect();
    let mut rows = vec![vec!["TARGET".to_owned(), "DESCRIPTION".to_owned()]];
    rows.extend(targets.iter().map(|t| {
        let name = if t.default {
            format!("{} (default)", t.name)
        } else {
            t.name.to_owned()
        };
        vec![name, t.description.clone()]
    }));
    let list = TargetListJson {
        targets,
        sources: vec![source.to_vec()],
    };
    Ok(answer(&list, table(&rows, 1)))
}

// ---- outline ---------------------------------------------------------------------------------

/// One build arg of the outline: every use of `${name}`.
struct Arg {
    name: String,
    defaults: Vec<String>,
    required: bool,
    uses: Vec<(String, Span)>,
}

/// `frontend.outline`: every `${VAR}` the spec reads, with its default and the spec lines
/// using it, and the build secrets the package and `run` steps take. `target` names the
/// target asked about (empty for the default). Fails only when the spec is not YAML.
pub fn outline(
    filename: &str,
    source: &[u8],
    build_args: &BTreeMap<String, String>,
    target: &str,
) -> Result<Metadata, FrontendError> {
    let survey = survey(filename, source, build_args)?;
    let spec = &survey.spec;
    let mut args: Vec<Arg> = Vec::new();
    for u in &survey.uses {
        let i = match args.iter().position(|a| a.name == u.name) {
            Some(i) => i,
            None => {
                args.push(Arg {
                    name: u.name.clone(),
                    defaults: Vec::new(),
                    required: false,
                    uses: Vec::new(),
                });
                args.len() - 1
            }
        };
        let arg = &mut args[i];
        match &u.default {
            Some(d) if !arg.defaults.contains(d) => arg.defaults.push(d.clone()),
            Some(_) => {}
            None => arg.required = true,
        }
        if !arg.uses.iter().any(|(_, s)| *s == u.span) {
            arg.uses.push((u.path.clone(), u.span));
        }
    }
    let args: Vec<ArgJson> = args
        .into_iter()
        .map(|a| {
            let used = a
                .uses
                .iter()
                .map(|(path, span)| format!("{path} (line {})", span.start.line))
                .collect::<Vec<_>>()
                .join(", ");
            let description = if a.required && !build_args.contains_key(&a.name) {
                format!("required; used by {used}")
            } else {
                format!("used by {used}")
            };
            ArgJson {
                name: a.name,
                description,
                value: a.defaults.join(" | "),
                location: location(a.uses.iter().map(|(_, s)| *s)),
            }
        })
        .collect();

    let mut secrets: Vec<SecretJson> = Vec::new();
    let all = spec
        .os
        .build
        .secrets
        .iter()
        .chain(spec.os.run.iter().flat_map(|r| r.secrets.iter()));
    for s in all {
        match secrets.iter_mut().find(|x| x.name == s.id) {
            Some(x) => x.location.ranges.push(range_json(s.span)),
            None => secrets.push(SecretJson {
                name: s.id.clone(),
                required: true,
                location: location([s.span]),
            }),
        }
    }

    let name = if target.is_empty() { "node" } else { target };
    let description = if Target::NAMES.contains(&name) {
        target_description(name, spec)
    } else {
        String::new()
    };
    let mut text = table(
        &[
            vec!["TARGET:".to_owned(), name.to_owned()],
            vec!["DESCRIPTION:".to_owned(), description.clone()],
        ],
        1,
    );
    text.push('\n');
    if !args.is_empty() {
        let mut rows = vec![vec![
            "BUILD ARG".to_owned(),
            "VALUE".to_owned(),
            "DESCRIPTION".to_owned(),
        ]];
        rows.extend(
            args.iter()
                .map(|a| vec![a.name.clone(), a.value.clone(), a.description.clone()]),
        );
        text.push_str(&table(&rows, 3));
        text.push('\n');
    }
    if !secrets.is_empty() {
        let mut rows = vec![vec!["SECRET".to_owned(), "REQUIRED".to_owned()]];
        rows.extend(
            secrets
                .iter()
                .map(|s| vec![s.name.clone(), s.required.to_string()]),
        );
        text.push_str(&table(&rows, 3));
        text.push('\n');
    }
    let outline = OutlineJson {
        name: name.to_owned(),
        description,
        args,
        secrets,
        sources: vec![source.to_vec()],
    };
    Ok(answer(&outline, text))
}

// ---- lint ------------------------------------------------------------------------------------

/// `frontend.lint` (`--call check`): the spec's warnings with their rule and ranges, and its
/// errors as the build error (the message a build would fail with, and every error's range).
/// `result.statuscode` is 1 when there is any, as for a Dockerfile, so `--check` fails.
/// `target` (empty for the default) is checked too.
pub fn lint(
    filename: &str,
    source: &[u8],
    build_args: &BTreeMap<String, String>,
    target: &str,
) -> Metadata {
    let (diagnostics, target_error) = match spec::survey(filename, source, build_args) {
        Ok(s) => {
            let target_error = if s.diagnostics.has_errors() {
                None
            } else {
                target_for(target, &s.spec, filename).err()
            };
            (s.diagnostics, target_error)
        }
        Err(d) => (d, None),
    };
    let warnings: Vec<WarningJson> = diagnostics
        .warnings()
        .map(|w| {
            let rule = rule_of(w);
            WarningJson {
                rule_name: rule.name,
                description: rule.description,
                detail: detail(w),
                location: location(w.span),
            }
        })
        .collect();
    let build_error = match target_error {
        Some(e) => Some(BuildErrorJson {
            message: e.message,
            location: location([]),
        }),
        None => diagnostics.has_errors().then(|| BuildErrorJson {
            message: diagnostics_error(filename, source, &diagnostics).message,
            location: location(diagnostics.errors().filter_map(|d| d.span)),
        }),
    };
    // What buildx ≥ 0.15 prints from result.json; older clients print this text as it is.
    let mut text = match warnings.len() {
        0 if build_error.is_none() => "Check complete, no warnings found.\n".to_owned(),
        0 => String::new(),
        1 => "Check complete, 1 warning has been found!\n".to_owned(),
        n => format!("Check complete, {n} warnings have been found!\n"),
    };
    for (w, json) in diagnostics.warnings().zip(&warnings) {
        text.push_str(&format!("\nWARNING: {}\n{}\n", json.rule_name, json.detail));
        if let Some(span) = w.span {
            text.push_str(&excerpt(filename, source, span));
        }
    }
    if let Some(e) = &build_error {
        text.push_str(&e.message);
        text.push('\n');
        if let (Some(first), Some(last)) = (
            diagnostics.errors().filter_map(|d| d.span).next(),
            diagnostics.errors().filter_map(|d| d.span).last(),
        ) {
            text.push_str(&excerpt(
                filename,
                source,
                Span {
                    start: first.start,
                    end: last.end,
                },
            ));
        }
    }
    let status = if warnings.is_empty() && build_error.is_none() {
        "0"
    } else {
        "1"
    };
    let result = LintJson {
        warnings,
        sources: vec![SourceInfoJson {
            filename: filename.to_owned(),
            data: source.to_vec(),
            language: LANGUAGE,
        }],
        build_error,
    };
    let mut md = answer(&result, text);
    md.insert("result.statuscode".to_owned(), status.as_bytes().to_vec());
    md
}

/// The rule of a warning; warnings without one share a generic rule.
fn rule_of(w: &Diagnostic) -> &'static Rule {
    const GENERIC: Rule = Rule {
        name: "SpecWarning",
        description: "A spec warning",
    };
    w.rule.and_then(Rule::named).unwrap_or(&GENERIC)
}

/// A warning's text for the user: the key path, the message and the help.
fn detail(w: &Diagnostic) -> String {
    let mut out = String::new();
    if !w.path.is_empty() {
        out.push_str(&w.path);
        out.push_str(": ");
    }
    out.push_str(&w.message);
    if let Some(help) = &w.help {
        out.push_str(&format!(" ({help})"));
    }
    out
}

/// The lines around `span` as BuildKit prints a source excerpt: a header with the first line,
/// up to two lines of context on each side (four for a single line) and `>>>` on the lines in
/// the span.
fn excerpt(filename: &str, source: &[u8], span: Span) -> String {
    let text = String::from_utf8_lossy(source);
    let lines: Vec<&str> = text.split('\n').collect();
    let (first, last) = (
        span.start.line as usize,
        span.end.line.max(span.start.line) as usize,
    );
    if first < 1 || first > lines.len() {
        return String::new();
    }
    let (mut start, mut end) = (first, last.min(lines.len()));
    let pad = if start == end { 4 } else { 2 };
    let mut p = 0;
    while p < pad {
        if start > 1 {
            start -= 1;
            p += 1;
        }
        if end != lines.len() {
            end += 1;
            p += 1;
        }
        p += 1;
    }
    let mut out = format!("{filename}:{first}\n--------------------\n");
    for (i, line) in lines.iter().enumerate().take(end).skip(start - 1) {
        let n = i + 1;
        let mark = if (first..=last).contains(&n) {
            ">>>"
        } else {
            "   "
        };
        out.push_str(&format!(" {n:>3} | {mark} {line}\n"));
    }
    out.push_str("--------------------\n");
    out
}

fn survey(
    filename: &str,
    source: &[u8],
    build_args: &BTreeMap<String, String>,
) -> Result<Survey, FrontendError> {
    spec::survey(filename, source, build_args).map_err(|d| diagnostics_error(filename, source, &d))
}

// ---- warnings during a build ----------------------------------------------------------------

/// The `Warn` call that shows spec warning `w` in the build output: on the progress line of
/// `vertex` (the one that loaded the spec) as `Rule: path: message (line N)`, with the rule's
/// description and the help as detail and the spec lines (`--debug` prints them).
pub fn warn_request(
    vertex: &str,
    filename: &str,
    source: &[u8],
    w: &Diagnostic,
) -> gw::WarnRequest {
    let rule = rule_of(w);
    let mut short = format!("{}: ", rule.name);
    if !w.path.is_empty() {
        short.push_str(&format!("{}: ", w.path));
    }
    short.push_str(&w.message);
    if let Some(span) = w.span {
        short.push_str(&format!(" (line {})", span.start.line));
    }
    let mut detail = vec![rule.description.as_bytes().to_vec()];
    if let Some(help) = &w.help {
        detail.push(help.as_bytes().to_vec());
    }
    gw::WarnRequest {
        digest: vertex.to_owned(),
        level: 1,
        short: short.into_bytes(),
        detail,
        url: String::new(),
        info: Some(pb::SourceInfo {
            filename: filename.to_owned(),
            data: source.to_vec(),
            definition: None,
            language: LANGUAGE.to_owned(),
        }),
        ranges: w
            .span
            .map(|s| {
                let r = range_json(s);
                pb::Range {
                    start: Some(pb::Position {
                        line: r.start.line,
                        character: r.start.character,
                    }),
                    end: Some(pb::Position {
                        line: r.end.line,
                        character: r.end.character,
                    }),
                }
            })
            .into_iter()
            .collect(),
    }
}

/// The gateway cap that says the engine shows `Warn` calls (BuildKit 0.10 and newer).
pub const CAP_WARNINGS: &str = "gateway.warnings";

/// Shows the spec's warnings in the build output: with `Warn` on engines that have the
/// [`CAP_WARNINGS`] cap, else (or when the call fails) on stderr, which the engine writes to
/// its log, saying so.
pub async fn show_warnings(bridge: &Bridge, caps: &Caps, spec: &SpecFile, warnings: &[Diagnostic]) {
    let mut shown = caps.has_frontend(CAP_WARNINGS);
    for w in warnings {
        if shown {
            let req = warn_request(&spec.vertex, &spec.filename, &spec.data, w);
            if let Err(e) = bridge.warn(req).await {
                eprintln!("nodestamp-frontend: {e}");
                shown = false;
            }
        }
        if !shown {
            eprintln!("nodestamp-frontend: warning: {}", w.one_line());
        }
    }
    if !warnings.is_empty() && !caps.has_frontend(CAP_WARNINGS) {
        eprintln!(
            "nodestamp-frontend: this BuildKit cannot show frontend warnings in the build output \
             (no {CAP_WARNINGS} capability, BuildKit < 0.10): they are only in this log; \
             `docker buildx build --check` or `nodestamp check` shows them"
        );
    }
}

#[cfg(test)]
mod tests;
