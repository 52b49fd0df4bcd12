//! nodestamp frontend library.
