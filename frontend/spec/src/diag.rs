//! Diagnostics: what went wrong in a spec, where, and how to fix it.
//!
//! A [`Diagnostic`] carries a severity, a lowercase message saying what was wrong and what is
//! accepted, the key path (`os.storage.files[3].mode`), an optional source span and an optional
//! help line. It renders three ways:
//!
//! - [`Diagnostic::render`]: rustc style, with the offending source line and a caret underline;
//! - [`Diagnostic::one_line`]: `node.yaml:14:9: os.storage.files[3].mode: expected …`;
//! - JSON through `serde` (see [`Diagnostics::to_json`]).

use std::fmt;

use serde::Serialize;

/// A position in a source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize)]
pub struct Pos {
    /// 1-based line.
    pub line: u32,
    /// 1-based column, counted in characters.
    pub col: u32,
    /// 0-based byte offset into the file (a UTF-8 BOM, if any, counts).
    pub offset: usize,
}

/// A range in a source file: `start` inclusive, `end` exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize)]
pub struct Span {
    pub start: Pos,
    pub end: Pos,
}

impl Span {
    /// An empty span at `pos`.
    pub fn at(pos: Pos) -> Span {
        Span {
            start: pos,
            end: pos,
        }
    }
}

/// A value together with the place in the spec it came from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize)]
pub struct Spanned<T> {
    pub value: T,
    pub span: Span,
}

impl<T> Spanned<T> {
    pub fn new(value: T, span: Span) -> Self {
        Spanned { value, span }
    }
}

impl<T> std::ops::Deref for Spanned<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

/// How bad a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// One problem found in a spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    /// Lowercase; says what was wrong and what is accepted.
    pub message: String,
    /// The file the diagnostic is about (as given to the loader, e.g. `node.yaml`).
    pub file: String,
    /// Key path like `os.storage.files[3].mode`; empty for the whole document.
    pub path: String,
    pub span: Option<Span>,
    pub help: Option<String>,
    /// For warnings: the rule that found it (see [`RULES`]), as `--call check` names it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<&'static str>,
}

/// A kind of warning: its name (as in BuildKit's lint rules, `--call check` prints it) and
/// what it means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub name: &'static str,
    pub description: &'static str,
}

/// Every warning rule of the spec.
pub const RULES: &[Rule] = &[
    Rule {
        name: "DecimalMode",
        description: "A mode without a leading 0 is decimal, not octal",
    },
    Rule {
        name: "DuplicatePackage",
        description: "An OS package is listed more than once",
    },
    Rule {
        name: "DuplicateDiskFormat",
        description: "A disk format is listed more than once",
    },
    Rule {
        name: "UnitWithoutEffect",
        description: "A systemd unit entry that changes nothing",
    },
    Rule {
        name: "UndefinedUnit",
        description: "An enabled systemd unit that nothing in the spec defines",
    },
    Rule {
        name: "PasswordNotHashed",
        description: "A password_hash that is not a crypt(3) hash",
    },
    Rule {
        name: "NoContainerRuntime",
        description: "A kubelet without a container runtime",
    },
];

impl Rule {
    /// The rule named `name`.
    pub fn named(name: &str) -> Option<&'static Rule> {
        RULES.iter().find(|r| r.name == name)
    }
}

impl Diagnostic {
    pub fn error(file: &str, path: &str, span: Option<Span>, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            message: message.into(),
            file: file.to_owned(),
            path: path.to_owned(),
            span,
            help: None,
            rule: None,
        }
    }

    pub fn warning(file: &str, path: &str, span: Option<Span>, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(file, path, span, message)
        }
    }

    /// Names the rule of a warning; `rule` must be one of [`RULES`].
    pub fn with_rule(mut self, rule: &'static str) -> Self {
        debug_assert!(Rule::named(rule).is_some(), "unknown rule {rule}");
        self.rule = Some(rule);
        self
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// `node.yaml:14:9: os.storage.files[3].mode: expected an octal mode like 0644, got "rwx"`.
    ///
    /// Warnings carry a `warning: ` marker after the location; errors have none.
    pub fn one_line(&self) -> String {
        let mut out = self.file.clone();
        if let Some(span) = self.span {
            out.push_str(&format!(":{}:{}", span.start.line, span.start.col));
        }
        out.push_str(": ");
        if self.severity == Severity::Warning {
            out.push_str("warning: ");
        }
        if !self.path.is_empty() {
            out.push_str(&self.path);
            out.push_str(": ");
        }
        out.push_str(&self.message);
        out
    }

    /// rustc-style rendering with the source line and a caret underline:
    ///
    /// ```text
    /// error: expected an octal mode like 0644, got "rwx"
    ///   --> node.yaml:14:15
    ///    |
    /// 14 |         mode: rwx
    ///    |               ^^^ os.storage.files[3].mode
    ///    |
    ///    = help: …
    /// ```
    pub fn render(&self, source: &str) -> String {
        let mut out = format!("{}: {}\n", self.severity, self.message);
        let line_text = self
            .span
            .and_then(|s| source_line(source, s.start.line as usize));
        match (self.span, line_text) {
            (Some(span), Some(text)) => {
                let line_no = span.start.line.to_string();
                let gutter = " ".repeat(line_no.len());
                out.push_str(&format!(
                    "{gutter}--> {}:{}:{}\n",
                    self.file, span.start.line, span.start.col
                ));
                let (shown, pad, width) = underline(text, span);
                out.push_str(&format!("{gutter} |\n"));
                out.push_str(&format!("{line_no} | {shown}\n"));
                let label = if self.path.is_empty() {
                    String::new()
                } else {
                    format!(" {}", self.path)
                };
                out.push_str(&format!(
                    "{gutter} | {}{}{label}\n",
                    " ".repeat(pad),
                    "^".repeat(width)
                ));
                if let Some(help) = &self.help {
                    out.push_str(&format!("{gutter} |\n{gutter} = help: {help}\n"));
                }
            }
            (span, _) => {
                out.push_str(&format!("  --> {}", self.file));
                if let Some(span) = span {
                    out.push_str(&format!(":{}:{}", span.start.line, span.start.col));
                }
                if !self.path.is_empty() {
                    out.push_str(&format!(" (at {})", self.path));
                }
                out.push('\n');
                if let Some(help) = &self.help {
                    out.push_str(&format!("   = help: {help}\n"));
                }
            }
        }
        out
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.one_line())
    }
}

/// The 1-based `line` of `source`, without its line terminator or a leading BOM.
fn source_line(source: &str, line: usize) -> Option<&str> {
    let text = source.split('\n').nth(line.checked_sub(1)?)?;
    let text = text.strip_suffix('\r').unwrap_or(text);
    Some(text.strip_prefix('\u{feff}').unwrap_or(text))
}

/// The line as shown (tabs expanded), the caret's indentation and the caret count.
fn underline(text: &str, span: Span) -> (String, usize, usize) {
    let start = span.start.col.saturating_sub(1) as usize;
    let end = if span.end.line == span.start.line && span.end.col > span.start.col {
        span.end.col.saturating_sub(1) as usize
    } else {
        // Multi-line or empty spans: underline to the end of the line (at least one caret).
        text.chars().count().max(start + 1)
    };
    let mut shown = String::new();
    let (mut pad, mut width) = (0, 0);
    for (i, c) in text.chars().enumerate() {
        let w = if c == '\t' { 4 } else { 1 };
        if i < start {
            pad += w;
        } else if i < end {
            width += w;
        }
        if c == '\t' {
            shown.push_str("    ");
        } else {
            shown.push(c);
        }
    }
    (shown, pad, width.max(1))
}

/// All diagnostics of one load: errors and warnings, in source order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn has_errors(&self) -> bool {
        self.0.iter().any(Diagnostic::is_error)
    }

    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter().filter(|d| d.is_error())
    }

    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter().filter(|d| !d.is_error())
    }

    /// Every diagnostic rendered rustc-style against `source`, separated by blank lines, and a
    /// summary line.
    pub fn render(&self, source: &str) -> String {
        let mut out = String::new();
        for d in &self.0 {
            out.push_str(&d.render(source));
            out.push('\n');
        }
        out.push_str(&self.summary());
        out.push('\n');
        out
    }

    /// `2 errors, 1 warning`.
    pub fn summary(&self) -> String {
        let errors = self.errors().count();
        let warnings = self.warnings().count();
        format!(
            "{}, {}",
            plural(errors, "error"),
            plural(warnings, "warning")
        )
    }

    /// A JSON array of diagnostics (`severity`, `message`, `file`, `path`, `span`, `help`).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

pub(crate) fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

impl fmt::Display for Diagnostics {
    /// One line per diagnostic (see [`Diagnostic::one_line`]); use [`Diagnostics::render`] for
    /// the form with source lines.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            f.write_str(&d.one_line())?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(line: u32, col: u32) -> Pos {
        Pos {
            line,
            col,
            offset: 0,
        }
    }

    #[test]
    fn renders_rustc_style() {
        let src = "a: 1\nmode: rwx\n";
        let d = Diagnostic::error(
            "node.yaml",
            "os.mode",
            Some(Span {
                start: pos(2, 7),
                end: pos(2, 10),
            }),
            "expected an octal mode like 0644, got \"rwx\"",
        )
        .with_help("write 0644");
        assert_eq!(
            d.render(src),
            "error: expected an octal mode like 0644, got \"rwx\"\n \
             --> node.yaml:2:7\n  |\n2 | mode: rwx\n  |       ^^^ os.mode\n  |\n  = help: write 0644\n"
        );
        assert_eq!(
            d.one_line(),
            "node.yaml:2:7: os.mode: expected an octal mode like 0644, got \"rwx\""
        );
    }

    #[test]
    fn renders_tabs_and_missing_lines() {
        let src = "\tx: y\n";
        let d = Diagnostic::warning(
            "f",
            "",
            Some(Span {
                start: pos(1, 2),
                end: pos(1, 3),
            }),
            "m",
        );
        assert!(d.render(src).contains("1 |     x: y\n  |     ^\n"));
        let far = Diagnostic::error("f", "p", Some(Span::at(pos(9, 1))), "m");
        assert_eq!(far.render(src), "error: m\n  --> f:9:1 (at p)\n");
        assert_eq!(far.one_line(), "f:9:1: p: m");
    }

    #[test]
    fn json_and_summary() {
        let ds = Diagnostics(vec![
            Diagnostic::error("f", "a", None, "bad"),
            Diagnostic::warning("f", "b", None, "meh"),
        ]);
        assert_eq!(ds.summary(), "1 error, 1 warning");
        let v = ds.to_json();
        assert_eq!(v[0]["severity"], "error");
        assert_eq!(v[1]["severity"], "warning");
        assert_eq!(v[0]["span"], serde_json::Value::Null);
        assert_eq!(ds.to_string(), "f: a: bad\nf: warning: b: meh");
    }
}
