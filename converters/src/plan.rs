//! The disk plan: everything about the disk decided as data before any tool runs.
//!
//! Layout (all boundaries 1 MiB aligned):
//! ```text
//! 0      protective MBR, primary GPT
//! 1 MiB  ESP   FAT32, systemd-boot + kernel + initrd + loader entries
//! …      root  ext4, label "root", the node's rootfs
//! -1 MiB backup GPT (in the last MiB)
//! ```
//! With BIOS boot (firmware `bios` or `hybrid`) a 1 MiB BIOS boot partition holding GRUB's
//! core.img comes first, at 1 MiB, and the ESP and root move up by 1 MiB; it is the third entry
//! of the table, so the ESP stays partition 1 and root partition 2 whatever the firmware.

use std::fmt::Write as _;
use std::path::PathBuf;

use crate::arch::Arch;
use crate::error::ConvertError;
use crate::firmware::{self, Firmware};
use crate::gpt::{Gpt, GptPartition, Guid, SECTOR, TYPE_BIOS_BOOT, TYPE_ESP};
use crate::tar::Totals;

pub use nodestamp_contract::units::{GIB, MIB, human, size_arg};
/// Default size of the EFI system partition.
pub const DEFAULT_ESP_SIZE: u64 = 256 * MIB;
/// Filesystem label of the root partition.
pub const ROOT_LABEL: &str = "root";
/// Volume label of the ESP.
pub const ESP_LABEL: &str = "ESP";
/// Time used for everything the converter creates when `SOURCE_DATE_EPOCH` is not set:
/// 2024-01-01T00:00:00Z.
pub const DEFAULT_EPOCH: i64 = 1_704_067_200;

/// Identifiers of the disk, all derived from the seed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ids {
    pub disk: Guid,
    pub esp_partition: Guid,
    pub root_partition: Guid,
    pub root_fs: Guid,
    pub root_hash_seed: Guid,
    pub esp_volume_id: u32,
    pub bios_partition: Guid,
}

impl Ids {
    pub fn derive(seed: &str) -> Ids {
        let vol = Guid::derive(seed, "esp-volume-id").0;
        Ids {
            disk: Guid::derive(seed, "disk"),
            esp_partition: Guid::derive(seed, "esp-partition"),
            root_partition: Guid::derive(seed, "root-partition"),
            root_fs: Guid::derive(seed, "root-filesystem"),
            root_hash_seed: Guid::derive(seed, "root-hash-seed"),
            esp_volume_id: u32::from_be_bytes([vol[0], vol[1], vol[2], vol[3]]),
            bios_partition: Guid::derive(seed, "bios-boot-partition"),
        }
    }
}

/// One partition, in bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    pub name: &'static str,
    pub type_guid: Guid,
    pub guid: Guid,
    pub offset: u64,
    pub size: u64,
}

/// Where a file on the ESP comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EspSource {
    /// A file on the host (a file of the rootfs directory, or one captured from the tar).
    File(PathBuf),
    Text(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EspFile {
    /// Path inside the ESP, `/`-separated, no leading slash.
    pub path: String,
    pub source: EspSource,
}

/// The kernel, initrd and systemd-boot found in the rootfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootFiles {
    /// The architecture of the systemd-boot found: it decides the ESP's file names and the
    /// root partition type.
    pub arch: Arch,
    pub kernel_version: String,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    /// `None` when the rootfs has none (enough for firmware `bios`).
    pub systemd_boot: Option<PathBuf>,
    /// Contents of the rootfs's `/etc/kernel/cmdline`, if any.
    pub cmdline: Option<String>,
}

/// The whole disk as data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskPlan {
    pub name: String,
    pub size: u64,
    pub ids: Ids,
    pub esp: Partition,
    pub root: Partition,
    /// `/etc/fstab` of the node, matching `ids`.
    pub fstab: String,
    /// Seconds since the epoch for every timestamp the converter creates.
    pub epoch: i64,
    /// Filled by [`DiskPlan::with_boot`].
    pub esp_files: Vec<EspFile>,
    pub firmware: Firmware,
    /// The BIOS boot partition (GRUB's core.img), with firmware `bios` or `hybrid`.
    pub bios_boot: Option<Partition>,
    /// The config embedded in GRUB's core.img; filled by [`DiskPlan::with_boot`] for BIOS boot.
    pub grub_config: Option<String>,
}

impl DiskPlan {
    /// Lays out a disk of `size` bytes (a whole number of MiB, at least ESP + root minimum).
    /// The root partition has the x86-64 type until [`DiskPlan::with_boot`] sets the
    /// architecture of the boot files.
    pub fn new(name: &str, seed: &str, size: u64, esp_size: u64, epoch: i64) -> DiskPlan {
        let ids = Ids::derive(seed);
        let esp = Partition {
            name: "ESP",
            type_guid: TYPE_ESP,
            guid: ids.esp_partition,
            offset: MIB,
            size: esp_size,
        };
        let root_offset = MIB + esp_size;
        let root = Partition {
            name: "root",
            type_guid: Arch::X86_64.root_partition_type(),
            guid: ids.root_partition,
            offset: root_offset,
            size: size.saturating_sub(root_offset + MIB),
        };
        let fstab = format!(
            "# Written by nodestamp convert: the disk's partitions.\n\
             UUID={} / ext4 defaults,errors=remount-ro 0 1\n\
             PARTUUID={} /boot/efi vfat umask=0077,nofail 0 2\n",
            ids.root_fs, ids.esp_partition
        );
        DiskPlan {
            name: name.to_string(),
            size,
            ids,
            esp,
            root,
            fstab,
            epoch,
            esp_files: Vec::new(),
            firmware: Firmware::Uefi,
            bios_boot: None,
            grub_config: None,
        }
    }

    /// Lays the disk out for `firmware`: BIOS boot adds the BIOS boot partition at 1 MiB and
    /// moves the ESP and root up by its size (the disk keeps its size).
    pub fn with_firmware(mut self, firmware: Firmware) -> DiskPlan {
        if self.bios_boot.is_some() {
            self.esp.offset -= firmware::BIOS_BOOT_SIZE;
            self.root.offset -= firmware::BIOS_BOOT_SIZE;
            self.root.size += firmware::BIOS_BOOT_SIZE;
            self.bios_boot = None;
        }
        self.firmware = firmware;
        if firmware.bios() {
            self.bios_boot = Some(Partition {
                name: "BIOS boot",
                type_guid: TYPE_BIOS_BOOT,
                guid: self.ids.bios_partition,
                offset: MIB,
                size: firmware::BIOS_BOOT_SIZE,
            });
            self.esp.offset += firmware::BIOS_BOOT_SIZE;
            self.root.offset += firmware::BIOS_BOOT_SIZE;
            self.root.size = self.root.size.saturating_sub(firmware::BIOS_BOOT_SIZE);
        }
        self
    }

    pub fn gpt(&self) -> Gpt {
        let part = |p: &Partition| GptPartition {
            type_guid: p.type_guid,
            guid: p.guid,
            first_lba: p.offset / SECTOR,
            last_lba: (p.offset + p.size) / SECTOR - 1,
            name: p.name.to_string(),
        };
        Gpt {
            disk_guid: self.ids.disk,
            disk_sectors: self.size / SECTOR,
            partitions: [Some(&self.esp), Some(&self.root), self.bios_boot.as_ref()]
                .into_iter()
                .flatten()
                .map(part)
                .collect(),
        }
    }

    /// The kernel command line: `root=UUID=… rw` then the node's arguments.
    pub fn kernel_options(&self, args: &str) -> String {
        let args = args.split_whitespace().collect::<Vec<_>>().join(" ");
        let mut o = format!("root=UUID={} rw", self.ids.root_fs);
        if !args.is_empty() {
            o.push(' ');
            o.push_str(&args);
        }
        o
    }

    /// systemd-boot's `loader/loader.conf`.
    pub fn loader_conf(&self) -> String {
        format!("default {}.conf\ntimeout 0\neditor no\n", self.entry_id())
    }

    fn entry_id(&self) -> String {
        let id: String = self
            .name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        if id.is_empty() { "node".into() } else { id }
    }

    /// Adds the ESP contents: systemd-boot (as the removable-media default loader of its
    /// architecture and under `EFI/systemd`), the kernel and initrd, `loader.conf` and one boot
    /// entry, and gives the root partition its architecture's type (Discoverable Partitions
    /// Specification); for BIOS boot also the config GRUB's core.img embeds (the same kernel,
    /// initrd and command line). `kernel_arguments` wins over the rootfs's `/etc/kernel/cmdline`.
    /// UEFI boot needs systemd-boot in the rootfs; firmware `bios` leaves it out.
    pub fn with_boot(
        mut self,
        boot: &BootFiles,
        kernel_arguments: Option<&str>,
    ) -> Result<DiskPlan, ConvertError> {
        let args = kernel_arguments
            .map(str::to_string)
            .or_else(|| boot.cmdline.clone())
            .unwrap_or_default();
        let v = &boot.kernel_version;
        let id = self.entry_id();
        let mut entry = String::new();
        let _ = writeln!(entry, "title {}", self.name);
        let _ = writeln!(entry, "version {v}");
        let _ = writeln!(entry, "linux /{id}/vmlinuz-{v}");
        let _ = writeln!(entry, "initrd /{id}/initrd.img-{v}");
        let _ = writeln!(entry, "options {}", self.kernel_options(&args));
        let file = |path: String, p: &PathBuf| EspFile {
            path,
            source: EspSource::File(p.clone()),
        };
        self.root.type_guid = boot.arch.root_partition_type();
        if self.firmware.bios() && boot.arch != Arch::X86_64 {
            return Err(ConvertError::BiosNotX86 {
                firmware: self.firmware.as_str(),
                arch: boot.arch.oci_name(),
            });
        }
        let kernel = format!("{id}/vmlinuz-{v}");
        let initrd = format!("{id}/initrd.img-{v}");
        let mut files = Vec::new();
        if self.firmware.uefi() {
            let sd = boot
                .systemd_boot
                .as_ref()
                .ok_or(ConvertError::NoSystemdBoot)?;
            files.push(file(boot.arch.removable_loader(), sd));
            files.push(file(
                format!("EFI/systemd/{}", boot.arch.systemd_boot_name()),
                sd,
            ));
        }
        files.push(file(kernel.clone(), &boot.kernel));
        files.push(file(initrd.clone(), &boot.initrd));
        if self.firmware.uefi() {
            files.push(EspFile {
                path: "loader/loader.conf".into(),
                source: EspSource::Text(self.loader_conf()),
            });
            files.push(EspFile {
                path: format!("loader/entries/{id}.conf"),
                source: EspSource::Text(entry),
            });
        }
        self.esp_files = files;
        self.grub_config = self.firmware.bios().then(|| {
            firmware::embedded_config(
                self.ids.esp_volume_id,
                &kernel,
                &initrd,
                &self.kernel_options(&args),
            )
        });
        Ok(self)
    }
}

/// ext4 journal size mke2fs picks for a filesystem of `size` bytes (4 KiB blocks), rounded up.
fn journal_size(size: u64) -> u64 {
    let blocks = size / 4096;
    let jblocks = match blocks {
        b if b < 32 * 1024 => 1024,
        b if b < 256 * 1024 => 4096,
        b if b < 512 * 1024 => 8192,
        b if b < 4096 * 1024 => 16384,
        b if b < 8192 * 1024 => 32768,
        b if b < 16384 * 1024 => 65536,
        b if b < 32768 * 1024 => 131072,
        _ => 262144,
    };
    jblocks * 4096
}

/// Smallest root filesystem (bytes, whole MiB) that holds `totals`, with a small margin.
pub fn root_min_size(totals: &Totals) -> u64 {
    // Start from the data, add metadata, iterate because the overheads depend on the size.
    let data = totals.data_blocks_bytes + 64 * 4096; // root dir, lost+found, slack
    let mut size = data;
    for _ in 0..8 {
        let inode_tables = size / 64; // 256-byte inodes, one per 16 KiB
        let other_meta = size / 128 + 4 * MIB; // bitmaps, descriptors, extent blocks, dirs
        let next = data + inode_tables + other_meta + journal_size(size);
        // Enough inodes for every entry (one per 16 KiB, with 10% spare).
        let next = next.max(totals.entries * 16384 * 11 / 10);
        if next <= size {
            break;
        }
        size = next;
    }
    (size + size / 20).div_ceil(MIB) * MIB
}

/// Disk size for `totals` when the user gave none: content plus headroom for logs, container
/// images pulled at first boot and the like (25%, at least 512 MiB).
pub fn default_disk_size(totals: &Totals, esp_size: u64) -> u64 {
    let root = root_min_size(totals);
    let root = root + (root / 4).max(512 * MIB);
    disk_size_for_root(root, esp_size)
}

/// Space before the ESP that `firmware` needs besides the first MiB (the BIOS boot partition).
/// Sizing functions take it added to the ESP size.
pub fn boot_overhead(firmware: Firmware) -> u64 {
    if firmware.bios() {
        firmware::BIOS_BOOT_SIZE
    } else {
        0
    }
}

/// Whole-disk size needed for a root filesystem of `root` bytes.
pub fn disk_size_for_root(root: u64, esp_size: u64) -> u64 {
    (MIB + esp_size + root + MIB).div_ceil(MIB) * MIB
}

/// Checks a requested disk size against the content.
pub fn check_size(requested: u64, totals: &Totals, esp_size: u64) -> Result<(), ConvertError> {
    let needed = disk_size_for_root(root_min_size(totals), esp_size);
    if requested < needed {
        return Err(ConvertError::TooSmall { requested, needed });
    }
    Ok(())
}

/// Parses a size given to `option` with the spec's rules (bytes or a binary unit: `8GiB`,
/// `512MiB`; `8GB` and `10G` are refused with a help line) and rounds it up to a whole MiB.
pub fn parse_size(option: &'static str, s: &str) -> Result<u64, ConvertError> {
    let bytes = nodestamp_contract::units::parse_size(s)
        .map_err(|error| ConvertError::BadSize { option, error })?;
    bytes
        .checked_next_multiple_of(MIB)
        .ok_or_else(|| ConvertError::BadSize {
            option,
            error: nodestamp_contract::units::SizeError {
                message: format!("size {s:?} is too large"),
                help: None,
            },
        })
}

/// Compares kernel versions like `6.1.0-27-amd64` numerically where they are numbers.
pub fn version_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    fn chunks(s: &str) -> Vec<Result<u64, String>> {
        let mut out = Vec::new();
        let mut cur = String::new();
        let mut digits = false;
        for c in s.chars() {
            if c.is_ascii_digit() != digits && !cur.is_empty() {
                out.push(if digits {
                    Ok(cur.parse().unwrap_or(u64::MAX))
                } else {
                    Err(cur.clone())
                });
                cur.clear();
            }
            digits = c.is_ascii_digit();
            cur.push(c);
        }
        if !cur.is_empty() {
            out.push(if digits {
                Ok(cur.parse().unwrap_or(u64::MAX))
            } else {
                Err(cur)
            });
        }
        out
    }
    chunks(a).cmp(&chunks(b))
}

/// Picks the newest kernel that has an initrd. `kernels`/`initrds` are versions.
pub fn pick_kernel(kernels: &[String], initrds: &[String]) -> Result<String, ConvertError> {
    let mut ks: Vec<&String> = kernels.iter().collect();
    ks.sort_by(|a, b| version_cmp(b, a));
    let newest = ks.first().ok_or(ConvertError::NoKernel)?;
    if initrds.contains(newest) {
        Ok((*newest).clone())
    } else {
        Err(ConvertError::NoInitrd {
            version: (*newest).clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boot() -> BootFiles {
        BootFiles {
            arch: Arch::X86_64,
            kernel_version: "6.1.0-27-amd64".into(),
            kernel: "/r/boot/vmlinuz-6.1.0-27-amd64".into(),
            initrd: "/r/boot/initrd.img-6.1.0-27-amd64".into(),
            systemd_boot: Some("/r/usr/lib/systemd/boot/efi/systemd-bootx64.efi".into()),
            cmdline: Some("console=ttyS0 quiet\n".into()),
        }
    }

    #[test]
    fn layout_is_aligned_and_fills_the_disk() {
        let p = DiskPlan::new("node", "seed", 8 * GIB, DEFAULT_ESP_SIZE, DEFAULT_EPOCH);
        assert_eq!(p.esp.offset, MIB);
        assert_eq!(p.esp.size, 256 * MIB);
        assert_eq!(p.root.offset, 257 * MIB);
        assert_eq!(p.root.offset + p.root.size, 8 * GIB - MIB);
        let g = p.gpt();
        assert_eq!(g.partitions[0].first_lba, 2048);
        assert_eq!(g.partitions[1].last_lba, (8 * GIB - MIB) / 512 - 1);
        assert!(g.partitions[1].last_lba <= g.last_usable());
        assert_eq!(g.partitions[1].type_guid, crate::gpt::TYPE_ROOT_X86_64);
    }

    #[test]
    fn arm64_boot_files_give_arm64_names_and_root_type() {
        let boot = BootFiles {
            arch: Arch::Aarch64,
            kernel_version: "6.1.0-27-arm64".into(),
            kernel: "/r/boot/vmlinuz-6.1.0-27-arm64".into(),
            initrd: "/r/boot/initrd.img-6.1.0-27-arm64".into(),
            systemd_boot: Some("/r/usr/lib/systemd/boot/efi/systemd-bootaa64.efi".into()),
            cmdline: Some("console=ttyAMA0\n".into()),
        };
        let p = DiskPlan::new("n", "s", 2 * GIB, DEFAULT_ESP_SIZE, 0)
            .with_boot(&boot, None)
            .unwrap();
        let paths: Vec<&str> = p.esp_files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths[..4],
            [
                "EFI/BOOT/BOOTAA64.EFI",
                "EFI/systemd/systemd-bootaa64.efi",
                "n/vmlinuz-6.1.0-27-arm64",
                "n/initrd.img-6.1.0-27-arm64",
            ]
        );
        assert_eq!(
            p.esp_files[0].source,
            EspSource::File(boot.systemd_boot.clone().unwrap())
        );
        assert_eq!(p.root.type_guid, crate::gpt::TYPE_ROOT_ARM64);
        assert_eq!(p.gpt().partitions[1].type_guid, crate::gpt::TYPE_ROOT_ARM64);
        assert_eq!(p.gpt().partitions[0].type_guid, TYPE_ESP);
        // The same seed gives the same identifiers whatever the architecture.
        let x = DiskPlan::new("n", "s", 2 * GIB, DEFAULT_ESP_SIZE, 0)
            .with_boot(&super::tests::boot(), None)
            .unwrap();
        assert_eq!(x.ids, p.ids);
        assert_eq!(x.root.type_guid, crate::gpt::TYPE_ROOT_X86_64);
        // GRUB for i386-pc does not boot an arm64 disk.
        let e = DiskPlan::new("n", "s", 2 * GIB, DEFAULT_ESP_SIZE, 0)
            .with_firmware(Firmware::Hybrid)
            .with_boot(&boot, None)
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "firmware hybrid boots x86-64 disks only (GRUB for i386-pc), this rootfs is arm64: use firmware uefi"
        );
    }

    #[test]
    fn ids_depend_on_seed_only() {
        let a = DiskPlan::new("a", "s", 2 * GIB, DEFAULT_ESP_SIZE, 0);
        let b = DiskPlan::new("b", "s", 4 * GIB, DEFAULT_ESP_SIZE, 0);
        let c = DiskPlan::new("a", "t", 2 * GIB, DEFAULT_ESP_SIZE, 0);
        assert_eq!(a.ids, b.ids);
        assert_ne!(a.ids, c.ids);
        assert_ne!(a.ids.root_fs, a.ids.root_partition);
    }

    #[test]
    fn fstab_and_entries_match_ids() {
        let p = DiskPlan::new("my node", "s", 2 * GIB, DEFAULT_ESP_SIZE, 0)
            .with_boot(&boot(), None)
            .unwrap();
        assert!(p.fstab.contains(&format!("UUID={} / ext4", p.ids.root_fs)));
        assert!(
            p.fstab
                .contains(&format!("PARTUUID={} /boot/efi vfat", p.ids.esp_partition))
        );
        let paths: Vec<&str> = p.esp_files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "EFI/BOOT/BOOTX64.EFI",
                "EFI/systemd/systemd-bootx64.efi",
                "my-node/vmlinuz-6.1.0-27-amd64",
                "my-node/initrd.img-6.1.0-27-amd64",
                "loader/loader.conf",
                "loader/entries/my-node.conf",
            ]
        );
        let EspSource::Text(entry) = &p.esp_files[5].source else {
            panic!("entry is text")
        };
        assert_eq!(
            entry,
            &format!(
                "title my node\nversion 6.1.0-27-amd64\nlinux /my-node/vmlinuz-6.1.0-27-amd64\n\
                 initrd /my-node/initrd.img-6.1.0-27-amd64\n\
                 options root=UUID={} rw console=ttyS0 quiet\n",
                p.ids.root_fs
            )
        );
        let EspSource::Text(conf) = &p.esp_files[4].source else {
            panic!("loader.conf is text")
        };
        assert!(conf.starts_with("default my-node.conf\n"));
    }

    #[test]
    fn explicit_kernel_arguments_win() {
        let p = DiskPlan::new("n", "s", 2 * GIB, DEFAULT_ESP_SIZE, 0)
            .with_boot(&boot(), Some("console=tty0"))
            .unwrap();
        let EspSource::Text(entry) = &p.esp_files[5].source else {
            panic!()
        };
        assert!(entry.ends_with(" rw console=tty0\n"), "{entry}");
    }

    #[test]
    fn bios_boot_partition_comes_first_on_disk_and_last_in_the_table() {
        let u = DiskPlan::new("n", "s", 8 * GIB, DEFAULT_ESP_SIZE, 0);
        let h = u.clone().with_firmware(Firmware::Hybrid);
        let bb = h.bios_boot.clone().unwrap();
        assert_eq!((bb.offset, bb.size), (MIB, MIB));
        assert_eq!(h.esp.offset, 2 * MIB);
        assert_eq!(h.root.offset, 258 * MIB);
        assert_eq!(h.root.offset + h.root.size, 8 * GIB - MIB);
        let g = h.gpt();
        assert_eq!(g.partitions.len(), 3);
        assert_eq!(g.partitions[0].type_guid, TYPE_ESP);
        assert_eq!(g.partitions[1].type_guid, crate::gpt::TYPE_ROOT_X86_64);
        assert_eq!(g.partitions[2].type_guid, TYPE_BIOS_BOOT);
        assert_eq!(
            (g.partitions[2].first_lba, g.partitions[2].last_lba),
            (2048, 4095)
        );
        // Back to UEFI gives the UEFI layout again.
        assert_eq!(h.with_firmware(Firmware::Uefi), u);
        assert_eq!(boot_overhead(Firmware::Bios), MIB);
        assert_eq!(boot_overhead(Firmware::Uefi), 0);
    }

    #[test]
    fn bios_boot_files_and_grub_config() {
        let mut b = boot();
        b.systemd_boot = None;
        let p = DiskPlan::new("n", "s", 2 * GIB, DEFAULT_ESP_SIZE, 0)
            .with_firmware(Firmware::Bios)
            .with_boot(&b, None)
            .unwrap();
        let paths: Vec<&str> = p.esp_files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            ["n/vmlinuz-6.1.0-27-amd64", "n/initrd.img-6.1.0-27-amd64"]
        );
        let cfg = p.grub_config.clone().unwrap();
        assert!(
            cfg.contains(&format!(
                "linux /n/vmlinuz-6.1.0-27-amd64 root=UUID={} rw console=ttyS0 quiet\n",
                p.ids.root_fs
            )),
            "{cfg}"
        );
        assert!(cfg.contains(&firmware::fat_uuid(p.ids.esp_volume_id)));
        // Hybrid needs systemd-boot, and has both.
        let e = DiskPlan::new("n", "s", 2 * GIB, DEFAULT_ESP_SIZE, 0)
            .with_firmware(Firmware::Hybrid)
            .with_boot(&b, None)
            .unwrap_err();
        assert!(matches!(e, ConvertError::NoSystemdBoot));
        let h = DiskPlan::new("n", "s", 2 * GIB, DEFAULT_ESP_SIZE, 0)
            .with_firmware(Firmware::Hybrid)
            .with_boot(&boot(), None)
            .unwrap();
        assert_eq!(h.esp_files.len(), 6);
        assert!(h.grub_config.is_some());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("--size", "8GiB").unwrap(), 8 * GIB);
        assert_eq!(parse_size("--size", "512MiB").unwrap(), 512 * MIB);
        assert_eq!(parse_size("--size", "1024").unwrap(), MIB);
        for bad in ["big", "-1GiB", "5XB", "10G", "1.5GiB", "512M"] {
            assert!(parse_size("--size", bad).is_err(), "{bad}");
        }
        let e = parse_size("--size", "10G").unwrap_err().to_string();
        assert_eq!(
            e,
            "--size: expected a size in bytes or with a binary unit (KiB, MiB, GiB, TiB) like 8GiB, got \"10G\"\n  help: write 10GiB (10 × 2^30 bytes); decimal or ambiguous units like GB or G are not accepted, so 10^9 and 2^30 cannot be confused, and no space goes between number and unit"
        );
        assert_eq!(size_arg(3 * MIB + 1), "4MiB");
        assert_eq!(
            parse_size("--size", &size_arg(3 * MIB + 1)).unwrap(),
            4 * MIB
        );
        let t = Totals {
            bytes: 0,
            entries: 30_000,
            data_blocks_bytes: 900 * MIB,
        };
        let root = root_min_size(&t);
        assert!(root > 900 * MIB && root < 1200 * MIB, "{}", human(root));
        let err = check_size(GIB, &t, DEFAULT_ESP_SIZE)
            .unwrap_err()
            .to_string();
        assert!(err.contains("needs at least"), "{err}");
        assert!(check_size(4 * GIB, &t, DEFAULT_ESP_SIZE).is_ok());
        assert!(default_disk_size(&t, DEFAULT_ESP_SIZE) > root + DEFAULT_ESP_SIZE);
    }

    #[test]
    fn kernel_choice() {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            pick_kernel(
                &v(&["6.1.0-9-amd64", "6.1.0-27-amd64"]),
                &v(&["6.1.0-27-amd64"])
            )
            .unwrap(),
            "6.1.0-27-amd64"
        );
        assert!(matches!(
            pick_kernel(&v(&["6.1.0-27-amd64"]), &[]),
            Err(ConvertError::NoInitrd { .. })
        ));
        assert!(matches!(pick_kernel(&[], &[]), Err(ConvertError::NoKernel)));
    }
}
