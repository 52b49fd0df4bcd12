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
        if let Some(sink) = self.sink.as_mut() {
            sink.write_all(data).map_err(TarError::Write)?;
        }
        self.offset += data.len() as u64;
        (self.on_bytes)(self.offset);
        Ok(())
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
    let mut r = Reader {
        inner: input,
        sink,
        offset: 0,
        on_bytes,
    };
    let mut totals = Totals::default();
    let mut header = [0u8; BLOCK];
    let mut long_name: Option<String> = None;
    let mut long_link: Option<String> = None;
    let mut pax: Vec<(String, String)> = Vec::new();
    let mut first = true;
    loop {
        let at = r.offset;
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
        };
        totals.add(&entry);
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
        let mut h = [0u8; BLOCK];
        h[..name.len()].copy_from_slice(name.as_bytes());
        h[100..107].copy_from_slice(b"0000644");
        h[108..115].copy_from_slice(b"0000000");
        h[116..123].copy_from_slice(b"0000000");
        h[124..135].copy_from_slice(format!("{size:011o}").as_bytes());
        h[136..147].copy_from_slice(b"00000000000");
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

    #[test]
    fn normalizes_paths() {
        assert_eq!(normalize("./"), "");
        assert_eq!(normalize("."), "");
        assert_eq!(normalize("/etc/"), "etc");
        assert_eq!(normalize("././usr/lib"), "usr/lib");
    }
}
