//! The engine graph: the plain, unfused network (NCHW, batch 1, f32) as the family
//! builder and the ONNX importer produce it. The reference executor runs it as is;
//! the planner lowers it into the fused op list.
//!
//! Channel counts are static; spatial sizes follow from the input size through
//! [`Graph::shapes`].

use crate::program::MAX_WINDOW;
use kernels::PoolKind;
use std::fmt;

/// Index of a value (tensor) in [`Graph::values`]. Value 0 is the graph input.
pub type ValueId = usize;

/// An invalid graph, or a graph that cannot run at the requested size.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GraphError {
    /// A node's parameters or inputs are inconsistent.
    #[error("node '{node}': {what}")]
    Node {
        /// Node name.
        node: String,
        /// What is wrong.
        what: String,
    },
    /// The graph as a whole is malformed.
    #[error("graph: {0}")]
    Structure(String),
    /// The input size is too small, too large or disagrees at some node.
    #[error("input size {h}x{w}: {what}")]
    Size {
        /// Requested input height.
        h: usize,
        /// Requested input width.
        w: usize,
        /// What goes wrong.
        what: String,
    },
}

/// Memory layout of the input the user passes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Planar channels: `[1, C, H, W]`.
    Nchw,
    /// Interleaved channels: `[1, H, W, C]` (TensorFlow exports).
    Nhwc,
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Layout::Nchw => "NCHW",
            Layout::Nhwc => "NHWC",
        })
    }
}

/// Optional preprocessing recorded with a model: `x = (raw - mean[c]) * scale[c]`,
/// where `raw` is a pixel value in [0, 255].
#[derive(Clone, Debug, PartialEq)]
pub struct Preprocess {
    /// Per-channel mean, in raw units.
    pub mean: Vec<f32>,
    /// Per-channel scale applied after subtracting the mean.
    pub scale: Vec<f32>,
}

/// What the model expects as input.
#[derive(Clone, Debug, PartialEq)]
pub struct InputSpec {
    /// Number of channels (3 for RGB).
    pub channels: usize,
    /// Layout of the user's buffer.
    pub layout: Layout,
    /// Height and width the model was exported for, if it declared one.
    pub default_size: Option<(usize, usize)>,
    /// Preprocessing to apply to images, if known.
    pub preprocess: Option<Preprocess>,
}

/// Padding on the four sides of a plane.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pads {
    /// Rows above.
    pub top: usize,
    /// Columns left.
    pub left: usize,
    /// Rows below.
    pub bottom: usize,
    /// Columns right.
    pub right: usize,
}

impl Pads {
    /// The same padding on every side.
    pub fn uniform(p: usize) -> Self {
        Pads {
            top: p,
            left: p,
            bottom: p,
            right: p,
        }
    }
}

/// A 2-D convolution.
#[derive(Clone, Debug, PartialEq)]
pub struct Conv {
    /// Input channels.
    pub cin: usize,
    /// Output channels.
    pub cout: usize,
    /// Groups.
    pub groups: usize,
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// Vertical and horizontal stride.
    pub stride: (usize, usize),
    /// Padding.
    pub pads: Pads,
    /// `[cout][cin / groups][kh][kw]`.
    pub weight: Vec<f32>,
    /// One per output channel, or none.
    pub bias: Option<Vec<f32>>,
}

/// Inference-mode batch normalisation: `y = (x - mean) / sqrt(var + eps) * gamma + beta`.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchNorm {
    /// Scale.
    pub gamma: Vec<f32>,
    /// Shift.
    pub beta: Vec<f32>,
    /// Running mean.
    pub mean: Vec<f32>,
    /// Running variance.
    pub var: Vec<f32>,
    /// Epsilon.
    pub eps: f32,
}

impl BatchNorm {
    /// The equivalent per-channel `(scale, shift)`: `y = x * scale + shift`.
    pub fn scale_shift(&self) -> (Vec<f32>, Vec<f32>) {
        let scale: Vec<f32> = self
            .gamma
            .iter()
            .zip(&self.var)
            .map(|(g, v)| g / (v + self.eps).sqrt())
            .collect();
        let shift = self
            .beta
            .iter()
            .zip(&self.mean)
            .zip(&scale)
            .map(|((b, m), s)| b - m * s)
            .collect();
        (scale, shift)
    }
}

/// A pooling window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolSpec {
    /// Max or average (with its padding convention).
    pub kind: PoolKind,
    /// Window height.
    pub kh: usize,
    /// Window width.
    pub kw: usize,
    /// Vertical and horizontal stride.
    pub stride: (usize, usize),
    /// Padding.
    pub pads: Pads,
    /// Output size rounds up (ONNX `ceil_mode`).
    pub ceil_mode: bool,
}

/// A fully connected layer on a `[C, 1, 1]` tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Fc {
    /// Input features (the channel count).
    pub inputs: usize,
    /// Output features.
    pub outputs: usize,
    /// `[outputs][inputs]`.
    pub weight: Vec<f32>,
    /// One per output.
    pub bias: Vec<f32>,
}

/// Operators of the graph.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// Convolution (dense, grouped or depthwise).
    Conv(Conv),
    /// Batch normalisation.
    BatchNorm(BatchNorm),
    /// `max(x, 0)`; a NaN stays NaN (see [`kernels::scalar::relu`]).
    Relu,
    /// Channel shuffle with `groups` groups of `n = C / groups`:
    /// `y[i] = x[(i % groups) * n + i / groups]` (the paper's reshape to
    /// `[groups, n]`, transpose, flatten). The inverse of a shuffle with `g` groups is
    /// a shuffle with `C / g` groups.
    ChannelShuffle {
        /// Number of groups.
        groups: usize,
    },
    /// Max or average pooling.
    Pool(PoolSpec),
    /// Element-wise sum of two inputs of the same shape.
    Add,
    /// Concatenation along channels, inputs in order.
    Concat,
    /// Mean over each plane: `[C, H, W] -> [C, 1, 1]`.
    GlobalAvgPool,
    /// Fully connected layer.
    Fc(Fc),
    /// Softmax over the channels of a `[C, 1, 1]` tensor.
    Softmax,
}

impl Op {
    /// Short name of the operator kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Conv(_) => "Conv",
            Op::BatchNorm(_) => "BatchNorm",
            Op::Relu => "Relu",
            Op::ChannelShuffle { .. } => "ChannelShuffle",
            Op::Pool(PoolSpec {
                kind: PoolKind::Max,
                ..
            }) => "MaxPool",
            Op::Pool(_) => "AvgPool",
            Op::Add => "Add",
            Op::Concat => "Concat",
            Op::GlobalAvgPool => "GlobalAvgPool",
            Op::Fc(_) => "Fc",
            Op::Softmax => "Softmax",
        }
    }
}

/// A tensor of the graph.
#[derive(Clone, Debug, PartialEq)]
pub struct Value {
    /// Name (from ONNX, or generated).
    pub name: String,
    /// Channel count.
    pub channels: usize,
}

/// One operator application.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// Name (from ONNX, or generated).
    pub name: String,
    /// The operator.
    pub op: Op,
    /// Input values.
    pub inputs: Vec<ValueId>,
    /// Output value.
    pub output: ValueId,
}

/// A whole network. Nodes are in an order in which every input is produced before
/// it is read.
#[derive(Clone, Debug, PartialEq)]
pub struct Graph {
    /// A human-readable description ("ShuffleNet v1 1.0x g=3", the ONNX file name...).
    pub description: String,
    /// What the input is.
    pub input: InputSpec,
    /// Every tensor; `values[0]` is the input.
    pub values: Vec<Value>,
    /// Every operator, in execution order.
    pub nodes: Vec<Node>,
    /// The output value.
    pub output: ValueId,
    /// Name of the output.
    pub output_name: String,
}

/// Shape of one value at a given input size: channels, height, width.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Shape {
    /// Channels.
    pub c: usize,
    /// Height.
    pub h: usize,
    /// Width.
    pub w: usize,
}

impl Shape {
    /// Number of elements, `None` on overflow.
    pub fn elements(&self) -> Option<usize> {
        self.c.checked_mul(self.h)?.checked_mul(self.w)
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}x{}", self.c, self.h, self.w)
    }
}

/// Largest graph accepted: nodes plus node inputs (a ShuffleNet has about 330).
/// Planning takes time quadratic in the graph's size, so this bound keeps a hostile
/// ONNX file from stalling the planner. It is half of
/// [`crate::program::MAX_STEPS`]: a node lowers to at most one step plus a copy per
/// input (and the output may need one more copy), so every valid graph lowers.
pub const MAX_GRAPH_SIZE: usize = 1 << 11;

/// Largest stride of a convolution or pool (far beyond any real network; it keeps
/// the stride exact in the program's 32-bit fields).
pub const MAX_STRIDE: usize = 1 << 16;

/// Largest total of the channels of every value plus the channels of every node
/// input. Lowering gives every value at most one buffer and copies at most node
/// inputs, so the program's buffers stay within the model file's
/// [`MAX_TOTAL_CHANNELS`](crate::model_file::format::MAX_TOTAL_CHANNELS).
pub const MAX_TOTAL_CHANNELS: usize = crate::model_file::format::MAX_TOTAL_CHANNELS as usize / 2;

/// Output extent of a window operation along one axis, `None` if the window does
/// not fit. `ceil` follows ONNX/PyTorch: round up, but never start a window inside
/// the trailing padding.
pub fn window_out(
    len: usize,
    k: usize,
    stride: usize,
    pad_begin: usize,
    pad_end: usize,
    ceil: bool,
) -> Option<usize> {
    let span = len.checked_add(pad_begin)?.checked_add(pad_end)?;
    if span < k || stride == 0 {
        return None;
    }
    let mut out = if ceil {
        (span - k).div_ceil(stride) + 1
    } else {
        (span - k) / stride + 1
    };
    if ceil && out > 1 && (out - 1) * stride >= len + pad_begin {
        out -= 1;
    }
    Some(out)
}

impl Graph {
    fn node_err(node: &Node, what: impl Into<String>) -> GraphError {
        GraphError::Node {
            node: node.name.clone(),
            what: what.into(),
        }
    }

    /// Checks the structure: value indices, execution order, channel counts,
    /// parameter lengths. Every graph is validated before it is planned or run.
    pub fn validate(&self) -> Result<(), GraphError> {
        let inputs: usize = self.nodes.iter().map(|n| n.inputs.len()).sum();
        if self.nodes.len().saturating_add(inputs) > MAX_GRAPH_SIZE {
            return Err(GraphError::Structure(format!(
                "{} nodes with {inputs} inputs: at most {MAX_GRAPH_SIZE} nodes and inputs together are supported",
                self.nodes.len()
            )));
        }
        if self.values.is_empty() {
            return Err(GraphError::Structure("no input value".into()));
        }
        if self.values[0].channels != self.input.channels || self.input.channels == 0 {
            return Err(GraphError::Structure(
                "input value disagrees with the input spec".into(),
            ));
        }
        // The program's limits, checked here so that every valid graph lowers into a
        // valid program that a model file can hold.
        let max = crate::program::MAX_CHANNELS as usize;
        if let Some(v) = self.values.iter().find(|v| v.channels > max) {
            return Err(GraphError::Structure(format!(
                "value '{}' has {} channels, more than {max}",
                v.name, v.channels
            )));
        }
        let total = self
            .values
            .iter()
            .map(|v| v.channels)
            .chain(
                self.nodes
                    .iter()
                    .flat_map(|n| &n.inputs)
                    .filter_map(|&i| self.values.get(i).map(|v| v.channels)),
            )
            .fold(0usize, usize::saturating_add);
        if total > MAX_TOTAL_CHANNELS {
            return Err(GraphError::Structure(format!(
                "values and node inputs hold {total} channels in total, more than {MAX_TOTAL_CHANNELS}"
            )));
        }
        let mut produced = vec![false; self.values.len()];
        produced[0] = true;
        for node in &self.nodes {
            for &i in &node.inputs {
                if i >= self.values.len() || !produced[i] {
                    return Err(Self::node_err(
                        node,
                        "reads a value that is not produced before it",
                    ));
                }
            }
            if node.output >= self.values.len() || produced[node.output] {
                return Err(Self::node_err(
                    node,
                    "writes a missing or already produced value",
                ));
            }
            self.check_node(node)?;
            produced[node.output] = true;
        }
        if self.output >= self.values.len() || !produced[self.output] {
            return Err(GraphError::Structure(
                "output value is never produced".into(),
            ));
        }
        Ok(())
    }

    fn check_node(&self, node: &Node) -> Result<(), GraphError> {
        let ch = |v: ValueId| self.values[v].channels;
        let arity = match node.op {
            Op::Add => 2,
            Op::Concat => node.inputs.len().max(1),
            _ => 1,
        };
        if node.inputs.len() != arity {
            return Err(Self::node_err(node, format!("expects {arity} input(s)")));
        }
        let cin = ch(node.inputs[0]);
        let cout = ch(node.output);
        let fail = |what: &str| Err(Self::node_err(node, what));
        let per_channel = |v: &[f32]| v.len() == cin;
        match &node.op {
            Op::Conv(c) => {
                if c.groups == 0 || c.cin % c.groups != 0 || c.cout % c.groups != 0 {
                    return fail("channels do not divide by groups");
                }
                if c.cin != cin || c.cout != cout {
                    return fail("channel count disagrees with its input or output");
                }
                if c.kh == 0 || c.kw == 0 || c.stride.0 == 0 || c.stride.1 == 0 {
                    return fail("zero kernel size or stride");
                }
                if c.kh.max(c.kw) > MAX_WINDOW || c.stride.0.max(c.stride.1) > MAX_STRIDE {
                    return fail(&format!(
                        "kernel {}x{} or stride {:?} above the limits ({MAX_WINDOW}, {MAX_STRIDE})",
                        c.kh, c.kw, c.stride
                    ));
                }
                if c.pads.top >= c.kh
                    || c.pads.bottom >= c.kh
                    || c.pads.left >= c.kw
                    || c.pads.right >= c.kw
                {
                    return fail("padding as large as the kernel");
                }
                if c.weight.len() != c.cout * (c.cin / c.groups) * c.kh * c.kw {
                    return fail("weight length disagrees with the shape");
                }
                if c.bias.as_ref().is_some_and(|b| b.len() != c.cout) {
                    return fail("bias length disagrees with the output channels");
                }
            }
            Op::BatchNorm(b) => {
                if !(per_channel(&b.gamma)
                    && per_channel(&b.beta)
                    && per_channel(&b.mean)
                    && per_channel(&b.var))
                    || cout != cin
                {
                    return fail("parameter lengths disagree with the channels");
                }
            }
            Op::Relu | Op::Softmax | Op::GlobalAvgPool => {
                if cout != cin {
                    return fail("output channels differ from input channels");
                }
            }
            Op::ChannelShuffle { groups } => {
                if *groups == 0 || cin % groups != 0 || cout != cin {
                    return fail("channels do not divide by the shuffle groups");
                }
            }
            Op::Pool(p) => {
                if p.kh == 0 || p.kw == 0 || p.stride.0 == 0 || p.stride.1 == 0 || cout != cin {
                    return fail("zero window or stride, or channel mismatch");
                }
                if p.kh.max(p.kw) > MAX_WINDOW || p.stride.0.max(p.stride.1) > MAX_STRIDE {
                    return fail(&format!(
                        "window {}x{} or stride {:?} above the limits ({MAX_WINDOW}, {MAX_STRIDE})",
                        p.kh, p.kw, p.stride
                    ));
                }
                if p.pads.top >= p.kh
                    || p.pads.bottom >= p.kh
                    || p.pads.left >= p.kw
                    || p.pads.right >= p.kw
                {
                    return fail("padding as large as the window");
                }
            }
            Op::Add => {
                if ch(node.inputs[1]) != cin || cout != cin {
                    return fail("operands have different channel counts");
                }
            }
            Op::Concat => {
                let sum: usize = node.inputs.iter().map(|&i| ch(i)).sum();
                if sum != cout {
                    return fail("output channels are not the sum of the inputs");
                }
            }
            Op::Fc(f) => {
                if f.inputs != cin || f.outputs != cout {
                    return fail("feature counts disagree with the channels");
                }
                if f.weight.len() != f.inputs * f.outputs || f.bias.len() != f.outputs {
                    return fail("weight or bias length disagrees with the shape");
                }
            }
        }
        Ok(())
    }

    /// Shapes of every value for an input of `h x w`, or why that size cannot run.
    pub fn shapes(&self, h: usize, w: usize) -> Result<Vec<Shape>, GraphError> {
        let size_err = |what: String| GraphError::Size { h, w, what };
        if h == 0 || w == 0 {
            return Err(size_err("height and width must be positive".into()));
        }
        let mut shapes = vec![None; self.values.len()];
        shapes[0] = Some(Shape {
            c: self.input.channels,
            h,
            w,
        });
        for node in &self.nodes {
            let ins: Vec<Shape> = node
                .inputs
                .iter()
                .map(|&i| shapes[i].ok_or_else(|| GraphError::Structure("unordered".into())))
                .collect::<Result<_, _>>()?;
            let x = ins[0];
            let c = self.values[node.output].channels;
            let at = |what: &str| size_err(format!("{} '{}': {what}", node.op.kind(), node.name));
            let out = match &node.op {
                Op::Conv(cv) => Shape {
                    c,
                    h: window_out(x.h, cv.kh, cv.stride.0, cv.pads.top, cv.pads.bottom, false)
                        .ok_or_else(|| at("input smaller than the kernel"))?,
                    w: window_out(x.w, cv.kw, cv.stride.1, cv.pads.left, cv.pads.right, false)
                        .ok_or_else(|| at("input smaller than the kernel"))?,
                },
                Op::Pool(p) => Shape {
                    c,
                    h: window_out(
                        x.h,
                        p.kh,
                        p.stride.0,
                        p.pads.top,
                        p.pads.bottom,
                        p.ceil_mode,
                    )
                    .ok_or_else(|| at("input smaller than the window"))?,
                    w: window_out(
                        x.w,
                        p.kw,
                        p.stride.1,
                        p.pads.left,
                        p.pads.right,
                        p.ceil_mode,
                    )
                    .ok_or_else(|| at("input smaller than the window"))?,
                },
                Op::GlobalAvgPool => Shape { c, h: 1, w: 1 },
                Op::Fc(_) | Op::Softmax => {
                    if x.h != 1 || x.w != 1 {
                        return Err(at("needs a 1x1 input (add a global pool before it)"));
                    }
                    Shape { c, h: 1, w: 1 }
                }
                Op::Add | Op::Concat => {
                    if ins.iter().any(|s| s.h != x.h || s.w != x.w) {
                        return Err(at(&format!(
                            "inputs have different sizes ({})",
                            ins.iter()
                                .map(|s| s.to_string())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )));
                    }
                    Shape { c, ..x }
                }
                Op::BatchNorm(_) | Op::Relu | Op::ChannelShuffle { .. } => Shape { c, ..x },
            };
            if out.elements().is_none() {
                return Err(at("tensor size overflows"));
            }
            shapes[node.output] = Some(out);
        }
        shapes
            .into_iter()
            .enumerate()
            .map(|(i, s)| {
                s.ok_or_else(|| GraphError::Structure(format!("value {i} is never produced")))
            })
            .collect()
    }

    /// Number of classes (channels of the output).
    pub fn classes(&self) -> usize {
        self.values[self.output].channels
    }

    /// For each value, the indices of the nodes that read it.
    pub fn consumers(&self) -> Vec<Vec<usize>> {
        let mut out = vec![Vec::new(); self.values.len()];
        for (n, node) in self.nodes.iter().enumerate() {
            for &i in &node.inputs {
                if !out[i].contains(&n) {
                    out[i].push(n);
                }
            }
        }
        out
    }
}

/// Appends nodes to a graph under construction, creating their output values.
#[derive(Debug)]
pub struct GraphBuilder {
    graph: Graph,
}

impl GraphBuilder {
    /// Starts a graph whose input is described by `input`.
    pub fn new(description: impl Into<String>, input: InputSpec) -> Self {
        GraphBuilder {
            graph: Graph {
                description: description.into(),
                values: vec![Value {
                    name: "input".into(),
                    channels: input.channels,
                }],
                input,
                nodes: Vec::new(),
                output: 0,
                output_name: "output".into(),
            },
        }
    }

    /// The input value.
    pub fn input(&self) -> ValueId {
        0
    }

    /// Channels of a value.
    pub fn channels(&self, v: ValueId) -> usize {
        self.graph.values[v].channels
    }

    /// Adds a node with output channel count `channels`; returns its output value.
    pub fn push(
        &mut self,
        name: impl Into<String>,
        op: Op,
        inputs: &[ValueId],
        channels: usize,
    ) -> ValueId {
        let name = name.into();
        let output = self.graph.values.len();
        self.graph.values.push(Value {
            name: name.clone(),
            channels,
        });
        self.graph.nodes.push(Node {
            name,
            op,
            inputs: inputs.to_vec(),
            output,
        });
        output
    }

    /// Finishes with `output` as the graph output and validates the result.
    pub fn finish(
        mut self,
        output: ValueId,
        output_name: impl Into<String>,
    ) -> Result<Graph, GraphError> {
        self.graph.output = output;
        self.graph.output_name = output_name.into();
        self.graph.validate()?;
        Ok(self.graph)
    }
}
