//! The `LLBBridge` client: the calls a frontend run makes, typed for nodestamp.

use std::collections::BTreeMap;

use crate::proto::moby::buildkit::v1::frontend as gw;
use llb_graph::pb;
use prost::Message as _;
use sha2::{Digest as _, Sha256};
use tonic::transport::Channel;

use gw::llb_bridge_client::LlbBridgeClient;

use super::{
    CacheImport, Caps, FrontendEnv, FrontendError, GatewayError, ImageResolveMode, transport,
};

/// Gateway API cap: `Inputs` lists definitions passed to the frontend by the client or by a
/// forwarding frontend.
const CAP_FRONTEND_INPUTS: &str = "frontend.inputs";

/// What the engine reported in its Ping reply.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pong {
    pub caps: Caps,
    /// Platforms of all workers, the first worker's native platform first.
    pub platforms: Vec<pb::Platform>,
}

impl Pong {
    /// The platform to build for when the client asked for none: the first worker's first one.
    pub fn default_platform(&self) -> Option<&pb::Platform> {
        self.platforms.first()
    }

    /// The platforms this run builds for: the `platform` option when given (`--platform
    /// linux/amd64,linux/arm64`: one node per platform, in that order, each named once), else
    /// the worker's default.
    pub fn target_platforms(&self, env: &FrontendEnv) -> Result<Vec<pb::Platform>, GatewayError> {
        let requested = env.platforms()?;
        if requested.is_empty() {
            return Ok(vec![
                self.default_platform()
                    .cloned()
                    .ok_or(GatewayError::NoPlatform)?,
            ]);
        }
        for (i, p) in requested.iter().enumerate() {
            if requested[..i].contains(p) {
                return Err(GatewayError::InvalidOption {
                    key: "platform",
                    value: env.platform().unwrap_or_default().to_owned(),
                    expected: "each platform once",
                });
            }
        }
        Ok(requested)
    }

    /// The first requested platform (or the worker's default): the one `--call` answers are
    /// about.
    pub fn target_platform(&self, env: &FrontendEnv) -> Result<pb::Platform, GatewayError> {
        Ok(self.target_platforms(env)?.remove(0))
    }

    /// The engine's own platform, where nodestamp's steps run: the worker's default.
    pub fn build_platform(&self) -> Result<pb::Platform, GatewayError> {
        self.default_platform()
            .cloned()
            .ok_or(GatewayError::NoPlatform)
    }
}

/// The spec as read by [`Bridge::read_spec`].
#[derive(Clone, Debug, PartialEq)]
pub struct SpecFile {
    /// The file name, for diagnostics.
    pub filename: String,
    pub data: Vec<u8>,
    /// The digest of the vertex that loaded it (`[internal] load build definition from …`):
    /// warnings about the spec are shown with it.
    pub vertex: String,
    /// The definition it was read from: the build graph can read the file again there.
    pub definition: pb::Definition,
}

/// An in-toto attestation of the result: the predicate is the file at `path` in the result of
/// `definition`, and its subject the exported artifact itself.
#[derive(Clone, Debug, PartialEq)]
pub struct ResultAttestation {
    /// The id of the result's platform in `refs.platforms` (e.g. `linux/amd64`).
    pub platform_key: String,
    pub definition: pb::Definition,
    pub path: String,
    /// e.g. `https://spdx.dev/Document`.
    pub predicate_type: String,
    /// e.g. `reason` = `sbom`.
    pub metadata: BTreeMap<String, Vec<u8>>,
}

/// One platform's node in a multi-platform result.
#[derive(Clone, Debug, PartialEq)]
pub struct PlatformResult {
    pub platform: pb::Platform,
    pub definition: pb::Definition,
    /// Exporter metadata of this platform (e.g. `containerimage.config`), keys without the
    /// platform suffix.
    pub metadata: BTreeMap<String, Vec<u8>>,
    pub attestations: Vec<ResultAttestation>,
}

/// `os/arch[/variant]`, the id of a platform in `refs.platforms`.
pub fn platform_key(p: &pb::Platform) -> String {
    if p.variant.is_empty() {
        format!("{}/{}", p.os, p.architecture)
    } else {
        format!("{}/{}/{}", p.os, p.architecture, p.variant)
    }
}

/// The `refs.platforms` metadata of a result with these platforms.
pub fn refs_platforms<'a>(platforms: impl IntoIterator<Item = &'a pb::Platform>) -> Vec<u8> {
    let list: Vec<serde_json::Value> = platforms
        .into_iter()
        .map(|p| {
            serde_json::json!({
                "id": platform_key(p),
                "platform": {
                    "os": p.os,
                    "architecture": p.architecture,
                    "variant": (!p.variant.is_empty()).then_some(&p.variant),
                },
            })
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({ "platforms": list })).unwrap_or_default()
}

/// A connection to BuildKit's `LLBBridge`. Cheap to clone; calls may run concurrently.
#[derive(Clone, Debug)]
pub struct Bridge {
    client: LlbBridgeClient<Channel>,
}

impl Bridge {
    /// Connects over the process's stdin/stdout, as BuildKit expects of a gateway frontend.
    pub async fn connect() -> Result<Self, GatewayError> {
        Ok(Self::with_channel(transport::connect_stdio().await?))
    }

    /// A bridge over an already open channel.
    pub fn with_channel(channel: Channel) -> Self {
        let client = LlbBridgeClient::new(channel)
            .max_decoding_message_size(transport::max_decoding_message_size());
        Bridge { client }
    }

    /// The first call of every run: capabilities and workers.
    pub async fn ping(&self) -> Result<Pong, GatewayError> {
        let pong = self
            .client
            .clone()
            .ping(gw::PingRequest {})
            .await
            .map_err(|s| GatewayError::rpc("BuildKit ping failed", s))?
            .into_inner();
        Ok(Pong {
            caps: Caps::new(&pong.llb_caps, &pong.frontend_api_caps),
            platforms: pong.workers.into_iter().flat_map(|w| w.platforms).collect(),
        })
    }

    /// Definitions passed as frontend inputs, by name.
    pub async fn inputs(&self) -> Result<BTreeMap<String, pb::Definition>, GatewayError> {
        Ok(self
            .client
            .clone()
            .inputs(gw::InputsRequest {})
            .await
            .map_err(|s| GatewayError::rpc("cannot list the frontend inputs", s))?
            .into_inner()
            .definitions)
    }

    /// Solves `def` lazily and returns the id of the resulting reference (the engine builds
    /// it when it is first read or exported).
    pub async fn solve(&self, def: pb::Definition) -> Result<String, GatewayError> {
        self.solve_with_cache(def, &[]).await
    }

    /// Like [`solve`](Self::solve), with the client's cache sources (`--cache-from`): the
    /// engine looks up the ops of `def` in them too. As in the Dockerfile frontend, they go
    /// with the solve of the build's graph, not with the one that reads the spec.
    pub async fn solve_with_cache(
        &self,
        def: pb::Definition,
        cache_imports: &[CacheImport],
    ) -> Result<String, GatewayError> {
        self.solve_evaluated(def, cache_imports, false).await
    }

    /// [`solve_with_cache`](Self::solve_with_cache), building the result now when `evaluate`
    /// is set.
    async fn solve_evaluated(
        &self,
        def: pb::Definition,
        cache_imports: &[CacheImport],
        evaluate: bool,
    ) -> Result<String, GatewayError> {
        let req = gw::SolveRequest {
            evaluate,
            ..solve_request(def, cache_imports)
        };
        let resp = self
            .client
            .clone()
            .solve(req)
            .await
            .map_err(|s| GatewayError::rpc("solve failed", s))?
            .into_inner();
        let id = match resp.result.and_then(|r| r.result) {
            Some(gw::result::Result::Ref(r)) => r.id,
            Some(gw::result::Result::RefDeprecated(id)) => id,
            _ => resp.r#ref,
        };
        if id.is_empty() {
            return Err(GatewayError::NoRef { call: "Solve" });
        }
        Ok(id)
    }

    /// Reads the file at `path` from a solved reference.
    pub async fn read_file(&self, ref_id: &str, path: &str) -> Result<Vec<u8>, GatewayError> {
        let req = gw::ReadFileRequest {
            r#ref: ref_id.to_owned(),
            file_path: path.to_owned(),
            range: None,
        };
        Ok(self
            .client
            .clone()
            .read_file(req)
            .await
            .map_err(|s| GatewayError::rpc(format!("cannot read {path}"), s))?
            .into_inner()
            .data)
    }

    /// Reads the spec the way the Dockerfile frontend reads its Dockerfile: from a `dockerfile`
    /// frontend input when one was passed (unless `dockerfilekey` is set), otherwise from the
    /// client's `dockerfile` local source, transferring only the spec file. Also returns the definition it
    /// was read from (the graph can read the file again there).
    pub async fn read_spec(
        &self,
        env: &FrontendEnv,
        caps: &Caps,
    ) -> Result<SpecFile, GatewayError> {
        let filename = env.filename().to_owned();
        let mut def = None;
        if !env.force_local_spec() && caps.has_frontend(CAP_FRONTEND_INPUTS) {
            def = self.inputs().await?.remove(env.dockerfile_local_name());
        }
        let def = def.unwrap_or_else(|| local_spec_definition(env));
        let vertex = head_vertex(&def).unwrap_or_default();
        let ref_id = self.solve(def.clone()).await.map_err(|e| match e {
            GatewayError::Rpc {
                message, status, ..
            } => GatewayError::Rpc {
                context: format!("cannot load the build definition {filename}"),
                message,
                status,
            },
            other => other,
        })?;
        let data = self.read_file(&ref_id, &filename).await?;
        Ok(SpecFile {
            filename,
            data,
            vertex,
            definition: def,
        })
    }

    /// Resolves an image reference to its manifest digest and OCI config JSON without pulling
    /// layers. `mode` [`ImageResolveMode::Local`] prefers the engine's image store.
    pub async fn resolve_image_config(
        &self,
        image_ref: &str,
        platform: Option<&pb::Platform>,
        mode: ImageResolveMode,
    ) -> Result<(String, Vec<u8>), GatewayError> {
        let req = gw::ResolveImageConfigRequest {
            r#ref: image_ref.to_owned(),
            platform: platform.cloned(),
            resolve_mode: mode.as_str().to_owned(),
            log_name: format!("[internal] load metadata for {image_ref}"),
            ..gw::ResolveImageConfigRequest::default()
        };
        let resp = self
            .client
            .clone()
            .resolve_image_config(req)
            .await
            .map_err(|s| GatewayError::rpc(format!("cannot resolve image {image_ref}"), s))?
            .into_inner();
        Ok((resp.digest, resp.config))
    }

    /// Resolves an image in an OCI layout the client serves (a `--build-context` given as
    /// `oci-layout://`): `image_ref` is `<name>@<digest>`, `store` the id the client serves the
    /// layout's content store under in `session`.
    pub async fn resolve_oci_layout_config(
        &self,
        image_ref: &str,
        platform: Option<&pb::Platform>,
        session: &str,
        store: &str,
        log_name: String,
    ) -> Result<(String, Vec<u8>), GatewayError> {
        let req = gw::ResolveImageConfigRequest {
            r#ref: image_ref.to_owned(),
            platform: platform.cloned(),
            log_name,
            resolver_type: 1,
            session_id: session.to_owned(),
            store_id: store.to_owned(),
            ..gw::ResolveImageConfigRequest::default()
        };
        let resp = self
            .client
            .clone()
            .resolve_image_config(req)
            .await
            .map_err(|s| {
                GatewayError::rpc(format!("cannot resolve {image_ref} in the OCI layout"), s)
            })?
            .into_inner();
        Ok((resp.digest, resp.config))
    }

    /// Ends the run with a result: solves `def` with the client's cache sources (BuildKit's
    /// `Return` only accepts ids of refs it handed out, and applies no cache import of its own)
    /// and returns it with `metadata` (e.g. `containerimage.config`).
    /// The result is built here rather than after `Return`, so that a failing step's error
    /// can be given the spec lines the engine may not find itself ([`super::solve_failure`]).
    pub async fn return_result(
        &self,
        def: pb::Definition,
        cache_imports: &[CacheImport],
        metadata: BTreeMap<String, Vec<u8>>,
    ) -> Result<(), GatewayError> {
        self.return_result_with(def, cache_imports, metadata, Vec::new())
            .await
    }

    /// [`return_result`](Self::return_result) with attestations (e.g. an SBOM), each solved
    /// lazily like the result and attached under its platform key.
    pub async fn return_result_with(
        &self,
        def: pb::Definition,
        cache_imports: &[CacheImport],
        metadata: BTreeMap<String, Vec<u8>>,
        attestations: Vec<ResultAttestation>,
    ) -> Result<(), GatewayError> {
        let id = match self.solve_evaluated(def.clone(), cache_imports, true).await {
            Ok(id) => id,
            Err(GatewayError::Rpc { status, .. }) => {
                return Err(GatewayError::Build(Box::new(super::solve_failure(
                    &def, &status,
                ))));
            }
            Err(e) => return Err(e),
        };
        let mut by_platform: BTreeMap<String, gw::Attestations> = BTreeMap::new();
        for a in attestations {
            let ref_id = self.solve_with_cache(a.definition, cache_imports).await?;
            by_platform
                .entry(a.platform_key)
                .or_default()
                .attestation
                .push(gw::Attestation {
                    kind: gw::AttestationKind::InToto as i32,
                    metadata: a.metadata,
                    r#ref: Some(gw::Ref {
                        id: ref_id,
                        def: None,
                    }),
                    path: a.path,
                    in_toto_predicate_type: a.predicate_type,
                    in_toto_subjects: Vec::new(),
                });
        }
        let result = gw::Result {
            result: Some(gw::result::Result::Ref(gw::Ref { id, def: None })),
            metadata,
            attestations: by_platform.into_iter().collect(),
        };
        self.send_return(gw::ReturnRequest {
            result: Some(result),
            error: None,
        })
        .await
    }

    /// Ends the run with one node per platform, as BuildKit's multi-platform results are: a
    /// map of refs by platform id, `refs.platforms`, and each platform's metadata under
    /// `<key>/<platform id>` (`containerimage.config/linux/arm64`). The platforms are solved
    /// at the same time; the first failure is the run's error.
    pub async fn return_platforms(
        &self,
        results: Vec<PlatformResult>,
        cache_imports: &[CacheImport],
    ) -> Result<(), GatewayError> {
        let solves: Vec<_> = results
            .iter()
            .map(|r| {
                let (bridge, def, imports) =
                    (self.clone(), r.definition.clone(), cache_imports.to_vec());
                tokio::spawn(async move { bridge.solve_evaluated(def, &imports, true).await })
            })
            .collect();
        let mut refs = BTreeMap::new();
        let mut metadata = BTreeMap::new();
        let mut by_platform: BTreeMap<String, gw::Attestations> = BTreeMap::new();
        for (r, solve) in results.iter().zip(solves) {
            let key = platform_key(&r.platform);
            let id = match solve.await {
                Ok(Ok(id)) => id,
                Ok(Err(GatewayError::Rpc { status, .. })) => {
                    return Err(GatewayError::Build(Box::new(super::solve_failure(
                        &r.definition,
                        &status,
                    ))));
                }
                Ok(Err(e)) => return Err(e),
                Err(e) => {
                    return Err(GatewayError::Build(Box::new(
                        crate::gateway::FrontendError::new(format!(
                            "internal error: the build of {key} stopped: {e}"
                        )),
                    )));
                }
            };
            refs.insert(key.clone(), gw::Ref { id, def: None });
            for (k, v) in &r.metadata {
                if k != "refs.platforms" {
                    metadata.insert(format!("{k}/{key}"), v.clone());
                }
            }
            for a in &r.attestations {
                let ref_id = self
                    .solve_with_cache(a.definition.clone(), cache_imports)
                    .await?;
                by_platform
                    .entry(key.clone())
                    .or_default()
                    .attestation
                    .push(gw::Attestation {
                        kind: gw::AttestationKind::InToto as i32,
                        metadata: a.metadata.clone(),
                        r#ref: Some(gw::Ref {
                            id: ref_id,
                            def: None,
                        }),
                        path: a.path.clone(),
                        in_toto_predicate_type: a.predicate_type.clone(),
                        in_toto_subjects: Vec::new(),
                    });
            }
        }
        metadata.insert(
            "refs.platforms".to_string(),
            refs_platforms(results.iter().map(|r| &r.platform)),
        );
        self.send_return(gw::ReturnRequest {
            result: Some(gw::Result {
                result: Some(gw::result::Result::Refs(gw::RefMap { refs })),
                metadata,
                attestations: by_platform.into_iter().collect(),
            }),
            error: None,
        })
        .await
    }

    /// Ends the run with a result that is only metadata (a subrequest's answer, such as
    /// `result.json` for `--call targets`).
    pub async fn return_metadata(
        &self,
        metadata: BTreeMap<String, Vec<u8>>,
    ) -> Result<(), GatewayError> {
        self.send_return(gw::ReturnRequest {
            result: Some(gw::Result {
                result: None,
                metadata,
                attestations: Default::default(),
            }),
            error: None,
        })
        .await
    }

    /// Shows a warning in the build output (engines with the `gateway.warnings` cap).
    pub async fn warn(&self, req: gw::WarnRequest) -> Result<(), GatewayError> {
        self.client
            .clone()
            .warn(req)
            .await
            .map_err(|s| GatewayError::rpc("cannot send a warning to BuildKit", s))?;
        Ok(())
    }

    /// Ends the run with an error; with a spec location, `docker buildx build` prints the
    /// spec lines around it.
    pub async fn return_error(&self, err: &FrontendError) -> Result<(), GatewayError> {
        self.send_return(gw::ReturnRequest {
            result: None,
            error: Some(err.to_status()),
        })
        .await
    }

    async fn send_return(&self, req: gw::ReturnRequest) -> Result<(), GatewayError> {
        self.client
            .clone()
            .r#return(req)
            .await
            .map_err(|s| GatewayError::rpc("cannot return the result to BuildKit", s))?;
        Ok(())
    }
}

/// A lazy solve of `def` answered with a typed result, consulting `cache_imports`.
fn solve_request(def: pb::Definition, cache_imports: &[CacheImport]) -> gw::SolveRequest {
    gw::SolveRequest {
        definition: Some(def),
        allow_result_return: true,
        allow_result_array_ref: true,
        cache_imports: cache_imports.iter().map(CacheImport::to_pb).collect(),
        ..gw::SolveRequest::default()
    }
}

/// The definition of the `dockerfile` local source restricted to the spec file, with the
/// attributes the Dockerfile frontend uses (session, followed paths, shared cache key hint, no
/// differ), named `[internal] load build definition from <file>` in progress output.
pub(crate) fn local_spec_definition(env: &FrontendEnv) -> pb::Definition {
    let name = env.dockerfile_local_name();
    let filename = env.filename();
    let mut attrs = BTreeMap::new();
    let mut caps = BTreeMap::from([("source.local".to_owned(), true)]);
    if !env.session_id().is_empty() {
        attrs.insert("local.session".to_owned(), env.session_id().to_owned());
        caps.insert("source.local.sessionid".to_owned(), true);
    }
    let follow = serde_json::to_string(&[filename]).expect("a string list always serializes");
    attrs.insert("local.followpaths".to_owned(), follow);
    caps.insert("source.local.followpaths".to_owned(), true);
    attrs.insert("local.sharedkeyhint".to_owned(), name.to_owned());
    caps.insert("source.local.sharedkeyhint".to_owned(), true);
    attrs.insert("local.differ".to_owned(), "none".to_owned());

    let source = pb::Op {
        op: Some(pb::op::Op::Source(pb::SourceOp {
            identifier: format!("local://{name}"),
            attrs,
        })),
        ..pb::Op::default()
    };
    let source_md = pb::OpMetadata {
        description: BTreeMap::from([(
            "llb.customname".to_owned(),
            format!("[internal] load build definition from {filename}"),
        )]),
        caps,
        ..pb::OpMetadata::default()
    };
    single_op_definition(source, source_md)
}

/// A definition whose result is output 0 of `op`: the op, then a bare op selecting it.
pub fn single_op_definition(op: pb::Op, md: pb::OpMetadata) -> pb::Definition {
    let op_bytes = op.encode_to_vec();
    let op_digest = digest(&op_bytes);
    let select = pb::Op {
        inputs: vec![pb::Input {
            digest: op_digest.clone(),
            index: 0,
        }],
        ..pb::Op::default()
    };
    let select_bytes = select.encode_to_vec();
    let select_md = pb::OpMetadata {
        caps: BTreeMap::from([
            ("constraints".to_owned(), true),
            ("meta.description".to_owned(), true),
            ("platform".to_owned(), true),
        ]),
        ..pb::OpMetadata::default()
    };
    pb::Definition {
        metadata: BTreeMap::from([(op_digest, md), (digest(&select_bytes), select_md)]),
        def: vec![op_bytes, select_bytes],
        source: None,
    }
}

/// The vertex a definition's result comes from: the input of its last (selecting) op.
fn head_vertex(def: &pb::Definition) -> Option<String> {
    let last = pb::Op::decode(def.def.last()?.as_slice()).ok()?;
    last.inputs.into_iter().next().map(|i| i.digest)
}

fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_source_reads_only_the_spec_from_the_dockerfile_local() {
        let env = FrontendEnv::from_vars([
            ("BUILDKIT_SESSION_ID", "s1"),
            ("BUILDKIT_FRONTEND_OPT_0", "filename=my.yaml"),
        ]);
        let def = local_spec_definition(&env);
        assert_eq!(def.def.len(), 2);
        let op = pb::Op::decode(def.def[0].as_slice()).unwrap();
        let Some(pb::op::Op::Source(src)) = op.op else {
            panic!("not a source op: {op:?}")
        };
        assert_eq!(src.identifier, "local://dockerfile");
        let attr = |k: &str| src.attrs.get(k).map(String::as_str);
        assert_eq!(attr("local.session"), Some("s1"));
        assert_eq!(attr("local.followpaths"), Some(r#"["my.yaml"]"#));
        assert_eq!(attr("local.sharedkeyhint"), Some("dockerfile"));
        assert_eq!(attr("local.differ"), Some("none"));

        // The last op selects output 0 of the source, by the digest of its exact bytes.
        let last = pb::Op::decode(def.def[1].as_slice()).unwrap();
        assert!(last.op.is_none());
        let src_digest = digest(&def.def[0]);
        assert_eq!(
            last.inputs,
            vec![pb::Input {
                digest: src_digest.clone(),
                index: 0
            }]
        );
        assert_eq!(
            def.metadata[&src_digest].description["llb.customname"],
            "[internal] load build definition from my.yaml"
        );
        assert!(def.metadata.contains_key(&digest(&def.def[1])));
        // Warnings about the spec go to the source op's vertex.
        assert_eq!(head_vertex(&def), Some(src_digest));
        assert_eq!(head_vertex(&pb::Definition::default()), None);
    }

    #[test]
    fn cache_imports_travel_as_solve_request_field_12() {
        let import = CacheImport {
            r#type: "local".into(),
            attrs: BTreeMap::from([("src".to_owned(), "/c".to_owned())]),
        };
        let bytes = solve_request(pb::Definition::default(), &[import]).encode_to_vec();
        // Field 12, length-delimited: tag (12 << 3) | 2 = 0x62. Inside it, Type is field 1
        // (0x0a) and each Attrs entry field 2 (0x12), as in BuildKit's CacheOptionsEntry.
        let at = bytes.iter().position(|b| *b == 0x62).expect("no field 12");
        let entry = &bytes[at + 2..at + 2 + bytes[at + 1] as usize];
        assert_eq!(&entry[..7], b"\x0a\x05local");
        assert_eq!(entry[7], 0x12);
        // And nothing is sent without imports.
        let plain = solve_request(pb::Definition::default(), &[]).encode_to_vec();
        assert!(!plain.contains(&0x62), "{plain:?}");
    }

    #[test]
    fn dockerfilekey_renames_the_spec_source() {
        let env = FrontendEnv::from_vars([("BUILDKIT_FRONTEND_OPT_0", "dockerfilekey=spec")]);
        let op = pb::Op::decode(local_spec_definition(&env).def[0].as_slice()).unwrap();
        let Some(pb::op::Op::Source(src)) = op.op else {
            panic!("not a source op")
        };
        assert_eq!(src.identifier, "local://spec");
        assert_eq!(src.attrs["local.sharedkeyhint"], "spec");
        assert!(!src.attrs.contains_key("local.session"));
    }
}
