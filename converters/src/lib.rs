//! nodestamp converters: a node's rootfs (directory or tar stream) → bootable GPT disk images
//! (raw, qcow2, vmdk, vhd) without privileges, mounts, loop devices or a VM.
//!
//! ```text
//! input ──► DiskPlan (data: GPT, ESP files, fstab, loader entries)
//!       ──► raw image:  mke2fs -d (dir, or tar streamed on stdin) at the root offset
//!                       debugfs: /etc/fstab      mkfs.fat + mcopy at the ESP offset
//!                       GPT written by this crate
//!       ──► qemu-img convert / check per format ──► rename into place
//! ```
//! [`convert`] is the entry point; tools run through a [`tools::Runner`].

pub mod arch;
pub mod bios;
pub mod error;
pub mod fat;
mod fill;
pub mod firmware;
pub mod formats;
pub mod gpt;
pub mod images;
pub mod ova;
pub mod plan;
pub mod progress;
pub mod rootfs;
pub mod sysext;
pub mod tar;
pub mod tools;

use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

pub use arch::Arch;
pub use error::ConvertError;
pub use formats::Format;
pub use plan::DiskPlan;
use progress::Progress;
pub use rootfs::Provenance;
use rootfs::{Input, TarMode};
use tools::Runner;

/// One requested output file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputSpec {
    pub format: Format,
    pub path: PathBuf,
}

/// What to build. `Default` gives: name `node`, seed = name, size from the content, 256 MiB
/// ESP, kernel arguments from the rootfs's `/etc/kernel/cmdline`, `SOURCE_DATE_EPOCH` or
/// [`plan::DEFAULT_EPOCH`] for created timestamps.
#[derive(Debug, Clone)]
pub struct ConvertOptions {
    pub name: String,
    /// Seed for all UUIDs; defaults to `name`.
    pub seed: Option<String>,
    /// Whole-disk size in bytes (rounded up to a MiB); `None` = content + headroom.
    pub size: Option<u64>,
    pub esp_size: u64,
    /// Overrides the rootfs's `/etc/kernel/cmdline`.
    pub kernel_arguments: Option<String>,
    pub epoch: Option<i64>,
    pub outputs: Vec<OutputSpec>,
    /// How a tar input reaches mke2fs.
    pub tar_mode: TarMode,
    /// How the disk boots: UEFI (systemd-boot), BIOS (GRUB i386-pc) or both.
    pub firmware: firmware::Firmware,
}

impl Default for ConvertOptions {
    fn default() -> Self {
        ConvertOptions {
            name: "node".into(),
            seed: None,
            size: None,
            esp_size: plan::DEFAULT_ESP_SIZE,
            kernel_arguments: None,
            epoch: None,
            outputs: Vec::new(),
            tar_mode: TarMode::Auto,
            firmware: firmware::Firmware::Uefi,
        }
    }
}

/// What was built.
#[derive(Debug, Clone)]
pub struct ConvertReport {
    pub plan: DiskPlan,
    pub outputs: Vec<(OutputSpec, u64)>,
    /// Bytes of rootfs input read (tar bytes, or file bytes of a directory).
    pub input_bytes: u64,
    /// How the root filesystem was populated.
    pub populate: &'static str,
    /// The build provenance seen in a tar input.
    pub provenance: Provenance,
}

/// A path removed on drop unless kept.
pub(crate) struct TempPath {
    path: PathBuf,
    keep: bool,
}

impl TempPath {
    pub(crate) fn new(path: PathBuf) -> TempPath {
        TempPath { path, keep: false }
    }
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
    /// Renames into place.
    fn persist(mut self, to: &Path) -> Result<(), ConvertError> {
        fs::rename(&self.path, to)
            .map_err(ConvertError::io(format!("renaming into {}", to.display())))?;
        self.keep = true;
        Ok(())
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        if !self.keep {
            if self.path.is_dir() {
                let _ = fs::remove_dir_all(&self.path);
            } else {
                let _ = fs::remove_file(&self.path);
            }
        }
    }
}

fn temp_beside(target: &Path, tag: &str) -> Result<TempPath, ConvertError> {
    let dir = parent_dir(target);
    let base = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    let p = dir.join(format!(".{base}.{tag}-{}.tmp", std::process::id()));
    File::create(&p).map_err(|source| ConvertError::OutputDir {
        dir: dir.clone(),
        source,
    })?;
    Ok(TempPath::new(p))
}

fn parent_dir(p: &Path) -> PathBuf {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Converts `input` into every requested output. Nothing appears at an output path unless the
/// whole conversion succeeded and that output was verified.
pub fn convert(
    input: Input,
    opts: &ConvertOptions,
    runner: &mut dyn Runner,
    progress: &mut dyn Progress,
) -> Result<ConvertReport, ConvertError> {
    if opts.outputs.is_empty() {
        return Err(ConvertError::Options("no output requested".into()));
    }
    for (i, o) in opts.outputs.iter().enumerate() {
        if opts.outputs[..i].iter().any(|p| p.path == o.path) {
            return Err(ConvertError::Options(format!(
                "{} is requested twice",
                o.path.display()
            )));
        }
        if o.path.is_dir() {
            return Err(ConvertError::Options(format!(
                "output {} is a directory",
                o.path.display()
            )));
        }
    }
    let epoch = opts
        .epoch
        .or_else(|| {
            std::env::var("SOURCE_DATE_EPOCH")
                .ok()
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(plan::DEFAULT_EPOCH);
    let seed = opts.seed.clone().unwrap_or_else(|| opts.name.clone());

    // Temp files next to every output first: an unwritable directory fails before any work.
    let mut temps = Vec::new();
    for o in &opts.outputs {
        temps.push(temp_beside(&o.path, o.format.extension())?);
    }
    let first = &opts.outputs[0].path;
    let work = {
        let w = parent_dir(first).join(format!(".nodestamp-work-{}", std::process::id()));
        let _ = fs::remove_dir_all(&w);
        fs::create_dir(&w).map_err(|source| ConvertError::OutputDir {
            dir: parent_dir(first),
            source,
        })?;
        TempPath::new(w)
    };
    let raw_index = opts.outputs.iter().position(|o| o.format == Format::Raw);
    let scratch_raw;
    let raw_path: &Path = match raw_index {
        Some(i) => temps[i].path(),
        None => {
            scratch_raw = work.path().join("disk.raw");
            &scratch_raw
        }
    };

    // Root filesystem and boot files.
    let built = rootfs::build(
        input,
        opts,
        &seed,
        epoch,
        work.path(),
        raw_path,
        runner,
        progress,
    )?;
    let plan = built.plan;

    progress.stage("writing /etc/fstab");
    let fstab = work.path().join("fstab");
    fs::write(&fstab, &plan.fstab).map_err(ConvertError::io("staging fstab"))?;
    let cmds = work.path().join("fstab.debugfs");
    let has_etc = runner
        .run(&tools::debugfs_stat(&plan, raw_path, "/etc"))?
        .contains("Type: directory");
    let mut commands = tools::fstab_commands(&plan, &fstab);
    if !has_etc {
        commands.insert_str(0, "mkdir /etc\n");
    }
    fs::write(&cmds, commands).map_err(ConvertError::io("staging debugfs commands"))?;
    runner.run(&tools::debugfs_write(&plan, raw_path, &cmds))?;
    let back = runner.run(&tools::debugfs_cat(&plan, raw_path, "/etc/fstab"))?;
    if back != plan.fstab {
        return Err(ConvertError::Verify {
            path: raw_path.to_path_buf(),
            what: format!("/etc/fstab in the root filesystem reads back as {back:?}"),
        });
    }

    progress.stage("building the EFI system partition");
    build_esp(&plan, work.path(), raw_path, runner)?;

    progress.stage("writing the GPT");
    write_gpt(&plan, raw_path)?;
    verify_raw(&plan, raw_path)?;
    if let Some(grub) = &built.grub {
        progress.stage("installing GRUB for BIOS boot");
        bios::install(&plan, grub, raw_path)?;
    }

    let mut outputs = Vec::new();
    for (i, o) in opts.outputs.iter().enumerate() {
        if o.format == Format::Raw {
            continue;
        }
        progress.stage(&format!("writing {} ({})", o.path.display(), o.format));
        let tmp = temps[i].path();
        match o.format {
            Format::Ova => write_ova(&plan, work.path(), raw_path, tmp, runner)?,
            Format::Gce => write_gce(&plan, work.path(), raw_path, tmp, runner)?,
            _ => {
                runner.run(&tools::qemu_convert(raw_path, o.format, tmp))?;
                verify_encoded(&plan, tmp, o.format, runner)?;
            }
        }
    }
    // Everything verified: rename into place.
    for (i, (o, t)) in opts.outputs.iter().zip(temps).enumerate() {
        let len = fs::metadata(t.path()).map(|m| m.len()).unwrap_or(0);
        t.persist(&o.path)?;
        outputs.push((o.clone(), len));
        let _ = i;
    }
    drop(work);
    progress.finish(&format!(
        "done: {}",
        outputs
            .iter()
            .map(|(o, _)| o.path.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    Ok(ConvertReport {
        plan,
        outputs,
        input_bytes: built.input_bytes,
        populate: built.populate,
        provenance: built.provenance,
    })
}

/// The OVA: the streamOptimized vmdk made and checked like the `vmdk` format, packed with its
/// descriptor and manifest, then the whole package checked ([`ova::check`]).
fn write_ova(
    plan: &DiskPlan,
    work: &Path,
    raw: &Path,
    out: &Path,
    runner: &mut dyn Runner,
) -> Result<(), ConvertError> {
    let vmdk = TempPath::new(work.join(ova::disk_file_name("disk")));
    runner.run(&tools::qemu_convert(raw, Format::Vmdk, vmdk.path()))?;
    verify_encoded(plan, vmdk.path(), Format::Vmdk, runner)?;
    ova::write(
        out,
        &plan.name,
        vmdk.path(),
        plan.size,
        plan.firmware,
        plan.epoch,
    )
    .map_err(ConvertError::io(format!("writing {}", out.display())))?;
    let verr = |what: String| ConvertError::Verify {
        path: out.to_path_buf(),
        what,
    };
    let info = ova::check(out).map_err(verr)?;
    if info.capacity != plan.size || info.firmware != ova::vmware_firmware(plan.firmware) {
        return Err(verr(format!(
            "the OVA says {} bytes and firmware {}, the disk is {} bytes with firmware {}",
            info.capacity, info.firmware, plan.size, plan.firmware
        )));
    }
    Ok(())
}

/// The Compute Engine image: `disk.raw` alone in a gzipped GNU tar, holes kept (`tar -S`),
/// then listed back.
fn write_gce(
    plan: &DiskPlan,
    work: &Path,
    raw: &Path,
    out: &Path,
    runner: &mut dyn Runner,
) -> Result<(), ConvertError> {
    let dir = TempPath::new(work.join("gce"));
    fs::create_dir_all(dir.path()).map_err(ConvertError::io("staging disk.raw"))?;
    let disk = dir.path().join("disk.raw");
    if fs::hard_link(raw, &disk).is_err() {
        fs::copy(raw, &disk).map_err(ConvertError::io("staging disk.raw"))?;
    }
    runner.run(&tools::gce_tar(dir.path(), out, plan.epoch))?;
    let listing = runner.run(&tools::gce_list(out))?;
    let lines: Vec<&str> = listing.lines().collect();
    let expected = format!(" {} ", plan.size);
    if lines.len() != 1 || !lines[0].ends_with(" disk.raw") || !lines[0].contains(&expected) {
        return Err(ConvertError::Verify {
            path: out.to_path_buf(),
            what: format!(
                "expected disk.raw of {} bytes alone in the archive, tar lists {listing:?}",
                plan.size
            ),
        });
    }
    Ok(())
}

fn set_epoch(path: &Path, epoch: i64) -> Result<(), ConvertError> {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(epoch.max(0) as u64);
    let f = File::open(path).map_err(ConvertError::io(format!("opening {}", path.display())))?;
    f.set_times(fs::FileTimes::new().set_accessed(t).set_modified(t))
        .map_err(ConvertError::io(format!(
            "setting times of {}",
            path.display()
        )))
}

fn build_esp(
    plan: &DiskPlan,
    work: &Path,
    raw: &Path,
    runner: &mut dyn Runner,
) -> Result<(), ConvertError> {
    let stage = work.join("esp");
    let mut total = 0u64;
    let mut dirs = std::collections::BTreeSet::new();
    for f in &plan.esp_files {
        let dest = stage.join(&f.path);
        let parent = parent_dir(&dest);
        fs::create_dir_all(&parent).map_err(ConvertError::io("staging the ESP"))?;
        let mut d = parent.as_path();
        while d != stage && d.starts_with(&stage) {
            dirs.insert(d.to_path_buf());
            d = d.parent().unwrap_or(&stage);
        }
        match &f.source {
            plan::EspSource::File(src) => {
                fs::copy(src, &dest)
                    .map_err(ConvertError::io(format!("copying {}", src.display())))?;
            }
            plan::EspSource::Text(t) => {
                fs::write(&dest, t).map_err(ConvertError::io("staging the ESP"))?;
            }
        }
        total += fs::metadata(&dest)
            .map(|m| m.len().div_ceil(512) * 512)
            .unwrap_or(0);
        set_epoch(&dest, plan.epoch)?;
    }
    for d in dirs.iter().rev() {
        set_epoch(d, plan.epoch)?;
    }
    // FAT32 with 512-byte clusters: two FATs of 4 bytes per cluster, plus reserved sectors.
    let usable = plan.esp.size - plan.esp.size / 64 - plan::MIB;
    if total > usable {
        return Err(ConvertError::EspTooSmall {
            files: total,
            esp: plan.esp.size,
        });
    }
    runner.run(&tools::mkfs_fat(plan, raw))?;
    let mut items: Vec<PathBuf> = fs::read_dir(&stage)
        .map_err(ConvertError::io("reading the staged ESP"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    items.sort();
    runner.run(&tools::mcopy(plan, raw, &items))?;
    let mut f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(raw)
        .map_err(ConvertError::io("opening the disk image"))?;
    fat::normalize_times(&mut f, plan.esp.offset, plan.epoch)
        .map_err(ConvertError::io("normalising ESP timestamps"))
}

fn write_gpt(plan: &DiskPlan, raw: &Path) -> Result<(), ConvertError> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .open(raw)
        .map_err(ConvertError::io("opening the disk image"))?;
    for (off, data) in plan.gpt().writes() {
        f.seek(SeekFrom::Start(off))
            .and_then(|_| f.write_all(&data))
            .map_err(ConvertError::io("writing the GPT"))?;
    }
    f.sync_data().map_err(ConvertError::io("writing the GPT"))
}

fn verify_raw(plan: &DiskPlan, raw: &Path) -> Result<(), ConvertError> {
    let verr = |what: String| ConvertError::Verify {
        path: raw.to_path_buf(),
        what,
    };
    let mut f = File::open(raw).map_err(ConvertError::io("opening the disk image"))?;
    let len = f.metadata().map_err(ConvertError::io("disk image"))?.len();
    if len != plan.size {
        return Err(verr(format!("size {len}, planned {}", plan.size)));
    }
    let g = gpt::read(len, &mut |off, n| {
        let mut b = vec![0u8; n];
        f.seek(SeekFrom::Start(off))?;
        f.read_exact(&mut b)?;
        Ok(b)
    })
    .map_err(ConvertError::io("reading the GPT back"))?
    .map_err(|e| verr(e.to_string()))?;
    if g != plan.gpt() {
        return Err(verr("GPT reads back different from the plan".into()));
    }
    Ok(())
}

fn verify_encoded(
    plan: &DiskPlan,
    path: &Path,
    format: Format,
    runner: &mut dyn Runner,
) -> Result<(), ConvertError> {
    let verr = |what: String| ConvertError::Verify {
        path: path.to_path_buf(),
        what,
    };
    if format.checkable() {
        runner.run(&tools::qemu_check(path, format))?;
    }
    let info = runner.run(&tools::qemu_info(path, format))?;
    let v: serde_json::Value =
        serde_json::from_str(&info).map_err(|e| verr(format!("qemu-img info output: {e}")))?;
    if v["format"] != format.qemu_format() {
        return Err(verr(format!("qemu-img reports format {}", v["format"])));
    }
    if v["virtual-size"].as_u64() != Some(plan.size) {
        return Err(verr(format!(
            "virtual size {}, expected {}",
            v["virtual-size"], plan.size
        )));
    }
    if format == Format::Vhd {
        let mut f = File::open(path).map_err(ConvertError::io("opening the VHD"))?;
        let mut footer = vec![0u8; 512];
        f.seek(SeekFrom::End(-512))
            .and_then(|_| f.read_exact(&mut footer))
            .map_err(ConvertError::io("reading the VHD footer"))?;
        let size = formats::vhd_footer(&footer).map_err(verr)?;
        if size != plan.size {
            return Err(verr(format!(
                "VHD footer size {size}, expected {}",
                plan.size
            )));
        }
    }
    Ok(())
}
