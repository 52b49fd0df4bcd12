//! The CPU architectures a disk can be made for, and every name that depends on one: the UEFI
//! removable-media loader, systemd-boot's file name, the root partition type of the
//! Discoverable Partitions Specification.

use std::fmt;

use crate::gpt::Guid;

/// A CPU architecture the converter makes UEFI disks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Arch {
    X86_64,
    Aarch64,
}

impl Arch {
    /// Every supported architecture.
    pub const ALL: [Arch; 2] = [Arch::X86_64, Arch::Aarch64];

    /// The architecture's suffix in UEFI file names (`x64`, `aa64`).
    pub fn efi_suffix(self) -> &'static str {
        match self {
            Arch::X86_64 => "x64",
            Arch::Aarch64 => "aa64",
        }
    }

    /// The removable-media default loader path in the ESP (UEFI 2.x §3.5.1.1):
    /// `EFI/BOOT/BOOTX64.EFI`, `EFI/BOOT/BOOTAA64.EFI`.
    pub fn removable_loader(self) -> String {
        format!(
            "EFI/BOOT/BOOT{}.EFI",
            self.efi_suffix().to_ascii_uppercase()
        )
    }

    /// systemd-boot's file name for this architecture (`systemd-bootx64.efi`).
    pub fn systemd_boot_name(self) -> String {
        format!("systemd-boot{}.efi", self.efi_suffix())
    }

    /// Where the node's `systemd-boot-efi` package installs systemd-boot, relative to the
    /// rootfs (no leading slash).
    pub fn systemd_boot_path(self) -> String {
        format!("usr/lib/systemd/boot/efi/{}", self.systemd_boot_name())
    }

    /// The root partition type of the Discoverable Partitions Specification.
    pub fn root_partition_type(self) -> Guid {
        match self {
            Arch::X86_64 => crate::gpt::TYPE_ROOT_X86_64,
            Arch::Aarch64 => crate::gpt::TYPE_ROOT_ARM64,
        }
    }

    /// The OCI / Go name of the architecture (`amd64`, `arm64`).
    pub fn oci_name(self) -> &'static str {
        match self {
            Arch::X86_64 => "amd64",
            Arch::Aarch64 => "arm64",
        }
    }

    /// The kernel's name of the architecture (`uname -m`: `x86_64`, `aarch64`).
    pub fn kernel_name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
        }
    }

    /// Parses an OCI (`amd64`, `arm64`) or kernel (`x86_64`, `aarch64`) name.
    pub fn parse(s: &str) -> Option<Arch> {
        Arch::ALL
            .into_iter()
            .find(|a| s == a.oci_name() || s == a.kernel_name())
    }

    /// The architecture whose systemd-boot lives at `path` (relative to the rootfs, with or
    /// without the `usr/` prefix of a merged-/usr system).
    pub fn of_systemd_boot_path(path: &str) -> Option<Arch> {
        Arch::ALL.into_iter().find(|a| {
            let p = a.systemd_boot_path();
            path == p || path == p.trim_start_matches("usr/")
        })
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.oci_name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn efi_names_per_architecture() {
        assert_eq!(Arch::X86_64.removable_loader(), "EFI/BOOT/BOOTX64.EFI");
        assert_eq!(Arch::Aarch64.removable_loader(), "EFI/BOOT/BOOTAA64.EFI");
        assert_eq!(Arch::X86_64.systemd_boot_name(), "systemd-bootx64.efi");
        assert_eq!(Arch::Aarch64.systemd_boot_name(), "systemd-bootaa64.efi");
        assert_eq!(
            Arch::Aarch64.systemd_boot_path(),
            "usr/lib/systemd/boot/efi/systemd-bootaa64.efi"
        );
    }

    #[test]
    fn root_partition_types_from_the_specification() {
        assert_eq!(
            Arch::X86_64.root_partition_type().to_string(),
            "4f68bce3-e8cd-4db1-96e7-fbcaf984b709"
        );
        assert_eq!(
            Arch::Aarch64.root_partition_type().to_string(),
            "b921b045-1df0-41c3-af44-4c6f280d3fae"
        );
    }

    #[test]
    fn parses_oci_and_kernel_names() {
        assert_eq!(Arch::parse("amd64"), Some(Arch::X86_64));
        assert_eq!(Arch::parse("x86_64"), Some(Arch::X86_64));
        assert_eq!(Arch::parse("arm64"), Some(Arch::Aarch64));
        assert_eq!(Arch::parse("aarch64"), Some(Arch::Aarch64));
        assert_eq!(Arch::parse("riscv64"), None);
        assert_eq!(Arch::parse("ARM64"), None);
    }

    #[test]
    fn systemd_boot_paths_name_their_architecture() {
        assert_eq!(
            Arch::of_systemd_boot_path("usr/lib/systemd/boot/efi/systemd-bootaa64.efi"),
            Some(Arch::Aarch64)
        );
        assert_eq!(
            Arch::of_systemd_boot_path("lib/systemd/boot/efi/systemd-bootx64.efi"),
            Some(Arch::X86_64)
        );
        assert_eq!(
            Arch::of_systemd_boot_path("usr/lib/systemd/boot/efi/systemd-bootia32.efi"),
            None
        );
    }
}
