//! A position-annotated YAML tree built from `saphyr-parser` events.
//!
//! Scalars keep their text exactly as the parser delivered it (no type resolution: `0644` stays
//! `"0644"`, `1.30` stays `"1.30"`) and their style, so the decoder decides what a value means
//! per field. The builder enforces the limits that keep hostile input cheap: input size, nesting
//! depth, and a node budget that bounds alias expansion (billion laughs). Duplicate keys are
//! reported and the later entry dropped; everything else that is wrong with the YAML itself is
//! fatal, because the parser cannot continue past it.

use std::collections::HashMap;

use saphyr_parser::{Event, Marker, Parser, ScalarStyle};

use super::check::Shown;
use crate::diag::{Diagnostic, Pos, Span};

/// Largest spec accepted, in bytes.
pub const MAX_SIZE: usize = 10 * 1024 * 1024;
/// Deepest nesting of sequences and mappings accepted.
pub const MAX_DEPTH: usize = 64;
/// Most nodes a document may hold after alias expansion.
pub const MAX_NODES: usize = 1_000_000;

#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub span: Span,
    pub kind: Kind,
    /// Nodes in this subtree, itself included (for the alias budget).
    pub size: usize,
}

#[derive(Debug, Clone)]
pub(crate) enum Kind {
    Scalar(Scalar),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

#[derive(Debug, Clone)]
pub(crate) struct Scalar {
    /// The scalar's content after YAML unescaping/folding, without any type resolution.
    pub text: String,
    pub style: ScalarStyle,
    /// A `!!str`-style tag, as `handle` + `suffix` (e.g. `tag:yaml.org,2002:str`).
    pub tag: Option<String>,
}

impl Scalar {
    /// `~`, `null`, or nothing at all, written plain.
    pub fn is_null(&self) -> bool {
        self.style == ScalarStyle::Plain
            && self.tag.is_none()
            && matches!(self.text.as_str(), "" | "~" | "null" | "Null" | "NULL")
    }
}

impl Node {
    /// What the node is, for "expected …, got …" messages.
    pub fn describe(&self) -> String {
        match &self.kind {
            Kind::Scalar(s) if s.is_null() => "null".into(),
            Kind::Scalar(s) => format!("{}", Shown(&s.text)),
            Kind::Seq(_) => "a list".into(),
            Kind::Map(_) => "a mapping".into(),
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(&self.kind, Kind::Scalar(s) if s.is_null())
    }
}

/// Converts the parser's character indices into byte offsets, cheaply for the (mostly
/// monotonic) order in which events arrive.
struct Offsets<'a> {
    text: &'a str,
    char_idx: usize,
    byte_idx: usize,
}

impl Offsets<'_> {
    fn byte(&mut self, char_idx: usize) -> usize {
        while self.char_idx < char_idx {
            match self.text[self.byte_idx..].chars().next() {
                Some(c) => {
                    self.byte_idx += c.len_utf8();
                    self.char_idx += 1;
                }
                None => break,
            }
        }
        while self.char_idx > char_idx {
            match self.text[..self.byte_idx].chars().next_back() {
                Some(c) => {
                    self.byte_idx -= c.len_utf8();
                    self.char_idx -= 1;
                }
                None => break,
            }
        }
        self.byte_idx
    }

    fn pos(&mut self, m: &Marker) -> Pos {
        Pos {
            line: u32::try_from(m.line()).unwrap_or(u32::MAX),
            col: u32::try_from(m.col() + 1).unwrap_or(u32::MAX),
            offset: self.byte(m.index()),
        }
    }

    fn span(&mut self, s: &saphyr_parser::Span) -> Span {
        Span {
            start: self.pos(&s.start),
            end: self.pos(&s.end),
        }
    }
}

/// Turns bytes into UTF-8 text, or says why not.
// A fatal error ends loading, so the large `Err` costs nothing that matters.
#[allow(clippy::result_large_err)]
pub(crate) fn decode_utf8<'a>(file: &str, bytes: &'a [u8]) -> Result<&'a str, Diagnostic> {
    if bytes.len() > MAX_SIZE {
        return Err(Diagnostic::error(
            file,
            "",
            None,
            format!(
                "the spec is {} bytes; specs larger than {} MiB are not accepted",
                bytes.len(),
                MAX_SIZE / (1024 * 1024)
            ),
        )
        .with_help("keep large contents in the build context and refer to them with `local:`"));
    }
    std::str::from_utf8(bytes).map_err(|e| {
        let good = &bytes[..e.valid_up_to()];
        // The prefix is valid UTF-8 by construction.
        let prefix = std::str::from_utf8(good).unwrap_or("");
        let line = prefix.matches('\n').count() + 1;
        let col = prefix.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        let pos = Pos {
            line: u32::try_from(line).unwrap_or(u32::MAX),
            col: u32::try_from(col).unwrap_or(u32::MAX),
            offset: e.valid_up_to(),
        };
        Diagnostic::error(
            file,
            "",
            Some(Span::at(pos)),
            format!(
                "the spec is not valid UTF-8 (invalid byte 0x{:02x})",
                bytes.get(e.valid_up_to()).copied().unwrap_or(0)
            ),
        )
        .with_help("save the file as UTF-8")
    })
}

/// The first tab in the indentation of line `from` (1-based) or of the next line holding more
/// than blanks and a comment, as a one-character span.
fn indentation_tab(text: &str, from: u32) -> Option<Span> {
    let mut offset = 0;
    for (i, line) in text.split('\n').enumerate() {
        let number = u32::try_from(i + 1).unwrap_or(u32::MAX);
        if number >= from {
            let indent = line.len() - line.trim_start_matches([' ', '\t']).len();
            let rest = line[indent..].trim_end_matches('\r');
            if let Some(at) = line[..indent].find('\t') {
                let start = Pos {
                    line: number,
                    col: u32::try_from(at + 1).unwrap_or(u32::MAX),
                    offset: offset + at,
                };
                let end = Pos {
                    col: start.col + 1,
                    offset: start.offset + 1,
                    ..start
                };
                return Some(Span { start, end });
            }
            if number > from && !rest.is_empty() && !rest.starts_with('#') {
                return None;
            }
        }
        offset += line.len() + 1;
    }
    None
}

enum Frame {
    Seq {
        start: Span,
        anchor: usize,
        items: Vec<Node>,
    },
    Map {
        start: Span,
        anchor: usize,
        entries: Vec<(Node, Node)>,
        pending_key: Option<Node>,
    },
}

/// Parses `text` into a single document tree. `Ok(None)` means the document is empty.
/// Duplicate keys go into `diags` (non-fatal); any other problem is the `Err`.
#[allow(clippy::result_large_err)]
pub(crate) fn parse(
    file: &str,
    text: &str,
    diags: &mut Vec<Diagnostic>,
) -> Result<Option<Node>, Diagnostic> {
    let mut offsets = Offsets {
        text,
        char_idx: 0,
        byte_idx: 0,
    };
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchors: HashMap<usize, Node> = HashMap::new();
    let mut root: Option<Node> = None;
    let mut documents = 0usize;
    let mut budget = MAX_NODES;

    for item in Parser::new_from_str(text) {
        let (event, raw_span) = match item {
            Ok(x) => x,
            Err(e) => {
                let mut pos = offsets.pos(e.marker());
                pos.col = pos.col.max(1);
                let mut span = Span::at(pos);
                // The scanner reports an indentation tab where it stopped: at the scalar before
                // it, or just past it. Point at the tab itself.
                let about_tab = |t: &Span| e.info().contains("tab") || t.start.line == pos.line;
                let tab = indentation_tab(text, pos.line).filter(about_tab);
                if let Some(t) = tab {
                    span = t;
                }
                let mut d =
                    Diagnostic::error(file, "", Some(span), format!("invalid YAML: {}", e.info()));
                if e.info().contains("tab") || tab.is_some() {
                    d = d.with_help("YAML does not allow tabs for indentation; indent with spaces");
                }
                return Err(d);
            }
        };
        let span = offsets.span(&raw_span);
        let node = match event {
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => {
                continue;
            }
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    return Err(Diagnostic::error(
                        file,
                        "",
                        Some(span),
                        "the spec holds more than one YAML document; expected exactly one",
                    )
                    .with_help("remove the `---` separator and merge the documents"));
                }
                continue;
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(Diagnostic::error(
                        file,
                        "",
                        Some(span),
                        format!("the spec nests deeper than {MAX_DEPTH} levels"),
                    ));
                }
                stack.push(if matches!(event, Event::SequenceStart(..)) {
                    Frame::Seq {
                        start: span,
                        anchor,
                        items: Vec::new(),
                    }
                } else {
                    Frame::Map {
                        start: span,
                        anchor,
                        entries: Vec::new(),
                        pending_key: None,
                    }
                });
                continue;
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (node, anchor) = match stack.pop() {
                    Some(Frame::Seq {
                        start,
                        anchor,
                        items,
                    }) => (
                        Node {
                            span: Span {
                                start: start.start,
                                end: span.end,
                            },
                            size: 1 + items.iter().map(|n| n.size).sum::<usize>(),
                            kind: Kind::Seq(items),
                        },
                        anchor,
                    ),
                    Some(Frame::Map {
                        start,
                        anchor,
                        entries,
                        ..
                    }) => (
                        Node {
                            span: Span {
                                start: start.start,
                                end: span.end,
                            },
                            size: 1 + entries.iter().map(|(k, v)| k.size + v.size).sum::<usize>(),
                            kind: Kind::Map(entries),
                        },
                        anchor,
                    ),
                    None => continue,
                };
                if anchor != 0 {
                    anchors.insert(anchor, node.clone());
                }
                node
            }
            Event::Scalar(value, style, anchor, tag) => {
                let node = Node {
                    span,
                    size: 1,
                    kind: Kind::Scalar(Scalar {
                        text: value.into_owned(),
                        style,
                        tag: tag.map(|t| format!("{}{}", t.handle, t.suffix)),
                    }),
                };
                if anchor != 0 {
                    anchors.insert(anchor, node.clone());
                }
                node
            }
            Event::Alias(id) => {
                let Some(target) = anchors.get(&id) else {
                    return Err(Diagnostic::error(
                        file,
                        "",
                        Some(span),
                        "this alias refers to the node that contains it; recursive aliases are not accepted",
                    ));
                };
                if target.size > budget {
                    return Err(alias_budget(file, span));
                }
                let mut node = target.clone();
                // Point at the alias, not at the anchored original.
                node.span = span;
                node
            }
        };
        budget = match budget.checked_sub(node.size) {
            Some(b) => b,
            None => return Err(alias_budget(file, span)),
        };
        match stack.last_mut() {
            None => root = Some(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map {
                entries,
                pending_key,
                ..
            }) => match pending_key.take() {
                None => {
                    if !matches!(node.kind, Kind::Scalar(_)) {
                        return Err(Diagnostic::error(
                            file,
                            "",
                            Some(node.span),
                            format!(
                                "mapping keys must be plain strings, found {}",
                                node.describe()
                            ),
                        ));
                    }
                    *pending_key = Some(node);
                }
                Some(key) => {
                    let dup = entries
                        .iter()
                        .find(|(k, _)| key_text(k) == key_text(&key))
                        .map(|(k, _)| k.span);
                    if let Some(first) = dup {
                        diags.push(
                            Diagnostic::error(
                                file,
                                "",
                                Some(key.span),
                                format!("duplicate key `{}`", key_text(&key).unwrap_or("")),
                            )
                            .with_help(format!(
                                "the key is first defined on line {}; keep only one",
                                first.start.line
                            )),
                        );
                    } else {
                        entries.push((key, node));
                    }
                }
            },
        }
    }
    Ok(root)
}

fn alias_budget(file: &str, span: Span) -> Diagnostic {
    Diagnostic::error(
        file,
        "",
        Some(span),
        format!("the spec expands to more than {MAX_NODES} YAML nodes"),
    )
    .with_help("each alias (`*name`) copies its whole anchored subtree; nested aliases multiply (an alias bomb)")
}

pub(crate) fn key_text(node: &Node) -> Option<&str> {
    match &node.kind {
        Kind::Scalar(s) => Some(&s.text),
        _ => None,
    }
}
