//! External tools as data (`Invocation`) and a small `Runner` trait that executes them, so the
//! sequence of tool calls a plan produces can be tested without the tools.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use crate::error::ConvertError;
use crate::formats::Format;
use crate::plan::DiskPlan;

/// One tool call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub program: String,
    pub args: Vec<OsString>,
    pub env: Vec<(String, String)>,
}

impl Invocation {
    pub fn new(program: &str) -> Invocation {
        Invocation {
            program: program.to_string(),
            args: Vec::new(),
            env: Vec::new(),
        }
    }
    pub fn arg(mut self, a: impl Into<OsString>) -> Self {
        self.args.push(a.into());
        self
    }
    pub fn env(mut self, k: &str, v: impl ToString) -> Self {
        self.env.push((k.to_string(), v.to_string()));
        self
    }
    pub fn display(&self) -> String {
        let mut s = self.program.clone();
        for a in &self.args {
            s.push(' ');
            s.push_str(&a.to_string_lossy());
        }
        s
    }
}

/// Feeds a child's stdin; returns an error to abort the child.
pub type Feed<'a> = &'a mut dyn FnMut(&mut dyn Write) -> Result<(), ConvertError>;

/// Executes invocations.
pub trait Runner {
    /// Runs to completion; returns stdout.
    fn run(&mut self, inv: &Invocation) -> Result<String, ConvertError>;
    /// Runs with `feed` writing the child's stdin. If `feed` fails the child is killed and
    /// `feed`'s error returned, unless the child failed first (then the child's error wins).
    fn run_fed(&mut self, inv: &Invocation, feed: Feed<'_>) -> Result<(), ConvertError>;
}

/// Size asked for the pipe feeding a tool's stdin (Linux's default pipe-max-size).
pub const PIPE_SIZE: usize = 1 << 20;
/// Writes to a tool's stdin are gathered up to this size (tar headers come 512 bytes at a time).
const FEED_BUFFER: usize = 256 << 10;

/// Runs the real tools.
#[derive(Debug, Default)]
pub struct SystemRunner;

fn command(inv: &Invocation) -> Command {
    let mut c = Command::new(&inv.program);
    c.args(&inv.args);
    for (k, v) in &inv.env {
        c.env(k, v);
    }
    c
}

fn failed(inv: &Invocation, status: std::process::ExitStatus, stderr: &[u8]) -> ConvertError {
    ConvertError::Tool {
        tool: inv.program.clone(),
        command: inv.display(),
        status: status.to_string(),
        stderr: String::from_utf8_lossy(stderr).trim().to_string(),
    }
}

impl Runner for SystemRunner {
    fn run(&mut self, inv: &Invocation) -> Result<String, ConvertError> {
        let out = command(inv)
            .stdin(Stdio::null())
            .output()
            .map_err(|source| ConvertError::ToolMissing {
                tool: inv.program.clone(),
                source,
            })?;
        if !out.status.success() {
            let mut err = out.stderr;
            err.extend_from_slice(&out.stdout);
            return Err(failed(inv, out.status, &err));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn run_fed(&mut self, inv: &Invocation, feed: Feed<'_>) -> Result<(), ConvertError> {
        let mut child = command(inv)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| ConvertError::ToolMissing {
                tool: inv.program.clone(),
                source,
            })?;
        let mut stderr = child.stderr.take().expect("piped stderr");
        let reader = std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = stderr.read_to_end(&mut v);
            v
        });
        let stdin = child.stdin.take().expect("piped stdin");
        // A large pipe: readers such as libarchive read 4 KiB at a time, and a full 64 KiB
        // pipe wakes this writer for every page read. Best effort (pipe-max-size may be lower).
        let _ = rustix::pipe::fcntl_setpipe_size(&stdin, PIPE_SIZE);
        let mut stdin = std::io::BufWriter::with_capacity(FEED_BUFFER, stdin);
        let fed = feed(&mut stdin).and_then(|()| match stdin.flush() {
            // The child stopped reading (e.g. after the end-of-archive marker): its exit
            // status tells whether that was a failure.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            r => r.map_err(ConvertError::io(format!("writing to {}", inv.program))),
        });
        drop(stdin);
        if fed.is_err() {
            // The child may already have failed (e.g. a full filesystem): prefer its message.
            if let Ok(Some(status)) = child.try_wait()
                && !status.success()
            {
                let err = reader.join().unwrap_or_default();
                return Err(failed(inv, status, &err));
            }
            let _ = child.kill();
        }
        let status = child
            .wait()
            .map_err(ConvertError::io("waiting for a tool"))?;
        let err = reader.join().unwrap_or_default();
        fed?;
        if !status.success() {
            return Err(failed(inv, status, &err));
        }
        Ok(())
    }
}

fn env_epoch(inv: Invocation, epoch: i64) -> Invocation {
    inv.env("SOURCE_DATE_EPOCH", epoch)
        .env("E2FSPROGS_FAKE_TIME", epoch)
        .env("MTOOLS_SKIP_CHECK", 1)
}

/// `mke2fs` writing the root filesystem straight into the disk image at the root partition's
/// offset, populated from `source` (a directory, or `-` for a tar stream on stdin).
///
/// `SOURCE_DATE_EPOCH` is deliberately not passed: e2fsprogs ≥ 1.47.1 clamps every file's
/// mtime to it. `E2FSPROGS_FAKE_TIME` fixes the filesystem's own timestamps; a streamed tar
/// carries each file's ctime/atime in PAX headers (`tar::stream_with_times`), an extracted one
/// gets them from a debugfs pass afterwards (see `rootfs`).
pub fn mke2fs(plan: &DiskPlan, disk: &Path, source: &Path) -> Invocation {
    let r = &plan.root;
    Invocation::new("mke2fs")
        .env("E2FSPROGS_FAKE_TIME", plan.epoch)
        .env("MKE2FS_CONFIG", "/dev/null")
        // libarchive (tar input) refuses non-ASCII names outside a UTF-8 locale.
        .env("LC_ALL", "C.UTF-8")
        .arg("-q")
        .arg("-F")
        .arg("-t")
        .arg("ext4")
        .arg("-b")
        .arg("4096")
        .arg("-I")
        .arg("256")
        .arg("-i")
        .arg("16384")
        .arg("-O")
        .arg("has_journal,extent,huge_file,flex_bg,metadata_csum,64bit,dir_nlink,extra_isize")
        .arg("-L")
        .arg(crate::plan::ROOT_LABEL)
        .arg("-U")
        .arg(plan.ids.root_fs.to_string())
        .arg("-E")
        .arg(format!(
            "offset={},root_owner=0:0,hash_seed={},lazy_itable_init=0,lazy_journal_init=0",
            r.offset, plan.ids.root_hash_seed
        ))
        .arg("-d")
        .arg(source)
        .arg(disk)
        .arg(format!("{}k", r.size / 1024))
}

/// `debugfs` commands replacing `/etc/fstab` with `staged` (owned by root, mode 0644).
pub fn fstab_commands(plan: &DiskPlan, staged: &Path) -> String {
    let t = plan.epoch;
    format!(
        "rm /etc/fstab\nwrite {} /etc/fstab\n\
         sif /etc/fstab uid 0\nsif /etc/fstab gid 0\nsif /etc/fstab mode 0100644\n\
         sif /etc/fstab mtime @{t}\nsif /etc/fstab atime @{t}\nsif /etc/fstab ctime @{t}\n\
         sif /etc/fstab crtime @{t}\n\
         sif /etc mtime @{t}\nsif /etc atime @{t}\nsif /etc ctime @{t}\n",
        staged.display()
    )
}

/// `path?offset=N`: how libext2fs tools address a filesystem inside a disk image.
pub fn ext2_spec(disk: &Path, offset: u64) -> OsString {
    let mut s = disk.as_os_str().to_os_string();
    s.push(format!("?offset={offset}"));
    s
}

pub fn debugfs_write(plan: &DiskPlan, disk: &Path, commands: &Path) -> Invocation {
    env_epoch(Invocation::new("debugfs"), plan.epoch)
        .arg("-w")
        .arg("-f")
        .arg(commands)
        .arg(ext2_spec(disk, plan.root.offset))
}

pub fn debugfs_stat(plan: &DiskPlan, disk: &Path, path: &str) -> Invocation {
    Invocation::new("debugfs")
        .arg("-R")
        .arg(format!("stat {path}"))
        .arg(ext2_spec(disk, plan.root.offset))
}

pub fn debugfs_cat(plan: &DiskPlan, disk: &Path, path: &str) -> Invocation {
    Invocation::new("debugfs")
        .arg("-R")
        .arg(format!("cat {path}"))
        .arg(ext2_spec(disk, plan.root.offset))
}

/// `mkfs.fat` creating the ESP inside the disk image.
pub fn mkfs_fat(plan: &DiskPlan, disk: &Path) -> Invocation {
    env_epoch(Invocation::new("mkfs.fat"), plan.epoch)
        .arg("-F")
        .arg("32")
        .arg("-S")
        .arg("512")
        .arg("-s")
        .arg("1")
        .arg("--mbr=n")
        .arg("-i")
        .arg(format!("{:08x}", plan.ids.esp_volume_id))
        .arg("-n")
        .arg(crate::plan::ESP_LABEL)
        .arg(format!("--offset={}", plan.esp.offset / 512))
        .arg(disk)
        .arg((plan.esp.size / 1024).to_string())
}

/// `mcopy` copying staged top-level entries (recursively) into the ESP.
pub fn mcopy(plan: &DiskPlan, disk: &Path, items: &[std::path::PathBuf]) -> Invocation {
    let mut image = disk.as_os_str().to_os_string();
    image.push(format!("@@{}", plan.esp.offset));
    let mut inv = env_epoch(Invocation::new("mcopy"), plan.epoch)
        .arg("-s")
        .arg("-m")
        .arg("-Q")
        .arg("-i")
        .arg(image);
    for i in items {
        inv = inv.arg(i);
    }
    inv.arg("::/")
}

/// `qemu-img convert` from the raw disk to `format`.
pub fn qemu_convert(raw: &Path, format: Format, out: &Path) -> Invocation {
    let mut inv = Invocation::new("qemu-img")
        .arg("convert")
        .arg("-f")
        .arg("raw")
        .arg("-O")
        .arg(format.qemu_format());
    if let Some(o) = format.qemu_options() {
        inv = inv.arg("-o").arg(o);
    }
    inv.arg(raw).arg(out)
}

/// The Compute Engine archive: `disk.raw` from `dir` in a GNU (oldgnu) tar, holes kept, gzip
/// without a name or time, every stored time `epoch`.
pub fn gce_tar(dir: &Path, out: &Path, epoch: i64) -> Invocation {
    Invocation::new("tar")
        .arg("--format=oldgnu")
        .arg("--sparse")
        .arg("--use-compress-program=gzip -n")
        .arg(format!("--mtime=@{epoch}"))
        .arg("--owner=0")
        .arg("--group=0")
        .arg("--numeric-owner")
        .arg("-cf")
        .arg(out)
        .arg("-C")
        .arg(dir)
        .arg("disk.raw")
}

/// Lists a Compute Engine archive (`tar -tvzf`).
pub fn gce_list(path: &Path) -> Invocation {
    Invocation::new("tar").arg("-tvzf").arg(path)
}

pub fn qemu_check(path: &Path, format: Format) -> Invocation {
    Invocation::new("qemu-img")
        .arg("check")
        .arg("-f")
        .arg(format.qemu_format())
        .arg(path)
}

pub fn qemu_info(path: &Path, format: Format) -> Invocation {
    Invocation::new("qemu-img")
        .arg("info")
        .arg("--output=json")
        .arg("-f")
        .arg(format.qemu_format())
        .arg(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{DEFAULT_ESP_SIZE, GIB};

    #[test]
    fn mke2fs_targets_the_root_partition() {
        let p = DiskPlan::new("n", "s", 2 * GIB, DEFAULT_ESP_SIZE, 42);
        let inv = mke2fs(&p, Path::new("/o/d.raw"), Path::new("-"));
        let s = inv.display();
        assert!(s.contains(&format!("-U {}", p.ids.root_fs)), "{s}");
        assert!(s.contains(&format!("offset={},", 257 * 1024 * 1024)), "{s}");
        assert!(
            s.contains(&format!("hash_seed={}", p.ids.root_hash_seed)),
            "{s}"
        );
        assert!(
            s.ends_with(&format!("-d - /o/d.raw {}k", p.root.size / 1024)),
            "{s}"
        );
        assert!(
            inv.env
                .contains(&("E2FSPROGS_FAKE_TIME".into(), "42".into()))
        );
    }

    #[test]
    fn esp_tools_target_the_esp() {
        let p = DiskPlan::new("n", "s", 2 * GIB, DEFAULT_ESP_SIZE, 42);
        let s = mkfs_fat(&p, Path::new("d.raw")).display();
        assert!(s.ends_with("--offset=2048 d.raw 262144"), "{s}");
        let s = mcopy(&p, Path::new("d.raw"), &["st/EFI".into()]).display();
        assert!(s.ends_with("-i d.raw@@1048576 st/EFI ::/"), "{s}");
    }

    #[test]
    fn encodings() {
        let s = qemu_convert(Path::new("a"), Format::Vhd, Path::new("b")).display();
        assert_eq!(
            s,
            "qemu-img convert -f raw -O vpc -o subformat=fixed,force_size=on a b"
        );
        let s = qemu_convert(Path::new("a"), Format::Vmdk, Path::new("b")).display();
        assert_eq!(
            s,
            "qemu-img convert -f raw -O vmdk -o subformat=streamOptimized a b"
        );
    }
}
