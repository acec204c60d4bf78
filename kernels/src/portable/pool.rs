//! Max and average pooling.
//!
//! Fast path: 3x3 windows with stride 1 or 2 (both directions equal), any padding
//! the parameters allow, max or average with `count_include_pad` true or false. It
//! uses the padded rows of [`super::rows`] (padding is -inf for max, 0 for average)
//! and two output rows per pass, like the depthwise conv. Average divides by the
//! window's count, which factors into a per-column and a per-row count (the window
//! is a rectangle), precomputed as reciprocals.
//!
//! Max pool propagates NaN like the scalar twin: the ring flags every input row that
//! holds a NaN or an infinity, and an output row reading a flagged row is computed
//! by an exact scalar loop (the vector `max` does not propagate NaN from both
//! operands).
//!
//! Other windows and strides fall back to the scalar twin.

use super::rows::{RowLayout, RowRing};
use super::simd::{load, store, store_first, Kernel, Level, SimdExt};
use crate::{KernelError, PlaneGeom, Pool, PoolKind};
use std::ops::Range;

/// Pools planes `channels` (layout as for the depthwise conv) with the best level of
/// this CPU.
pub fn pool(
    p: &Pool,
    g: &PlaneGeom,
    input: &[f32],
    output: &mut [f32],
    channels: Range<usize>,
) -> Result<(), KernelError> {
    pool_at(Level::best(), p, g, input, output, channels)
}

/// [`pool`] with a chosen instruction-set level.
pub fn pool_at(
    level: Level,
    p: &Pool,
    g: &PlaneGeom,
    input: &[f32],
    output: &mut [f32],
    channels: Range<usize>,
) -> Result<(), KernelError> {
    let fast =
        p.kh == 3 && p.kw == 3 && p.stride_h == p.stride_w && (p.stride_h == 1 || p.stride_h == 2);
    if !fast {
        return crate::scalar::pool::pool(p, g, input, output, channels);
    }
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

struct Op<'a> {
    p: &'a Pool,
    g: &'a PlaneGeom,
    input: &'a [f32],
    output: &'a mut [f32],
    channels: Range<usize>,
}

/// Number of window positions `0..3` of output `o` that fall inside `lo..hi`, in
/// padded-free coordinates: position `o * stride + d - pad`.
fn count(o: usize, stride: usize, pad: usize, hi: usize) -> usize {
    (0..3)
        .filter(|d| {
            let i = (o * stride + d) as isize - pad as isize;
            i >= 0 && i < hi as isize
        })
        .count()
}

/// Same, counting padding positions too (anything before `hi`), for
/// `count_include_pad`.
fn count_padded(o: usize, stride: usize, pad: usize, hi: usize) -> usize {
    (0..3)
        .filter(|d| ((o * stride + d) as isize - (pad as isize)) < hi as isize)
        .count()
}

fn recip(n: usize) -> f32 {
    if n == 0 {
        0.0
    } else {
        1.0 / n as f32
    }
}

/// Loop constants of one call.
struct Consts<'a, S: SimdExt> {
    max: bool,
    taps: [usize; 3],
    out_w: usize,
    out_hw: usize,
    vecs: usize,
    /// Average: reciprocal of each column's count (`vecs * LANES` entries).
    inv_col: &'a [f32],
    init: S::f32s,
}

/// `N` output rows from prepared rows, like the depthwise pass (partial vector first
/// with a spilling store, see there). `inv_row` holds the average's row factors.
///
/// # Safety
/// As for the depthwise pass; `inv_col` holds `vecs * LANES` floats.
#[inline(always)]
unsafe fn pass<S: SimdExt, const ST: usize, const N: usize>(
    simd: S,
    k: &Consts<S>,
    rows: &[*const f32; 5],
    out: *mut f32,
    y: usize,
    inv_row: [f32; 2],
) {
    let l = S::F32_LANES;
    let last = k.vecs - 1;
    for i in 0..k.vecs {
        let xv = if i == 0 { last } else { i - 1 };
        let x0 = xv * l;
        let mut acc = [k.init; N];
        for (j, &row) in rows.iter().enumerate().take(3 + (N - 1) * ST) {
            for dx in 0..3 {
                // SAFETY: inside the prepared row (see the depthwise pass).
                let v = unsafe { load::<S>(row.add(x0 + k.taps[dx])) };
                for (n, a) in acc.iter_mut().enumerate() {
                    if j.wrapping_sub(n * ST) < 3 {
                        *a = if k.max {
                            simd.max_f32s(*a, v)
                        } else {
                            simd.add_f32s(*a, v)
                        };
                    }
                }
            }
        }
        let inv_c = if k.max {
            k.init
        } else {
            // SAFETY: x0 + l <= vecs * l = inv_col.len().
            unsafe { load::<S>(k.inv_col.as_ptr().add(x0)) }
        };
        for (n, &a) in acc.iter().enumerate() {
            let a = if k.max {
                a
            } else {
                simd.mul_f32s(simd.mul_f32s(a, inv_c), simd.splat_f32s(inv_row[n]))
            };
            let at = (y + n) * k.out_w + x0;
            // SAFETY: as in the depthwise pass.
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

/// Max pool output row `y`, exactly as the scalar twin (NaN propagates).
fn exact_max_row(plane: &[f32], g: &PlaneGeom, stride: usize, y: usize, out: &mut [f32]) {
    for (x, o) in out.iter_mut().enumerate() {
        let mut max = f32::NEG_INFINITY;
        for ky in 0..3 {
            for kx in 0..3 {
                let iy = (y * stride + ky) as isize - g.pad_top as isize;
                let ix = (x * stride + kx) as isize - g.pad_left as isize;
                if iy >= 0 && ix >= 0 && (iy as usize) < g.in_h && (ix as usize) < g.in_w {
                    let v = plane[iy as usize * g.in_w + ix as usize];
                    if v > max || v.is_nan() {
                        max = v;
                    }
                }
            }
        }
        *o = max;
    }
}

impl Kernel for Op<'_> {
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
        let st = p.stride_h;
        let max = p.kind == PoolKind::Max;
        let lay = RowLayout::new(st, g.pad_left, g.in_w, g.out_w, l);
        let mut ring = RowRing::new(lay, if max { f32::NEG_INFINITY } else { 0.0 });
        ring.track_nonfinite(max);
        let (inv_col, inv_rows): (Vec<f32>, Vec<f32>) = match p.kind {
            PoolKind::Max => (Vec::new(), Vec::new()),
            PoolKind::Avg { count_include_pad } => {
                let cols = (0..lay.vecs * l).map(|x| {
                    if x >= g.out_w {
                        0.0
                    } else if count_include_pad {
                        recip(count_padded(x, st, g.pad_left, g.in_w + p.pad_right))
                    } else {
                        recip(count(x, st, g.pad_left, g.in_w))
                    }
                });
                let rows = (0..g.out_h).map(|y| {
                    if count_include_pad {
                        recip(count_padded(y, st, g.pad_top, g.in_h + p.pad_bottom))
                    } else {
                        recip(count(y, st, g.pad_top, g.in_h))
                    }
                });
                (cols.collect(), rows.collect())
            }
        };
        let k = Consts::<S> {
            max,
            taps: [lay.tap(0), lay.tap(1), lay.tap(2)],
            out_w: g.out_w,
            out_hw: g.out_h * g.out_w,
            vecs: lay.vecs,
            inv_col: &inv_col,
            init: simd.splat_f32s(if max { f32::NEG_INFINITY } else { 0.0 }),
        };
        let in_hw = g.in_h * g.in_w;
        for c in channels.clone() {
            ring.reset();
            let plane = &input[c * g.in_stride..][..in_hw];
            let out_plane = &mut output[(c - channels.start) * g.out_stride..][..k.out_hw];
            let mut y = 0;
            while y < g.out_h {
                let two = y + 1 < g.out_h;
                let iy0 = (y * st) as isize - g.pad_top as isize;
                let n = if two { 3 + st } else { 3 };
                let mut slots = [0usize; 5];
                let mut flagged = false;
                for (j, s) in slots.iter_mut().enumerate().take(n) {
                    *s = ring.prepare(simd, plane, g.in_h, iy0 + j as isize);
                    flagged |= ring.nonfinite(*s);
                }
                if flagged {
                    // Rare: a NaN or an infinity in reach; exact scalar rows.
                    for yy in y..y + if two { 2 } else { 1 } {
                        let row = &mut out_plane[yy * g.out_w..(yy + 1) * g.out_w];
                        exact_max_row(plane, g, st, yy, row);
                    }
                    y += if two { 2 } else { 1 };
                    continue;
                }
                let rows: [*const f32; 5] = core::array::from_fn(|j| ring.row(slots[j]));
                let inv_row = if max {
                    [0.0; 2]
                } else {
                    [inv_rows[y], if two { inv_rows[y + 1] } else { 0.0 }]
                };
                let out = out_plane.as_mut_ptr();
                // SAFETY: rows come from this plane's ring; `out` holds the plane's
                // out_hw floats; y + (1 or 2) <= out_h.
                unsafe {
                    match (st, two) {
                        (1, true) => pass::<S, 1, 2>(simd, &k, &rows, out, y, inv_row),
                        (1, false) => pass::<S, 1, 1>(simd, &k, &rows, out, y, inv_row),
                        (_, true) => pass::<S, 2, 2>(simd, &k, &rows, out, y, inv_row),
                        (_, false) => pass::<S, 2, 1>(simd, &k, &rows, out, y, inv_row),
                    }
                }
                y += if two { 2 } else { 1 };
            }
        }
    }
}
