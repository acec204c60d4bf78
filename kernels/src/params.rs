//! Kernel parameters and the one-time validation every kernel runs before it touches
//! memory. Every implementation (scalar, NEON, portable) calls the same `check`
//! function at entry, so a fast kernel's unchecked inner loop only ever sees shapes
//! whose every access has been proven in bounds here.

use crate::{KernelError, PlaneRows};
use std::ops::Range;

/// Output rows per packed weight panel of the pointwise GEMM. Fixed by the model
/// file format: the converter packs weights in panels of `MR` rows.
pub const MR: usize = 8;

fn err(kernel: &'static str, what: impl Into<String>) -> KernelError {
    KernelError::Shape {
        kernel,
        what: what.into(),
    }
}

fn need(kernel: &'static str, name: &str, have: usize, want: usize) -> Result<(), KernelError> {
    if have < want {
        return Err(err(
            kernel,
            format!("{name} holds {have} floats, needs at least {want}"),
        ));
    }
    Ok(())
}

/// `a * b + c` with overflow reported as a kernel error.
fn mul_add(kernel: &'static str, a: usize, b: usize, c: usize) -> Result<usize, KernelError> {
    a.checked_mul(b)
        .and_then(|x| x.checked_add(c))
        .ok_or_else(|| err(kernel, "size overflows usize"))
}

/// What a producing kernel does to each output value after its sum and bias.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Epilogue {
    /// Add the value already stored at the output position (an in-place residual).
    pub accumulate: bool,
    /// Clamp at zero, after the accumulate.
    pub relu: bool,
}

/// A run of `count` pixels inside a set of planes: plane `c` holds its pixels at
/// `c * stride + start ..`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PixelSpan {
    /// Floats from one plane to the next.
    pub stride: usize,
    /// Index of the first pixel of the run inside each plane.
    pub start: usize,
}

/// A grouped 1x1 convolution as a GEMM over planes: group `g` computes
/// `out[g*m + r] = bias + sum_k W[g*m + r][k] * in[in_rows[g*k_per_group + k]]`.
/// The input rows are read through `in_rows`, which is how a channel shuffle costs
/// nothing.
#[derive(Clone, Copy, Debug)]
pub struct Pointwise<'a> {
    /// Number of groups.
    pub groups: usize,
    /// Input channels per group (the GEMM's K).
    pub k: usize,
    /// Output channels per group.
    pub m: usize,
    /// Weights packed by [`pack_pointwise`]: `groups * panels_per_group` panels of
    /// `k * MR` floats, each k-major (`[k][MR]`), rows past `m` zero.
    pub weights: &'a [f32],
    /// One bias per output channel (`groups * m`).
    pub bias: &'a [f32],
    /// Input plane of each K row: `groups * k` plane indices.
    pub in_rows: &'a [u32],
    /// Store epilogue.
    pub epilogue: Epilogue,
    /// With `epilogue.relu`: clamp output channel `c` at `floor[c]` instead of zero
    /// (`groups * m` floats; `max(v, floor[c])` with NaN propagated, as
    /// [`crate::scalar::relu_at`]). The planner's residual offset chain stores a
    /// unit's output shifted by a per-channel constant; its ReLU's zero moves
    /// with it.
    pub floor: Option<&'a [f32]>,
}

impl Pointwise<'_> {
    /// The ReLU clamp of output channel `c`: `floor[c]`, or zero without a floor.
    pub fn floor_of(&self, c: usize) -> f32 {
        self.floor.and_then(|f| f.get(c)).copied().unwrap_or(0.0)
    }

    /// Panels per group: `ceil(m / MR)`.
    pub fn panels_per_group(&self) -> usize {
        self.m.div_ceil(MR)
    }

    /// Total number of panels over all groups.
    pub fn panels(&self) -> usize {
        self.groups * self.panels_per_group()
    }

    /// Output channel of row `r` of panel `p` (may be past the group's end).
    pub fn channel_of(&self, panel: usize, r: usize) -> usize {
        let ppg = self.panels_per_group();
        (panel / ppg) * self.m + (panel % ppg) * MR + r
    }

    /// Number of real rows (at most `MR`) in panel `p`.
    pub fn rows_in_panel(&self, panel: usize) -> usize {
        let j = panel % self.panels_per_group();
        (self.m - j * MR).min(MR)
    }

    /// Output channels `[first, end)` covered by a panel range.
    pub fn channels_of(&self, panels: &Range<usize>) -> Range<usize> {
        if panels.is_empty() {
            let c = self.channel_of(panels.start, 0);
            return c..c;
        }
        let last = panels.end - 1;
        self.channel_of(panels.start, 0)..self.channel_of(last, 0) + self.rows_in_panel(last)
    }

    /// Validates the parameters against the buffers of one call.
    pub fn check(
        &self,
        input: &[f32],
        output: &[f32],
        call: &PointwiseCall,
    ) -> Result<(), KernelError> {
        self.check_lens(input.len(), output.len(), call)
    }

    /// [`Self::check`] against rows of output planes (see [`PlaneRows`]): the
    /// call's output stride must be the planes' and every run inside the window.
    pub fn check_rows(
        &self,
        input: &[f32],
        output: &PlaneRows,
        call: &PointwiseCall,
    ) -> Result<(), KernelError> {
        self.check_lens(input.len(), output.len(), call)?;
        let planes = self.channels_of(&call.panels).len();
        check_window(output, &call.output, planes, call, "output")
    }

    /// [`Self::check`] reading rows of input planes (see [`PlaneRows`]) that
    /// other threads write other rows of: the call's input stride must be the
    /// planes' and every run it reads inside the window.
    pub fn check_rows_input(
        &self,
        input: &PlaneRows,
        output: &[f32],
        call: &PointwiseCall,
    ) -> Result<(), KernelError> {
        self.check_lens(input.len(), output.len(), call)?;
        let planes = self.in_rows.iter().copied().max().unwrap_or(0) as usize + 1;
        check_window(input, &call.input, planes, call, "input")
    }

    /// [`Self::check`] against an input of `input_len` floats and an output of
    /// `output_len`.
    pub fn check_lens(
        &self,
        input_len: usize,
        output_len: usize,
        call: &PointwiseCall,
    ) -> Result<(), KernelError> {
        const K: &str = "pointwise";
        if self.groups == 0 || self.k == 0 || self.m == 0 {
            return Err(err(K, "groups, k and m must be positive"));
        }
        let panel_len = mul_add(K, self.k, MR, 0)?;
        need(
            K,
            "weights",
            self.weights.len(),
            mul_add(K, self.panels(), panel_len, 0)?,
        )?;
        need(
            K,
            "bias",
            self.bias.len(),
            mul_add(K, self.groups, self.m, 0)?,
        )?;
        if self.in_rows.len() != self.groups * self.k {
            return Err(err(K, "in_rows must hold groups * k entries"));
        }
        if let Some(floor) = self.floor {
            if !self.epilogue.relu {
                return Err(err(K, "a ReLU floor needs the ReLU epilogue"));
            }
            need(K, "floor", floor.len(), self.groups * self.m)?;
        }
        if call.panels.start > call.panels.end || call.panels.end > self.panels() {
            return Err(err(K, "panel range out of bounds"));
        }
        if call.count == 0 || call.panels.is_empty() {
            return Ok(());
        }
        let max_row = self.in_rows.iter().copied().max().unwrap_or(0) as usize;
        let in_end = mul_add(K, max_row, call.input.stride, call.input.start + call.count)?;
        need(K, "input", input_len, in_end)?;
        if max_row > 0 && call.input.start + call.count > call.input.stride {
            return Err(err(K, "pixel run crosses into the next input plane"));
        }
        let chans = self.channels_of(&call.panels);
        let out_end = mul_add(
            K,
            chans.end - chans.start - 1,
            call.output.stride,
            call.output.start + call.count,
        )?;
        need(K, "output", output_len, out_end)?;
        if chans.len() > 1 && call.output.start + call.count > call.output.stride {
            return Err(err(K, "pixel run crosses into the next output plane"));
        }
        Ok(())
    }
}

/// Checks that the `which` side (`span`, over planes `0..planes`) of a
/// pointwise call lies inside the window of `rows`, with the planes' stride.
fn check_window(
    rows: &PlaneRows,
    span: &PixelSpan,
    planes: usize,
    call: &PointwiseCall,
    which: &str,
) -> Result<(), KernelError> {
    const K: &str = "pointwise";
    if call.count == 0 || call.panels.is_empty() {
        return Ok(());
    }
    if span.stride != rows.stride() {
        return Err(err(K, format!("{which} stride is not the planes' stride")));
    }
    rows.check_runs(K, span.start, call.count, planes)
}

/// One call of the pointwise kernel: which pixels and which output panels.
#[derive(Clone, Debug)]
pub struct PointwiseCall {
    /// Where the pixels are read in the input planes (input plane 0 is at index 0).
    pub input: PixelSpan,
    /// Where they are written; output plane 0 is the first channel of `panels`.
    pub output: PixelSpan,
    /// Number of pixels.
    pub count: usize,
    /// Panels to compute (over all groups, group-major).
    pub panels: Range<usize>,
}

impl PointwiseCall {
    /// Panels `panels` over pixels `start .. start + count` of input and output
    /// planes `stride` floats apart, at the same place in both (a call over whole
    /// planes, or a band of them, of equally laid out tensors).
    pub fn same_span(stride: usize, start: usize, count: usize, panels: Range<usize>) -> Self {
        let span = PixelSpan { stride, start };
        PointwiseCall {
            input: span,
            output: span,
            count,
            panels,
        }
    }
}

/// Packs grouped 1x1 weights `w[groups * m][k]` (row-major) into `MR`-row panels,
/// k-major inside a panel, rows past `m` zero-filled.
pub fn pack_pointwise(groups: usize, m: usize, k: usize, w: &[f32]) -> Vec<f32> {
    let mut out = vec![0.0; packed_len(groups, m, k)];
    pack_pointwise_into(groups, m, k, w, &mut out);
    out
}

/// Floats of the packed form of `groups` groups of `m x k` weights.
pub fn packed_len(groups: usize, m: usize, k: usize) -> usize {
    groups * m.div_ceil(MR) * k * MR
}

/// [`pack_pointwise`] into a caller's buffer of [`packed_len`] floats (which it
/// overwrites entirely).
pub fn pack_pointwise_into(groups: usize, m: usize, k: usize, w: &[f32], out: &mut [f32]) {
    let ppg = m.div_ceil(MR);
    out.fill(0.0);
    for g in 0..groups {
        for j in 0..ppg {
            let panel = &mut out[(g * ppg + j) * k * MR..][..k * MR];
            for r in 0..MR.min(m - j * MR) {
                let row = &w[(g * m + j * MR + r) * k..][..k];
                for (kk, &v) in row.iter().enumerate() {
                    panel[kk * MR + r] = v;
                }
            }
        }
    }
}

/// Geometry of a per-plane window operation (depthwise conv, pool, direct conv).
/// Output pixel `(y, x)` reads input rows `y * stride_h - pad_top + dy`; positions
/// outside the `in_h x in_w` input are padding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlaneGeom {
    /// Input plane height.
    pub in_h: usize,
    /// Input plane width.
    pub in_w: usize,
    /// Floats between input planes.
    pub in_stride: usize,
    /// Output plane height.
    pub out_h: usize,
    /// Output plane width.
    pub out_w: usize,
    /// Floats between output planes.
    pub out_stride: usize,
    /// Padding rows above the input.
    pub pad_top: usize,
    /// Padding columns left of the input.
    pub pad_left: usize,
}

impl PlaneGeom {
    fn check(
        &self,
        kernel: &'static str,
        in_planes: usize,
        out_planes: usize,
        input: &[f32],
        output: &[f32],
    ) -> Result<(), KernelError> {
        if self.in_h == 0 || self.in_w == 0 {
            return Err(err(kernel, "empty input plane"));
        }
        let in_hw = self.in_h * self.in_w;
        let out_hw = mul_add(kernel, self.out_h, self.out_w, 0)?;
        if in_planes > 1 && self.in_stride < in_hw {
            return Err(err(kernel, "input stride smaller than a plane"));
        }
        if out_planes > 1 && self.out_stride < out_hw {
            return Err(err(kernel, "output stride smaller than a plane"));
        }
        if in_planes > 0 {
            need(
                kernel,
                "input",
                input.len(),
                mul_add(kernel, in_planes - 1, self.in_stride, in_hw)?,
            )?;
        }
        if out_planes > 0 {
            need(
                kernel,
                "output",
                output.len(),
                mul_add(kernel, out_planes - 1, self.out_stride, out_hw)?,
            )?;
        }
        Ok(())
    }
}

/// 3x3 depthwise convolution, one filter per channel, stride 1 or 2.
#[derive(Clone, Copy, Debug)]
pub struct Depthwise3x3<'a> {
    /// 1 or 2.
    pub stride: usize,
    /// `channels * 9` weights, row-major per channel.
    pub weights: &'a [f32],
    /// One bias per channel.
    pub bias: &'a [f32],
    /// Clamp at zero after the bias.
    pub relu: bool,
}

impl Depthwise3x3<'_> {
    /// Validates a call over `channels`: input plane `c` is at `c * in_stride`,
    /// output plane `c` at `(c - channels.start) * out_stride`.
    pub fn check(
        &self,
        geom: &PlaneGeom,
        input: &[f32],
        output: &[f32],
        channels: &Range<usize>,
    ) -> Result<(), KernelError> {
        const K: &str = "dwconv3x3";
        if self.stride != 1 && self.stride != 2 {
            return Err(err(K, "stride must be 1 or 2"));
        }
        if geom.pad_top > 2 || geom.pad_left > 2 {
            return Err(err(K, "padding above 2"));
        }
        need(
            K,
            "weights",
            self.weights.len(),
            mul_add(K, channels.end, 9, 0)?,
        )?;
        need(K, "bias", self.bias.len(), channels.end)?;
        geom.check(K, channels.end, channels.len(), input, output)
    }
}

/// A direct (dense or grouped) convolution with any small kernel: the stem conv and
/// the fallback for convolutions no specialised kernel covers.
#[derive(Clone, Copy, Debug)]
pub struct Conv2d<'a> {
    /// Input channels.
    pub cin: usize,
    /// Output channels.
    pub cout: usize,
    /// Groups (`cin` and `cout` divide by it).
    pub groups: usize,
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// Vertical stride.
    pub stride_h: usize,
    /// Horizontal stride.
    pub stride_w: usize,
    /// `[cout][cin / groups][kh][kw]`.
    pub weights: &'a [f32],
    /// One bias per output channel.
    pub bias: &'a [f32],
    /// Clamp at zero after the bias.
    pub relu: bool,
}

impl<'a> Conv2d<'a> {
    /// A dense (`groups = 1`) 3x3 convolution with the same stride both ways, as the
    /// ShuffleNet stem (`cin = 3`, stride 2).
    pub fn dense_3x3(
        cin: usize,
        cout: usize,
        stride: usize,
        weights: &'a [f32],
        bias: &'a [f32],
        relu: bool,
    ) -> Self {
        Conv2d {
            cin,
            cout,
            groups: 1,
            kh: 3,
            kw: 3,
            stride_h: stride,
            stride_w: stride,
            weights,
            bias,
            relu,
        }
    }
}

impl Conv2d<'_> {
    /// Validates a call computing output channels `out_channels` (output plane `c`
    /// at `(c - out_channels.start) * out_stride`; the input holds all `cin` planes).
    pub fn check(
        &self,
        geom: &PlaneGeom,
        input: &[f32],
        output: &[f32],
        out_channels: &Range<usize>,
    ) -> Result<(), KernelError> {
        const K: &str = "conv2d";
        if self.groups == 0
            || !self.cin.is_multiple_of(self.groups)
            || !self.cout.is_multiple_of(self.groups)
        {
            return Err(err(K, "channels do not divide by groups"));
        }
        if self.kh == 0 || self.kw == 0 || self.stride_h == 0 || self.stride_w == 0 {
            return Err(err(K, "kernel and stride must be positive"));
        }
        if geom.pad_top >= self.kh || geom.pad_left >= self.kw {
            return Err(err(K, "padding as large as the kernel"));
        }
        if out_channels.end > self.cout {
            return Err(err(K, "output channels out of range"));
        }
        let per = mul_add(K, self.cin / self.groups, self.kh * self.kw, 0)?;
        need(
            K,
            "weights",
            self.weights.len(),
            mul_add(K, self.cout, per, 0)?,
        )?;
        need(K, "bias", self.bias.len(), self.cout)?;
        geom.check(K, self.cin, out_channels.len(), input, output)
    }
}

/// Pooling operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolKind {
    /// Maximum over the window's positions inside the input.
    Max,
    /// Average; the divisor counts padding positions when `count_include_pad`
    /// (positions inside `[-pad_top, in_h + pad_bottom)`, never beyond).
    Avg {
        /// ONNX `count_include_pad`.
        count_include_pad: bool,
    },
}

/// A window pooling of any size and stride.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool {
    /// Max or average.
    pub kind: PoolKind,
    /// Window height.
    pub kh: usize,
    /// Window width.
    pub kw: usize,
    /// Vertical stride.
    pub stride_h: usize,
    /// Horizontal stride.
    pub stride_w: usize,
    /// Padding rows below the input (counted by `count_include_pad`).
    pub pad_bottom: usize,
    /// Padding columns right of the input (counted by `count_include_pad`).
    pub pad_right: usize,
    /// Max pool only: clamp the outputs at zero. The max of a window of ReLU
    /// outputs is the ReLU of the window's max (NaN propagating in both), so a
    /// ReLU before a max pool moves behind it, onto a quarter of the values for a
    /// 3x3 stride-2 window.
    pub relu: bool,
}

impl Pool {
    /// Validates a call over `channels` (layout as for [`Depthwise3x3::check`]).
    pub fn check(
        &self,
        geom: &PlaneGeom,
        input: &[f32],
        output: &[f32],
        channels: &Range<usize>,
    ) -> Result<(), KernelError> {
        const K: &str = "pool";
        if self.kh == 0 || self.kw == 0 || self.stride_h == 0 || self.stride_w == 0 {
            return Err(err(K, "window and stride must be positive"));
        }
        if geom.pad_top >= self.kh || geom.pad_left >= self.kw {
            return Err(err(K, "padding as large as the window"));
        }
        if self.relu && self.kind != PoolKind::Max {
            return Err(err(K, "a ReLU only follows a max pool"));
        }
        geom.check(K, channels.end, channels.len(), input, output)
    }
}

/// A fully connected layer `out[o] = bias[o] + sum_i W[o][i] * x[i]`.
#[derive(Clone, Copy, Debug)]
pub struct Fc<'a> {
    /// Input features.
    pub inputs: usize,
    /// Output features.
    pub outputs: usize,
    /// `[outputs][inputs]`, row-major.
    pub weights: &'a [f32],
    /// One bias per output.
    pub bias: &'a [f32],
}

impl Fc<'_> {
    /// Validates the weights and the output length.
    pub fn check(&self, output: &[f32]) -> Result<(), KernelError> {
        const K: &str = "fc";
        need(
            K,
            "weights",
            self.weights.len(),
            mul_add(K, self.inputs, self.outputs, 0)?,
        )?;
        need(K, "bias", self.bias.len(), self.outputs)?;
        need(K, "output", output.len(), self.outputs)
    }
}

/// Global average pooling input: `channels` planes of `hw` pixels, `stride` apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Planes {
    /// Number of planes.
    pub channels: usize,
    /// Pixels per plane.
    pub hw: usize,
    /// Floats between planes.
    pub stride: usize,
}

impl Planes {
    /// Validates a buffer holding these planes.
    pub fn check(&self, kernel: &'static str, data: &[f32]) -> Result<(), KernelError> {
        if self.hw == 0 {
            return Err(err(kernel, "empty plane"));
        }
        if self.channels > 1 && self.stride < self.hw {
            return Err(err(kernel, "stride smaller than a plane"));
        }
        if self.channels > 0 {
            need(
                kernel,
                "input",
                data.len(),
                mul_add(kernel, self.channels - 1, self.stride, self.hw)?,
            )?;
        }
        Ok(())
    }
}
