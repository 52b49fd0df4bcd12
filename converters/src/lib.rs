//! nodestamp converters library.
