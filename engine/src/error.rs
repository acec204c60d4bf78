//! The engine's top-level error.

use crate::exec::SessionError;
use crate::graph::GraphError;
use crate::plan::PlanError;

/// Everything that can go wrong in the engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The graph is invalid or cannot run at the requested size.
    #[error(transparent)]
    Graph(#[from] GraphError),
    /// A kernel refused its arguments (an engine bug, reported rather than hidden).
    #[error("kernel: {0}")]
    Kernel(#[from] kernels::KernelError),
    /// The graph could not be lowered.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// A session cannot be created or run with these arguments.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// A model file cannot be read, written or trusted.
    #[error(transparent)]
    File(#[from] crate::model_file::FileError),
    /// An ONNX file could not be imported.
    #[error(transparent)]
    Onnx(#[from] crate::onnx::OnnxError),
    /// An argument of an API call is out of range.
    #[error("invalid argument: {0}")]
    Argument(String),
}
