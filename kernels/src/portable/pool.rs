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
//! Stride 2: the whole output vectors whose windows touch no padding column run a
//! tight loop per row ([`s2_interior`]) that reduces the three input rows first
//! and splits the columns once per output vector (three shuffles instead of
//! nine, and no mask or kind test per vector). Probe, best of N, before / after
//! (us): max 24 x 112x112 63.8 / 58.1, max 24 x 360x640 1460 / 1292-1376, average
//! 240 x 90x160 869 / 622-692, 480 x 45x80 319 / 285-287, 24 x 180x320 184 /
//! 169-170.
//!
//! Stride-2 average pooling of planes whose input rows are shorter than two
//! vectors holds each row in registers and permutes the taps out of the window's
//! row sum ([`super::small_plane`]), with no copy: probe (AVX-512 dispatch), 240 x
//! 28x28 39.9 -> 15.8 us, 480 x 14x14 26.3 -> 12.7 us.
//!
//! Stride-2 pooling with left padding 1 (the stem's max pool, the units' shortcut
//! average pool) has a kernel of its own, [`super::pool3x3s2p1`], at the best
//! level for any width (average pools of small planes keep the small-plane path).
//!
//! Other windows and strides fall back to the scalar twin.

use super::dwconv3x3::{s2_edge, s2_masks, RowSources, Src};
use super::pool3x3s2p1::{self, S2Pool};
use super::rows::{has_nonfinite, planes, store_in_plane, Flat, PaddedPlane};
use super::simd::{blend, load, store, Kernel, Level, SimdExt};
use super::small_plane::{self, RowTaps};
use crate::scratch::{self, Scratch};
use crate::{KernelError, PlaneGeom, Pool, PoolKind};
use std::ops::Range;

/// Pools planes `channels` (layout as for the depthwise conv) with the best level of
/// this CPU for the output width ([`Level::for_rows`]), or the best level outright
/// for a stride-2 average pool whose rows fit in registers (the small-plane
/// path) and for a stride-2 pool with left padding 1 (row by row, any width).
pub fn pool(
    p: &Pool,
    g: &PlaneGeom,
    input: &[f32],
    output: &mut [f32],
    channels: Range<usize>,
) -> Result<(), KernelError> {
    let s2 = p.stride_h == 2 && p.stride_w == 2;
    let level = (s2 && p.kind != PoolKind::Max)
        .then(|| small_plane::best_level(g, 2))
        .flatten()
        .unwrap_or_else(|| {
            if s2 && pool3x3s2p1::fits(g) {
                Level::best()
            } else {
                Level::for_rows(g.out_w)
            }
        });
    pool_at(level, p, g, input, output, channels)
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
    let planes = channels.len();
    pool_unclamped(level, p, g, input, output, channels);
    if p.relu {
        // The ReLU behind the max pool, in a pass over the outputs (the portable
        // paths keep one max-pool code each; NEON starts its maxima at zero).
        let n = g.out_h * g.out_w;
        for i in 0..planes {
            // `check` proved every output plane holds `n` floats.
            if let Some(plane) = output
                .get_mut(i * g.out_stride..)
                .and_then(|o| o.get_mut(..n))
            {
                for v in plane {
                    *v = crate::scalar::relu(*v);
                }
            }
        }
    }
    Ok(())
}

/// The fast paths of [`pool_at`] (checked, non-empty call), without its ReLU.
fn pool_unclamped(
    level: Level,
    p: &Pool,
    g: &PlaneGeom,
    input: &[f32],
    output: &mut [f32],
    channels: Range<usize>,
) {
    let small = p.kind != PoolKind::Max && small_plane::fits(g, 2, level.lanes());
    if p.stride_h == 2 && pool3x3s2p1::fits(g) && !small {
        level.run(S2Pool {
            p,
            g,
            input,
            output,
            channels,
        });
        return;
    }
    let mut op = Op {
        p,
        g,
        input,
        output,
        channels,
    };
    let avg_s2 = p.kind != PoolKind::Max && p.stride_h == 2;
    if avg_s2 && small_plane::fits(g, 2, level.lanes()) {
        // A kernel of its own, like the depthwise conv's small-plane path, so the
        // copy paths' function compiles as it did without it.
        match level.run(AvgRows(op)) {
            Some(rest) => op = rest,
            None => return,
        }
    }
    level.run(op);
}

/// Stride-2 average pooling of an [`Op`] through the small-plane path
/// ([`avg_s2_rows`]); gives the op back if its rows do not fit the level after all.
struct AvgRows<'a>(Op<'a>);

impl<'a> Kernel for AvgRows<'a> {
    type Output = Option<Op<'a>>;

    #[inline(always)]
    fn run<S: SimdExt>(self, simd: S) -> Self::Output {
        let Op {
            p,
            g,
            input,
            output,
            channels,
        } = self.0;
        // Index tables wherever they fit: the pool's tap columns share one row sum.
        let Some(t) = RowTaps::<S>::new(simd, g, 2, 2 * S::F32_LANES) else {
            return Some(Op {
                p,
                g,
                input,
                output,
                channels,
            });
        };
        let io = (input, output);
        macro_rules! go {
            ($m:literal) => {
                match t.nv {
                    1 => avg_s2_rows::<S, $m, 1>(simd, p, g, io, channels, &t),
                    _ => avg_s2_rows::<S, $m, 2>(simd, p, g, io, channels, &t),
                }
            };
        }
        small_plane::by_mode!(t.mode(), go);
        None
    }
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
            // Three partials (one per window row): short dependency chains.
            let a0 = reduce3::<S, MAX>(simd, x!(0), x!(1), x!(2));
            let a1 = reduce3::<S, MAX>(simd, x!(3), x!(4), x!(5));
            let a2 = reduce3::<S, MAX>(simd, x!(6), x!(7), x!(8));
            store::<S>(out.add(q), reduce3::<S, MAX>(simd, a0, a1, a2));
        }
        q += l;
    }
}

/// Max pool output row `y`, exactly as the scalar twin (NaN propagates).
pub(super) fn exact_max_row(
    plane: &[f32],
    g: &PlaneGeom,
    stride: usize,
    y: usize,
    out: &mut [f32],
) {
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

/// `max(a, b)` (`MAX`) or `a + b`: the reduction of a pool's window.
#[inline(always)]
fn reduce<S: SimdExt, const MAX: bool>(simd: S, a: S::f32s, b: S::f32s) -> S::f32s {
    if MAX {
        simd.max_f32s(a, b)
    } else {
        simd.add_f32s(a, b)
    }
}

/// [`reduce`] of three vectors, `(a, b)` first.
#[inline(always)]
fn reduce3<S: SimdExt, const MAX: bool>(simd: S, a: S::f32s, b: S::f32s, c: S::f32s) -> S::f32s {
    reduce::<S, MAX>(simd, reduce::<S, MAX>(simd, a, b), c)
}

/// One output vector of the direct stride-2 path, in ascending order: the max
/// (`MAX`) or the sum of the 3x3 window; `rows` point at column `2 x0 - pl` of the
/// three input rows. Taps in padding columns are replaced by `pad` when `MASKED`
/// (masks `m` in split order).
///
/// # Safety
/// `rows[dy] .. + 2 * LANES + 1` is readable.
#[inline(always)]
unsafe fn s2_vec<S: SimdExt, const MAX: bool, const MASKED: bool>(
    simd: S,
    rows: &[*const f32; 3],
    m: &[S::f32s; 3],
    pad: S::f32s,
) -> S::f32s {
    let l = S::F32_LANES;
    let mut c = [pad; 3];
    for (dy, &r) in rows.iter().enumerate() {
        // SAFETY: the caller's contract.
        let (e0, o0, o1) = unsafe {
            let (e0, o0) = simd.split_even_odd_fast(load::<S>(r), load::<S>(r.add(l)));
            let (_, o1) = simd.split_even_odd_fast(load::<S>(r.add(1)), load::<S>(r.add(1 + l)));
            (e0, o0, o1)
        };
        if dy == 0 {
            c = [e0, o0, o1];
        } else {
            c = [
                reduce::<S, MAX>(simd, c[0], e0),
                reduce::<S, MAX>(simd, c[1], o0),
                reduce::<S, MAX>(simd, c[2], o1),
            ];
        }
    }
    if MASKED {
        for (x, &mm) in c.iter_mut().zip(m) {
            *x = blend(simd, pad, *x, mm);
        }
    }
    simd.unsplit_order(reduce3::<S, MAX>(simd, c[0], c[1], c[2]))
}

/// One output vector of the stride-2 path with no tap in a padding column, in
/// ascending order: the max (`MAX`) or the sum of the 3x3 window; `rows` point at
/// the window's first column in the three input rows. Per row it loads the split
/// pair at the window start and the pair one column on, reduces the three rows
/// first, then splits once: three shuffles per output vector instead of three per
/// row ([`s2_vec`]).
///
/// # Safety
/// `rows[dy] .. + 2 * LANES + 1` is readable.
#[inline(always)]
unsafe fn s2_vec_inside<S: SimdExt, const MAX: bool>(simd: S, r: &[*const f32; 3]) -> S::f32s {
    let l = S::F32_LANES;
    macro_rules! col {
        ($off:expr) => {
            reduce3::<S, MAX>(
                simd,
                load::<S>(r[0].add($off)),
                load::<S>(r[1].add($off)),
                load::<S>(r[2].add($off)),
            )
        };
    }
    // SAFETY: the caller's contract (columns 0 .. 2 l + 1 of each row).
    let (a, b, c, d) = unsafe { (col!(0), col!(l), col!(1), col!(1 + l)) };
    let (e0, o0) = simd.split_even_odd_fast(a, b);
    let (_, o1) = simd.split_even_odd_fast(c, d);
    simd.unsplit_order(reduce3::<S, MAX>(simd, e0, o0, o1))
}

/// Output vectors `xs` of one output row of the direct stride-2 path, every one
/// whole and with no tap in a padding column ([`s2_vec_inside`]), average pooling
/// scaled by the reciprocal counts (`inv_col` per column, `fy` for the row).
///
/// # Safety
/// `rows[dy] + 2 x0 - pl .. + 2 * LANES + 1` is readable and `out + x0 .. + LANES`
/// writable for every `x0` in `xs` (a multiple of `LANES`); average pooling reads
/// `inv_col + x0 .. + LANES`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn s2_interior<S: SimdExt, const MAX: bool>(
    simd: S,
    rows: &[*const f32; 3],
    pl: usize,
    xs: Range<usize>,
    out: *mut f32,
    inv_col: *const f32,
    fy: S::f32s,
) {
    let l = S::F32_LANES;
    let mut x0 = xs.start;
    while x0 < xs.end {
        // SAFETY: the caller's contract (columns 2 x0 - pl .. + 2 l + 1 of each
        // row, output and scale vectors at x0).
        unsafe {
            let r = rows.map(|r| r.wrapping_add(2 * x0).wrapping_sub(pl));
            let mut v = s2_vec_inside::<S, MAX>(simd, &r);
            if !MAX {
                v = simd.mul_f32s(simd.mul_f32s(v, load::<S>(inv_col.add(x0))), fy);
            }
            store::<S>(out.add(x0), v);
        }
        x0 += l;
    }
}

/// Stride-2 average pooling of planes whose rows fit in registers
/// ([`small_plane`]): per output row the window's three rows are summed, then the
/// three tap columns taken out of the sum and added.
#[inline(always)]
fn avg_s2_rows<S: SimdExt, const M: usize, const NV: usize>(
    simd: S,
    p: &Pool,
    g: &PlaneGeom,
    (input, output): (&[f32], &mut [f32]),
    channels: Range<usize>,
    t: &RowTaps<S>,
) {
    let l = S::F32_LANES;
    let (inv_col, inv_row) = s2_scales(p, g, NV * l);
    let mut cv = [simd.splat_f32s(0.0); NV];
    for (v, c) in cv.iter_mut().enumerate() {
        // SAFETY: the column table holds NV l floats.
        *c = unsafe { load::<S>(inv_col.as_ptr().add(v * l)) };
    }
    for (_, plane, out_plane) in planes(g, input, output, channels.clone()) {
        let mut win = t.window::<M>(simd, plane);
        for (y, &ry) in inv_row.iter().enumerate() {
            let [a, b, d] = win.rows;
            // The row vectors that can be nonzero: the first (and second) of
            // each column stream.
            let mut sum = a;
            for (k, s) in sum.iter_mut().enumerate() {
                let stream_vec = if M == 0 { k } else { k % 2 };
                if stream_vec == 0 || (stream_vec == 1 && t.two) {
                    *s = simd.add_f32s(simd.add_f32s(*s, b[k]), d[k]);
                }
            }
            let ry = simd.splat_f32s(ry);
            for (v, &cv) in cv.iter().enumerate() {
                let s0 = t.tap::<M>(simd, t.stream::<M>(&sum, 0), v, 0);
                let s1 = t.tap::<M>(simd, t.stream::<M>(&sum, 1), v, 1);
                let s2 = t.tap::<M>(simd, t.stream::<M>(&sum, 2), v, 2);
                let s = simd.add_f32s(simd.add_f32s(s0, s2), s1);
                let o = simd.mul_f32s(simd.mul_f32s(s, cv), ry);
                t.store(simd, out_plane, y, v, o);
            }
            win.advance(simd);
        }
    }
}

/// Stride-2 average pooling of small planes: each plane is copied once into a
/// zero-padded buffer ([`PaddedPlane`]), so every output vector reads its three
/// rows with no per-row preparation and no column masks (the in-place path's
/// edge handling costs more than the sums on planes of a few vectors per row:
/// 14x14 -> 7x7 is one vector a row).
fn avg_s2_small<S: SimdExt>(
    simd: S,
    p: &Pool,
    g: &PlaneGeom,
    io: (&[f32], &mut [f32]),
    channels: Range<usize>,
    pp: PaddedPlane,
) {
    let n = g.out_w.div_ceil(S::F32_LANES) * S::F32_LANES;
    let (inv_col, inv_row) = s2_scales(p, g, n);
    pp.run(
        simd,
        io,
        channels,
        |_| (),
        |_, y, x0, rows| {
            // SAFETY: `PaddedPlane::run` gives rows readable for 2 l + 1 floats; x0 <
            // out_w, so the column table (n entries) holds the vector at x0.
            unsafe {
                let s = s2_vec_inside::<S, false>(simd, &rows);
                let cv = load::<S>(inv_col.as_ptr().add(x0));
                simd.mul_f32s(simd.mul_f32s(s, cv), simd.splat_f32s(inv_row[y]))
            }
        },
    );
}

/// Input rows checked together for NaN and infinities by the stride-2 max pool.
const CHECK_BLOCK: usize = 16;

/// Which rows of a plane hold a NaN or an infinity, found as the max pool reaches
/// them: a block of [`CHECK_BLOCK`] rows in one pass with one reduction, its rows
/// one by one only when the block holds one (probe, AVX2, with the eight-sum
/// [`has_nonfinite`]: max pool 24ch 112x112 89.7 -> 80.2 us, 360x640 2300 -> 2013
/// us, against a pass and a reduction per row). The stride-1 path keeps its check
/// per row inside [`Flat::load`], where the row is read anyway.
struct NonFiniteRows<'a> {
    plane: &'a [f32],
    w: usize,
    /// The last block checked and its flag.
    block: Option<(usize, bool)>,
    /// The last row checked and its flag.
    row: Option<(usize, bool)>,
}

impl<'a> NonFiniteRows<'a> {
    fn new(plane: &'a [f32], w: usize) -> Self {
        NonFiniteRows {
            plane,
            w,
            block: None,
            row: None,
        }
    }

    /// Whether row `iy` (inside the plane) holds a NaN or an infinity.
    #[inline(always)]
    fn row<S: SimdExt>(&mut self, simd: S, iy: usize) -> bool {
        let b = iy / CHECK_BLOCK;
        let block = match self.block {
            Some((at, f)) if at == b => f,
            _ => {
                let end = ((b + 1) * CHECK_BLOCK * self.w).min(self.plane.len());
                let rows = self.plane.get(b * CHECK_BLOCK * self.w..end).unwrap_or(&[]);
                let f = has_nonfinite(simd, rows);
                self.block = Some((b, f));
                f
            }
        };
        if !block {
            return false;
        }
        match self.row {
            Some((at, f)) if at == iy => f,
            _ => {
                let row = self
                    .plane
                    .get(iy * self.w..(iy + 1) * self.w)
                    .unwrap_or(&[]);
                let f = has_nonfinite(simd, row);
                self.row = Some((iy, f));
                f
            }
        }
    }
}

impl Op<'_> {
    /// The direct stride-2 path (3x3 windows), as the depthwise conv's: input rows
    /// read in place (padded copies at the plane's edges), even/odd columns split
    /// in registers, column masks on the edge vectors only. Average pooling scales
    /// by the reciprocal counts as it stores; max pooling checks every input row
    /// for NaN and infinities once and recomputes the output rows that read a
    /// flagged row exactly.
    #[inline(always)]
    fn run_s2<S: SimdExt>(self, simd: S) {
        let Op {
            p,
            g,
            input,
            output,
            channels,
        } = self;
        let l = S::F32_LANES;
        let max = p.kind == PoolKind::Max;
        let out_w = g.out_w;
        let vecs = out_w.div_ceil(l);
        let n = vecs * l;
        if !max {
            if let Some(pp) = PaddedPlane::new(g, vecs, l) {
                return avg_s2_small(simd, p, g, (input, output), channels, pp);
            }
        }
        let padv = if max { f32::NEG_INFINITY } else { 0.0 };
        let mut src = RowSources::new(g, vecs, l, padv);
        let masks = s2_masks(simd, g, vecs);
        let pad = simd.splat_f32s(padv);
        let (inv_col, inv_row) = s2_scales(p, g, n);
        let pl = g.pad_left;
        // The whole output vectors with no tap in a padding column: one run
        // (the edge vectors are at the row's two ends).
        let whole = out_w / l * l;
        let lo = (0..whole)
            .step_by(l)
            .find(|&x0| !s2_edge(g, x0, l))
            .unwrap_or(whole);
        let hi = (lo..whole)
            .step_by(l)
            .find(|&x0| s2_edge(g, x0, l))
            .unwrap_or(whole);
        let inner = lo..hi;
        for (_, plane, out_plane) in planes(g, input, output, channels.clone()) {
            let mut nonfinite = NonFiniteRows::new(plane, g.in_w);
            for y in 0..g.out_h {
                let mut srcs = [Src::Slot(3); 3];
                let mut flagged = false;
                for (dy, sv) in srcs.iter_mut().enumerate() {
                    let iy = (2 * y + dy) as isize - g.pad_top as isize;
                    *sv = src.prepare(simd, plane, iy, dy);
                    if max && iy >= 0 && (iy as usize) < g.in_h {
                        flagged |= nonfinite.row(simd, iy as usize);
                    }
                }
                let mut rows = [core::ptr::null::<f32>(); 3];
                for (r, &sv) in rows.iter_mut().zip(&srcs) {
                    *r = src.ptr(plane, sv);
                }
                let fy = simd.splat_f32s(inv_row[y]);
                // SAFETY: the interior vectors are whole (x0 + l <= out_w, so the
                // row's output and the n-entry scale table hold them) and read
                // columns inside what RowSources makes readable, as below.
                unsafe {
                    let out = out_plane.as_mut_ptr().add(y * out_w);
                    let ic = inv_col.as_ptr();
                    if max {
                        s2_interior::<S, true>(simd, &rows, pl, inner.clone(), out, ic, fy);
                    } else {
                        s2_interior::<S, false>(simd, &rows, pl, inner.clone(), out, ic, fy);
                    }
                }
                for x0 in (0..inner.start).step_by(l).chain((inner.end..n).step_by(l)) {
                    let mut at = rows;
                    for a in at.iter_mut() {
                        *a = a.wrapping_add(2 * x0).wrapping_sub(g.pad_left);
                    }
                    // SAFETY: RowSources makes columns -pl .. span of every row
                    // readable (2 x0 - pl .. + 2 l + 1 for x0 < n); the tables hold n
                    // entries each.
                    let mut v = unsafe {
                        if s2_edge(g, x0, l) {
                            let mut m = [pad; 3];
                            for (dx, mm) in m.iter_mut().enumerate() {
                                *mm = load::<S>(masks.as_ptr().add(dx * n + x0));
                            }
                            if max {
                                s2_vec::<S, true, true>(simd, &at, &m, pad)
                            } else {
                                s2_vec::<S, false, true>(simd, &at, &m, pad)
                            }
                        } else if max {
                            s2_vec::<S, true, false>(simd, &at, &[pad; 3], pad)
                        } else {
                            s2_vec::<S, false, false>(simd, &at, &[pad; 3], pad)
                        }
                    };
                    if !max {
                        // SAFETY: x0 + l <= n, the table's length.
                        let cv = unsafe { load::<S>(inv_col.as_ptr().add(x0)) };
                        v = simd.mul_f32s(simd.mul_f32s(v, cv), fy);
                    }
                    store_in_plane::<S>(out_plane, y * out_w + x0, out_w - x0, v);
                }
                if flagged {
                    // Rare: a NaN or an infinity in reach; exact scalar row.
                    let out_row = &mut out_plane[y * out_w..(y + 1) * out_w];
                    exact_max_row(plane, g, 2, y, out_row);
                }
            }
        }
    }
}

/// Average pooling with stride 2: the reciprocal window counts per output column
/// (`n` entries, zero past `out_w`) and per output row (all zero for max pooling).
pub(super) fn s2_scales(p: &Pool, g: &PlaneGeom, n: usize) -> (Scratch<f32>, Scratch<f32>) {
    let (mut inv_col, mut inv_row) = (scratch::take(n, 0.0f32), scratch::take(g.out_h, 0.0f32));
    if let PoolKind::Avg { count_include_pad } = p.kind {
        for (x, v) in inv_col.iter_mut().enumerate().take(g.out_w) {
            *v = if count_include_pad {
                recip(count_padded(x, 2, g.pad_left, g.in_w + p.pad_right))
            } else {
                recip(count(x, 2, g.pad_left, g.in_w))
            };
        }
        for (y, v) in inv_row.iter_mut().enumerate() {
            *v = if count_include_pad {
                recip(count_padded(y, 2, g.pad_top, g.in_h + p.pad_bottom))
            } else {
                recip(count(y, 2, g.pad_top, g.in_h))
            };
        }
    }
    (inv_col, inv_row)
}

impl Kernel for Op<'_> {
    type Output = ();

    #[inline(always)]
    fn run<S: SimdExt>(self, simd: S) {
        if self.p.stride_h == 2 {
            return self.run_s2(simd);
        }
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
        for (_, plane, out_plane) in planes(g, input, output, channels.clone()) {
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
