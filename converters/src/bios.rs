//! BIOS boot with GRUB for i386-pc, installed without root, loop devices or mounts.
//!
//! What `grub-install` would do on a GPT disk, done as data:
//! ```text
//! LBA 0                 boot.img (the node's), its first 440 bytes; KERNEL_SECTOR (0x5c) = the
//!                       first LBA of core.img, BOOT_DRIVE (0x64) = 0xff (use the drive the BIOS
//!                       passed), DRIVE_CHECK (0x66) = two NOPs (a hard disk); the disk signature
//!                       and the protective partition entry stay as the GPT writer made them
//! BIOS boot partition   core.img (the node's grub-mkimage over the node's modules, run through
//!                       the node's own dynamic loader); the block list at the end of its first
//!                       sector (diskboot.img) points at the rest of it
//! ```
//! core.img embeds the modules it needs and a config for GRUB's rescue parser that finds the
//! ESP by its FAT volume id and boots the same kernel and initrd systemd-boot boots, with the
//! same command line. Nothing is read from the root filesystem, so GRUB never has to
//! understand the ext4 features mke2fs enabled.

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::error::ConvertError;
use crate::gpt::SECTOR;

use crate::plan::DiskPlan;
use crate::tools::{Invocation, Runner};

/// GRUB's i386-pc directory in the node (package grub-pc-bin).
pub const GRUB_DIR: &str = "usr/lib/grub/i386-pc";
/// The node's grub-mkimage (package grub-common).
pub const GRUB_MKIMAGE: &str = "usr/bin/grub-mkimage";
/// Modules embedded in core.img: enough to read the GPT and the ESP and boot Linux.
pub const MODULES: [&str; 7] = [
    "biosdisk",
    "part_gpt",
    "fat",
    "search_fs_uuid",
    "linux",
    "boot",
    "echo",
];
/// Where the dynamic loader of an x86-64 node may be, merged /usr first.
const LOADERS: [&str; 3] = [
    "usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
    "usr/lib64/ld-linux-x86-64.so.2",
    "lib64/ld-linux-x86-64.so.2",
];
const LIBRARY_DIRS: [&str; 4] = [
    "usr/lib/x86_64-linux-gnu",
    "lib/x86_64-linux-gnu",
    "usr/lib64",
    "usr/lib",
];

/// GRUB for i386-pc as found in a node's rootfs directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grub {
    pub root: PathBuf,
    pub loader: PathBuf,
    pub mkimage: PathBuf,
    pub modules: PathBuf,
    pub boot_img: PathBuf,
}

/// A regular file at `rel` in `root`, following links inside the root (an absolute link is
/// taken relative to the root, as it would be in the node).
fn in_root(root: &Path, rel: &str) -> Option<PathBuf> {
    let mut cur = root.to_path_buf();
    let mut parts: Vec<String> = rel.split('/').rev().map(str::to_string).collect();
    let mut hops = 0;
    while let Some(p) = parts.pop() {
        match p.as_str() {
            "" | "." => continue,
            ".." => {
                if cur != root {
                    cur.pop();
                }
                continue;
            }
            _ => {}
        }
        let next = cur.join(&p);
        let meta = std::fs::symlink_metadata(&next).ok()?;
        if meta.file_type().is_symlink() {
            hops += 1;
            if hops > 40 {
                return None;
            }
            let target = std::fs::read_link(&next).ok()?;
            let t = target.to_string_lossy().into_owned();
            if t.starts_with('/') {
                cur = root.to_path_buf();
            }
            parts.extend(t.split('/').rev().map(str::to_string));
        } else {
            cur = next;
        }
    }
    std::fs::metadata(&cur).ok()?.is_file().then_some(cur)
}

impl Grub {
    /// Finds GRUB for i386-pc and what runs grub-mkimage in the rootfs directory `root`.
    pub fn find(root: &Path) -> Result<Grub, ConvertError> {
        let missing = |what: &'static str| ConvertError::NoGrub { what };
        let boot_img = in_root(root, &format!("{GRUB_DIR}/boot.img")).ok_or(missing(
            "/usr/lib/grub/i386-pc/boot.img (package grub-pc-bin)",
        ))?;
        in_root(root, &format!("{GRUB_DIR}/kernel.img")).ok_or(missing(
            "/usr/lib/grub/i386-pc/kernel.img (package grub-pc-bin)",
        ))?;
        let mkimage = in_root(root, GRUB_MKIMAGE)
            .ok_or(missing("/usr/bin/grub-mkimage (package grub-common)"))?;
        let loader = LOADERS
            .iter()
            .find_map(|l| in_root(root, l))
            .ok_or(missing("an x86-64 dynamic loader (ld-linux-x86-64.so.2)"))?;
        Ok(Grub {
            root: root.to_path_buf(),
            loader,
            mkimage,
            modules: root.join(GRUB_DIR),
            boot_img,
        })
    }

    /// The node's grub-mkimage, run through the node's loader and libraries (no chroot), making
    /// core.img from the node's modules with `config` embedded.
    pub fn mkimage(&self, config: &Path, out: &Path) -> Invocation {
        let libs: Vec<String> = LIBRARY_DIRS
            .iter()
            .map(|d| self.root.join(d).to_string_lossy().into_owned())
            .collect();
        let mut inv = Invocation::new(&self.loader.to_string_lossy())
            .arg("--library-path")
            .arg(libs.join(":"))
            .arg(&self.mkimage)
            .arg("--format=i386-pc")
            .arg("--directory")
            .arg(&self.modules)
            .arg("--prefix=/boot/grub")
            .arg("--config")
            .arg(config)
            .arg("--output")
            .arg(out);
        for m in MODULES {
            inv = inv.arg(m);
        }
        inv
    }
}

const KERNEL_SECTOR: usize = 0x5c;
const BOOT_DRIVE: usize = 0x64;
const DRIVE_CHECK: usize = 0x66;
/// Boot code ends where the disk signature starts.
pub const BOOT_CODE_END: usize = 0x1b8;
/// The block list of diskboot.img: the last 12 bytes of core.img's first sector.
const BLOCKLIST: usize = 0x200 - 12;
/// Where diskboot.img loads the rest of core.img (its default block list segment).
const CORE_SEGMENT: u16 = 0x820;

/// The MBR boot code: boot.img with core.img's LBA patched in, `BOOT_CODE_END` bytes.
pub fn boot_code(boot_img: &[u8], core_lba: u64) -> Result<Vec<u8>, String> {
    if boot_img.len() != 512 || boot_img[510..512] != [0x55, 0xaa] {
        return Err(format!(
            "boot.img is {} bytes without the 0x55aa signature, expected GRUB's 512-byte i386-pc boot sector",
            boot_img.len()
        ));
    }
    let mut code = boot_img[..BOOT_CODE_END].to_vec();
    code[KERNEL_SECTOR..KERNEL_SECTOR + 8].copy_from_slice(&core_lba.to_le_bytes());
    code[BOOT_DRIVE] = 0xff;
    code[DRIVE_CHECK] = 0x90;
    code[DRIVE_CHECK + 1] = 0x90;
    Ok(code)
}

/// Points core.img's block list at its own sectors after the first, for core.img written at
/// `core_lba` into a partition of `max_sectors` sectors. Returns the padded image.
pub fn place_core(core: &[u8], core_lba: u64, max_sectors: u64) -> Result<Vec<u8>, String> {
    let sectors = core.len().div_ceil(512) as u64;
    if sectors < 2 {
        return Err(format!("core.img is {} bytes, too small", core.len()));
    }
    if sectors > max_sectors || sectors - 1 > u64::from(u16::MAX) {
        return Err(format!(
            "core.img is {} bytes, more than the {} KiB BIOS boot partition holds",
            core.len(),
            max_sectors / 2
        ));
    }
    let mut img = core.to_vec();
    img.resize(sectors as usize * 512, 0);
    let seg = u16::from_le_bytes([img[BLOCKLIST + 10], img[BLOCKLIST + 11]]);
    if seg != CORE_SEGMENT {
        return Err(format!(
            "core.img's block list segment is {seg:#x}, expected {CORE_SEGMENT:#x}: not a GRUB i386-pc core.img made from diskboot.img"
        ));
    }
    img[BLOCKLIST..BLOCKLIST + 8].copy_from_slice(&(core_lba + 1).to_le_bytes());
    img[BLOCKLIST + 8..BLOCKLIST + 10].copy_from_slice(&((sectors - 1) as u16).to_le_bytes());
    Ok(img)
}

/// Reads back what [`boot_code`] and [`place_core`] wrote: the LBA of core.img in the MBR and
/// the block list in core.img's first sector. Returns (core LBA, start, sectors).
pub fn read_back(mbr: &[u8], core_first: &[u8]) -> (u64, u64, u16) {
    let mut lba = [0u8; 8];
    lba.copy_from_slice(&mbr[KERNEL_SECTOR..KERNEL_SECTOR + 8]);
    let mut start = [0u8; 8];
    start.copy_from_slice(&core_first[BLOCKLIST..BLOCKLIST + 8]);
    (
        u64::from_le_bytes(lba),
        u64::from_le_bytes(start),
        u16::from_le_bytes([core_first[BLOCKLIST + 8], core_first[BLOCKLIST + 9]]),
    )
}

/// GRUB's two images for a disk, made from the node's GRUB and kept in the work directory (so
/// the rootfs they came from may go away before the disk is finished).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrubImages {
    pub core_img: PathBuf,
    pub boot_img: PathBuf,
}

/// Makes core.img for `plan` with the node's grub-mkimage (its config: [`DiskPlan::grub_config`])
/// and copies the node's boot.img beside it, into `work`.
pub fn make_images(
    plan: &DiskPlan,
    grub: &Grub,
    work: &Path,
    runner: &mut dyn Runner,
) -> Result<GrubImages, ConvertError> {
    let config = plan.grub_config.as_ref().ok_or_else(|| {
        ConvertError::Options(format!(
            "firmware {} has no GRUB config in the plan",
            plan.firmware
        ))
    })?;
    let cfg = work.join("grub-embedded.cfg");
    let images = GrubImages {
        core_img: work.join("core.img"),
        boot_img: work.join("boot.img"),
    };
    fs::write(&cfg, config).map_err(ConvertError::io("staging GRUB's config"))?;
    runner.run(&grub.mkimage(&cfg, &images.core_img))?;
    fs::copy(&grub.boot_img, &images.boot_img).map_err(ConvertError::io(format!(
        "copying {}",
        grub.boot_img.display()
    )))?;
    Ok(images)
}

/// Installs GRUB for BIOS on the raw disk `raw` laid out by `plan` (GPT already written): writes
/// core.img into the BIOS boot partition and boot.img's code into the MBR, then reads both back.
pub fn install(plan: &DiskPlan, images: &GrubImages, raw: &Path) -> Result<(), ConvertError> {
    let verr = |what: String| ConvertError::Verify {
        path: raw.to_path_buf(),
        what,
    };
    let Some(part) = &plan.bios_boot else {
        return Err(ConvertError::Options(format!(
            "firmware {} has no BIOS boot partition in the plan",
            plan.firmware
        )));
    };
    let core = fs::read(&images.core_img).map_err(ConvertError::io("reading core.img"))?;
    let boot_img = fs::read(&images.boot_img).map_err(ConvertError::io("reading boot.img"))?;
    let lba = part.offset / SECTOR;
    let code = boot_code(&boot_img, lba).map_err(|e| verr(e.to_string()))?;
    let core = place_core(&core, lba, part.size / SECTOR).map_err(verr)?;
    let mut f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(raw)
        .map_err(ConvertError::io("opening the disk image"))?;
    let write = |f: &mut fs::File, off: u64, data: &[u8]| {
        f.seek(SeekFrom::Start(off))
            .and_then(|_| f.write_all(data))
            .map_err(ConvertError::io("writing GRUB"))
    };
    write(&mut f, 0, &code)?;
    write(&mut f, part.offset, &core)?;
    f.sync_data().map_err(ConvertError::io("writing GRUB"))?;
    let mut mbr = vec![0u8; 512];
    let mut first = vec![0u8; 512];
    f.seek(SeekFrom::Start(0))
        .and_then(|_| f.read_exact(&mut mbr))
        .and_then(|_| f.seek(SeekFrom::Start(part.offset)))
        .and_then(|_| f.read_exact(&mut first))
        .map_err(ConvertError::io("reading GRUB back"))?;
    let sectors = (core.len() / 512) as u16;
    if read_back(&mbr, &first) != (lba, lba + 1, sectors - 1) || mbr[510..] != [0x55, 0xaa] {
        return Err(verr(format!(
            "GRUB reads back as core.img at {:?}, expected at LBA {lba} with {} more sectors",
            read_back(&mbr, &first),
            sectors - 1
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boot_img() -> Vec<u8> {
        let mut b: Vec<u8> = (0..512).map(|i| (i % 251) as u8).collect();
        b[510] = 0x55;
        b[511] = 0xaa;
        b
    }

    #[test]
    fn boot_code_patches_the_core_lba_and_keeps_the_rest() {
        let b = boot_img();
        let code = boot_code(&b, 2048).unwrap();
        assert_eq!(code.len(), 0x1b8);
        assert_eq!(&code[0x5c..0x64], &2048u64.to_le_bytes());
        assert_eq!(code[0x64], 0xff);
        assert_eq!(&code[0x66..0x68], &[0x90, 0x90]);
        assert_eq!(&code[..0x5c], &b[..0x5c]);
        assert_eq!(&code[0x68..], &b[0x68..0x1b8]);
        let mut short = b.clone();
        short[511] = 0;
        assert!(boot_code(&short, 1).unwrap_err().contains("0x55aa"));
    }

    #[test]
    fn core_block_list_points_past_its_first_sector() {
        let mut core = vec![0u8; 3 * 512 + 100];
        core[0x1fe..0x200].copy_from_slice(&0x820u16.to_le_bytes());
        let img = place_core(&core, 2048, 2048).unwrap();
        assert_eq!(img.len(), 4 * 512);
        let mut mbr = vec![0u8; 512];
        mbr[..0x1b8].copy_from_slice(&boot_code(&boot_img(), 2048).unwrap());
        assert_eq!(read_back(&mbr, &img[..512]), (2048, 2049, 3));
        assert_eq!(&img[0x1fe..0x200], &0x820u16.to_le_bytes());
        assert!(
            place_core(&core, 2048, 3)
                .unwrap_err()
                .contains("BIOS boot partition")
        );
        core[0x1fe] = 0;
        assert!(
            place_core(&core, 2048, 2048)
                .unwrap_err()
                .contains("segment")
        );
    }

    #[test]
    fn links_resolve_inside_the_root() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::create_dir_all(r.join("usr/lib/x86_64-linux-gnu")).unwrap();
        std::fs::write(
            r.join("usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"),
            b"ld",
        )
        .unwrap();
        std::os::unix::fs::symlink("usr/lib", r.join("lib")).unwrap();
        std::fs::create_dir_all(r.join("lib64")).unwrap();
        std::os::unix::fs::symlink(
            "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
            r.join("lib64/ld-linux-x86-64.so.2"),
        )
        .unwrap();
        assert_eq!(
            in_root(r, "lib64/ld-linux-x86-64.so.2").unwrap(),
            r.join("usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")
        );
        std::os::unix::fs::symlink("../../../../etc/passwd", r.join("escape")).unwrap();
        assert!(in_root(r, "escape").is_none());
        let e = Grub::find(r).unwrap_err().to_string();
        assert!(e.contains("grub-pc-bin"), "{e}");
    }
}
