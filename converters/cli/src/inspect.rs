//! `nodestamp inspect`: reads a node's build provenance (`/usr/lib/nodestamp/build.json`, with
//! `packages.json` and `components.json` beside it, assembled into one document) back
//! from what nodestamp produced — a disk image (raw, qcow2, vmdk, vhd), an image tar
//! (`docker save`, OCI layout or Docker's), or a rootfs directory — without mounting anything.
//!
//! Disks: the GPT is read and the `root` partition's ext4 is read with `debugfs` at its
//! offset (qcow2 and vmdk are first turned into a sparse raw with `qemu-img convert`). Image
//! tars: the config's labels, and the topmost layer holding the file.

use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Map, Value, json};

use nodestamp_converters::gpt;
use nodestamp_converters::tar::{self, Capture, EntryKind};

use nodestamp_contract::paths::{BUILD_JSON, PROVENANCE_FILES};

/// The optional ones.
const BESIDE: [&str; 2] = [PROVENANCE_FILES[1], PROVENANCE_FILES[2]];

/// The assembled document from `build.json` and the files beside it (absent ones are `None`).
fn assemble(build: &[u8], beside: [Option<Vec<u8>>; 2], from: &Path) -> Result<Value> {
    let build = parse(build, from)?;
    let [packages, components] = beside;
    let read = |b: Option<Vec<u8>>| b.map(|b| parse(&b, from)).transpose();
    Ok(nodestamp_compile::provenance::assemble(
        build,
        read(packages)?,
        read(components)?,
    ))
}

/// What kind of thing was inspected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Rootfs,
    Disk(&'static str),
    ImageTar,
}

/// The provenance found, and an image's labels.
#[derive(Debug, Clone)]
pub struct Inspected {
    pub kind: Kind,
    pub build: Value,
    pub labels: Option<Map<String, Value>>,
}

impl Inspected {
    pub fn to_json(&self, path: &Path) -> Value {
        let kind = match self.kind {
            Kind::Rootfs => "rootfs".to_string(),
            Kind::Disk(f) => format!("disk/{f}"),
            Kind::ImageTar => "image".to_string(),
        };
        let mut v =
            json!({ "path": path.display().to_string(), "kind": kind, "build": self.build });
        if let Some(l) = &self.labels {
            v["labels"] = Value::Object(l.clone());
        }
        v
    }

    /// A short human summary.
    pub fn to_text(&self) -> String {
        let b = &self.build;
        let s = |p: &str| {
            b.pointer(p)
                .and_then(Value::as_str)
                .unwrap_or("-")
                .to_string()
        };
        let mut out = String::new();
        out += &format!("name:        {}\n", s("/name"));
        out += &format!("nodestamp:   {}\n", s("/nodestamp/version"));
        out += &format!("spec:        {} {}\n", s("/spec/file"), s("/spec/digest"));
        out += &format!("base:        {} {}\n", s("/base/name"), s("/base/digest"));
        if b["kubernetes"].is_object() {
            out += &format!("kubernetes:  {}\n", s("/kubernetes/version"));
            for c in b["kubernetes"]["components"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let name = c["name"].as_str().unwrap_or("?");
                let sum = match (c["sha256"].as_str(), c["local"].as_str()) {
                    (Some(s), _) => format!("sha256:{s}"),
                    (None, Some(l)) => format!("local:{l} (unpacked archive)"),
                    (None, None) => "-".into(),
                };
                out += &format!("  {name:<12} {sum}\n");
            }
        }
        if let Some(args) = b["build_args"].as_object().filter(|a| !a.is_empty()) {
            out += "build args:\n";
            for (k, v) in args {
                out += &format!("  {k}={}\n", v.as_str().unwrap_or(""));
            }
        }
        let pkgs = b["packages"]["installed"].as_array();
        out += &format!(
            "packages:    {} ({})\n",
            pkgs.map(|p| p.len().to_string()).unwrap_or("-".into()),
            s("/packages/manager")
        );
        for p in pkgs.into_iter().flatten() {
            out += &format!(
                "  {} {}\n",
                p["name"].as_str().unwrap_or("?"),
                p["version"].as_str().unwrap_or("?")
            );
        }
        out
    }
}

/// Inspects `path`, using `work` for temporary files.
pub fn inspect(path: &Path, work: &Path) -> Result<Inspected> {
    let meta = fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    if meta.is_dir() {
        let f = path.join(BUILD_JSON);
        let bytes = fs::read(&f).with_context(|| {
            format!(
                "{} has no /{BUILD_JSON} (was it built by nodestamp?)",
                path.display()
            )
        })?;
        let beside = BESIDE.map(|b| fs::read(path.join(b)).ok());
        return Ok(Inspected {
            kind: Kind::Rootfs,
            build: assemble(&bytes, beside, &f)?,
            labels: None,
        });
    }
    let mut f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut head = [0u8; 512];
    let n = read_up_to(&mut f, &mut head)?;
    let head = &head[..n];
    if head.starts_with(b"QFI\xfb") {
        return disk_via_raw(path, "qcow2", work);
    }
    if head.starts_with(b"KDMV") {
        return disk_via_raw(path, "vmdk", work);
    }
    if n == 512 && &head[257..262] == b"ustar" {
        return image_tar(path, work);
    }
    let len = meta.len();
    let mut tail = [0u8; 8];
    if len >= 512 {
        f.seek(SeekFrom::Start(len - 512))?;
        read_up_to(&mut f, &mut tail)?;
    }
    if &tail == b"conectix" {
        return disk(path, len - 512, "vhd");
    }
    disk(path, len, "raw")
}

fn read_up_to(f: &mut File, buf: &mut [u8]) -> Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn parse(bytes: &[u8], from: &Path) -> Result<Value> {
    serde_json::from_slice(bytes).with_context(|| format!("{} is not JSON", from.display()))
}

fn disk_via_raw(path: &Path, format: &'static str, work: &Path) -> Result<Inspected> {
    let raw = work.join("disk.raw");
    let out = Command::new("qemu-img")
        .args(["convert", "-f", format, "-O", "raw"])
        .arg(path)
        .arg(&raw)
        .output()
        .context("running qemu-img (install qemu-utils)")?;
    if !out.status.success() {
        bail!(
            "qemu-img convert {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let len = fs::metadata(&raw)?.len();
    let mut r = disk(&raw, len, format)?;
    r.kind = Kind::Disk(format);
    Ok(r)
}

/// A raw disk of `len` bytes (a fixed VHD is one plus a footer).
fn disk(path: &Path, len: u64, format: &'static str) -> Result<Inspected> {
    let mut f = File::open(path)?;
    let table = gpt::read(len, &mut |off, n| {
        let mut b = vec![0u8; n];
        f.seek(SeekFrom::Start(off))?;
        f.read_exact(&mut b)?;
        Ok(b)
    })
    .with_context(|| format!("reading {}", path.display()))?
    .map_err(|e| {
        anyhow!(
            "{} is not a nodestamp disk, an image tar or a rootfs directory: {e}",
            path.display()
        )
    })?;
    let root = table
        .partitions
        .iter()
        .find(|p| p.name == "root")
        .ok_or_else(|| anyhow!("{}: no partition named root in the GPT", path.display()))?;
    let offset = root.first_lba * 512;
    let cat = |file: &str| {
        Command::new("debugfs")
            .arg("-R")
            .arg(format!("cat /{file}"))
            .arg(format!("{}?offset={offset}", path.display()))
            .stderr(Stdio::piped())
            .output()
            .context("running debugfs (install e2fsprogs)")
    };
    let out = cat(BUILD_JSON)?;
    if !out.status.success() || out.stdout.is_empty() {
        bail!(
            "{}: the root filesystem has no /{BUILD_JSON} (was it built by nodestamp?) {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let mut beside = [None, None];
    for (slot, file) in beside.iter_mut().zip(BESIDE) {
        let o = cat(file)?;
        if o.status.success() && !o.stdout.is_empty() {
            *slot = Some(o.stdout);
        }
    }
    Ok(Inspected {
        kind: Kind::Disk(format),
        build: assemble(&out.stdout, beside, path)?,
        labels: None,
    })
}

/// An image tar from `docker save` (or `-o type=docker`/`type=oci`): `manifest.json` names the
/// config and the layers, bottom first.
fn image_tar(path: &Path, work: &Path) -> Result<Inspected> {
    let blobs = work.join("blobs");
    fs::create_dir_all(&blobs)?;
    // Pass 1: manifest.json and index.json.
    let wanted = ["manifest.json", "index.json"];
    let found = extract(path, &blobs, &mut |p| wanted.contains(&p))?;
    let manifest_path = blobs.join("manifest.json");
    if !found.iter().any(|p| p == "manifest.json") {
        bail!(
            "{}: an image tar without manifest.json (use docker save)",
            path.display()
        );
    }
    let manifest: Value = parse(&fs::read(&manifest_path)?, &manifest_path)?;
    let entry = manifest
        .get(0)
        .ok_or_else(|| anyhow!("{}: manifest.json lists no image", path.display()))?;
    let config = entry["Config"]
        .as_str()
        .ok_or_else(|| anyhow!("manifest.json: no Config"))?
        .to_string();
    let layers: Vec<String> = entry["Layers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l.as_str().map(str::to_string))
        .collect();
    // Pass 2: the config and the layers.
    let mut names: Vec<String> = layers.clone();
    names.push(config.clone());
    extract(path, &blobs, &mut |p| names.iter().any(|n| n == p))?;
    let cfg_path = blobs.join(flat(&config));
    let cfg: Value = parse(&fs::read(&cfg_path)?, &cfg_path)?;
    let labels = cfg["config"]["Labels"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    // From the top: the topmost copy of each file is the image's. The provenance layers are
    // the top ones, so this stops early once build.json and packages.json are found.
    let wanted = PROVENANCE_FILES;
    let mut found: [Option<Vec<u8>>; 3] = [None, None, None];
    for layer in layers.iter().rev() {
        let mut got = files_in_layer(&blobs.join(flat(layer)), &wanted)?;
        for (slot, name) in found.iter_mut().zip(wanted) {
            if slot.is_none() {
                *slot = got.remove(name);
            }
        }
        if found[0].is_some() && found[1].is_some() {
            break;
        }
    }
    let [build, packages, components] = found;
    if let Some(bytes) = build {
        return Ok(Inspected {
            kind: Kind::ImageTar,
            build: assemble(&bytes, [packages, components], path)?,
            labels: Some(labels),
        });
    }
    bail!(
        "{}: no layer holds /{BUILD_JSON} (was the image built by nodestamp with --target node?)",
        path.display()
    )
}

fn flat(name: &str) -> String {
    name.replace('/', "_")
}

/// Extracts the regular files of the tar at `path` for which `want` holds into `dir` (names
/// flattened); returns their names.
fn extract(path: &Path, dir: &Path, want: &mut dyn FnMut(&str) -> bool) -> Result<Vec<String>> {
    let f = File::open(path)?;
    let mut found = Vec::new();
    let mut noop = |_| {};
    let mut err = None;
    tar::stream(f, None, &mut noop, &mut |e| {
        if e.kind == EntryKind::File && want(&e.path) {
            found.push(e.path.clone());
            match File::create(dir.join(flat(&e.path))) {
                Ok(file) => return Capture::To(Box::new(file)),
                Err(e) => err = Some(e),
            }
        }
        Capture::Skip
    })
    .with_context(|| format!("reading {}", path.display()))?;
    if let Some(e) = err {
        return Err(e.into());
    }
    Ok(found)
}

/// The contents of those of `files` that a layer tar (plain or gzip) holds, by name.
fn files_in_layer(
    layer: &Path,
    files: &[&str],
) -> Result<std::collections::BTreeMap<String, Vec<u8>>> {
    let mut magic = [0u8; 2];
    let n = read_up_to(&mut File::open(layer)?, &mut magic)?;
    let reader: Box<dyn Read> = if n == 2 && magic == [0x1f, 0x8b] {
        let child = Command::new("gzip")
            .arg("-dc")
            .arg(layer)
            .stdout(Stdio::piped())
            .spawn()
            .context("running gzip")?;
        Box::new(child.stdout.ok_or_else(|| anyhow!("gzip: no stdout"))?)
    } else {
        Box::new(File::open(layer)?)
    };
    type Captured = std::rc::Rc<std::cell::RefCell<std::collections::BTreeMap<String, Vec<u8>>>>;
    let captured = Captured::default();
    struct Sink(Captured, String);
    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0
                .borrow_mut()
                .entry(self.1.clone())
                .or_default()
                .extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut noop = |_| {};
    let c = captured.clone();
    tar::stream(reader, None, &mut noop, &mut |e| {
        if e.kind == EntryKind::File && files.contains(&e.path.as_str()) {
            c.borrow_mut().insert(e.path.clone(), Vec::new());
            return Capture::To(Box::new(Sink(c.clone(), e.path.clone())));
        }
        Capture::Skip
    })
    .with_context(|| format!("reading layer {}", layer.display()))?;
    let v = std::mem::take(&mut *captured.borrow_mut());
    Ok(v)
}

/// A fresh temporary directory, removed on drop.
pub struct WorkDir(pub PathBuf);

impl WorkDir {
    pub fn new() -> Result<WorkDir> {
        let d = std::env::temp_dir().join(format!("nodestamp-inspect-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
        Ok(WorkDir(d))
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
