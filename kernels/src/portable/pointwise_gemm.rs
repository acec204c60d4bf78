//! Grouped 1x1 convolution as a register-blocked GEMM over planar input.
//!
//! Per group, the output block `rows x pixels` is `W[rows][k] * X[k][pixels]` where
//! row `kk` of `X` is input plane `in_rows[g * k + kk]` (so a channel shuffle costs
//! nothing: the row pointers are computed once per group). The pixels are
//! contiguous within a plane, so the tile vectorises along pixels: per `k` it loads
//! `V` vectors of pixels once, broadcasts `R` weights (one per output row, from the
//! k-major `MR`-row panels) and issues `R * V` FMAs into `R * V` accumulators.
//!
//! Tile choice (AVX2+FMA, 16 ymm registers): `R` = 4..=6 rows x `V` = 2 vectors
//! (16 pixels). A group's rows are cut into as few tiles of at most 6 as possible
//! with sizes differing by one (m = 20 -> 5+5+5+5, 72 -> 12x6, 80 -> 10x6 + 4x5),
//! so no FMA is spent on the zero rows that pad a panel to `MR`; the 6 weight
//! streams of a tile may straddle two panels (one pointer per row). 6x2 keeps 12
//! accumulators, 2 pixel vectors and 1 broadcast live (15 registers) and needs 8
//! loads per 12 FMAs; its input block (`k x 16` floats, 20 KB at k = 320) stays in
//! L1 while the row tiles sweep it. Measured on this machine (AMD EPYC Zen 3,
//! 103 GFLOP/s FMA peak, best-of-300 on the eight 224x224 stage shapes, all
//! shapes together):
//!
//! | tile (rows x vectors) | live ymm | GFLOP/s | note |
//! |---|---|---|---|
//! | 4x3 | 16 | 44 | LLVM spills an accumulator inside the k loop |
//! | 4x2 | 11 | 57 | 8 accumulators barely cover the FMA latency |
//! | 2x4 | 11 | 61 | |
//! | 2x5 | 13 | 63 | |
//! | 2x6 (48 pixels) | 15 | 69 | input block leaves L1 for k >= 160 |
//! | **4..6 x 2 (16 pixels)** | 15 | **74** | chosen: 60-84 per shape |
//!
//! The loop order inside the tile is picked so the live registers stay at 15 (see
//! [`tile`]); at 16 LLVM spills.
//!
//! AVX-512 (32 zmm registers) uses 4..=6 rows x 3 vectors of 16 (22 registers;
//! not measured here: this CPU has no AVX-512). pulp's scalar level uses the AVX2
//! shape with one float per "vector".
//!
//! Large planes: pixels are cut into chunks whose `k` input rows fit in half of L2;
//! within a chunk the row tiles are the outer loop and the pixel blocks the inner
//! one, so each tile's weights stay in L1 and its output rows are written as a few
//! sequential streams (pixel blocks outside made every 16-pixel block touch all
//! `m` output planes; at 720x1280 the criterion medians on the shared machine went
//! from 6-15 to 15-29 GFLOP/s, best-of-N is now 43-76).
//!
//! Pixel tails: after the `V`-vector blocks, one narrower block, then fewer than one
//! vector of pixels, which are copied to a zero-padded scratch, computed with a
//! one-vector tile and copied back (so the accumulate epilogue never reads or
//! writes past the run). Epilogues: bias (the accumulators start from it), then
//! accumulate (add the value already in the output: an in-place residual), then
//! ReLU, in any combination.

use super::simd::{load, relu, store, Kernel, Level, SimdExt, MAX_LANES};
use crate::scratch;
use crate::{Epilogue, KernelError, Pointwise, PointwiseCall, MR};

/// Computes the panels and pixels of `call` with the best level of this CPU.
pub fn pointwise(
    p: &Pointwise,
    input: &[f32],
    output: &mut [f32],
    call: &PointwiseCall,
) -> Result<(), KernelError> {
    pointwise_at(Level::best(), p, input, output, call)
}

/// [`pointwise`] with a chosen instruction-set level.
pub fn pointwise_at(
    level: Level,
    p: &Pointwise,
    input: &[f32],
    output: &mut [f32],
    call: &PointwiseCall,
) -> Result<(), KernelError> {
    p.check(input, output, call)?;
    if call.count == 0 || call.panels.is_empty() {
        return Ok(());
    }
    level.run(Op {
        p,
        input,
        output,
        call,
    });
    Ok(())
}

struct Op<'a, 'b> {
    p: &'a Pointwise<'b>,
    input: &'a [f32],
    output: &'a mut [f32],
    call: &'a PointwiseCall,
}

/// One register tile: `R` rows x `V` vectors of pixels over the whole `k`.
///
/// `w[r]` points at row `r`'s weight at `k = 0` (the next `k` is `MR` floats on,
/// as in a packed panel); `rows[kk] + px` is the first pixel of input row `kk`;
/// `bias[r]` is row `r`'s bias; the first `valid` rows are stored, row `r` at
/// `out + r * out_stride` (rows past `valid` compute garbage from valid weights and
/// are dropped).
///
/// The loop order follows the shape so the live registers are as few as possible:
/// a wide tile (`V > R`) keeps `R` broadcasts and one pixel vector live
/// (`R * V + R + 1` registers), a tall one keeps `V` pixel vectors and one
/// broadcast (`R * V + V + 1`). With exactly 16 live ymm registers LLVM spills an
/// accumulator inside the loop, so every AVX2 tile here needs at most 15.
///
/// # Safety
/// `rows[..k]` and every `w[r][.. k * MR]` are readable; every
/// `rows[kk] + px .. + V * LANES` is readable; output rows `0..valid` are writable
/// for `V * LANES` floats from `out`; `valid <= R`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) unsafe fn tile<S: SimdExt, const R: usize, const V: usize>(
    simd: S,
    w: &[*const f32; R],
    bias: &[f32; R],
    rows: *const *const f32,
    k: usize,
    px: usize,
    valid: usize,
    out: *mut f32,
    out_stride: usize,
    epi: Epilogue,
) {
    let l = S::F32_LANES;
    let zero = simd.splat_f32s(0.0);
    let mut acc = [[zero; V]; R];
    for (row, &b) in acc.iter_mut().zip(bias) {
        *row = [simd.splat_f32s(b); V];
    }
    let mut wo = 0;
    let mut rp = rows;
    for _ in 0..k {
        // SAFETY: rp walks rows[..k]; the caller guarantees the pixel range.
        let src = unsafe { (*rp).add(px) };
        if V > R {
            let mut b = [zero; R];
            for (br, &wr) in b.iter_mut().zip(w) {
                // SAFETY: wo < k * MR, inside row r's weight stream.
                *br = simd.splat_f32s(unsafe { *wr.add(wo) });
            }
            for v in 0..V {
                // SAFETY: src + v * l .. + l lies inside the caller's pixel range.
                let xv = unsafe { load::<S>(src.add(v * l)) };
                for (row, &br) in acc.iter_mut().zip(&b) {
                    row[v] = simd.mul_add_e_f32s(br, xv, row[v]);
                }
            }
        } else {
            let mut x = [zero; V];
            for (v, xv) in x.iter_mut().enumerate() {
                // SAFETY: src + v * l .. + l lies inside the caller's pixel range.
                *xv = unsafe { load::<S>(src.add(v * l)) };
            }
            for (row, &wr) in acc.iter_mut().zip(w) {
                // SAFETY: wo < k * MR, inside row r's weight stream.
                let b = simd.splat_f32s(unsafe { *wr.add(wo) });
                for (a, &xv) in row.iter_mut().zip(&x) {
                    *a = simd.mul_add_e_f32s(b, xv, *a);
                }
            }
        }
        wo += MR;
        // SAFETY: stays within (or one past) the row table.
        rp = unsafe { rp.add(1) };
    }
    for (r, row) in acc.iter().enumerate().take(valid) {
        // SAFETY: row r < valid of the destination is writable for V * l floats.
        let o = unsafe { out.add(r * out_stride) };
        for (v, &a) in row.iter().enumerate() {
            let mut a = a;
            // SAFETY: inside the destination row (see above).
            let ov = unsafe { o.add(v * l) };
            if epi.accumulate {
                // SAFETY: as above; the accumulate epilogue reads what it overwrites.
                a = simd.add_f32s(a, unsafe { load::<S>(ov) });
            }
            if epi.relu {
                a = relu(simd, a);
            }
            // SAFETY: as above.
            unsafe { store::<S>(ov, a) };
        }
    }
}

/// One call's GEMM as the tiles see it.
#[derive(Clone, Copy)]
pub(crate) struct Gemm<'a> {
    /// The kernel parameters.
    pub p: &'a Pointwise<'a>,
    /// Row table of the current group (`k` pointers at pixel 0 of the run).
    pub rows: *const *const f32,
    /// Output of channel `c0` at pixel 0 of the run; channel `c` is
    /// `(c - c0) * stride` further.
    pub out: *mut f32,
    /// Floats between output channels.
    pub stride: usize,
    /// First output channel of the call.
    pub c0: usize,
}

/// Runs group `g`'s local rows `lo..hi` over `blocks` consecutive pixel blocks of
/// `V` vectors from `px`: row tiles outside, pixel blocks inside, so each tile's
/// weights stay in L1 and its output rows are written as sequential streams.
///
/// # Safety
/// `lo < hi <= m`, the rows are inside the call's panels; pixels
/// `px .. px + blocks * V * LANES` are inside the run (or the scratch) the row table
/// and `gm.out` describe.
#[inline(always)]
unsafe fn rows_block<S: SimdExt, const V: usize>(
    simd: S,
    gm: Gemm,
    g: usize,
    lo: usize,
    hi: usize,
    px: usize,
    blocks: usize,
) {
    let step = V * S::F32_LANES;
    let p = gm.p;
    let (k, m, ppg) = (p.k, p.m, p.panels_per_group());
    let wrow = |r: usize| {
        // Local row r of group g lives in panel g * ppg + r / MR at column r % MR.
        p.weights[(g * ppg + r / MR) * k * MR + r % MR..].as_ptr()
    };
    let out_row = |r: usize| gm.out.wrapping_add((g * m + r - gm.c0) * gm.stride + px);
    macro_rules! run {
        ($r:tt, $h:expr, $s:expr) => {{
            let (h, s) = ($h, $s);
            // Rows past s reuse row h's weights and bias (computed, never stored).
            let w: [*const f32; $r] = core::array::from_fn(|i| wrow(h + if i < s { i } else { 0 }));
            let b: [f32; $r] =
                core::array::from_fn(|i| p.bias[g * m + h + if i < s { i } else { 0 }]);
            let out = out_row(h);
            for blk in 0..blocks {
                // SAFETY: the caller's contract; s <= $r.
                unsafe {
                    tile::<S, $r, V>(
                        simd,
                        &w,
                        &b,
                        gm.rows,
                        k,
                        px + blk * step,
                        s,
                        out.wrapping_add(blk * step),
                        gm.stride,
                        p.epilogue,
                    )
                };
            }
        }};
    }
    {
        // As few tiles of at most 6 rows as possible, with sizes differing by at
        // most one (m = 20 -> 5+5+5+5, m = 80 -> 10x6 + 4x5). (A plain loop: a
        // closure here would be compiled without the level's target features.)
        let n = hi - lo;
        let t = n.div_ceil(6);
        let (base, extra) = (n / t, n % t);
        let mut h = lo;
        for i in 0..t {
            let s = base + usize::from(i < extra);
            match s {
                6 => run!(6, h, 6),
                5 => run!(5, h, 5),
                _ => run!(4, h, s),
            }
            h += s;
        }
    }
}

/// Input bytes of one pixel chunk (see [`pixels_v`]): half of this core's L2.
/// Measured on the 720x1280 shapes (all pointwise shapes together, best of N):
/// 64 KB 51, 128 KB 50, 256 KB 61, 400 KB 51 GFLOP/s; 224x224 is unaffected (76-77).
const CHUNK_BYTES: usize = 256 * 1024;

/// Runs every whole vector of pixels `0..count` of group `g`'s rows `lo..hi` (blocks
/// of `V` vectors, then one narrower block) and returns how many pixels it did.
///
/// # Safety
/// As for [`rows_block`], for pixels `0..count`.
#[inline(always)]
unsafe fn pixels_v<S: SimdExt, const V: usize>(
    simd: S,
    gm: Gemm,
    g: usize,
    lo: usize,
    hi: usize,
    count: usize,
) -> usize {
    let l = S::F32_LANES;
    let mut px = 0;
    macro_rules! go {
        ($v:tt, $blocks:expr) => {
            // SAFETY: px + blocks * $v * l <= count (the caller's contract covers
            // 0..count).
            unsafe { rows_block::<S, $v>(simd, gm, g, lo, hi, px, $blocks) }
        };
    }
    // Pixel chunks whose input (k rows) stays in L2 while every row tile sweeps
    // them.
    let step = V * l;
    let chunk = (CHUNK_BYTES / (4 * gm.p.k * step)).max(1);
    while px + step <= count {
        let blocks = ((count - px) / step).min(chunk);
        go!(V, blocks);
        px += blocks * step;
    }
    let nv = ((count - px) / l).min(V.saturating_sub(1));
    match nv {
        0 => {}
        1 => go!(1, 1),
        2 => go!(2, 1),
        3 => go!(3, 1),
        4 => go!(4, 1),
        _ => go!(5, 1),
    }
    px + nv * l
}

/// Runs every whole vector of pixels `0..count` of group `g`'s local rows `lo..hi`
/// with the tile shape of the level and returns how many pixels it did.
///
/// # Safety
/// As for [`rows_block`], for pixels `0..count`.
#[inline(always)]
pub(crate) unsafe fn pixels<S: SimdExt>(
    simd: S,
    gm: Gemm,
    g: usize,
    lo: usize,
    hi: usize,
    count: usize,
) -> usize {
    // SAFETY: the caller's contract.
    unsafe {
        if S::F32_LANES >= 16 {
            pixels_v::<S, 3>(simd, gm, g, lo, hi, count)
        } else {
            pixels_v::<S, 2>(simd, gm, g, lo, hi, count)
        }
    }
}

/// The tail: fewer than one vector of pixels at `gm.out` (`tail` per row), computed
/// through zero-padded scratch; `gm.rows` must point at scratch rows of `LANES`
/// floats holding the pixels.
///
/// # Safety
/// As for [`rows_block`] with one vector, except that only `tail` pixels of each
/// output row are read (accumulate) and written.
#[inline(always)]
pub(crate) unsafe fn tail_block<S: SimdExt>(
    simd: S,
    gm: Gemm,
    g: usize,
    lo: usize,
    hi: usize,
    tail: usize,
) {
    let l = S::F32_LANES;
    let m = gm.p.m;
    let mut buf = [0.0f32; 6 * MAX_LANES];
    let bp = buf.as_mut_ptr();
    let mut h = lo;
    while h < hi {
        let n = (hi - h).min(6);
        let out = gm.out.wrapping_add((g * m + h - gm.c0) * gm.stride);
        if gm.p.epilogue.accumulate {
            for r in 0..n {
                // SAFETY: row h + r of the run (caller's contract); buf holds 6 rows
                // of l floats.
                unsafe {
                    core::ptr::copy_nonoverlapping(out.add(r * gm.stride), bp.add(r * l), tail)
                };
            }
        }
        let scratch = Gemm {
            out: bp.wrapping_sub((g * m + h - gm.c0) * l),
            stride: l,
            ..gm
        };
        // SAFETY: scratch rows hold l floats each; buf holds the n <= 6 rows of l
        // floats the tiles of rows h..h+n write.
        unsafe { rows_block::<S, 1>(simd, scratch, g, h, h + n, 0, 1) };
        for r in 0..n {
            // SAFETY: as above.
            unsafe { core::ptr::copy_nonoverlapping(bp.add(r * l), out.add(r * gm.stride), tail) };
        }
        h += n;
    }
}

impl Kernel for Op<'_, '_> {
    type Output = ();

    #[inline(always)]
    fn run<S: SimdExt>(self, simd: S) {
        let Op {
            p,
            input,
            output,
            call,
        } = self;
        let l = S::F32_LANES;
        let (k, ppg) = (p.k, p.panels_per_group());
        let c0 = p.channels_of(&call.panels).start;
        let count = call.count;
        // All output access goes through this pointer (check() validated the
        // extent of every channel's run).
        let out_base = output.as_mut_ptr();
        let (ostride, ostart) = (call.output.stride, call.output.start);
        let mut rows = scratch::take(0, core::ptr::null::<f32>());
        // Fewer than one vector of pixels at the end: zero-padded scratch rows.
        let tail = count % l;
        let mut tail_in = scratch::take(if tail > 0 { k * l } else { 0 }, 0.0f32);
        let tail_ptr = tail_in.as_mut_ptr();
        let mut tail_rows = scratch::take(0, core::ptr::null::<f32>());
        tail_rows.extend(
            (0..if tail > 0 { k } else { 0 }).map(|kk| tail_ptr.wrapping_add(kk * l).cast_const()),
        );
        let first_group = call.panels.start / ppg;
        let last_group = (call.panels.end - 1) / ppg;
        for g in first_group..=last_group {
            // Local rows of group g covered by the call's panels.
            let lo = (call.panels.start.max(g * ppg) - g * ppg) * MR;
            let hi = ((call.panels.end.min((g + 1) * ppg) - g * ppg) * MR).min(p.m);
            rows.clear();
            for &r in &p.in_rows[g * k..(g + 1) * k] {
                let off = r as usize * call.input.stride + call.input.start;
                // SAFETY: check() proved every in_rows plane holds the pixel run.
                rows.push(unsafe { input.as_ptr().add(off) });
            }
            let gm = Gemm {
                p,
                rows: rows.as_ptr(),
                out: out_base.wrapping_add(ostart),
                stride: ostride,
                c0,
            };
            // SAFETY: every pixel read and written lies in the run that check()
            // validated.
            let px = unsafe { pixels(simd, gm, g, lo, hi, count) };
            if tail == 0 {
                continue;
            }
            for (kk, &src) in rows.iter().enumerate() {
                // SAFETY: px + tail == count, inside the validated run; scratch row
                // kk holds l > tail floats.
                unsafe { core::ptr::copy_nonoverlapping(src.add(px), tail_ptr.add(kk * l), tail) };
            }
            let gm = Gemm {
                rows: tail_rows.as_ptr(),
                out: gm.out.wrapping_add(px),
                ..gm
            };
            // SAFETY: the scratch rows hold the tail pixels; the output run holds
            // px + tail == count pixels per channel.
            unsafe { tail_block(simd, gm, g, lo, hi, tail) };
        }
        drop(tail_in);
    }
}
