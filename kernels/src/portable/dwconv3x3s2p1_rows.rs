//! 3x3 depthwise convolution, stride 2, left padding 1, rows of any length,
//! output row by output row.
//!
//! Output column `x` reads input columns `2x - 1, 2x, 2x + 1`. Per output vector
//! (`LANES` columns from `x0`) each of the three input rows is loaded as two
//! vectors from column `2 x0` and split once into its even columns `E` (`2x`) and
//! odd columns `O` (`2x + 1`); the centre taps weight `E`, the right taps `O`, and
//! the left taps (`2x - 1`) weight `O` too: their row sum, moved up one lane with
//! the previous vector's last lane in lane 0 (zero at the row's start: the
//! padding). So a vector costs six loads, three splits, 9 FMAs and one two-source
//! permute; no load starts before a row, and the last vector of a row loads only
//! the columns the row has (zero past it: the right padding). Rows outside the
//! plane read a row of zeros.
//!
//! The direct stride-2 path ([`dwconv3x3`](mod@super::dwconv3x3)) loaded each row four times per
//! output vector (at the window start and one column on, most loads across a cache
//! line) and split it twice. Probe, Zen 4, best of N, us, that path / this one:
//! AVX-512 60 x 180x320 498 / 383 (its 13.8 MB input comes from memory), 120 x
//! 90x160 261 / 140, 240 x 45x80 165 / 83; AVX2 609 / 468, 314 / 192, 162 / 87,
//! 60 x 56x56 39.9 / 23.8 (at AVX-512 the small-plane path keeps that one). In
//! the network (paired rounds, identical control): 0.5x g = 3 at 480x640 0.987
//! (control 0.994), at 720x1280 0.983 (0.998); 2x 1.000 (0.999) and 0.999
//! (0.998).

use super::dwconv3x3::channel_taps;
use super::pool3x3s2p1::{self, row_split};
use super::rows::{planes, store_in_plane};
use super::simd::{load, up_one_lane, Kernel, SimdExt};
use crate::scratch;
use crate::{Depthwise3x3, PlaneGeom};
use std::ops::Range;

/// Whether [`Rows`] computes this convolution: stride 2, left padding 1, and no
/// output column whose window lies wholly right of the row.
pub(crate) fn fits(p: &Depthwise3x3, g: &PlaneGeom) -> bool {
    p.stride == 2 && pool3x3s2p1::fits(g)
}

/// One output row from the window rows `rows` (each at least `in_w` floats):
/// `whole` vectors whose loads lie inside the row, then `tail` (the columns of
/// the last vector's two loads inside the row) if the row has one more.
///
/// # Safety
/// Every `rows[dy] .. + in_w` is readable, `2 LANES whole <= in_w`, and with a
/// tail `2 LANES whole + na + nb <= in_w`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn row<S: SimdExt, const RELU: bool>(
    simd: S,
    rows: &[*const f32; 3],
    whole: usize,
    tail: Option<(usize, usize)>,
    w: &[S::f32s; 9],
    bias: S::f32s,
    to_left: S::u32s,
    out_plane: &mut [f32],
    (o, out_w): (usize, usize),
) {
    let l = S::F32_LANES;
    let zero = simd.splat_f32s(0.0);
    // Lane `LANES - 1`: the left taps' sum for the next vector's lane 0.
    let mut prev_left = zero;
    // (Macros, not closures: out of line a closure would run without the level's
    // target features.) `vector!` computes output vector `$j` from the rows' two
    // vectors `$load` gives at row start `$p`, stores it, and gives its left
    // taps' sum.
    macro_rules! vector {
        ($j:expr, $p:ident => $load:expr) => {{
            let mut left = zero;
            let mut centre = bias;
            let mut right = zero;
            for (dy, &$p) in rows.iter().enumerate() {
                let (a, b) = $load;
                let (e, od) = simd.split_even_odd(a, b);
                left = simd.mul_add_e_f32s(w[3 * dy], od, left);
                centre = simd.mul_add_e_f32s(w[3 * dy + 1], e, centre);
                right = simd.mul_add_e_f32s(w[3 * dy + 2], od, right);
            }
            let lt = simd.permute2(prev_left, left, to_left);
            let mut v = simd.add_f32s(simd.add_f32s(centre, right), lt);
            if RELU {
                v = simd.relu(v);
            }
            let x0 = $j * l;
            store_in_plane::<S>(out_plane, o + x0, out_w - x0, v);
            left
        }};
    }
    for j in 0..whole {
        let c = 2 * l * j;
        // SAFETY: columns c .. c + 2 l <= 2 l whole of each row (the contract).
        prev_left = vector!(j, p => unsafe { (load::<S>(p.add(c)), load::<S>(p.add(c + l))) });
    }
    if let Some((na, nb)) = tail {
        let c = 2 * l * whole;
        // SAFETY: the row holds na columns from c and nb from c + l (the
        // contract).
        vector!(whole, p => unsafe {
            (simd.load_prefix(p.add(c), na), simd.load_prefix(p.add(c + l), nb))
        });
    }
}

/// The convolution of planes `channels` row by row (arguments checked by the
/// caller, geometry [`fits`]), as a [`Kernel`] for [`super::Level::run`]. (Its
/// plane and row loops mirror the stride-1 path's; one driver shared through a
/// trait measured 5-8% slower on the stride-1 rows, so each path keeps its own.)
pub(crate) struct Rows<'a> {
    pub p: &'a Depthwise3x3<'a>,
    pub g: &'a PlaneGeom,
    pub input: &'a [f32],
    pub output: &'a mut [f32],
    pub channels: Range<usize>,
}

impl Kernel for Rows<'_> {
    type Output = ();

    #[inline(always)]
    fn run<S: SimdExt>(self, simd: S) {
        if self.p.relu {
            self.run_relu::<S, true>(simd)
        } else {
            self.run_relu::<S, false>(simd)
        }
    }
}

impl Rows<'_> {
    #[inline(always)]
    fn run_relu<S: SimdExt, const RELU: bool>(self, simd: S) {
        let Rows {
            p,
            g,
            input,
            output,
            channels,
        } = self;
        let l = S::F32_LANES;
        let (in_w, out_w) = (g.in_w, g.out_w);
        let (whole, tail) = row_split(g, l);
        let to_left = up_one_lane::<S>();
        let zeros = scratch::take(in_w, 0.0f32);
        for (c, plane, out_plane) in planes(g, input, output, channels) {
            let (w, bias) = channel_taps(simd, p, c);
            for y in 0..g.out_h {
                let mut rows = [zeros.as_ptr(); 3];
                for (dy, r) in rows.iter_mut().enumerate() {
                    let iy = (2 * y + dy) as isize - g.pad_top as isize;
                    if iy >= 0 && (iy as usize) < g.in_h {
                        let iy = iy as usize;
                        *r = plane[iy * in_w..(iy + 1) * in_w].as_ptr();
                    }
                }
                // SAFETY: every pointer starts in_w readable floats (a plane row
                // or the zero row); whole and tail are within in_w by
                // construction.
                unsafe {
                    row::<S, RELU>(
                        simd,
                        &rows,
                        whole,
                        tail,
                        &w,
                        bias,
                        to_left,
                        out_plane,
                        (y * out_w, out_w),
                    )
                };
            }
        }
    }
}
