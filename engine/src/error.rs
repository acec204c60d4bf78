//! The engine's top-level error.

use crate::graph::GraphError;

/// Everything that can go wrong in the engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The graph is invalid or cannot run at the requested size.
    #[error(transparent)]
    Graph(#[from] GraphError),
    /// A kernel refused its arguments (an engine bug, reported rather than hidden).
    #[error("kernel: {0}")]
    Kernel(#[from] kernels::KernelError),
    /// An ONNX file could not be imported.
    #[error(transparent)]
    Onnx(#[from] crate::onnx::OnnxError),
    /// An argument of an API call is out of range.
    #[error("invalid argument: {0}")]
    Argument(String),
}
