//! `nodestamp-frontend`: the BuildKit gateway frontend. BuildKit runs it (via `# syntax=`) with
//! the gRPC connection on stdin/stdout; all logic lives in the library. Diagnostics for
//! operators go to stderr, which BuildKit forwards to the engine's log; everything the user
//! should see travels back through `Return` (results, errors, `--call` answers) and `Warn`
//! (spec warnings).

use std::process::ExitCode;

use nodestamp_frontend::build::{self, BuildResult};
use nodestamp_frontend::contexts;
use nodestamp_frontend::gateway::{
    self, Bridge, FrontendEnv, FrontendError, GatewayError, PlatformResult,
};
use nodestamp_frontend::subrequests;

/// LLB capabilities every nodestamp build needs.
const REQUIRED_LLB_CAPS: &[&str] = &["mergeop"];

fn main() -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("nodestamp-frontend: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = rt.block_on(run());
    // Never wait for a pending stdin read: the conversation is over.
    rt.shutdown_background();
    code
}

async fn run() -> ExitCode {
    let env = FrontendEnv::from_env();
    let bridge = match Bridge::connect().await {
        Ok(b) => b,
        Err(e) => {
            eprintln!("nodestamp-frontend: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(id) = env.opt(subrequests::REQUEST_ID).filter(|id| !id.is_empty()) {
        let outcome = match answer(&bridge, &env, id).await {
            Ok(metadata) => bridge
                .return_metadata(metadata)
                .await
                .map_err(FrontendError::from),
            Err(e) => Err(e),
        };
        return finish(&bridge, outcome).await;
    }
    let outcome = match build_flow(&bridge, &env).await {
        Ok(Built::One(result)) => match bridge
            .return_result_with(
                result.definition,
                &result.cache_imports,
                result.metadata,
                result.attestations,
            )
            .await
        {
            // Building the result failed: report it as the error (with its spec lines).
            Err(e @ (GatewayError::Rpc { .. } | GatewayError::Build(_))) => {
                Err(FrontendError::from(e))
            }
            other => other.map_err(FrontendError::from),
        },
        Ok(Built::Platforms(results, cache_imports)) => {
            match bridge.return_platforms(results, &cache_imports).await {
                // Building the result failed: report it as the error (with its spec lines).
                Err(e @ (GatewayError::Rpc { .. } | GatewayError::Build(_))) => {
                    Err(FrontendError::from(e))
                }
                other => other.map_err(FrontendError::from),
            }
        }
        Err(e) => Err(e),
    };
    finish(&bridge, outcome).await
}

/// Reports a failed run to BuildKit.
async fn finish(bridge: &Bridge, outcome: Result<(), FrontendError>) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            if let Err(e) = bridge.return_error(&err).await {
                eprintln!("nodestamp-frontend: {e} (while reporting: {err})");
            }
            ExitCode::FAILURE
        }
    }
}

/// Answers a `--call` question (BuildKit subrequest) about the spec.
async fn answer(
    bridge: &Bridge,
    env: &FrontendEnv,
    id: &str,
) -> Result<subrequests::Metadata, FrontendError> {
    use subrequests::Request;
    let request = Request::parse(id)?;
    let target = env.target().unwrap_or("");
    // The spec as the first platform's build reads it: build args and platform build args.
    let read_spec = || async {
        let pong = bridge.ping().await?;
        let args = build::with_platform_args(
            &env.build_args(),
            &pong.target_platform(env)?,
            &pong.build_platform()?,
        );
        bridge
            .read_spec(env, &pong.caps)
            .await
            .map(|s| (s, args))
            .map_err(FrontendError::from)
    };
    match request {
        Request::Describe => Ok(subrequests::describe()),
        Request::Targets => {
            let (s, args) = read_spec().await?;
            subrequests::targets(&s.filename, &s.data, &args)
        }
        Request::Outline => {
            let (s, args) = read_spec().await?;
            subrequests::outline(&s.filename, &s.data, &args, target)
        }
        Request::Lint => {
            let (s, args) = read_spec().await?;
            Ok(subrequests::lint(&s.filename, &s.data, &args, target))
        }
    }
}

/// What a build hands back: one node (no `--platform`, or one), or one per platform.
enum Built {
    One(BuildResult),
    Platforms(Vec<PlatformResult>, Vec<gateway::CacheImport>),
}

/// Ping, check caps, read the spec, then per platform: read the spec with that platform's
/// build args, resolve the base image, compile. Every platform is checked before any is built.
async fn build_flow(bridge: &Bridge, env: &FrontendEnv) -> Result<Built, FrontendError> {
    let pong = bridge.ping().await?;
    pong.caps.require_caps(REQUIRED_LLB_CAPS)?;
    let platforms = pong.target_platforms(env)?;
    let build_platform = pong.build_platform()?;
    let spec_file = bridge.read_spec(env, &pong.caps).await?;
    let (filename, spec) = (&spec_file.filename, &spec_file.data);
    let mut requests = Vec::new();
    for platform in &platforms {
        let mut request = build::parse(env, filename, spec, platform, &build_platform)?;
        request.spec_source = build::spec_source(&spec_file.definition, &request);
        requests.push(request);
    }
    subrequests::show_warnings(bridge, &pong.caps, &spec_file, &requests[0].warnings).await;
    let mut results = Vec::new();
    for (platform, request) in platforms.iter().zip(&requests) {
        let base = contexts::resolve_base(bridge, env, request, platform).await?;
        results.push(build::finish(
            request,
            env,
            &pong.caps,
            platform,
            &build_platform,
            base.as_ref().map(|(d, c)| (d.as_str(), c.as_slice())),
        )?);
    }
    if env.platforms()?.len() <= 1 {
        return Ok(Built::One(results.remove(0)));
    }
    let cache_imports = results[0].cache_imports.clone();
    Ok(Built::Platforms(
        platforms
            .into_iter()
            .zip(results)
            .map(|(platform, r)| PlatformResult {
                platform,
                definition: r.definition,
                metadata: r.metadata,
                attestations: r.attestations,
            })
            .collect(),
        cache_imports,
    ))
}
