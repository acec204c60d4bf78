//! 3x3 depthwise convolution, stride 1 and 2, pads 0..=2 top/left and any
//! bottom/right, bias and ReLU.
//!
//! Per plane (or band of rows of a large plane), every input row is copied once into
//! padded scratch planes (split by row and column parity for stride 2), laid out so
//! that each of the 9 taps of every output is at a fixed offset from it (see
//! [`super::rows::Flat`]). Borders then cost nothing extra, and the whole band is
//! one flat vector loop: 9 loads and 9 FMAs (three chains of three) per output
//! vector, weights and bias in registers, no per-row branches; the real columns are
//! then copied out. Each input row is read from memory once and each output row
//! written once; the scratch stays in L1 (bands of about 24 KB).
//!
//! Measured (AVX2, best of 300, Zen 3): stride 1, 60 x 28x28: 28 GFLOP/s; 60 x
//! 90x160: 33; stride 2, 60 x 56x56: 16. The flat loop itself runs near the FMA
//! bound; the rest is the copy in and out (the stride-2 copy also splits columns),
//! which a row-by-row variant with two output rows per pass did not beat (it was
//! 11-20 GFLOP/s: per-row loop overhead on 28-wide rows).

use super::rows::Flat;
use super::simd::{load, relu, store, Kernel, Level, SimdExt};
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

/// The flat loop: `len` output positions (whole vectors; the scratch has room)
/// from the prepared input at `src` with tap offsets `taps`.
///
/// # Safety
/// `src + taps[t] + q .. + LANES` is readable for every tap and every `q < len`
/// (rounded up to a vector); `out .. out + len` (rounded up) is writable.
#[inline(always)]
unsafe fn flat<S: SimdExt, const RELU: bool>(
    simd: S,
    src: *const f32,
    taps: &[usize; 9],
    w: &[S::f32s; 9],
    bias: S::f32s,
    out: *mut f32,
    len: usize,
) {
    let l = S::F32_LANES;
    let p: [*const f32; 9] = core::array::from_fn(|t| src.wrapping_add(taps[t]));
    let mut q = 0;
    while q < len {
        // SAFETY: the caller's contract.
        unsafe {
            // (A macro, not a closure: a closure would be compiled without the
            // level's target features.)
            macro_rules! x {
                ($t:expr) => {
                    load::<S>(p[$t].add(q))
                };
            }
            // Three partial sums (one per kernel row): chains of 3 FMAs.
            let mut a0 = simd.mul_add_e_f32s(w[0], x!(0), bias);
            let mut a1 = simd.mul_f32s(w[3], x!(3));
            let mut a2 = simd.mul_f32s(w[6], x!(6));
            a0 = simd.mul_add_e_f32s(w[1], x!(1), a0);
            a1 = simd.mul_add_e_f32s(w[4], x!(4), a1);
            a2 = simd.mul_add_e_f32s(w[7], x!(7), a2);
            a0 = simd.mul_add_e_f32s(w[2], x!(2), a0);
            a1 = simd.mul_add_e_f32s(w[5], x!(5), a1);
            a2 = simd.mul_add_e_f32s(w[8], x!(8), a2);
            let mut a = simd.add_f32s(simd.add_f32s(a0, a1), a2);
            if RELU {
                a = relu(simd, a);
            }
            store::<S>(out.add(q), a);
        }
        q += l;
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
        let mut fl = Flat::new(p.stride, g, S::F32_LANES, 0.0, false);
        let taps = fl.taps();
        let (in_hw, out_hw) = (g.in_h * g.in_w, g.out_h * g.out_w);
        for c in channels.clone() {
            let plane = &input[c * g.in_stride..][..in_hw];
            let out_plane = &mut output[(c - channels.start) * g.out_stride..][..out_hw];
            let mut w = [simd.splat_f32s(0.0); 9];
            for (wv, &x) in w.iter_mut().zip(&p.weights[c * 9..c * 9 + 9]) {
                *wv = simd.splat_f32s(x);
            }
            let bias = simd.splat_f32s(p.bias[c]);
            let mut y0 = 0;
            while y0 < g.out_h {
                let rows = fl.band().min(g.out_h - y0);
                fl.load(simd, plane, y0, rows);
                let len = fl.flat_len(rows);
                let src = fl.src();
                let out = fl.out().as_mut_ptr();
                // SAFETY: Flat's planes hold every tap of the flat positions of
                // `rows` band rows plus a vector of slack, its output scratch
                // `band * wq + LANES` floats.
                unsafe {
                    if p.relu {
                        flat::<S, true>(simd, src, &taps, &w, bias, out, len);
                    } else {
                        flat::<S, false>(simd, src, &taps, &w, bias, out, len);
                    }
                }
                fl.store(simd, out_plane, y0, rows, None);
                y0 += rows;
            }
        }
    }
}
