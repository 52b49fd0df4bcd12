//! One build request, from the frontend options and the spec bytes to the definition and image
//! config handed back to BuildKit. Split around the one engine call it needs (the base image's
//! config), so everything here stays a pure function of its inputs.

use std::collections::BTreeMap;

use llb_graph::{Platform, ResolveMode, SourceRange, pb};

use crate::gateway::{
    CacheImport, Caps, FrontendEnv, FrontendError, ImageResolveMode, NoCacheOption,
    ResultAttestation, SbomRequest, platform_key, refs_platforms,
};
use nodestamp_compile::image::{ImageConfigInput, base_env, image_config, rfc3339};
use nodestamp_compile::inline::SpecSource;
use nodestamp_compile::provenance::BuildInfo;
use nodestamp_compile::{
    CompileOptions, NoCache, PROXY_ARGS, TOOLS_IMAGE_ARG, Target, compile_target,
};
use nodestamp_spec::diag::{Diagnostic, Diagnostics};
use nodestamp_spec::{self as spec, Spec};

pub use crate::request::Request;

/// What a build hands back: the graph, the cache sources to solve it with, the exporter
/// metadata (`containerimage.config`) and the attestations (the SBOM with `--sbom=true`).
pub struct BuildResult {
    pub definition: pb::Definition,
    pub cache_imports: Vec<CacheImport>,
    pub metadata: BTreeMap<String, Vec<u8>>,
    pub attestations: Vec<ResultAttestation>,
}

fn ranges(d: &Diagnostic) -> Option<SourceRange> {
    d.span.map(nodestamp_compile::range)
}

/// Spec diagnostics as the error BuildKit shows: every error, one per line, with the spec
/// lines around them.
pub fn diagnostics_error(filename: &str, source: &[u8], diags: &Diagnostics) -> FrontendError {
    let errors: Vec<&Diagnostic> = diags.errors().collect();
    let mut message = errors
        .iter()
        .map(|d| match &d.help {
            // buildx prints only the message and the spec lines, so the help travels with it.
            Some(help) => format!("{} ({help})", d.one_line()),
            None => d.one_line(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    if errors.len() > 1 {
        message = format!("{} errors in {filename}:\n{message}", errors.len());
    }
    let rs: Vec<SourceRange> = errors.iter().filter_map(|d| ranges(d)).collect();
    if rs.is_empty() {
        FrontendError::new(message)
    } else {
        // A spec of many megabytes is sent with only the lines near the errors: the error
        // travels in one gRPC message too (BuildKit 0.13 refuses one over 4 MiB).
        let lines: Vec<(u32, u32)> = rs.iter().map(|r| (r.start_line, r.end_line)).collect();
        let source = llb_graph::trim_source(source, &lines);
        FrontendError::at(message, filename, source, rs)
    }
}

/// The platforms nodestamp builds nodes for (`os/architecture`), as `--platform` names them.
pub const SUPPORTED_PLATFORMS: &[&str] = &["linux/amd64", "linux/arm64"];

/// BuildKit's platform build args, as the Dockerfile frontend defines them: `TARGETPLATFORM`,
/// `TARGETOS`, `TARGETARCH`, `TARGETVARIANT` for the node's platform and `BUILDPLATFORM`,
/// `BUILDOS`, `BUILDARCH`, `BUILDVARIANT` for the engine's. They win over build args of the
/// same names.
pub fn platform_args(target: &pb::Platform, build: &pb::Platform) -> BTreeMap<String, String> {
    let mut args = BTreeMap::new();
    for (prefix, p) in [("TARGET", target), ("BUILD", build)] {
        args.insert(format!("{prefix}PLATFORM"), platform_key(p));
        args.insert(format!("{prefix}OS"), p.os.clone());
        args.insert(format!("{prefix}ARCH"), p.architecture.clone());
        args.insert(format!("{prefix}VARIANT"), p.variant.clone());
    }
    args
}

/// `build_args` with the platform build args of `target` and `build` added.
pub fn with_platform_args(
    build_args: &BTreeMap<String, String>,
    target: &pb::Platform,
    build: &pb::Platform,
) -> BTreeMap<String, String> {
    let mut vars = build_args.clone();
    vars.extend(platform_args(target, build));
    vars
}

/// The error for a platform nodestamp does not build nodes for, at `os.from` (the base every
/// platform's node starts from).
fn unsupported_platform(
    spec: &Spec,
    filename: &str,
    platform: &pb::Platform,
) -> Option<Diagnostic> {
    let supported = match (platform.os.as_str(), platform.architecture.as_str()) {
        ("linux", "amd64") => matches!(platform.variant.as_str(), "" | "v1" | "v2" | "v3" | "v4"),
        ("linux", "arm64") => matches!(platform.variant.as_str(), "" | "v8"),
        _ => false,
    };
    (!supported).then(|| {
        Diagnostic::error(
            filename,
            "os.from",
            Some(spec.os.from.span),
            format!(
                "the build is for platform {} (--platform), and nodestamp builds nodes for {}",
                platform_key(platform),
                SUPPORTED_PLATFORMS.join(" and ")
            ),
        )
        .with_help(format!(
            "build with --platform {} (or both, comma-separated)",
            SUPPORTED_PLATFORMS.join(" or --platform ")
        ))
    })
}

/// Parses the request for one platform: target name, build args (with the platform build args
/// of `platform` and `build_platform`), and the spec itself.
pub fn parse(
    env: &FrontendEnv,
    filename: &str,
    source: &[u8],
    platform: &pb::Platform,
    build_platform: &pb::Platform,
) -> Result<Request, FrontendError> {
    let build_args = env.build_args();
    let vars = with_platform_args(&build_args, platform, build_platform);
    let loaded =
        spec::load(filename, source, &vars).map_err(|d| diagnostics_error(filename, source, &d))?;
    if let Some(d) = unsupported_platform(&loaded.spec, filename, platform) {
        return Err(diagnostics_error(filename, source, &Diagnostics(vec![d])));
    }
    let target = target_for(env.target().unwrap_or(""), &loaded.spec, filename)?;
    Ok(Request {
        spec: loaded.spec,
        target,
        warnings: loaded.warnings,
        filename: filename.into(),
        source: source.to_vec(),
        build_args,
        platform_args: platform_args(platform, build_platform),
        spec_source: None,
    })
}

/// Where the engine holds the spec file, from the definition the frontend read it with: its
/// local source (name and attributes), the file's name in it and the build args the spec's
/// `${VAR}` references need. `None` when the spec came from anything but one local source (a
/// git or http context): the graph then keeps every content in the definition.
pub fn spec_source(def: &pb::Definition, req: &Request) -> Option<SpecSource> {
    let ops = llb_graph::decode_ops(def).ok()?;
    let mut sources = ops.ops.values().filter_map(|op| match &op.op {
        Some(pb::op::Op::Source(s)) => Some(s),
        _ => None,
    });
    let (Some(src), None) = (sources.next(), sources.next()) else {
        return None;
    };
    let local_name = src.identifier.strip_prefix("local://")?;
    let used = spec::referenced_names(&String::from_utf8_lossy(&req.source));
    Some(SpecSource {
        local_name: local_name.to_owned(),
        attrs: src.attrs.clone(),
        filename: req.filename.clone(),
        build_args: req
            .build_args
            .iter()
            .chain(&req.platform_args)
            .filter(|(k, _)| used.contains(*k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    })
}

/// The target named `name` (empty for the default), when `spec` can build it.
pub fn target_for(name: &str, spec: &Spec, filename: &str) -> Result<Target, FrontendError> {
    let target = Target::parse(name, spec).map_err(FrontendError::new)?;
    if matches!(target, Target::Kubernetes | Target::Sysext) && spec.kubernetes.is_none() {
        return Err(FrontendError::new(format!(
            "target \"{}\" needs a kubernetes section in {filename}; accepted targets for this spec: node, os",
            target.kind()
        )));
    }
    if target == Target::Test && spec.tests.as_ref().is_none_or(|t| t.is_empty()) {
        return Err(FrontendError::new(format!(
            "target \"test\" runs the checks in the spec's tests: section, and {filename} has none"
        )));
    }
    Ok(target)
}

/// Compiles the request into the definition and image config. `base` is the resolved base
/// image `(digest, config JSON)` when the target includes the OS.
pub fn finish(
    req: &Request,
    env: &FrontendEnv,
    caps: &Caps,
    platform: &pb::Platform,
    build_platform: &pb::Platform,
    base: Option<(&str, &[u8])>,
) -> Result<BuildResult, FrontendError> {
    let sde = req.source_date_epoch()?;
    let cache_imports = env.cache_imports().map_err(FrontendError::from)?;
    let no_cache = match env.no_cache() {
        NoCacheOption::Absent => NoCache::None,
        NoCacheOption::All => NoCache::All,
        NoCacheOption::Names(names) => NoCache::groups(&names).map_err(FrontendError::new)?,
    };
    let base_env = match base {
        Some((_, cfg)) => base_env(cfg)
            .map_err(|e| FrontendError::new(format!("{}: {e}", req.spec.os.from.value)))?,
        None => Vec::new(),
    };
    let tools_image = req
        .build_args
        .get(TOOLS_IMAGE_ARG)
        .cloned()
        .or_else(|| env.source_image().map(str::to_string))
        .unwrap_or_else(|| "nodestamp/frontend:dev".into());
    let (base_context, contexts) = crate::contexts::for_request(req, env, platform)?;
    let opts = CompileOptions {
        base_context,
        contexts,
        platform: to_platform(platform),
        build_platform: to_platform(build_platform),
        image_resolve_mode: match env.image_resolve_mode()? {
            ImageResolveMode::Default => ResolveMode::Default,
            ImageResolveMode::Pull => ResolveMode::Pull,
            ImageResolveMode::Local => ResolveMode::Local,
        },
        session_id: Some(env.session_id().to_string()).filter(|s| !s.is_empty()),
        context_name: env.context_local_name().to_string(),
        tools_image,
        symlink_file_action: caps.has_llb("file.symlink.create"),
        source_date_epoch: sde,
        base_env,
        proxy: PROXY_ARGS
            .iter()
            .filter_map(|k| req.build_args.get(*k).map(|v| (k.to_string(), v.clone())))
            .collect(),
        no_cache,
        provenance: req.target.has_provenance().then(|| BuildInfo {
            base_digest: base.map(|(d, _)| d.to_string()),
            build_args: req.build_args.clone(),
        }),
        spec_source: req.spec_source.clone(),
    };
    let state = compile_target(&req.spec, &req.source, &opts, &req.target);
    let definition = state.marshal().map_err(|e| {
        FrontendError::new(format!(
            "internal error: cannot marshal the build graph: {e}"
        ))
    })?;
    let has_source = req.spec_source.is_some();
    if let Some(d) =
        nodestamp_compile::size::check(&req.spec, prost::Message::encoded_len(&definition), &|l| {
            nodestamp_compile::inline::extracted(&req.spec, l, has_source)
        })
    {
        return Err(diagnostics_error(
            &req.filename,
            &req.source,
            &Diagnostics(vec![d]),
        ));
    }
    let target_name = req.target.kind();
    let config = image_config(
        &req.spec,
        &ImageConfigInput {
            base: base.map(|(_, c)| c),
            base_digest: base.map(|(d, _)| d),
            architecture: &platform.architecture,
            target: target_name,
            source: &req.source,
            created: sde.map(rfc3339),
            build_args: &req.build_args,
            provenance: req.target.has_provenance(),
            layers: &state.layers(),
        },
    )
    .map_err(|e| FrontendError::new(e.to_string()))?;
    let mut metadata = BTreeMap::from([("containerimage.config".to_string(), config)]);
    let mut attestations = Vec::new();
    if env.sbom() == Some(SbomRequest::Nodestamp) {
        let info = BuildInfo {
            base_digest: base.map(|(d, _)| d.to_string()),
            build_args: req.build_args.clone(),
        };
        let sbom = nodestamp_compile::sbom(&req.spec, &req.source, &opts, &req.target, &info)
            .marshal()
            .map_err(|e| {
                FrontendError::new(format!("internal error: cannot marshal the SBOM step: {e}"))
            })?;
        // The attestation is keyed by the result's platform, as `refs.platforms` names it.
        let key = platform_key(platform);
        metadata.insert("refs.platforms".to_string(), refs_platforms([platform]));
        attestations.push(ResultAttestation {
            platform_key: key,
            definition: sbom,
            path: nodestamp_compile::sbom::SBOM_PATH.to_string(),
            predicate_type: nodestamp_compile::sbom::PREDICATE_TYPE.to_string(),
            // As BuildKit's own scanner marks its SBOM: the image exporter then notes each
            // listed file's layer.
            metadata: BTreeMap::from([
                ("reason".to_string(), b"sbom".to_vec()),
                ("sbom-core".to_string(), b"sbom".to_vec()),
            ]),
        });
    }
    Ok(BuildResult {
        definition,
        cache_imports,
        metadata,
        attestations,
    })
}

fn to_platform(p: &pb::Platform) -> Platform {
    Platform {
        os: p.os.clone(),
        architecture: p.architecture.clone(),
        variant: (!p.variant.is_empty()).then(|| p.variant.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn platform(os: &str, arch: &str, variant: &str) -> pb::Platform {
        pb::Platform {
            os: os.into(),
            architecture: arch.into(),
            variant: variant.into(),
        }
    }

    fn env(opts: &[&str]) -> FrontendEnv {
        FrontendEnv::from_vars(crate::gateway::option_vars(opts))
    }

    #[test]
    fn platform_args_name_the_target_and_the_build_platform() {
        let args = platform_args(
            &platform("linux", "arm64", ""),
            &platform("linux", "amd64", ""),
        );
        let get = |k: &str| args[k].as_str();
        assert_eq!(get("TARGETPLATFORM"), "linux/arm64");
        assert_eq!(get("TARGETOS"), "linux");
        assert_eq!(get("TARGETARCH"), "arm64");
        assert_eq!(get("TARGETVARIANT"), "");
        assert_eq!(get("BUILDPLATFORM"), "linux/amd64");
        assert_eq!(get("BUILDOS"), "linux");
        assert_eq!(get("BUILDARCH"), "amd64");
        assert_eq!(get("BUILDVARIANT"), "");
        assert_eq!(args.len(), 8);
        let v = platform_args(
            &platform("linux", "arm", "v7"),
            &platform("linux", "amd64", ""),
        );
        assert_eq!(v["TARGETPLATFORM"], "linux/arm/v7");
        assert_eq!(v["TARGETVARIANT"], "v7");
    }

    #[test]
    fn the_spec_reads_platform_args_and_they_win_over_build_args() {
        let spec = "version: 1\nos:\n  from: debian:bookworm\n  packages:\n    - linux-image-${TARGETARCH}\n    - tool-${BUILDARCH}\n";
        let arm64 = platform("linux", "arm64", "");
        let amd64 = platform("linux", "amd64", "");
        let e = env(&["build-arg:TARGETARCH=riscv64"]);
        let req = parse(&e, "node.yaml", spec.as_bytes(), &arm64, &amd64).unwrap();
        let packages: Vec<&str> = req
            .spec
            .os
            .packages
            .iter()
            .map(|p| p.value.as_str())
            .collect();
        assert_eq!(packages, ["linux-image-arm64", "tool-amd64"]);
        // Provenance keeps the user's build args; the platform args are kept apart.
        assert_eq!(req.build_args["TARGETARCH"], "riscv64");
        assert_eq!(req.platform_args["TARGETARCH"], "arm64");
        let req = parse(&e, "node.yaml", spec.as_bytes(), &amd64, &amd64).unwrap();
        assert_eq!(req.spec.os.packages[0].value, "linux-image-amd64");
    }

    const PER_ARCH: &str = "version: 1\nos:\n  from: debian:bookworm\nkubernetes:\n  components:\n    - name: kubelet\n      url: \"https://dl.k8s.io/release/v1.32.3/bin/linux/${TARGETARCH}/kubelet\"\n      sha256:\n        amd64: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n        arm64: bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\n";

    fn http(req: &Request) -> (String, String) {
        match &req.spec.kubernetes.as_ref().unwrap().components[0].source {
            nodestamp_spec::ComponentSource::Http { url, sha256 } => (url.clone(), sha256.clone()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_per_architecture_sha256_pins_each_platform_s_download() {
        let amd64 = platform("linux", "amd64", "");
        for (arch, digit) in [("amd64", "a"), ("arm64", "b")] {
            let p = platform("linux", arch, "");
            let req = parse(&env(&[]), "node.yaml", PER_ARCH.as_bytes(), &p, &amd64).unwrap();
            let (url, sha) = http(&req);
            assert_eq!(
                url,
                format!("https://dl.k8s.io/release/v1.32.3/bin/linux/{arch}/kubelet")
            );
            assert_eq!(sha, digit.repeat(64));
        }
    }

    #[test]
    fn a_missing_architecture_s_sha256_is_an_error_at_its_line_naming_it() {
        let amd64 = platform("linux", "amd64", "");
        let only_amd64: String = PER_ARCH
            .lines()
            .filter(|l| !l.contains("arm64: "))
            .map(|l| format!("{l}\n"))
            .collect();
        let p = platform("linux", "arm64", "");
        let Err(err) = parse(&env(&[]), "node.yaml", only_amd64.as_bytes(), &p, &amd64) else {
            panic!("accepted without an arm64 sha256")
        };
        let text = format!("{err}");
        assert!(
            text.contains("node.yaml:8:7: kubernetes.components[0].sha256: no sha256 for arm64, the architecture this build is for (linux/arm64); this component has one for amd64"),
            "{text}"
        );
        assert!(text.contains("add `arm64: <64 hex digits>`"), "{text}");
        // The same spec builds for amd64.
        assert!(
            parse(
                &env(&[]),
                "node.yaml",
                only_amd64.as_bytes(),
                &amd64,
                &amd64
            )
            .is_ok()
        );
        // An architecture nodestamp does not know, and a bad digest, at their own lines.
        let bad = PER_ARCH
            .replace("arm64: b", "aarch64: b")
            .replace("amd64: aaaa", "amd64: zzzz");
        let Err(err) = parse(&env(&[]), "node.yaml", bad.as_bytes(), &amd64, &amd64) else {
            panic!("accepted")
        };
        let text = format!("{err}");
        assert!(text.contains("node.yaml:10:9: kubernetes.components[0].sha256.aarch64: unknown architecture `aarch64`"), "{text}");
        assert!(
            text.contains("node.yaml:9:16: kubernetes.components[0].sha256.amd64:"),
            "{text}"
        );
    }

    #[test]
    fn an_unsupported_platform_is_an_error_at_os_from() {
        let spec = "version: 1\nname: n\nos:\n  from: debian:bookworm\n";
        let amd64 = platform("linux", "amd64", "");
        for bad in [
            platform("linux", "riscv64", ""),
            platform("linux", "arm", "v7"),
            platform("windows", "amd64", ""),
        ] {
            let Err(err) = parse(&env(&[]), "node.yaml", spec.as_bytes(), &bad, &amd64) else {
                panic!("{bad:?} accepted")
            };
            let text = format!("{err}");
            assert!(text.contains("node.yaml:4:"), "{text}");
            assert!(text.contains("os.from"), "{text}");
            assert!(
                text.contains(&format!("platform {}", platform_key(&bad))),
                "{text}"
            );
            assert!(text.contains("linux/amd64 and linux/arm64"), "{text}");
        }
        for good in [
            platform("linux", "amd64", ""),
            platform("linux", "amd64", "v2"),
            platform("linux", "arm64", ""),
            platform("linux", "arm64", "v8"),
        ] {
            assert!(parse(&env(&[]), "node.yaml", spec.as_bytes(), &good, &amd64).is_ok());
        }
    }
}
