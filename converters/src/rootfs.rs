//! Rootfs input: a directory, a tar file, or a tar stream; sizing, the root filesystem, and the
//! boot files (kernel, initrd, systemd-boot, `/etc/kernel/cmdline`) found on the way.

use std::fs::{self, File};
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::ConvertOptions;
use crate::arch::Arch;
use crate::error::ConvertError;
use crate::fill;
use crate::plan::{self, BootFiles, DiskPlan};
use crate::progress::Progress;
use crate::tar::{self as tarstream, Capture, Entry, EntryKind, Totals};
use crate::tools::{self, Invocation, Runner};
use nodestamp_contract::paths::{BUILD_JSON, PROVENANCE_FILES};

/// Where the rootfs comes from.
pub enum Input {
    Dir(PathBuf),
    TarFile(PathBuf),
    /// A tar stream, e.g. stdin of `docker buildx build -o type=tar,dest=- … | nodestamp convert -`.
    TarStream(Box<dyn Read + Send>),
}

impl std::fmt::Debug for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Input::Dir(p) => write!(f, "Dir({})", p.display()),
            Input::TarFile(p) => write!(f, "TarFile({})", p.display()),
            Input::TarStream(_) => f.write_str("TarStream"),
        }
    }
}

impl Input {
    /// `-` is stdin; a directory is a rootfs directory; anything else a tar file.
    pub fn from_arg(arg: &Path) -> Result<Input, ConvertError> {
        if arg == Path::new("-") {
            // A file redirected to stdin (`< rootfs.tar`) can be read again from its start.
            let stdin = io::stdin();
            let regular = rustix::fs::fstat(&stdin)
                .is_ok_and(|st| rustix::fs::FileType::from_raw_mode(st.st_mode).is_file());
            if regular && rustix::fs::seek(&stdin, rustix::fs::SeekFrom::Current(0)) == Ok(0) {
                return Ok(Input::TarFile(PathBuf::from("/dev/stdin")));
            }
            return Ok(Input::TarStream(Box::new(stdin)));
        }
        let m = fs::metadata(arg).map_err(|source| ConvertError::Input {
            path: arg.to_path_buf(),
            source,
        })?;
        Ok(if m.is_dir() {
            Input::Dir(arg.to_path_buf())
        } else {
            Input::TarFile(arg.to_path_buf())
        })
    }
}

/// How a tar input is turned into the root filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TarMode {
    /// `Stream` when the host's mke2fs reads tarballs (e2fsprogs ≥ 1.47.1 with libarchive),
    /// else `Extract`. `NODESTAMP_TAR_MODE=stream|extract` overrides.
    #[default]
    Auto,
    /// The tar goes straight into `mke2fs -d -`: one pass, ownership and times from the tar
    /// headers (ctime/atime added as PAX records).
    Stream,
    /// The tar is extracted to a scratch directory first (GNU tar), then `mke2fs -d <dir>`.
    /// Ownership is preserved when running as root.
    Extract,
    /// Needs root and a tar that can be read twice (a stream is spooled first): the tree is
    /// made without file contents, `mke2fs -d` builds it, and the contents are written
    /// straight into the blocks reserved for them (see `fill`). The default without a
    /// tar-reading mke2fs when running as root.
    Sparse,
}

impl TarMode {
    fn resolve(self, runner: &mut dyn Runner) -> TarMode {
        if self != TarMode::Auto {
            return self;
        }
        match std::env::var("NODESTAMP_TAR_MODE").as_deref() {
            Ok("stream") => return TarMode::Stream,
            Ok("extract") => return TarMode::Extract,
            Ok("sparse") => return TarMode::Sparse,
            _ => {}
        }
        static PROBE: OnceLock<bool> = OnceLock::new();
        if *PROBE.get_or_init(|| mke2fs_reads_tar(runner)) {
            TarMode::Stream
        } else if is_root() {
            TarMode::Sparse
        } else {
            TarMode::Extract
        }
    }
}

/// Tries `mke2fs -d -` with an empty tar on a scratch image.
fn mke2fs_reads_tar(runner: &mut dyn Runner) -> bool {
    let dir = std::env::temp_dir().join(format!("nodestamp-probe-{}", std::process::id()));
    if fs::create_dir_all(&dir).is_err() {
        return false;
    }
    let img = dir.join("probe.img");
    let ok = File::create(&img).and_then(|f| f.set_len(8 << 20)).is_ok()
        && runner
            .run_fed(
                &Invocation::new("mke2fs")
                    .arg("-q")
                    .arg("-F")
                    .arg("-t")
                    .arg("ext4")
                    .arg("-d")
                    .arg("-")
                    .arg(&img),
                &mut |w| w.write_all(&[0u8; 1024]).map_err(ConvertError::io("probe")),
            )
            .is_ok();
    let _ = fs::remove_dir_all(&dir);
    ok
}

pub(crate) struct Built {
    pub plan: DiskPlan,
    /// GRUB's images made from the node's GRUB, for BIOS boot.
    pub grub: Option<crate::bios::GrubImages>,
    pub input_bytes: u64,
    pub populate: &'static str,
    pub provenance: Provenance,
}

/// The rootfs's build provenance ([`PROVENANCE_FILES`]) as seen in a tar input, so that it
/// need not be read back from the finished disk.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Provenance {
    /// The contents of the last regular file at each path in the tar (`build.json` is there).
    Found {
        build: Vec<u8>,
        packages: Option<Vec<u8>>,
        components: Option<Vec<u8>>,
    },
    /// The tar has no `build.json`, nor a link at or on the way to one of the paths.
    Absent,
    /// Not known from the input (a directory input, or a link at or on the way to one of the
    /// paths): read it from the rootfs or the disk.
    #[default]
    Unknown,
}

/// Sizes the disk, creates the raw image, builds the root filesystem into it, finds the boot
/// files and returns the plan with its ESP contents.
#[allow(clippy::too_many_arguments)]
pub(crate) fn build(
    input: Input,
    opts: &ConvertOptions,
    seed: &str,
    epoch: i64,
    work: &Path,
    raw: &Path,
    runner: &mut dyn Runner,
    progress: &mut dyn Progress,
) -> Result<Built, ConvertError> {
    match input {
        Input::Dir(dir) => {
            progress.stage(&format!("scanning {}", dir.display()));
            let totals = scan_dir(&dir)?;
            let boot = boot_files_in_dir(&dir)?;
            let grub = if opts.firmware.bios() {
                Some(crate::bios::Grub::find(&dir)?)
            } else {
                None
            };
            let plan = plan_for(opts, seed, epoch, &totals)?
                .with_boot(&boot, opts.kernel_arguments.as_deref())?;
            let grub = match grub {
                Some(g) => {
                    progress.stage("making GRUB's core.img (the node's grub-mkimage)");
                    Some(crate::bios::make_images(&plan, &g, work, runner)?)
                }
                None => None,
            };
            create_raw(raw, plan.size)?;
            progress.stage("building the root filesystem (mke2fs -d <dir>)");
            run_mke2fs(
                runner,
                &tools::mke2fs(&plan, raw, &dir),
                &plan,
                &totals,
                None,
            )?;
            Ok(Built {
                plan,
                grub,
                input_bytes: totals.bytes,
                populate: "mke2fs -d <dir>",
                provenance: Provenance::Unknown,
            })
        }
        Input::TarFile(path) => {
            let open = || {
                File::open(&path).map_err(|source| ConvertError::Input {
                    path: path.clone(),
                    source,
                })
            };
            let len = open()?.metadata().map(|m| m.len()).ok();
            let totals = if opts.size.is_none() {
                progress.stage(&format!("scanning {}", path.display()));
                let mut on = |n| progress.bytes(n, len);
                tarstream::stream(
                    BufReader::with_capacity(1 << 20, open()?),
                    None,
                    &mut on,
                    &mut |_| Capture::Skip,
                )?
            } else {
                Totals::default()
            };
            from_tar(
                Box::new(open()?),
                Some(&|| Ok(Box::new(open()?) as Box<dyn Read + Send>)),
                len,
                Some(totals).filter(|_| opts.size.is_none()),
                opts,
                seed,
                epoch,
                work,
                raw,
                runner,
                progress,
            )
        }
        Input::TarStream(r) => {
            // The sparse mode reads the tar twice: a stream is spooled first.
            if opts.size.is_some() && opts.tar_mode.resolve(runner) != TarMode::Sparse {
                return from_tar(
                    r, None, None, None, opts, seed, epoch, work, raw, runner, progress,
                );
            }
            // Without a size the content must be measured first: spool the stream.
            progress.stage("reading the rootfs tar (no --size: measuring the content first)");
            let spool = work.join("rootfs.tar");
            let mut f = io::BufWriter::with_capacity(
                1 << 20,
                File::create(&spool).map_err(ConvertError::io("creating the spool file"))?,
            );
            let mut on = |n| progress.bytes(n, None);
            let totals = tarstream::stream(r, Some(&mut f), &mut on, &mut |_| Capture::Skip)?;
            f.flush()
                .map_err(ConvertError::io("writing the spool file"))?;
            drop(f);
            let reopen = || -> Result<Box<dyn Read + Send>, ConvertError> {
                Ok(Box::new(
                    File::open(&spool).map_err(ConvertError::io("reading the spool file"))?,
                ))
            };
            from_tar(
                reopen()?,
                Some(&reopen),
                Some(totals.bytes),
                Some(totals),
                opts,
                seed,
                epoch,
                work,
                raw,
                runner,
                progress,
            )
        }
    }
}

fn plan_for(
    opts: &ConvertOptions,
    seed: &str,
    epoch: i64,
    totals: &Totals,
) -> Result<DiskPlan, ConvertError> {
    let before_root = opts.esp_size + plan::boot_overhead(opts.firmware);
    let gce = opts.outputs.iter().any(|o| o.format == crate::Format::Gce);
    let size = match opts.size {
        Some(s) => {
            let s = s.div_ceil(plan::MIB) * plan::MIB;
            plan::check_size(s, totals, before_root)?;
            if gce && !s.is_multiple_of(plan::GIB) {
                return Err(ConvertError::Options(format!(
                    "format gce needs a disk size in whole GiB (Compute Engine's rule), got {}",
                    plan::size_arg(s)
                )));
            }
            s
        }
        // Compute Engine takes disks in whole GiB.
        None if gce => plan::default_disk_size(totals, before_root).next_multiple_of(plan::GIB),
        None => plan::default_disk_size(totals, before_root),
    };
    Ok(DiskPlan::new(&opts.name, seed, size, opts.esp_size, epoch).with_firmware(opts.firmware))
}

fn create_raw(raw: &Path, size: u64) -> Result<(), ConvertError> {
    let f = File::create(raw).map_err(ConvertError::io(format!("creating {}", raw.display())))?;
    f.set_len(size)
        .map_err(ConvertError::io(format!("sizing {}", raw.display())))
}

fn is_space_error(e: &ConvertError) -> bool {
    match e {
        ConvertError::Tool { stderr, .. } => {
            let s = stderr.to_ascii_lowercase();
            s.contains("could not allocate")
                || s.contains("no space")
                || s.contains("not enough space")
                || s.contains("no free space")
                || s.contains("inodes")
        }
        _ => false,
    }
}

fn too_small(plan: &DiskPlan, totals: &Totals, esp: u64) -> ConvertError {
    let estimate = plan::disk_size_for_root(plan::root_min_size(totals), esp);
    let needed = estimate.max((plan.size + plan.size / 4).div_ceil(plan::MIB) * plan::MIB);
    ConvertError::TooSmall {
        requested: plan.size,
        needed,
    }
}

fn run_mke2fs(
    runner: &mut dyn Runner,
    inv: &Invocation,
    plan: &DiskPlan,
    totals: &Totals,
    feed: Option<tools::Feed<'_>>,
) -> Result<(), ConvertError> {
    let r = match feed {
        Some(f) => runner.run_fed(inv, f),
        None => runner.run(inv).map(|_| ()),
    };
    r.map_err(|e| {
        if is_space_error(&e) {
            too_small(
                plan,
                totals,
                plan.esp.size + plan::boot_overhead(plan.firmware),
            )
        } else {
            e
        }
    })
}

/// Writes to the child until it fails, then keeps accepting (and dropping) bytes so the rest of
/// the stream can still be measured for the error message.
struct SoftSink<'a> {
    inner: &'a mut dyn Write,
    failed: bool,
}

impl Write for SoftSink<'_> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        if !self.failed && self.inner.write_all(b).is_err() {
            self.failed = true;
        }
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Boot files captured from a tar stream into `dir`.
struct Captured {
    dir: PathBuf,
    kernels: Vec<String>,
    initrds: Vec<String>,
    /// The architectures whose systemd-boot the rootfs has, in the order seen.
    systemd_boots: Vec<Arch>,
    cmdline: bool,
    /// debugfs commands for the extract path: ctime (and, when not root, ownership) as in
    /// the tar, which extraction cannot reproduce.
    fixups: Option<io::BufWriter<File>>,
    root: bool,
    /// What was seen at each of [`PROVENANCE_FILES`]: `Some(true)` a regular file (captured
    /// as `provenance-<i>.json`), `Some(false)` something else.
    provenance: [Option<bool>; 3],
    /// Something other than a directory on the way to them.
    provenance_blocked: bool,
}

impl Captured {
    fn visit(&mut self, e: &Entry) -> Capture {
        if let Some(w) = self.fixups.as_mut()
            && !e.path.contains(['"', '\n', '\\'])
            && e.kind != EntryKind::HardLink
        {
            let p = format!("\"/{}\"", e.path);
            let _ = writeln!(w, "sif {p} ctime @{0}\nsif {p} atime @{0}", e.mtime);
            if !self.root {
                let _ = writeln!(w, "sif {p} uid {}\nsif {p} gid {}", e.uid, e.gid);
            }
        }
        self.capture(e)
    }

    fn capture(&mut self, e: &Entry) -> Capture {
        if let Some(i) = PROVENANCE_FILES.iter().position(|p| *p == e.path) {
            let seen = &mut self.provenance[i];
            *seen = Some(e.kind == EntryKind::File && *seen != Some(false));
            if *seen == Some(true) {
                return match File::create(self.dir.join(format!("provenance-{i}.json"))) {
                    Ok(f) => Capture::To(Box::new(io::BufWriter::new(f))),
                    Err(_) => {
                        *seen = Some(false);
                        Capture::Skip
                    }
                };
            }
        } else if e.kind != EntryKind::Directory
            && BUILD_JSON
                .strip_prefix(e.path.as_str())
                .is_some_and(|rest| rest.starts_with('/'))
        {
            // A link (or file) where a directory on the way should be: only the finished
            // filesystem can tell what the paths lead to.
            self.provenance_blocked = true;
        }
        if e.kind != EntryKind::File {
            return Capture::Skip;
        }
        let name = if let Some(v) = e.path.strip_prefix("boot/vmlinuz-") {
            self.kernels.push(v.to_string());
            format!("vmlinuz-{v}")
        } else if let Some(v) = e.path.strip_prefix("boot/initrd.img-") {
            self.initrds.push(v.to_string());
            format!("initrd.img-{v}")
        } else if let Some(arch) = Arch::of_systemd_boot_path(&e.path) {
            if !self.systemd_boots.contains(&arch) {
                self.systemd_boots.push(arch);
            }
            arch.systemd_boot_name()
        } else if e.path == "etc/kernel/cmdline" {
            self.cmdline = true;
            "cmdline".to_string()
        } else {
            return Capture::Skip;
        };
        if name.contains('/') {
            return Capture::Skip;
        }
        match File::create(self.dir.join(&name)) {
            Ok(f) => Capture::To(Box::new(io::BufWriter::new(f))),
            Err(_) => Capture::Skip,
        }
    }

    /// Forgets what was seen, before the tar is read again.
    fn reset(&mut self) {
        self.kernels.clear();
        self.initrds.clear();
        self.systemd_boots.clear();
        self.cmdline = false;
        self.provenance = [None; 3];
        self.provenance_blocked = false;
    }

    fn provenance(&self) -> Provenance {
        if self.provenance_blocked || self.provenance.contains(&Some(false)) {
            return Provenance::Unknown;
        }
        let read = |i: usize| match self.provenance[i] {
            Some(true) => fs::read(self.dir.join(format!("provenance-{i}.json")))
                .map(Some)
                .map_err(|_| ()),
            _ => Ok(None),
        };
        match (read(0), read(1), read(2)) {
            (Ok(None), ..) => Provenance::Absent,
            (Ok(Some(build)), Ok(packages), Ok(components)) => Provenance::Found {
                build,
                packages,
                components,
            },
            _ => Provenance::Unknown,
        }
    }

    fn boot_files(&self) -> Result<BootFiles, ConvertError> {
        let v = plan::pick_kernel(&self.kernels, &self.initrds)?;
        // No systemd-boot: an x86-64 disk that can only boot with BIOS (checked by the plan).
        let (arch, systemd_boot) = if self.systemd_boots.is_empty() {
            (Arch::X86_64, None)
        } else {
            let arch = one_arch(&self.systemd_boots)?;
            (arch, Some(self.dir.join(arch.systemd_boot_name())))
        };
        Ok(BootFiles {
            arch,
            kernel: self.dir.join(format!("vmlinuz-{v}")),
            initrd: self.dir.join(format!("initrd.img-{v}")),
            kernel_version: v,
            systemd_boot,
            cmdline: if self.cmdline {
                fs::read_to_string(self.dir.join("cmdline")).ok()
            } else {
                None
            },
        })
    }
}

#[allow(clippy::too_many_arguments)]
fn from_tar(
    r: Box<dyn Read + Send>,
    reopen: Option<&dyn Fn() -> Result<Box<dyn Read + Send>, ConvertError>>,
    len: Option<u64>,
    totals: Option<Totals>,
    opts: &ConvertOptions,
    seed: &str,
    epoch: i64,
    work: &Path,
    raw: &Path,
    runner: &mut dyn Runner,
    progress: &mut dyn Progress,
) -> Result<Built, ConvertError> {
    let plan = plan_for(opts, seed, epoch, &totals.unwrap_or_default())?;
    create_raw(raw, plan.size)?;
    let boot_dir = work.join("boot");
    fs::create_dir_all(&boot_dir).map_err(ConvertError::io("creating the work directory"))?;
    let mut cap = Captured {
        dir: boot_dir,
        kernels: Vec::new(),
        initrds: Vec::new(),
        systemd_boots: Vec::new(),
        cmdline: false,
        fixups: None,
        root: is_root(),
        provenance: [None; 3],
        provenance_blocked: false,
    };
    let mut mode = opts.tar_mode.resolve(runner);
    if mode == TarMode::Sparse && reopen.is_none() {
        mode = TarMode::Extract;
    }
    // BIOS boot runs the node's grub-mkimage from the rootfs: the tar is unpacked for it.
    if opts.firmware.bios() {
        mode = TarMode::Extract;
    }
    let mut grub_images = None;
    // ctime and atime are each entry's mtime. Streamed, they travel in a PAX header per entry
    // (mke2fs's tar reader would otherwise leave zero), and ownership comes from the tar
    // headers. Extracted, they would be the extraction time: debugfs sets them afterwards,
    // and ownership too when extracting as non-root.
    let fixups_path = work.join("fixups.debugfs");
    if mode == TarMode::Extract {
        cap.fixups = Some(io::BufWriter::new(
            File::create(&fixups_path).map_err(ConvertError::io("creating the work directory"))?,
        ));
    }
    progress.stage(match mode {
        TarMode::Extract => "extracting the rootfs tar",
        TarMode::Sparse => "making the rootfs tree (without file contents)",
        _ => "building the root filesystem (tar → mke2fs -d -)",
    });
    let mut seen = Totals::default();
    let mut input = Some(BufReader::with_capacity(1 << 20, r));
    if mode == TarMode::Sparse {
        let reopen = reopen.ok_or_else(|| ConvertError::Options("tar cannot be re-read".into()))?;
        let input = input
            .take()
            .ok_or_else(|| ConvertError::Options("input consumed".into()))?;
        seen = sparse(
            input, reopen, len, &plan, work, raw, &mut cap, runner, progress,
        )?;
        let boot = cap.boot_files()?;
        return Ok(Built {
            plan: plan.with_boot(&boot, opts.kernel_arguments.as_deref())?,
            // BIOS boot takes the extract path above.
            grub: None,
            input_bytes: seen.bytes,
            populate: "tree without contents → mke2fs -d, contents written into their blocks",
            provenance: cap.provenance(),
        });
    }
    let mut feed = |w: &mut dyn Write| -> Result<(), ConvertError> {
        let mut sink = SoftSink {
            inner: w,
            failed: false,
        };
        let mut on = |n| progress.bytes(n, len);
        let input = input
            .take()
            .ok_or_else(|| ConvertError::Options("input consumed".into()))?;
        seen = if mode == TarMode::Extract {
            tarstream::stream(input, Some(&mut sink), &mut on, &mut |e| cap.visit(e))?
        } else {
            tarstream::stream_with_times(input, &mut sink, &mut on, &mut |e| cap.visit(e))?
        };
        Ok(())
    };
    let populate = match mode {
        TarMode::Stream | TarMode::Auto | TarMode::Sparse => {
            let inv = tools::mke2fs(&plan, raw, Path::new("-"));
            let r = runner.run_fed(&inv, &mut feed);
            if let Err(e) = r {
                if is_space_error(&e) {
                    return Err(too_small(
                        &plan,
                        &seen,
                        plan.esp.size + plan::boot_overhead(plan.firmware),
                    ));
                }
                return Err(e);
            }
            "tar → mke2fs -d - (streamed)"
        }
        TarMode::Extract => {
            let dir = work.join("rootfs");
            fs::create_dir_all(&dir).map_err(ConvertError::io("creating the work directory"))?;
            let mut inv = Invocation::new("tar")
                .arg("-x")
                .arg("-f")
                .arg("-")
                .arg("-C")
                .arg(&dir)
                .arg("--numeric-owner")
                .arg("-p")
                .arg("--xattrs")
                .arg("--xattrs-include=*");
            inv = if is_root() {
                inv.arg("--same-owner")
            } else {
                inv.arg("--no-same-owner")
            };
            runner.run_fed(&inv, &mut feed)?;
            progress.stage("building the root filesystem (mke2fs -d <dir>)");
            run_mke2fs(runner, &tools::mke2fs(&plan, raw, &dir), &plan, &seen, None)?;
            if opts.firmware.bios() {
                let grub = crate::bios::Grub::find(&dir)?;
                let with_boot = plan
                    .clone()
                    .with_boot(&cap.boot_files()?, opts.kernel_arguments.as_deref())?;
                progress.stage("making GRUB's core.img (the node's grub-mkimage)");
                grub_images = Some(crate::bios::make_images(&with_boot, &grub, work, runner)?);
            }
            let _ = fs::remove_dir_all(&dir);
            apply_fixups(&mut cap, &plan, raw, &fixups_path, runner, progress)?;
            "tar -x, then mke2fs -d <dir>"
        }
    };
    let boot = cap.boot_files()?;
    Ok(Built {
        plan: plan.with_boot(&boot, opts.kernel_arguments.as_deref())?,
        grub: grub_images,
        input_bytes: seen.bytes,
        populate,
        provenance: cap.provenance(),
    })
}

/// A fresh directory on the tmpfs at `/dev/shm`, if there is one.
fn shm_dir() -> Option<PathBuf> {
    let shm = Path::new("/dev/shm");
    let st = rustix::fs::statfs(shm).ok()?;
    // TMPFS_MAGIC
    if st.f_type as i64 != 0x0102_1994 {
        return None;
    }
    // Unique within the process too: conversions may run side by side.
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = shm.join(format!("nodestamp-tree-{}-{n}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir(&dir).ok()?;
    Some(dir)
}

/// Step 1 of `fill`: the tar's tree in `dir`, without file contents.
fn make_tree(
    dir: &Path,
    input: BufReader<Box<dyn Read + Send>>,
    len: Option<u64>,
    cap: &mut Captured,
    progress: &mut dyn Progress,
) -> Result<(fill::Skeleton, Totals), ConvertError> {
    let mut tree = fill::Skeleton::new(dir)?;
    let mut failed = None;
    let seen = {
        let mut on = |n| progress.bytes(n, len);
        tarstream::stream(input, None, &mut on, &mut |e| {
            if failed.is_none()
                && let Err(x) = tree.add(e)
            {
                failed = Some(x);
            }
            cap.capture(e)
        })?
    };
    if let Some(e) = failed {
        return Err(e);
    }
    tree.finish()?;
    Ok((tree, seen))
}

/// [`TarMode::Sparse`]: see `fill`.
#[allow(clippy::too_many_arguments)]
fn sparse(
    input: BufReader<Box<dyn Read + Send>>,
    reopen: &dyn Fn() -> Result<Box<dyn Read + Send>, ConvertError>,
    len: Option<u64>,
    plan: &DiskPlan,
    work: &Path,
    raw: &Path,
    cap: &mut Captured,
    runner: &mut dyn Runner,
    progress: &mut dyn Progress,
) -> Result<Totals, ConvertError> {
    // The tree holds no file contents: in memory (tmpfs) it costs a few MB, and creating
    // thousands of files there avoids the host filesystem's journal. On disk otherwise, or
    // when the tmpfs refuses an entry (say a `user.*` attribute on an older kernel).
    let mut input = Some(input);
    let mut dirs = vec![work.join("rootfs")];
    if let Some(shm) = shm_dir() {
        dirs.insert(0, shm);
    }
    let n = dirs.len();
    let mut made = None;
    for (i, dir) in dirs.into_iter().enumerate() {
        let dir = crate::TempPath::new(dir);
        let input = match input.take() {
            Some(r) => r,
            None => {
                cap.reset();
                BufReader::with_capacity(1 << 20, reopen()?)
            }
        };
        match make_tree(dir.path(), input, len, cap, progress) {
            Ok(t) => {
                made = Some((dir, t));
                break;
            }
            Err(ConvertError::TarEntry { .. }) if i + 1 < n => {}
            Err(e) => return Err(e),
        }
    }
    let (dir, (tree, seen)) =
        made.ok_or_else(|| ConvertError::Options("no directory for the rootfs tree".into()))?;
    progress.stage("building the root filesystem (mke2fs -d <tree>)");
    let built = run_mke2fs(
        runner,
        &tools::mke2fs(plan, raw, dir.path()),
        plan,
        &seen,
        None,
    );
    drop(dir);
    built?;
    progress.stage("writing the file contents into the root filesystem");
    let img = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(raw)
        .map_err(ConvertError::io("opening the disk image"))?;
    let map = fill::map_inodes(
        &fill::Ext4::open(&img, plan.root.offset)?,
        &tree.entries,
        tree.root_entry,
    )?;
    let cmds = work.join("fallocate.debugfs");
    fs::write(
        &cmds,
        fill::fallocate_commands(&map, &tree.entries, fill::BLOCK),
    )
    .map_err(ConvertError::io("staging debugfs commands"))?;
    runner.run(&tools::debugfs_write(plan, raw, &cmds))?;
    let mut extents = fill::fix_inodes(
        &fill::Ext4::open(&img, plan.root.offset)?,
        &map,
        &tree.entries,
    )
    .map_err(|e| {
        if is_space_error(&e) {
            too_small(plan, &seen, plan.esp.size)
        } else {
            e
        }
    })?;
    let mut id = 0u32;
    let mut failed = None;
    tarstream::stream(
        BufReader::with_capacity(1 << 20, reopen()?),
        None,
        &mut |_| {},
        &mut |_| {
            let this = id;
            id += 1;
            match extents.remove(&this).map(|x| (x, img.try_clone())) {
                Some((x, Ok(f))) => Capture::To(Box::new(fill::Placer::new(
                    f,
                    plan.root.offset,
                    fill::BLOCK,
                    x,
                ))),
                Some((_, Err(e))) => {
                    failed.get_or_insert(e);
                    Capture::Skip
                }
                None => Capture::Skip,
            }
        },
    )?;
    if let Some(e) = failed {
        return Err(ConvertError::io("opening the disk image")(e));
    }
    if !extents.is_empty() {
        return Err(ConvertError::Verify {
            path: raw.to_path_buf(),
            what: "the tar changed while it was read: some file contents were not found again"
                .into(),
        });
    }
    Ok(seen)
}

fn apply_fixups(
    cap: &mut Captured,
    plan: &DiskPlan,
    raw: &Path,
    commands: &Path,
    runner: &mut dyn Runner,
    progress: &mut dyn Progress,
) -> Result<(), ConvertError> {
    if let Some(mut w) = cap.fixups.take() {
        w.flush()
            .map_err(ConvertError::io("writing debugfs commands"))?;
        progress.stage("restoring tar timestamps (debugfs)");
        runner.run(&tools::debugfs_write(plan, raw, commands))?;
    }
    Ok(())
}

fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// Walks a rootfs directory (not following symlinks) and adds up what ext4 will need.
pub fn scan_dir(dir: &Path) -> Result<Totals, ConvertError> {
    let mut totals = Totals::default();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let rd = fs::read_dir(&d).map_err(|source| ConvertError::Input {
            path: d.clone(),
            source,
        })?;
        totals.add(&entry_of(
            &fs::symlink_metadata(&d).ok(),
            &d,
            EntryKind::Directory,
        ));
        for e in rd {
            let e = e.map_err(|source| ConvertError::Input {
                path: d.clone(),
                source,
            })?;
            let m = e.metadata().ok();
            let ft = m.as_ref().map(|m| m.file_type());
            let kind = match ft {
                Some(t) if t.is_dir() => {
                    stack.push(e.path());
                    continue;
                }
                Some(t) if t.is_file() => EntryKind::File,
                Some(t) if t.is_symlink() => EntryKind::Symlink,
                _ => EntryKind::Other,
            };
            let en = entry_of(&m, &e.path(), kind);
            totals.bytes += if kind == EntryKind::File { en.size } else { 0 };
            totals.add(&en);
        }
    }
    Ok(totals)
}

fn entry_of(m: &Option<fs::Metadata>, p: &Path, kind: EntryKind) -> Entry {
    let link = if kind == EntryKind::Symlink {
        fs::read_link(p)
            .map(|l| l.to_string_lossy().into_owned())
            .unwrap_or_default()
    } else {
        String::new()
    };
    Entry {
        path: String::new(),
        kind,
        size: m.as_ref().map(|m| m.len()).unwrap_or(0),
        mode: 0,
        uid: 0,
        gid: 0,
        mtime: 0,
        link,
        typeflag: 0,
        dev: (0, 0),
        xattrs: Vec::new(),
    }
}

/// A regular file at `rel` inside `root`, refusing anything that resolves outside the root.
fn file_in_root(root: &Path, rel: &str) -> Option<PathBuf> {
    let p = root.join(rel);
    let canon_root = fs::canonicalize(root).ok()?;
    let canon = fs::canonicalize(&p).ok()?;
    (canon.starts_with(&canon_root) && fs::metadata(&canon).ok()?.is_file()).then_some(canon)
}

/// The disk's architecture: the one systemd-boot was found for.
fn one_arch(found: &[Arch]) -> Result<Arch, ConvertError> {
    match found {
        [] => Err(ConvertError::NoSystemdBoot),
        [a] => Ok(*a),
        several => Err(ConvertError::SeveralSystemdBoots {
            found: several
                .iter()
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .map(|a| a.oci_name())
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// Finds the kernel, initrd, systemd-boot and `/etc/kernel/cmdline` in a rootfs directory.
pub fn boot_files_in_dir(root: &Path) -> Result<BootFiles, ConvertError> {
    let mut kernels = Vec::new();
    let mut initrds = Vec::new();
    if let Ok(rd) = fs::read_dir(root.join("boot")) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let regular = e.file_type().map(|t| t.is_file()).unwrap_or(false);
            if !regular {
                continue;
            }
            if let Some(v) = name.strip_prefix("vmlinuz-") {
                kernels.push(v.to_string());
            } else if let Some(v) = name.strip_prefix("initrd.img-") {
                initrds.push(v.to_string());
            }
        }
    }
    let v = plan::pick_kernel(&kernels, &initrds)?;
    let found: Vec<(Arch, PathBuf)> = Arch::ALL
        .into_iter()
        .filter_map(|a| file_in_root(root, &a.systemd_boot_path()).map(|p| (a, p)))
        .collect();
    // No systemd-boot: an x86-64 disk that can only boot with BIOS (checked by the plan).
    let (arch, systemd_boot) = if found.is_empty() {
        (Arch::X86_64, None)
    } else {
        let arch = one_arch(&found.iter().map(|(a, _)| *a).collect::<Vec<_>>())?;
        let sd = found
            .into_iter()
            .find_map(|(a, p)| (a == arch).then_some(p));
        (arch, sd)
    };
    let cmdline = file_in_root(root, "etc/kernel/cmdline").and_then(|p| fs::read_to_string(p).ok());
    Ok(BootFiles {
        arch,
        kernel: root.join("boot").join(format!("vmlinuz-{v}")),
        initrd: root.join("boot").join(format!("initrd.img-{v}")),
        kernel_version: v,
        systemd_boot,
        cmdline,
    })
}
