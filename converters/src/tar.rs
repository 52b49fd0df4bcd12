//! A streaming tar reader that passes every byte through unchanged while it validates the
//! archive and reports entries.
//!
//! The converter feeds the rootfs tar to `mke2fs -d -` (or to `tar -x` on hosts whose e2fsprogs
//! cannot read tarballs) and needs, on the way, the kernel, initrd, systemd-boot and
//! `/etc/kernel/cmdline`. This reader does that in one pass with a fixed-size buffer: headers
//! (ustar, GNU long names, PAX records) are parsed, checksums verified, and a truncated or
//! non-tar stream is an error rather than a silently short filesystem.

use std::io::{self, Read, Write};

const BLOCK: usize = 512;

/// Kind of a tar entry, as far as the converter cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    File,
    HardLink,
    Symlink,
    Directory,
    Other,
}

/// One entry's header, with GNU/PAX extensions applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Normalised path: no leading `./` or `/`, no trailing `/` (the root directory is `""`).
    pub path: String,
    pub kind: EntryKind,
    pub size: u64,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: i64,
    pub link: String,
    /// The header's type flag (`b'3'` character device, `b'4'` block device, `b'6'` FIFO, …).
    pub typeflag: u8,
    /// Device numbers of a character or block device.
    pub dev: (u32, u32),
    /// Extended attributes (`SCHILY.xattr.<name>` PAX records), values as raw bytes.
    pub xattrs: Vec<(String, Vec<u8>)>,
}

/// Errors found in the tar stream itself.
#[derive(Debug, thiserror::Error)]
pub enum TarError {
    #[error("input is empty, expected a tar archive")]
    Empty,
    #[error("not a tar archive: bad header checksum at byte offset {offset}")]
    BadChecksum { offset: u64 },
    #[error("invalid tar header at byte offset {offset}: {what}")]
    BadHeader { offset: u64, what: String },
    #[error(
        "tar archive is truncated: stream ended at byte offset {offset} {during} (was the build or the download interrupted?)"
    )]
    Truncated { offset: u64, during: &'static str },
    #[error("reading the tar stream: {0}")]
    Read(#[source] io::Error),
    #[error("passing the tar stream on: {0}")]
    Write(#[source] io::Error),
}

/// What to do with an entry's contents.
pub enum Capture {
    Skip,
    To(Box<dyn Write>),
}

/// Totals seen in a stream, used for sizing and for "how much is needed" messages.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub bytes: u64,
    pub entries: u64,
    /// File contents rounded up to 4 KiB blocks, plus a block per directory and long symlink.
    pub data_blocks_bytes: u64,
}

impl Totals {
    pub fn add(&mut self, e: &Entry) {
        self.entries += 1;
        let round = |n: u64| n.div_ceil(4096) * 4096;
        self.data_blocks_bytes += match e.kind {
            EntryKind::File => round(e.size),
            EntryKind::Directory => 4096,
            EntryKind::Symlink if e.link.len() >= 60 => 4096,
            _ => 0,
        };
    }
}

struct Reader<'a, R: Read> {
    inner: R,
    sink: Option<&'a mut dyn Write>,
    offset: u64,
    on_bytes: &'a mut dyn FnMut(u64),
    /// While set, bytes meant for the sink collect here (an entry's headers, held back until
    /// its own PAX header can be written in front of it).
    held: Option<Vec<u8>>,
}

impl<R: Read> Reader<'_, R> {
    /// Reads exactly one block; `Ok(false)` on a clean EOF before any byte of it.
    fn block(&mut self, buf: &mut [u8; BLOCK], during: &'static str) -> Result<bool, TarError> {
        let mut got = 0;
        while got < BLOCK {
            match self.inner.read(&mut buf[got..]) {
                Ok(0) if got == 0 => return Ok(false),
                Ok(0) => {
                    return Err(TarError::Truncated {
                        offset: self.offset + got as u64,
                        during,
                    });
                }
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(TarError::Read(e)),
            }
        }
        self.pass(&buf[..])?;
        Ok(true)
    }

    fn pass(&mut self, data: &[u8]) -> Result<(), TarError> {
        if let Some(h) = self.held.as_mut() {
            h.extend_from_slice(data);
        } else if let Some(sink) = self.sink.as_mut() {
            sink.write_all(data).map_err(TarError::Write)?;
        }
        self.offset += data.len() as u64;
        (self.on_bytes)(self.offset);
        Ok(())
    }

    /// Writes straight to the sink (what was held back).
    fn emit(&mut self, data: &[u8]) -> Result<(), TarError> {
        match self.sink.as_mut() {
            Some(sink) => sink.write_all(data).map_err(TarError::Write),
            None => Ok(()),
        }
    }

    /// Streams `size` bytes of entry data plus padding; the data also goes to `capture`.
    fn data(&mut self, size: u64, mut capture: Option<&mut dyn Write>) -> Result<(), TarError> {
        let padded = size.div_ceil(BLOCK as u64) * BLOCK as u64;
        let mut remaining = padded;
        let mut data_left = size;
        let mut buf = vec![0u8; 256 * 1024];
        while remaining > 0 {
            let want = remaining.min(buf.len() as u64) as usize;
            let n = match self.inner.read(&mut buf[..want]) {
                Ok(0) => {
                    return Err(TarError::Truncated {
                        offset: self.offset,
                        during: "inside an entry's data",
                    });
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(TarError::Read(e)),
            };
            self.pass(&buf[..n])?;
            if let Some(c) = capture.as_mut() {
                let take = (n as u64).min(data_left) as usize;
                if take > 0 {
                    c.write_all(&buf[..take]).map_err(TarError::Write)?;
                }
            }
            data_left = data_left.saturating_sub(n as u64);
            remaining -= n as u64;
        }
        Ok(())
    }

    /// Reads an extension record (GNU long name, PAX) into memory; bounded to 1 MiB.
    fn small_data(&mut self, size: u64, header_at: u64) -> Result<Vec<u8>, TarError> {
        if size > 1 << 20 {
            return Err(TarError::BadHeader {
                offset: header_at,
                what: format!("extension record of {size} bytes is implausibly large"),
            });
        }
        let mut v = Vec::with_capacity(size as usize);
        self.data(size, Some(&mut v))?;
        Ok(v)
    }
}

fn parse_octal(field: &[u8], offset: u64, what: &str) -> Result<u64, TarError> {
    // GNU base-256 for large numbers.
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        let mut v: u64 = u64::from(field[0] & 0x7f);
        for &b in &field[1..] {
            v = v.checked_shl(8).ok_or_else(|| TarError::BadHeader {
                offset,
                what: format!("{what} out of range"),
            })? | u64::from(b);
        }
        return Ok(v);
    }
    let text: Vec<u8> = field
        .iter()
        .copied()
        .skip_while(|b| *b == b' ')
        .take_while(|b| *b != 0 && *b != b' ')
        .collect();
    if text.is_empty() {
        return Ok(0);
    }
    let s = std::str::from_utf8(&text).map_err(|_| TarError::BadHeader {
        offset,
        what: format!("{what} is not a number"),
    })?;
    u64::from_str_radix(s, 8).map_err(|_| TarError::BadHeader {
        offset,
        what: format!("{what} {s:?} is not an octal number"),
    })
}

fn cstr(field: &[u8]) -> String {
    let end = field.iter().position(|b| *b == 0).unwrap_or(field.len());
    String::from_utf8_lossy(&field[..end]).into_owned()
}

/// Normalises a tar path: strips `./` and `/` prefixes and a trailing `/`.
pub fn normalize(path: &str) -> String {
    let mut p = path;
    loop {
        if let Some(rest) = p.strip_prefix("./") {
            p = rest;
        } else if let Some(rest) = p.strip_prefix('/') {
            p = rest;
        } else {
            break;
        }
    }
    if p == "." {
        p = "";
    }
    p.trim_end_matches('/').to_string()
}

fn checksum_ok(h: &[u8; BLOCK]) -> Result<bool, ()> {
    let stored = {
        let f = &h[148..156];
        let text: String = f
            .iter()
            .map(|&b| b as char)
            .skip_while(|c| *c == ' ')
            .take_while(|c| c.is_digit(8))
            .collect();
        u64::from_str_radix(&text, 8).map_err(|_| ())?
    };
    let mut unsigned: u64 = 0;
    let mut signed: i64 = 0;
    for (i, &b) in h.iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { b };
        unsigned += u64::from(b);
        signed += i64::from(b as i8);
    }
    Ok(stored == unsigned || stored as i64 == signed)
}

fn parse_pax(data: &[u8], offset: u64) -> Result<Vec<(String, String)>, TarError> {
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let sp = rest
            .iter()
            .position(|b| *b == b' ')
            .ok_or_else(|| TarError::BadHeader {
                offset,
                what: "malformed PAX record".into(),
            })?;
        let len: usize = std::str::from_utf8(&rest[..sp])
            .ok()
            .and_then(|s| s.parse().ok())
            .filter(|l: &usize| *l > sp + 1 && *l <= rest.len())
            .ok_or_else(|| TarError::BadHeader {
                offset,
                what: "malformed PAX record length".into(),
            })?;
        let rec = &rest[sp + 1..len];
        let rec = rec.strip_suffix(b"\n").unwrap_or(rec);
        if let Some(eq) = rec.iter().position(|b| *b == b'=') {
            out.push((
                String::from_utf8_lossy(&rec[..eq]).into_owned(),
                String::from_utf8_lossy(&rec[eq + 1..]).into_owned(),
            ));
        }
        rest = &rest[len..];
    }
    Ok(out)
}

/// Reads a whole tar stream from `input`, copying every byte to `sink` (if any). For each
/// entry, `visit` may ask for the entry's contents. `on_bytes` gets the running byte count.
/// Returns the totals. Anything after the end-of-archive marker is passed through unread.
pub fn stream<'a, R: Read>(
    input: R,
    sink: Option<&'a mut dyn Write>,
    on_bytes: &'a mut dyn FnMut(u64),
    visit: &mut dyn FnMut(&Entry) -> Capture,
) -> Result<Totals, TarError> {
    stream_impl(input, sink, on_bytes, visit, false)
}

/// Like [`stream`], except that every entry reaches `sink` behind a PAX header setting its
/// atime and ctime to its mtime (whole seconds). The entry's own PAX records are kept, except
/// any atime and ctime. mke2fs's tar reader (libarchive) takes all three times from there, so
/// the filesystem's times come from the tar alone. `on_bytes` and the totals count input bytes.
pub fn stream_with_times<'a, R: Read>(
    input: R,
    sink: &'a mut dyn Write,
    on_bytes: &'a mut dyn FnMut(u64),
    visit: &mut dyn FnMut(&Entry) -> Capture,
) -> Result<Totals, TarError> {
    stream_impl(input, Some(sink), on_bytes, visit, true)
}

/// One PAX record, `"<len> <key>=<value>\n"`, where `len` counts the whole record.
fn pax_record(key: &str, value: &str) -> Vec<u8> {
    let body = key.len() + value.len() + 3;
    let mut len = body + 1;
    loop {
        let l = body + len.to_string().len();
        if l == len {
            break;
        }
        len = l;
    }
    format!("{len} {key}={value}\n").into_bytes()
}

/// The records of PAX data already validated by [`parse_pax`]: each whole record (length,
/// key, value, newline) and its key and raw value.
fn pax_records(data: &[u8]) -> impl Iterator<Item = (&[u8], &[u8], &[u8])> {
    let mut rest = data;
    std::iter::from_fn(move || {
        let sp = rest.iter().position(|b| *b == b' ')?;
        let len = std::str::from_utf8(&rest[..sp])
            .ok()
            .and_then(|s| s.parse::<usize>().ok())
            .filter(|l| *l > sp + 1 && *l <= rest.len())?;
        let (rec, tail) = rest.split_at(len);
        rest = tail;
        let kv = &rec[sp + 1..];
        let kv = kv.strip_suffix(b"\n").unwrap_or(kv);
        let eq = kv.iter().position(|b| *b == b'=').unwrap_or(kv.len());
        Some((rec, &kv[..eq], kv.get(eq + 1..).unwrap_or_default()))
    })
}

/// The `SCHILY.xattr.<name>` records of PAX data (already validated by [`parse_pax`]), with
/// their values as raw bytes (a capability is binary).
fn pax_xattrs(data: &[u8]) -> Vec<(String, Vec<u8>)> {
    pax_records(data)
        .filter_map(|(_, key, value)| {
            let name = key.strip_prefix(b"SCHILY.xattr.")?;
            Some((String::from_utf8_lossy(name).into_owned(), value.to_vec()))
        })
        .collect()
}

/// The raw records of PAX data (already validated by [`parse_pax`]) except those for `drop`.
fn pax_records_without(data: &[u8], drop: &[&str]) -> Vec<u8> {
    pax_records(data)
        .filter(|(_, key, _)| !drop.iter().any(|d| d.as_bytes() == *key))
        .flat_map(|(rec, _, _)| rec.iter().copied())
        .collect()
}

/// A PAX extended header (typeflag `x`) with `records`, padded to whole blocks.
fn pax_block(records: &[u8], mtime: i64) -> Vec<u8> {
    let mut h = [0u8; BLOCK];
    h[..9].copy_from_slice(b"PaxHeader");
    h[100..108].copy_from_slice(b"0000644\0");
    h[108..116].copy_from_slice(b"0000000\0");
    h[116..124].copy_from_slice(b"0000000\0");
    h[124..136].copy_from_slice(format!("{:011o}\0", records.len()).as_bytes());
    h[136..148].copy_from_slice(format!("{:011o}\0", mtime.clamp(0, 0o77777777777)).as_bytes());
    h[156] = b'x';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u64 = h.iter().map(|b| u64::from(*b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    let mut v = h.to_vec();
    v.extend_from_slice(records);
    v.resize(v.len().div_ceil(BLOCK) * BLOCK, 0);
    v
}

fn stream_impl<'a, R: Read>(
    input: R,
    sink: Option<&'a mut dyn Write>,
    on_bytes: &'a mut dyn FnMut(u64),
    visit: &mut dyn FnMut(&Entry) -> Capture,
    times: bool,
) -> Result<Totals, TarError> {
    let mut r = Reader {
        inner: input,
        sink,
        offset: 0,
        on_bytes,
        held: None,
    };
    // With `times`: where the entry's own PAX header stood among its held headers, and its
    // records without atime/ctime.
    let mut pax_slot: Option<usize> = None;
    let mut pax_kept: Vec<u8> = Vec::new();
    let mut totals = Totals::default();
    let mut header = [0u8; BLOCK];
    let mut long_name: Option<String> = None;
    let mut long_link: Option<String> = None;
    let mut pax: Vec<(String, String)> = Vec::new();
    let mut xattrs: Vec<(String, Vec<u8>)> = Vec::new();
    let mut first = true;
    loop {
        let at = r.offset;
        if times && r.held.is_none() {
            r.held = Some(Vec::new());
        }
        let held_before = r.held.as_ref().map_or(0, Vec::len);
        if !r.block(&mut header, "where a header was expected")? {
            if first {
                return Err(TarError::Empty);
            }
            return Err(TarError::Truncated {
                offset: at,
                during: "before the end-of-archive marker",
            });
        }
        if header.iter().all(|b| *b == 0) {
            if let Some(h) = r.held.take() {
                r.emit(&h)?;
            }
            // End of archive: GNU tar accepts a single zero block; pass the rest through.
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match r.inner.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => r.pass(&buf[..n])?,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(TarError::Read(e)),
                }
            }
            totals.bytes = r.offset;
            return Ok(totals);
        }
        match checksum_ok(&header) {
            Ok(true) => {}
            _ => return Err(TarError::BadChecksum { offset: at }),
        }
        first = false;
        let typeflag = header[156];
        let mut size = parse_octal(&header[124..136], at, "size")?;
        match typeflag {
            b'L' => {
                let d = r.small_data(size, at)?;
                long_name = Some(cstr(&d));
                continue;
            }
            b'K' => {
                let d = r.small_data(size, at)?;
                long_link = Some(cstr(&d));
                continue;
            }
            b'x' => {
                let d = r.small_data(size, at)?;
                pax = parse_pax(&d, at)?;
                xattrs = pax_xattrs(&d);
                if let Some(h) = r.held.as_mut() {
                    h.truncate(held_before);
                    pax_slot.get_or_insert(held_before);
                    pax_kept.extend(pax_records_without(&d, &["atime", "ctime"]));
                }
                continue;
            }
            b'g' => {
                r.small_data(size, at)?;
                continue;
            }
            _ => {}
        }
        let mut name = cstr(&header[0..100]);
        if &header[257..262] == b"ustar" {
            let prefix = cstr(&header[345..500]);
            if !prefix.is_empty() {
                name = format!("{prefix}/{name}");
            }
        }
        let mut link = cstr(&header[157..257]);
        let mut uid = parse_octal(&header[108..116], at, "uid")?;
        let mut gid = parse_octal(&header[116..124], at, "gid")?;
        let mut mtime = parse_octal(&header[136..148], at, "mtime")? as i64;
        if let Some(n) = long_name.take() {
            name = n;
        }
        if let Some(l) = long_link.take() {
            link = l;
        }
        for (k, v) in std::mem::take(&mut pax) {
            let num = || {
                v.parse::<u64>().map_err(|_| TarError::BadHeader {
                    offset: at,
                    what: format!("PAX {k}={v:?} is not a number"),
                })
            };
            match k.as_str() {
                "path" => name = v.clone(),
                "linkpath" => link = v.clone(),
                "size" => size = num()?,
                "uid" => uid = num()?,
                "gid" => gid = num()?,
                "mtime" => {
                    mtime = v
                        .split('.')
                        .next()
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(mtime)
                }
                _ => {}
            }
        }
        let kind = match typeflag {
            b'0' | 0 | b'7' => EntryKind::File,
            b'1' => EntryKind::HardLink,
            b'2' => EntryKind::Symlink,
            b'5' => EntryKind::Directory,
            _ => EntryKind::Other,
        };
        // Only regular files (and unknown types that declare a size) carry data.
        let data_size = match kind {
            EntryKind::File | EntryKind::Other => size,
            _ => 0,
        };
        let entry = Entry {
            path: normalize(&name),
            kind,
            size,
            mode: parse_octal(&header[100..108], at, "mode")? as u32,
            uid,
            gid,
            mtime,
            link,
            typeflag,
            dev: if matches!(typeflag, b'3' | b'4') {
                (
                    parse_octal(&header[329..337], at, "device major")? as u32,
                    parse_octal(&header[337..345], at, "device minor")? as u32,
                )
            } else {
                (0, 0)
            },
            xattrs: std::mem::take(&mut xattrs),
        };
        totals.add(&entry);
        if let Some(h) = r.held.take() {
            let mut records = std::mem::take(&mut pax_kept);
            records.extend(pax_record("atime", &entry.mtime.to_string()));
            records.extend(pax_record("ctime", &entry.mtime.to_string()));
            let slot = pax_slot.take().unwrap_or(h.len() - BLOCK);
            r.emit(&h[..slot])?;
            r.emit(&pax_block(&records, entry.mtime))?;
            r.emit(&h[slot..])?;
        }
        match visit(&entry) {
            Capture::Skip => r.data(data_size, None)?,
            Capture::To(mut w) => {
                r.data(data_size, Some(&mut *w))?;
                w.flush().map_err(TarError::Write)?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::rc::Rc;

    #[derive(Clone, Default)]
    struct Shared(Rc<RefCell<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.borrow_mut().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn header(name: &str, typeflag: u8, size: u64) -> [u8; BLOCK] {
        header_at(name, typeflag, size, 0)
    }

    fn header_at(name: &str, typeflag: u8, size: u64, mtime: u64) -> [u8; BLOCK] {
        let mut h = [0u8; BLOCK];
        h[..name.len()].copy_from_slice(name.as_bytes());
        h[100..107].copy_from_slice(b"0000644");
        h[108..115].copy_from_slice(b"0000000");
        h[116..123].copy_from_slice(b"0000000");
        h[124..135].copy_from_slice(format!("{size:011o}").as_bytes());
        h[136..147].copy_from_slice(format!("{mtime:011o}").as_bytes());
        h[156] = typeflag;
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u64 = h.iter().map(|b| u64::from(*b)).sum();
        h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        h
    }

    fn archive(entries: &[(&str, u8, &[u8])]) -> Vec<u8> {
        let mut v = Vec::new();
        for (name, t, data) in entries {
            v.extend_from_slice(&header(name, *t, data.len() as u64));
            v.extend_from_slice(data);
            v.resize(v.len().div_ceil(BLOCK) * BLOCK, 0);
        }
        v.extend_from_slice(&[0u8; 2 * BLOCK]);
        v
    }

    #[test]
    fn passes_through_and_captures() {
        let a = archive(&[
            ("./", b'5', b""),
            ("./boot/vmlinuz-1", b'0', b"kernel!"),
            ("./etc/x", b'0', b"x"),
        ]);
        let mut out = Vec::new();
        let kernel = Shared::default();
        let mut seen = Vec::new();
        let t = stream(&a[..], Some(&mut out), &mut |_| {}, &mut |e| {
            seen.push(e.path.clone());
            if e.path == "boot/vmlinuz-1" {
                Capture::To(Box::new(kernel.clone()))
            } else {
                Capture::Skip
            }
        })
        .unwrap();
        assert_eq!(out, a);
        assert_eq!(*kernel.0.borrow(), b"kernel!");
        assert_eq!(seen, ["", "boot/vmlinuz-1", "etc/x"]);
        assert_eq!(t.entries, 3);
        assert_eq!(t.bytes, a.len() as u64);
    }

    #[test]
    fn long_names_and_pax() {
        let long = "a/".repeat(80) + "file";
        let mut a = Vec::new();
        a.extend_from_slice(&header("././@LongLink", b'L', long.len() as u64 + 1));
        let mut d = long.clone().into_bytes();
        d.push(0);
        d.resize(BLOCK, 0);
        a.extend_from_slice(&d);
        a.extend_from_slice(&header("short", b'0', 0));
        let rec = "21 path=pax/name.txt\n";
        a.extend_from_slice(&header("PaxHeader", b'x', rec.len() as u64));
        let mut d = rec.as_bytes().to_vec();
        d.resize(BLOCK, 0);
        a.extend_from_slice(&d);
        a.extend_from_slice(&header("ignored", b'0', 0));
        a.extend_from_slice(&[0u8; 1024]);
        let mut seen = Vec::new();
        stream(&a[..], None, &mut |_| {}, &mut |e| {
            seen.push(e.path.clone());
            Capture::Skip
        })
        .unwrap();
        assert_eq!(seen, [long, "pax/name.txt".to_string()]);
    }

    #[test]
    fn truncation_and_garbage_are_errors() {
        let a = archive(&[("f", b'0', &[7u8; 2000])]);
        let err = stream(&a[..1200], None, &mut |_| {}, &mut |_| Capture::Skip).unwrap_err();
        assert!(matches!(err, TarError::Truncated { .. }), "{err}");
        let err = stream(&a[..1024], None, &mut |_| {}, &mut |_| Capture::Skip).unwrap_err();
        assert!(matches!(err, TarError::Truncated { .. }), "{err}");
        // Cut exactly after the data: no end-of-archive marker.
        let err = stream(&a[..2560], None, &mut |_| {}, &mut |_| Capture::Skip).unwrap_err();
        assert!(matches!(err, TarError::Truncated { .. }), "{err}");
        let err = stream(&b"hello world"[..], None, &mut |_| {}, &mut |_| {
            Capture::Skip
        })
        .unwrap_err();
        assert!(matches!(err, TarError::Truncated { .. }), "{err}");
        let junk = vec![b'x'; 4096];
        let err = stream(&junk[..], None, &mut |_| {}, &mut |_| Capture::Skip).unwrap_err();
        assert!(matches!(err, TarError::BadChecksum { offset: 0 }), "{err}");
        let err = stream(&b""[..], None, &mut |_| {}, &mut |_| Capture::Skip).unwrap_err();
        assert!(matches!(err, TarError::Empty), "{err}");
    }

    /// path, typeflag, mtime, data, raw PAX records in front of it.
    type Walked = (String, u8, i64, Vec<u8>, Vec<u8>);

    /// Each entry of `a` with the PAX records in front of it (`x` headers).
    fn walk(a: &[u8]) -> Vec<Walked> {
        let mut out = Vec::new();
        let mut pax = Vec::new();
        let mut at = 0;
        while at + BLOCK <= a.len() && a[at..at + BLOCK].iter().any(|b| *b != 0) {
            let h: [u8; BLOCK] = a[at..at + BLOCK].try_into().unwrap();
            assert_eq!(checksum_ok(&h), Ok(true), "checksum at {at}");
            let size = parse_octal(&h[124..136], 0, "size").unwrap() as usize;
            let data = a[at + BLOCK..at + BLOCK + size].to_vec();
            let kind = h[156];
            let data_size = if kind == b'1' || kind == b'5' {
                0
            } else {
                size
            };
            at += BLOCK + data_size.div_ceil(BLOCK) * BLOCK;
            if kind == b'x' {
                pax.extend(data);
                continue;
            }
            let mtime = parse_octal(&h[136..148], 0, "mtime").unwrap() as i64;
            out.push((cstr(&h[..100]), kind, mtime, data, std::mem::take(&mut pax)));
        }
        out
    }

    #[test]
    fn times_travel_in_pax_headers() {
        let mut a = Vec::new();
        a.extend_from_slice(&header_at("./", b'5', 0, 1_700_000_000));
        a.extend_from_slice(&header_at("./etc/x", b'0', 5, 1_700_000_001));
        a.extend_from_slice(b"hello");
        a.resize(a.len().div_ceil(BLOCK) * BLOCK, 0);
        // An entry with its own PAX header: path, a stale atime, a binary xattr value.
        let mut rec = b"11 atime=5\n".to_vec();
        rec.extend_from_slice(b"27 SCHILY.xattr.user.b=\x00\xff\n\n");
        rec.extend_from_slice(b"19 path=etc/long-y\n");
        a.extend_from_slice(&header("PaxHeader", b'x', rec.len() as u64));
        a.extend_from_slice(&rec);
        a.resize(a.len().div_ceil(BLOCK) * BLOCK, 0);
        a.extend_from_slice(&header_at("./etc/y", b'0', 0, 1_600_000_000));
        let z = a.len();
        a.extend_from_slice(&header_at("./etc/z", b'1', 0, 1_700_000_002));
        a[z + 157..z + 163].copy_from_slice(b"etc/x\0");
        a[z + 148..z + 156].copy_from_slice(b"        ");
        let sum: u64 = a[z..].iter().map(|b| u64::from(*b)).sum();
        a[z + 148..z + 155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        a.extend_from_slice(&[0u8; 2 * BLOCK]);

        let mut out = Vec::new();
        let mut seen_bytes = 0;
        let t = stream_with_times(&a[..], &mut out, &mut |n| seen_bytes = n, &mut |_| {
            Capture::Skip
        })
        .unwrap();
        assert_eq!(t.bytes, a.len() as u64, "totals count input bytes");
        assert_eq!(seen_bytes, a.len() as u64);
        assert_eq!(t.entries, 4);

        let w = walk(&out);
        let names: Vec<_> = w.iter().map(|e| (e.0.as_str(), e.1, e.2)).collect();
        assert_eq!(
            names,
            [
                ("./", b'5', 1_700_000_000),
                ("./etc/x", b'0', 1_700_000_001),
                ("./etc/y", b'0', 1_600_000_000),
                ("./etc/z", b'1', 1_700_000_002),
            ]
        );
        assert_eq!(w[1].3, b"hello");
        for (name, _, mtime, _, pax) in &w {
            let recs = parse_pax(pax, 0).unwrap();
            let get = |k: &str| {
                recs.iter()
                    .filter(|r| r.0 == k)
                    .map(|r| r.1.clone())
                    .collect::<Vec<_>>()
            };
            assert_eq!(get("atime"), [mtime.to_string()], "{name}");
            assert_eq!(get("ctime"), [mtime.to_string()], "{name}");
        }
        // The entry's own records are kept byte for byte, the stale atime is not.
        let y = &w[2].4;
        assert!(
            y.windows(27)
                .any(|r| r == b"27 SCHILY.xattr.user.b=\x00\xff\n\n")
        );
        assert!(y.windows(19).any(|r| r == b"19 path=etc/long-y\n"));
        assert!(!y.windows(11).any(|r| r == b"11 atime=5\n"));
        // Read back, the rewritten stream is the same archive.
        let mut back = Vec::new();
        stream(&out[..], None, &mut |_| {}, &mut |e| {
            back.push((e.path.clone(), e.mtime, e.size));
            Capture::Skip
        })
        .unwrap();
        assert_eq!(
            back,
            [
                (String::new(), 1_700_000_000, 0),
                ("etc/x".into(), 1_700_000_001, 5),
                ("etc/long-y".into(), 1_600_000_000, 0),
                ("etc/z".into(), 1_700_000_002, 0),
            ]
        );
    }

    #[test]
    fn pax_record_lengths_count_themselves() {
        for (k, v) in [
            ("atime", "1"),
            ("ctime", "1700000000"),
            ("path", &"a".repeat(95)),
        ] {
            let r = pax_record(k, v);
            let (len, rest) = std::str::from_utf8(&r).unwrap().split_once(' ').unwrap();
            assert_eq!(len.parse::<usize>().unwrap(), r.len());
            assert_eq!(rest, format!("{k}={v}\n"));
        }
    }

    #[test]
    fn normalizes_paths() {
        assert_eq!(normalize("./"), "");
        assert_eq!(normalize("."), "");
        assert_eq!(normalize("/etc/"), "etc");
        assert_eq!(normalize("././usr/lib"), "usr/lib");
    }
}
