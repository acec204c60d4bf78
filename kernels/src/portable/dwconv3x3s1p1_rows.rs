//! 3x3 depthwise convolution, stride 1, one padding column each side (`out_w ==
//! in_w`), rows of any length, output row by output row.
//!
//! Per output vector (`LANES` columns from `x0`) each of the three input rows is
//! loaded once, at column `x0`, and its three tap columns are summed over the rows
//! first: `L` (left taps), `C` (centre taps, from the bias) and `R` (right taps),
//! 9 FMAs. The left taps of output `x` read column `x - 1`: `L` moved up one lane,
//! with the previous vector's last `L` in lane 0 (zero at the row's start: the
//! padding); the right taps read `x + 1`: `R` moved down one lane, with the next
//! vector's first `R` in the last lane (zero past the row). So a vector costs
//! three loads, 9 FMAs, two two-source permutes and two adds; the next vector's
//! sums are computed before this one's output. Rows outside the plane read a row
//! of zeros; the last vector of a row loads only the columns the row has.
//!
//! The direct stride-1 path it replaces where it pays ([`pays`]; see
//! [`dwconv3x3`](mod@super::dwconv3x3)) read the 9 taps as 9 unaligned vector loads (6 of them
//! across a cache line for most vectors), about 21 cycles per AVX-512 output
//! vector on Zen 4 against 9 FMAs. In the network (paired rounds of whole runs,
//! an identical binary as control): 0.5x g = 3 at 480x640 0.966 of the time
//! (control 0.990), at 720x1280 0.964 (control 1.014); 2x 0.994 (0.997) and
//! 0.993 (1.013); 224x224 unchanged (its planes take the small-plane path).

use super::dwconv3x3::channel_taps;
use super::rows::{planes, store_in_plane};
use super::simd::{load, u32_table, up_one_lane, Kernel, Level, SimdExt};
use crate::scratch;
use crate::{Depthwise3x3, PlaneGeom};
use std::ops::Range;

/// Whether [`Rows`] computes this convolution: stride 1, one padding column each
/// side (padding rows are free).
pub(crate) fn fits(p: &Depthwise3x3, g: &PlaneGeom) -> bool {
    p.stride == 1 && g.pad_left == 1 && g.out_w == g.in_w && g.in_w > 0
}

/// Whether [`Rows`] is the faster stride-1 path at `level`: at AVX-512 for rows of
/// any length, elsewhere for rows of at least 32 floats. Probe, Zen 4, best of N,
/// us, flat path / this one: AVX-512, 60 x 90x160 283.9 / 150.6, 120 x 45x80
/// 156.7 / 79.5, 240 x 23x40 87.2 / 57.4 (the AVX-512 rows also beat AVX2's 81);
/// AVX2, 60 x 90x160 320.8 / 267.6, 120 x 45x80 151.4 / 143.2, 240 x 23x40 81.4 /
/// 81.0, 60 x 28x28 20.3 / 20.7, 120 x 14x14 10.9 / 12.9.
pub(crate) fn pays(level: Level, g: &PlaneGeom) -> bool {
    level.lanes() >= 16 || g.in_w >= 32
}

/// The permutes of the left and right tap sums: `(prev, cur)` to lanes
/// `prev[l - 1], cur[0 .. l - 1]`, and `(cur, next)` to `cur[1 ..], next[0]`.
fn shift_tables<S: SimdExt>() -> (S::u32s, S::u32s) {
    let l = S::F32_LANES;
    let mut right = [0u32; 16];
    for (i, v) in right.iter_mut().enumerate().take(l) {
        *v = (i + 1) as u32;
    }
    (up_one_lane::<S>(), u32_table::<S>(&right))
}

/// One output row: input rows `rows` (the three window rows, each at least `wd`
/// floats), `nv` vectors of which the last holds `last` columns, into `out_plane`
/// from `o`.
///
/// # Safety
/// Every `rows[dy] .. + wd` is readable, `wd = (nv - 1) LANES + last`,
/// `1 <= last <= LANES`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn row<S: SimdExt, const RELU: bool>(
    simd: S,
    rows: &[*const f32; 3],
    (nv, last): (usize, usize),
    w: &[S::f32s; 9],
    bias: S::f32s,
    (to_left, to_right): (S::u32s, S::u32s),
    out_plane: &mut [f32],
    (o, wd): (usize, usize),
) {
    let l = S::F32_LANES;
    let zero = simd.splat_f32s(0.0);
    // (A macro, not a closure: out of line a closure would run without the
    // level's target features.) The tap sums of vector `$j` (`$n` columns).
    macro_rules! sums {
        ($j:expr, $n:expr) => {{
            let at = $j * l;
            // SAFETY: columns at .. at + n of each row are inside it (the
            // contract: n = LANES before the last vector, `last` for it).
            let a = unsafe {
                if $n == l {
                    [
                        load::<S>(rows[0].add(at)),
                        load::<S>(rows[1].add(at)),
                        load::<S>(rows[2].add(at)),
                    ]
                } else {
                    [
                        simd.load_prefix(rows[0].add(at), $n),
                        simd.load_prefix(rows[1].add(at), $n),
                        simd.load_prefix(rows[2].add(at), $n),
                    ]
                }
            };
            let mut left = simd.mul_f32s(w[0], a[0]);
            let mut centre = simd.mul_add_e_f32s(w[1], a[0], bias);
            let mut right = simd.mul_f32s(w[2], a[0]);
            left = simd.mul_add_e_f32s(w[3], a[1], left);
            centre = simd.mul_add_e_f32s(w[4], a[1], centre);
            right = simd.mul_add_e_f32s(w[5], a[1], right);
            left = simd.mul_add_e_f32s(w[6], a[2], left);
            centre = simd.mul_add_e_f32s(w[7], a[2], centre);
            right = simd.mul_add_e_f32s(w[8], a[2], right);
            (left, centre, right)
        }};
    }
    let width = |j: usize| if j + 1 < nv { l } else { last };
    let mut prev_left = zero;
    let (mut left, mut centre, mut right) = sums!(0, width(0));
    for j in 0..nv {
        let (nl, nc, nr) = if j + 1 < nv {
            sums!(j + 1, width(j + 1))
        } else {
            (zero, zero, zero)
        };
        let lt = simd.permute2(prev_left, left, to_left);
        let rt = simd.permute2(right, nr, to_right);
        let mut v = simd.add_f32s(simd.add_f32s(centre, lt), rt);
        if RELU {
            v = simd.relu(v);
        }
        store_in_plane::<S>(out_plane, o + j * l, wd - j * l, v);
        prev_left = left;
        (left, centre, right) = (nl, nc, nr);
    }
}

/// The convolution of planes `channels` row by row (arguments checked by the
/// caller, geometry [`fits`]), as a [`Kernel`] for [`super::Level::run`].
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
        let (l, wd) = (S::F32_LANES, g.in_w);
        let nv = wd.div_ceil(l);
        let last = wd - (nv - 1) * l;
        let tables = shift_tables::<S>();
        let zeros = scratch::take(wd, 0.0f32);
        for (c, plane, out_plane) in planes(g, input, output, channels) {
            let (w, bias) = channel_taps(simd, p, c);
            for y in 0..g.out_h {
                let mut rows = [zeros.as_ptr(); 3];
                for (dy, r) in rows.iter_mut().enumerate() {
                    let iy = (y + dy) as isize - g.pad_top as isize;
                    if iy >= 0 && (iy as usize) < g.in_h {
                        let iy = iy as usize;
                        *r = plane[iy * wd..(iy + 1) * wd].as_ptr();
                    }
                }
                // SAFETY: every pointer starts wd readable floats (a plane row or
                // the zero row), wd = (nv - 1) l + last with 1 <= last <= l.
                unsafe {
                    row::<S, RELU>(
                        simd,
                        &rows,
                        (nv, last),
                        &w,
                        bias,
                        tables,
                        out_plane,
                        (y * wd, wd),
                    )
                };
            }
        }
    }
}
