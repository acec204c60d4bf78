//! Max and average pooling.
//!
//! Fast path: 3x3 windows with stride 1 or 2 (both directions equal), any padding
//! the parameters allow, max or average with `count_include_pad` true or false. It
//! uses the flat prepared planes of [`super::rows::Flat`] like the depthwise conv
//! (padding is -inf for max, 0 for average): one vector loop per band. Average
//! divides by the window's count, which factors into a per-column and a per-row
//! count (the window is a rectangle), precomputed as reciprocals and applied while
//! copying the band out.
//!
//! Max pool propagates NaN like the scalar twin: the prepared band flags every input
//! row that holds a NaN or an infinity, and an output row reading a flagged row is
//! recomputed by an exact scalar loop (the vector `max` does not propagate NaN from
//! both operands).
//!
//! Other windows and strides fall back to the scalar twin.

use super::rows::Flat;
use super::simd::{load, store, Kernel, Level, SimdExt};
use crate::scratch;
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

/// The flat loop: `len` output positions from the prepared input at `src` with
/// tap offsets `taps`: the max (`MAX`) or the sum of the 9 taps.
///
/// # Safety
/// As for the depthwise flat loop.
#[inline(always)]
unsafe fn flat<S: SimdExt, const MAX: bool>(
    simd: S,
    src: *const f32,
    taps: &[usize; 9],
    out: *mut f32,
    len: usize,
) {
    let l = S::F32_LANES;
    let p: [*const f32; 9] = core::array::from_fn(|t| src.wrapping_add(taps[t]));
    let mut q = 0;
    while q < len {
        // SAFETY: the caller's contract.
        unsafe {
            macro_rules! x {
                ($t:expr) => {
                    load::<S>(p[$t].add(q))
                };
            }
            macro_rules! op {
                ($a:expr, $b:expr) => {
                    if MAX {
                        simd.max_f32s($a, $b)
                    } else {
                        simd.add_f32s($a, $b)
                    }
                };
            }
            // Three partials (one per window row): short dependency chains.
            let a0 = op!(op!(x!(0), x!(1)), x!(2));
            let a1 = op!(op!(x!(3), x!(4)), x!(5));
            let a2 = op!(op!(x!(6), x!(7)), x!(8));
            store::<S>(out.add(q), op!(op!(a0, a1), a2));
        }
        q += l;
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
        let mut fl = Flat::new(st, g, l, if max { f32::NEG_INFINITY } else { 0.0 }, max);
        let taps = fl.taps();
        // Average: reciprocal counts per column (whole vectors) and per row.
        let (mut inv_col, mut inv_rows) = (scratch::take(0, 0.0f32), scratch::take(0, 0.0f32));
        match p.kind {
            PoolKind::Max => {}
            PoolKind::Avg { count_include_pad } => {
                let cols = (0..g.out_w.div_ceil(l) * l).map(|x| {
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
                inv_col.extend(cols);
                inv_rows.extend(rows);
            }
        }
        let scale = if max {
            None
        } else {
            Some((&inv_col[..], &inv_rows[..]))
        };
        let (in_hw, out_hw) = (g.in_h * g.in_w, g.out_h * g.out_w);
        for c in channels.clone() {
            let plane = &input[c * g.in_stride..][..in_hw];
            let out_plane = &mut output[(c - channels.start) * g.out_stride..][..out_hw];
            let mut y0 = 0;
            while y0 < g.out_h {
                let rows = fl.band().min(g.out_h - y0);
                fl.load(simd, plane, y0, rows);
                let len = fl.flat_len(rows);
                let src = fl.src();
                let out = fl.out().as_mut_ptr();
                // SAFETY: as in the depthwise conv (same scratch).
                unsafe {
                    if max {
                        flat::<S, true>(simd, src, &taps, out, len);
                    } else {
                        flat::<S, false>(simd, src, &taps, out, len);
                    }
                }
                fl.store(simd, out_plane, y0, rows, scale);
                if max {
                    for y in 0..rows {
                        if fl.nonfinite(y) {
                            // Rare: a NaN or an infinity in reach; exact scalar row.
                            let yy = y0 + y;
                            let row = &mut out_plane[yy * g.out_w..(yy + 1) * g.out_w];
                            exact_max_row(plane, g, st, yy, row);
                        }
                    }
                }
                y0 += rows;
            }
        }
    }
}
