//! Makes a FAT32 filesystem's directory timestamps reproducible.
//!
//! mtools stamps the `.`/`..` entries of directories it creates with the current time whatever
//! `SOURCE_DATE_EPOCH` says. After the ESP is populated this walks every directory and sets the
//! creation, access and write times of every entry to the build epoch.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};

/// DOS (date, time) for a Unix time, as UTC. Clamped to 1980..=2107.
pub fn dos_datetime(epoch: i64) -> (u16, u16) {
    let epoch = epoch.clamp(315_532_800, 4_354_819_199);
    let t = nodestamp_contract::time::Utc::from_unix(epoch);
    let date = (((t.year - 1980) as u16) << 9) | ((t.month as u16) << 5) | t.day as u16;
    let time = ((t.hour as u16) << 11) | ((t.minute as u16) << 5) | (t.second / 2) as u16;
    (date, time)
}

/// Rewrites all directory entry timestamps of the FAT32 filesystem at `offset` in `disk`.
pub fn normalize_times(disk: &mut File, offset: u64, epoch: i64) -> io::Result<()> {
    let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidData, format!("ESP: {m}"));
    let mut bs = [0u8; 512];
    disk.seek(SeekFrom::Start(offset))?;
    disk.read_exact(&mut bs)?;
    let bps = u64::from(u16::from_le_bytes([bs[11], bs[12]]));
    let spc = u64::from(bs[13]);
    let reserved = u64::from(u16::from_le_bytes([bs[14], bs[15]]));
    let fats = u64::from(bs[16]);
    let fat_size = u64::from(u32::from_le_bytes([bs[36], bs[37], bs[38], bs[39]]));
    let root = u32::from_le_bytes([bs[44], bs[45], bs[46], bs[47]]);
    if bps == 0 || spc == 0 || fat_size == 0 || bs[510..512] != [0x55, 0xaa] {
        return Err(bad("not a FAT32 boot sector"));
    }
    let fat_at = offset + reserved * bps;
    let data_at = offset + (reserved + fats * fat_size) * bps;
    let cluster_bytes = (bps * spc) as usize;
    let (date, time) = dos_datetime(epoch);

    let mut stack = vec![root];
    let mut visited = 0usize;
    while let Some(first) = stack.pop() {
        let mut cluster = first;
        let mut hops = 0;
        while (2..0x0fff_fff8).contains(&cluster) {
            hops += 1;
            visited += 1;
            if hops > 1 << 20 || visited > 1 << 22 {
                return Err(bad("cluster chain loop"));
            }
            let at = data_at + u64::from(cluster - 2) * cluster_bytes as u64;
            let mut buf = vec![0u8; cluster_bytes];
            disk.seek(SeekFrom::Start(at))?;
            disk.read_exact(&mut buf)?;
            let mut end = false;
            for e in buf.chunks_mut(32) {
                match e[0] {
                    0x00 => {
                        end = true;
                        break;
                    }
                    0xe5 => continue,
                    _ => {}
                }
                let attr = e[11];
                if attr & 0x0f == 0x0f {
                    continue; // long-name slot
                }
                e[13] = 0;
                e[14..16].copy_from_slice(&time.to_le_bytes());
                e[16..18].copy_from_slice(&date.to_le_bytes());
                e[18..20].copy_from_slice(&date.to_le_bytes());
                e[22..24].copy_from_slice(&time.to_le_bytes());
                e[24..26].copy_from_slice(&date.to_le_bytes());
                let is_dot = e[0] == b'.';
                if attr & 0x10 != 0 && !is_dot {
                    let hi = u32::from(u16::from_le_bytes([e[20], e[21]]));
                    let lo = u32::from(u16::from_le_bytes([e[26], e[27]]));
                    stack.push((hi << 16) | lo);
                }
            }
            disk.seek(SeekFrom::Start(at))?;
            disk.write_all(&buf)?;
            if end {
                break;
            }
            let mut next = [0u8; 4];
            disk.seek(SeekFrom::Start(fat_at + u64::from(cluster) * 4))?;
            disk.read_exact(&mut next)?;
            cluster = u32::from_le_bytes(next) & 0x0fff_ffff;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dos_dates() {
        // 2024-01-01 00:00:00
        assert_eq!(dos_datetime(1_704_067_200), ((44 << 9) | (1 << 5) | 1, 0));
        // 2024-02-29 13:45:30
        assert_eq!(
            dos_datetime(1_709_214_330),
            ((44 << 9) | (2 << 5) | 29, (13 << 11) | (45 << 5) | 15)
        );
        assert_eq!(dos_datetime(0).0, (1 << 5) | 1, "clamped to 1980-01-01");
    }
}
