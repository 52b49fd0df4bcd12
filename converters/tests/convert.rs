//! Artifact tests: a small synthetic rootfs (fixture kernel/initrd/systemd-boot files — not
//! bootable, structure only) converted to every format and checked with the standard tools:
//! `qemu-img check/info`, `sgdisk -v`, `e2fsck -fn` and `fsck.fat -n` on partitions cut out with
//! `dd`, the VHD footer checksum, round trips back to raw, and byte-identical repeat builds.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use nodestamp_converters::firmware::Firmware;
use nodestamp_converters::progress::Quiet;
use nodestamp_converters::rootfs::{Input, TarMode};
use nodestamp_converters::tools::SystemRunner;
use nodestamp_converters::{
    ConvertError, ConvertOptions, DiskPlan, Format, OutputSpec, Provenance, convert,
};

const FIXTURE_KERNEL_VERSION: &str = "6.1.0-fixture-amd64";

fn scratch(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("convert-{name}"));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

fn sh(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A synthetic rootfs. The "kernel", "initrd" and "systemd-boot" are fixture bytes.
fn fixture_rootfs(root: &Path, with_kernel: bool, with_initrd: bool, with_sdboot: bool) {
    let w = |p: &str, data: &[u8]| {
        let p = root.join(p);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, data).unwrap();
    };
    let v = FIXTURE_KERNEL_VERSION;
    if with_kernel {
        w(&format!("boot/vmlinuz-{v}"), &vec![0x4b; 300_000]);
    }
    if with_initrd {
        w(&format!("boot/initrd.img-{v}"), &vec![0x49; 500_000]);
    }
    if with_sdboot {
        w(
            "usr/lib/systemd/boot/efi/systemd-bootx64.efi",
            b"MZ fixture systemd-boot",
        );
    }
    w("etc/kernel/cmdline", b"console=ttyS0 fixture=1\n");
    w("etc/fstab", b"# placeholder fstab from the base image\n");
    w("etc/hostname", b"fixture\n");
    w("usr/bin/tool", b"#!/bin/sh\necho tool\n");
    fs::set_permissions(
        root.join("usr/bin/tool"),
        fs::Permissions::from_mode(0o4755),
    )
    .unwrap();
    for i in 0..200 {
        w(
            &format!("usr/share/doc/pkg{i}/README"),
            format!("doc {i}\n").repeat(i + 1).as_bytes(),
        );
    }
    w("var/lib/big.bin", &vec![7u8; 3 << 20]);
    symlink("usr/lib", root.join("lib")).unwrap();
    fs::create_dir_all(root.join("home/user")).unwrap();
    sh(Command::new("chown")
        .args(["-R", "1000:1000"])
        .arg(root.join("home/user")));
}

fn make_tar(root: &Path, tar: &Path) {
    sh(Command::new("tar")
        .arg("--numeric-owner")
        .arg("--sort=name")
        .arg("--mtime=@1700000000")
        .arg("-C")
        .arg(root)
        .arg("-cf")
        .arg(tar)
        .arg("."));
}

fn opts(outputs: Vec<OutputSpec>) -> ConvertOptions {
    ConvertOptions {
        name: "fixture".into(),
        size: Some(256 << 20 | 512 << 20),
        outputs,
        ..ConvertOptions::default()
    }
}

fn out(dir: &Path, f: Format) -> OutputSpec {
    OutputSpec {
        format: f,
        path: dir.join(format!("fixture.{}", f.extension())),
    }
}

/// Checks a raw disk: GPT, both filesystems, fstab and boot entry contents.
fn check_raw(raw: &Path, plan: &DiskPlan, work: &Path) {
    let v = sh(Command::new("sgdisk").arg("-v").arg(raw));
    assert!(v.contains("No problems found"), "sgdisk -v: {v}");
    let p = sh(Command::new("sgdisk").arg("-p").arg(raw));
    assert!(p.contains("EF00"), "{p}");
    let cut = |name: &str, off: u64, size: u64| {
        let part = work.join(name);
        sh(Command::new("dd")
            .arg(format!("if={}", raw.display()))
            .arg(format!("of={}", part.display()))
            .arg("bs=1M")
            .arg(format!("skip={}", off >> 20))
            .arg(format!("count={}", size >> 20))
            .arg("status=none"));
        part
    };
    let root = cut("root.img", plan.root.offset, plan.root.size);
    sh(Command::new("e2fsck").arg("-fn").arg(&root));
    let dump = |path: &str| {
        sh(Command::new("debugfs")
            .arg("-R")
            .arg(format!("cat {path}"))
            .arg(&root))
    };
    assert_eq!(dump("/etc/fstab"), plan.fstab);
    assert_eq!(dump("/etc/hostname"), "fixture\n");
    let stat = sh(Command::new("debugfs")
        .arg("-R")
        .arg("stat /home/user")
        .arg(&root));
    assert!(
        stat.contains("User:  1000   Group:  1000"),
        "ownership kept: {stat}"
    );
    let stat = sh(Command::new("debugfs")
        .arg("-R")
        .arg("stat /usr/bin/tool")
        .arg(&root));
    assert!(stat.contains("Mode:  04755"), "setuid kept: {stat}");
    let label = sh(Command::new("dumpe2fs").arg("-h").arg(&root));
    assert!(label.contains("Filesystem volume name:   root"), "{label}");
    assert!(label.contains(&plan.ids.root_fs.to_string()), "{label}");

    let esp = cut("esp.img", plan.esp.offset, plan.esp.size);
    sh(Command::new("fsck.fat").arg("-n").arg(&esp));
    let mtype = |p: &str| {
        sh(Command::new("mtype")
            .env("MTOOLS_SKIP_CHECK", "1")
            .arg("-i")
            .arg(&esp)
            .arg(format!("::{p}")))
    };
    assert_eq!(mtype("/EFI/BOOT/BOOTX64.EFI"), "MZ fixture systemd-boot");
    assert_eq!(
        mtype("/EFI/systemd/systemd-bootx64.efi"),
        "MZ fixture systemd-boot"
    );
    let entry = mtype("/loader/entries/fixture.conf");
    assert!(
        entry.contains(&format!(
            "options root=UUID={} rw console=ttyS0 fixture=1",
            plan.ids.root_fs
        )),
        "{entry}"
    );
    assert!(entry.contains(&format!("linux /fixture/vmlinuz-{FIXTURE_KERNEL_VERSION}")));
    let kernel = mtype(&format!("/fixture/vmlinuz-{FIXTURE_KERNEL_VERSION}"));
    assert_eq!(kernel.len(), 300_000);
}

/// atime, ctime and mtime (seconds) of `path` in an ext4 image.
fn times(root_img: &Path, path: &str) -> [i64; 3] {
    let stat = sh(Command::new("debugfs")
        .arg("-R")
        .arg(format!("stat {path}"))
        .arg(root_img));
    ["atime", "ctime", "mtime"].map(|k| {
        let at = stat
            .find(&format!(" {k}: 0x"))
            .unwrap_or_else(|| panic!("no {k} in {stat}"));
        let hex = &stat[at + k.len() + 5..];
        i64::from_str_radix(&hex[..hex.find(':').unwrap()], 16).unwrap()
    })
}

fn qemu_info(path: &Path, f: Format) -> serde_json::Value {
    serde_json::from_str(&sh(Command::new("qemu-img")
        .args(["info", "--output=json", "-f", f.qemu_format()])
        .arg(path)))
    .unwrap()
}

fn vhd_footer_ok(path: &Path) -> u64 {
    let data = fs::read(path).unwrap();
    let footer = &data[data.len() - 512..];
    assert_eq!(&footer[..8], b"conectix");
    // Own check: ones' complement of the byte sum with the checksum field skipped.
    let sum: u32 = footer
        .iter()
        .enumerate()
        .filter(|(i, _)| !(64..68).contains(i))
        .map(|(_, b)| u32::from(*b))
        .sum();
    assert_eq!(!sum, u32::from_be_bytes(footer[64..68].try_into().unwrap()));
    u64::from_be_bytes(footer[48..56].try_into().unwrap())
}

fn all_formats_from(input: impl Fn(&Path) -> Input, name: &str, mode: TarMode) {
    let dir = scratch(name);
    let rootfs = dir.join("rootfs");
    fixture_rootfs(&rootfs, true, true, true);
    let outs: Vec<_> = Format::ALL
        .iter()
        .map(|f| out(&dir.join("out"), *f))
        .collect();
    fs::create_dir_all(dir.join("out")).unwrap();
    let mut o = opts(outs.clone());
    o.tar_mode = mode;
    let report = convert(input(&dir), &o, &mut SystemRunner, &mut Quiet).unwrap();
    let plan = report.plan;
    let raw = dir.join("out/fixture.raw");
    assert_eq!(fs::metadata(&raw).unwrap().len(), plan.size);
    check_raw(&raw, &plan, &dir);
    if name != "dir" {
        // make_tar stamps every entry with 1700000000: ctime and atime follow mtime. (/etc
        // gets the epoch with the new fstab. The root directory's own times come from the tar
        // only when streamed: `mke2fs -d <dir>` leaves the root inode as it made it.)
        let streamed = report.populate.contains("streamed");
        let root: &[&str] = if streamed { &["/"] } else { &[] };
        let paths = ["/etc/hostname", "/usr/bin/tool", "/lib", "/var/lib/big.bin"];
        for p in root.iter().chain(&paths) {
            assert_eq!(
                times(&dir.join("root.img"), p),
                [1_700_000_000; 3],
                "{p}: atime, ctime, mtime ({:?})",
                report.populate
            );
        }
    }
    for f in [Format::Qcow2, Format::Vmdk, Format::Vhd] {
        let p = dir.join(format!("out/fixture.{}", f.extension()));
        let info = qemu_info(&p, f);
        assert_eq!(info["format"], f.qemu_format(), "{info}");
        assert_eq!(info["virtual-size"].as_u64(), Some(plan.size), "{info}");
        if f.checkable() {
            sh(Command::new("qemu-img").arg("check").arg(&p));
        }
        if f == Format::Vmdk {
            let desc = sh(Command::new("head").args(["-c", "2000"]).arg(&p));
            assert!(desc.contains("streamOptimized"), "vmdk subformat");
        }
        if f == Format::Vhd {
            assert_eq!(vhd_footer_ok(&p), plan.size);
            assert_eq!(plan.size % (1 << 20), 0, "VHD virtual size is whole MiB");
        }
        let back = dir.join(format!("back-{}.raw", f.extension()));
        sh(Command::new("qemu-img")
            .args(["convert", "-O", "raw", "-f", f.qemu_format()])
            .arg(&p)
            .arg(&back));
        sh(Command::new("cmp").arg(&back).arg(&raw));
        fs::remove_file(&back).unwrap();
    }
    let left: Vec<_> = fs::read_dir(dir.join("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
}

#[test]
fn directory_to_all_formats() {
    all_formats_from(|d| Input::Dir(d.join("rootfs")), "dir", TarMode::Auto);
}

#[test]
fn tar_file_to_all_formats() {
    all_formats_from(
        |d| {
            make_tar(&d.join("rootfs"), &d.join("rootfs.tar"));
            Input::TarFile(d.join("rootfs.tar"))
        },
        "tarfile",
        TarMode::Auto,
    );
}

#[test]
fn tar_stream_extract_mode_to_all_formats() {
    all_formats_from(
        |d| {
            make_tar(&d.join("rootfs"), &d.join("rootfs.tar"));
            Input::TarStream(Box::new(fs::File::open(d.join("rootfs.tar")).unwrap()))
        },
        "stream-extract",
        TarMode::Extract,
    );
}

#[test]
fn repeat_builds_are_byte_identical() {
    let dir = scratch("repeat");
    fixture_rootfs(&dir.join("rootfs"), true, true, true);
    make_tar(&dir.join("rootfs"), &dir.join("rootfs.tar"));
    let mut raws = Vec::new();
    for (i, input) in ["tar", "tar", "stream-nosize"].iter().enumerate() {
        let o = dir.join(format!("r{i}"));
        fs::create_dir_all(&o).unwrap();
        let mut op = opts(vec![out(&o, Format::Raw)]);
        let inp = match *input {
            "tar" => Input::TarFile(dir.join("rootfs.tar")),
            _ => {
                op.size = None;
                Input::TarStream(Box::new(fs::File::open(dir.join("rootfs.tar")).unwrap()))
            }
        };
        convert(inp, &op, &mut SystemRunner, &mut Quiet).unwrap();
        raws.push(o.join("fixture.raw"));
        std::thread::sleep(std::time::Duration::from_millis(1100));
    }
    sh(Command::new("cmp").arg(&raws[0]).arg(&raws[1]));
    // Without --size the disk is sized from the content: still a valid disk.
    let v = sh(Command::new("sgdisk").arg("-v").arg(&raws[2]));
    assert!(v.contains("No problems found"), "{v}");
}

#[test]
fn provenance_is_seen_on_the_way_in() {
    let dir = scratch("provenance");
    let root = dir.join("rootfs");
    fixture_rootfs(&root, true, true, true);
    make_tar(&root, &dir.join("plain.tar"));
    let nd = root.join("usr/lib/nodestamp");
    fs::create_dir_all(&nd).unwrap();
    fs::write(nd.join("build.json"), b"{\"name\": \"fixture\"}\n").unwrap();
    make_tar(&root, &dir.join("build.tar"));
    fs::write(nd.join("packages.json"), b"{\"manager\": \"dpkg\"}\n").unwrap();
    make_tar(&root, &dir.join("both.tar"));
    symlink("packages.json", nd.join("components.json")).unwrap();
    make_tar(&root, &dir.join("link.tar"));
    let run = |input: Input| {
        let o = dir.join("out");
        let _ = fs::remove_dir_all(&o);
        fs::create_dir_all(&o).unwrap();
        convert(
            input,
            &opts(vec![out(&o, Format::Raw)]),
            &mut SystemRunner,
            &mut Quiet,
        )
        .unwrap()
        .provenance
    };
    let build = b"{\"name\": \"fixture\"}\n".to_vec();
    assert_eq!(
        run(Input::TarFile(dir.join("build.tar"))),
        Provenance::Found {
            build: build.clone(),
            packages: None,
            components: None
        }
    );
    let both = Provenance::Found {
        build,
        packages: Some(b"{\"manager\": \"dpkg\"}\n".to_vec()),
        components: None,
    };
    assert_eq!(run(Input::TarFile(dir.join("both.tar"))), both);
    let stream = fs::File::open(dir.join("both.tar")).unwrap();
    assert_eq!(run(Input::TarStream(Box::new(stream))), both);
    assert_eq!(
        run(Input::TarFile(dir.join("plain.tar"))),
        Provenance::Absent
    );
    // A link: only the finished filesystem can tell what it leads to.
    assert_eq!(
        run(Input::TarFile(dir.join("link.tar"))),
        Provenance::Unknown
    );
    // A directory is read by the caller.
    assert_eq!(run(Input::Dir(root.clone())), Provenance::Unknown);
}

#[test]
fn seed_changes_uuids_only_where_expected() {
    let dir = scratch("seed");
    fixture_rootfs(&dir.join("rootfs"), true, true, true);
    let mut o = opts(vec![out(&dir, Format::Raw)]);
    o.seed = Some("other".into());
    let r = convert(
        Input::Dir(dir.join("rootfs")),
        &o,
        &mut SystemRunner,
        &mut Quiet,
    )
    .unwrap();
    let g = sh(Command::new("sgdisk")
        .arg("-p")
        .arg(dir.join("fixture.raw")));
    assert!(
        g.to_lowercase().contains(&r.plan.ids.disk.to_string()),
        "disk GUID from the seed: {g}"
    );
}

// ---- bad input: clear error, nothing at the output path ----

fn expect_failure(
    name: &str,
    input: impl FnOnce(&Path) -> Input,
    tweak: impl FnOnce(&mut ConvertOptions),
) -> (ConvertError, PathBuf) {
    let dir = scratch(name);
    let o = dir.join("out");
    fs::create_dir_all(&o).unwrap();
    let mut op = opts(vec![out(&o, Format::Qcow2), out(&o, Format::Raw)]);
    tweak(&mut op);
    let err = convert(input(&dir), &op, &mut SystemRunner, &mut Quiet).unwrap_err();
    let left: Vec<_> = fs::read_dir(&o)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        left.is_empty(),
        "{name}: files left in the output directory: {left:?}"
    );
    (err, dir)
}

#[test]
fn truncated_tar_is_an_error() {
    let (err, _) = expect_failure(
        "truncated",
        |d| {
            fixture_rootfs(&d.join("rootfs"), true, true, true);
            make_tar(&d.join("rootfs"), &d.join("rootfs.tar"));
            let data = fs::read(d.join("rootfs.tar")).unwrap();
            fs::write(d.join("cut.tar"), &data[..data.len() / 2 + 100]).unwrap();
            Input::TarStream(Box::new(fs::File::open(d.join("cut.tar")).unwrap()))
        },
        |_| {},
    );
    assert!(err.to_string().contains("truncated"), "{err}");
}

#[test]
fn garbage_is_not_a_tar() {
    let (err, _) = expect_failure(
        "garbage",
        |d| {
            fs::write(d.join("x.tar"), vec![b'x'; 10_000]).unwrap();
            Input::TarFile(d.join("x.tar"))
        },
        |_| {},
    );
    assert!(err.to_string().contains("not a tar archive"), "{err}");
}

#[test]
fn rootfs_without_kernel() {
    let (err, _) = expect_failure(
        "nokernel",
        |d| {
            fixture_rootfs(&d.join("rootfs"), false, false, true);
            Input::Dir(d.join("rootfs"))
        },
        |_| {},
    );
    assert!(matches!(err, ConvertError::NoKernel), "{err}");
    assert!(err.to_string().contains("/boot/vmlinuz-"), "{err}");
}

#[test]
fn rootfs_without_initrd_in_tar() {
    let (err, _) = expect_failure(
        "noinitrd",
        |d| {
            fixture_rootfs(&d.join("rootfs"), true, false, true);
            make_tar(&d.join("rootfs"), &d.join("rootfs.tar"));
            Input::TarStream(Box::new(fs::File::open(d.join("rootfs.tar")).unwrap()))
        },
        |_| {},
    );
    assert!(err.to_string().contains("no initrd"), "{err}");
}

#[test]
fn rootfs_without_systemd_boot() {
    let (err, _) = expect_failure(
        "nosdboot",
        |d| {
            fixture_rootfs(&d.join("rootfs"), true, true, false);
            Input::Dir(d.join("rootfs"))
        },
        |_| {},
    );
    assert!(err.to_string().contains("systemd-boot-efi"), "{err}");
}

#[test]
fn size_too_small_says_how_much_is_needed() {
    let (err, _) = expect_failure(
        "small",
        |d| {
            fixture_rootfs(&d.join("rootfs"), true, true, true);
            Input::Dir(d.join("rootfs"))
        },
        |o| o.size = Some(260 << 20),
    );
    let msg = err.to_string();
    assert!(
        msg.contains("too small") && msg.contains("needs at least"),
        "{msg}"
    );
}

#[test]
fn size_too_small_when_streaming() {
    // The estimate passes (size given, stream not measured up front); mke2fs runs out of space.
    let (err, _) = expect_failure(
        "small-stream",
        |d| {
            fixture_rootfs(&d.join("rootfs"), true, true, true);
            fs::write(d.join("rootfs/var/lib/huge.bin"), vec![1u8; 40 << 20]).unwrap();
            make_tar(&d.join("rootfs"), &d.join("rootfs.tar"));
            Input::TarStream(Box::new(fs::File::open(d.join("rootfs.tar")).unwrap()))
        },
        |o| o.size = Some(256 << 20 | 32 << 20),
    );
    let msg = err.to_string();
    assert!(
        msg.contains("too small") && msg.contains("needs at least"),
        "{msg}"
    );
}

#[test]
fn output_directory_not_writable() {
    let dir = scratch("ro");
    fixture_rootfs(&dir.join("rootfs"), true, true, true);
    let is_root = sh(Command::new("id").arg("-u")).trim() == "0";
    // root ignores permission bits: use a directory no one can create files in.
    let target = if is_root {
        PathBuf::from("/proc/sys")
    } else {
        let ro = dir.join("ro");
        fs::create_dir_all(&ro).unwrap();
        fs::set_permissions(&ro, fs::Permissions::from_mode(0o555)).unwrap();
        ro
    };
    let o = opts(vec![out(&target, Format::Qcow2)]);
    let err = convert(
        Input::Dir(dir.join("rootfs")),
        &o,
        &mut SystemRunner,
        &mut Quiet,
    )
    .unwrap_err();
    assert!(err.to_string().contains("is not writable"), "{err}");
    assert!(!target.join("fixture.qcow2").exists());
}

#[test]
fn unknown_format() {
    let err = "iso".parse::<Format>().unwrap_err();
    assert!(
        err.to_string().contains("unknown disk format \"iso\""),
        "{err}"
    );
}

// ---- architectures: the disk follows the architecture of the rootfs's systemd-boot ----

/// The fixture rootfs with an arm64 systemd-boot instead of the x86-64 one.
fn arm64_rootfs(root: &Path) {
    fixture_rootfs(root, true, true, false);
    fs::create_dir_all(root.join("usr/lib/systemd/boot/efi")).unwrap();
    fs::write(
        root.join("usr/lib/systemd/boot/efi/systemd-bootaa64.efi"),
        b"MZ fixture arm64 systemd-boot",
    )
    .unwrap();
}

fn arm64_disk_from(name: &str, input: impl FnOnce(&Path) -> Input) {
    let dir = scratch(name);
    arm64_rootfs(&dir.join("rootfs"));
    fs::create_dir_all(dir.join("out")).unwrap();
    let o = opts(vec![out(&dir.join("out"), Format::Raw)]);
    let report = convert(input(&dir), &o, &mut SystemRunner, &mut Quiet).unwrap();
    let raw = dir.join("out/fixture.raw");
    let part = sh(Command::new("sgdisk").args(["-i", "2"]).arg(&raw));
    assert!(
        part.contains("B921B045-1DF0-41C3-AF44-4C6F280D3FAE"),
        "root partition type is Linux root (arm64): {part}"
    );
    let esp = dir.join("esp.img");
    sh(Command::new("dd")
        .arg(format!("if={}", raw.display()))
        .arg(format!("of={}", esp.display()))
        .arg("bs=1M")
        .arg(format!("skip={}", report.plan.esp.offset >> 20))
        .arg(format!("count={}", report.plan.esp.size >> 20))
        .arg("status=none"));
    let mtype = |p: &str| {
        Command::new("mtype")
            .env("MTOOLS_SKIP_CHECK", "1")
            .arg("-i")
            .arg(&esp)
            .arg(format!("::{p}"))
            .output()
            .unwrap()
    };
    for p in [
        "/EFI/BOOT/BOOTAA64.EFI",
        "/EFI/systemd/systemd-bootaa64.efi",
    ] {
        let o = mtype(p);
        assert!(o.status.success(), "{p} on the ESP");
        assert_eq!(o.stdout, b"MZ fixture arm64 systemd-boot", "{p}");
    }
    for p in ["/EFI/BOOT/BOOTX64.EFI", "/EFI/systemd/systemd-bootx64.efi"] {
        assert!(!mtype(p).status.success(), "no {p} on an arm64 ESP");
    }
}

#[test]
fn arm64_directory_gives_an_arm64_disk() {
    arm64_disk_from("arm64-dir", |d| Input::Dir(d.join("rootfs")));
}

#[test]
fn arm64_tar_stream_gives_an_arm64_disk() {
    arm64_disk_from("arm64-tar", |d| {
        make_tar(&d.join("rootfs"), &d.join("rootfs.tar"));
        Input::TarStream(Box::new(fs::File::open(d.join("rootfs.tar")).unwrap()))
    });
}

#[test]
fn rootfs_with_systemd_boot_for_two_architectures() {
    for tar in [false, true] {
        let (err, _) = expect_failure(
            if tar {
                "two-sdboots-tar"
            } else {
                "two-sdboots-dir"
            },
            |d| {
                arm64_rootfs(&d.join("rootfs"));
                fs::write(
                    d.join("rootfs/usr/lib/systemd/boot/efi/systemd-bootx64.efi"),
                    b"MZ",
                )
                .unwrap();
                if tar {
                    make_tar(&d.join("rootfs"), &d.join("rootfs.tar"));
                    Input::TarFile(d.join("rootfs.tar"))
                } else {
                    Input::Dir(d.join("rootfs"))
                }
            },
            |_| {},
        );
        assert!(
            matches!(err, ConvertError::SeveralSystemdBoots { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("(amd64, arm64)"), "{err}");
    }
}

#[test]
fn tar_stream_sparse_mode_to_all_formats() {
    // A stream is spooled, then read twice: the tree without contents, then the contents.
    all_formats_from(
        |d| {
            make_tar(&d.join("rootfs"), &d.join("rootfs.tar"));
            Input::TarStream(Box::new(fs::File::open(d.join("rootfs.tar")).unwrap()))
        },
        "stream-sparse",
        TarMode::Sparse,
    );
}

/// The raw disk is a sparse file: what is allocated is at most the root filesystem's used
/// blocks plus the ESP (+10%), however large the disk.
#[test]
fn raw_output_keeps_unwritten_space_as_holes() {
    let dir = scratch("sparse-raw");
    fixture_rootfs(&dir.join("rootfs"), true, true, true);
    make_tar(&dir.join("rootfs"), &dir.join("rootfs.tar"));
    fs::create_dir_all(dir.join("out")).unwrap();
    let mut o = opts(vec![out(&dir.join("out"), Format::Raw)]);
    o.size = Some(2 << 30);
    let report = convert(
        Input::TarFile(dir.join("rootfs.tar")),
        &o,
        &mut SystemRunner,
        &mut Quiet,
    )
    .unwrap();
    let raw = dir.join("out/fixture.raw");
    let allocated = sh(Command::new("du").args(["-B1"]).arg(&raw));
    let allocated: u64 = allocated
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let plan = report.plan;
    let root = dir.join("root-only.img");
    sh(Command::new("dd")
        .arg(format!("if={}", raw.display()))
        .arg(format!("of={}", root.display()))
        .arg("bs=1M")
        .arg(format!("skip={}", plan.root.offset >> 20))
        .arg(format!("count={}", plan.root.size >> 20))
        .arg("conv=sparse")
        .arg("status=none"));
    let head = sh(Command::new("dumpe2fs").arg("-h").arg(&root));
    let field = |k: &str| -> u64 {
        head.lines()
            .find_map(|l| l.strip_prefix(k))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let used = (field("Block count:") - field("Free blocks:")) * field("Block size:");
    assert!(
        allocated * 10 <= (used + plan.esp.size) * 11,
        "raw disk of {} bytes allocates {allocated} bytes; used {used} + ESP {}",
        plan.size,
        plan.esp.size
    );
    assert!(allocated * 4 < plan.size, "{allocated} of {}", plan.size);
}

// ---- firmware and packaged formats ----

#[test]
fn bios_needs_grub_in_the_rootfs() {
    let (err, _) = expect_failure(
        "nogrub",
        |d| {
            fixture_rootfs(&d.join("rootfs"), true, true, true);
            Input::Dir(d.join("rootfs"))
        },
        |o| o.firmware = Firmware::Bios,
    );
    assert!(matches!(err, ConvertError::NoGrub { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "the rootfs has no GRUB for BIOS: expected /usr/lib/grub/i386-pc/boot.img (package grub-pc-bin); add grub-pc-bin to the node (os.packages), or boot with UEFI only (disk.firmware: uefi, --firmware uefi)"
    );
}

#[test]
fn hybrid_from_a_tar_without_grub() {
    // A tar input is unpacked for BIOS boot (the node's grub-mkimage runs from it), and the
    // missing GRUB is found there.
    let (err, _) = expect_failure(
        "biostar",
        |d| {
            fixture_rootfs(&d.join("rootfs"), true, true, true);
            make_tar(&d.join("rootfs"), &d.join("rootfs.tar"));
            Input::TarStream(Box::new(fs::File::open(d.join("rootfs.tar")).unwrap()))
        },
        |o| o.firmware = Firmware::Hybrid,
    );
    assert!(matches!(err, ConvertError::NoGrub { .. }), "{err}");
}

#[test]
fn gce_needs_whole_gib() {
    let (err, _) = expect_failure(
        "gcesize",
        |d| {
            fixture_rootfs(&d.join("rootfs"), true, true, true);
            Input::Dir(d.join("rootfs"))
        },
        |o| {
            o.outputs
                .push(out(&o.outputs[0].path.with_file_name(""), Format::Gce))
        },
    );
    assert_eq!(
        err.to_string(),
        "invalid options: format gce needs a disk size in whole GiB (Compute Engine's rule), got 768MiB"
    );
}

#[test]
fn ova_of_a_disk_too_small_for_the_content() {
    let (err, _) = expect_failure(
        "ovasmall",
        |d| {
            fixture_rootfs(&d.join("rootfs"), true, true, true);
            Input::Dir(d.join("rootfs"))
        },
        |o| {
            o.size = Some(260 << 20);
            o.outputs = vec![out(&o.outputs[0].path.with_file_name(""), Format::Ova)];
        },
    );
    assert!(matches!(err, ConvertError::TooSmall { .. }), "{err}");
}

#[test]
fn ova_and_gce_packages() {
    let dir = scratch("packages");
    fixture_rootfs(&dir.join("rootfs"), true, true, true);
    let o = dir.join("out");
    fs::create_dir_all(&o).unwrap();
    let mut op = opts(vec![out(&o, Format::Ova), out(&o, Format::Gce)]);
    op.size = Some(1 << 30);
    let r = convert(
        Input::Dir(dir.join("rootfs")),
        &op,
        &mut SystemRunner,
        &mut Quiet,
    )
    .unwrap();
    // OVA: the converter checked it; check again here, then the disk inside with qemu-img.
    let ova = o.join("fixture.ova");
    let info = nodestamp_converters::ova::check(&ova).unwrap();
    assert_eq!(
        info.members,
        ["fixture.ovf", "fixture.mf", "fixture-disk1.vmdk"]
    );
    assert_eq!(info.capacity, 1 << 30);
    assert_eq!(info.firmware, "efi");
    sh(Command::new("tar").arg("-xf").arg(&ova).arg("-C").arg(&dir));
    let vmdk = dir.join("fixture-disk1.vmdk");
    sh(Command::new("qemu-img")
        .args(["check", "-f", "vmdk"])
        .arg(&vmdk));
    assert_eq!(qemu_info(&vmdk, Format::Vmdk)["virtual-size"], 1u64 << 30);
    let mf = fs::read_to_string(dir.join("fixture.mf")).unwrap();
    let sum = sh(Command::new("sha256sum").arg(&vmdk));
    assert!(
        mf.contains(&format!("SHA256(fixture-disk1.vmdk)= {}", &sum[..64])),
        "{mf}"
    );
    // GCE: disk.raw alone, the whole disk, and it is the raw disk (GPT readable).
    let gce = o.join("fixture.gce.tar.gz");
    let listing = sh(Command::new("tar").arg("-tzf").arg(&gce));
    assert_eq!(listing, "disk.raw\n");
    sh(Command::new("tar")
        .arg("-xzSf")
        .arg(&gce)
        .arg("-C")
        .arg(&dir));
    let raw = dir.join("disk.raw");
    assert_eq!(fs::metadata(&raw).unwrap().len(), 1 << 30);
    check_raw(&raw, &r.plan, &dir);
    // The vmdk in the OVA and disk.raw in the GCE archive are the same disk.
    sh(Command::new("qemu-img")
        .args(["compare", "-f", "vmdk", "-F", "raw"])
        .arg(&vmdk)
        .arg(&raw));
}

/// The contents-free tree never reaches outside itself: an entry inside a symbolic link is
/// refused (naming it), and nothing is left at the output path.
#[test]
fn sparse_mode_refuses_entries_inside_a_symlink() {
    let dir = scratch("sparse-escape");
    let outside = dir.join("outside");
    fs::create_dir_all(&outside).unwrap();
    let rootfs = dir.join("rootfs");
    fixture_rootfs(&rootfs, true, true, true);
    symlink(&outside, rootfs.join("escape")).unwrap();
    // A second tree holding `escape/planted`, appended after the link.
    let extra = dir.join("extra");
    fs::create_dir_all(extra.join("escape")).unwrap();
    fs::write(extra.join("escape/planted"), "x").unwrap();
    make_tar(&rootfs, &dir.join("rootfs.tar"));
    sh(Command::new("tar")
        .arg("--numeric-owner")
        .arg("-rf")
        .arg(dir.join("rootfs.tar"))
        .arg("-C")
        .arg(&extra)
        .arg("./escape/planted"));
    fs::create_dir_all(dir.join("out")).unwrap();
    let mut o = opts(vec![out(&dir.join("out"), Format::Raw)]);
    o.tar_mode = TarMode::Sparse;
    let err = convert(
        Input::TarFile(dir.join("rootfs.tar")),
        &o,
        &mut SystemRunner,
        &mut Quiet,
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("/escape/planted") && msg.contains("symbolic link"),
        "{msg}"
    );
    assert!(!outside.join("planted").exists());
    assert!(fs::read_dir(dir.join("out")).unwrap().next().is_none());
}
