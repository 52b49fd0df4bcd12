//! The package database of a rootfs directory: `packages.json` of the provenance (the
//! frontend's `provenance-packages` step, run in the tools image on the OS layer) and
//! `nodestamp verify`'s package checks. Files are read, nothing is executed.

use std::fs;
use std::path::Path;

use anyhow::{Context, Result};
pub use nodestamp_compile::packages::Package;
use nodestamp_compile::packages::{PackageDb, READABLE, RPM_DIRS};

/// The package database of `rootfs`: `(manager, packages)`. RPM databases (sqlite) are not
/// read; they are reported as `rpm` with no list.
pub fn read_packages(rootfs: &Path) -> Result<(String, Option<Vec<Package>>)> {
    for (manager, rel, _) in READABLE {
        let path = rootfs.join(rel);
        if path.is_file() {
            let text =
                fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            let db = PackageDb::parse(manager, &text).unwrap_or_else(PackageDb::none);
            return Ok((db.manager, db.installed));
        }
    }
    if RPM_DIRS.iter().any(|d| rootfs.join(d).is_dir()) {
        return Ok(("rpm".into(), None));
    }
    Ok(("none".into(), None))
}

/// Writes the package database of `rootfs` as JSON to `output`, creating its parents; with
/// `epoch` (`SOURCE_DATE_EPOCH`) the file and every directory created get that time, so the
/// layer has the same bytes whenever it is built.
pub fn write_packages(rootfs: &Path, output: &Path, epoch: Option<i64>) -> Result<()> {
    let (manager, installed) = read_packages(rootfs)?;
    let db = PackageDb { manager, installed };
    let mut created = Vec::new();
    let mut p = output.parent();
    while let Some(d) = p {
        if d.as_os_str().is_empty() || d.exists() {
            break;
        }
        created.push(d.to_path_buf());
        p = d.parent();
    }
    if let Some(parent) = output.parent() {
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    let mut json = db.to_json();
    // The distribution names the packages (their package URLs in the SBOM).
    if let Some(text) = nodestamp_converters::sysext::read_os_release(rootfs) {
        let field = |k: &str| nodestamp_converters::sysext::os_release_field(&text, k);
        json["os_release"] = serde_json::json!({
            "id": field("ID"), "version_id": field("VERSION_ID"),
        });
    }
    let mut text = serde_json::to_vec_pretty(&json)?;
    text.push(b'\n');
    fs::write(output, text).with_context(|| format!("writing {}", output.display()))?;
    if let Some(e) = epoch {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(e.max(0) as u64);
        // The file first, then its directories from the innermost out.
        for path in std::iter::once(output.to_path_buf()).chain(created) {
            fs::File::open(&path)
                .and_then(|f| f.set_times(fs::FileTimes::new().set_accessed(t).set_modified(t)))
                .with_context(|| format!("setting the times of {}", path.display()))?;
        }
    }
    Ok(())
}

/// The provenance files an SBOM is made from.
pub struct SbomInputs<'a> {
    pub build: &'a Path,
    pub packages: Option<&'a Path>,
    pub components: Option<&'a Path>,
}

/// Writes the SPDX SBOM of the provenance in `inputs` to `output`, creating its parents. It is
/// created at `epoch` (`SOURCE_DATE_EPOCH`) when given, else now.
pub fn write_sbom(
    inputs: &SbomInputs,
    scope: nodestamp_compile::sbom::Scope,
    epoch: Option<i64>,
    output: &Path,
) -> Result<()> {
    let read = |p: &Path| -> Result<serde_json::Value> {
        let text = fs::read(p).with_context(|| format!("reading {}", p.display()))?;
        serde_json::from_slice(&text).with_context(|| format!("parsing {}", p.display()))
    };
    let build = read(inputs.build)?;
    let packages = inputs.packages.map(read).transpose()?;
    let components = inputs.components.map(read).transpose()?;
    let doc = nodestamp_compile::provenance::assemble(build, packages, components);
    let secs = epoch.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64)
    });
    let created = nodestamp_contract::time::Utc::from_unix(secs).rfc3339();
    let spdx = nodestamp_compile::sbom::spdx(&doc, &created, scope);
    if let Some(parent) = output.parent() {
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    let mut text = serde_json::to_vec_pretty(&spdx)?;
    text.push(b'\n');
    fs::write(output, text).with_context(|| format!("writing {}", output.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_dpkg_then_apk_then_knows_rpm() {
        let dir = tempdir("provenance-db");
        let root = dir.as_path();
        assert_eq!(read_packages(root).unwrap(), ("none".into(), None));
        fs::create_dir_all(root.join("var/lib/rpm")).unwrap();
        assert_eq!(read_packages(root).unwrap(), ("rpm".into(), None));
        fs::create_dir_all(root.join("lib/apk/db")).unwrap();
        fs::write(
            root.join("lib/apk/db/installed"),
            "P:musl\nV:1.2.5-r0\nA:x86_64\n",
        )
        .unwrap();
        let (m, list) = read_packages(root).unwrap();
        assert_eq!(
            (m.as_str(), list.unwrap()[0].name.as_str()),
            ("apk", "musl")
        );
        fs::create_dir_all(root.join("var/lib/dpkg")).unwrap();
        fs::write(
            root.join("var/lib/dpkg/status"),
            "Package: jq\nStatus: install ok installed\nVersion: 1.6-2.1\n",
        )
        .unwrap();
        let (m, list) = read_packages(root).unwrap();
        assert_eq!(
            (m.as_str(), list.unwrap()[0].version.as_str()),
            ("dpkg", "1.6-2.1")
        );
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn packages_json_is_written_with_its_parents_at_the_epoch() {
        let dir = tempdir("provenance-write");
        let root = dir.join("rootfs");
        fs::create_dir_all(root.join("var/lib/dpkg")).unwrap();
        fs::write(
            root.join("var/lib/dpkg/status"),
            "Package: jq\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1.6-2.1\n",
        )
        .unwrap();
        fs::create_dir_all(root.join("usr/lib")).unwrap();
        fs::create_dir_all(root.join("etc")).unwrap();
        fs::write(
            root.join("usr/lib/os-release"),
            "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nVERSION_ID=\"12\"\nID=debian\n",
        )
        .unwrap();
        std::os::unix::fs::symlink("/usr/lib/os-release", root.join("etc/os-release")).unwrap();
        let out = dir.join("out/usr/lib/nodestamp/packages.json");
        write_packages(&root, &out, Some(86_400)).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&fs::read(&out).unwrap()).unwrap();
        assert_eq!(v["manager"], "dpkg");
        assert_eq!(v["installed"][0]["name"], "jq");
        assert_eq!(v["installed"][0]["architecture"], "amd64");
        assert_eq!(
            v["os_release"]["id"], "debian",
            "read through the absolute link"
        );
        assert_eq!(v["os_release"]["version_id"], "12");
        let day = std::time::UNIX_EPOCH + std::time::Duration::from_secs(86_400);
        for p in [
            "out/usr",
            "out/usr/lib/nodestamp",
            "out/usr/lib/nodestamp/packages.json",
        ] {
            assert_eq!(
                fs::metadata(dir.join(p)).unwrap().modified().unwrap(),
                day,
                "{p}"
            );
        }
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn sbom_joins_the_three_files() {
        let dir = tempdir("provenance-sbom");
        let (b, p, c) = (dir.join("b.json"), dir.join("p.json"), dir.join("c.json"));
        fs::write(
            &b,
            r#"{"name":"n","base":{"name":"debian:bookworm","digest":null},
                "kubernetes":{"version":"1","components":[{"name":"kubectl","local":"k","dest":"/usr/local/bin/kubectl","extract":false}]}}"#,
        )
        .unwrap();
        fs::write(
            &p,
            r#"{"manager":"dpkg","os_release":{"id":"debian","version_id":"12"},"installed":[{"name":"jq","version":"1.6","architecture":"amd64"}]}"#,
        )
        .unwrap();
        fs::write(&c, format!(r#"{{"kubectl":"{}"}}"#, "ab".repeat(32))).unwrap();
        let out = dir.join("out/sbom.spdx.json");
        let inputs = SbomInputs {
            build: &b,
            packages: Some(&p),
            components: Some(&c),
        };
        write_sbom(&inputs, nodestamp_compile::sbom::Scope::NODE, Some(0), &out).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&fs::read(&out).unwrap()).unwrap();
        assert_eq!(v["creationInfo"]["created"], "1970-01-01T00:00:00Z");
        let text = v.to_string();
        assert!(text.contains("pkg:deb/debian/jq@1.6?arch=amd64"), "{text}");
        assert!(
            text.contains(&"ab".repeat(32)),
            "the local component's sum: {text}"
        );
        let missing = SbomInputs {
            build: &dir.join("nope.json"),
            packages: None,
            components: None,
        };
        let err =
            write_sbom(&missing, nodestamp_compile::sbom::Scope::NODE, None, &out).unwrap_err();
        assert!(format!("{err:#}").contains("nope.json"), "{err:#}");
        let _ = fs::remove_dir_all(&dir);
    }

    fn tempdir(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("nodestamp-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }
}
