//! Placeholder: the bench binary is being written.
fn main() {}
