//! Errors of the ONNX importer. Every message names what is wrong precisely enough
//! to act on it: node errors carry the node's name and op type.

use crate::graph::GraphError;
use std::path::PathBuf;

/// Why an ONNX file cannot be imported.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    /// The file could not be read.
    #[error("cannot read '{}': {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The bytes are not a well-formed protobuf `ModelProto` (truncated, corrupted,
    /// or not an ONNX file).
    #[error("not a valid ONNX file: protobuf decoding failed ({0})")]
    Decode(String),
    /// The file is larger than protobuf allows.
    #[error("file of {0} bytes is too large (ONNX protobuf files are limited to 2 GiB)")]
    TooLarge(u64),
    /// The default-domain opset is outside the supported range, or missing.
    #[error("opset {version} of domain '{domain}' is not supported (supported: ai.onnx {min}..={max})", min = super::MIN_OPSET, max = super::MAX_OPSET)]
    Opset {
        /// The domain ("ai.onnx" for the default set).
        domain: String,
        /// The version found (0 when the file declares none).
        version: i64,
    },
    /// A graph-level problem: inputs, outputs, duplicate names, missing graph.
    #[error("model: {0}")]
    Model(String),
    /// A constant tensor (initializer or attribute) is malformed or of an
    /// unsupported type.
    #[error("tensor '{tensor}': {what}")]
    Tensor {
        /// Tensor name.
        tensor: String,
        /// What is wrong.
        what: String,
    },
    /// A tensor keeps its data in an external file.
    #[error("tensor '{tensor}': external data is not supported (save the model with its weights inside the .onnx file)")]
    ExternalData {
        /// Tensor name.
        tensor: String,
    },
    /// A node reads a value that nothing defines (a missing initializer, a typo).
    #[error("node '{node}' ({op}): input '{input}' is not produced by any node, initializer or graph input")]
    Undefined {
        /// Node name.
        node: String,
        /// Its op type.
        op: String,
        /// The undefined input.
        input: String,
    },
    /// The nodes form a cycle, so no execution order exists.
    #[error("graph has a cycle through node(s) {}", nodes.iter().map(|n| format!("'{n}'")).collect::<Vec<_>>().join(", "))]
    Cycle {
        /// Names of (some of) the nodes on or behind the cycle.
        nodes: Vec<String>,
    },
    /// The operator is not one the importer knows.
    #[error("node '{node}' ({op}): operator '{op}' of domain '{domain}' is not supported")]
    UnsupportedOp {
        /// Node name.
        node: String,
        /// Its op type.
        op: String,
        /// Its domain ("ai.onnx" for the default set).
        domain: String,
    },
    /// A supported operator with an unsupported attribute, input or shape, or with
    /// inconsistent inputs.
    #[error("node '{node}' ({op}): {what}")]
    Node {
        /// Node name.
        node: String,
        /// Its op type.
        op: String,
        /// What is unsupported or inconsistent.
        what: String,
    },
    /// A `shufflenet.*` metadata entry is malformed.
    #[error("metadata '{key}': {what}")]
    Metadata {
        /// Metadata key.
        key: String,
        /// What is wrong.
        what: String,
    },
    /// The imported graph failed the engine's validation.
    #[error("imported graph is invalid: {0}")]
    Graph(#[from] GraphError),
}
