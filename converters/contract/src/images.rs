//! Container images preloaded into a node: how a reference is spelled once normalised, where the
//! node keeps the archives, and the first-boot import (a script and its unit) that puts them into
//! containerd's `k8s.io` namespace. The frontend writes the script and unit, the `nodestamp` CLI
//! writes the archives and checks them; both name files with [`file_stem`].

/// Where a node keeps its image archives, one `<stem>.tar` per image with `<stem>.json` (its
/// record: reference, digests, the archive's sha256) and `<stem>.import` (`<ref> <digest>`).
pub const NODE_DIR: &str = "/var/lib/nodestamp/images";
/// The first-boot import script.
pub const IMPORT_SCRIPT_PATH: &str = "/usr/lib/nodestamp/import-images";
/// The unit that runs it.
pub const IMPORT_UNIT: &str = "nodestamp-images.service";

/// [`IMPORT_SCRIPT_PATH`]: imports every archive of [`NODE_DIR`] whose image containerd does not
/// have with its digest yet, checks the digest it got, pins the image and prints one line per
/// image on the console. Exits 1 when an image could not be imported as built.
pub const IMPORT_SCRIPT: &str = r#"#!/bin/sh
# Imports the container images the node was built with (/var/lib/nodestamp/images/*.tar, one
# per image, each named by the spec's ref) into containerd's k8s.io namespace. An image already
# there with its digest is left alone, so the import runs once; the images are pinned, so the
# kubelet's image garbage collection never removes them.
set -u
dir=/var/lib/nodestamp/images
failed=0
digest_of() { ctr -n k8s.io images ls "name==$1" 2>/dev/null | awk 'NR==2 {print $3}'; }
for f in "$dir"/*.import; do
  [ -e "$f" ] || continue
  read -r ref digest <"$f"
  if [ "$(digest_of "$ref")" = "$digest" ]; then
    echo "nodestamp-images: $ref $digest present"
    continue
  fi
  start=$(date +%s%N)
  if ! out=$(ctr -n k8s.io images import "${f%.import}.tar" 2>&1); then
    echo "nodestamp-images: FAILED $ref: ctr images import: $out"
    failed=1
    continue
  fi
  have=$(digest_of "$ref")
  if [ "$have" != "$digest" ]; then
    echo "nodestamp-images: FAILED $ref: imported as ${have:-nothing}, expected $digest"
    failed=1
    continue
  fi
  ctr -n k8s.io images label "$ref" io.cri-containerd.pinned=pinned >/dev/null
  echo "nodestamp-images: $ref $digest imported in $((($(date +%s%N) - start) / 1000000)) ms"
done
exit "$failed"
"#;

/// [`IMPORT_UNIT`]: after containerd, before the kubelet, wanted by `multi-user.target`.
pub const IMPORT_UNIT_CONTENTS: &str = "[Unit]
Description=Import the node's preloaded container images into containerd (k8s.io)
Documentation=https://github.com/nodestamp/nodestamp/blob/main/docs/images.md
Requires=containerd.service
After=containerd.service
Before=kubelet.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/lib/nodestamp/import-images
StandardOutput=journal+console
StandardError=journal+console

[Install]
WantedBy=multi-user.target
";

/// A reference that is not one, with what is accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{reference}` is not an image reference: {why}")]
pub struct RefError {
    pub reference: String,
    pub why: String,
}

fn path_component_ok(c: &str) -> bool {
    // [a-z0-9]+ separated by `.`, `_`, `__` or one or more `-`.
    let b = c.as_bytes();
    if b.is_empty() || !b[0].is_ascii_alphanumeric() || !b[b.len() - 1].is_ascii_alphanumeric() {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        let ch = b[i];
        if ch.is_ascii_lowercase() || ch.is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && matches!(b[i], b'.' | b'_' | b'-') {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "."
            || sep == "_"
            || sep == "__"
            || (!sep.is_empty() && sep.bytes().all(|x| x == b'-'));
        if !ok {
            return false;
        }
    }
    true
}

/// The full name containerd and the kubelet know an image by: `pause:3.10` →
/// `docker.io/library/pause:3.10`, no tag → `:latest`; a digest is kept (`name@sha256:…`, or
/// `name:tag@sha256:…`). Errors say what is wrong.
pub fn normalize_ref(r: &str) -> Result<String, RefError> {
    let err = |why: &str| RefError {
        reference: r.into(),
        why: why.into(),
    };
    if r.is_empty() {
        return Err(err("it is empty"));
    }
    if r.len() > 255 {
        return Err(err("it is longer than 255 characters"));
    }
    let (rest, digest) = match r.split_once('@') {
        Some((n, d)) => {
            let hex = d
                .strip_prefix("sha256:")
                .ok_or_else(|| err("a digest is `sha256:` followed by 64 lowercase hex digits"))?;
            if hex.len() != 64
                || !hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            {
                return Err(err(
                    "a digest is `sha256:` followed by 64 lowercase hex digits",
                ));
            }
            (n, Some(d))
        }
        None => (r, None),
    };
    let (name, tag) = match rest.rsplit_once(':') {
        Some((n, t)) if !t.contains('/') => (n, Some(t)),
        _ => (rest, None),
    };
    if let Some(t) = tag {
        let ok = !t.is_empty()
            && t.len() <= 128
            && (t.as_bytes()[0].is_ascii_alphanumeric() || t.as_bytes()[0] == b'_')
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if !ok {
            return Err(err(
                "a tag is up to 128 letters, digits, `_`, `.` and `-`, not starting with `.` or `-`",
            ));
        }
    }
    let mut parts: Vec<&str> = name.split('/').collect();
    let domain = if parts.len() > 1
        && (parts[0].contains('.') || parts[0].contains(':') || parts[0] == "localhost")
    {
        let d = parts.remove(0);
        let (host, port) = match d.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (d, None),
        };
        let host_ok = !host.is_empty()
            && host.split('.').all(|l| {
                !l.is_empty()
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !l.starts_with('-')
                    && !l.ends_with('-')
            });
        let port_ok = port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        if !host_ok || !port_ok {
            return Err(err(
                "the registry host is not a host name with an optional :port",
            ));
        }
        d.to_string()
    } else {
        "docker.io".to_string()
    };
    if parts.is_empty() || parts.iter().any(|p| !path_component_ok(p)) {
        return Err(err(
            "each part of the repository path is lowercase letters and digits, separated by `.`, `_`, `__` or `-`",
        ));
    }
    if domain == "docker.io" && parts.len() == 1 {
        parts.insert(0, "library");
    }
    let mut out = format!("{domain}/{}", parts.join("/"));
    match (tag, digest) {
        (Some(t), _) => out += &format!(":{t}"),
        (None, None) => out += ":latest",
        (None, Some(_)) => {}
    }
    if let Some(d) = digest {
        out += &format!("@{d}");
    }
    Ok(out)
}

/// The file name (without extension) of the image in the node, from its normalised reference:
/// `/` becomes `+` and `:` becomes `=`, characters no reference has, so two references never
/// share a name (`docker.io+library+pause=3.10`).
pub fn file_stem(normalized: &str) -> String {
    normalized.replace('/', "+").replace(':', "=")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_normalised_like_containerd_names_them() {
        let ok = [
            ("pause:3.10", "docker.io/library/pause:3.10"),
            ("busybox", "docker.io/library/busybox:latest"),
            ("registry.k8s.io/pause:3.10", "registry.k8s.io/pause:3.10"),
            (
                "localhost:5055/a/b-c__d.e",
                "localhost:5055/a/b-c__d.e:latest",
            ),
            ("calico/node:v3.29.1", "docker.io/calico/node:v3.29.1"),
        ];
        for (r, want) in ok {
            assert_eq!(normalize_ref(r).unwrap(), want, "{r}");
        }
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            normalize_ref(&format!("x/y@{d}")).unwrap(),
            format!("docker.io/x/y@{d}")
        );
        for bad in [
            "",
            "Pause:3.10",
            "a//b",
            "pause:",
            "pause:-x",
            "a@sha256:12",
            "a@md5:x",
            "-a/b",
            "host:/x",
        ] {
            let e = normalize_ref(bad).unwrap_err();
            assert!(
                e.to_string().contains("is not an image reference"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn file_stems_differ_per_reference() {
        assert_eq!(
            file_stem("registry.k8s.io/pause:3.10"),
            "registry.k8s.io+pause=3.10"
        );
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            file_stem(&format!("a.io/b@{d}")),
            format!("a.io+b@sha256={}", "a".repeat(64))
        );
        assert_ne!(file_stem("a.io/b_c:1"), file_stem("a.io/b/c:1"));
    }

    #[test]
    fn the_script_and_unit_use_the_shared_paths() {
        assert!(IMPORT_SCRIPT.contains(&format!("dir={NODE_DIR}\n")));
        assert!(IMPORT_UNIT_CONTENTS.contains(&format!("ExecStart={IMPORT_SCRIPT_PATH}\n")));
        assert!(IMPORT_SCRIPT.starts_with("#!/bin/sh\n"));
    }
}
