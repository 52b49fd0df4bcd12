//! The client's cache options, as `docker buildx build` sends them to a frontend:
//!
//! - `cache-imports`: `--cache-from`, a JSON list of `{"Type": "local", "Attrs": {"src": …}}`
//!   (BuildKit's client has already resolved a local source to its `digest` and dropped one it
//!   cannot read, with a warning). The frontend hands them back to the engine with the solve of
//!   the graph, where they take part in the cache lookup of that graph's ops only.
//! - `cache-from`: the older form, a comma-separated list of registry references.
//! - `no-cache`: empty for `--no-cache` (every step), or the comma-separated names given to
//!   `--no-cache-filter`.

use std::collections::BTreeMap;

use crate::proto::moby::buildkit::v1::frontend as gw;
use serde::Deserialize;

use super::{FrontendEnv, GatewayError};

/// Option carrying `--cache-from` as JSON.
pub const OPT_CACHE_IMPORTS: &str = "cache-imports";
/// Older option: registry references, comma-separated.
pub const OPT_CACHE_FROM: &str = "cache-from";
/// `--no-cache` (empty value) and `--no-cache-filter` (names).
pub const OPT_NO_CACHE: &str = "no-cache";

/// One cache source to import: its type (`local`, `registry`, `gha`, …) and attributes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct CacheImport {
    // BuildKit's client writes `Type`/`Attrs`; Go's JSON decoder would also take any case.
    #[serde(alias = "Type", alias = "TYPE", default)]
    pub r#type: String,
    #[serde(alias = "Attrs", alias = "ATTRS", default)]
    pub attrs: BTreeMap<String, String>,
}

impl CacheImport {
    /// The entry of the gateway's `SolveRequest.CacheImports`.
    pub fn to_pb(&self) -> gw::CacheOptionsEntry {
        gw::CacheOptionsEntry {
            r#type: self.r#type.clone(),
            attrs: self.attrs.clone().into_iter().collect(),
        }
    }
}

/// What `no-cache` asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum NoCacheOption {
    /// No `no-cache` option: use the cache.
    #[default]
    Absent,
    /// `--no-cache`: every step runs again.
    All,
    /// `--no-cache-filter a,b`: the steps of these names run again.
    Names(Vec<String>),
}

impl FrontendEnv {
    /// The cache sources to import: `cache-imports` entries, then the registry references of
    /// the older `cache-from` option.
    pub fn cache_imports(&self) -> Result<Vec<CacheImport>, GatewayError> {
        let mut list: Vec<CacheImport> = match self.opt(OPT_CACHE_IMPORTS) {
            None | Some("") => Vec::new(),
            Some(json) => serde_json::from_str::<Option<Vec<CacheImport>>>(json)
                .map_err(|e| GatewayError::InvalidJsonOption {
                    key: OPT_CACHE_IMPORTS,
                    value: json.to_owned(),
                    detail: e.to_string(),
                    expected: "a JSON list of {\"Type\": …, \"Attrs\": {…}} entries, as buildx sends for --cache-from",
                })?
                .unwrap_or_default(),
        };
        if let Some(refs) = self.opt(OPT_CACHE_FROM) {
            for r in refs.split(',').map(str::trim).filter(|r| !r.is_empty()) {
                list.push(CacheImport {
                    r#type: "registry".into(),
                    attrs: BTreeMap::from([("ref".to_owned(), r.to_owned())]),
                });
            }
        }
        Ok(list)
    }

    /// The `no-cache` option: absent, empty (everything) or a list of names.
    pub fn no_cache(&self) -> NoCacheOption {
        match self.opt(OPT_NO_CACHE) {
            None => NoCacheOption::Absent,
            Some(v) => {
                let names: Vec<String> = v
                    .split(',')
                    .map(str::trim)
                    .filter(|n| !n.is_empty())
                    .map(str::to_owned)
                    .collect();
                if names.is_empty() {
                    NoCacheOption::All
                } else {
                    NoCacheOption::Names(names)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(opts: &[&str]) -> FrontendEnv {
        FrontendEnv::from_vars(crate::gateway::option_vars(opts))
    }

    #[test]
    fn cache_imports_as_buildx_sends_them() {
        // What BuildKit's client sends for
        // `--cache-from type=local,src=/c --cache-from type=registry,ref=r/c:1`.
        let e = env(&[
            r#"cache-imports=[{"Type":"local","Attrs":{"digest":"sha256:ab","src":"/c"}},{"Type":"registry","Attrs":{"ref":"r/c:1"}}]"#,
        ]);
        let got = e.cache_imports().unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].r#type, "local");
        assert_eq!(got[0].attrs["src"], "/c");
        assert_eq!(got[0].attrs["digest"], "sha256:ab");
        assert_eq!(got[1].r#type, "registry");
        assert_eq!(got[1].attrs["ref"], "r/c:1");
        let pb = got[0].to_pb();
        assert_eq!(pb.r#type, "local");
        assert_eq!(pb.attrs.get("src").map(String::as_str), Some("/c"));
    }

    #[test]
    fn lowercase_keys_null_and_absent_are_accepted() {
        let e = env(&[r#"cache-imports=[{"type":"gha","attrs":{"scope":"x"}}]"#]);
        assert_eq!(e.cache_imports().unwrap()[0].r#type, "gha");
        assert!(
            env(&["cache-imports=null"])
                .cache_imports()
                .unwrap()
                .is_empty()
        );
        assert!(env(&["cache-imports="]).cache_imports().unwrap().is_empty());
        assert!(env(&[]).cache_imports().unwrap().is_empty());
    }

    #[test]
    fn legacy_cache_from_is_a_list_of_registry_refs() {
        let e = env(&[
            r#"cache-imports=[{"Type":"local","Attrs":{"src":"/c"}}]"#,
            "cache-from=reg/a:1, reg/b:2",
        ]);
        let got = e.cache_imports().unwrap();
        let refs: Vec<(&str, &str)> = got
            .iter()
            .map(|c| {
                (
                    c.r#type.as_str(),
                    c.attrs.get("ref").or(c.attrs.get("src")).unwrap().as_str(),
                )
            })
            .collect();
        assert_eq!(
            refs,
            [
                ("local", "/c"),
                ("registry", "reg/a:1"),
                ("registry", "reg/b:2")
            ]
        );
    }

    #[test]
    fn bad_cache_imports_say_what_is_expected() {
        let err = env(&[r#"cache-imports={"Type":"local"}"#])
            .cache_imports()
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("invalid cache-imports option"), "{err}");
        assert!(err.contains("JSON list"), "{err}");
        assert!(err.contains("--cache-from"), "{err}");
    }

    #[test]
    fn no_cache_absent_all_or_names() {
        assert_eq!(env(&[]).no_cache(), NoCacheOption::Absent);
        assert_eq!(env(&["no-cache="]).no_cache(), NoCacheOption::All);
        assert_eq!(env(&["no-cache"]).no_cache(), NoCacheOption::All);
        assert_eq!(
            env(&["no-cache=os, kubernetes"]).no_cache(),
            NoCacheOption::Names(vec!["os".into(), "kubernetes".into()])
        );
    }
}
