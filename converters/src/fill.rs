//! Tar input on hosts whose `mke2fs` cannot read tar streams, without extracting file contents.
//!
//! 1. The tar's tree is made in a scratch directory with every regular file empty and sparse
//!    (the right size, no data), with its links, device nodes and extended attributes. Each
//!    entry's mtime there is its index in the tar plus one, which tells its inode apart later.
//! 2. `mke2fs -d` builds the filesystem from that tree: inodes, directories, symlinks,
//!    attributes, hard links; no data blocks for the files.
//! 3. `debugfs fallocate` reserves each file's blocks (by inode number).
//! 4. [`Ext4::fix_inodes`] reads the inode tables: each tree inode gets the tar's mode bits,
//!    owner and times (atime and ctime = mtime), its reserved extents become written extents,
//!    and the checksums are recomputed.
//! 5. The tar is read a second time and each file's contents are written straight to its
//!    blocks in the disk image (all-zero blocks are left as holes of the image).
//!
//! File contents are written once, into the image, instead of into a directory first.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::Path;

use rustix::fs::{
    self as rfs, AtFlags, FileType, Mode, OFlags, ResolveFlags, Timespec, Timestamps, XattrFlags,
};

use crate::error::ConvertError;
use crate::tar::{Entry, EntryKind};

/// The block size of the root filesystem (`tools::mke2fs` makes it 4 KiB).
pub(crate) const BLOCK: u64 = 4096;

/// What the inode pass needs of each tar entry.
#[derive(Debug, Clone)]
pub(crate) struct Meta {
    pub kind: EntryKind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    pub size: u64,
}

fn entry_err(path: &str, what: impl std::fmt::Display) -> ConvertError {
    ConvertError::TarEntry {
        path: format!("/{path}"),
        what: what.to_string(),
    }
}

/// Builds the sparse tree of step 1.
pub(crate) struct Skeleton {
    root: OwnedFd,
    /// Per tar entry, in order.
    pub entries: Vec<Meta>,
    /// Directories, to get their marker time once everything inside them exists.
    dirs: Vec<(String, u32)>,
    /// The index of the last entry for the root directory.
    pub root_entry: Option<u32>,
    cache: Option<(String, OwnedFd)>,
}

fn marker(id: u32) -> Timestamps {
    let t = Timespec {
        tv_sec: i64::from(id) + 1,
        tv_nsec: 0,
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

fn split(path: &str) -> (&str, &str) {
    match path.rsplit_once('/') {
        Some((p, n)) => (p, n),
        None => ("", path),
    }
}

impl Skeleton {
    pub fn new(dir: &Path) -> Result<Skeleton, ConvertError> {
        std::fs::create_dir_all(dir).map_err(ConvertError::io("creating the work directory"))?;
        let root = rfs::open(
            dir,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| ConvertError::io("opening the work directory")(e.into()))?;
        Ok(Skeleton {
            root,
            entries: Vec::new(),
            dirs: Vec::new(),
            root_entry: None,
            cache: None,
        })
    }

    /// The directory `rel` inside the tree, created (with its parents) when missing; never
    /// through a symbolic link.
    fn dir(&mut self, rel: &str, path: &str) -> Result<OwnedFd, ConvertError> {
        if let Some((p, fd)) = &self.cache
            && p == rel
        {
            return fd
                .try_clone()
                .map_err(ConvertError::io("duplicating a descriptor"));
        }
        let open = |root: &OwnedFd, r: &str| {
            rfs::openat2(
                root,
                if r.is_empty() { "." } else { r },
                OFlags::DIRECTORY | OFlags::PATH | OFlags::CLOEXEC,
                Mode::empty(),
                ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
            )
        };
        let fd = match open(&self.root, rel) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) => {
                let mut at = String::new();
                for part in rel.split('/') {
                    if !at.is_empty() {
                        at.push('/');
                    }
                    at.push_str(part);
                    match rfs::mkdirat(&self.root, at.as_str(), Mode::from_raw_mode(0o755)) {
                        Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                        Err(e) => return Err(entry_err(path, format!("creating /{at}: {e}"))),
                    }
                }
                open(&self.root, rel).map_err(|e| entry_err(path, format!("/{rel}: {e}")))?
            }
            Err(rustix::io::Errno::LOOP | rustix::io::Errno::XDEV) => {
                return Err(entry_err(
                    path,
                    format!(
                        "/{rel} is a symbolic link; entries are only accepted inside directories"
                    ),
                ));
            }
            Err(e) => return Err(entry_err(path, format!("/{rel}: {e}"))),
        };
        let dup = fd
            .try_clone()
            .map_err(ConvertError::io("duplicating a descriptor"))?;
        self.cache = Some((rel.to_string(), dup));
        Ok(fd)
    }

    /// Removes whatever is at `name` (not a directory that the entry would keep).
    fn clear(parent: &OwnedFd, name: &str, keep_dir: bool) -> rustix::io::Result<()> {
        match rfs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => {
                let is_dir = FileType::from_raw_mode(st.st_mode) == FileType::Directory;
                if is_dir && keep_dir {
                    return Ok(());
                }
                rfs::unlinkat(
                    parent,
                    name,
                    if is_dir {
                        AtFlags::REMOVEDIR
                    } else {
                        AtFlags::empty()
                    },
                )
            }
            Err(rustix::io::Errno::NOENT) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Adds one tar entry.
    pub fn add(&mut self, e: &Entry) -> Result<(), ConvertError> {
        let id = u32::try_from(self.entries.len())
            .map_err(|_| entry_err(&e.path, "too many entries"))?;
        self.entries.push(Meta {
            kind: e.kind,
            mode: e.mode & 0o7777,
            uid: u32::try_from(e.uid).map_err(|_| entry_err(&e.path, "uid out of range"))?,
            gid: u32::try_from(e.gid).map_err(|_| entry_err(&e.path, "gid out of range"))?,
            mtime: e.mtime,
            size: e.size,
        });
        if e.path.split('/').any(|c| c == ".." || c == ".") {
            return Err(entry_err(&e.path, "the path has a '.' or '..' component"));
        }
        let err = |what: &str, x: rustix::io::Errno| entry_err(&e.path, format!("{what}: {x}"));
        if e.path.is_empty() {
            if e.kind != EntryKind::Directory {
                return Err(entry_err(&e.path, "the root must be a directory"));
            }
            self.root_entry = Some(id);
            self.set_xattrs(&e.path, &self.root, &e.xattrs)?;
            return Ok(());
        }
        let (rel, name) = split(&e.path);
        let parent = self.dir(rel, &e.path)?;
        match e.kind {
            EntryKind::Directory => {
                Self::clear(&parent, name, true).map_err(|x| err("replacing", x))?;
                match rfs::mkdirat(&parent, name, Mode::from_raw_mode(0o755)) {
                    Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                    Err(x) => return Err(err("creating the directory", x)),
                }
                if !e.xattrs.is_empty() {
                    let fd = rfs::openat(
                        &parent,
                        name,
                        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::empty(),
                    )
                    .map_err(|x| err("opening the directory", x))?;
                    self.set_xattrs(&e.path, &fd, &e.xattrs)?;
                }
                self.dirs.push((e.path.clone(), id));
                if self.cache.as_ref().is_some_and(|(p, _)| *p == e.path) {
                    self.cache = None;
                }
            }
            EntryKind::File => {
                Self::clear(&parent, name, false).map_err(|x| err("replacing", x))?;
                let fd = rfs::openat(
                    &parent,
                    name,
                    OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::WRONLY
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .map_err(|x| err("creating the file", x))?;
                rfs::ftruncate(&fd, e.size).map_err(|x| err("sizing the file", x))?;
                self.set_xattrs(&e.path, &fd, &e.xattrs)?;
                rfs::futimens(&fd, &marker(id)).map_err(|x| err("setting times", x))?;
            }
            EntryKind::Symlink => {
                Self::clear(&parent, name, false).map_err(|x| err("replacing", x))?;
                rfs::symlinkat(e.link.as_str(), &parent, name)
                    .map_err(|x| err("creating the symbolic link", x))?;
                rfs::utimensat(&parent, name, &marker(id), AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|x| err("setting times", x))?;
            }
            EntryKind::HardLink => {
                let target = crate::tar::normalize(&e.link);
                if target.split('/').any(|c| c == ".." || c == ".") || target.is_empty() {
                    return Err(entry_err(
                        &e.path,
                        format!("bad hard link target {:?}", e.link),
                    ));
                }
                let (trel, tname) = split(&target);
                let tparent = self.dir(trel, &e.path)?;
                Self::clear(&parent, name, false).map_err(|x| err("replacing", x))?;
                rfs::linkat(&tparent, tname, &parent, name, AtFlags::empty())
                    .map_err(|x| entry_err(&e.path, format!("hard link to /{target}: {x}")))?;
            }
            EntryKind::Other => {
                let ft = match e.typeflag {
                    b'3' => FileType::CharacterDevice,
                    b'4' => FileType::BlockDevice,
                    b'6' => FileType::Fifo,
                    t => {
                        return Err(entry_err(
                            &e.path,
                            format!(
                                "unsupported tar entry type {:?}: expected a file, directory, link, device or FIFO",
                                t as char
                            ),
                        ));
                    }
                };
                Self::clear(&parent, name, false).map_err(|x| err("replacing", x))?;
                let dev = rfs::makedev(e.dev.0, e.dev.1);
                rfs::mknodat(&parent, name, ft, Mode::from_raw_mode(0o600), dev)
                    .map_err(|x| err("creating the device node", x))?;
                rfs::utimensat(&parent, name, &marker(id), AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|x| err("setting times", x))?;
            }
        }
        Ok(())
    }

    fn set_xattrs(
        &self,
        path: &str,
        fd: &impl AsFd,
        xattrs: &[(String, Vec<u8>)],
    ) -> Result<(), ConvertError> {
        for (k, v) in xattrs {
            rfs::fsetxattr(fd, k.as_str(), v, XattrFlags::empty())
                .map_err(|x| entry_err(path, format!("extended attribute {k}: {x}")))?;
        }
        Ok(())
    }

    /// Gives directories their marker times, now that everything inside them exists.
    pub fn finish(&mut self) -> Result<(), ConvertError> {
        self.cache = None;
        for (path, id) in std::mem::take(&mut self.dirs) {
            let (rel, name) = split(&path);
            let parent = self.dir(rel, &path)?;
            rfs::utimensat(&parent, name, &marker(id), AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|x| entry_err(&path, format!("setting times: {x}")))?;
        }
        if let Some(id) = self.root_entry {
            rfs::futimens(&self.root, &marker(id))
                .map_err(|x| entry_err("", format!("setting times: {x}")))?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// ext4 inode tables

const CRC32C_POLY: u32 = 0x82F6_3B78;

fn crc32c_table() -> &'static [u32; 256] {
    static T: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    T.get_or_init(|| {
        let mut t = [0u32; 256];
        for (i, v) in t.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    (c >> 1) ^ CRC32C_POLY
                } else {
                    c >> 1
                };
            }
            *v = c;
        }
        t
    })
}

/// CRC32C without the initial and final inversion, as ext4 chains it.
pub(crate) fn crc32c_raw(mut crc: u32, data: &[u8]) -> u32 {
    let t = crc32c_table();
    for &b in data {
        crc = t[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
    }
    crc
}

fn le16(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
fn le32(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}
fn put16(b: &mut [u8], o: usize, v: u16) {
    b[o..o + 2].copy_from_slice(&v.to_le_bytes());
}
fn put32(b: &mut [u8], o: usize, v: u32) {
    b[o..o + 4].copy_from_slice(&v.to_le_bytes());
}

/// Visits one inode (number, raw bytes); true when it changed it.
type InodeVisit<'v> = dyn FnMut(u32, &mut [u8]) -> Result<bool, ConvertError> + 'v;

/// One extent of a file: logical block, physical block, length in blocks.
pub(crate) type Extent = (u32, u64, u32);

/// An ext4 filesystem at an offset of a disk image, as mke2fs made it.
pub(crate) struct Ext4<'a> {
    f: &'a File,
    offset: u64,
    block: u64,
    inodes_per_group: u32,
    inode_size: usize,
    desc_size: usize,
    groups: u32,
    gdt: Vec<u8>,
    csum_seed: Option<u32>,
}

fn rd(source: io::Error) -> ConvertError {
    ConvertError::Io {
        what: "reading the root filesystem back".into(),
        source,
    }
}

fn wr(source: io::Error) -> ConvertError {
    ConvertError::Io {
        what: "writing the root filesystem".into(),
        source,
    }
}

fn corrupt(what: impl std::fmt::Display) -> ConvertError {
    rd(io::Error::new(io::ErrorKind::InvalidData, what.to_string()))
}

impl<'a> Ext4<'a> {
    pub fn open(f: &'a File, offset: u64) -> Result<Ext4<'a>, ConvertError> {
        let mut sb = vec![0u8; 1024];
        f.read_exact_at(&mut sb, offset + 1024).map_err(rd)?;
        if le16(&sb, 0x38) != 0xEF53 {
            return Err(corrupt("no ext4 superblock"));
        }
        let block = 1024u64 << le32(&sb, 0x18);
        let incompat = le32(&sb, 0x60);
        let ro_compat = le32(&sb, 0x64);
        let blocks = u64::from(le32(&sb, 0x04))
            | if incompat & 0x80 != 0 {
                u64::from(le32(&sb, 0x150)) << 32
            } else {
                0
            };
        let first = u64::from(le32(&sb, 0x14));
        let bpg = u64::from(le32(&sb, 0x20));
        let groups = (blocks - first).div_ceil(bpg) as u32;
        let desc_size = if incompat & 0x80 != 0 {
            usize::from(le16(&sb, 0xFE))
        } else {
            32
        };
        let csum_seed = if ro_compat & 0x400 != 0 {
            Some(if incompat & 0x2000 != 0 {
                le32(&sb, 0x270)
            } else {
                crc32c_raw(!0, &sb[0x68..0x78])
            })
        } else {
            None
        };
        let mut gdt = vec![0u8; groups as usize * desc_size];
        f.read_exact_at(&mut gdt, offset + (first + 1) * block)
            .map_err(rd)?;
        Ok(Ext4 {
            f,
            offset,
            block,
            inodes_per_group: le32(&sb, 0x28),
            inode_size: usize::from(le16(&sb, 0x58)),
            desc_size,
            groups,
            gdt,
            csum_seed,
        })
    }

    fn inode_seed(&self, ino: u32, raw: &[u8]) -> Option<u32> {
        self.csum_seed
            .map(|s| crc32c_raw(crc32c_raw(s, &ino.to_le_bytes()), &raw[0x64..0x68]))
    }

    /// The inode checksum (the whole 32 bits; the low half alone when the inode has no room
    /// for the high half).
    fn inode_csum(&self, ino: u32, raw: &[u8]) -> Option<u32> {
        let mut c = self.inode_seed(ino, raw)?;
        c = crc32c_raw(c, &raw[..0x7C]);
        c = crc32c_raw(c, &[0, 0]);
        c = crc32c_raw(c, &raw[0x7E..128]);
        if self.inode_size > 128 {
            c = crc32c_raw(c, &raw[128..0x82]);
            let mut off = 0x82;
            if usize::from(le16(raw, 0x80)) >= 4 {
                c = crc32c_raw(c, &[0, 0]);
                off += 2;
            }
            c = crc32c_raw(c, &raw[off..self.inode_size]);
        }
        Some(c)
    }

    fn has_csum_hi(&self, raw: &[u8]) -> bool {
        self.inode_size > 128 && usize::from(le16(raw, 0x80)) >= 4
    }

    fn check_inode(&self, ino: u32, raw: &[u8]) -> Result<(), ConvertError> {
        if let Some(c) = self.inode_csum(ino, raw) {
            let stored = u32::from(le16(raw, 0x7C))
                | if self.has_csum_hi(raw) {
                    u32::from(le16(raw, 0x82)) << 16
                } else {
                    c & 0xFFFF_0000
                };
            if stored != c {
                return Err(corrupt(format!("inode {ino} has a bad checksum")));
            }
        }
        Ok(())
    }

    fn seal_inode(&self, ino: u32, raw: &mut [u8]) {
        if let Some(c) = self.inode_csum(ino, raw) {
            put16(raw, 0x7C, c as u16);
            if self.has_csum_hi(raw) {
                put16(raw, 0x82, (c >> 16) as u16);
            }
        }
    }

    /// Calls `f` with every inode in use (number, raw bytes); writes back the groups where
    /// `f` returned true for some inode, with fresh checksums.
    pub fn each_inode(&self, f: &mut InodeVisit<'_>) -> Result<(), ConvertError> {
        for g in 0..self.groups {
            let d = &self.gdt[g as usize * self.desc_size..][..self.desc_size];
            if le16(d, 0x12) & 1 != 0 {
                continue; // INODE_UNINIT
            }
            let mut table = u64::from(le32(d, 0x08));
            let mut unused = u32::from(le16(d, 0x1C));
            if self.desc_size >= 64 {
                table |= u64::from(le32(d, 0x28)) << 32;
                unused |= u32::from(le16(d, 0x32)) << 16;
            }
            let used = self.inodes_per_group.saturating_sub(unused) as usize;
            if used == 0 {
                continue;
            }
            let mut buf = vec![0u8; used * self.inode_size];
            let at = self.offset + table * self.block;
            self.f.read_exact_at(&mut buf, at).map_err(rd)?;
            let mut dirty = false;
            for (i, raw) in buf.chunks_mut(self.inode_size).enumerate() {
                let ino = g * self.inodes_per_group + i as u32 + 1;
                if le16(raw, 0) == 0 || le16(raw, 0x1A) == 0 {
                    continue;
                }
                if f(ino, raw)? {
                    self.seal_inode(ino, raw);
                    dirty = true;
                }
            }
            if dirty {
                self.f.write_all_at(&buf, at).map_err(wr)?;
            }
        }
        Ok(())
    }

    /// Turns the inode's uninitialized extents into written ones; returns all its extents.
    fn written_extents(&self, ino: u32, raw: &mut [u8]) -> Result<Vec<Extent>, ConvertError> {
        if le32(raw, 0x20) & 0x80000 == 0 {
            return Err(corrupt(format!("inode {ino} has no extent tree")));
        }
        let seed = self.inode_seed(ino, raw);
        let mut out = Vec::new();
        self.walk(ino, &mut raw[0x28..0x28 + 60], seed, &mut out, 0)?;
        Ok(out)
    }

    fn walk(
        &self,
        ino: u32,
        node: &mut [u8],
        seed: Option<u32>,
        out: &mut Vec<Extent>,
        level: u32,
    ) -> Result<(), ConvertError> {
        if le16(node, 0) != 0xF30A || level > 5 {
            return Err(corrupt(format!("inode {ino}: bad extent node")));
        }
        let entries = usize::from(le16(node, 2));
        let depth = le16(node, 6);
        if 12 + entries * 12 > node.len() {
            return Err(corrupt(format!("inode {ino}: bad extent node")));
        }
        for i in 0..entries {
            let e = 12 + i * 12;
            if depth == 0 {
                let mut len = le16(node, e + 4);
                if len > 32768 {
                    len -= 32768;
                    put16(node, e + 4, len);
                }
                let start = u64::from(le32(node, e + 8)) | (u64::from(le16(node, e + 6)) << 32);
                out.push((le32(node, e), start, u32::from(len)));
            } else {
                let leaf = u64::from(le32(node, e + 4)) | (u64::from(le16(node, e + 8)) << 32);
                let mut b = vec![0u8; self.block as usize];
                let at = self.offset + leaf * self.block;
                self.f.read_exact_at(&mut b, at).map_err(rd)?;
                self.walk(ino, &mut b, seed, out, level + 1)?;
                if let Some(s) = seed {
                    let tail = 12 + 12 * usize::from(le16(&b, 4));
                    if tail + 4 <= b.len() {
                        let c = crc32c_raw(s, &b[..tail]);
                        put32(&mut b, tail, c);
                    }
                }
                self.f.write_all_at(&b, at).map_err(wr)?;
            }
        }
        Ok(())
    }
}

/// Step 3's input: the tree's inodes by tar entry, from the marker times.
pub(crate) fn map_inodes(
    fs: &Ext4<'_>,
    entries: &[Meta],
    root_entry: Option<u32>,
) -> Result<HashMap<u32, u32>, ConvertError> {
    let mut map = HashMap::new();
    fs.each_inode(&mut |ino, raw| {
        fs.check_inode(ino, raw)?;
        let id = if ino == 2 {
            root_entry
        } else {
            (le32(raw, 0x10) as usize)
                .checked_sub(1)
                .filter(|i| *i < entries.len() && kind_matches(entries[*i].kind, le16(raw, 0)))
                .map(|i| i as u32)
        };
        if let Some(id) = id {
            map.insert(ino, id);
        }
        Ok(false)
    })?;
    Ok(map)
}

fn kind_matches(kind: EntryKind, mode: u16) -> bool {
    let t = mode & 0xF000;
    match kind {
        EntryKind::File => t == 0x8000,
        EntryKind::Directory => t == 0x4000,
        EntryKind::Symlink => t == 0xA000,
        EntryKind::Other => matches!(t, 0x2000 | 0x6000 | 0x1000),
        EntryKind::HardLink => false,
    }
}

/// debugfs commands reserving the blocks of every file with contents (step 3).
pub(crate) fn fallocate_commands(map: &HashMap<u32, u32>, entries: &[Meta], block: u64) -> String {
    let mut inos: Vec<_> = map
        .iter()
        .filter(|(_, id)| {
            let m = &entries[**id as usize];
            m.kind == EntryKind::File && m.size > 0
        })
        .collect();
    inos.sort();
    let mut s = String::new();
    for (ino, id) in inos {
        let blocks = entries[*id as usize].size.div_ceil(block);
        s.push_str(&format!("fallocate <{ino}> 0 {}\n", blocks - 1));
    }
    s
}

/// Step 4: mode bits, owner and times from the tar; reserved extents made written. Returns
/// each file's extents by tar entry. A file whose blocks were not all reserved (a full
/// filesystem) is an error.
pub(crate) fn fix_inodes(
    fs: &Ext4<'_>,
    map: &HashMap<u32, u32>,
    entries: &[Meta],
) -> Result<HashMap<u32, Vec<Extent>>, ConvertError> {
    let mut extents = HashMap::new();
    let mut short = None;
    fs.each_inode(&mut |ino, raw| {
        let Some(&id) = map.get(&ino) else {
            return Ok(false);
        };
        fs.check_inode(ino, raw)?;
        let m = &entries[id as usize];
        put16(raw, 0, (le16(raw, 0) & 0xF000) | (m.mode as u16 & 0o7777));
        put16(raw, 0x02, m.uid as u16);
        put16(raw, 0x78, (m.uid >> 16) as u16);
        put16(raw, 0x18, m.gid as u16);
        put16(raw, 0x7A, (m.gid >> 16) as u16);
        // Seconds since the epoch in 34 bits: the low 32 here, the epoch bits in `_extra`.
        let secs = m.mtime;
        let extra = ((secs - i64::from(secs as i32)) >> 32) as u32 & 3;
        for (t, x) in [(0x08, 0x8C), (0x0C, 0x84), (0x10, 0x88)] {
            put32(raw, t, secs as u32);
            if fs.inode_size > 128 && usize::from(le16(raw, 0x80)) >= x - 0x80 + 4 {
                put32(raw, x, extra);
            }
        }
        if m.kind == EntryKind::File && m.size > 0 {
            let ext = fs.written_extents(ino, raw)?;
            let need = m.size.div_ceil(fs.block);
            let have: u64 = ext.iter().map(|e| u64::from(e.2)).sum();
            if have < need {
                short = Some(ino);
            }
            extents.insert(id, ext);
        }
        Ok(true)
    })?;
    if short.is_some() {
        return Err(ConvertError::Tool {
            tool: "debugfs".into(),
            command: "debugfs fallocate".into(),
            status: "incomplete".into(),
            stderr: "could not allocate the blocks of every file: no space left".into(),
        });
    }
    Ok(extents)
}

/// Writes one file's contents to its blocks in the image; all-zero blocks stay holes.
pub(crate) struct Placer {
    file: File,
    base: u64,
    block: u64,
    extents: Vec<Extent>,
    pos: u64,
    pending: Vec<u8>,
    /// Image offset of `pending[0]`.
    at: u64,
    blockbuf: Vec<u8>,
}

impl Placer {
    pub fn new(file: File, base: u64, block: u64, extents: Vec<Extent>) -> Placer {
        Placer {
            file,
            base,
            block,
            extents,
            pos: 0,
            pending: Vec::new(),
            at: 0,
            blockbuf: Vec::with_capacity(block as usize),
        }
    }

    fn physical(&self, lblk: u64) -> io::Result<u64> {
        self.extents
            .iter()
            .find(|(l, _, n)| lblk >= u64::from(*l) && lblk < u64::from(*l) + u64::from(*n))
            .map(|(l, p, _)| p + (lblk - u64::from(*l)))
            .ok_or_else(|| io::Error::other(format!("block {lblk} of a file has no extent")))
    }

    fn put_block(&mut self) -> io::Result<()> {
        let lblk = self.pos / self.block;
        self.pos += self.blockbuf.len() as u64;
        if self.blockbuf.iter().all(|b| *b == 0) {
            self.blockbuf.clear();
            return Ok(());
        }
        let at = self.base + self.physical(lblk)? * self.block;
        if self.pending.is_empty()
            || self.at + self.pending.len() as u64 != at
            || self.pending.len() >= 1 << 20
        {
            self.drain()?;
            self.at = at;
        }
        self.pending.extend_from_slice(&self.blockbuf);
        self.blockbuf.clear();
        Ok(())
    }

    fn drain(&mut self) -> io::Result<()> {
        if !self.pending.is_empty() {
            self.file.write_all_at(&self.pending, self.at)?;
            self.pending.clear();
        }
        Ok(())
    }
}

impl Write for Placer {
    fn write(&mut self, mut b: &[u8]) -> io::Result<usize> {
        let n = b.len();
        while !b.is_empty() {
            let take = (self.block as usize - self.blockbuf.len()).min(b.len());
            self.blockbuf.extend_from_slice(&b[..take]);
            b = &b[take..];
            if self.blockbuf.len() == self.block as usize {
                self.put_block()?;
            }
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        if !self.blockbuf.is_empty() {
            self.put_block()?;
        }
        self.drain()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_standard_check_value() {
        // CRC-32C of "123456789" is 0xE3069283 with the usual inversions.
        assert_eq!(!crc32c_raw(!0, b"123456789"), 0xE306_9283);
    }

    #[test]
    fn placer_skips_zero_blocks_and_maps_extents() {
        let dir = std::env::temp_dir().join(format!("nodestamp-placer-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("img");
        let f = File::create(&p).unwrap();
        f.set_len(64 * 1024).unwrap();
        // Logical blocks 0-1 at physical 10-11, block 2 at physical 3; base 4096.
        let mut w = Placer::new(f, 4096, 1024, vec![(0, 10, 2), (2, 3, 1)]);
        let mut data = vec![7u8; 1024];
        data.extend(vec![0u8; 1024]);
        data.extend(vec![9u8; 100]);
        w.write_all(&data).unwrap();
        w.flush().unwrap();
        let img = std::fs::read(&p).unwrap();
        assert!(
            img[4096 + 10 * 1024..4096 + 11 * 1024]
                .iter()
                .all(|b| *b == 7)
        );
        assert!(
            img[4096 + 11 * 1024..4096 + 12 * 1024]
                .iter()
                .all(|b| *b == 0)
        );
        assert!(
            img[4096 + 3 * 1024..4096 + 3 * 1024 + 100]
                .iter()
                .all(|b| *b == 9)
        );
        assert_eq!(img.iter().filter(|b| **b != 0).count(), 1124);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
