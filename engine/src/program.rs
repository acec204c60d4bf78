//! The fused op list: what the planner produces, the model file stores and a session
//! runs. Every step reads and writes *views*: channel ranges of planar buffers whose
//! spatial size is fixed when a session binds an input size. Aliasing is explicit:
//! two steps writing adjacent views of one buffer is a zero-copy concat; a step whose
//! output is the view holding its residual (`accumulate`) runs in place.
//!
//! Weights live in a tensor table (f32 or u32 data) referenced by [`TensorId`].

use crate::graph::{InputSpec, Pads, PoolSpec};

/// Index into the model's tensor table.
pub type TensorId = u32;

/// Index into [`Program::buffers`]. Buffer 0 holds the (planar) input.
pub type BufferId = u32;

/// Element type of a stored tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DType {
    /// 32-bit float.
    F32,
    /// 32-bit unsigned integer (index tables).
    U32,
}

/// A planar buffer; its height and width follow from the step that writes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BufferDecl {
    /// Number of channel planes.
    pub channels: u32,
}

/// Channels `[offset, offset + channels)` of a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct View {
    /// The buffer.
    pub buffer: BufferId,
    /// First channel.
    pub offset: u32,
    /// Number of channels.
    pub channels: u32,
}

/// One fused operation.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// Grouped 1x1 conv: `output[g*m + r] = epilogue(bias + sum_k W * input[in_rows[g*k + kk]])`
    /// with weights packed in `kernels::MR`-row panels. `in_rows` indexes planes of
    /// the input view (a folded channel shuffle). With `accumulate` the output view
    /// already holds the residual, which is added in place.
    Pointwise {
        /// Groups.
        groups: u32,
        /// Input rows per group.
        k: u32,
        /// Output channels per group.
        m: u32,
        /// Packed weights (f32).
        weights: TensorId,
        /// Bias (f32, `groups * m`).
        bias: TensorId,
        /// Index table (u32, `groups * k`).
        in_rows: TensorId,
        /// Clamp at zero.
        relu: bool,
        /// With `relu`: clamp output channel `c` at `floor[c]` instead of zero
        /// (f32, `groups * m`): the output of a residual offset chain (see
        /// `plan::offset`).
        floor: Option<TensorId>,
        /// Add the existing output (in-place residual).
        accumulate: bool,
        /// Input view.
        input: View,
        /// Output view (`groups * m` channels).
        output: View,
    },
    /// 3x3 depthwise conv, stride 1 or 2.
    Depthwise {
        /// 1 or 2.
        stride: u32,
        /// Padding.
        pads: Pads,
        /// Weights (f32, `channels * 9`).
        weights: TensorId,
        /// Bias (f32, `channels`).
        bias: TensorId,
        /// Clamp at zero.
        relu: bool,
        /// Input view.
        input: View,
        /// Output view (same channel count).
        output: View,
    },
    /// Direct convolution (the stem, and any conv no faster step covers).
    Conv {
        /// Groups.
        groups: u32,
        /// Kernel height.
        kh: u32,
        /// Kernel width.
        kw: u32,
        /// Vertical and horizontal stride.
        stride: (u32, u32),
        /// Padding.
        pads: Pads,
        /// Weights (f32, `[cout][cin/groups][kh][kw]`).
        weights: TensorId,
        /// Bias (f32, `cout`).
        bias: TensorId,
        /// Clamp at zero.
        relu: bool,
        /// Input view (`cin` channels).
        input: View,
        /// Output view (`cout` channels).
        output: View,
    },
    /// Max or average pooling.
    Pool {
        /// Window, stride, padding, rounding.
        spec: PoolSpec,
        /// Input view.
        input: View,
        /// Output view.
        output: View,
    },
    /// Global average pool then fully connected: `[C, H, W] -> [outputs, 1, 1]`.
    GapFc {
        /// Weights (f32, `[outputs][C]`).
        weights: TensorId,
        /// Bias (f32, `outputs`).
        bias: TensorId,
        /// Input view (`C` channels).
        input: View,
        /// Output view (`outputs` channels, 1x1).
        output: View,
    },
    /// Global average pool: `[C, H, W] -> [C, 1, 1]`.
    GlobalAvgPool {
        /// Input view.
        input: View,
        /// Output view.
        output: View,
    },
    /// Fully connected on a `[C, 1, 1]` view.
    Fc {
        /// Weights (f32, `[outputs][C]`).
        weights: TensorId,
        /// Bias (f32, `outputs`).
        bias: TensorId,
        /// Input view.
        input: View,
        /// Output view.
        output: View,
    },
    /// Element-wise `output = a + b` (ReLU optional); `output` may be `a` (in place).
    Add {
        /// First operand.
        a: View,
        /// Second operand.
        b: View,
        /// Clamp at zero.
        relu: bool,
        /// Result.
        output: View,
    },
    /// Per-channel `x * scale + shift` (an unfoldable BatchNorm), ReLU optional.
    Affine {
        /// Scale (f32, per channel).
        scale: TensorId,
        /// Shift (f32, per channel).
        shift: TensorId,
        /// Clamp at zero.
        relu: bool,
        /// Input view.
        input: View,
        /// Output view.
        output: View,
    },
    /// In-place ReLU over a view.
    Relu {
        /// The view.
        view: View,
    },
    /// Explicit plane permutation: `output[i] = input[table[i]]` (a channel shuffle or
    /// copy no consumer could absorb).
    Permute {
        /// Table (u32, one entry per output channel).
        table: TensorId,
        /// Input view.
        input: View,
        /// Output view.
        output: View,
    },
    /// In-place softmax over the channels of a `[C, 1, 1]` view.
    Softmax {
        /// The view.
        view: View,
    },
}

impl Step {
    /// Kernel name, as `shufflenet plan` prints it.
    pub fn kernel(&self) -> &'static str {
        match self {
            Step::Pointwise {
                accumulate: true, ..
            } => "pointwise+residual",
            Step::Pointwise { .. } => "pointwise",
            Step::Depthwise { stride: 1, .. } => "dwconv3x3s1",
            Step::Depthwise { .. } => "dwconv3x3s2",
            Step::Conv { .. } => "conv2d",
            Step::Pool { spec, .. } => match spec.kind {
                kernels::PoolKind::Max => "maxpool",
                kernels::PoolKind::Avg { .. } => "avgpool",
            },
            Step::GapFc { .. } => "gap_fc",
            Step::GlobalAvgPool { .. } => "global_avg_pool",
            Step::Fc { .. } => "fc",
            Step::Add { .. } => "add",
            Step::Affine { .. } => "affine",
            Step::Relu { .. } => "relu",
            Step::Permute { .. } => "permute",
            Step::Softmax { .. } => "softmax",
        }
    }

    /// Views read by the step (for an in-place step, including its output).
    pub fn reads(&self) -> Vec<View> {
        match *self {
            Step::Pointwise {
                input,
                output,
                accumulate,
                ..
            } => {
                if accumulate {
                    vec![input, output]
                } else {
                    vec![input]
                }
            }
            Step::Depthwise { input, .. }
            | Step::Conv { input, .. }
            | Step::Pool { input, .. }
            | Step::GapFc { input, .. }
            | Step::GlobalAvgPool { input, .. }
            | Step::Fc { input, .. }
            | Step::Affine { input, .. }
            | Step::Permute { input, .. } => vec![input],
            Step::Add { a, b, .. } => vec![a, b],
            Step::Relu { view } | Step::Softmax { view } => vec![view],
        }
    }

    /// The view the step writes.
    pub fn writes(&self) -> View {
        match *self {
            Step::Pointwise { output, .. }
            | Step::Depthwise { output, .. }
            | Step::Conv { output, .. }
            | Step::Pool { output, .. }
            | Step::GapFc { output, .. }
            | Step::GlobalAvgPool { output, .. }
            | Step::Fc { output, .. }
            | Step::Add { output, .. }
            | Step::Affine { output, .. }
            | Step::Permute { output, .. } => output,
            Step::Relu { view } | Step::Softmax { view } => view,
        }
    }

    /// Tensors the step references, with the type and element count each must have
    /// (`usize::MAX` when the count overflows, which no tensor can match).
    pub fn tensors(&self) -> Vec<(TensorId, DType, usize)> {
        use DType::{F32, U32};
        let mul = |xs: &[usize]| xs.iter().fold(1usize, |a, &x| a.saturating_mul(x));
        let ch = |v: View| v.channels as usize;
        match *self {
            Step::Pointwise {
                groups,
                k,
                m,
                weights,
                bias,
                in_rows,
                floor,
                ..
            } => {
                let (g, k, m) = (groups as usize, k as usize, m as usize);
                let mut t = vec![
                    (
                        weights,
                        F32,
                        mul(&[g, m.div_ceil(kernels::MR), k, kernels::MR]),
                    ),
                    (bias, F32, mul(&[g, m])),
                    (in_rows, U32, mul(&[g, k])),
                ];
                t.extend(floor.map(|f| (f, F32, mul(&[g, m]))));
                t
            }
            Step::Depthwise {
                weights,
                bias,
                output,
                ..
            } => vec![
                (weights, F32, mul(&[ch(output), 9])),
                (bias, F32, ch(output)),
            ],
            Step::Conv {
                groups,
                kh,
                kw,
                weights,
                bias,
                input,
                output,
                ..
            } => vec![
                (
                    weights,
                    F32,
                    mul(&[
                        ch(output),
                        ch(input) / (groups.max(1) as usize),
                        kh as usize,
                        kw as usize,
                    ]),
                ),
                (bias, F32, ch(output)),
            ],
            Step::GapFc {
                weights,
                bias,
                input,
                output,
            }
            | Step::Fc {
                weights,
                bias,
                input,
                output,
            } => vec![
                (weights, F32, mul(&[ch(input), ch(output)])),
                (bias, F32, ch(output)),
            ],
            Step::Affine {
                scale,
                shift,
                input,
                ..
            } => {
                vec![(scale, F32, ch(input)), (shift, F32, ch(input))]
            }
            Step::Permute { table, output, .. } => vec![(table, U32, ch(output))],
            Step::Pool { .. }
            | Step::GlobalAvgPool { .. }
            | Step::Add { .. }
            | Step::Relu { .. }
            | Step::Softmax { .. } => vec![],
        }
    }
}

/// A lowered network: buffers, steps, and where the result is.
#[derive(Clone, Debug, PartialEq)]
pub struct Program {
    /// Human-readable description of the network.
    pub description: String,
    /// What the input is (layout, default size, preprocessing).
    pub input: InputSpec,
    /// Name of the output.
    pub output_name: String,
    /// Planar buffers; buffer 0 is the input.
    pub buffers: Vec<BufferDecl>,
    /// Steps in execution order.
    pub steps: Vec<Step>,
    /// Where the result is after the last step.
    pub output: View,
}

/// A tensor of a lowered model, before it is written to a file.
#[derive(Clone, Debug, PartialEq)]
pub enum TensorData {
    /// 32-bit floats.
    F32(Vec<f32>),
    /// 32-bit unsigned integers.
    U32(Vec<u32>),
}

impl TensorData {
    /// Element type.
    pub fn dtype(&self) -> DType {
        match self {
            TensorData::F32(_) => DType::F32,
            TensorData::U32(_) => DType::U32,
        }
    }

    /// Element count.
    pub fn len(&self) -> usize {
        match self {
            TensorData::F32(v) => v.len(),
            TensorData::U32(v) => v.len(),
        }
    }

    /// True when there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A program with its tensors in memory: the planner's output and the model file
/// writer's input.
#[derive(Clone, Debug, PartialEq)]
pub struct LoweredModel {
    /// The op list.
    pub program: Program,
    /// Tensor table, indexed by [`TensorId`].
    pub tensors: Vec<TensorData>,
}

/// A program that is inconsistent in itself (independent of the input size).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProgramError {
    /// A step is malformed.
    #[error("step {step} ({kernel}): {what}")]
    Step {
        /// Step index.
        step: usize,
        /// Kernel name.
        kernel: &'static str,
        /// What is wrong.
        what: String,
    },
    /// The program as a whole is malformed.
    #[error("program: {0}")]
    Structure(String),
}

/// Read access to a tensor table, for validation.
pub trait TensorSource {
    /// Type and element count of tensor `id`, if it exists.
    fn info(&self, id: TensorId) -> Option<(DType, usize)>;
    /// The data of a u32 tensor, if it exists and is u32.
    fn u32s(&self, id: TensorId) -> Option<&[u32]>;
    /// The data of an f32 tensor, if it exists and is f32.
    fn f32s(&self, id: TensorId) -> Option<&[f32]>;
}

impl TensorSource for [TensorData] {
    fn info(&self, id: TensorId) -> Option<(DType, usize)> {
        self.get(id as usize).map(|t| (t.dtype(), t.len()))
    }
    fn u32s(&self, id: TensorId) -> Option<&[u32]> {
        match self.get(id as usize) {
            Some(TensorData::U32(v)) => Some(v),
            _ => None,
        }
    }
    fn f32s(&self, id: TensorId) -> Option<&[f32]> {
        match self.get(id as usize) {
            Some(TensorData::F32(v)) => Some(v),
            _ => None,
        }
    }
}

/// Largest channel count of a buffer, so sizes stay far from overflow.
pub const MAX_CHANNELS: u32 = 1 << 20;

/// Largest kernel or pooling window height or width.
pub const MAX_WINDOW: usize = 16;

/// Most steps a program may have (a ShuffleNet needs about 55). Binding a program to
/// an input size takes time quadratic in its steps and buffers, so this bound keeps a
/// hostile model file from stalling [`crate::session::Session::new`]. It is twice
/// [`crate::graph::MAX_GRAPH_SIZE`], so every valid graph lowers within it.
pub const MAX_STEPS: usize = 1 << 12;

/// Most buffers a program may declare (a ShuffleNet needs about 40); see [`MAX_STEPS`].
pub const MAX_BUFFERS: usize = 1 << 12;

/// The channels of each buffer written so far, as sorted, disjoint, non-adjacent
/// half-open ranges: validation time and memory follow the number of writes, not the
/// (untrusted) channel counts.
struct Written(Vec<Vec<(u32, u32)>>);

impl Written {
    /// Whether channels `[v.offset, v.offset + v.channels)` of `v.buffer` are written
    /// (`v` was checked to lie inside its buffer).
    fn covers(&self, v: View) -> bool {
        let (lo, hi) = (v.offset, v.offset + v.channels);
        let ranges = &self.0[v.buffer as usize];
        let i = ranges.partition_point(|&(start, _)| start <= lo);
        i > 0 && ranges[i - 1].1 >= hi
    }

    /// Marks the channels of `v` written.
    fn insert(&mut self, v: View) {
        let (mut lo, mut hi) = (v.offset, v.offset + v.channels);
        let ranges = &mut self.0[v.buffer as usize];
        // Ranges that overlap or touch [lo, hi) merge with it.
        let first = ranges.partition_point(|&(_, end)| end < lo);
        let last = ranges.partition_point(|&(start, _)| start <= hi);
        if first < last {
            lo = lo.min(ranges[first].0);
            hi = hi.max(ranges[last - 1].1);
        }
        ranges.splice(first..last, [(lo, hi)]);
    }
}

fn overlaps(a: View, b: View) -> bool {
    a.buffer == b.buffer && a.offset < b.offset + b.channels && b.offset < a.offset + a.channels
}

impl Program {
    /// Checks every view, tensor reference, index table and channel count, that every
    /// view is written before it is read, and that no step reads what it overwrites
    /// except where the step is defined to run in place. A program that passes runs
    /// without any kernel seeing inconsistent parameters (given a valid input size).
    pub fn validate(&self, tensors: &(impl TensorSource + ?Sized)) -> Result<(), ProgramError> {
        let structure = |s: &str| Err(ProgramError::Structure(s.into()));
        if self.steps.len() > MAX_STEPS || self.buffers.len() > MAX_BUFFERS {
            return Err(ProgramError::Structure(format!(
                "{} steps and {} buffers: at most {MAX_STEPS} steps and {MAX_BUFFERS} buffers are allowed",
                self.steps.len(),
                self.buffers.len()
            )));
        }
        if self.buffers.is_empty() || self.buffers[0].channels as usize != self.input.channels {
            return structure("buffer 0 must hold the input channels");
        }
        if self
            .buffers
            .iter()
            .any(|b| b.channels == 0 || b.channels > MAX_CHANNELS)
        {
            return structure("buffer channel count out of range");
        }
        let mut written = Written(vec![Vec::new(); self.buffers.len()]);
        written.insert(View {
            buffer: 0,
            offset: 0,
            channels: self.buffers[0].channels,
        });
        for (i, step) in self.steps.iter().enumerate() {
            let fail = |what: String| ProgramError::Step {
                step: i,
                kernel: step.kernel(),
                what,
            };
            let out = step.writes();
            for v in step.reads().into_iter().chain([out]) {
                self.check_view(v).map_err(|w| fail(w.into()))?;
            }
            for v in step.reads() {
                if !written.covers(v) {
                    return Err(fail(format!("reads {v:?} before it is written")));
                }
                let in_place = v == out
                    && matches!(
                        step,
                        Step::Pointwise {
                            accumulate: true,
                            ..
                        } | Step::Relu { .. }
                            | Step::Softmax { .. }
                            | Step::Add { .. }
                    );
                if overlaps(v, out) && !in_place {
                    return Err(fail(format!("output {out:?} overlaps input {v:?}")));
                }
            }
            for (id, dtype, len) in step.tensors() {
                match tensors.info(id) {
                    Some((t, n)) if t == dtype && n == len => {}
                    Some((t, n)) => {
                        return Err(fail(format!(
                            "tensor {id} is {n} x {t:?}, expected {len} x {dtype:?}"
                        )))
                    }
                    None => return Err(fail(format!("tensor {id} does not exist"))),
                }
            }
            self.check_step(step, tensors).map_err(fail)?;
            written.insert(out);
        }
        self.check_view(self.output)
            .map_err(|w| ProgramError::Structure(w.into()))?;
        if !written.covers(self.output) {
            return structure("the output view is never written");
        }
        Ok(())
    }

    fn check_view(&self, v: View) -> Result<(), &'static str> {
        let b = self
            .buffers
            .get(v.buffer as usize)
            .ok_or("view of a missing buffer")?;
        if v.channels == 0
            || v.offset
                .checked_add(v.channels)
                .is_none_or(|e| e > b.channels)
        {
            return Err("view outside its buffer");
        }
        Ok(())
    }

    fn check_step(
        &self,
        step: &Step,
        tensors: &(impl TensorSource + ?Sized),
    ) -> Result<(), String> {
        let same = |a: View, b: View| {
            if a.channels == b.channels {
                Ok(())
            } else {
                Err(format!("{} channels in, {} out", a.channels, b.channels))
            }
        };
        let table_below = |id: TensorId, n: u32| -> Result<(), String> {
            let t = tensors.u32s(id).ok_or("index table missing")?;
            match t.iter().find(|&&r| r >= n) {
                Some(r) => Err(format!("index {r} past the {n} input channels")),
                None => Ok(()),
            }
        };
        match *step {
            Step::Pointwise {
                groups,
                k,
                m,
                in_rows,
                input,
                output,
                relu,
                floor,
                ..
            } => {
                if groups == 0 || k == 0 || m == 0 {
                    return Err("zero groups, k or m".into());
                }
                if floor.is_some() && !relu {
                    return Err("a ReLU floor without the ReLU".into());
                }
                if groups.checked_mul(m) != Some(output.channels) {
                    return Err("output channels are not groups * m".into());
                }
                table_below(in_rows, input.channels)
            }
            Step::Depthwise {
                stride,
                pads,
                input,
                output,
                ..
            } => {
                if !(1..=2).contains(&stride)
                    || [pads.top, pads.left, pads.bottom, pads.right]
                        .iter()
                        .any(|&p| p > 2)
                {
                    return Err("stride must be 1 or 2 and pads at most 2".into());
                }
                same(input, output)
            }
            Step::Conv {
                groups,
                kh,
                kw,
                stride,
                pads,
                input,
                output,
                ..
            } => {
                if groups == 0 || input.channels % groups != 0 || output.channels % groups != 0 {
                    return Err("channels do not divide by groups".into());
                }
                if kh == 0
                    || kw == 0
                    || kh as usize > MAX_WINDOW
                    || kw as usize > MAX_WINDOW
                    || stride.0 == 0
                    || stride.1 == 0
                {
                    return Err("kernel size or stride out of range".into());
                }
                if pads.top >= kh as usize
                    || pads.bottom >= kh as usize
                    || pads.left >= kw as usize
                    || pads.right >= kw as usize
                {
                    return Err("padding as large as the kernel".into());
                }
                Ok(())
            }
            Step::Pool {
                spec,
                input,
                output,
            } => {
                if spec.kh == 0
                    || spec.kw == 0
                    || spec.kh > MAX_WINDOW
                    || spec.kw > MAX_WINDOW
                    || spec.stride.0 == 0
                    || spec.stride.1 == 0
                {
                    return Err("window or stride out of range".into());
                }
                if spec.pads.top >= spec.kh
                    || spec.pads.bottom >= spec.kh
                    || spec.pads.left >= spec.kw
                    || spec.pads.right >= spec.kw
                {
                    return Err("padding as large as the window".into());
                }
                same(input, output)
            }
            Step::GlobalAvgPool { input, output } => same(input, output),
            Step::Add { a, b, output, .. } => {
                same(a, b)?;
                if (output != a && overlaps(output, a)) || (output != b && overlaps(output, b)) {
                    return Err("add output partly overlaps an operand".into());
                }
                same(a, output)
            }
            Step::Affine { input, output, .. } => same(input, output),
            Step::Permute { table, input, .. } => table_below(table, input.channels),
            Step::GapFc { .. } | Step::Fc { .. } | Step::Relu { .. } | Step::Softmax { .. } => {
                Ok(())
            }
        }
    }
}
