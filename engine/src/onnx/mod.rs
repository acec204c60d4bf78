//! ONNX import: an `.onnx` file (as PyTorch, the ShuffleNet authors' code or
//! tf2onnx export it) becomes an engine [`Graph`].
//!
//! The importer works node by node (no template matching), so any network built
//! from the operators below, in any order the engine can run, imports. Nodes may
//! appear in any order in the file (they are sorted; a cycle is an error), values
//! may have several readers, and initializers nobody reads are ignored. Only the
//! nodes the single graph output depends on are imported.
//!
//! # Supported operators (default domain, opsets 9 to 21)
//!
//! - **Conv**: 2-D, any `group` (the weight's shape must agree with it), `strides`,
//!   `pads` (asymmetric too), `auto_pad` NOTSET/VALID/SAME_UPPER/SAME_LOWER,
//!   `kernel_shape`, with or without bias; padding must be smaller than the kernel.
//!   Not supported: dilations other than 1, 1-D/3-D convolution.
//! - **BatchNormalization** (inference; `training_mode` 0), on maps and vectors.
//! - **Relu**; **Clip** with min 0 and no max (or max = +inf / float max) is ReLU,
//!   Clip with no bounds is an identity. Not supported: a finite max (ReLU6) or
//!   another min.
//! - **Add** of two tensors of the same shape; **Add/Sub/Mul/Div** of a tensor and a
//!   per-channel or scalar constant (a bias or scale; a bias after an Fc or Conv
//!   is folded into it). Not supported: broadcasting between computed tensors,
//!   Mul/Sub/Div of two computed tensors.
//! - **Concat** along channels (NCHW axis 1, vector axis 1, NHWC axis 3).
//! - **Channel shuffle** as Reshape-Transpose-Reshape, in both directions and
//!   anywhere in the graph: reshape to `[N, a, b, H, W]` (or `[N, a, b, H*W]`,
//!   or `[N, H, W, a, b]` on an NHWC view), transpose swapping `a` and `b`
//!   (`[0, 2, 1, 3, 4]`, `[0, 2, 1, 3]`, `[0, 1, 2, 4, 3]`), reshape back:
//!   `ChannelShuffle { groups: a }`. So `[N, g, C/g, H, W]` (paper, torchvision)
//!   is a shuffle with `g` groups and `[N, C/g, g, H, W]` (the authors' released
//!   code) one with `C/g` groups, its inverse. Reshape dims may use `0` and `-1`
//!   and the concrete H, W of the declared input size.
//! - **MaxPool**, **AveragePool**: 2-D windows of any size, `strides`, explicit and
//!   asymmetric `pads`, `auto_pad` SAME_UPPER/SAME_LOWER/VALID, `count_include_pad`
//!   0 and 1, `ceil_mode` (as onnxruntime and PyTorch: a last window that would
//!   start in the end padding is dropped; onnx's own shape inference keeps it). An
//!   AveragePool whose window covers the whole map with
//!   no padding (`AvgPool2d(7)` at 224x224) is imported as a global average pool.
//!   Not supported: dilations other than 1, MaxPool's Indices output.
//! - **Pad** (mode constant, value 0, pads on H and W only, `axes` in opset 18+)
//!   folded into the Conv or pool that reads it: always into a Conv; into an
//!   AveragePool with `count_include_pad=1`, or with `count_include_pad=0` when the
//!   pool has no padding of its own (then the Pad's zeros count, which is
//!   `count_include_pad=1`); into a MaxPool only when its input is known to be
//!   non-negative (produced by Relu, Clip(0), or pools/concats of such values).
//!   Any other reader of a Pad is an error, as are reflect/edge modes, non-zero
//!   values and negative pads.
//! - **GlobalAveragePool**; **ReduceMean** over H and W (axes `[2, 3]` on NCHW or
//!   `[1, 2]` on NHWC; attribute before opset 18, input from 18), `keepdims` 0/1.
//! - **Flatten**, **Reshape**, **Squeeze**, **Unsqueeze** to and from `[1, C]` when
//!   H = W = 1 (after global pooling).
//! - **Gemm** (`transA` 0, `transB` 0 or 1, `alpha`, `beta`, bias broadcast to
//!   `[1, N]`) and **MatMul** (`[1, K] x [K, N]`, with a following Add as bias), on a
//!   `[1, K]` vector with constant weights.
//! - **Softmax** over the channels of a `[1, C]` or 1x1 tensor (axis 1 or -1 as
//!   the opset defines).
//! - **Identity**, **Dropout** (inference; its mask output unused), **Cast** to
//!   FLOAT of a tensor (identity).
//! - Shape arithmetic on constants: **Constant**, **Shape**, **Gather** (1-D),
//!   **Slice** (1-D), **Cast**, **Concat** (1-D), **Add/Sub/Mul/Div**, **Reshape**,
//!   **Unsqueeze**,
//!   **Squeeze**, **Flatten**.
//! - **Transpose** `[0, 3, 1, 2]` of the graph input (a tf2onnx NHWC model): the
//!   engine's input is then NHWC ([`Layout::Nhwc`](crate::graph::Layout)).
//!   Transposes between NCHW and NHWC views elsewhere are accepted as long as
//!   the ops between them are views (reshapes, shuffles, ReLU) or ReduceMean /
//!   Concat / per-channel arithmetic on the channel axis.
//!
//! Any other operator, domain, attribute value or shape is an error naming the
//! node, its op type and what is unsupported. Initializers may hold FLOAT, DOUBLE,
//! INT64 or INT32 data in `raw_data` or the typed fields; external data is refused.
//!
//! # Sizes
//!
//! A graph may have at most [`MAX_NODES`] nodes, and the imported engine graph at
//! most [`MAX_GRAPH_SIZE`](crate::graph::MAX_GRAPH_SIZE) nodes and node inputs.
//!
//! The graph input must be a FLOAT tensor of rank 4 with a static channel count;
//! batch 1 or symbolic. Its declared height and width (if static) become
//! [`InputSpec::default_size`](crate::graph::InputSpec). All shapes are traced at
//! that size (224 for a symbolic height or width): `auto_pad` SAME padding is
//! **resolved at the declared input size** and kept fixed at other sizes, and
//! reshape dims are checked against it.
//!
//! # Metadata
//!
//! Optional preprocessing ([`Preprocess`](crate::graph::Preprocess),
//! `x = (raw - mean[c]) * scale[c]` for raw pixels in [0, 255]) is read from the
//! model's `metadata_props`: [`META_MEAN`] (`shufflenet.mean`) and [`META_SCALE`]
//! (`shufflenet.scale`), each a comma-separated list of one float per input
//! channel, e.g. `123.675,116.28,103.53` and `0.017125,0.017507,0.017429`. Either
//! may be given alone (mean defaults to 0, scale to 1).

mod consts;
mod error;
mod import;
mod layout;
mod node;
mod ops;
pub mod proto;
mod tensor;
mod topo;
mod window;

pub use error::OnnxError;

use crate::graph::Graph;
use prost::Message;
use std::path::Path;

/// Lowest supported opset of the default domain.
pub const MIN_OPSET: i64 = 9;
/// Highest supported opset of the default domain.
pub const MAX_OPSET: i64 = 21;
/// Metadata key of the per-channel mean (comma-separated floats).
pub const META_MEAN: &str = "shufflenet.mean";
/// Metadata key of the per-channel scale (comma-separated floats).
pub const META_SCALE: &str = "shufflenet.scale";

/// Largest file accepted (protobuf's own limit).
const MAX_BYTES: u64 = 2 << 30;

/// Most nodes a graph may have (ShuffleNet exports have 80 to 240, shape arithmetic
/// included). Checked before any node is looked at, so a hostile file cannot make the
/// importer's work grow without bound; the imported graph must also be within
/// [`crate::graph::MAX_GRAPH_SIZE`].
pub const MAX_NODES: usize = 1 << 14;

/// Imports an ONNX model from its bytes; `name` becomes part of the graph's
/// description (typically the file name).
pub fn import(bytes: &[u8], name: &str) -> Result<Graph, OnnxError> {
    if bytes.len() as u64 >= MAX_BYTES {
        return Err(OnnxError::TooLarge(bytes.len() as u64));
    }
    let model = proto::ModelProto::decode(bytes).map_err(|e| OnnxError::Decode(e.to_string()))?;
    import::import_model(model, name)
}

/// Reads and imports an ONNX file.
pub fn import_file(path: &Path) -> Result<Graph, OnnxError> {
    let io = |source| OnnxError::Io {
        path: path.to_path_buf(),
        source,
    };
    let len = std::fs::metadata(path).map_err(io)?.len();
    if len >= MAX_BYTES {
        return Err(OnnxError::TooLarge(len));
    }
    let bytes = std::fs::read(path).map_err(io)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    import(&bytes, &name)
}
