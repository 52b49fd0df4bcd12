//! GUIDs and a GUID Partition Table writer/reader (UEFI spec, chapter 5): protective MBR,
//! primary header at LBA 1, 128 entries of 128 bytes, backup entries and header at the end.

use sha2::{Digest, Sha256};
use std::fmt;

pub const SECTOR: u64 = 512;
pub const ENTRIES: u32 = 128;
pub const ENTRY_SIZE: u32 = 128;
/// Sectors taken by the entry array (128 × 128 bytes).
pub const ENTRY_SECTORS: u64 = (ENTRIES as u64 * ENTRY_SIZE as u64) / SECTOR;

/// A GUID in its textual (big-endian) byte order.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Guid(pub [u8; 16]);

impl Guid {
    /// Parses `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
    pub const fn parse(s: &str) -> Guid {
        let b = s.as_bytes();
        assert!(b.len() == 36);
        let mut out = [0u8; 16];
        let mut i = 0;
        let mut o = 0;
        while i < 36 {
            if b[i] == b'-' {
                i += 1;
                continue;
            }
            out[o] = (hexval(b[i]) << 4) | hexval(b[i + 1]);
            o += 1;
            i += 2;
        }
        Guid(out)
    }

    /// A version-4-shaped GUID derived from `seed` and `purpose`: the same inputs always give
    /// the same GUID, different purposes give unrelated GUIDs.
    pub fn derive(seed: &str, purpose: &str) -> Guid {
        let mut h = Sha256::new();
        h.update(b"nodestamp-guid\0");
        h.update(seed.as_bytes());
        h.update(b"\0");
        h.update(purpose.as_bytes());
        let d = h.finalize();
        let mut b = [0u8; 16];
        b.copy_from_slice(&d[..16]);
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        Guid(b)
    }

    /// On-disk (mixed-endian) encoding used by GPT.
    pub fn to_disk(self) -> [u8; 16] {
        let b = self.0;
        [
            b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9], b[10], b[11], b[12], b[13],
            b[14], b[15],
        ]
    }

    pub fn from_disk(d: &[u8]) -> Guid {
        Guid([
            d[3], d[2], d[1], d[0], d[5], d[4], d[7], d[6], d[8], d[9], d[10], d[11], d[12], d[13],
            d[14], d[15],
        ])
    }
}

const fn hexval(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        b'A'..=b'F' => c - b'A' + 10,
        _ => panic!("bad hex digit"),
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.0;
        for (i, x) in b.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{x:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// EFI System Partition.
pub const TYPE_ESP: Guid = Guid::parse("c12a7328-f81f-11d2-ba4b-00a0c93ec93b");
/// BIOS boot partition (GRUB's core.img), "Hah!IdontNeedEFI".
pub const TYPE_BIOS_BOOT: Guid = Guid::parse("21686148-6449-6e6f-744e-656564454649");
/// Linux root (x86-64), from the Discoverable Partitions Specification.
pub const TYPE_ROOT_X86_64: Guid = Guid::parse("4f68bce3-e8cd-4db1-96e7-fbcaf984b709");
/// Linux root (64-bit ARM/AArch64), from the Discoverable Partitions Specification.
pub const TYPE_ROOT_ARM64: Guid = Guid::parse("b921b045-1df0-41c3-af44-4c6f280d3fae");

/// CRC-32 (IEEE 802.3, reflected), as GPT uses.
pub fn crc32(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut t = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    0xedb8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            t[i] = c;
            i += 1;
        }
        t
    };
    let mut c = !0u32;
    for &b in data {
        c = TABLE[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

/// One partition, in sectors (inclusive last LBA as GPT stores it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GptPartition {
    pub type_guid: Guid,
    pub guid: Guid,
    pub first_lba: u64,
    pub last_lba: u64,
    pub name: String,
}

/// A whole table for a disk of `disk_sectors` sectors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gpt {
    pub disk_guid: Guid,
    pub disk_sectors: u64,
    pub partitions: Vec<GptPartition>,
}

/// Byte ranges to write: (offset, bytes).
pub type Writes = Vec<(u64, Vec<u8>)>;

impl Gpt {
    pub fn first_usable(&self) -> u64 {
        2 + ENTRY_SECTORS
    }

    pub fn last_usable(&self) -> u64 {
        self.disk_sectors - 2 - ENTRY_SECTORS
    }

    fn entry_array(&self) -> Vec<u8> {
        let mut a = vec![0u8; (ENTRIES * ENTRY_SIZE) as usize];
        for (i, p) in self.partitions.iter().enumerate() {
            let e = &mut a[i * ENTRY_SIZE as usize..(i + 1) * ENTRY_SIZE as usize];
            e[0..16].copy_from_slice(&p.type_guid.to_disk());
            e[16..32].copy_from_slice(&p.guid.to_disk());
            e[32..40].copy_from_slice(&p.first_lba.to_le_bytes());
            e[40..48].copy_from_slice(&p.last_lba.to_le_bytes());
            for (j, u) in p.name.encode_utf16().take(36).enumerate() {
                e[56 + 2 * j..58 + 2 * j].copy_from_slice(&u.to_le_bytes());
            }
        }
        a
    }

    fn header(&self, my_lba: u64, alt_lba: u64, entries_lba: u64, entries_crc: u32) -> Vec<u8> {
        let mut h = vec![0u8; SECTOR as usize];
        h[0..8].copy_from_slice(b"EFI PART");
        h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        h[12..16].copy_from_slice(&92u32.to_le_bytes());
        h[24..32].copy_from_slice(&my_lba.to_le_bytes());
        h[32..40].copy_from_slice(&alt_lba.to_le_bytes());
        h[40..48].copy_from_slice(&self.first_usable().to_le_bytes());
        h[48..56].copy_from_slice(&self.last_usable().to_le_bytes());
        h[56..72].copy_from_slice(&self.disk_guid.to_disk());
        h[72..80].copy_from_slice(&entries_lba.to_le_bytes());
        h[80..84].copy_from_slice(&ENTRIES.to_le_bytes());
        h[84..88].copy_from_slice(&ENTRY_SIZE.to_le_bytes());
        h[88..92].copy_from_slice(&entries_crc.to_le_bytes());
        let crc = crc32(&h[..92]);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        h
    }

    fn protective_mbr(&self) -> Vec<u8> {
        let mut m = vec![0u8; SECTOR as usize];
        let p = &mut m[446..462];
        p[1..4].copy_from_slice(&[0x00, 0x02, 0x00]); // CHS of LBA 1
        p[4] = 0xee;
        p[5..8].copy_from_slice(&[0xff, 0xff, 0xff]);
        p[8..12].copy_from_slice(&1u32.to_le_bytes());
        let size = (self.disk_sectors - 1).min(u64::from(u32::MAX)) as u32;
        p[12..16].copy_from_slice(&size.to_le_bytes());
        m[510] = 0x55;
        m[511] = 0xaa;
        m
    }

    /// Everything to write, as byte ranges (protective MBR, primary, backup).
    pub fn writes(&self) -> Writes {
        let entries = self.entry_array();
        let ecrc = crc32(&entries);
        let last = self.disk_sectors - 1;
        let backup_entries = last - ENTRY_SECTORS;
        let mut primary = self.protective_mbr();
        primary.extend(self.header(1, last, 2, ecrc));
        primary.extend(&entries);
        let mut backup = entries;
        backup.extend(self.header(last, 1, backup_entries, ecrc));
        vec![(0, primary), (backup_entries * SECTOR, backup)]
    }
}

/// Problems a GPT reader finds.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GptReadError {
    #[error("no GPT signature at LBA {0}")]
    Signature(u64),
    #[error("GPT header CRC mismatch at LBA {0}")]
    HeaderCrc(u64),
    #[error("GPT entry array CRC mismatch (header at LBA {0})")]
    EntriesCrc(u64),
    #[error("disk image too small for a GPT")]
    Small,
}

/// Reads and verifies both headers of a disk image held in `read_at(offset, len)`.
pub fn read(
    disk_len: u64,
    read_at: &mut dyn FnMut(u64, usize) -> std::io::Result<Vec<u8>>,
) -> Result<Result<Gpt, GptReadError>, std::io::Error> {
    if disk_len < SECTOR * (3 + 2 * ENTRY_SECTORS) {
        return Ok(Err(GptReadError::Small));
    }
    let last = disk_len / SECTOR - 1;
    let mut result = None;
    for lba in [1, last] {
        let h = read_at(lba * SECTOR, SECTOR as usize)?;
        if &h[0..8] != b"EFI PART" {
            return Ok(Err(GptReadError::Signature(lba)));
        }
        let mut hc = h[..92].to_vec();
        hc[16..20].fill(0);
        if crc32(&hc) != u32::from_le_bytes(h[16..20].try_into().unwrap_or_default()) {
            return Ok(Err(GptReadError::HeaderCrc(lba)));
        }
        let u64_at = |o: usize| u64::from_le_bytes(h[o..o + 8].try_into().unwrap_or_default());
        let u32_at = |o: usize| u32::from_le_bytes(h[o..o + 4].try_into().unwrap_or_default());
        let n = u32_at(80) as usize;
        let sz = u32_at(84) as usize;
        if n == 0 || n > 1024 || !(128..=1024).contains(&sz) {
            return Ok(Err(GptReadError::Signature(lba)));
        }
        let entries = read_at(u64_at(72) * SECTOR, n * sz)?;
        if crc32(&entries) != u32_at(88) {
            return Ok(Err(GptReadError::EntriesCrc(lba)));
        }
        if result.is_none() {
            let mut parts = Vec::new();
            for e in entries.chunks(sz) {
                if e[..16].iter().all(|b| *b == 0) {
                    continue;
                }
                let name: Vec<u16> = e[56..128]
                    .chunks(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]))
                    .take_while(|u| *u != 0)
                    .collect();
                parts.push(GptPartition {
                    type_guid: Guid::from_disk(&e[0..16]),
                    guid: Guid::from_disk(&e[16..32]),
                    first_lba: u64::from_le_bytes(e[32..40].try_into().unwrap_or_default()),
                    last_lba: u64::from_le_bytes(e[40..48].try_into().unwrap_or_default()),
                    name: String::from_utf16_lossy(&name),
                });
            }
            result = Some(Gpt {
                disk_guid: Guid::from_disk(&h[56..72]),
                disk_sectors: disk_len / SECTOR,
                partitions: parts,
            });
        }
    }
    Ok(result.ok_or(GptReadError::Small))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_check_value() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
    }

    #[test]
    fn guid_encoding() {
        assert_eq!(TYPE_ESP.to_string(), "c12a7328-f81f-11d2-ba4b-00a0c93ec93b");
        assert_eq!(
            TYPE_ESP.to_disk()[..4],
            [0x28, 0x73, 0x2a, 0xc1],
            "first field little-endian on disk"
        );
        assert_eq!(Guid::from_disk(&TYPE_ESP.to_disk()), TYPE_ESP);
        let a = Guid::derive("node", "root");
        assert_eq!(a, Guid::derive("node", "root"));
        assert_ne!(a, Guid::derive("node", "esp"));
        assert_eq!(a.0[6] >> 4, 4);
        assert_eq!(a.0[8] >> 6, 2);
    }

    #[test]
    fn write_then_read_back() {
        let g = Gpt {
            disk_guid: Guid::derive("t", "disk"),
            disk_sectors: 64 * 2048,
            partitions: vec![GptPartition {
                type_guid: TYPE_ESP,
                guid: Guid::derive("t", "esp"),
                first_lba: 2048,
                last_lba: 4095,
                name: "ESP".into(),
            }],
        };
        let mut disk = vec![0u8; (g.disk_sectors * SECTOR) as usize];
        for (off, data) in g.writes() {
            disk[off as usize..off as usize + data.len()].copy_from_slice(&data);
        }
        let back = read(disk.len() as u64, &mut |o, l| {
            Ok(disk[o as usize..o as usize + l].to_vec())
        })
        .unwrap()
        .unwrap();
        assert_eq!(back, g);
        disk[1024 + 40] ^= 1; // corrupt the first entry
        let err = read(disk.len() as u64, &mut |o, l| {
            Ok(disk[o as usize..o as usize + l].to_vec())
        })
        .unwrap()
        .unwrap_err();
        assert_eq!(err, GptReadError::EntriesCrc(1));
    }
}
