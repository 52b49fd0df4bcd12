//! The `tests:` section: checks of the finished node, run by `--target test` inside BuildKit
//! (files, packages, services and kernel arguments read from the rootfs by the tools image;
//! commands in an exec of the node image without network) and inside the booted VM.
//!
//! ```yaml
//! tests:
//!   files:            [{path, exists, mode, owner, contains}]
//!   packages:         [{name, installed, version}]
//!   services:         [{name, enabled, masked}]
//!   kernel_arguments: [{contains}]
//!   commands:         [{run, exit_status, stdout_contains, stderr_contains}]
//!   images:           [{ref, digest}]
//! ```

use serde::Serialize;

use super::Span;

/// The whole `tests:` section.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Tests {
    pub span: Span,
    pub files: Vec<FileTest>,
    pub packages: Vec<PackageTest>,
    pub services: Vec<ServiceTest>,
    pub kernel_arguments: Vec<KernelArgTest>,
    pub commands: Vec<CommandTest>,
    pub images: Vec<ImageTest>,
}

impl Tests {
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
            && self.packages.is_empty()
            && self.services.is_empty()
            && self.kernel_arguments.is_empty()
            && self.commands.is_empty()
            && self.images.is_empty()
    }

    pub fn len(&self) -> usize {
        self.files.len()
            + self.packages.len()
            + self.services.len()
            + self.kernel_arguments.len()
            + self.commands.len()
            + self.images.len()
    }
}

/// `tests.files[]`: `exists` defaults to true; the other keys only apply to an existing path.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FileTest {
    pub span: Span,
    pub path: String,
    pub exists: bool,
    pub mode: Option<u32>,
    /// `user` or `user:group`, names or numeric ids.
    pub owner: Option<String>,
    pub contains: Option<String>,
}

/// `tests.packages[]`: `installed` defaults to true; `version` is exact, or a prefix when it
/// ends with `*`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PackageTest {
    pub span: Span,
    pub name: String,
    pub installed: bool,
    pub version: Option<String>,
}

/// `tests.services[]`: a unit, enabled (a `.wants`/`.requires` link) and/or masked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ServiceTest {
    pub span: Span,
    pub name: String,
    pub enabled: Option<bool>,
    pub masked: Option<bool>,
}

/// `tests.kernel_arguments[]`: the kernel command line holds this argument (whole words).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct KernelArgTest {
    pub span: Span,
    pub contains: String,
}

/// `tests.commands[]`: a shell command run in the node (no network); `exit_status` defaults
/// to 0.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CommandTest {
    pub span: Span,
    pub run: String,
    pub exit_status: i32,
    pub stdout_contains: Option<String>,
    pub stderr_contains: Option<String>,
}

/// `tests.images[]`: the image is in the node (in containerd's `k8s.io` namespace, inside the
/// VM), with `digest` when given.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ImageTest {
    pub span: Span,
    /// Normalised like `kubernetes.images[].ref`.
    pub reference: String,
    /// `sha256:<64 hex>`.
    pub digest: Option<String>,
}
