//! `storage:` (in `os:` and `kubernetes:`): files, directories and links, with the paths
//! recorded for the rules across entries (duplicates, symlink loops).

use serde::Serialize;

use super::*;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Storage {
    pub files: Vec<File>,
    pub directories: Vec<Directory>,
    pub links: Vec<Link>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct File {
    pub span: Span,
    /// Absolute and normalized.
    pub path: String,
    pub mode: Option<u32>,
    pub user: Option<Owner>,
    pub group: Option<Owner>,
    pub overwrite: bool,
    pub contents: Contents,
    /// The named build context `contents.local` is read from (`contents.context`); `None`
    /// reads the main build context.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<Spanned<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Contents {
    Inline(String),
    /// Relative to the build context, without `..`.
    Local(String),
    /// An http(s) URL and the sha256 (64 lowercase hex digits) from `verification.hash`.
    Source {
        url: String,
        sha256: String,
    },
}

impl Default for Contents {
    fn default() -> Self {
        Contents::Inline(String::new())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Owner {
    Name(String),
    Id(u32),
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Directory {
    pub span: Span,
    pub path: String,
    pub mode: Option<u32>,
    pub user: Option<Owner>,
    pub group: Option<Owner>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Link {
    pub span: Span,
    pub path: String,
    /// For symlinks any non-empty path (relative ones resolve against the link's directory);
    /// for hard links an absolute path.
    pub target: String,
    pub hard: bool,
    pub overwrite: bool,
}

const STORAGE: &[&str] = &["files", "directories", "links"];
const FILE: &[&str] = &["path", "mode", "user", "group", "overwrite", "contents"];
const CONTENTS: &[&str] = &["inline", "local", "context", "source", "verification"];
const DIRECTORY: &[&str] = &["path", "mode", "user", "group"];
const LINK: &[&str] = &["path", "target", "hard", "overwrite"];

impl Cx<'_> {
    pub(super) fn storage(&mut self, node: &Node, path: &str, layer: Layer) -> Storage {
        let mut st = Storage::default();
        let Some(f) = self.map(node, path, STORAGE) else {
            return st;
        };
        for (i, n) in self.list(&f, "files").iter().enumerate() {
            st.files
                .push(self.file(n, &index(&f.path("files"), i), layer));
        }
        for (i, n) in self.list(&f, "directories").iter().enumerate() {
            st.directories
                .push(self.directory(n, &index(&f.path("directories"), i), layer));
        }
        for (i, n) in self.list(&f, "links").iter().enumerate() {
            st.links
                .push(self.link(n, &index(&f.path("links"), i), layer));
        }
        st
    }

    pub(super) fn entry_path(
        &mut self,
        f: &Fields,
        layer: Layer,
        overwrite: Option<bool>,
    ) -> Option<Spanned<String>> {
        let p = self.required(f, "path", "an absolute path", check::abs_path)?;
        self.paths.push(PathEntry {
            path: p.value.clone(),
            span: p.span,
            key_path: f.path.clone(),
            overwrite: overwrite.unwrap_or(false),
            can_overwrite: overwrite.is_some(),
            layer,
        });
        Some(p)
    }

    pub(super) fn file(&mut self, node: &Node, path: &str, layer: Layer) -> File {
        let mut file = File {
            span: node.span,
            ..File::default()
        };
        let Some(f) = self.map(node, path, FILE) else {
            return file;
        };
        file.overwrite = self.bool(&f, "overwrite").unwrap_or(false);
        file.path = self
            .entry_path(&f, layer, Some(file.overwrite))
            .map(|p| p.value)
            .unwrap_or_default();
        file.mode = self.mode(&f, "mode");
        file.user = self.owner(&f, "user");
        file.group = self.owner(&f, "group");
        if let Some(n) = f.get("contents") {
            (file.contents, file.context) = self.contents(n, &f.path("contents"));
        }
        file
    }

    /// `context: NAME` beside `local:` (a component or contents): the named build context the
    /// path is read from.
    pub(super) fn context(&mut self, f: &Fields) -> Option<Spanned<String>> {
        f.get("context")?;
        let name = self.field(
            f,
            "context",
            "the name of a build context (--build-context NAME=…)",
            check::context_name,
        );
        if f.get("local").is_none() {
            self.error(
                &f.path("context"),
                f.key_span("context").unwrap_or(f.span),
                "`context` names the build context a `local` path is read from, and there is no `local` here",
            );
            return None;
        }
        name
    }

    /// The contents and, with `context:`, the named build context of its `local` path.
    pub(super) fn contents(
        &mut self,
        node: &Node,
        path: &str,
    ) -> (Contents, Option<Spanned<String>>) {
        let Some(f) = self.map(node, path, CONTENTS) else {
            return (Contents::default(), None);
        };
        let context = self.context(&f);
        (self.contents_of(&f, path), context)
    }

    pub(super) fn contents_of(&mut self, f: &Fields, path: &str) -> Contents {
        let given: Vec<&str> = ["inline", "local", "source"]
            .into_iter()
            .filter(|k| f.get(k).is_some())
            .collect();
        if given.len() > 1 {
            let list = given
                .iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(" and ");
            self.error(
                path,
                f.span,
                format!("contents take exactly one of `inline`, `local` or `source`, got {list}"),
            );
            return Contents::default();
        }
        if f.get("source").is_none()
            && let Some(v) = f.key_span("verification")
        {
            self.error(
                &f.path("verification"),
                v,
                "`verification` only applies to `source`; inline and local contents need none",
            );
        }
        if let Some(n) = f.get("inline") {
            return self
                .text(n, &f.path("inline"), "a string")
                .map(|t| Contents::Inline(t.value))
                .unwrap_or_default();
        }
        if let Some(n) = f.get("local") {
            return self
                .checked(
                    n,
                    &f.path("local"),
                    "a path in the build context",
                    check::local_path,
                )
                .map(|t| Contents::Local(t.value))
                .unwrap_or_default();
        }
        let Some(n) = f.get("source") else {
            return Contents::default();
        };
        let url = self.checked(n, &f.path("source"), "an http(s) URL", check::http_url);
        let sha256 = match f.get("verification") {
            None => {
                if url.is_some() {
                    self.error_help(
                        &f.path("verification"),
                        n.span,
                        "a `source` URL needs `verification: { hash: sha256-<hex> }` so the download is pinned",
                        "compute the hash with `curl -sL <url> | sha256sum`",
                    );
                }
                None
            }
            Some(v) => {
                let vpath = f.path("verification");
                self.map(v, &vpath, &["hash"]).and_then(|vf| {
                    let hash =
                        self.required(&vf, "hash", "sha256-<64 hex digits>", check::no_check)?;
                    match check::file_hash(&hash.value) {
                        Ok(hex) => Some(hex),
                        Err(p) => {
                            self.problem(&vf.path("hash"), hash.span, p);
                            None
                        }
                    }
                })
            }
        };
        match (url, sha256) {
            (Some(url), Some(sha256)) => Contents::Source {
                url: url.value,
                sha256,
            },
            _ => Contents::default(),
        }
    }

    pub(super) fn directory(&mut self, node: &Node, path: &str, layer: Layer) -> Directory {
        let mut dir = Directory {
            span: node.span,
            ..Directory::default()
        };
        let Some(f) = self.map(node, path, DIRECTORY) else {
            return dir;
        };
        dir.path = self
            .entry_path(&f, layer, None)
            .map(|p| p.value)
            .unwrap_or_default();
        dir.mode = self.mode(&f, "mode");
        dir.user = self.owner(&f, "user");
        dir.group = self.owner(&f, "group");
        dir
    }

    pub(super) fn link(&mut self, node: &Node, path: &str, layer: Layer) -> Link {
        let mut link = Link {
            span: node.span,
            ..Link::default()
        };
        let Some(f) = self.map(node, path, LINK) else {
            return link;
        };
        link.hard = self.bool(&f, "hard").unwrap_or(false);
        link.overwrite = self.bool(&f, "overwrite").unwrap_or(false);
        let p = self.entry_path(&f, layer, Some(link.overwrite));
        link.path = p.as_ref().map(|p| p.value.clone()).unwrap_or_default();
        let target = if link.hard {
            self.required(&f, "target", "an absolute path", check::abs_path)
        } else {
            self.required(&f, "target", "a path", check::non_empty)
        };
        if let Some(t) = target {
            if !link.hard && t.value.contains(|c: char| c == '\0' || c.is_control()) {
                self.error(
                    &f.path("target"),
                    t.span,
                    "link targets must not contain control characters",
                );
            } else if let (Some(p), false) = (&p, link.hard) {
                self.symlinks.push(SymlinkEntry {
                    path: p.value.clone(),
                    target: t.value.clone(),
                    span: p.span,
                    key_path: path.to_owned(),
                });
            }
            link.target = t.value;
        }
        link
    }
}
