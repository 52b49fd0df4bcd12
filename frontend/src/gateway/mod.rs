//! The BuildKit gateway side of the frontend: what BuildKit tells us through the environment
//! ([`FrontendEnv`]), the gRPC conversation with its `LLBBridge` service over our stdin/stdout
//! ([`Bridge`]), and the errors we hand back so that `docker buildx build` shows the spec lines
//! around a failure ([`FrontendError`]).
//!
//! A frontend run is always the same conversation:
//!
//! ```text
//! Ping → (Inputs) → Solve(local://dockerfile) → ReadFile(node.yaml) → … → Solve(result, cache imports) → Return
//! ```

mod bridge;
mod cache;
mod caps;
mod env;
#[cfg(test)]
pub(crate) use env::option_vars;
mod error;
mod failure;
mod transport;

pub use bridge::{
    Bridge, PlatformResult, Pong, ResultAttestation, SpecFile, platform_key, refs_platforms,
    single_op_definition,
};
pub use cache::{CacheImport, NoCacheOption, OPT_CACHE_FROM, OPT_CACHE_IMPORTS, OPT_NO_CACHE};
pub use caps::{Caps, MissingCapError};
pub use env::{
    DEFAULT_CONTEXT_LOCAL_NAME, DEFAULT_DOCKERFILE_LOCAL_NAME, DEFAULT_SPEC_FILENAME, FrontendEnv,
    ImageResolveMode, SbomRequest, parse_platform,
};
pub use error::{FrontendError, GatewayError, SOURCE_TYPE_URL, SpecLocation};
pub use failure::{locate as locate_failure, solve_failure};
