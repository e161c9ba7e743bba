//! The keelson command line.
fn main() {}
