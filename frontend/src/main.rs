//! `nodestamp-frontend`: the BuildKit gateway frontend. BuildKit runs it (via `# syntax=`) with
//! the gRPC connection on stdin/stdout; all logic lives in the library. Diagnostics for
//! operators go to stderr, which BuildKit forwards to the engine's log; everything the user
//! should see travels back through `Return` (results, errors, `--call` answers) and `Warn`
//! (spec warnings).

use std::process::ExitCode;

use nodestamp_frontend::build::{self, BuildResult};
use nodestamp_frontend::contexts;
use nodestamp_frontend::gateway::{Bridge, FrontendEnv, FrontendError, GatewayError};
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
        Ok(result) => match bridge
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
    let (args, target) = (env.build_args(), env.target().unwrap_or(""));
    let read_spec = || async {
        let pong = bridge.ping().await?;
        bridge
            .read_spec(env, &pong.caps)
            .await
            .map_err(FrontendError::from)
    };
    match request {
        Request::Describe => Ok(subrequests::describe()),
        Request::Targets => {
            let s = read_spec().await?;
            subrequests::targets(&s.filename, &s.data, &args)
        }
        Request::Outline => {
            let s = read_spec().await?;
            subrequests::outline(&s.filename, &s.data, &args, target)
        }
        Request::Lint => {
            let s = read_spec().await?;
            Ok(subrequests::lint(&s.filename, &s.data, &args, target))
        }
    }
}

/// Ping, check caps, read the spec, resolve the base image, compile.
async fn build_flow(bridge: &Bridge, env: &FrontendEnv) -> Result<BuildResult, FrontendError> {
    let pong = bridge.ping().await?;
    pong.caps.require_caps(REQUIRED_LLB_CAPS)?;
    let platform = pong.target_platform(env)?;
    let spec_file = bridge.read_spec(env, &pong.caps).await?;
    let (filename, spec) = (&spec_file.filename, &spec_file.data);
    let mut request = build::parse(env, filename, spec)?;
    request.spec_source = build::spec_source(&spec_file.definition, &request);
    subrequests::show_warnings(bridge, &pong.caps, &spec_file, &request.warnings).await;
    let base = contexts::resolve_base(bridge, env, &request, &platform).await?;
    build::finish(
        &request,
        env,
        &pong.caps,
        &platform,
        base.as_ref().map(|(d, c)| (d.as_str(), c.as_slice())),
    )
}
