//! The planner's working form: graph nodes classified into the kernels that will
//! run them, carrying the fusion flags the passes set (ReLU, in-place residual),
//! with weights still unpacked so the passes can fold and permute them.

use crate::graph::{Conv, Graph, Op, Pads, PoolSpec, ValueId};
use crate::plan::PlanError;

/// What a fused node computes.
#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    /// Grouped 1x1 conv, stride 1, no padding; input plane of K row `j` is
    /// `in_rows[j]`.
    Pointwise {
        /// Groups.
        groups: usize,
        /// `[cout][k]` row-major.
        weight: Vec<f32>,
        /// Per output channel.
        bias: Vec<f32>,
        /// `groups * k` input planes.
        in_rows: Vec<u32>,
        /// With the node's ReLU: clamp channel `c` at `floor[c]` instead of zero.
        floor: Option<Vec<f32>>,
    },
    /// 3x3 depthwise conv.
    Depthwise {
        /// 1 or 2.
        stride: usize,
        /// Padding.
        pads: Pads,
        /// `[c][9]`.
        weight: Vec<f32>,
        /// Per channel.
        bias: Vec<f32>,
    },
    /// Any other convolution (bias always present).
    Conv(Conv),
    /// Pooling.
    Pool(PoolSpec),
    /// Global average pool.
    GlobalAvgPool,
    /// Fully connected: `[outputs][inputs]`.
    Fc {
        /// Weights.
        weight: Vec<f32>,
        /// Bias.
        bias: Vec<f32>,
    },
    /// Global average pool fused with a fully connected layer.
    GapFc {
        /// Weights `[outputs][inputs]`.
        weight: Vec<f32>,
        /// Bias.
        bias: Vec<f32>,
    },
    /// Element-wise sum.
    Add,
    /// Channel concatenation.
    Concat,
    /// Per-channel `x * scale + shift`.
    Affine {
        /// Scale.
        scale: Vec<f32>,
        /// Shift.
        shift: Vec<f32>,
    },
    /// Standalone ReLU.
    Relu,
    /// `y[i] = x[table[i]]`.
    Permute {
        /// Source plane of every output plane.
        table: Vec<u32>,
    },
    /// Softmax over channels.
    Softmax,
}

impl Kind {
    /// True for kernels that can apply a ReLU in their store epilogue.
    pub fn takes_relu(&self) -> bool {
        matches!(
            self,
            Kind::Pointwise { .. }
                | Kind::Depthwise { .. }
                | Kind::Conv(_)
                | Kind::Affine { .. }
                | Kind::Add
        )
    }

    /// True for operations that act on each channel independently, with
    /// per-channel parameters that [`Kind::permute_channels`] can reorder.
    pub fn per_channel(&self) -> bool {
        matches!(
            self,
            Kind::Depthwise { .. }
                | Kind::Affine { .. }
                | Kind::Pool(_)
                | Kind::GlobalAvgPool
                | Kind::Relu
        )
    }

    /// Reorders per-channel parameters so the op can run on planes stored in
    /// permuted order: parameter `i` moves to position `table[i]`.
    pub fn permute_channels(&mut self, table: &[u32]) {
        fn scatter(v: &mut Vec<f32>, table: &[u32], width: usize) {
            let mut out = vec![0.0; v.len()];
            for (i, &t) in table.iter().enumerate() {
                out[t as usize * width..][..width].copy_from_slice(&v[i * width..][..width]);
            }
            *v = out;
        }
        match self {
            Kind::Depthwise { weight, bias, .. } => {
                scatter(weight, table, 9);
                scatter(bias, table, 1);
            }
            Kind::Affine { scale, shift } => {
                scatter(scale, table, 1);
                scatter(shift, table, 1);
            }
            _ => {}
        }
    }
}

/// One fused node.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// Name of the graph node it came from.
    pub name: String,
    /// What it computes.
    pub kind: Kind,
    /// Inputs.
    pub inputs: Vec<ValueId>,
    /// Output.
    pub output: ValueId,
    /// ReLU in the epilogue.
    pub relu: bool,
    /// In-place residual: the output is stored over this value, adding it.
    pub residual: Option<ValueId>,
}

/// The whole fused network.
#[derive(Clone, Debug, PartialEq)]
pub struct Fused {
    /// The graph it came from, minus its nodes (metadata, value table).
    pub graph: Graph,
    /// Channel count of every value (new values are appended).
    pub channels: Vec<usize>,
    /// Nodes in execution order.
    pub nodes: Vec<Node>,
}

impl Fused {
    /// Classifies every graph node into the kernel that will run it.
    pub fn from_graph(graph: &Graph) -> Result<Fused, PlanError> {
        graph.validate()?;
        let nodes = graph.nodes.iter().map(|n| classify(graph, n)).collect();
        Ok(Fused {
            channels: graph.values.iter().map(|v| v.channels).collect(),
            graph: Graph {
                nodes: Vec::new(),
                ..graph.clone()
            },
            nodes,
        })
    }

    /// A new value with `channels` channels.
    pub fn new_value(&mut self, channels: usize) -> ValueId {
        self.channels.push(channels);
        self.channels.len() - 1
    }

    /// Indices of the nodes reading `v` (as an input or as a residual).
    pub fn readers(&self, v: ValueId) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&n| self.nodes[n].inputs.contains(&v) || self.nodes[n].residual == Some(v))
            .collect()
    }

    /// Index of the node producing `v`, if any.
    pub fn producer(&self, v: ValueId) -> Option<usize> {
        self.nodes.iter().position(|n| n.output == v)
    }

    /// True when `v` is read by exactly one node and is not the graph output.
    pub fn single_use(&self, v: ValueId) -> bool {
        v != self.graph.output && self.readers(v).len() == 1
    }

    /// Replaces every read of `from` (inputs, residuals, the graph output) by `to`.
    pub fn replace_uses(&mut self, from: ValueId, to: ValueId) {
        for n in &mut self.nodes {
            for i in &mut n.inputs {
                if *i == from {
                    *i = to;
                }
            }
            if n.residual == Some(from) {
                n.residual = Some(to);
            }
        }
        if self.graph.output == from {
            self.graph.output = to;
        }
    }
}

fn node(name: &str, kind: Kind, inputs: &[ValueId], output: ValueId) -> Node {
    Node {
        name: name.to_string(),
        kind,
        inputs: inputs.to_vec(),
        output,
        relu: false,
        residual: None,
    }
}

/// The identity index table of `n` planes.
pub fn identity(n: usize) -> Vec<u32> {
    (0..n as u32).collect()
}

/// The channel shuffle as a table: `y[i] = x[(i % groups) * n + i / groups]`.
pub fn shuffle_table(channels: usize, groups: usize) -> Vec<u32> {
    let n = channels / groups;
    (0..channels)
        .map(|i| ((i % groups) * n + i / groups) as u32)
        .collect()
}

fn classify(graph: &Graph, n: &crate::graph::Node) -> Node {
    let kind = match &n.op {
        Op::Conv(c) => {
            let bias = c.bias.clone().unwrap_or_else(|| vec![0.0; c.cout]);
            let no_pad = c.pads == Pads::default();
            if c.kh == 1 && c.kw == 1 && c.stride == (1, 1) && no_pad {
                Kind::Pointwise {
                    groups: c.groups,
                    weight: c.weight.clone(),
                    bias,
                    in_rows: identity(c.cin),
                    floor: None,
                }
            } else if c.kh == 3
                && c.kw == 3
                && c.groups == c.cin
                && c.cin == c.cout
                && c.stride.0 == c.stride.1
                && (1..=2).contains(&c.stride.0)
                && [c.pads.top, c.pads.left, c.pads.bottom, c.pads.right]
                    .iter()
                    .all(|&p| p <= 2)
            {
                Kind::Depthwise {
                    stride: c.stride.0,
                    pads: c.pads,
                    weight: c.weight.clone(),
                    bias,
                }
            } else {
                Kind::Conv(Conv {
                    bias: Some(bias),
                    ..c.clone()
                })
            }
        }
        Op::BatchNorm(b) => {
            let (scale, shift) = b.scale_shift();
            Kind::Affine { scale, shift }
        }
        Op::Relu => Kind::Relu,
        Op::ChannelShuffle { groups } => Kind::Permute {
            table: shuffle_table(graph.values[n.output].channels, *groups),
        },
        Op::Pool(p) => Kind::Pool(*p),
        Op::Add => Kind::Add,
        Op::Concat => Kind::Concat,
        Op::GlobalAvgPool => Kind::GlobalAvgPool,
        Op::Fc(f) => Kind::Fc {
            weight: f.weight.clone(),
            bias: f.bias.clone(),
        },
        Op::Softmax => Kind::Softmax,
    };
    node(&n.name, kind, &n.inputs, n.output)
}
