//! nodestamp frontend library.
pub mod build;
pub mod compile;
pub mod contexts;
pub mod diag;
pub mod gateway;
pub mod image;
pub mod packages;
pub mod sbom;
pub mod size;
pub mod spec;
pub mod subrequests;
pub mod time;
