//! OVA: an OVF package in one POSIX ustar archive, as vSphere imports it.
//!
//! ```text
//! <name>.ovf         the descriptor: References (the disk file and its size), DiskSection
//!                    (capacity in bytes, streamOptimized), VirtualSystem with its hardware and
//!                    vmw:Config firmware = efi | bios
//! <name>.mf          SHA256(<file>)= <hex> for the descriptor and the disk
//! <name>-disk1.vmdk  the disk, streamOptimized
//! ```
//! Members in that order: OVF 1.x/2.x put the descriptor first, the manifest right after it and
//! the files in the order of References. [`check`] reads an OVA back and checks all of it.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::firmware::Firmware;

/// vSphere's firmware setting for a disk: hybrid disks boot either way; EFI is what vSphere
/// recommends for new virtual machines.
pub fn vmware_firmware(f: Firmware) -> &'static str {
    match f {
        Firmware::Bios => "bios",
        Firmware::Uefi | Firmware::Hybrid => "efi",
    }
}

fn xml_unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

pub fn disk_file_name(name: &str) -> String {
    format!("{name}-disk1.vmdk")
}

/// The OVF descriptor for a disk file of `file_size` bytes holding a disk of `capacity` bytes.
pub fn descriptor(name: &str, file_size: u64, capacity: u64, firmware: Firmware) -> String {
    let n = xml_escape(name);
    let disk = xml_escape(&disk_file_name(name));
    let fw = vmware_firmware(firmware);
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData" xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData" xmlns:vmw="http://www.vmware.com/schema/ovf" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <References>
    <File ovf:href="{disk}" ovf:id="file1" ovf:size="{file_size}"/>
  </References>
  <DiskSection>
    <Info>Virtual disk information</Info>
    <Disk ovf:capacity="{capacity}" ovf:capacityAllocationUnits="byte" ovf:diskId="vmdisk1" ovf:fileRef="file1" ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/>
  </DiskSection>
  <NetworkSection>
    <Info>The list of logical networks</Info>
    <Network ovf:name="VM Network">
      <Description>The VM Network network</Description>
    </Network>
  </NetworkSection>
  <VirtualSystem ovf:id="{n}">
    <Info>A Kubernetes node made by nodestamp</Info>
    <Name>{n}</Name>
    <OperatingSystemSection ovf:id="101" vmw:osType="other5xLinux64Guest">
      <Info>The kind of installed guest operating system</Info>
    </OperatingSystemSection>
    <VirtualHardwareSection>
      <Info>Virtual hardware requirements</Info>
      <System>
        <vssd:ElementName>Virtual Hardware Family</vssd:ElementName>
        <vssd:InstanceID>0</vssd:InstanceID>
        <vssd:VirtualSystemIdentifier>{n}</vssd:VirtualSystemIdentifier>
        <vssd:VirtualSystemType>vmx-15</vssd:VirtualSystemType>
      </System>
      <Item>
        <rasd:AllocationUnits>hertz * 10^6</rasd:AllocationUnits>
        <rasd:Description>Number of Virtual CPUs</rasd:Description>
        <rasd:ElementName>2 virtual CPU(s)</rasd:ElementName>
        <rasd:InstanceID>1</rasd:InstanceID>
        <rasd:ResourceType>3</rasd:ResourceType>
        <rasd:VirtualQuantity>2</rasd:VirtualQuantity>
      </Item>
      <Item>
        <rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits>
        <rasd:Description>Memory Size</rasd:Description>
        <rasd:ElementName>4096MB of memory</rasd:ElementName>
        <rasd:InstanceID>2</rasd:InstanceID>
        <rasd:ResourceType>4</rasd:ResourceType>
        <rasd:VirtualQuantity>4096</rasd:VirtualQuantity>
      </Item>
      <Item>
        <rasd:Address>0</rasd:Address>
        <rasd:Description>SCSI Controller</rasd:Description>
        <rasd:ElementName>SCSI Controller 0</rasd:ElementName>
        <rasd:InstanceID>3</rasd:InstanceID>
        <rasd:ResourceSubType>VirtualSCSI</rasd:ResourceSubType>
        <rasd:ResourceType>6</rasd:ResourceType>
      </Item>
      <Item>
        <rasd:AddressOnParent>0</rasd:AddressOnParent>
        <rasd:ElementName>Hard Disk 1</rasd:ElementName>
        <rasd:HostResource>ovf:/disk/vmdisk1</rasd:HostResource>
        <rasd:InstanceID>4</rasd:InstanceID>
        <rasd:Parent>3</rasd:Parent>
        <rasd:ResourceType>17</rasd:ResourceType>
      </Item>
      <Item>
        <rasd:AddressOnParent>7</rasd:AddressOnParent>
        <rasd:AutomaticAllocation>true</rasd:AutomaticAllocation>
        <rasd:Connection>VM Network</rasd:Connection>
        <rasd:Description>VmxNet3 ethernet adapter on "VM Network"</rasd:Description>
        <rasd:ElementName>Network adapter 1</rasd:ElementName>
        <rasd:InstanceID>5</rasd:InstanceID>
        <rasd:ResourceSubType>VmxNet3</rasd:ResourceSubType>
        <rasd:ResourceType>10</rasd:ResourceType>
      </Item>
      <vmw:Config ovf:required="false" vmw:key="firmware" vmw:value="{fw}"/>
    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>
"#
    )
}

/// A POSIX ustar header for a regular file (mode 0644, owner 0:0, `mtime`).
fn ustar_header(name: &str, size: u64, mtime: i64) -> io::Result<[u8; 512]> {
    if name.len() > 100 {
        return Err(io::Error::other(format!(
            "OVA member name {name:?} is longer than ustar's 100 bytes"
        )));
    }
    if size >= 1 << 33 {
        return Err(io::Error::other(format!(
            "OVA member {name} is {size} bytes, more than ustar's 8 GiB per member"
        )));
    }
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    let mut field = |off: usize, len: usize, v: u64| {
        let s = format!("{v:0w$o}\0", w = len - 1);
        h[off..off + len].copy_from_slice(s.as_bytes());
    };
    field(100, 8, 0o644);
    field(108, 8, 0);
    field(116, 8, 0);
    field(124, 12, size);
    field(136, 12, mtime.max(0) as u64);
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].fill(b' ');
    let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
    Ok(h)
}

fn sha256_file(path: &Path) -> io::Result<String> {
    let mut f = BufReader::with_capacity(1 << 20, File::open(path)?);
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Writes `out`: descriptor, manifest and the streamOptimized `vmdk` of a `capacity`-byte disk.
pub fn write(
    out: &Path,
    name: &str,
    vmdk: &Path,
    capacity: u64,
    firmware: Firmware,
    mtime: i64,
) -> io::Result<()> {
    let vmdk_size = std::fs::metadata(vmdk)?.len();
    let ovf = descriptor(name, vmdk_size, capacity, firmware);
    let ovf_name = format!("{name}.ovf");
    let disk_name = disk_file_name(name);
    let manifest = format!(
        "SHA256({ovf_name})= {}\nSHA256({disk_name})= {}\n",
        hex(&Sha256::digest(ovf.as_bytes())),
        sha256_file(vmdk)?
    );
    let mut w = BufWriter::with_capacity(1 << 20, File::create(out)?);
    let pad =
        |w: &mut BufWriter<File>, n: u64| w.write_all(&vec![0u8; ((512 - n % 512) % 512) as usize]);
    for (member, data) in [
        (ovf_name, ovf.into_bytes()),
        (format!("{name}.mf"), manifest.into_bytes()),
    ] {
        w.write_all(&ustar_header(&member, data.len() as u64, mtime)?)?;
        w.write_all(&data)?;
        pad(&mut w, data.len() as u64)?;
    }
    w.write_all(&ustar_header(&disk_name, vmdk_size, mtime)?)?;
    let copied = io::copy(&mut File::open(vmdk)?, &mut w)?;
    if copied != vmdk_size {
        return Err(io::Error::other("the vmdk changed while it was packed"));
    }
    pad(&mut w, vmdk_size)?;
    w.write_all(&[0u8; 1024])?;
    w.into_inner().map_err(|e| e.into_error())?.sync_data()
}

/// What [`check`] found in an OVA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OvaInfo {
    pub members: Vec<String>,
    /// The disk's capacity in bytes, as the descriptor and the vmdk header both say.
    pub capacity: u64,
    /// The descriptor's vmw:Config firmware value.
    pub firmware: String,
}

fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let key = format!(" {name}=\"");
    let start = tag.find(&key)? + key.len();
    Some(&tag[start..start + tag[start..].find('"')?])
}

/// Every `<name …/>` or `<name …>` tag in `xml`.
fn tags<'a>(xml: &'a str, name: &str) -> Vec<&'a str> {
    let open = format!("<{name} ");
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find(&open) {
        let t = &rest[i..];
        let end = t.find('>').map_or(t.len(), |e| e + 1);
        out.push(&t[..end]);
        rest = &t[end..];
    }
    out
}

/// Reads an OVA and checks it as vSphere would: the descriptor first and the manifest second,
/// then the referenced files in References' order and nothing else; every manifest line's
/// SHA-256 matches its member and every member is in the manifest; every reference names a
/// member of its size; the disk's capacity matches the vmdk's own header; a firmware setting.
pub fn check(path: &Path) -> Result<OvaInfo, String> {
    let mut f = File::open(path).map_err(|e| format!("opening {}: {e}", path.display()))?;
    let io = |e: io::Error| format!("reading {}: {e}", path.display());
    // (name, offset of data, size, sha256)
    let mut members: Vec<(String, u64, u64, String)> = Vec::new();
    let mut off = 0u64;
    loop {
        let mut h = [0u8; 512];
        f.seek(SeekFrom::Start(off)).map_err(io)?;
        f.read_exact(&mut h).map_err(io)?;
        if h.iter().all(|b| *b == 0) {
            break;
        }
        if &h[257..262] != b"ustar" {
            return Err(format!("member at byte {off} is not a ustar header"));
        }
        let name_end = h[..100].iter().position(|b| *b == 0).unwrap_or(100);
        let name = String::from_utf8_lossy(&h[..name_end]).into_owned();
        let size_text = String::from_utf8_lossy(&h[124..136]);
        let size = u64::from_str_radix(size_text.trim_matches(|c: char| c == '\0' || c == ' '), 8)
            .map_err(|_| format!("member {name}: bad size field {size_text:?}"))?;
        if h[156] != b'0' && h[156] != 0 {
            return Err(format!("member {name} is not a regular file"));
        }
        let mut hasher = Sha256::new();
        let mut left = size;
        let mut buf = vec![0u8; 1 << 20];
        while left > 0 {
            let n = left.min(buf.len() as u64) as usize;
            f.read_exact(&mut buf[..n]).map_err(io)?;
            hasher.update(&buf[..n]);
            left -= n as u64;
        }
        members.push((name, off + 512, size, hex(&hasher.finalize())));
        off += 512 + size.div_ceil(512) * 512;
    }
    let names: Vec<String> = members.iter().map(|m| m.0.clone()).collect();
    let read = |f: &mut File, i: usize| -> Result<Vec<u8>, String> {
        let mut b = vec![0u8; members[i].2 as usize];
        f.seek(SeekFrom::Start(members[i].1)).map_err(io)?;
        f.read_exact(&mut b).map_err(io)?;
        Ok(b)
    };
    if names.len() < 3 || !names[0].ends_with(".ovf") || !names[1].ends_with(".mf") {
        return Err(format!(
            "members are {names:?}: expected the .ovf descriptor first, the .mf manifest second, then the disk"
        ));
    }
    let ovf = String::from_utf8(read(&mut f, 0)?).map_err(|_| "the descriptor is not UTF-8")?;
    let mf = String::from_utf8(read(&mut f, 1)?).map_err(|_| "the manifest is not UTF-8")?;
    // Manifest: one line per member other than itself, each hash right.
    let mut listed = Vec::new();
    for line in mf.lines().filter(|l| !l.is_empty()) {
        let (file, digest) = line
            .strip_prefix("SHA256(")
            .and_then(|l| l.split_once(")= "))
            .ok_or_else(|| format!("manifest line {line:?} is not SHA256(<file>)= <hex>"))?;
        let m = members
            .iter()
            .find(|m| m.0 == file)
            .ok_or_else(|| format!("the manifest lists {file}, which the OVA lacks"))?;
        if m.3 != digest {
            return Err(format!(
                "{file}: SHA-256 is {}, the manifest says {digest}",
                m.3
            ));
        }
        listed.push(file.to_string());
    }
    for n in names.iter().filter(|n| *n != &names[1]) {
        if !listed.contains(n) {
            return Err(format!("{n} is not in the manifest"));
        }
    }
    // References, in order, are exactly the members after the manifest.
    let refs: Vec<(String, String, u64)> = tags(&ovf, "File")
        .into_iter()
        .map(|t| {
            Ok((
                attr(t, "ovf:id")
                    .ok_or("a File without ovf:id")?
                    .to_string(),
                attr(t, "ovf:href")
                    .map(xml_unescape)
                    .ok_or("a File without ovf:href")?,
                attr(t, "ovf:size")
                    .and_then(|s| s.parse().ok())
                    .ok_or("a File without a numeric ovf:size")?,
            ))
        })
        .collect::<Result<_, &str>>()?;
    let ref_names: Vec<&String> = refs.iter().map(|r| &r.1).collect();
    if ref_names != names[2..].iter().collect::<Vec<_>>() {
        return Err(format!(
            "the descriptor references {ref_names:?}, the OVA holds {:?} after the manifest",
            &names[2..]
        ));
    }
    for (i, r) in refs.iter().enumerate() {
        if members[i + 2].2 != r.2 {
            return Err(format!(
                "{} is {} bytes, the descriptor says {}",
                r.1,
                members[i + 2].2,
                r.2
            ));
        }
    }
    // The disk: capacity in bytes, streamOptimized, its file a vmdk of that capacity.
    let disks = tags(&ovf, "Disk");
    let [disk] = disks.as_slice() else {
        return Err(format!(
            "the descriptor has {} disks, expected 1",
            disks.len()
        ));
    };
    if attr(disk, "ovf:capacityAllocationUnits") != Some("byte") {
        return Err("the disk's capacity is not in bytes".into());
    }
    let capacity: u64 = attr(disk, "ovf:capacity")
        .and_then(|c| c.parse().ok())
        .ok_or("the disk has no numeric ovf:capacity")?;
    let file_ref = attr(disk, "ovf:fileRef").ok_or("the disk has no ovf:fileRef")?;
    let i = refs
        .iter()
        .position(|r| r.0 == file_ref)
        .ok_or_else(|| format!("the disk's fileRef {file_ref} is not in References"))?;
    if !attr(disk, "ovf:format").is_some_and(|f| f.ends_with("#streamOptimized")) {
        return Err("the disk's format is not streamOptimized".into());
    }
    let mut head = vec![0u8; 20];
    f.seek(SeekFrom::Start(members[i + 2].1)).map_err(io)?;
    f.read_exact(&mut head).map_err(io)?;
    if &head[..4] != b"KDMV" {
        return Err(format!("{} has no vmdk sparse header", refs[i].1));
    }
    let mut cap = [0u8; 8];
    cap.copy_from_slice(&head[12..20]);
    let vmdk_capacity = u64::from_le_bytes(cap) * 512;
    if vmdk_capacity != capacity {
        return Err(format!(
            "the descriptor says the disk holds {capacity} bytes, {} says {vmdk_capacity}",
            refs[i].1
        ));
    }
    let firmware = tags(&ovf, "vmw:Config")
        .into_iter()
        .find(|t| attr(t, "vmw:key") == Some("firmware"))
        .and_then(|t| attr(t, "vmw:value"))
        .ok_or("the descriptor has no firmware setting (vmw:Config firmware)")?
        .to_string();
    if ovf.matches("ovf:/disk/vmdisk1").count() != 1 {
        return Err("the disk is not attached to the hardware exactly once".into());
    }
    Ok(OvaInfo {
        members: names,
        capacity,
        firmware,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake streamOptimized vmdk: the sparse header with `capacity` sectors, then data.
    fn vmdk(dir: &Path, capacity: u64) -> std::path::PathBuf {
        let mut b = vec![0u8; 4096];
        b[..4].copy_from_slice(b"KDMV");
        b[4..8].copy_from_slice(&3u32.to_le_bytes());
        b[12..20].copy_from_slice(&(capacity / 512).to_le_bytes());
        b.extend((0..5000u32).map(|i| (i % 7) as u8));
        let p = dir.join("d.vmdk");
        std::fs::write(&p, b).unwrap();
        p
    }

    #[test]
    fn written_ova_checks() {
        let d = tempfile::tempdir().unwrap();
        let v = vmdk(d.path(), 8 << 30);
        let out = d.path().join("n.ova");
        write(&out, "my<node>", &v, 8 << 30, Firmware::Bios, 1_700_000_000).unwrap();
        let info = check(&out).unwrap();
        assert_eq!(
            info.members,
            ["my<node>.ovf", "my<node>.mf", "my<node>-disk1.vmdk"]
        );
        assert_eq!(info.capacity, 8 << 30);
        assert_eq!(info.firmware, "bios");
        // GNU tar reads it as a plain ustar archive.
        let listing = std::process::Command::new("tar")
            .arg("-tvf")
            .arg(&out)
            .output()
            .unwrap();
        assert!(listing.status.success());
        let text = String::from_utf8_lossy(&listing.stdout);
        assert!(text.contains("my<node>-disk1.vmdk"), "{text}");
        assert_eq!(vmware_firmware(Firmware::Hybrid), "efi");
    }

    #[test]
    fn check_finds_each_kind_of_damage() {
        let d = tempfile::tempdir().unwrap();
        let v = vmdk(d.path(), 1 << 30);
        let out = d.path().join("n.ova");
        write(&out, "n", &v, 1 << 30, Firmware::Uefi, 0).unwrap();
        let good = std::fs::read(&out).unwrap();
        let damaged = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut b = good.clone();
            f(&mut b);
            std::fs::write(&out, &b).unwrap();
            check(&out).unwrap_err()
        };
        let find = |b: &[u8], s: &str| b.windows(s.len()).position(|w| w == s.as_bytes()).unwrap();
        // A byte of the disk changed: its hash no longer matches.
        let e = damaged(&|b| {
            let n = b.len();
            b[n - 1024 - 600] ^= 1
        });
        assert!(e.contains("SHA-256"), "{e}");
        // A capacity that disagrees with the vmdk (same length, so the hash is redone).
        let e = damaged(&|b| {
            let i = find(b, "ovf:capacity=\"1073741824\"");
            b[i + 14..i + 24].copy_from_slice(b"2073741824");
        });
        assert!(e.contains("SHA-256") || e.contains("holds"), "{e}");
        // Member order: swap the names of descriptor and manifest.
        let e = damaged(&|b| {
            b[..5].copy_from_slice(b"n.mf\0");
        });
        assert!(e.contains("descriptor first"), "{e}");
        std::fs::write(&out, &good).unwrap();
        assert!(check(&out).is_ok());
    }

    #[test]
    fn capacity_mismatch_is_named() {
        let d = tempfile::tempdir().unwrap();
        let v = vmdk(d.path(), 1 << 30);
        let out = d.path().join("n.ova");
        write(&out, "n", &v, 2 << 30, Firmware::Hybrid, 0).unwrap();
        let e = check(&out).unwrap_err();
        assert!(
            e.contains(
                "the descriptor says the disk holds 2147483648 bytes, n-disk1.vmdk says 1073741824"
            ),
            "{e}"
        );
    }
}
