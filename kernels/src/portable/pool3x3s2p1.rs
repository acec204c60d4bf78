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
/// How a row is pooled: the max (checking rows for NaN and infinities, see the
/// module notes) or the sum scaled by the column table `inv_col` (from the row's
/// column 0) and the row's factor `fy`.
#[derive(Clone, Copy)]
enum Mode<S: SimdExt> {
    Max,
    Avg { inv_col: *const f32, fy: S::f32s },
}

/// One output row from the `N` input rows of its window inside the plane, into
/// `out_plane` from `o` (`out_w` floats): `whole` vectors with whole loads, then
/// the `tail` vector if any; the max (`MAX`) or the scaled sum ([`Mode`]). For
/// max pooling gives, for rows `SKIP..N`, whether the row holds a NaN or an
/// infinity (every loaded vector times zero is summed per row and half: NaN
/// exactly then); other rows, and average pooling, give `false`.
///
/// # Safety
/// Every `rows[r]` (`r < N`) is the start of an input row of at least
/// `2 LANES whole` floats, and of `2 LANES whole + na + nb` with a tail; with
/// [`Mode::Avg`], `inv_col .. + LANES (whole + 1)` is readable.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn pool_row<S: SimdExt, const N: usize, const SKIP: usize, const MAX: bool>(
    simd: S,
    rows: &[*const f32; 3],
    whole: usize,
    tail: Option<Tail<S>>,
    shift: S::u32s,
    mode: Mode<S>,
    out_plane: &mut [f32],
    (o, out_w): (usize, usize),
) -> [bool; 3] {
    let l = S::F32_LANES;
    let zero = simd.splat_f32s(0.0);
    // The padding value.
    let pad = if MAX {
        simd.splat_f32s(f32::NEG_INFINITY)
    } else {
        zero
    };
    // Lane `LANES - 1`: column 2 x0 - 1 of the next vector.
    let mut carry = pad;
    let mut check = [[zero; 2]; 3];
    // (Macros, not closures: out of line a closure would run without the level's
    // target features.) `reduce!` takes the rows' two vectors `$load` gives from
    // row start `$p` (max pooling checks them), `emit!` stores one output vector
    // and gives its odd columns.
    macro_rules! reduce {
        ($p:ident => $load:expr) => {{
            let (mut a, mut b) = (pad, pad);
            for (r, &$p) in rows[..N].iter().enumerate() {
                let (x, y) = $load;
                if MAX && r >= SKIP {
                    check[r][0] = simd.mul_add_e_f32s(x, zero, check[r][0]);
                    check[r][1] = simd.mul_add_e_f32s(y, zero, check[r][1]);
                }
                (a, b) = if r == 0 {
                    (x, y)
                } else if MAX {
                    (simd.max_f32s(a, x), simd.max_f32s(b, y))
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
            let v = match mode {
                Mode::Max => simd.max_f32s(simd.max_f32s(e, od), left),
                Mode::Avg { inv_col, fy } => {
                    let v = simd.add_f32s(simd.add_f32s(e, od), left);
                    // SAFETY: x0 < LANES (whole + 1), the table's extent
                    // (contract).
                    let cv = unsafe { load::<S>(inv_col.add($x0)) };
                    simd.mul_f32s(simd.mul_f32s(v, cv), fy)
                }
            };
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
        // The columns past the row are the right padding (already zero for
        // average pooling).
        if MAX {
            emit!(
                whole * l,
                blend(simd, pad, a, t.ma),
                blend(simd, pad, b, t.mb)
            );
        } else {
            emit!(whole * l, a, b);
        }
    }
    let mut flags = [false; 3];
    if MAX {
        for (f, c) in flags.iter_mut().zip(&check).take(N).skip(SKIP) {
            *f = simd.reduce_sum_f32s(simd.add_f32s(c[0], c[1])).is_nan();
        }
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
            pool::<S, true>(simd, p, g, input, output, channels);
        } else {
            pool::<S, false>(simd, p, g, input, output, channels);
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

/// Max or average pooling of planes `channels` (see the module notes).
#[inline(always)]
fn pool<S: SimdExt, const MAX: bool>(
    simd: S,
    p: &Pool,
    g: &PlaneGeom,
    input: &[f32],
    output: &mut [f32],
    channels: Range<usize>,
) {
    let (l, out_w) = (S::F32_LANES, g.out_w);
    let (whole, tail) = row_split(g, l);
    // (No closure with vectors in it: see `pool_row`.)
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
    // Average pooling: the reciprocal window counts (all zero for max).
    let (inv_col, inv_row) = s2_scales(p, g, out_w.div_ceil(l) * l);
    for (_, plane, out_plane) in planes(g, input, output, channels) {
        // Max pooling: whether the previous output row's last input row holds a
        // NaN or an infinity. For y > 0, window row 0 (input row 2y - pad_top,
        // with pad_top < 3 as checked) is inside the plane whenever any row is,
        // and is the previous output row's window row 2, checked there; so it is
        // not checked again.
        let mut carried = false;
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
            let skip = MAX && y > 0;
            let o = y * out_w;
            let mode = if MAX {
                Mode::Max
            } else {
                Mode::Avg {
                    inv_col: inv_col.as_ptr(),
                    fy: simd.splat_f32s(ry),
                }
            };
            // SAFETY: each pointer starts a whole input row of in_w floats, the
            // split's loads lie within in_w by construction, and the column table
            // holds vecs l floats.
            let flags = unsafe {
                macro_rules! row {
                    ($n:literal, $skip:literal) => {
                        pool_row::<S, $n, $skip, MAX>(
                            simd,
                            &rows,
                            whole,
                            tail,
                            shift,
                            mode,
                            out_plane,
                            (o, out_w),
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
                        // A window wholly in the padding.
                        let v = if MAX { f32::NEG_INFINITY } else { 0.0 };
                        out_plane[o..o + out_w].fill(v);
                        [false; 3]
                    }
                }
            };
            if MAX {
                let flagged = (skip && carried) || flags.iter().any(|&f| f);
                carried = n > 0 && flags[n - 1];
                if flagged {
                    // Rare: a NaN or an infinity in reach; exact scalar row.
                    exact_max_row(plane, g, 2, y, &mut out_plane[o..o + out_w]);
                }
            }
        }
    }
}
