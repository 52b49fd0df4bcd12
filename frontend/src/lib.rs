//! nodestamp frontend library.
pub mod diag;
pub mod spec;
pub mod compile;
pub mod image;
pub mod gateway;
pub mod build;
