//! `nodestamp-frontend`: the BuildKit gateway frontend. BuildKit runs it (via `# syntax=`) with
//! the gRPC connection on stdin/stdout; all logic lives in the library. Diagnostics for
//! operators go to stderr, which BuildKit forwards to the engine's log; everything the user
//! should see travels back through `Return`.

use std::collections::BTreeMap;
use std::process::ExitCode;

use llb_graph::pb;
use nodestamp_frontend::gateway::{
    Bridge, Caps, FrontendEnv, FrontendError, GatewayError, ImageResolveMode, SourceRange,
    single_op_definition,
};

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
    let outcome = match build_flow(&bridge, &env).await {
        Ok(result) => match bridge
            .return_result(result.definition, result.metadata)
            .await
        {
            // Solving the result failed (e.g. an invalid definition): report it as the error.
            Err(e @ GatewayError::Rpc { .. }) => Err(FrontendError::from(e)),
            other => other.map_err(FrontendError::from),
        },
        Err(e) => Err(e),
    };
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

/// Ping, check caps, read the spec, build.
async fn build_flow(bridge: &Bridge, env: &FrontendEnv) -> Result<BuildResult, FrontendError> {
    let pong = bridge.ping().await?;
    pong.caps.require_caps(REQUIRED_LLB_CAPS)?;
    let platform = pong.target_platform(env)?;
    let (filename, spec) = bridge.read_spec(env, &pong.caps).await?;
    temporary_build(bridge, env, &pong.caps, &platform, &filename, &spec).await
}

/// What a build hands back: the graph and the exporter metadata (`containerimage.config`).
struct BuildResult {
    definition: pb::Definition,
    metadata: BTreeMap<String, Vec<u8>>,
}

/// TEMPORARY stand-in for `nodestamp_frontend::build` (frontend/src/build.rs), only here to
/// prove the gateway conversation end to end: the result is `debian:bookworm` with its own
/// config (resolved through the gateway) plus a label. A spec line containing `fail-here`
/// makes it fail with that line as the error location (the engine test of the error path).
async fn temporary_build(
    bridge: &Bridge,
    env: &FrontendEnv,
    _caps: &Caps,
    platform: &pb::Platform,
    filename: &str,
    spec: &[u8],
) -> Result<BuildResult, FrontendError> {
    let text = String::from_utf8_lossy(spec);
    if let Some((idx, line)) = text
        .lines()
        .enumerate()
        .find(|(_, l)| l.contains("fail-here"))
    {
        let col = line.find("fail-here").unwrap_or(0) as u32 + 1;
        let line_no = idx as u32 + 1;
        return Err(FrontendError::at(
            format!("{filename}:{line_no}:{col}: the spec asks to fail here (gateway test hook)"),
            filename,
            spec,
            vec![SourceRange {
                start_line: line_no,
                start_col: col,
                end_line: line_no,
                end_col: col + "fail-here".len() as u32 - 1,
            }],
        ));
    }

    let image = "docker.io/library/debian:bookworm";
    let mode = env.image_resolve_mode()?;
    let (_digest, config) = bridge
        .resolve_image_config(image, Some(platform), mode)
        .await?;
    let mut config: serde_json::Value = serde_json::from_slice(&config)
        .map_err(|e| FrontendError::new(format!("{image}: invalid image config: {e}")))?;
    config["config"]["Labels"]["dev.nodestamp.gateway"] = "temporary".into();
    let config = serde_json::to_vec(&config).expect("a JSON value always serializes");

    let mut attrs = BTreeMap::new();
    if mode == ImageResolveMode::Local {
        attrs.insert("image.resolvemode".to_owned(), mode.as_str().to_owned());
    }
    let op = pb::Op {
        op: Some(pb::op::Op::Source(pb::SourceOp {
            identifier: format!("docker-image://{image}"),
            attrs,
        })),
        platform: Some(platform.clone()),
        ..pb::Op::default()
    };
    let md = pb::OpMetadata {
        description: BTreeMap::from([(
            "llb.customname".to_owned(),
            format!("[temporary] {image}"),
        )]),
        caps: BTreeMap::from([("source.image".to_owned(), true)]),
        ..pb::OpMetadata::default()
    };
    Ok(BuildResult {
        definition: single_op_definition(op, md),
        metadata: BTreeMap::from([("containerimage.config".to_owned(), config)]),
    })
}
