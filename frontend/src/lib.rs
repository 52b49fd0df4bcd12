//! nodestamp frontend library.
pub mod gateway;
pub mod diag;
pub mod spec;
