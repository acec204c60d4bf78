//! The `shufflenet` command-line program.

fn main() {}
