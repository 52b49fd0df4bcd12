//! A parsed build request: the spec, the target and the settings taken from build args, as
//! `build::parse` makes it from the frontend options and everything after it reads it.

use std::collections::BTreeMap;

use llb_graph::normalize_image_ref;
use nodestamp_compile::Target;
use nodestamp_compile::inline::SpecSource;
use nodestamp_spec::{Diagnostic, Spec};

use crate::gateway::FrontendError;

/// A parsed request: the spec, the target and the settings taken from build args.
pub struct Request {
    pub spec: Spec,
    pub target: Target,
    pub warnings: Vec<Diagnostic>,
    pub filename: String,
    pub source: Vec<u8>,
    pub build_args: BTreeMap<String, String>,
    /// The platform build args the spec was read with ([`crate::build::platform_args`]).
    pub platform_args: BTreeMap<String, String>,
    /// Where the engine holds the spec file (see [`crate::build::spec_source`]); `None` keeps every
    /// content in the definition.
    pub spec_source: Option<SpecSource>,
}

impl Request {
    /// The base image reference to resolve, if the target includes the OS.
    pub fn base_image(&self) -> Option<String> {
        (self.target != Target::Kubernetes).then(|| normalize_image_ref(&self.spec.os.from.value))
    }

    /// `SOURCE_DATE_EPOCH` from the build args, if set.
    pub fn source_date_epoch(&self) -> Result<Option<i64>, FrontendError> {
        match self.build_args.get("SOURCE_DATE_EPOCH") {
            None => Ok(None),
            Some(v) if v.is_empty() => Ok(None),
            Some(v) => v.parse::<i64>().map(Some).map_err(|_| {
                FrontendError::new(format!(
                    "build arg SOURCE_DATE_EPOCH={v:?} is not a number of seconds since 1970"
                ))
            }),
        }
    }
}
