//! 3x3 depthwise convolution, stride 2, per plane: column sweeps
//! ([`super::sweep_s2`]) where inside the row each input row costs two `ld2`
//! (even/odd columns at the window start, even columns two later) and its taps
//! feed one or two outputs (nine lane FMAs each); border columns gather their taps
//! with `tbl`, and padding rows are never visited.

use super::common::{fma_taps, load_filter, start_taps, RowPlan};
use super::sweep_s2::{self, Op, Ops, Planes};
use super::sweep_s2_band::BandOp;
use crate::{Depthwise3x3, PlaneGeom};
use core::arch::aarch64::*;
use std::ops::Range;

/// The convolution of one plane as a window [`Op`] (ReLU after the bias when
/// `RELU`; `ZB`: the bias is zero, so an output starts with an `fmul`).
#[derive(Clone, Copy)]
struct Conv<const RELU: bool, const ZB: bool> {
    w: [float32x4_t; 3],
    bias: float32x4_t,
}

impl<const RELU: bool, const ZB: bool> Op for Conv<RELU, ZB> {
    type Row = [float32x4_t; 3];
    #[inline(always)]
    fn reduce(self, t: &[float32x4_t; 3]) -> [float32x4_t; 3] {
        *t
    }
    #[inline(always)]
    fn init(self) -> float32x4_t {
        self.bias
    }
    #[inline(always)]
    fn add(self, acc: float32x4_t, row: &[float32x4_t; 3], dy: usize) -> float32x4_t {
        fma_taps(acc, row, &self.w, dy)
    }
    #[inline(always)]
    fn start(self, row: &[float32x4_t; 3], dy: usize) -> float32x4_t {
        start_taps::<ZB>(self.bias, row, &self.w, dy)
    }
    #[inline(always)]
    fn finish(self, v: float32x4_t, _y: usize, _k: usize) -> float32x4_t {
        // SAFETY: register-only NEON arithmetic.
        unsafe {
            if RELU {
                vmaxq_f32(v, vdupq_n_f32(0.0))
            } else {
                v
            }
        }
    }
}

/// Filters and biases of the call's planes (plane `i` uses `w + 9 i`, `bias[i]`).
#[derive(Clone, Copy)]
struct Filters<const RELU: bool, const ZB: bool> {
    w: *const f32,
    bias: *const f32,
}

impl<const RELU: bool, const ZB: bool, const N: usize> Ops<N> for Filters<RELU, ZB> {
    type O = Conv<RELU, ZB>;
    #[inline(always)]
    unsafe fn op(self, i: usize, _x0: &[usize; N]) -> Conv<RELU, ZB> {
        // SAFETY: plane i of the call has its 9 weights and its bias (`check`).
        unsafe {
            Conv {
                w: load_filter(self.w.add(9 * i)),
                bias: vld1q_dup_f32(self.bias.add(i)),
            }
        }
    }
}

/// Convolves planes `channels` (contract of the scalar twin, `check` already
/// passed). Returns `false`, having written nothing, when the geometry is outside
/// the fast path (see [`RowPlan::new`]); the caller then runs the scalar twin.
/// `zb`: every bias of the call is zero (outputs start with an `fmul`).
pub(crate) fn run(
    p: &Depthwise3x3,
    g: &PlaneGeom,
    input: &[f32],
    output: &mut [f32],
    channels: Range<usize>,
    zb: bool,
) -> bool {
    if g.out_h == 0 || g.out_w == 0 || channels.is_empty() {
        return true;
    }
    // Body steps read columns 2 x0 - pad_left .. + 9 (two `ld2`), inside the row;
    // so may the overlapping last step.
    // Borrowed, not moved out of the option: no copy of the plan.
    let plan = RowPlan::new(g.out_w, g.in_w, g.pad_left, 2, (9, true), 4);
    let Some(plan) = plan.as_ref() else {
        return false;
    };
    // SAFETY: `check` proved input planes `channels` (`in_h * in_w` floats at
    // `c * in_stride`), output planes `0 .. channels.len()` (`out_h * out_w` floats
    // at `i * out_stride`), `9 * channels.end` weights and `channels.end` biases
    // are inside their buffers; the plan keeps every load inside its row and every
    // store inside its output row.
    unsafe {
        let pl = Planes {
            src: input.as_ptr().add(channels.start * g.in_stride),
            in_stride: g.in_stride,
            dst: output.as_mut_ptr(),
            out_stride: g.out_stride,
            n: channels.len(),
            in_w: g.in_w,
            in_h: g.in_h,
            out_w: g.out_w,
            out_h: g.out_h,
        };
        let (w, bias) = (
            p.weights.as_ptr().add(9 * channels.start),
            p.bias.as_ptr().add(channels.start),
        );
        let (pl, plan, l, z) = (&pl, &plan, g.pad_left, vdupq_n_f32(0.0));
        macro_rules! go {
            ($relu:literal, $zb:literal) => {{
                let f = Filters::<$relu, $zb> { w, bias };
                let b = BandOp::Conv {
                    w,
                    bias,
                    zero_bias: $zb,
                    relu: $relu,
                };
                match g.pad_top {
                    0 => sweep_s2::run::<_, false, 0>(pl, plan, l, z, f, Some(b)),
                    1 => sweep_s2::run::<_, false, 1>(pl, plan, l, z, f, Some(b)),
                    _ => sweep_s2::run::<_, false, 2>(pl, plan, l, z, f, Some(b)),
                }
            }};
        }
        match (p.relu, zb) {
            (false, false) => go!(false, false),
            (false, true) => go!(false, true),
            (true, false) => go!(true, false),
            (true, true) => go!(true, true),
        }
    }
    true
}
