//! How a disk boots (`--firmware uefi|bios|hybrid`) and what that takes of the disk's layout:
//! the BIOS boot partition and the config GRUB's core.img embeds. Planning reads these; the
//! writing of GRUB is [`crate::bios`].

use std::fmt;
use std::str::FromStr;

use crate::error::ConvertError;

/// How the disk boots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Firmware {
    /// UEFI only: systemd-boot on the ESP.
    #[default]
    Uefi,
    /// BIOS only: GRUB i386-pc in the BIOS boot partition, kernel and initrd on the ESP.
    Bios,
    /// Both: one disk that boots with BIOS (GRUB) and with UEFI (systemd-boot).
    Hybrid,
}

impl Firmware {
    pub const ALL: [Firmware; 3] = [Firmware::Uefi, Firmware::Bios, Firmware::Hybrid];

    pub fn as_str(self) -> &'static str {
        match self {
            Firmware::Uefi => "uefi",
            Firmware::Bios => "bios",
            Firmware::Hybrid => "hybrid",
        }
    }

    /// Whether the disk carries GRUB for BIOS.
    pub fn bios(self) -> bool {
        matches!(self, Firmware::Bios | Firmware::Hybrid)
    }

    /// Whether the disk carries systemd-boot for UEFI.
    pub fn uefi(self) -> bool {
        matches!(self, Firmware::Uefi | Firmware::Hybrid)
    }
}

impl fmt::Display for Firmware {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Firmware {
    type Err = ConvertError;
    fn from_str(s: &str) -> Result<Firmware, ConvertError> {
        Firmware::ALL
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| ConvertError::UnknownFirmware(s.to_string()))
    }
}

/// Size of the BIOS boot partition (core.img is 60-100 KiB; 1 MiB keeps the alignment).
pub const BIOS_BOOT_SIZE: u64 = nodestamp_contract::units::MIB;

/// GRUB's name for a FAT volume id.
pub fn fat_uuid(volume_id: u32) -> String {
    format!("{:04x}-{:04x}", volume_id >> 16, volume_id & 0xffff)
}

/// The config embedded in core.img, for GRUB's rescue parser (one command a line, no quoting):
/// find the ESP, load the kernel and initrd from it, boot.
pub fn embedded_config(esp_volume_id: u32, kernel: &str, initrd: &str, options: &str) -> String {
    format!(
        "echo nodestamp: booting with GRUB (BIOS)\n\
         search.fs_uuid {} root\n\
         linux /{kernel} {options}\n\
         initrd /{initrd}\n\
         boot\n",
        fat_uuid(esp_volume_id)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn firmware_names() {
        assert_eq!("bios".parse::<Firmware>().unwrap(), Firmware::Bios);
        assert_eq!(Firmware::default(), Firmware::Uefi);
        let e = "efi".parse::<Firmware>().unwrap_err().to_string();
        assert_eq!(
            e,
            "unknown firmware \"efi\": expected one of uefi, bios, hybrid"
        );
        assert!(Firmware::Hybrid.bios() && Firmware::Hybrid.uefi());
        assert!(!Firmware::Uefi.bios() && !Firmware::Bios.uefi());
    }

    #[test]
    fn config_finds_the_esp_and_boots_its_kernel() {
        assert_eq!(fat_uuid(0x1a2b_3c4d), "1a2b-3c4d");
        let c = embedded_config(
            0x1a2b_3c4d,
            "n/vmlinuz-6",
            "n/initrd.img-6",
            "root=UUID=x rw",
        );
        assert!(c.contains("search.fs_uuid 1a2b-3c4d root\n"), "{c}");
        assert!(c.contains("linux /n/vmlinuz-6 root=UUID=x rw\ninitrd /n/initrd.img-6\nboot\n"));
    }
}
