use std::path::PathBuf;

use crate::tar::TarError;

/// Everything that can go wrong in a conversion. Messages are written for the person who ran
/// the build: they say what was expected and, where it helps, what to do.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("rootfs tar: {0}")]
    Tar(#[from] TarError),
    #[error("rootfs tar entry {path}: {what}")]
    TarEntry { path: String, what: String },
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
        "the rootfs has no systemd-boot: expected /usr/lib/systemd/boot/efi/systemd-bootx64.efi (amd64) or systemd-bootaa64.efi (arm64) (install the systemd-boot-efi package in the node)"
    )]
    NoSystemdBoot,
    #[error(
        "the rootfs has systemd-boot for more than one architecture ({found}): the disk's architecture is the one of its systemd-boot, so keep only that one in /usr/lib/systemd/boot/efi"
    )]
    SeveralSystemdBoots { found: String },
    #[error(
        "disk size {requested} is too small for this rootfs: it needs at least {needed} (use --size {needed_arg} or larger)",
        requested = nodestamp_contract::units::human(*requested),
        needed = nodestamp_contract::units::human(*needed),
        needed_arg = nodestamp_contract::units::size_arg(*needed)
    )]
    TooSmall { requested: u64, needed: u64 },
    #[error(
        "the boot files ({needed_files}) do not fit the {esp} EFI system partition",
        needed_files = nodestamp_contract::units::human(*files),
        esp = nodestamp_contract::units::human(*esp)
    )]
    EspTooSmall { files: u64, esp: u64 },
    #[error(
        "the rootfs has no GRUB for BIOS: expected {what}; add grub-pc-bin to the node (os.packages), or boot with UEFI only (disk.firmware: uefi, --firmware uefi)"
    )]
    NoGrub { what: &'static str },
    #[error(
        "firmware {firmware} boots x86-64 disks only (GRUB for i386-pc), this rootfs is {arch}: use firmware uefi"
    )]
    BiosNotX86 {
        firmware: &'static str,
        arch: &'static str,
    },
    #[error("unknown firmware {0:?}: expected one of uefi, bios, hybrid")]
    UnknownFirmware(String),
    #[error("unknown disk format {0:?}: expected one of raw, qcow2, vmdk, vhd, ova, gce")]
    UnknownFormat(String),
    /// A size refused by the parser the spec's `disk.size` uses, with its help.
    #[error(
        "{option}: {}{}",
        error.message,
        error.help.as_ref().map(|h| format!("\n  help: {h}")).unwrap_or_default()
    )]
    BadSize {
        option: &'static str,
        error: nodestamp_contract::units::SizeError,
    },
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

/// An error and its causes on one line, `outer: inner: …`, each said once. Our error messages
/// already name their cause (`rootfs tar: <the tar error>`) and also return it as `source()`,
/// so the plain `{:#}` chain would print it twice; a cause whose text is already in the line is
/// left out.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut line = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        cause = c.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chain_says_each_cause_once() {
        let e = anyhow::Error::from(ConvertError::from(TarError::Truncated {
            offset: 8,
            during: "where a header was expected",
        }))
        .context("converting in.tar");
        assert_eq!(
            chain(e.as_ref()),
            "converting in.tar: rootfs tar: tar archive is truncated: stream ended at byte offset 8 where a header was expected (was the build or the download interrupted?)"
        );
        // A cause the message does not name is still shown.
        let e = anyhow::Error::from(std::io::Error::other("disk full")).context("writing out.raw");
        assert_eq!(chain(e.as_ref()), "writing out.raw: disk full");
    }
}
