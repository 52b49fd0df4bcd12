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
use std::fmt;

use serde::Serialize;

pub use crate::diag::{Diagnostic, Diagnostics, Pos, Severity, Span, Spanned};
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

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Os {
    /// The `os:` mapping.
    pub span: Span,
    pub from: Spanned<String>,
    pub packages: Vec<Spanned<String>>,
    pub kernel_arguments: Vec<Spanned<String>>,
    pub storage: Storage,
    pub systemd: Systemd,
    pub passwd: Passwd,
    pub run: Vec<Run>,
    /// `os.build`: secrets and files for the package and `run` steps, never in the image.
    pub build: Build,
}

/// One `os.run` entry: a plain string, or `{command, secrets}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Run {
    /// The shell command.
    pub value: String,
    /// The command's text (or the whole entry when written as a mapping).
    pub span: Span,
    /// Secrets for this step only, on top of `os.build.secrets`.
    pub secrets: Vec<Secret>,
}

/// `os.build`: what the package and `run` steps see while they run and the image never holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Build {
    pub secrets: Vec<Secret>,
    /// Bind-mounted read-only at their paths during the package and `run` steps.
    pub files: Vec<File>,
}

/// A build secret (`--secret id=…`): a file (default `/run/secrets/<id>`) or an environment
/// variable of the step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Secret {
    pub span: Span,
    /// `[A-Za-z0-9._-]+`, as given to `--secret id=…`.
    pub id: String,
    pub target: SecretTarget,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SecretTarget {
    /// An absolute path; the file is readable by root only (0400).
    File(String),
    /// An environment variable name.
    Env(String),
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Storage {
    pub files: Vec<File>,
    pub directories: Vec<Directory>,
    pub links: Vec<Link>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct File {
    pub span: Span,
    /// Absolute and normalized.
    pub path: String,
    pub mode: Option<u32>,
    pub user: Option<Owner>,
    pub group: Option<Owner>,
    pub overwrite: bool,
    pub contents: Contents,
    /// The named build context `contents.local` is read from (`contents.context`); `None`
    /// reads the main build context.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<Spanned<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Contents {
    Inline(String),
    /// Relative to the build context, without `..`.
    Local(String),
    /// An http(s) URL and the sha256 (64 lowercase hex digits) from `verification.hash`.
    Source {
        url: String,
        sha256: String,
    },
}

impl Default for Contents {
    fn default() -> Self {
        Contents::Inline(String::new())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Owner {
    Name(String),
    Id(u32),
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Directory {
    pub span: Span,
    pub path: String,
    pub mode: Option<u32>,
    pub user: Option<Owner>,
    pub group: Option<Owner>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Link {
    pub span: Span,
    pub path: String,
    /// For symlinks any non-empty path (relative ones resolve against the link's directory);
    /// for hard links an absolute path.
    pub target: String,
    pub hard: bool,
    pub overwrite: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Systemd {
    pub units: Vec<Unit>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Unit {
    pub span: Span,
    pub name: String,
    pub enabled: Option<bool>,
    pub mask: bool,
    pub contents: Option<String>,
    pub dropins: Vec<Dropin>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Dropin {
    pub span: Span,
    /// `*.conf`.
    pub name: String,
    pub contents: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Passwd {
    pub users: Vec<User>,
    pub groups: Vec<Group>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct User {
    pub span: Span,
    pub name: String,
    pub uid: Option<u32>,
    pub groups: Vec<String>,
    pub shell: Option<String>,
    pub password_hash: Option<String>,
    pub ssh_authorized_keys: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Group {
    pub span: Span,
    pub name: String,
    pub gid: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Kubernetes {
    /// The `kubernetes:` mapping.
    pub span: Span,
    pub version: Option<Spanned<String>>,
    pub components: Vec<Component>,
    pub storage: Storage,
    pub systemd: Systemd,
    /// In file order.
    pub sysctl: Vec<(Spanned<String>, Spanned<String>)>,
    pub modules: Vec<Spanned<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Component {
    pub span: Span,
    /// `[a-z0-9][a-z0-9._-]*`, unique among components.
    pub name: String,
    pub source: ComponentSource,
    /// The named build context a `local` source is read from (`--build-context NAME=…`);
    /// `None` reads the main build context.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<Spanned<String>>,
    /// Absolute and normalized when given.
    pub dest: Option<String>,
    pub mode: Option<u32>,
    pub extract: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ComponentSource {
    Http {
        url: String,
        sha256: String,
    },
    /// Relative to the build context, without `..`.
    Local(String),
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Disk {
    pub span: Span,
    /// Bytes; a whole number of 512-byte sectors.
    pub size: Option<u64>,
    pub firmware: Firmware,
    pub bootloader: Bootloader,
    pub filesystem: Filesystem,
    /// In spec order, without duplicates; empty when not given.
    pub formats: Vec<Format>,
}

macro_rules! keyword_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        pub enum $name { $($(#[$vm])* #[serde(rename = $text)] $variant),+ }

        impl $name {
            /// Every accepted value with its spelling in the spec.
            pub const ALL: &'static [(&'static str, $name)] = &[$(($text, $name::$variant)),+];

            /// The spelling in the spec.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

keyword_enum!(#[derive(Default)] Firmware { #[default] Uefi => "uefi" });
keyword_enum!(#[derive(Default)] Bootloader { #[default] SystemdBoot => "systemd-boot" });
keyword_enum!(#[derive(Default)] Filesystem { #[default] Ext4 => "ext4" });
keyword_enum!(Format { Raw => "raw", Qcow2 => "qcow2", Vmdk => "vmdk", Vhd => "vhd" });

impl Format {
    /// The file extension of a disk in this format.
    pub fn extension(self) -> &'static str {
        self.as_str()
    }
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
