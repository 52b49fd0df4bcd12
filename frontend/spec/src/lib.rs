//! The nodestamp spec (`node.yaml`, version 1): types, strict loading and validation.
//!
//! [`load`] reads bytes into a [`Spec`] or returns every problem at once as [`Diagnostics`]:
//!
//! 1. bytes → UTF-8 text (size limit, BOM accepted) → a position-annotated YAML tree built from
//!    `saphyr-parser` events ([`yaml`]); no YAML type resolution happens there, so `mode: 0644`
//!    keeps its text and means octal, as in Butane;
//! 2. the tree is decoded by hand into the types below: unknown keys (with "did you mean"),
//!    wrong types, `${VAR}` substitution from build args ([`vars`]) and per-value rules
//!    ([`check`]) are reported as they are met, and decoding goes on;
//! 3. cross-entry rules run last (duplicate paths within and across the OS and Kubernetes
//!    layers, symlink loops, duplicate names).
//!
//! Key paths in diagnostics use 0-based list indices: `os.storage.files[0].mode`.

mod check;
mod decode;
pub mod diag;
pub mod node_tests;
mod vars;
mod yaml;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use serde::Serialize;

pub use crate::diag::{Diagnostic, Diagnostics, Pos, Severity, Span, Spanned};
pub use decode::{
    Bootloader, Build, Component, ComponentSource, Contents, Directory, Disk, Dropin, File,
    Filesystem, Firmware, Format, Group, ImageEntry, Kubernetes, Link, Os, Owner, Passwd, Run,
    Secret, SecretTarget, Storage, Systemd, Unit, User,
};
pub use vars::referenced_names;
pub use yaml::{MAX_DEPTH, MAX_NODES, MAX_SIZE};

/// A whole spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Spec {
    /// Always 1.
    pub version: u32,
    /// `[a-z0-9][a-z0-9._-]*`, default `node`.
    pub name: String,
    pub os: Os,
    pub kubernetes: Option<Kubernetes>,
    pub disk: Option<Disk>,
    /// `tests:`: checks of the finished node (`--target test`, and in the booted VM).
    pub tests: Option<node_tests::Tests>,
    /// The name the spec was loaded under (for diagnostics and source locations).
    pub file_name: String,
}

/// A successfully loaded spec and the warnings found on the way.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub spec: Spec,
    pub warnings: Vec<Diagnostic>,
}

/// One `${NAME}` in the spec (see `--call outline`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VarUse {
    pub name: String,
    /// The text after `:-`, when given.
    pub default: Option<String>,
    /// The key path of the value that holds it.
    pub path: String,
    /// The `${…}` itself when the value is written on one line without escapes, otherwise the
    /// whole value.
    pub span: Span,
}

/// What a spec holds as far as it decodes, errors or not.
#[derive(Debug, Clone)]
pub struct Survey {
    /// Every part that decoded; a part with errors has its default.
    pub spec: Spec,
    /// Every `${NAME}` in the values the spec reads, in file order.
    pub uses: Vec<VarUse>,
    /// Every error and warning, sorted by position.
    pub diagnostics: Diagnostics,
}

/// Decodes `bytes` as far as possible, for questions about a spec that need no valid build
/// (its targets and build args): fails only when the text is not one YAML document.
pub fn survey(
    file_name: &str,
    bytes: &[u8],
    vars: &BTreeMap<String, String>,
) -> Result<Survey, Diagnostics> {
    let mut s = decode::survey(file_name, bytes, vars)?;
    s.uses.sort_by_key(|u| u.span.start.offset);
    Ok(s)
}

/// Loads a spec from `bytes`. `file_name` is used in diagnostics; `vars` are the build args
/// that `${VAR}` references resolve against.
///
/// Never panics; on failure, the [`Diagnostics`] hold every error and warning found, sorted by
/// position.
pub fn load(
    file_name: &str,
    bytes: &[u8],
    vars: &BTreeMap<String, String>,
) -> Result<Loaded, Diagnostics> {
    decode::load(file_name, bytes, vars)
}
