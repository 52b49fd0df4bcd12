//! The `disk:` section: size, firmware, boot loader, filesystem and formats.

use std::fmt;

use serde::Serialize;

use super::*;

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

// hybrid by default: one disk that boots with UEFI (systemd-boot) and with BIOS (GRUB), so it
// runs wherever the platform's firmware is either (QEMU/Proxmox SeaBIOS, Azure Gen1 and Gen2,
// vSphere bios and efi, GCE, BIOS-only clouds). It needs GRUB for i386-pc in the node
// (grub-pc-bin); `uefi` does not.
keyword_enum!(#[derive(Default)] Firmware { Uefi => "uefi", Bios => "bios", #[default] Hybrid => "hybrid" });
keyword_enum!(#[derive(Default)] Bootloader { #[default] SystemdBoot => "systemd-boot" });
keyword_enum!(#[derive(Default)] Filesystem { #[default] Ext4 => "ext4" });
keyword_enum!(Format { Raw => "raw", Qcow2 => "qcow2", Vmdk => "vmdk", Vhd => "vhd", Ova => "ova", Gce => "gce" });

impl Format {
    /// The file extension of a disk in this format.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Gce => "gce.tar.gz",
            f => f.as_str(),
        }
    }
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

const DISK: &[&str] = &["size", "firmware", "bootloader", "filesystem", "formats"];

impl Cx<'_> {
    pub(super) fn disk(&mut self, node: &Node) -> Disk {
        let mut disk = Disk {
            span: node.span,
            ..Disk::default()
        };
        let Some(f) = self.map(node, "disk", DISK) else {
            return disk;
        };
        if let Some(n) = f.get("size")
            && let Some(t) = self.text(n, &f.path("size"), "a size like 8GiB")
        {
            match check::size(&t.value) {
                Ok(v) => disk.size = Some(v),
                Err(p) => self.problem(&f.path("size"), t.span, p),
            }
        }
        if let Some(n) = f.get("firmware") {
            disk.firmware = self
                .choice(n, &f.path("firmware"), "firmware", Firmware::ALL)
                .unwrap_or_default();
        }
        if let Some(n) = f.get("bootloader") {
            disk.bootloader = self
                .choice(n, &f.path("bootloader"), "bootloader", Bootloader::ALL)
                .unwrap_or_default();
        }
        if let Some(n) = f.get("filesystem") {
            disk.filesystem = self
                .choice(n, &f.path("filesystem"), "filesystem", Filesystem::ALL)
                .unwrap_or_default();
        }
        let fpath = f.path("formats");
        for (i, n) in self.list(&f, "formats").iter().enumerate() {
            let ipath = index(&fpath, i);
            if let Some(fmt) = self.choice(n, &ipath, "disk format", Format::ALL) {
                if disk.formats.contains(&fmt) {
                    self.warn(
                        "DuplicateDiskFormat",
                        &ipath,
                        n.span,
                        Problem::new(format!("format `{fmt}` is listed more than once")),
                    );
                } else {
                    disk.formats.push(fmt);
                }
            }
        }
        disk
    }
}
