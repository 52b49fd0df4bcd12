use std::path::PathBuf;

use crate::tar::TarError;

/// Everything that can go wrong in a conversion. Messages are written for the person who ran
/// the build: they say what was expected and, where it helps, what to do.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("rootfs tar: {0}")]
    Tar(#[from] TarError),
    #[error("input {path}: {source}")]
    Input {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the rootfs has no kernel: expected /boot/vmlinuz-<version> (install a kernel package, e.g. linux-image-amd64)"
    )]
    NoKernel,
    #[error(
        "the rootfs has no initrd for kernel {version}: expected /boot/initrd.img-{version} (is initramfs-tools installed?)"
    )]
    NoInitrd { version: String },
    #[error(
        "the rootfs has no systemd-boot: expected {path} (install the systemd-boot-efi package in the node)"
    )]
    NoSystemdBoot { path: &'static str },
    #[error(
        "disk size {requested} is too small for this rootfs: it needs at least {needed} (use --size {needed_arg} or larger)",
        requested = crate::plan::human(*requested),
        needed = crate::plan::human(*needed),
        needed_arg = crate::plan::size_arg(*needed)
    )]
    TooSmall { requested: u64, needed: u64 },
    #[error(
        "the boot files ({needed_files}) do not fit the {esp} EFI system partition",
        needed_files = crate::plan::human(*files),
        esp = crate::plan::human(*esp)
    )]
    EspTooSmall { files: u64, esp: u64 },
    #[error("unknown disk format {0:?}: expected one of raw, qcow2, vmdk, vhd")]
    UnknownFormat(String),
    #[error(
        "invalid size {0:?}: expected a number with an optional unit, like 8GiB, 512MiB or 10G"
    )]
    BadSize(String),
    #[error("output directory {dir} is not writable: {source}")]
    OutputDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid options: {0}")]
    Options(String),
    #[error("cannot run {tool}: {source} (is it installed?)")]
    ToolMissing {
        tool: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{tool} failed ({status}): {command}\n{stderr}")]
    Tool {
        tool: String,
        command: String,
        status: String,
        stderr: String,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("verifying {path}: {what}")]
    Verify { path: PathBuf, what: String },
}

impl ConvertError {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ConvertError {
        let what = what.into();
        move |source| ConvertError::Io { what, source }
    }
}
