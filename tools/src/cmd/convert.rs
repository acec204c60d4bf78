//! `shufflenet convert`: ONNX to the engine's model file.

use super::parse;
use crate::{CliError, CliResult};
use shufflenet::{model_file, onnx, plan};
use std::path::Path;

/// Runs the command.
pub fn run(argv: &[String]) -> CliResult {
    let a = parse(argv, &[], &["o", "output"])?;
    let [input] = a.positional.as_slice() else {
        return Err(CliError::Usage("convert takes one .onnx file".into()));
    };
    let out = a
        .value("o")
        .or(a.value("output"))
        .ok_or_else(|| CliError::Usage("-o FILE is required".into()))?;
    let graph = onnx::import_file(Path::new(input))?;
    let lowered = plan::lower(&graph)?;
    model_file::write(&lowered, Path::new(out))?;
    let spec = &lowered.program.input;
    let size = spec
        .default_size
        .map_or("any size".to_string(), |(h, w)| format!("{h}x{w}"));
    out!(
        "{input}: {} fused ops, input {} {} channels ({size}), output '{}' -> {out}",
        lowered.program.steps.len(),
        spec.layout,
        spec.channels,
        lowered.program.output_name
    );
    Ok(())
}
