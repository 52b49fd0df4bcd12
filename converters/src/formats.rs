//! Output formats and their checks.

use std::fmt;
use std::str::FromStr;

use crate::error::ConvertError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Format {
    Raw,
    Qcow2,
    /// streamOptimized, as vSphere imports.
    Vmdk,
    /// Fixed VHD with an exact virtual size (a whole number of MiB), as Azure requires.
    Vhd,
    /// An OVF package in one tar (descriptor, manifest, streamOptimized vmdk), for vSphere.
    Ova,
    /// A gzipped tar holding `disk.raw` (GNU format, sparse), as Compute Engine imports.
    Gce,
}

impl Format {
    /// The disk image formats qemu-img writes and reads.
    pub const ALL: [Format; 4] = [Format::Raw, Format::Qcow2, Format::Vmdk, Format::Vhd];
    /// Packages holding a disk image: the image inside is [`Format::inner`].
    pub const PACKAGES: [Format; 2] = [Format::Ova, Format::Gce];

    pub fn extension(self) -> &'static str {
        match self {
            Format::Raw => "raw",
            Format::Qcow2 => "qcow2",
            Format::Vmdk => "vmdk",
            Format::Vhd => "vhd",
            Format::Ova => "ova",
            Format::Gce => "gce.tar.gz",
        }
    }

    /// The disk image format itself, or the one a package holds.
    pub fn inner(self) -> Format {
        match self {
            Format::Ova => Format::Vmdk,
            Format::Gce => Format::Raw,
            f => f,
        }
    }

    /// qemu-img's name of the format (of the image inside, for a package).
    pub fn qemu_format(self) -> &'static str {
        match self.inner() {
            Format::Raw => "raw",
            Format::Qcow2 => "qcow2",
            Format::Vhd => "vpc",
            _ => "vmdk",
        }
    }

    pub fn qemu_options(self) -> Option<&'static str> {
        match self.inner() {
            Format::Vmdk => Some("subformat=streamOptimized"),
            Format::Vhd => Some("subformat=fixed,force_size=on"),
            _ => None,
        }
    }

    /// Whether `qemu-img check` supports the format.
    pub fn checkable(self) -> bool {
        matches!(self, Format::Qcow2 | Format::Vmdk)
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.extension())
    }
}

impl FromStr for Format {
    type Err = ConvertError;
    fn from_str(s: &str) -> Result<Format, ConvertError> {
        match s.to_ascii_lowercase().as_str() {
            "raw" | "img" => Ok(Format::Raw),
            "qcow2" => Ok(Format::Qcow2),
            "vmdk" => Ok(Format::Vmdk),
            "vhd" | "vpc" => Ok(Format::Vhd),
            "ova" => Ok(Format::Ova),
            "gce" | "gce.tar.gz" => Ok(Format::Gce),
            _ => Err(ConvertError::UnknownFormat(s.to_string())),
        }
    }
}

/// Checks the 512-byte VHD footer: cookie, fixed disk type, ones'-complement checksum.
/// Returns the current size recorded in the footer.
pub fn vhd_footer(footer: &[u8]) -> Result<u64, String> {
    if footer.len() != 512 {
        return Err(format!("footer is {} bytes, expected 512", footer.len()));
    }
    if &footer[0..8] != b"conectix" {
        return Err("no \"conectix\" cookie".into());
    }
    let stored = u32::from_be_bytes([footer[64], footer[65], footer[66], footer[67]]);
    let sum: u32 = footer
        .iter()
        .enumerate()
        .filter(|(i, _)| !(64..68).contains(i))
        .map(|(_, b)| u32::from(*b))
        .sum();
    if !sum != stored {
        return Err(format!(
            "footer checksum {stored:#010x}, computed {:#010x}",
            !sum
        ));
    }
    let disk_type = u32::from_be_bytes([footer[60], footer[61], footer[62], footer[63]]);
    if disk_type != 2 {
        return Err(format!("disk type {disk_type}, expected 2 (fixed)"));
    }
    let mut size = [0u8; 8];
    size.copy_from_slice(&footer[48..56]);
    Ok(u64::from_be_bytes(size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_formats() {
        assert_eq!("QCOW2".parse::<Format>().unwrap(), Format::Qcow2);
        assert_eq!("ova".parse::<Format>().unwrap().inner(), Format::Vmdk);
        assert_eq!("gce".parse::<Format>().unwrap().extension(), "gce.tar.gz");
        let e = "iso".parse::<Format>().unwrap_err().to_string();
        assert!(e.contains("unknown disk format \"iso\""), "{e}");
    }

    #[test]
    fn vhd_footer_checksum() {
        let mut f = [0u8; 512];
        f[0..8].copy_from_slice(b"conectix");
        f[48..56].copy_from_slice(&(8u64 << 20).to_be_bytes());
        f[60..64].copy_from_slice(&2u32.to_be_bytes());
        let sum: u32 = f.iter().map(|b| u32::from(*b)).sum();
        f[64..68].copy_from_slice(&(!sum).to_be_bytes());
        assert_eq!(vhd_footer(&f).unwrap(), 8 << 20);
        f[100] ^= 1;
        assert!(vhd_footer(&f).unwrap_err().contains("checksum"));
    }
}
