//! Max and average pooling 3x3, stride 2, left padding 1 (the pool after
//! ShuffleNet's stem, and the shortcut pool of its stride-2 units), input rows
//! read in place.
//!
//! The window of output column `x` is input columns `2x - 1, 2x, 2x + 1`. Per
//! output vector (`LANES` columns from `x0`) each input row of the window is read
//! as two vectors from column `2 x0`, the rows are reduced first (max or sum),
//! and the result is split once into its even columns `E` (`2x`) and odd columns
//! `O` (`2x + 1`). The third tap, column `2x - 1`, is `O` moved up one lane with
//! the previous vector's last odd column in lane 0 (the padding value at the
//! row's start). So a vector costs two loads per row, one split and one
//! two-source permute, and no load starts before a row (no padded copies); the
//! last vector of a row loads only the columns the row has and fills the rest
//! with the padding value (`-inf` for max, zero for average). Average pooling
//! then scales by the reciprocal window counts per column and per row, as the
//! general path does.
//!
//! NaN and infinities (max pooling): a vector `max` does not propagate NaN from
//! both operands, so every loaded vector is also multiplied by zero and summed
//! per input row (NaN exactly when the row holds a NaN or an infinity), and an
//! output row reading such a row is recomputed exactly by the scalar loop. Each
//! input row is checked once, by the first output row that reads it. The
//! general path checks blocks of rows in a pass of their own, which cost more
//! than the pooling itself.
//!
//! Measured (Zen 4, best of N in the probe; before = the general stride-2 path
//! at the level [`super::Level::for_rows`] picks):
//! - max 24 x 112x112 56.7-57.4 -> 33.0-33.3 us (25.8 without any NaN check:
//!   the general path's check pass took 34 of its 57 us); in the network, 0.5x
//!   g = 3 at 224x224, the max pool stage 28.7-28.9 -> 16.6-17.7 us, the whole
//!   network 0.982 of the time in paired rounds (control 0.997), 480x640 0.992
//!   (control 1.009), 2x 224x224 0.993 (control 0.991); the 720x1280 probe shape
//!   (22 MB input, memory-bound) unchanged within noise (1130-1141 -> 1159-1169);
//! - average, AVX-512: 24 x 180x320 189 -> 120 us, 240 x 90x160 667 -> 365, 480 x
//!   45x80 299 -> 177; AVX2 179 -> 128, 634 -> 449, 305 -> 143, 24 x 56x56 14.5
//!   -> 7.0 (small planes keep the small-plane path at AVX-512); in the network
//!   0.5x at 720x1280 0.983 (control 1.011), 480x640 0.995 (0.994: there the
//!   shortcut pools run in short bands paired with their units), 224x224
//!   unchanged.

use super::pool::{exact_max_row, s2_scales};
use super::rows::{planes, store_in_plane};
use super::simd::{blend, load, u32_table, up_one_lane, Kernel, SimdExt};
use crate::{PlaneGeom, Pool, PoolKind};
use std::ops::Range;

/// Whether [`S2Pool`] computes planes of this geometry: left padding 1, and no
/// output column whose window lies wholly right of the row (3x3 windows and
/// stride 2 both ways are the caller's to check).
pub(crate) fn fits(g: &PlaneGeom) -> bool {
    g.pad_left == 1 && g.in_w > 0 && g.out_w > 0 && 2 * (g.out_w - 1) <= g.in_w
}

/// The lane mask of the first `n` lanes (all-ones bits), as floats for [`blend`].
#[inline(always)]
fn prefix_mask<S: SimdExt>(simd: S, n: usize) -> S::f32s {
    let mut t = [0u32; 16];
    for v in t.iter_mut().take(n) {
        *v = u32::MAX;
    }
    simd.transmute_f32s_u32s(u32_table::<S>(&t))
}

/// The vector's loads past whole ones: the last vector of a row holds `na` and
/// `nb` columns of the row in its two loads (fewer than `2 LANES` together).
#[derive(Clone, Copy)]
struct Tail<S: SimdExt> {
    na: usize,
    nb: usize,
    ma: S::f32s,
    mb: S::f32s,
}
/// One output row from the `N` input rows of its window inside the plane, into
/// `out_plane` from `o` (`out_w` floats): `whole` vectors with whole loads, then
/// the `tail` vector if any. Gives, for rows `SKIP..N`, whether the row holds a
/// NaN or an infinity (every loaded vector times zero is summed per row and
/// half: NaN exactly then); rows below `SKIP` are not checked (`false`).
///
/// # Safety
/// Every `rows[r]` (`r < N`) is the start of an input row of at least
/// `2 LANES whole` floats, and of `2 LANES whole + na + nb` with a tail.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn max_row<S: SimdExt, const N: usize, const SKIP: usize>(
    simd: S,
    rows: &[*const f32; 3],
    whole: usize,
    tail: Option<Tail<S>>,
    shift: S::u32s,
    out_plane: &mut [f32],
    o: usize,
    out_w: usize,
) -> [bool; 3] {
    let l = S::F32_LANES;
    let (ninf, zero) = (simd.splat_f32s(f32::NEG_INFINITY), simd.splat_f32s(0.0));
    // Lane `LANES - 1`: column 2 x0 - 1 of the next vector.
    let mut carry = ninf;
    let mut check = [[zero; 2]; 3];
    // (Macros, not closures: out of line a closure would run without the level's
    // target features.) `reduce!` takes the rows' two vectors at column `c`
    // (`$load` gives them from row start `$p`; they are checked), `emit!` stores one output vector and gives
    // its odd columns.
    macro_rules! reduce {
        ($p:ident => $load:expr) => {{
            let (mut a, mut b) = (ninf, ninf);
            for (r, &$p) in rows[..N].iter().enumerate() {
                let (x, y) = $load;
                if r >= SKIP {
                    check[r][0] = simd.mul_add_e_f32s(x, zero, check[r][0]);
                    check[r][1] = simd.mul_add_e_f32s(y, zero, check[r][1]);
                }
                (a, b) = if r == 0 {
                    (x, y)
                } else {
                    (simd.max_f32s(a, x), simd.max_f32s(b, y))
                };
            }
            (a, b)
        }};
    }
    macro_rules! emit {
        ($x0:expr, $a:expr, $b:expr) => {{
            let (e, od) = simd.split_even_odd($a, $b);
            let left = simd.permute2(carry, od, shift);
            let v = simd.max_f32s(simd.max_f32s(e, od), left);
            store_in_plane::<S>(out_plane, o + $x0, out_w - $x0, v);
            od
        }};
    }
    for j in 0..whole {
        let c = 2 * l * j;
        // SAFETY: columns c .. c + 2 l <= 2 l whole of each row (the contract).
        let (a, b) = reduce!(p => unsafe { (load::<S>(p.add(c)), load::<S>(p.add(c + l))) });
        carry = emit!(j * l, a, b);
    }
    if let Some(t) = tail {
        let c = 2 * l * whole;
        // SAFETY: the row holds na columns from c and nb from c + l (nb > 0 only
        // when na = l), the contract's extent.
        let (a, b) = reduce!(p => unsafe {
            (simd.load_prefix(p.add(c), t.na), simd.load_prefix(p.add(c + l), t.nb))
        });
        // The columns past the row are the right padding.
        emit!(
            whole * l,
            blend(simd, ninf, a, t.ma),
            blend(simd, ninf, b, t.mb)
        );
    }
    let mut flags = [false; 3];
    for (f, c) in flags.iter_mut().zip(&check).take(N).skip(SKIP) {
        *f = simd.reduce_sum_f32s(simd.add_f32s(c[0], c[1])).is_nan();
    }
    flags
}

/// Max or average pooling 3x3, stride 2, of planes `channels` whose geometry
/// [`fits`] (arguments checked by the caller), as a [`Kernel`] for
/// [`super::Level::run`].
pub(crate) struct S2Pool<'a> {
    pub p: &'a Pool,
    pub g: &'a PlaneGeom,
    pub input: &'a [f32],
    pub output: &'a mut [f32],
    pub channels: Range<usize>,
}

impl Kernel for S2Pool<'_> {
    type Output = ();

    #[inline(always)]
    fn run<S: SimdExt>(self, simd: S) {
        let S2Pool {
            p,
            g,
            input,
            output,
            channels,
        } = self;
        if p.kind == PoolKind::Max {
            max_pool(simd, g, input, output, channels);
        } else {
            avg_pool(simd, p, g, input, output, channels);
        }
    }
}

/// The vectors of a row with whole loads, and the columns of the last vector's
/// two loads inside the row when it has one more ([`fits`] leaves at most one).
pub(super) fn row_split(g: &PlaneGeom, l: usize) -> (usize, Option<(usize, usize)>) {
    let vecs = g.out_w.div_ceil(l);
    // Only the last vector can load past the row: the one before ends at column
    // 2 l (vecs - 1) <= 2 (out_w - 1) <= in_w ([`fits`]).
    let rem = g.in_w.saturating_sub(2 * l * (vecs - 1));
    if rem >= 2 * l {
        (vecs, None)
    } else {
        (vecs - 1, Some((rem.min(l), rem.saturating_sub(l))))
    }
}

/// One output row of average pooling from the `N` input rows of its window
/// inside the plane (as [`max_row`], summed; zero past the row), scaled by the
/// column table `inv_col` (from `o`'s column 0) and the row's `fy`.
///
/// # Safety
/// As [`max_row`]; `inv_col .. + LANES (whole + 1)` is readable.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn avg_row<S: SimdExt, const N: usize>(
    simd: S,
    rows: &[*const f32; 3],
    (whole, tail): (usize, Option<(usize, usize)>),
    shift: S::u32s,
    (inv_col, fy): (*const f32, S::f32s),
    out_plane: &mut [f32],
    (o, out_w): (usize, usize),
) {
    let l = S::F32_LANES;
    let mut carry = simd.splat_f32s(0.0);
    // (Macros, not closures: see `max_row`.)
    macro_rules! sum {
        ($p:ident => $load:expr) => {{
            let (mut a, mut b) = (simd.splat_f32s(0.0), simd.splat_f32s(0.0));
            for (r, &$p) in rows[..N].iter().enumerate() {
                let (x, y) = $load;
                (a, b) = if r == 0 {
                    (x, y)
                } else {
                    (simd.add_f32s(a, x), simd.add_f32s(b, y))
                };
            }
            (a, b)
        }};
    }
    macro_rules! emit {
        ($x0:expr, $a:expr, $b:expr) => {{
            let (e, od) = simd.split_even_odd($a, $b);
            let left = simd.permute2(carry, od, shift);
            let v = simd.add_f32s(simd.add_f32s(e, od), left);
            // SAFETY: x0 < LANES (whole + 1), the table's extent (contract).
            let cv = unsafe { load::<S>(inv_col.add($x0)) };
            let v = simd.mul_f32s(simd.mul_f32s(v, cv), fy);
            store_in_plane::<S>(out_plane, o + $x0, out_w - $x0, v);
            od
        }};
    }
    for j in 0..whole {
        let c = 2 * l * j;
        // SAFETY: columns c .. c + 2 l <= 2 l whole of each row (the contract).
        let (a, b) = sum!(p => unsafe { (load::<S>(p.add(c)), load::<S>(p.add(c + l))) });
        carry = emit!(j * l, a, b);
    }
    if let Some((na, nb)) = tail {
        let c = 2 * l * whole;
        // SAFETY: the row holds na columns from c and nb from c + l (the
        // contract).
        let (a, b) = sum!(p => unsafe {
            (simd.load_prefix(p.add(c), na), simd.load_prefix(p.add(c + l), nb))
        });
        emit!(whole * l, a, b);
    }
}

/// Average pooling of planes `channels` (see the module notes).
#[inline(always)]
fn avg_pool<S: SimdExt>(
    simd: S,
    p: &Pool,
    g: &PlaneGeom,
    input: &[f32],
    output: &mut [f32],
    channels: Range<usize>,
) {
    let l = S::F32_LANES;
    let split = row_split(g, l);
    let (inv_col, inv_row) = s2_scales(p, g, g.out_w.div_ceil(l) * l);
    let shift = up_one_lane::<S>();
    let out_w = g.out_w;
    for (_, plane, out_plane) in planes(g, input, output, channels) {
        for (y, &ry) in inv_row.iter().enumerate() {
            let mut rows = [core::ptr::null::<f32>(); 3];
            let mut n = 0;
            for dy in 0..3 {
                let iy = (2 * y + dy) as isize - g.pad_top as isize;
                if iy >= 0 && (iy as usize) < g.in_h {
                    let iy = iy as usize;
                    rows[n] = plane[iy * g.in_w..(iy + 1) * g.in_w].as_ptr();
                    n += 1;
                }
            }
            let o = y * out_w;
            let scale = (inv_col.as_ptr(), simd.splat_f32s(ry));
            // SAFETY: each pointer starts a whole input row of in_w floats, the
            // split's loads lie within in_w by construction, and the column table
            // holds vecs l floats.
            unsafe {
                match n {
                    3 => avg_row::<S, 3>(simd, &rows, split, shift, scale, out_plane, (o, out_w)),
                    2 => avg_row::<S, 2>(simd, &rows, split, shift, scale, out_plane, (o, out_w)),
                    1 => avg_row::<S, 1>(simd, &rows, split, shift, scale, out_plane, (o, out_w)),
                    _ => out_plane[o..o + out_w].fill(0.0),
                }
            }
        }
    }
}

#[inline(always)]
fn max_pool<S: SimdExt>(
    simd: S,
    g: &PlaneGeom,
    input: &[f32],
    output: &mut [f32],
    channels: Range<usize>,
) {
    let (in_w, out_w) = (g.in_w, g.out_w);
    let (whole, tail) = row_split(g, S::F32_LANES);
    // (No closure with vectors in it: see `max_row`.)
    let tail = match tail {
        Some((na, nb)) => Some(Tail {
            na,
            nb,
            ma: prefix_mask(simd, na),
            mb: prefix_mask(simd, nb),
        }),
        None => None,
    };
    let shift = up_one_lane::<S>();
    for (_, plane, out_plane) in planes(g, input, output, channels) {
        // Whether the previous output row's last input row holds a NaN or an
        // infinity. For y > 0, window row 0 (input row 2y - pad_top, with
        // pad_top < 3 as checked) is inside the plane whenever any row is, and
        // is the previous output row's window row 2, checked there; so it is not
        // checked again.
        let mut carried = false;
        for y in 0..g.out_h {
            let mut rows = [core::ptr::null::<f32>(); 3];
            let mut n = 0;
            for dy in 0..3 {
                let iy = (2 * y + dy) as isize - g.pad_top as isize;
                if iy >= 0 && (iy as usize) < g.in_h {
                    let iy = iy as usize;
                    rows[n] = plane[iy * in_w..(iy + 1) * in_w].as_ptr();
                    n += 1;
                }
            }
            let skip = y > 0;
            let o = y * out_w;
            // SAFETY: each pointer starts a whole input row of in_w floats, and
            // 2 l whole (+ na + nb with a tail) <= in_w by construction.
            let flags = unsafe {
                macro_rules! row {
                    ($n:literal, $skip:literal) => {
                        max_row::<S, $n, $skip>(
                            simd, &rows, whole, tail, shift, out_plane, o, out_w,
                        )
                    };
                }
                match (n, skip) {
                    (3, false) => row!(3, 0),
                    (3, true) => row!(3, 1),
                    (2, false) => row!(2, 0),
                    (2, true) => row!(2, 1),
                    (1, false) => row!(1, 0),
                    (1, true) => row!(1, 1),
                    _ => {
                        out_plane[o..o + out_w].fill(f32::NEG_INFINITY);
                        [false; 3]
                    }
                }
            };
            let flagged = (skip && carried) || flags.iter().any(|&f| f);
            carried = n > 0 && flags[n - 1];
            if flagged {
                // Rare: a NaN or an infinity in reach; exact scalar row.
                exact_max_row(plane, g, 2, y, &mut out_plane[o..o + out_w]);
            }
        }
    }
}
