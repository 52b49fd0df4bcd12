//! nodestamp frontend library.
pub mod gateway;
