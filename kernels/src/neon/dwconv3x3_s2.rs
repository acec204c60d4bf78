//! 3x3 depthwise convolution, stride 2, per plane: column sweeps
//! ([`super::sweep_s2`]) where inside the row each input row costs two `ld2`
//! (even/odd columns at the window start, even columns two later) and the taps
//! feed one or two outputs (nine lane FMAs per output), border columns gather
//! their taps with `tbl`, and padding rows are never visited.

use super::common::{fma_taps, load_filter, RowPlan};
use super::sweep_s2::{sweep, Body, Edge, Op};
use crate::{Depthwise3x3, PlaneGeom};
use core::arch::aarch64::*;
use std::ops::Range;

/// The convolution of one plane as a window [`Op`] (ReLU after the bias when
/// `RELU`).
#[derive(Clone, Copy)]
struct Conv<const RELU: bool> {
    w: [float32x4_t; 3],
    bias: float32x4_t,
}

impl<const RELU: bool> Op for Conv<RELU> {
    type Row = [float32x4_t; 3];
    #[inline(always)]
    fn reduce(self, t: [float32x4_t; 3]) -> [float32x4_t; 3] {
        t
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
    fn finish(self, v: float32x4_t, _y: usize) -> float32x4_t {
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

/// Convolves planes `channels` (contract of the scalar twin, `check` already
/// passed). Returns `false`, having written nothing, when the geometry is outside
/// the fast path (see [`RowPlan::new`]); the caller then runs the scalar twin.
pub(crate) fn run(
    p: &Depthwise3x3,
    g: &PlaneGeom,
    input: &[f32],
    output: &mut [f32],
    channels: Range<usize>,
) -> bool {
    if g.out_h == 0 || g.out_w == 0 || channels.is_empty() {
        return true;
    }
    // Body steps read columns 2 x0 - pad_left .. + 10 (two `ld2`), inside the row.
    let Some(plan) = RowPlan::new(g.out_w, g.in_w, g.pad_left, 2, 10, 4) else {
        return false;
    };
    if p.relu {
        planes::<true>(p, g, input, output, channels, &plan);
    } else {
        planes::<false>(p, g, input, output, channels, &plan);
    }
    true
}

/// The column sweeps of every plane.
fn planes<const RELU: bool>(
    p: &Depthwise3x3,
    g: &PlaneGeom,
    input: &[f32],
    output: &mut [f32],
    channels: Range<usize>,
    plan: &RowPlan,
) {
    for c in channels.clone() {
        let op = Conv::<RELU> {
            // SAFETY: `check` proved `weights` holds `9 * channels.end` floats.
            w: unsafe { load_filter(p.weights.as_ptr().add(9 * c)) },
            // SAFETY: register-only broadcast.
            bias: unsafe { vdupq_n_f32(p.bias[c]) },
        };
        // SAFETY: `check` proved input plane `c` (`in_h * in_w` floats at
        // `c * in_stride`) and output plane `c - channels.start` (`out_h * out_w`
        // floats at `(c - start) * out_stride`) are inside their buffers; every
        // step has `x0 + 4 <= out_w` and its loads inside the row (`RowPlan`).
        unsafe {
            let src = input.as_ptr().add(c * g.in_stride);
            let dst = output.as_mut_ptr().add((c - channels.start) * g.out_stride);
            let (iw, ih, ow, oh, pt) = (g.in_w, g.in_h, g.out_w, g.out_h, g.pad_top);
            for s in 0..plan.body_steps {
                let x0 = plan.body_x0 + 4 * s;
                let t = Body {
                    col: 2 * x0 - g.pad_left,
                };
                sweep(src, iw, ih, dst.add(x0), ow, oh, pt, t, op);
            }
            for e in &plan.edges[..plan.n_edges] {
                let t = Edge::<false> {
                    offs: e.offs,
                    idx: e.idx,
                    fill: op.bias,
                };
                sweep(src, iw, ih, dst.add(e.x0), ow, oh, pt, t, op);
            }
        }
    }
}
