//! Errors of the gateway conversation, and the user-facing error we return to BuildKit.

use crate::proto::google::rpc;
use base64::Engine as _;
use llb_graph::SourceRange;
use serde::Serialize;

use super::MissingCapError;

/// The type URL BuildKit's `typeurl` registry gives `errdefs.Source`
/// (`typeurl.Register(&Source{}, "github.com/moby/buildkit", "errdefs.Source+json")` in
/// `solver/errdefs`). Types registered that way travel as JSON, not protobuf, inside the Any.
pub const SOURCE_TYPE_URL: &str = "github.com/moby/buildkit/errdefs.Source+json";

/// `google.rpc.Code.UNKNOWN`: what BuildKit uses for plain build errors; clients then print the
/// bare message without a code prefix.
const CODE_UNKNOWN: i32 = 2;

/// A failure talking to the engine (transport, RPC, or an answer we cannot use).
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("cannot start the gRPC connection to BuildKit over stdin/stdout: {0}")]
    Connect(#[source] tonic::transport::Error),
    #[error("cannot use {what} for the BuildKit connection: {source}")]
    Stdio {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// An RPC failed; `message` is BuildKit's message (e.g. `open node.yaml: no such file …`).
    #[error("{context}: {message}")]
    Rpc {
        context: String,
        message: String,
        #[source]
        status: Box<tonic::Status>,
    },
    #[error("BuildKit answered {call} without a result reference")]
    NoRef { call: &'static str },
    #[error("BuildKit reported no worker platform and no --platform was given")]
    NoPlatform,
    #[error("invalid {key} option {value:?}: expected {expected}")]
    InvalidOption {
        key: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("invalid {key} option {value:?}: {detail}; expected {expected}")]
    InvalidJsonOption {
        key: &'static str,
        value: String,
        detail: String,
        expected: &'static str,
    },
    #[error(transparent)]
    MissingCap(#[from] MissingCapError),
    /// Building the result failed in the engine; the error names the spec lines when known.
    #[error("{0}")]
    Build(Box<FrontendError>),
}

impl GatewayError {
    pub(crate) fn rpc(context: impl Into<String>, status: tonic::Status) -> Self {
        GatewayError::Rpc {
            context: context.into(),
            message: status.message().to_owned(),
            status: Box::new(status),
        }
    }
}

/// The spec file an error points into: BuildKit prints the lines around the ranges.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecLocation {
    pub filename: String,
    pub data: Vec<u8>,
    pub ranges: Vec<SourceRange>,
}

/// The error a build returns to the user: a message and, when known, where in the spec.
/// [`Bridge::return_error`](super::Bridge::return_error) sends it as a `google.rpc.Status` with
/// an `errdefs.Source` detail, so `docker buildx build` prints the spec lines like it does for
/// Dockerfiles.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct FrontendError {
    pub message: String,
    pub location: Option<SpecLocation>,
    /// Details of the engine's own error, passed on unchanged (`type_url`, `value`): the
    /// failing vertex, the exec's exit code, …
    pub details: Vec<(String, Vec<u8>)>,
}

impl FrontendError {
    /// An error without a spec location.
    pub fn new(message: impl Into<String>) -> Self {
        FrontendError {
            message: message.into(),
            location: None,
            details: Vec::new(),
        }
    }

    /// An error pointing at `ranges` of the spec file `filename` whose bytes are `data`.
    pub fn at(
        message: impl Into<String>,
        filename: impl Into<String>,
        data: impl Into<Vec<u8>>,
        ranges: Vec<SourceRange>,
    ) -> Self {
        FrontendError {
            message: message.into(),
            location: Some(SpecLocation {
                filename: filename.into(),
                data: data.into(),
                ranges,
            }),
            details: Vec::new(),
        }
    }

    /// The `google.rpc.Status` handed to BuildKit's `Return` call.
    pub fn to_status(&self) -> rpc::Status {
        let details = self
            .details
            .iter()
            .map(|(type_url, value)| prost_types::Any {
                type_url: type_url.clone(),
                value: value.clone(),
            })
            .chain(self.location.as_ref().map(|loc| prost_types::Any {
                type_url: SOURCE_TYPE_URL.to_owned(),
                value: source_detail_json(loc),
            }))
            .collect();
        rpc::Status {
            code: CODE_UNKNOWN,
            message: self.message.clone(),
            details,
        }
    }
}

impl From<GatewayError> for FrontendError {
    fn from(err: GatewayError) -> Self {
        match err {
            GatewayError::Build(e) => *e,
            other => FrontendError::new(other.to_string()),
        }
    }
}

impl From<MissingCapError> for FrontendError {
    fn from(err: MissingCapError) -> Self {
        FrontendError::new(err.to_string())
    }
}

// The JSON shape of Go's `errdefs.Source` (encoding/json of the gogo structs: lower-case
// field names, `[]byte` as standard base64, positions with 1-based line, 0-based character).
#[derive(Serialize)]
struct SourceJson {
    info: SourceInfoJson,
    ranges: Vec<RangeJson>,
}

#[derive(Serialize)]
struct SourceInfoJson {
    filename: String,
    data: String,
}

#[derive(Serialize)]
struct RangeJson {
    start: PositionJson,
    end: PositionJson,
}

#[derive(Serialize)]
struct PositionJson {
    line: i32,
    character: i32,
}

fn position(line: u32, character: u32) -> PositionJson {
    let clamp = |v: u32| i32::try_from(v).unwrap_or(i32::MAX);
    PositionJson {
        line: clamp(line),
        character: clamp(character),
    }
}

fn source_detail_json(loc: &SpecLocation) -> Vec<u8> {
    let doc = SourceJson {
        info: SourceInfoJson {
            filename: loc.filename.clone(),
            data: base64::engine::general_purpose::STANDARD.encode(&loc.data),
        },
        ranges: loc
            .ranges
            .iter()
            .map(|r| RangeJson {
                start: position(r.start_line, r.start_char),
                end: position(r.end_line.max(r.start_line), r.end_char),
            })
            .collect(),
    };
    serde_json::to_vec(&doc).expect("plain structs always serialize")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_without_location_has_no_details() {
        let st = FrontendError::new("boom").to_status();
        assert_eq!(st.code, 2);
        assert_eq!(st.message, "boom");
        assert!(st.details.is_empty());
    }

    #[test]
    fn location_becomes_an_errdefs_source_json_detail() {
        let err = FrontendError::at(
            "bad mode",
            "node.yaml",
            "a: 1\nmode: rwx\n",
            vec![SourceRange {
                start_line: 2,
                start_char: 6,
                end_line: 2,
                end_char: 8,
            }],
        );
        let st = err.to_status();
        assert_eq!(st.details.len(), 1);
        assert_eq!(
            st.details[0].type_url,
            "github.com/moby/buildkit/errdefs.Source+json"
        );
        let v: serde_json::Value = serde_json::from_slice(&st.details[0].value).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "info": {"filename": "node.yaml", "data": "YTogMQptb2RlOiByd3gK"},
                "ranges": [{"start": {"line": 2, "character": 6}, "end": {"line": 2, "character": 8}}]
            })
        );
    }
}
