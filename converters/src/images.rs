//! Container image archives (OCI image layout in a tar, which is also what `docker save` writes
//! since Docker 25): read and checked in one streaming pass, then written again named by the
//! reference the node's containerd should know the image by.
//!
//! ```text
//!  archive ──► read(): sha256 of the archive, sha256 of every blob (its name must match),
//!              index.json → the image (one digest), its manifests, their config and layers present
//!          ──► write_named(): oci-layout, index.json naming the image (io.containerd.image.name),
//!              the blobs — mode 0444, owner 0:0, mtime 0: same input → same bytes
//! ```
//! The image's digests (the index.json entry, and each platform manifest) are never changed:
//! `ctr images import` of the written archive records exactly the digests of the original.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::Path;
use std::rc::Rc;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::tar::{self, Capture, EntryKind, TarError};

/// Blobs up to this size are kept in memory while reading (index, manifests, configs).
const SMALL: u64 = 4 << 20;
/// The annotation `ctr images import` takes the image's name from.
pub const NAME_ANNOTATION: &str = "io.containerd.image.name";

const INDEX_TYPES: [&str; 2] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];
const MANIFEST_TYPES: [&str; 2] = [
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

/// What is wrong with an image archive, in the user's terms.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("cannot read the archive: {0}")]
    Io(#[source] io::Error),
    #[error("not an image archive: {0}")]
    Tar(#[source] TarError),
    #[error(
        "not an image archive: it has no index.json (expected an OCI image layout in a tar, as written by `docker save` from Docker 25 on, `docker buildx build -o type=oci` or `skopeo copy … oci-archive:`)"
    )]
    NoIndex,
    #[error(
        "a `docker save` archive from Docker before 25 (manifest.json without index.json): its image digests are not in the archive; save it again with Docker 25 or later, or with `skopeo copy docker-archive:… oci-archive:…`"
    )]
    LegacyDockerSave,
    #[error("not an image archive: {what} is not valid JSON: {error}")]
    Json { what: String, error: String },
    #[error("not an image archive: {0}")]
    Layout(String),
    #[error("the archive holds {} images ({}); give each image its own archive", .0.len(), .0.join(", "))]
    SeveralImages(Vec<String>),
    #[error("the archive is damaged: blob {path} has sha256 {actual}")]
    BadBlob { path: String, actual: String },
    #[error("the archive lacks {what} {digest}")]
    MissingBlob { what: String, digest: String },
    #[error("the archive's sha256 is {actual}, the spec says {expected}")]
    Sha256Mismatch { expected: String, actual: String },
    #[error("writing the image archive: {0}")]
    Write(#[source] io::Error),
}

/// One platform's manifest of the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformManifest {
    /// `os/architecture[/variant]`, or `""` when the archive does not say.
    pub platform: String,
    pub digest: String,
}

/// What [`read`] found in an archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageArchive {
    /// sha256 of the archive file, hex.
    pub sha256: String,
    /// The image's digest: index.json's entry (`sha256:<hex>`), what containerd records.
    pub digest: String,
    pub media_type: String,
    pub size: u64,
    /// The platform of index.json's entry when it is a manifest, as the archive gives it.
    pub platform: Option<Value>,
    /// Platform manifests present in the archive with every blob they need.
    pub manifests: Vec<PlatformManifest>,
    /// Names the archive gives the image (`io.containerd.image.name`), for messages.
    pub names: Vec<String>,
    /// Every blob: digest → size.
    pub blobs: BTreeMap<String, u64>,
}

#[derive(Default)]
struct Seen {
    current: Option<String>,
    hashes: BTreeMap<String, (Sha256, u64)>,
    small: BTreeMap<String, Vec<u8>>,
}

struct Collect {
    seen: Rc<RefCell<Seen>>,
    keep: bool,
}

impl Write for Collect {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut s = self.seen.borrow_mut();
        let Some(path) = s.current.clone() else {
            return Ok(buf.len());
        };
        let e = s.hashes.entry(path.clone()).or_default();
        e.0.update(buf);
        e.1 += buf.len() as u64;
        if self.keep {
            s.small.entry(path).or_default().extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

struct HashingReader<R> {
    inner: R,
    hash: Rc<RefCell<Sha256>>,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.borrow_mut().update(&buf[..n]);
        Ok(n)
    }
}

fn blob_digest(path: &str) -> Option<String> {
    let hex = path.strip_prefix("blobs/sha256/")?;
    (hex.len() == 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()))
    .then(|| format!("sha256:{hex}"))
}

fn json(what: &str, data: &[u8]) -> Result<Value, ImageError> {
    serde_json::from_slice(data).map_err(|e| ImageError::Json {
        what: what.into(),
        error: e.to_string(),
    })
}

fn platform_string(p: &Value) -> String {
    let get = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or("");
    let mut s = format!("{}/{}", get("os"), get("architecture"));
    if !get("variant").is_empty() {
        s += &format!("/{}", get("variant"));
    }
    if s == "/" { String::new() } else { s }
}

/// Reads an image archive from `path`, checking it (see the module docs). With `sha256`, the
/// archive's own sha256 must be that (hex).
pub fn read(path: &Path, sha256: Option<&str>) -> Result<ImageArchive, ImageError> {
    let file = File::open(path).map_err(ImageError::Io)?;
    read_from(BufReader::with_capacity(1 << 20, file), sha256)
}

/// [`read`] from any stream.
pub fn read_from(input: impl Read, sha256: Option<&str>) -> Result<ImageArchive, ImageError> {
    let whole = Rc::new(RefCell::new(Sha256::new()));
    let reader = HashingReader {
        inner: input,
        hash: whole.clone(),
    };
    let seen = Rc::new(RefCell::new(Seen::default()));
    let result = tar::stream(reader, None, &mut |_| {}, &mut |e| {
        let mut s = seen.borrow_mut();
        s.current = None;
        if e.kind != EntryKind::File {
            return Capture::Skip;
        }
        let keep = e.size <= SMALL;
        if blob_digest(&e.path).is_some() || e.path == "index.json" || e.path == "manifest.json" {
            s.current = Some(e.path.clone());
            s.hashes.insert(e.path.clone(), (Sha256::new(), 0));
            if keep {
                s.small.insert(e.path.clone(), Vec::new());
            }
            drop(s);
            return Capture::To(Box::new(Collect {
                seen: seen.clone(),
                keep,
            }));
        }
        Capture::Skip
    });
    match result {
        Ok(_) => {}
        Err(TarError::Empty) => return Err(ImageError::Tar(TarError::Empty)),
        Err(e) => return Err(ImageError::Tar(e)),
    }
    // The archive's sha256 first: a wrong file is best told as such.
    let actual = hex(whole.borrow().clone().finalize().as_slice());
    if let Some(expected) = sha256
        && expected != actual
    {
        return Err(ImageError::Sha256Mismatch {
            expected: expected.into(),
            actual,
        });
    }
    let seen = Rc::try_unwrap(seen)
        .map(RefCell::into_inner)
        .unwrap_or_else(|rc| std::mem::take(&mut *rc.borrow_mut()));
    let mut blobs = BTreeMap::new();
    for (path, (h, size)) in &seen.hashes {
        let Some(digest) = blob_digest(path) else {
            continue;
        };
        let got = format!("sha256:{}", hex(h.clone().finalize().as_slice()));
        if got != digest {
            return Err(ImageError::BadBlob {
                path: path.clone(),
                actual: got,
            });
        }
        blobs.insert(digest, *size);
    }
    let Some(index) = seen.small.get("index.json") else {
        return Err(if seen.hashes.contains_key("manifest.json") {
            ImageError::LegacyDockerSave
        } else {
            ImageError::NoIndex
        });
    };
    let index = json("index.json", index)?;
    let descs = index
        .get("manifests")
        .and_then(Value::as_array)
        .ok_or_else(|| ImageError::Layout("index.json has no `manifests` list".into()))?;
    let mut digests: Vec<String> = Vec::new();
    let mut names = Vec::new();
    for d in descs {
        let digest = d
            .get("digest")
            .and_then(Value::as_str)
            .ok_or_else(|| ImageError::Layout("an index.json entry has no `digest`".into()))?;
        if !digests.iter().any(|x| x == digest) {
            digests.push(digest.to_string());
        }
        if let Some(n) = d
            .pointer("/annotations/io.containerd.image.name")
            .and_then(Value::as_str)
        {
            names.push(n.to_string());
        }
    }
    let target = match digests.len() {
        0 => return Err(ImageError::Layout("index.json lists no image".into())),
        1 => descs
            .iter()
            .find(|d| d["digest"] == digests[0].as_str())
            .cloned()
            .unwrap_or_default(),
        _ => return Err(ImageError::SeveralImages(digests)),
    };
    let digest = digests.remove(0);
    let media_type = target
        .get("mediaType")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let size = target.get("size").and_then(Value::as_u64).unwrap_or(0);
    let blob = |digest: &str, what: &str| -> Result<Value, ImageError> {
        let path = format!("blobs/{}", digest.replacen(':', "/", 1));
        match seen.small.get(&path) {
            Some(data) => json(&format!("{what} {digest}"), data),
            None => Err(ImageError::MissingBlob {
                what: what.into(),
                digest: digest.into(),
            }),
        }
    };
    let check_manifest = |m: &Value, digest: &str| -> Result<(), ImageError> {
        let config = m
            .pointer("/config/digest")
            .and_then(Value::as_str)
            .ok_or_else(|| ImageError::Layout(format!("manifest {digest} has no config")))?;
        let mut need = vec![("config", config)];
        for l in m
            .get("layers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            need.push((
                "layer",
                l.get("digest").and_then(Value::as_str).ok_or_else(|| {
                    ImageError::Layout(format!("manifest {digest} has a layer without a digest"))
                })?,
            ));
        }
        for (what, d) in need {
            if !blobs.contains_key(d) {
                return Err(ImageError::MissingBlob {
                    what: format!("the {what} of manifest {digest}:"),
                    digest: d.into(),
                });
            }
        }
        Ok(())
    };
    let mut manifests = Vec::new();
    let top = blob(&digest, "the image's manifest")?;
    let kind = top
        .get("mediaType")
        .and_then(Value::as_str)
        .unwrap_or(&media_type)
        .to_string();
    if INDEX_TYPES.contains(&kind.as_str()) {
        for m in top
            .get("manifests")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let (Some(d), Some(t)) = (
                m.get("digest").and_then(Value::as_str),
                m.get("mediaType").and_then(Value::as_str),
            ) else {
                continue;
            };
            // Attestations and platforms the archive leaves out are not part of the image here.
            if !MANIFEST_TYPES.contains(&t) || !blobs.contains_key(d) {
                continue;
            }
            let platform = m.get("platform").map(platform_string).unwrap_or_default();
            if platform == "unknown/unknown" {
                continue;
            }
            check_manifest(&blob(d, "manifest")?, d)?;
            manifests.push(PlatformManifest {
                platform,
                digest: d.into(),
            });
        }
        if manifests.is_empty() {
            return Err(ImageError::MissingBlob {
                what: "every platform manifest of the image index".into(),
                digest,
            });
        }
    } else if MANIFEST_TYPES.contains(&kind.as_str()) || top.get("layers").is_some() {
        check_manifest(&top, &digest)?;
        manifests.push(PlatformManifest {
            platform: target
                .get("platform")
                .map(platform_string)
                .unwrap_or_default(),
            digest: digest.clone(),
        });
    } else {
        return Err(ImageError::Layout(format!(
            "index.json points at {digest} of media type `{kind}`, expected an image manifest or index"
        )));
    }
    Ok(ImageArchive {
        sha256: actual,
        digest,
        media_type,
        size,
        platform: target.get("platform").cloned(),
        manifests,
        names,
        blobs,
    })
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The index.json of the written archive: the image's one entry, named `name`.
pub fn named_index(img: &ImageArchive, name: &str) -> Vec<u8> {
    let mut desc = json!({
        "mediaType": img.media_type,
        "digest": img.digest,
        "size": img.size,
        "annotations": { NAME_ANNOTATION: name },
    });
    if let Some(p) = &img.platform {
        desc["platform"] = p.clone();
    }
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [desc],
    });
    let mut out = serde_json::to_vec(&index).unwrap_or_default();
    out.push(b'\n');
    out
}

fn ustar_header(path: &str, size: u64, dir: bool) -> [u8; 512] {
    let mut h = [0u8; 512];
    h[..path.len()].copy_from_slice(path.as_bytes());
    let octal = |field: &mut [u8], v: u64| {
        let s = format!("{v:0width$o}", width = field.len() - 1);
        field[..s.len()].copy_from_slice(s.as_bytes());
    };
    octal(&mut h[100..108], if dir { 0o755 } else { 0o444 });
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    octal(&mut h[124..136], size);
    octal(&mut h[136..148], 0);
    h[156] = if dir { b'5' } else { b'0' };
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].fill(b' ');
    let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
    h
}

struct Out<W: Write> {
    w: W,
    written: u64,
}

impl<W: Write> Out<W> {
    fn put(&mut self, data: &[u8]) -> Result<(), ImageError> {
        self.w.write_all(data).map_err(ImageError::Write)?;
        self.written += data.len() as u64;
        Ok(())
    }
    fn pad(&mut self) -> Result<(), ImageError> {
        let rest = (512 - self.written % 512) % 512;
        self.put(&vec![0; rest as usize])
    }
    fn file(&mut self, path: &str, data: &[u8]) -> Result<(), ImageError> {
        self.put(&ustar_header(path, data.len() as u64, false))?;
        self.put(data)?;
        self.pad()
    }
}

struct Forward<W: Write> {
    out: Rc<RefCell<Out<W>>>,
    error: Rc<RefCell<Option<io::Error>>>,
}

impl<W: Write> Write for Forward<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut o = self.out.borrow_mut();
        match o.w.write_all(buf) {
            Ok(()) => {
                o.written += buf.len() as u64;
                Ok(buf.len())
            }
            Err(e) => {
                let kind = e.kind();
                *self.error.borrow_mut() = Some(e);
                Err(io::Error::from(kind))
            }
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Writes the archive `input` (already [`read`] as `img`) to `output` with index.json naming
/// the image `name`: `oci-layout`, `index.json`, then every blob in digest order. Returns the
/// bytes written.
pub fn write_named(
    input: &Path,
    img: &ImageArchive,
    name: &str,
    output: impl Write + 'static,
) -> Result<u64, ImageError> {
    let file = File::open(input).map_err(ImageError::Io)?;
    let out = Rc::new(RefCell::new(Out {
        w: BufWriter::with_capacity(1 << 20, output),
        written: 0,
    }));
    {
        let mut o = out.borrow_mut();
        o.file("oci-layout", b"{\"imageLayoutVersion\":\"1.0.0\"}\n")?;
        o.file("index.json", &named_index(img, name))?;
        o.put(&ustar_header("blobs/", 0, true))?;
        o.put(&ustar_header("blobs/sha256/", 0, true))?;
    }
    // Blobs in the order the archive has them (one pass; the order changes bytes, never
    // digests); a blob stored twice is written once.
    let error = Rc::new(RefCell::new(None));
    let mut done = BTreeMap::new();
    let mut failure: Option<ImageError> = None;
    tar::stream(
        BufReader::with_capacity(1 << 20, file),
        None,
        &mut |_| {},
        &mut |e| {
            if failure.is_some() || e.kind != EntryKind::File {
                return Capture::Skip;
            }
            let Some(d) = blob_digest(&e.path) else {
                return Capture::Skip;
            };
            if done.insert(d, ()).is_some() {
                return Capture::Skip;
            }
            let mut o = out.borrow_mut();
            if let Err(err) = o
                .pad()
                .and_then(|()| o.put(&ustar_header(&e.path, e.size, false)))
            {
                failure = Some(err);
                return Capture::Skip;
            }
            drop(o);
            Capture::To(Box::new(Forward {
                out: out.clone(),
                error: error.clone(),
            }))
        },
    )
    .map_err(|e| match error.borrow_mut().take() {
        Some(io) => ImageError::Write(io),
        None => ImageError::Tar(e),
    })?;
    if let Some(f) = failure {
        return Err(f);
    }
    let mut o = out.borrow_mut();
    o.pad()?;
    o.put(&[0; 1024])?;
    o.w.flush().map_err(ImageError::Write)?;
    Ok(o.written)
}

pub use nodestamp_contract::images::{RefError, file_stem, normalize_ref};

/// Where a node keeps its image archives, relative to its root.
pub const NODE_DIR: &str = "var/lib/nodestamp/images";
const _: () = assert!(
    nodestamp_contract::images::NODE_DIR.len() == NODE_DIR.len() + 1,
    "NODE_DIR is the contract's without its leading slash"
);

/// What [`prepare`] wrote for one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    pub reference: String,
    pub stem: String,
    pub archive: ImageArchive,
    /// Size of the archive written into the node.
    pub size: u64,
}

/// The record `<stem>.json` next to the archive in the node: provenance and `tests:` read it.
pub fn record(p: &Prepared) -> Value {
    json!({
        "ref": p.reference,
        "digest": p.archive.digest,
        "mediaType": p.archive.media_type,
        "manifests": p.archive.manifests.iter()
            .map(|m| json!({"platform": m.platform, "digest": m.digest}))
            .collect::<Vec<_>>(),
        "archive": {"sha256": p.archive.sha256, "names": p.archive.names},
        "file": format!("/{NODE_DIR}/{}.tar", p.stem),
    })
}

/// Checks the archive at `src` (its sha256 when given) and writes, under `root`, the node's
/// `var/lib/nodestamp/images/<stem>.tar` (named `reference`), `<stem>.json` ([`record`]) and
/// `<stem>.import` (`<reference> <digest>`, one line, for the first-boot import). Every file
/// and directory written gets the time `epoch` (SOURCE_DATE_EPOCH; 0 without), so the same
/// archive and reference always give the same layer.
pub fn prepare(
    src: &Path,
    reference: &str,
    sha256: Option<&str>,
    root: &Path,
    epoch: Option<i64>,
) -> Result<Prepared, PrepareError> {
    let reference = normalize_ref(reference)?;
    let archive = read(src, sha256)?;
    if let Some((_, want)) = reference.split_once('@')
        && want != archive.digest
    {
        return Err(PrepareError::DigestMismatch {
            reference,
            actual: archive.digest,
        });
    }
    let stem = file_stem(&reference);
    let dir = root.join(NODE_DIR);
    std::fs::create_dir_all(&dir).map_err(ImageError::Write)?;
    let tar = dir.join(format!("{stem}.tar"));
    let name = reference.clone();
    let out = File::create(&tar).map_err(ImageError::Write)?;
    let size = write_named(src, &archive, &name, out)?;
    let p = Prepared {
        reference,
        stem,
        archive,
        size,
    };
    let mut text = serde_json::to_vec_pretty(&record(&p)).unwrap_or_default();
    text.push(b'\n');
    std::fs::write(dir.join(format!("{}.json", p.stem)), text).map_err(ImageError::Write)?;
    std::fs::write(
        dir.join(format!("{}.import", p.stem)),
        format!("{} {}\n", p.reference, p.archive.digest),
    )
    .map_err(ImageError::Write)?;
    let time = std::time::UNIX_EPOCH
        + std::time::Duration::from_secs(u64::try_from(epoch.unwrap_or(0)).unwrap_or(0));
    let mut paths: Vec<std::path::PathBuf> = ["tar", "json", "import"]
        .iter()
        .map(|ext| dir.join(format!("{}.{ext}", p.stem)))
        .collect();
    let mut d = dir.as_path();
    while d.starts_with(root) {
        paths.push(d.to_path_buf());
        match d.parent() {
            Some(up) => d = up,
            None => break,
        }
    }
    for path in paths {
        File::open(&path)
            .and_then(|f| f.set_modified(time))
            .map_err(ImageError::Write)?;
    }
    Ok(p)
}

/// Why [`prepare`] refused an image.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error(transparent)]
    Ref(#[from] RefError),
    #[error(transparent)]
    Archive(#[from] ImageError),
    #[error("the reference `{reference}` names a digest, the archive's image is {actual}")]
    DigestMismatch { reference: String, actual: String },
}

/// The `tests:` image check against a node's root: the image `reference` is among the node's
/// images (and has `digest` when given). `Ok` carries what was found, `Err` what is wrong.
pub fn check(root: &Path, reference: &str, digest: Option<&str>) -> Result<String, String> {
    let norm = normalize_ref(reference).map_err(|e| e.to_string())?;
    let path = root
        .join(NODE_DIR)
        .join(format!("{}.json", file_stem(&norm)));
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(format!(
                "image {norm} is not among the node's images (/{NODE_DIR})"
            ));
        }
        Err(e) => return Err(format!("reading /{NODE_DIR}: {e}")),
    };
    let rec: Value = serde_json::from_slice(&text).map_err(|e| {
        format!(
            "/{NODE_DIR}/{}.json is not valid JSON: {e}",
            file_stem(&norm)
        )
    })?;
    let have = rec["digest"].as_str().unwrap_or_default();
    match digest {
        Some(want) if want != have => {
            Err(format!("image {norm} has digest {have}, expected {want}"))
        }
        _ => Ok(format!("image {norm} {have}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (path, data) in files {
            out.extend_from_slice(&ustar_header(path, data.len() as u64, false));
            out.extend_from_slice(data);
            out.resize(out.len().div_ceil(512) * 512, 0);
        }
        out.extend_from_slice(&[0; 1024]);
        out
    }

    fn digest(data: &[u8]) -> String {
        format!("sha256:{}", hex(Sha256::digest(data).as_slice()))
    }

    fn blob_path(d: &str) -> String {
        format!("blobs/{}", d.replacen(':', "/", 1))
    }

    /// A one-layer image: (archive files, manifest digest).
    pub(super) fn image_for_tests(layer: &[u8]) -> (Vec<(String, Vec<u8>)>, String) {
        image(layer)
    }

    pub(super) fn archive_for_tests(files: &[(String, Vec<u8>)]) -> Vec<u8> {
        archive(files)
    }

    fn image(layer: &[u8]) -> (Vec<(String, Vec<u8>)>, String) {
        let config =
            br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#
                .to_vec();
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest(&config), "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest(layer), "size": layer.len()}],
        }))
        .unwrap();
        let md = digest(&manifest);
        let index = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": manifest.len(),
                           "annotations": {NAME_ANNOTATION: "example.org/a:1"},
                           "platform": {"architecture": "amd64", "os": "linux"}}],
        }))
        .unwrap();
        (
            vec![
                (
                    "oci-layout".into(),
                    b"{\"imageLayoutVersion\":\"1.0.0\"}".to_vec(),
                ),
                ("index.json".into(), index),
                (blob_path(&digest(&config)), config),
                (blob_path(&digest(layer)), layer.to_vec()),
                (blob_path(&md), manifest),
            ],
            md,
        )
    }

    fn archive(files: &[(String, Vec<u8>)]) -> Vec<u8> {
        let v: Vec<(&str, &[u8])> = files
            .iter()
            .map(|(p, d)| (p.as_str(), d.as_slice()))
            .collect();
        tar_of(&v)
    }

    #[test]
    fn reads_an_oci_archive_and_its_digests() {
        let (files, md) = image(b"layer bytes");
        let bytes = archive(&files);
        let img = read_from(&bytes[..], None).unwrap();
        assert_eq!(img.digest, md);
        assert_eq!(img.sha256, hex(Sha256::digest(&bytes).as_slice()));
        assert_eq!(img.names, vec!["example.org/a:1".to_string()]);
        assert_eq!(
            img.manifests,
            vec![PlatformManifest {
                platform: "linux/amd64".into(),
                digest: md
            }]
        );
        assert_eq!(img.blobs.len(), 3);
    }

    #[test]
    fn a_wrong_sha256_is_told_with_both_sums() {
        let (files, _) = image(b"x");
        let bytes = archive(&files);
        let e = read_from(&bytes[..], Some(&"0".repeat(64))).unwrap_err();
        assert!(matches!(e, ImageError::Sha256Mismatch { .. }), "{e}");
        assert!(e.to_string().contains(&"0".repeat(64)));
        assert!(
            e.to_string()
                .contains(&hex(Sha256::digest(&bytes).as_slice()))
        );
    }

    #[test]
    fn archives_that_are_not_images_are_refused_with_the_reason() {
        // Not a tar at all.
        let e = read_from(&b"hello, this is not a tar archive"[..], None).unwrap_err();
        assert!(e.to_string().starts_with("not an image archive"), "{e}");
        // A tar without index.json.
        let e = read_from(&tar_of(&[("etc/hostname", b"node\n")])[..], None).unwrap_err();
        assert!(matches!(e, ImageError::NoIndex), "{e}");
        // Old docker save.
        let e = read_from(
            &tar_of(&[("manifest.json", b"[]"), ("abc/layer.tar", b"")])[..],
            None,
        )
        .unwrap_err();
        assert!(matches!(e, ImageError::LegacyDockerSave), "{e}");
        // index.json that is not JSON.
        let e = read_from(&tar_of(&[("index.json", b"{nope")])[..], None).unwrap_err();
        assert!(
            e.to_string().contains("index.json is not valid JSON"),
            "{e}"
        );
    }

    #[test]
    fn a_damaged_or_incomplete_archive_is_refused() {
        let (mut files, _) = image(b"layer");
        // A blob whose content is not its name.
        let layer = blob_path(&digest(b"layer"));
        let i = files.iter().position(|(p, _)| *p == layer).unwrap();
        files[i].1 = b"other".to_vec();
        let e = read_from(&archive(&files)[..], None).unwrap_err();
        assert!(matches!(e, ImageError::BadBlob { .. }), "{e}");
        // A missing layer.
        let (mut files, _) = image(b"layer");
        files.retain(|(p, d)| *p != blob_path(&digest(b"layer")) || d.is_empty());
        let e = read_from(&archive(&files)[..], None).unwrap_err();
        assert!(e.to_string().contains("lacks the layer of manifest"), "{e}");
    }

    #[test]
    fn two_images_in_one_archive_are_refused() {
        let (mut files, md) = image(b"layer");
        let other = format!("sha256:{}", "1".repeat(64));
        files[1].1 = serde_json::to_vec(&json!({"manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": 1},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": other, "size": 1},
        ]}))
        .unwrap();
        let e = read_from(&archive(&files)[..], None).unwrap_err();
        assert!(
            matches!(e, ImageError::SeveralImages(ref d) if d.len() == 2),
            "{e}"
        );
    }

    #[test]
    fn the_written_archive_names_the_image_and_keeps_its_digests() {
        let dir = tempfile::tempdir().unwrap();
        let (files, md) = image(b"some layer");
        let src = dir.path().join("in.tar");
        std::fs::write(&src, archive(&files)).unwrap();
        let img = read(&src, None).unwrap();
        let dst = dir.path().join("out.tar");
        let n = write_named(
            &src,
            &img,
            "registry.k8s.io/pause:3.10",
            File::create(&dst).unwrap(),
        )
        .unwrap();
        assert_eq!(n, std::fs::metadata(&dst).unwrap().len());
        let again = read(&dst, None).unwrap();
        assert_eq!(again.digest, md);
        assert_eq!(again.blobs, img.blobs);
        assert_eq!(again.names, vec!["registry.k8s.io/pause:3.10".to_string()]);
        // Same input, same bytes.
        let dst2 = dir.path().join("out2.tar");
        write_named(
            &src,
            &img,
            "registry.k8s.io/pause:3.10",
            File::create(&dst2).unwrap(),
        )
        .unwrap();
        assert_eq!(std::fs::read(&dst).unwrap(), std::fs::read(&dst2).unwrap());
    }
}

#[cfg(test)]
mod node_tests {
    use super::*;

    #[test]
    fn prepare_writes_the_archive_its_record_and_the_import_line_and_check_finds_it() {
        let dir = tempfile::tempdir().unwrap();
        let (files, md) = super::tests::image_for_tests(b"layer");
        let src = dir.path().join("pause.tar");
        std::fs::write(&src, super::tests::archive_for_tests(&files)).unwrap();
        let root = dir.path().join("root");
        let p = prepare(&src, "pause:3.10", None, &root, Some(1_700_000_000)).unwrap();
        assert_eq!(p.reference, "docker.io/library/pause:3.10");
        let base = |ext: &str| root.join(NODE_DIR).join(format!("{}.{ext}", p.stem));
        let line = std::fs::read_to_string(base("import")).unwrap();
        assert_eq!(line, format!("docker.io/library/pause:3.10 {md}\n"));
        let rec: Value = serde_json::from_slice(&std::fs::read(base("json")).unwrap()).unwrap();
        assert_eq!(rec["digest"], md.as_str());
        assert_eq!(rec["archive"]["sha256"], p.archive.sha256.as_str());
        assert_eq!(read(&base("tar"), None).unwrap().digest, md);
        for path in [base("tar"), root.join(NODE_DIR), root.join("var")] {
            let t = std::fs::metadata(&path).unwrap().modified().unwrap();
            assert_eq!(
                t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs(),
                1_700_000_000,
                "{path:?}"
            );
        }

        // The check: by any spelling of the reference, with or without the digest.
        assert!(check(&root, "docker.io/library/pause:3.10", Some(&md)).is_ok());
        assert!(check(&root, "pause:3.10", None).is_ok());
        let e = check(
            &root,
            "pause:3.10",
            Some(&format!("sha256:{}", "0".repeat(64))),
        )
        .unwrap_err();
        assert!(e.contains(&format!("has digest {md}")), "{e}");
        let e = check(&root, "pause:3.9", None).unwrap_err();
        assert!(e.contains("is not among the node's images"), "{e}");

        // A reference pinned to another digest is refused; a bad reference too.
        let other = format!("sha256:{}", "1".repeat(64));
        let e = prepare(&src, &format!("pause@{other}"), None, &root, None).unwrap_err();
        assert!(matches!(e, PrepareError::DigestMismatch { .. }), "{e}");
        assert!(matches!(
            prepare(&src, "Pause", None, &root, None).unwrap_err(),
            PrepareError::Ref(_)
        ));
        assert!(prepare(&src, &format!("pause@{md}"), None, &root, None).is_ok());
    }
}
