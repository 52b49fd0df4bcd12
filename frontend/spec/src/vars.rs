//! `${VAR}` substitution from build args.
//!
//! - `${NAME}` is replaced by the build arg `NAME`; undefined is an error.
//! - `${NAME:-default}` uses `default` when `NAME` is undefined or empty (as in the shell).
//! - `$$` is a literal `$`; a `$` not followed by `{` or `$` is kept as is, so shell text such
//!   as `$HOME` in `run:` needs no escaping.
//!
//! Names are `[A-Za-z_][A-Za-z0-9_]*`.

use std::collections::BTreeMap;
use std::ops::Range;

/// A problem with one `${…}` reference; `range` is in bytes of the scalar's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VarError {
    pub range: Range<usize>,
    pub message: String,
    pub help: Option<String>,
}

/// One `${NAME}` or `${NAME:-default}` in a scalar; `range` is in bytes of the scalar's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reference<'t> {
    pub name: &'t str,
    pub default: Option<&'t str>,
    pub range: Range<usize>,
}

/// A piece of a scalar's text, as substitution sees it.
enum Piece<'t> {
    /// Copied as is.
    Text(&'t str),
    /// A well-formed reference.
    Var(Reference<'t>),
    /// `${…}` whose name is not a valid name; `inner` is the text between the braces.
    Invalid { inner: &'t str, range: Range<usize> },
    /// `${` without a closing `}`, from `start` to the end of the text.
    Unterminated { start: usize },
}

/// Splits `text` into pieces: `$$` becomes the text `$`, a `$` not followed by `{` or `$`
/// stays text.
fn pieces(text: &str) -> Vec<Piece<'_>> {
    let mut out = Vec::new();
    let mut rest = text;
    let mut at = 0; // byte offset of `rest` in `text`
    while let Some(i) = rest.find('$') {
        out.push(Piece::Text(&rest[..i]));
        let tail = &rest[i..];
        let start = at + i;
        if tail.starts_with("$$") || !tail.starts_with("${") {
            out.push(Piece::Text("$"));
            let skip = if tail.starts_with("$$") { 2 } else { 1 };
            rest = &tail[skip..];
            at = start + skip;
            continue;
        }
        let Some(close) = tail.find('}') else {
            out.push(Piece::Unterminated { start });
            return out;
        };
        let inner = &tail[2..close];
        let range = start..start + close + 1;
        let (name, default) = match inner.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (inner, None),
        };
        out.push(if valid_name(name) {
            Piece::Var(Reference {
                name,
                default,
                range: range.clone(),
            })
        } else {
            Piece::Invalid {
                inner,
                range: range.clone(),
            }
        });
        rest = &tail[close + 1..];
        at = range.end;
    }
    out.push(Piece::Text(rest));
    out
}

/// Every well-formed `${…}` reference in `text`, in order.
pub(crate) fn references(text: &str) -> Vec<Reference<'_>> {
    if !text.contains("${") {
        return Vec::new();
    }
    pieces(text)
        .into_iter()
        .filter_map(|p| match p {
            Piece::Var(r) => Some(r),
            _ => None,
        })
        .collect()
}

pub(crate) fn substitute(
    text: &str,
    vars: &BTreeMap<String, String>,
) -> Result<String, Vec<VarError>> {
    if !text.contains('$') {
        return Ok(text.to_owned());
    }
    let mut out = String::with_capacity(text.len());
    let mut errors = Vec::new();
    for piece in pieces(text) {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Var(r) => match (vars.get(r.name), r.default) {
                (Some(v), Some(d)) if v.is_empty() => out.push_str(d),
                (Some(v), _) => out.push_str(v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => {
                    let name = r.name;
                    errors.push(VarError {
                        range: r.range,
                        message: format!("undefined variable `{name}`"),
                        help: Some(format!(
                            "pass `--build-arg {name}=<value>`, give a default with `${{{name}:-<default>}}`, or write `$${{{name}}}` for a literal `${{{name}}}`"
                        )),
                    })
                }
            },
            Piece::Invalid { inner, range } => errors.push(VarError {
                range,
                message: format!(
                    "invalid variable reference `${{{inner}}}`: names are letters, digits and `_`, not starting with a digit"
                ),
                help: Some("write `$$` for a literal `$`".into()),
            }),
            Piece::Unterminated { start } => errors.push(VarError {
                range: start..text.len(),
                message: "unterminated `${`: expected `${NAME}` or `${NAME:-default}`".into(),
                help: Some("write `$$` for a literal `$`".into()),
            }),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// Every name that a `${NAME}` or `${NAME:-default}` in `text` may refer to (a `$${NAME}`
/// literal is listed too: a superset is all callers need).
pub fn referenced_names(text: &str) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("${") {
        rest = &rest[i + 2..];
        let end = rest
            .find(|c: char| c != '_' && !c.is_ascii_alphanumeric())
            .unwrap_or(rest.len());
        if valid_name(&rest[..end]) {
            out.insert(rest[..end].to_owned());
        }
        rest = &rest[end..];
    }
    out
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> BTreeMap<String, String> {
        [("A", "1"), ("EMPTY", ""), ("K8S", "1.31.3")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    #[test]
    fn substitutes() {
        let v = vars();
        assert_eq!(substitute("plain", &v).unwrap(), "plain");
        assert_eq!(substitute("v${K8S}", &v).unwrap(), "v1.31.3");
        assert_eq!(substitute("${A}${A}", &v).unwrap(), "11");
        assert_eq!(substitute("${NOPE:-x y}", &v).unwrap(), "x y");
        assert_eq!(substitute("${EMPTY:-d}", &v).unwrap(), "d");
        assert_eq!(substitute("${EMPTY}", &v).unwrap(), "");
        assert_eq!(substitute("${A:-d}", &v).unwrap(), "1");
        assert_eq!(substitute("$${A}", &v).unwrap(), "${A}");
        assert_eq!(substitute("echo $HOME $", &v).unwrap(), "echo $HOME $");
        assert_eq!(substitute("a$$$$b", &v).unwrap(), "a$$b");
        assert_eq!(substitute("é${A}é", &v).unwrap(), "é1é");
    }

    #[test]
    fn lists_referenced_names() {
        let names = referenced_names("a ${A} ${B:-x} $HOME $${C} ${1x} ${ ${D");
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        assert_eq!(names, ["A", "B", "C", "D"]);
    }

    #[test]
    fn reports_errors_with_ranges() {
        let v = vars();
        let e = substitute("x ${NOPE} ${ALSO}", &v).unwrap_err();
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].range, 2..9);
        assert_eq!(e[0].message, "undefined variable `NOPE`");
        assert_eq!(e[1].range, 10..17);
        let e = substitute("a ${OPEN", &v).unwrap_err();
        assert_eq!(e[0].range, 2..8);
        assert!(e[0].message.contains("unterminated"));
        let e = substitute("${1x} ${}", &v).unwrap_err();
        assert_eq!(e.len(), 2);
        assert!(e[0].message.contains("invalid variable reference"));
    }

    #[test]
    fn lists_references() {
        let r = references("v${K8S:-1.32} $${NOT} ${A}${1x} ${B");
        assert_eq!(
            r,
            vec![
                Reference {
                    name: "K8S",
                    default: Some("1.32"),
                    range: 1..13
                },
                Reference {
                    name: "A",
                    default: None,
                    range: 22..26
                },
            ]
        );
        assert!(references("plain $HOME").is_empty());
    }
}
