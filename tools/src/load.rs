//! Loading the model a command works on.

use crate::CliError;
use shufflenet::model::Model;
use shufflenet::{family, onnx, plan};
use std::path::Path;
use std::sync::Arc;

/// The built-in default: ShuffleNet 1x (g = 3) with the default synthetic weights.
pub fn default_model() -> Result<Arc<Model>, CliError> {
    let graph = family::build(3, 1.0, family::DEFAULT_SEED)?;
    Ok(Arc::new(Model::from_lowered(&plan::lower(&graph)?)?))
}

/// A model from an engine file, from an `.onnx` file (converted in memory), or the
/// built-in default when `path` is `None`.
pub fn model(path: Option<&str>) -> Result<Arc<Model>, CliError> {
    let Some(path) = path else {
        return default_model();
    };
    let p = Path::new(path);
    if p.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("onnx"))
    {
        let graph = onnx::import_file(p)?;
        return Ok(Arc::new(Model::from_lowered(&plan::lower(&graph)?)?));
    }
    Ok(Arc::new(Model::open(p)?))
}

/// The resolution to use: the one asked for, else the model's declared default,
/// else 224x224.
pub fn resolution(asked: Option<&str>, model: &Model) -> Result<(usize, usize), CliError> {
    match asked {
        Some(s) => crate::args::resolution(s).map_err(CliError::Usage),
        None => Ok(model.program().input.default_size.unwrap_or((224, 224))),
    }
}
