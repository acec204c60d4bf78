//! 3x3 depthwise convolution, stride 1 and 2, pads 0..=2 top/left and any
//! bottom/right, bias and ReLU.
//!
//! Per plane, every input row is copied once into a padded scratch row (split into
//! even and odd columns for stride 2, see [`super::rows`]), so borders cost nothing
//! extra: every output vector is 9 FMAs on plain unaligned loads. Two output rows
//! are computed per pass from the 4 (stride 1) or 5 (stride 2) input rows they
//! share, which saves a quarter (stride 1) or a sixth (stride 2) of the loads; the 9
//! weights and the bias stay in registers for the whole plane. Each input row is
//! read from memory once and each output row written once.

use super::rows::{RowLayout, RowRing};
use super::simd::{load, store, store_first, Kernel, Level, SimdExt};
use crate::{Depthwise3x3, KernelError, PlaneGeom};
use std::ops::Range;

/// Convolves planes `channels` with the best level of this CPU; input plane `c` at
/// `c * in_stride`, output plane `c` at `(c - channels.start) * out_stride`.
pub fn dwconv3x3(
    p: &Depthwise3x3,
    g: &PlaneGeom,
    input: &[f32],
    output: &mut [f32],
    channels: Range<usize>,
) -> Result<(), KernelError> {
    dwconv3x3_at(Level::best(), p, g, input, output, channels)
}

/// [`dwconv3x3`] with a chosen instruction-set level.
pub fn dwconv3x3_at(
    level: Level,
    p: &Depthwise3x3,
    g: &PlaneGeom,
    input: &[f32],
    output: &mut [f32],
    channels: Range<usize>,
) -> Result<(), KernelError> {
    p.check(g, input, output, &channels)?;
    if channels.is_empty() || g.out_h == 0 || g.out_w == 0 {
        return Ok(());
    }
    level.run(Op {
        p,
        g,
        input,
        output,
        channels,
    });
    Ok(())
}

struct Op<'a, 'b> {
    p: &'a Depthwise3x3<'b>,
    g: &'a PlaneGeom,
    input: &'a [f32],
    output: &'a mut [f32],
    channels: Range<usize>,
}

/// Per-plane constants of the inner loop.
struct Plane<S: SimdExt> {
    w: [S::f32s; 9],
    bias: S::f32s,
    relu: bool,
    /// Offsets of the three taps inside a prepared row.
    taps: [usize; 3],
    /// Output width and plane size.
    out_w: usize,
    out_hw: usize,
    vecs: usize,
}

/// Computes `N` output rows (1 or 2) from `3 + (N - 1) * ST` prepared input rows.
/// Output row `i` is at `out + (y + i) * out_w`.
///
/// The row's last (partial) vector is done first with a full-width store that
/// spills into the next row, which the later stores of this pass or the next pass
/// overwrite; only a store that would leave the plane is cut to the row's end.
///
/// # Safety
/// Every `rows[j]` is a prepared row of the plane's layout; `out` is writable for
/// `out_hw` floats; `y + N <= out_h`.
#[inline(always)]
unsafe fn pass<S: SimdExt, const ST: usize, const N: usize>(
    simd: S,
    k: &Plane<S>,
    rows: &[*const f32; 5],
    out: *mut f32,
    y: usize,
) {
    let l = S::F32_LANES;
    let zero = simd.splat_f32s(0.0);
    let last = k.vecs - 1;
    for i in 0..k.vecs {
        // The partial vector (if any) first, then the others in order.
        let xv = if i == 0 { last } else { i - 1 };
        let x0 = xv * l;
        let mut acc = [k.bias; N];
        for (j, &row) in rows.iter().enumerate().take(3 + (N - 1) * ST) {
            for dx in 0..3 {
                // SAFETY: a prepared row holds `vecs * l + 2` (stride 1) or
                // `vecs * l + 1` per half (stride 2) floats past each tap origin.
                let v = unsafe { load::<S>(row.add(x0 + k.taps[dx])) };
                for (n, a) in acc.iter_mut().enumerate() {
                    let dy = j.wrapping_sub(n * ST);
                    if dy < 3 {
                        *a = simd.mul_add_e_f32s(k.w[dy * 3 + dx], v, *a);
                    }
                }
            }
        }
        for (n, &a) in acc.iter().enumerate() {
            let a = if k.relu { simd.max_f32s(a, zero) } else { a };
            let at = (y + n) * k.out_w + x0;
            // SAFETY: at + l <= out_hw for the full store; otherwise only the
            // row's remaining out_w - x0 < l floats are written.
            unsafe {
                if at + l <= k.out_hw {
                    store::<S>(out.add(at), a);
                } else {
                    store_first::<S>(out.add(at), a, k.out_w - x0);
                }
            }
        }
    }
}

impl Kernel for Op<'_, '_> {
    type Output = ();

    #[inline(always)]
    fn run<S: SimdExt>(self, simd: S) {
        let Op {
            p,
            g,
            input,
            output,
            channels,
        } = self;
        let l = S::F32_LANES;
        let st = p.stride;
        let lay = RowLayout::new(st, g.pad_left, g.in_w, g.out_w, l);
        let mut ring = RowRing::new(lay, 0.0);
        let taps = [lay.tap(0), lay.tap(1), lay.tap(2)];
        let (in_hw, out_hw) = (g.in_h * g.in_w, g.out_h * g.out_w);
        for c in channels.clone() {
            ring.reset();
            let plane = &input[c * g.in_stride..][..in_hw];
            let out = output[(c - channels.start) * g.out_stride..][..out_hw].as_mut_ptr();
            let wc = &p.weights[c * 9..c * 9 + 9];
            let k = Plane::<S> {
                w: core::array::from_fn(|i| simd.splat_f32s(wc[i])),
                bias: simd.splat_f32s(p.bias[c]),
                relu: p.relu,
                taps,
                out_w: g.out_w,
                out_hw,
                vecs: lay.vecs,
            };
            let mut y = 0;
            while y < g.out_h {
                let two = y + 1 < g.out_h;
                let iy0 = (y * st) as isize - g.pad_top as isize;
                let n = if two { 3 + st } else { 3 };
                let mut slots = [0usize; 5];
                for (j, s) in slots.iter_mut().enumerate().take(n) {
                    *s = ring.prepare(simd, plane, g.in_h, iy0 + j as isize);
                }
                let rows: [*const f32; 5] = core::array::from_fn(|j| ring.row(slots[j]));
                // SAFETY: rows come from the ring of this plane's layout; `out` holds
                // the plane's out_hw floats; y + (1 or 2) <= out_h.
                unsafe {
                    match (st, two) {
                        (1, true) => pass::<S, 1, 2>(simd, &k, &rows, out, y),
                        (1, false) => pass::<S, 1, 1>(simd, &k, &rows, out, y),
                        (_, true) => pass::<S, 2, 2>(simd, &k, &rows, out, y),
                        (_, false) => pass::<S, 2, 1>(simd, &k, &rows, out, y),
                    }
                }
                y += if two { 2 } else { 1 };
            }
        }
    }
}
