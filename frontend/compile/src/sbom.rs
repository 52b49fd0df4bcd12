//! The node's SBOM: an SPDX 2.3 JSON document made from the same facts as the build provenance
//! (the document [`crate::provenance::assemble`] joins from `build.json`,
//! `packages.json` and `components.json`), so the SBOM and `nodestamp inspect` never disagree.
//!
//! It lists the node itself (described by the document), the base image (the node is its
//! descendant) with its manifest digest, every installed OS package with its version and a
//! package URL, and every Kubernetes component with the sha256 of what was fetched or taken
//! from the build context. With `--sbom=true` the frontend attaches it to the result as an
//! in-toto attestation of predicate type [`PREDICATE_TYPE`].

use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

/// The in-toto predicate type of an SPDX document.
pub const PREDICATE_TYPE: &str = "https://spdx.dev/Document";
/// Where the SBOM step writes the document in its output (and the attestation's path).
pub const SBOM_PATH: &str = "/sbom.spdx.json";

/// What the SBOM covers: the OS part (base image and packages), the Kubernetes part
/// (components), or both (the node and everything made from it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scope {
    pub os: bool,
    pub kubernetes: bool,
}

impl Scope {
    pub const NODE: Scope = Scope {
        os: true,
        kubernetes: true,
    };
}

/// The SPDX document for the assembled provenance `doc`, created at `created` (RFC 3339, whole
/// seconds, UTC). The same facts always give the same document.
pub fn spdx(doc: &Value, created: &str, scope: Scope) -> Value {
    let name = doc["name"].as_str().unwrap_or("node");
    let mut packages = Vec::new();
    let mut relationships = vec![rel("SPDXRef-DOCUMENT", "DESCRIBES", "SPDXRef-node")];

    let mut node = json!({
        "SPDXID": "SPDXRef-node",
        "name": name,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "primaryPackagePurpose": "OPERATING-SYSTEM",
    });
    let spec = &doc["spec"];
    if let (Some(file), Some(digest)) = (spec["file"].as_str(), spec["digest"].as_str()) {
        node["comment"] = json!(format!("built by nodestamp from {file} ({digest})"));
    }
    if let Some(v) = doc
        .pointer("/kubernetes/version")
        .and_then(Value::as_str)
        .filter(|_| scope.kubernetes)
    {
        node["versionInfo"] = json!(v);
    }
    packages.push(node);

    if scope.os {
        if let Some(base) = base_package(&doc["base"]) {
            packages.push(base);
            relationships.push(rel("SPDXRef-node", "DESCENDANT_OF", "SPDXRef-base"));
        }
        let distro = Distro::of(&doc["packages"]);
        let manager = doc.pointer("/packages/manager").and_then(Value::as_str);
        let installed = doc
            .pointer("/packages/installed")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for (i, p) in installed.iter().enumerate() {
            let (Some(pname), Some(version)) = (p["name"].as_str(), p["version"].as_str()) else {
                continue;
            };
            let arch = p["architecture"].as_str().unwrap_or_default();
            let id = format!("SPDXRef-package-{}-{}", i + 1, id_part(pname));
            let mut pkg = json!({
                "SPDXID": id,
                "name": pname,
                "versionInfo": version,
                "downloadLocation": "NOASSERTION",
                "filesAnalyzed": false,
                "primaryPackagePurpose": "LIBRARY",
            });
            if let Some(purl) = manager.and_then(|m| os_purl(m, &distro, pname, version, arch)) {
                pkg["externalRefs"] = json!([purl_ref(&purl)]);
            }
            packages.push(pkg);
            relationships.push(rel("SPDXRef-node", "CONTAINS", &id));
        }
    }

    if scope.kubernetes {
        let components = doc
            .pointer("/kubernetes/components")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for c in &components {
            let Some(cname) = c["name"].as_str() else {
                continue;
            };
            let id = format!("SPDXRef-component-{}", id_part(cname));
            let sha = c["sha256"].as_str();
            let url = c["url"].as_str();
            let dest = c["dest"].as_str().unwrap_or_default();
            let extract = c["extract"].as_bool().unwrap_or(false);
            let origin = match (url, c["local"].as_str()) {
                (Some(u), _) => format!("downloaded from {u}"),
                (None, Some(l)) => format!("taken from the build context: {l}"),
                (None, None) => "of unknown origin".to_string(),
            };
            let placed = if extract {
                format!("unpacked into {dest}")
            } else {
                format!("installed as {dest}")
            };
            let mut pkg = json!({
                "SPDXID": id,
                "name": cname,
                "downloadLocation": url.unwrap_or("NOASSERTION"),
                "filesAnalyzed": false,
                "primaryPackagePurpose": if extract { "ARCHIVE" } else { "APPLICATION" },
                "comment": format!("Kubernetes component {origin}, {placed}"),
            });
            if let Some(sha) = sha {
                pkg["checksums"] = json!([{ "algorithm": "SHA256", "checksumValue": sha }]);
                let mut purl = format!("pkg:generic/{}?checksum=sha256:{sha}", purl_encode(cname));
                if let Some(u) = url {
                    purl += &format!("&download_url={}", purl_encode(u));
                }
                pkg["externalRefs"] = json!([purl_ref(&purl)]);
            }
            packages.push(pkg);
            relationships.push(rel("SPDXRef-node", "CONTAINS", &id));
        }
    }

    let facts = serde_json::to_vec(&json!([name, packages, relationships])).unwrap_or_default();
    let namespace = format!(
        "{}/spdx/{}-{}",
        env!("CARGO_PKG_REPOSITORY"),
        id_part(name),
        hex::encode(Sha256::digest(&facts))
    );
    json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": name,
        "documentNamespace": namespace,
        "creationInfo": {
            "created": created,
            "creators": [format!("Tool: nodestamp-{}", crate::VERSION)],
        },
        "packages": packages,
        "relationships": relationships,
    })
}

fn rel(from: &str, kind: &str, to: &str) -> Value {
    json!({ "spdxElementId": from, "relationshipType": kind, "relatedSpdxElement": to })
}

fn purl_ref(purl: &str) -> Value {
    json!({
        "referenceCategory": "PACKAGE-MANAGER",
        "referenceType": "purl",
        "referenceLocator": purl,
    })
}

/// The base image as a package: its name and tag, and the manifest digest it resolved to.
fn base_package(base: &Value) -> Option<Value> {
    let reference = base["name"].as_str()?;
    let full = llb_graph::normalize_image_ref(reference);
    let (repo, tag) = match full.split_once('@') {
        Some((r, _)) => (r.to_string(), None),
        None => match full.rsplit_once(':').filter(|(_, t)| !t.contains('/')) {
            Some((r, t)) => (r.to_string(), Some(t.to_string())),
            None => (full.clone(), None),
        },
    };
    let mut pkg = json!({
        "SPDXID": "SPDXRef-base",
        "name": repo,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "primaryPackagePurpose": "CONTAINER",
        "comment": format!("base image (os.from: {reference})"),
    });
    if let Some(t) = &tag {
        pkg["versionInfo"] = json!(t);
    }
    if let Some(hex) = base["digest"]
        .as_str()
        .and_then(|d| d.strip_prefix("sha256:"))
    {
        pkg["checksums"] = json!([{ "algorithm": "SHA256", "checksumValue": hex }]);
        let last = repo.rsplit('/').next().unwrap_or(&repo);
        let mut purl = format!(
            "pkg:oci/{}@sha256%3A{hex}?repository_url={}",
            purl_encode(last),
            purl_encode(&repo)
        );
        if let Some(t) = &tag {
            purl += &format!("&tag={}", purl_encode(t));
        }
        pkg["externalRefs"] = json!([purl_ref(&purl)]);
    }
    Some(pkg)
}

/// The distribution of the OS layer, from its os-release (`packages.os_release`).
struct Distro {
    id: Option<String>,
    version_id: Option<String>,
}

impl Distro {
    fn of(packages: &Value) -> Distro {
        let field = |k: &str| {
            packages
                .pointer(&format!("/os_release/{k}"))
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        Distro {
            id: field("id"),
            version_id: field("version_id"),
        }
    }
}

/// The package URL of an OS package (`pkg:deb/debian/jq@1.6-2.1?arch=amd64&distro=debian-12`);
/// `None` when the distribution (the purl namespace) is unknown.
fn os_purl(
    manager: &str,
    distro: &Distro,
    name: &str,
    version: &str,
    arch: &str,
) -> Option<String> {
    let kind = match manager {
        "dpkg" => "deb",
        "apk" => "apk",
        _ => return None,
    };
    let ns = distro.id.as_deref()?;
    let mut purl = format!(
        "pkg:{kind}/{}/{}@{}",
        purl_encode(ns),
        purl_encode(name),
        purl_encode(version)
    );
    let mut q = Vec::new();
    if !arch.is_empty() {
        q.push(format!("arch={}", purl_encode(arch)));
    }
    if let Some(v) = &distro.version_id {
        q.push(format!("distro={}", purl_encode(&format!("{ns}-{v}"))));
    }
    if !q.is_empty() {
        purl += "?";
        purl += &q.join("&");
    }
    Some(purl)
}

/// Percent-encoding for purl segments and qualifier values: everything but unreserved
/// characters.
fn purl_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// An SPDX id part: letters, digits, `.` and `-` only.
fn id_part(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> Value {
        json!({
            "schema": "nodestamp.build/v1",
            "name": "debian-node",
            "spec": { "file": "node.yaml", "digest": "sha256:aa" },
            "base": { "name": "debian:bookworm", "digest": format!("sha256:{}", "b".repeat(64)) },
            "kubernetes": {
                "version": "1.32.3",
                "components": [
                    { "name": "kubelet", "url": "https://example.invalid/v1.32.3/kubelet",
                      "sha256": "0".repeat(64), "dest": "/usr/local/bin/kubelet", "extract": false },
                    { "name": "containerd", "local": "components/containerd.tar.gz",
                      "sha256": "c".repeat(64), "dest": "/usr/local", "extract": true },
                ],
            },
            "packages": {
                "manager": "dpkg",
                "os_release": { "id": "debian", "version_id": "12" },
                "installed": [
                    { "name": "g++", "version": "4:12.2.0-3", "architecture": "amd64" },
                    { "name": "jq", "version": "1.6-2.1", "architecture": "amd64" },
                ],
            },
        })
    }

    fn package<'a>(d: &'a Value, id: &str) -> &'a Value {
        d["packages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["SPDXID"] == id)
            .unwrap_or_else(|| panic!("no package {id} in {d:#}"))
    }

    fn purl(p: &Value) -> &str {
        p["externalRefs"][0]["referenceLocator"].as_str().unwrap()
    }

    #[test]
    fn lists_base_packages_and_components_with_their_digests() {
        let d = spdx(&doc(), "2023-11-14T22:13:20Z", Scope::NODE);
        assert_eq!(d["spdxVersion"], "SPDX-2.3");
        assert_eq!(d["creationInfo"]["created"], "2023-11-14T22:13:20Z");
        let node = package(&d, "SPDXRef-node");
        assert_eq!(node["versionInfo"], "1.32.3");
        let base = package(&d, "SPDXRef-base");
        assert_eq!(base["name"], "docker.io/library/debian");
        assert_eq!(base["versionInfo"], "bookworm");
        assert_eq!(base["checksums"][0]["checksumValue"], "b".repeat(64));
        assert!(
            purl(base).starts_with("pkg:oci/debian@sha256%3Abbbb"),
            "{base}"
        );
        let gxx = package(&d, "SPDXRef-package-1-g--");
        assert_eq!(gxx["versionInfo"], "4:12.2.0-3");
        assert_eq!(
            purl(gxx),
            "pkg:deb/debian/g%2B%2B@4%3A12.2.0-3?arch=amd64&distro=debian-12"
        );
        let kubelet = package(&d, "SPDXRef-component-kubelet");
        assert_eq!(kubelet["checksums"][0]["checksumValue"], "0".repeat(64));
        assert_eq!(
            kubelet["downloadLocation"],
            "https://example.invalid/v1.32.3/kubelet"
        );
        let containerd = package(&d, "SPDXRef-component-containerd");
        assert_eq!(containerd["checksums"][0]["checksumValue"], "c".repeat(64));
        assert_eq!(containerd["downloadLocation"], "NOASSERTION");
        assert_eq!(containerd["primaryPackagePurpose"], "ARCHIVE");
        let rels = d["relationships"].as_array().unwrap();
        assert_eq!(rels.len(), 1 + 1 + 2 + 2, "{rels:#?}");
        assert!(rels.contains(&rel("SPDXRef-node", "DESCENDANT_OF", "SPDXRef-base")));
    }

    #[test]
    fn the_same_facts_give_the_same_document_and_other_facts_another_namespace() {
        let a = spdx(&doc(), "2023-11-14T22:13:20Z", Scope::NODE);
        assert_eq!(a, spdx(&doc(), "2023-11-14T22:13:20Z", Scope::NODE));
        let mut other = doc();
        other["packages"]["installed"][1]["version"] = json!("1.7.1-3");
        let b = spdx(&other, "2023-11-14T22:13:20Z", Scope::NODE);
        assert_ne!(a["documentNamespace"], b["documentNamespace"]);
    }

    #[test]
    fn scope_leaves_out_what_the_result_does_not_hold() {
        let os = spdx(
            &doc(),
            "2023-11-14T22:13:20Z",
            Scope {
                os: true,
                kubernetes: false,
            },
        );
        let ids: Vec<&str> = os["packages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["SPDXID"].as_str().unwrap())
            .collect();
        assert!(
            !ids.iter().any(|i| i.starts_with("SPDXRef-component")),
            "{ids:?}"
        );
        assert!(ids.contains(&"SPDXRef-base"));
        let k = spdx(
            &doc(),
            "2023-11-14T22:13:20Z",
            Scope {
                os: false,
                kubernetes: true,
            },
        );
        assert_eq!(k["packages"].as_array().unwrap().len(), 3);
    }

    #[test]
    fn without_os_release_packages_have_no_purl() {
        let mut d = doc();
        d["packages"].as_object_mut().unwrap().remove("os_release");
        let s = spdx(&d, "2023-11-14T22:13:20Z", Scope::NODE);
        assert!(
            package(&s, "SPDXRef-package-2-jq")
                .get("externalRefs")
                .is_none()
        );
    }
}
