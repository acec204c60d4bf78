//! `shufflenet synth`: writes a family member with synthetic weights.

use super::parse;
use crate::{CliError, CliResult};
use shufflenet::{complexity, family, model_file, plan};
use std::path::Path;

/// Runs the command.
pub fn run(argv: &[String]) -> CliResult {
    let a = parse(argv, &[], &["groups", "scale", "seed", "o", "output"])?;
    if !a.positional.is_empty() {
        return Err(CliError::Usage(
            "synth takes no positional arguments".into(),
        ));
    }
    let groups: usize = a.parsed("groups", 3).map_err(CliError::Usage)?;
    let scale: f32 = a.parsed("scale", 1.0).map_err(CliError::Usage)?;
    let seed: u64 = a
        .parsed("seed", family::DEFAULT_SEED)
        .map_err(CliError::Usage)?;
    let out = a
        .value("o")
        .or(a.value("output"))
        .ok_or_else(|| CliError::Usage("-o FILE is required".into()))?;
    let graph = family::build(groups, scale, seed)?;
    let cost = complexity::analyze(&graph, 224, 224)?;
    let lowered = plan::lower(&graph)?;
    model_file::write(&lowered, Path::new(out))?;
    out!(
        "{}: {:.1} MFLOPs at 224x224, {:.2} M parameters -> {out}",
        graph.description,
        cost.mflops(),
        cost.params as f64 / 1e6
    );
    Ok(())
}
