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
//! AVX-512 (32 zmm registers) uses 4..=6 rows x 3 vectors of 16 (22 registers).
//! Measured on an AMD EPYC Zen 4 (AVX-512 at the FLOP rate of AVX2: 512-bit
//! operations run as two halves), probe at 224x224, AVX-512 against AVX2, us:
//! s2u0 gconv1 k24 m60 83 / 94, s2 gconv2 k20 m80 73 / 79, s3 gconv2 k40 m160
//! 72 / 77, 0.5x s2 gconv2 bands 21 / 24; the 7x7 planes lose (49 pixels are one
//! 48-pixel block and a 16-lane tile for the last pixel, against AVX2's matrix-
//! vector tail): s4 gconv1 k320 m80 90 / 75. pulp's scalar level uses the AVX2
//! shape with one float per "vector".
//!
//! Input. For `k >= 64` and at least 24 rows in the call's part of the group
//! ([`PACK_MIN_K`], [`PACK_MIN_ROWS`]) the input is packed: per group, the pixels
//! are cut into chunks whose `k` rows, packed, fill at most 128 KB; each chunk is
//! copied once from the `k` input planes into consecutive `k x 16`-pixel blocks (as
//! onnxruntime's MLAS packs B), and every row tile then reads its block as one
//! sequential stream instead of `k` strided rows (each its own 64-byte stream,
//! more than the hardware prefetcher follows). The copy costs `1/m` of the FMAs,
//! which does not pay for few rows or few input streams: those shapes read the
//! rows in place through the row table ([`Rows`]; also conv2d's im2col rows), in
//! pixel chunks whose `k` rows fit in half of L2 and with `k` in parts of at most
//! [`K_PART`] (see [`Part`]). Either way, within a chunk the row tiles are the
//! outer loop and the pixel blocks the inner one, so each tile's weights stay in
//! L1 and its output rows are written as a few sequential streams, and every
//! output is summed in the same order (bias, then `k = 0, 1, ...` by FMA), so the
//! result is bit-identical whether packed or not and however a call's pixels or
//! panels are split (a unit test checks both).
//!
//! Measured on the shared machine (load 1.2-2.5 on 2 cores; best of 3 runs of
//! `cargo bench -p kernels --bench probe`, each best of N, before = in place for
//! every shape, after = this file, binaries run alternately), GFLOP/s. "plane":
//! one call over a whole plane; "bands": the engine's row-pipeline calls (about 80
//! pixels each, weights cycling through 8 copies, so from L3). Differences of
//! +-5 on shapes whose path did not change are noise.
//!
//! | shape (g = 3 unless noted; 1x unless 0.5x/2x) | 224x224 before | after | 720x1280 before | after |
//! |---|---|---|---|---|
//! | plane s2u0 gconv1 g1 k24 m60 | 75 | 75 | 62 | 60 |
//! | plane s2u0 gconv2 k20 m72 | 80 | 83 | 72 | 74 |
//! | plane s2 gconv1 k80 m20 | 77 | 76 | 59 | 60 |
//! | plane s2 gconv2 k20 m80 | 77 | 76 | 66 | 67 |
//! | plane s3 gconv1 k160 m40 (packed) | 82 | 84 | 69 | 79 |
//! | plane s3 gconv2 k40 m160 | 82 | 82 | 76 | 81 |
//! | plane s4 gconv1 k320 m80 (packed) | 60 | 75 | 81 | 90 |
//! | plane s4 gconv2 k80 m320 (packed) | 76 | 73 | 81 | 90 |
//! | plane 2x s3 gconv1 k320 m80 (packed) | 80 | 88 | 66 | 78 |
//! | plane 2x s3 gconv2 k80 m320 (packed) | 85 | 88 | 75 | 86 |
//! | plane 2x s4 gconv1 k640 m160 (packed) | 61 | 80 | 72 | 86 |
//! | bands 0.5x s2 gconv1 k40 m10 | 69 | 64 | 78 | 76 |
//! | bands 0.5x s2 gconv2 k10 m40 | 51 | 50 | 64 | 62 |
//! | bands 0.5x s3 gconv1 k80 m20 | 69 | 69 | 75 | 80 |
//! | bands 2x s2 gconv1 k160 m40 (packed) | 75 | 75 | 78 | 81 |
//! | bands 2x s2 gconv2 k40 m160 | 74 | 73 | 82 | 76 |
//! | bands 2x s3 gconv1 k320 m80 (packed) | 71 | 79 | 72 | 87 |
//! | bands 2x s3 gconv2 k80 m320 (packed) | 75 | 77 | 87 | 87 |
//! | bands 2x s4 gconv1 k640 m160 (packed) | 62 | 79 | 63 | 81 |
//! | bands 2x s4 gconv2 k160 m640 (packed) | 73 | 76 | 83 | 84 |
//! | all pointwise shapes of the probe | 72 | 77 | 71 | 78 |
//!
//! Tried and dropped: no packing for any shape (see the table); 256 KB and 64 KB
//! packed chunks (1x s2 gconv1 at 224x224: 61 and 79 against 79 for 128 KB; all
//! shapes at 720x1280 79 and 80 against 85); `k` parts in the packed path (1-3
//! GFLOP/s slower on the `k` = 320 and 640 shapes); a software prefetch of the
//! tile's weights 24 `k` ahead in the first pixel block of each tile (3-25 GFLOP/s
//! slower: the extra address registers cost more than the cold weights).
//! On an Intel Xeon (Emerald Rapids, 2026-12-01): with AVX-512, the one or two
//! whole vectors left after the 3-vector blocks merged into one or two 4-vector
//! blocks (6x4 tiles, 29 registers) instead of a narrower block: the stem's GEMM
//! 3 -> 12 at 224x224 unchanged (90.2-93.0 against 90.5-92.2 GFLOP/s), 3 -> 48
//! 4% slower.
//!
//! Pixel tails ([`super::pointwise_tail`]): after the `V`-vector blocks, one
//! narrower block, then fewer than one vector of pixels. Where a weight panel is
//! one vector (AVX2: `MR` = 8 lanes; an AVX-512 call runs these with its AVX2
//! level, see `narrow_level`), a tail of at most `GEMV_TAIL_MAX` pixels runs as
//! matrix-vector products along
//! the output rows (`gemv_tail`: one FMA per 8 rows and pixel, bit-identical to
//! a tile; the 7x7 planes of stage 4 end in one such pixel, which a vector tile
//! computed for 8: probe at 224x224, s4 gconv1 k320 m80 100.1 -> 87.5 us, gconv2
//! k80 m320 102.8 -> 88.5, 2x s4 gconv1 k640 m160 378 -> 334; the 14x14 shapes,
//! 4 tail pixels, unchanged within 1.5%). Otherwise: in a run of at least one
//! vector, one vector tile ending at the run's end that keeps the lanes already
//! done; in a shorter run, the pixels are copied to a zero-padded scratch,
//! computed with a one-vector tile and copied back (so the accumulate epilogue
//! never reads or writes past the run). Epilogues: bias (the accumulators start
//! from it), then accumulate (add the value already in the output: an in-place
//! residual), then ReLU, in any combination.

use super::pointwise_tail::{gemv_tail_applies, tail_block, try_gemv_tail};
use super::simd::{blend, load, store, Kernel, Level, SimdExt, MAX_LANES};
use crate::scratch;
use crate::{Epilogue, InputPlanes, KernelError, Pointwise, PointwiseCall, MR};

/// Computes the panels and pixels of `call` with the best level of this CPU. Where
/// that level's vectors are wider than AVX2's (AVX-512), a call of fewer pixels
/// than one of its vectors runs with AVX2 (same bits; see `narrow_level`).
pub fn pointwise(
    p: &Pointwise,
    input: &[f32],
    output: &mut [f32],
    call: &PointwiseCall,
) -> Result<(), KernelError> {
    p.check(input, output, call)?;
    // SAFETY: `check` proved every run of the call inside `output`.
    unsafe { pointwise_raw(p, InputPlanes::of(input), output.as_mut_ptr(), call) };
    Ok(())
}

/// [`pointwise`] after its checks, for an output at `output` (also the body of
/// `dispatch::pointwise_rows`).
///
/// # Safety
/// `p.check` accepts the call for some output; every output run of the call
/// (`count` floats at `ch * stride + start` from `output`, for the call's
/// channels) is writable and written by no one else during the call; `input`
/// holds every run the call reads, and no one writes those runs during the
/// call (this path reads nothing past them).
pub(crate) unsafe fn pointwise_raw(
    p: &Pointwise,
    input: InputPlanes,
    output: *mut f32,
    call: &PointwiseCall,
) {
    let best = Level::best();
    let level = narrow_level(best, call.count).unwrap_or(best);
    // SAFETY: as this function's contract.
    unsafe { compute(level, p, input, output, call) };
}

/// AVX2 where `best` has wider vectors than AVX2 (AVX-512) and the call is
/// shorter than one of them, else `None` (the call runs with `best`). AVX-512
/// would compute such a call through a zero-padded 16-lane scratch block; AVX2
/// takes at most 4 pixels with matrix-vector products (`gemv_tail`) and 5-15
/// with 8-lane tiles. Every output is summed in the same order at every level,
/// so the result is the same.
///
/// After at least one whole vector the AVX-512 call runs its own tail: a tail
/// of at most 4 pixels with AVX2's matrix-vector products, with the row table it
/// has built ([`try_gemv_tail`]), and 5-15 pixels as one 16-lane tile ending at
/// the run's end. Both once went to a second, AVX2 call, which built the table
/// again and paid its own set-up. On an Intel Xeon (Emerald Rapids,
/// 2026-12-02): for 1-4 pixels (the 7x7 and 14x14 planes) the AVX2 calls took
/// 7-8% of 0.5x g = 3's samples at 224x224 (`perf record`), their FMAs about 1%;
/// network, paired against the second call: 0.5x at 224x224 0.977 (quartiles
/// 0.955-1.001, 30 rounds; 0.956-0.984 in 20 more), 2x 0.998 (0.986-1.008);
/// probe, the 7x7 and 14x14 shapes 0.94-0.99. For 5-15 pixels (stage 4 at
/// 480x640, 300 pixels per plane, ends in 12; at 720x1280, 920, in 8), 0.5x's
/// stage-4 steps in profiled rounds, paired: 480x640 0.960 (0.956-0.983, 8
/// rounds), 720x1280 0.977 (0.950-1.020, 6 rounds); 2x's at 480x640 1.004
/// (0.979-1.013, 6 rounds; its banded calls end in varied tails).
fn narrow_level(best: Level, count: usize) -> Option<Level> {
    let narrow = Level::avx2_fma()?;
    (best.lanes() > narrow.lanes() && count < best.lanes()).then_some(narrow)
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
    // SAFETY: `check` proved every run of the call inside `output`.
    unsafe { compute(level, p, InputPlanes::of(input), output.as_mut_ptr(), call) };
    Ok(())
}

/// Runs a call that `p.check` accepted (or a sub-span of one) at `level`.
///
/// # Safety
/// Every output run of the call (`count` floats at `ch * stride + start` from
/// `output`, for the call's channels) is writable and written by no one else
/// during the call; `input` holds every run the call reads, which no one
/// writes during the call.
unsafe fn compute(
    level: Level,
    p: &Pointwise,
    input: InputPlanes,
    output: *mut f32,
    call: &PointwiseCall,
) {
    if call.count == 0 || call.panels.is_empty() {
        return;
    }
    level.run(Op {
        p,
        input: input.ptr,
        output,
        call,
    });
}

struct Op<'a, 'b> {
    p: &'a Pointwise<'b>,
    /// The input's first float: `compute`'s caller vouched for every run.
    input: *const f32,
    /// The output's first float: `compute`'s caller vouched for every run.
    output: *mut f32,
    call: &'a PointwiseCall,
}

/// One register tile: `R` rows x `V` vectors of pixels over the whole `k`.
///
/// `w[r]` points at row `r`'s weight at `k = 0` (the next `k` is `MR` floats on,
/// as in a packed panel); `src` is a cursor at the first pixel of input row 0 (see
/// [`Input`]), moved on once per `k`;
/// `bias[r]` and `floor[r]` are row `r`'s bias and ReLU floor in every lane; the
/// first `valid` rows are stored, row `r` at `out + r * out_stride` (rows past
/// `valid` compute garbage from valid weights and are dropped).
///
/// The loop order follows the shape so the live registers are as few as possible:
/// a wide tile (`V > R`) keeps `R` broadcasts and one pixel vector live
/// (`R * V + R + 1` registers), a tall one keeps `V` pixel vectors and one
/// broadcast (`R * V + V + 1`). With exactly 16 live ymm registers LLVM spills an
/// accumulator inside the loop, so every AVX2 tile here needs at most 15.
///
/// # Safety
/// Every `w[r][.. k * MR]` is readable; the cursor's `k` rows are readable for
/// `V * LANES` floats each; output rows `0..valid` are writable
/// for `V * LANES` floats from `out`; `valid <= R`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) unsafe fn tile<S: SimdExt, const R: usize, const V: usize, I: Input>(
    simd: S,
    w: &[*const f32; R],
    bias: &[S::f32s; R],
    floor: &[S::f32s; R],
    src: I::Cursor,
    k: usize,
    valid: usize,
    out: *mut f32,
    out_stride: usize,
    epi: Epilogue,
    keep: usize,
    part: Part,
) {
    let l = S::F32_LANES;
    let zero = simd.splat_f32s(0.0);
    let mut acc = [[zero; V]; R];
    for (r, (row, &b)) in acc.iter_mut().zip(bias).enumerate() {
        if !part.first {
            // A later part of k: continue from the partial sums stored.
            if r < valid {
                for (v, a) in row.iter_mut().enumerate() {
                    // SAFETY: row r < valid of the destination is readable.
                    *a = unsafe { load::<S>(out.add(r * out_stride + v * l)) };
                }
            }
        } else {
            *row = [b; V];
        }
    }
    let mut wo = 0;
    let mut cur = src;
    for _ in 0..k {
        // SAFETY: the cursor walks the k rows the caller guarantees.
        let src = unsafe { I::ptr(cur) };
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
        cur = I::next(cur);
    }
    // Constant bounds and indices (not `acc.iter().take(valid)`): LLVM then unrolls
    // the epilogue and keeps every accumulator in a register. With the iterator it
    // left the AVX-512 6x3 tile's accumulator array on the stack and reloaded two
    // of them in every k step (probe, Zen 4, 224x224 in-place shapes: s3 gconv2
    // k40 m160 262 -> 72 us, s2u0 gconv1 k24 m60 347 -> 83 us; AVX2 unchanged).
    #[allow(clippy::needless_range_loop)]
    for r in 0..R {
        if r >= valid {
            break;
        }
        // SAFETY: row r < valid of the destination is writable for V * l floats.
        let o = unsafe { out.add(r * out_stride) };
        for v in 0..V {
            let mut a = acc[r][v];
            // SAFETY: inside the destination row (see above).
            let ov = unsafe { o.add(v * l) };
            if !part.last {
                // SAFETY: as above.
                unsafe { store::<S>(ov, a) };
                continue;
            }
            if epi.accumulate {
                // SAFETY: as above; the accumulate epilogue reads what it overwrites.
                a = simd.add_f32s(a, unsafe { load::<S>(ov) });
            }
            if epi.relu {
                a = simd.relu_at(a, floor[r]);
            }
            let kv = keep.saturating_sub(v * l).min(l);
            if kv > 0 {
                // SAFETY: as above; TAIL_MASK holds 2 * MAX_LANES >= kv + l entries
                // from MAX_LANES - kv.
                unsafe {
                    let old = load::<S>(ov);
                    let m = load::<S>(TAIL_MASK.as_ptr().add(MAX_LANES - kv).cast());
                    a = blend(simd, old, a, m);
                }
            }
            // SAFETY: as above.
            unsafe { store::<S>(ov, a) };
        }
    }
}

/// Which part of the `k` sum a tile computes: the whole sum is split into parts
/// (so a part's input block and weights stay in L1); partial sums go through the
/// output as f32, exactly what the registers held, so the result is bit-identical
/// to one pass; the epilogue runs after the last part. Only sums without the
/// accumulate epilogue are split (adding the old output first would change the
/// rounding order), and a tile that keeps lanes (`keep > 0`) computes the whole sum.
#[derive(Clone, Copy)]
pub(crate) struct Part {
    /// The first part: start from the bias.
    pub first: bool,
    /// The last part: apply the epilogue.
    pub last: bool,
}

/// Lane masks for a tile that keeps its first lanes: the `l` entries from
/// `MAX_LANES - keep` are zero for the first `keep` lanes, all-ones after.
static TAIL_MASK: [u32; 2 * MAX_LANES] = {
    let mut t = [0u32; 2 * MAX_LANES];
    let mut i = MAX_LANES;
    while i < 2 * MAX_LANES {
        t[i] = u32::MAX;
        i += 1;
    }
    t
};

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

/// Where a tile reads its input rows: a cursor at row `kk` of a pixel block, moved
/// on to row `kk + 1` by [`Input::next`].
pub(crate) trait Input: Copy {
    /// A position in the input.
    type Cursor: Copy;
    /// The cursor at row `k0` of the block of pixels starting at `px` (a multiple of
    /// the block width the input was laid out with).
    fn cursor(self, k0: usize, px: usize) -> Self::Cursor;
    /// The first pixel of the cursor's row.
    ///
    /// # Safety
    /// The cursor must be at a row of the input (not past its end).
    unsafe fn ptr(c: Self::Cursor) -> *const f32;
    /// The cursor at the next row.
    fn next(c: Self::Cursor) -> Self::Cursor;
}

/// Input rows read in place through a row table: row `kk` is `rows[kk]`.
#[derive(Clone, Copy)]
pub(crate) struct Rows(pub *const *const f32);

impl Input for Rows {
    type Cursor = (*const *const f32, usize);
    #[inline(always)]
    fn cursor(self, k0: usize, px: usize) -> Self::Cursor {
        (self.0.wrapping_add(k0), px)
    }
    #[inline(always)]
    unsafe fn ptr((rp, px): Self::Cursor) -> *const f32 {
        // SAFETY: the caller keeps rp inside the row table.
        unsafe { (*rp).add(px) }
    }
    #[inline(always)]
    fn next((rp, px): Self::Cursor) -> Self::Cursor {
        (rp.wrapping_add(1), px)
    }
}

/// Input packed by [`pack`]: blocks of `step` pixels, each `k` rows of `step`
/// consecutive floats, so a tile reads one sequential stream. Pixel `px` (a multiple
/// of `step`) of row `kk` is at `src + px * k + kk * step`.
#[derive(Clone, Copy)]
pub(crate) struct Packed {
    /// Row 0 of block 0.
    pub src: *const f32,
    /// Rows per block.
    pub k: usize,
    /// Pixels per block.
    pub step: usize,
}

/// A [`Packed`] cursor: the row's first pixel and the distance to the next row.
#[derive(Clone, Copy)]
pub(crate) struct PackedCursor(*const f32, usize);

impl Input for Packed {
    type Cursor = PackedCursor;
    #[inline(always)]
    fn cursor(self, k0: usize, px: usize) -> PackedCursor {
        PackedCursor(
            self.src.wrapping_add(px * self.k + k0 * self.step),
            self.step,
        )
    }
    #[inline(always)]
    unsafe fn ptr(c: PackedCursor) -> *const f32 {
        c.0
    }
    #[inline(always)]
    fn next(c: PackedCursor) -> PackedCursor {
        PackedCursor(c.0.wrapping_add(c.1), c.1)
    }
}

/// Copies pixels `px .. px + blocks * step` of the `k` rows `rows[..k]` into `dst`
/// in the [`Packed`] layout (`step` a multiple of the vector width).
///
/// # Safety
/// Every `rows[kk] + px .. + blocks * step` is readable; `dst` is writable for
/// `blocks * k * step` floats and does not overlap the rows.
#[inline(always)]
unsafe fn pack<S: SimdExt>(
    rows: &[*const f32],
    px: usize,
    blocks: usize,
    step: usize,
    dst: *mut f32,
) {
    let l = S::F32_LANES;
    let k = rows.len();
    for (kk, &row) in rows.iter().enumerate() {
        let src = row.wrapping_add(px);
        let d = dst.wrapping_add(kk * step);
        for b in 0..blocks {
            let mut v = 0;
            while v < step {
                // SAFETY: the caller's contract: pixel b * step + v .. + l of the
                // row is readable, and its packed place is writable.
                unsafe { store::<S>(d.add(b * k * step + v), load::<S>(src.add(b * step + v))) };
                v += l;
            }
        }
    }
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
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn rows_block<S: SimdExt, const V: usize, I: Input>(
    simd: S,
    gm: Gemm,
    input: I,
    g: usize,
    lo: usize,
    hi: usize,
    px: usize,
    blocks: usize,
    keep: usize,
    ks: (usize, usize),
) {
    let step = V * S::F32_LANES;
    let p = gm.p;
    let (k, m, ppg) = (p.k, p.m, p.panels_per_group());
    let (k0, k1) = ks;
    let part = Part {
        first: k0 == 0,
        last: k1 == k,
    };
    let wrow = |r: usize| {
        // Local row r of group g lives in panel g * ppg + r / MR at column r % MR;
        // its weight for k0 is k0 * MR floats on.
        p.weights[(g * ppg + r / MR) * k * MR + k0 * MR + r % MR..].as_ptr()
    };
    let out_row = |r: usize| gm.out.wrapping_add((g * m + r - gm.c0) * gm.stride + px);
    macro_rules! run {
        ($r:tt, $h:expr, $s:expr) => {{
            let (h, s) = ($h, $s);
            // Rows past s reuse row h's weights and bias (computed, never stored).
            // Bias and ReLU floor as whole vectors, splat once per row tile. Built
            // as scalar arrays on the stack, LLVM reloaded four of them at a time
            // as one 16-byte vector, a load that store forwarding cannot serve
            // (185 such scalar stack stores in the probe binary, 0 now; Intel
            // Emerald Rapids, probe at 224x224, 9 alternating rounds: the stem
            // 3 -> 12 / 24 / 48 0.94 / 0.94 / 0.93 of the time before; pointwise
            // shapes together 0.99 with AVX-512, 0.98 with AVX2).
            let zero = simd.splat_f32s(0.0);
            let mut w = [core::ptr::null::<f32>(); $r];
            let (mut b, mut f) = ([zero; $r], [zero; $r]);
            for i in 0..$r {
                let r = h + if i < s { i } else { 0 };
                w[i] = wrow(r);
                b[i] = simd.splat_f32s(p.bias[g * m + r]);
                f[i] = simd.splat_f32s(p.floor_of(g * m + r));
            }
            let out = out_row(h);
            for blk in 0..blocks {
                // SAFETY: the caller's contract; s <= $r.
                unsafe {
                    tile::<S, $r, V, I>(
                        simd,
                        &w,
                        &b,
                        &f,
                        input.cursor(k0, px + blk * step),
                        k1 - k0,
                        s,
                        out.wrapping_add(blk * step),
                        gm.stride,
                        p.epilogue,
                        keep,
                        part,
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

/// Bytes of one packed pixel chunk (see [`pixels_packed`]): a quarter of this
/// core's L2, so the chunk's source rows, its packed copy and the output rows the
/// tiles write stay in L2 together. Measured when every shape was packed (best of
/// N, 128 KB against 256 KB and 64 KB): 1x s2 gconv1 (k = 80, m = 20) 79 against
/// 61 and 79 GFLOP/s at 224x224, 62 against 57 and 57 at 720x1280; all pointwise
/// shapes of the probe 79.4 against 78.5 and 79.3 at 224x224, 84.6 against 79.1
/// and 80.0 at 720x1280.
const PACK_BYTES: usize = 128 * 1024;

/// The packed path is taken for at least this many input rows: with fewer, the
/// hardware prefetcher follows the rows read in place well enough and the copy
/// does not pay (best of 3, in place against packed, GFLOP/s: k = 40, m = 160
/// bands 74 / 70 at 224x224, 82 / 79 at 720x1280; k = 20 and 24 planes 75-79
/// against 68-70 at 224x224).
const PACK_MIN_K: usize = 64;

/// ... and at least this many output rows in the call's part of the group (four
/// row tiles): the copy is shared by the row tiles; at m = 20 (four tiles of 5) it
/// already costs more than it saves (k = 80, m = 20: 84 / 79 on the 224x224
/// plane, 82 / 75 on the 720x1280 bands), at m = 10 more so.
const PACK_MIN_ROWS: usize = 24;

/// Longest part of the `k` sum one tile pass computes (see [`Part`]): its input
/// block (`K_PART x 16` floats) and a tile's weights (`K_PART x 8`) fit L1
/// together.
const K_PART: usize = 192;

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
    let k = gm.p.k;
    let mut px = 0;
    macro_rules! go {
        ($v:tt, $blocks:expr) => {
            go!($v, $blocks, (0, k))
        };
        ($v:tt, $blocks:expr, $ks:expr) => {
            // SAFETY: px + blocks * $v * l <= count (the caller's contract covers
            // 0..count).
            unsafe {
                rows_block::<S, $v, Rows>(simd, gm, Rows(gm.rows), g, lo, hi, px, $blocks, 0, $ks)
            }
        };
    }
    // Pixel chunks whose input (k rows) stays in L2 while every row tile sweeps
    // them; within a chunk, k in parts of at most K_PART so a part's input block
    // and a tile's weights stay in L1.
    let step = V * l;
    let chunk = (CHUNK_BYTES / (4 * k * step)).max(1);
    let parts = if gm.p.epilogue.accumulate {
        1
    } else {
        k.div_ceil(K_PART)
    };
    let kc = k.div_ceil(parts);
    while px + step <= count {
        let blocks = ((count - px) / step).min(chunk);
        let mut k0 = 0;
        while k0 < k {
            let k1 = (k0 + kc).min(k);
            go!(V, blocks, (k0, k1));
            k0 = k1;
        }
        px += blocks * step;
    }
    // V is 2 or 3 (see [`pixels`]): at most two whole vectors remain (the min
    // keeps the count and the work in step for any V).
    let nv = ((count - px) / l).min(V.saturating_sub(1)).min(2);
    match nv {
        0 => {}
        1 => go!(1, 1),
        _ => go!(2, 1),
    }
    px + nv * l
}

/// Pixel blocks of `V` vectors per packed chunk of `k` rows: the chunk's packed
/// input (`k x blocks x V` vectors) fills at most [`PACK_BYTES`], and no more
/// blocks than `count` pixels hold (at least one).
fn chunk_blocks(k: usize, step: usize, count: usize) -> usize {
    (PACK_BYTES / (4 * k * step)).min(count / step).max(1)
}

/// Runs all pixels `0..count` (`count >= LANES`) of group `g`'s local rows `lo..hi`
/// through packed input: each pixel chunk's `k` rows are copied once into `buf` as
/// consecutive `k x V`-vector blocks (see [`Packed`]), then every row tile sweeps
/// them as one sequential stream. The narrower block and the last vector (which
/// keeps the lanes already done) are packed the same way with their own width.
///
/// # Safety
/// `rows` holds group `g`'s `k` row pointers, each readable for pixels `0..count`;
/// `buf` is writable for `chunk_blocks(k, V * LANES, count) * k * V * LANES` floats
/// and overlaps neither input nor output; `gm.out` and the rows are as for
/// [`rows_block`] over pixels `0..count`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn pixels_packed<S: SimdExt, const V: usize>(
    simd: S,
    gm: Gemm,
    rows: &[*const f32],
    buf: *mut f32,
    g: usize,
    lo: usize,
    hi: usize,
    count: usize,
) {
    let l = S::F32_LANES;
    let k = gm.p.k;
    let step = V * l;
    let chunk = chunk_blocks(k, step, count);
    let mut px = 0;
    while px + step <= count {
        let blocks = ((count - px) / step).min(chunk);
        // SAFETY: pixels px .. px + blocks * step <= count of every row; buf holds
        // chunk >= blocks blocks of k * step floats.
        unsafe { pack::<S>(rows, px, blocks, step, buf) };
        let input = Packed { src: buf, k, step };
        let at = Gemm {
            out: gm.out.wrapping_add(px),
            ..gm
        };
        // The whole k in one pass (no parts, unlike the in-place path: with the
        // input packed, splitting k measured 1-3 GFLOP/s slower on the k = 320 and
        // 640 shapes).
        // SAFETY: the packed blocks 0..blocks and the output pixels px ..
        // px + blocks * step (the caller's contract).
        unsafe { rows_block::<S, V, Packed>(simd, at, input, g, lo, hi, 0, blocks, 0, (0, k)) };
        px += blocks * step;
    }
    macro_rules! one {
        ($v:tt, $at:expr, $keep:expr) => {{
            let at = $at;
            let w = $v * l;
            // SAFETY: pixels at .. at + w <= count of every row; buf holds at least
            // k * step >= k * w floats.
            unsafe { pack::<S>(rows, at, 1, w, buf) };
            let input = Packed {
                src: buf,
                k,
                step: w,
            };
            let gm = Gemm {
                out: gm.out.wrapping_add(at),
                ..gm
            };
            // SAFETY: the packed block and output pixels at .. at + w.
            unsafe { rows_block::<S, $v, Packed>(simd, gm, input, g, lo, hi, 0, 1, $keep, (0, k)) };
        }};
    }
    // V is 2 or 3: at most two whole vectors remain (as in [`pixels_v`]).
    let nv = ((count - px) / l).min(V.saturating_sub(1)).min(2);
    match nv {
        0 => {}
        1 => one!(1, px, 0),
        _ => one!(2, px, 0),
    }
    px += nv * l;
    // SAFETY: pixels px .. count of every row and output row (the caller's
    // contract); gm.rows is the group's row table.
    if !unsafe { try_gemv_tail(simd, gm, g, lo, hi, px, count - px) } && px < count {
        // Fewer than one vector left: one vector tile ending at count that rewrites
        // the first l - tail lanes (done above) with their current values.
        one!(1, count - l, l - (count - px));
    }
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
        // All output access goes through this pointer (`compute`'s caller
        // vouched for the extent of every channel's run).
        let out_base = output;
        let (ostride, ostart) = (call.output.stride, call.output.start);
        let mut rows = scratch::take(0, core::ptr::null::<f32>());
        // Fewer than one vector of pixels at the end: with at least one vector in
        // the run, one vector tile ending at the run's end that keeps the lanes
        // already done; in a shorter run, zero-padded scratch rows.
        let tail = count % l;
        let short = count < l;
        // The scratch rows only where a short run does not take the matrix-vector
        // path (which reads the rows in place).
        let padded = short && !gemv_tail_applies::<S>(count);
        let mut tail_in = scratch::take(if padded { k * l } else { 0 }, 0.0f32);
        let tail_ptr = tail_in.as_mut_ptr();
        let mut tail_rows = scratch::take(0, core::ptr::null::<f32>());
        tail_rows.extend(
            (0..if padded { k } else { 0 }).map(|kk| tail_ptr.wrapping_add(kk * l).cast_const()),
        );
        // Packed input of one pixel chunk (see pixels_packed), if some group packs
        // (a group packs only if it has PACK_MIN_ROWS rows in the call, so the
        // conditions below hold whenever one does). Taken at its full length so the
        // pool hands out the best-fitting vector (a zero-length loan grown here
        // would leave the pool with ever more grown vectors).
        let step = if l >= 16 { 3 * l } else { 2 * l };
        let may_pack = !short
            && k >= PACK_MIN_K
            && p.m >= PACK_MIN_ROWS
            && call.panels.len() * MR >= PACK_MIN_ROWS;
        // Every packed float is written before it is read: no fill pass.
        let mut pack_buf = scratch::take_overwritten(
            if may_pack {
                chunk_blocks(k, step, count) * k * step
            } else {
                0
            },
            0.0f32,
        );
        let pack_ptr = pack_buf.as_mut_ptr();
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
                rows.push(unsafe { input.add(off) });
            }
            let gm = Gemm {
                p,
                rows: rows.as_ptr(),
                out: out_base.wrapping_add(ostart),
                stride: ostride,
                c0,
            };
            if may_pack && hi - lo >= PACK_MIN_ROWS {
                // SAFETY: every pixel read and written lies in the run that check()
                // validated; pack_buf holds the floats pixels_packed needs and is
                // the thread's own scratch.
                unsafe {
                    if S::F32_LANES >= 16 {
                        pixels_packed::<S, 3>(simd, gm, &rows, pack_ptr, g, lo, hi, count)
                    } else {
                        pixels_packed::<S, 2>(simd, gm, &rows, pack_ptr, g, lo, hi, count)
                    }
                };
                continue;
            }
            if !short {
                // SAFETY: as for the packed path, reading the rows in place.
                let px = unsafe { pixels(simd, gm, g, lo, hi, count) };
                // SAFETY: pixels px .. count lie in the validated run.
                if !unsafe { try_gemv_tail(simd, gm, g, lo, hi, px, count - px) } && px < count {
                    // SAFETY: count - l .. count lies in the validated run; the tile
                    // rewrites the first l - tail lanes (done above) with their
                    // current values and computes the last tail.
                    unsafe {
                        rows_block::<S, 1, Rows>(
                            simd,
                            gm,
                            Rows(gm.rows),
                            g,
                            lo,
                            hi,
                            count - l,
                            1,
                            l - (count - px),
                            (0, k),
                        )
                    };
                }
                continue;
            }
            // SAFETY: pixels 0 .. count lie in the validated run.
            if unsafe { try_gemv_tail(simd, gm, g, lo, hi, 0, count) } {
                continue;
            }
            for (kk, &src) in rows.iter().enumerate() {
                // SAFETY: tail == count < l, inside the validated run; scratch row
                // kk holds l > tail floats.
                unsafe { core::ptr::copy_nonoverlapping(src, tail_ptr.add(kk * l), tail) };
            }
            let gm = Gemm {
                rows: tail_rows.as_ptr(),
                ..gm
            };
            // SAFETY: the scratch rows hold the tail pixels; the output run holds
            // px + tail == count pixels per channel.
            unsafe { tail_block(simd, gm, g, lo, hi, tail) };
        }
        drop(tail_in);
        drop(pack_buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{pack_pointwise, scalar};

    fn data(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            })
            .collect()
    }

    /// Runs pixels `0..count` of `p` at `level` in calls of the given pixel counts
    /// (output initialised to `init`, so the accumulate epilogue reads it).
    fn run(
        level: Level,
        p: &Pointwise,
        input: &[f32],
        stride: usize,
        init: &[f32],
        splits: &[usize],
    ) -> Vec<f32> {
        let mut out = init.to_vec();
        let mut start = 0;
        for &count in splits {
            let call = PointwiseCall::same_span(stride, start, count, 0..p.panels());
            pointwise_at(level, p, input, &mut out, &call).unwrap();
            start += count;
        }
        out
    }

    /// With AVX-512 a call shorter than one 16-lane vector goes to AVX2, and a
    /// longer one runs its tail itself; either way the call gives the same bits
    /// at every level, within tolerance of the scalar twin.
    #[test]
    fn the_tail_keeps_the_bits_at_every_level() {
        let best = Level::best();
        let wide = Level::avx512().is_some() && Level::avx2_fma().is_some();
        for count in [
            1, 4, 5, 15, 16, 17, 20, 21, 24, 28, 31, 48, 49, 80, 90, 196, 300, 785,
        ] {
            let narrow = narrow_level(best, count).map(|l| l.name());
            let want = (wide && count < 16).then_some("avx2+fma");
            assert_eq!(narrow, want, "count {count}");
            let (groups, k, m) = (3, 40, 20);
            let stride = count + 2;
            let wts = pack_pointwise(groups, m, k, &data(groups * m * k, 5));
            let bias = data(groups * m, 6);
            let in_rows: Vec<u32> = (0..(groups * k) as u32).collect();
            let input = data(groups * k * stride, 7);
            let init = data(groups * m * stride, 8);
            for accumulate in [false, true] {
                let p = Pointwise {
                    floor: None,
                    groups,
                    k,
                    m,
                    weights: &wts,
                    bias: &bias,
                    in_rows: &in_rows,
                    epilogue: Epilogue {
                        accumulate,
                        relu: true,
                    },
                };
                let call = PointwiseCall::same_span(stride, 1, count, 0..p.panels());
                let mut got = init.clone();
                pointwise(&p, &input, &mut got, &call).unwrap();
                let mut twin = init.clone();
                scalar::pointwise::pointwise(&p, &input, &mut twin, &call).unwrap();
                for (i, (&a, &b)) in got.iter().zip(&twin).enumerate() {
                    let close = (a - b).abs() <= 1e-4 * (1.0 + b.abs());
                    assert!(close, "count {count} at {i}: {a} vs scalar {b}");
                }
                for level in Level::available().into_iter().filter(|l| l.lanes() > 1) {
                    let mut want = init.clone();
                    pointwise_at(level, &p, &input, &mut want, &call).unwrap();
                    let same = got
                        .iter()
                        .zip(&want)
                        .all(|(a, b)| a.to_bits() == b.to_bits());
                    assert!(
                        same,
                        "count {count} {} accumulate {accumulate}",
                        level.name()
                    );
                }
            }
        }
    }

    /// Several packed chunks per group, k up to 640, the narrower block and
    /// the sub-vector tail: within tolerance of the scalar twin, and bit-identical
    /// however the pixels are split into calls and whether the input is packed or
    /// read in place (same summation order per output).
    #[test]
    fn packed_chunks_match_scalar_and_any_pixel_split() {
        for (n, &(groups, k, m)) in [
            (3, 320, 13),
            (1, 640, 7),
            (2, 100, 20),
            (3, 24, 60),
            (1, 40, 9),
        ]
        .iter()
        .enumerate()
        {
            // More pixels than two packed chunks of 16-pixel blocks hold, plus a
            // narrower block and a tail.
            let count = 2 * (PACK_BYTES / (4 * k)) + 16 * 3 + 8 + 5;
            let stride = count + 3;
            let wts = pack_pointwise(groups, m, k, &data(groups * m * k, 1 + n as u64));
            let bias = data(groups * m, 2);
            let in_rows: Vec<u32> = (0..groups * k).rev().map(|r| r as u32).collect();
            let input = data(groups * k * stride, 3);
            let init = data(groups * m * stride, 4);
            for epilogue in [
                Epilogue {
                    accumulate: false,
                    relu: true,
                },
                Epilogue {
                    accumulate: true,
                    relu: n % 2 == 0,
                },
            ] {
                let p = Pointwise {
                    floor: None,
                    groups,
                    k,
                    m,
                    weights: &wts,
                    bias: &bias,
                    in_rows: &in_rows,
                    epilogue,
                };
                let mut want = init.clone();
                let call = PointwiseCall::same_span(stride, 0, count, 0..p.panels());
                scalar::pointwise::pointwise(&p, &input, &mut want, &call).unwrap();
                for level in Level::available() {
                    let whole = run(level, &p, &input, stride, &init, &[count]);
                    for (i, (&a, &b)) in whole.iter().zip(&want).enumerate() {
                        assert!(
                            (a - b).abs() <= 1e-4 * (1.0 + b.abs()),
                            "{} g{groups} k{k} m{m} {epilogue:?} at {i}: {a} vs {b}",
                            level.name()
                        );
                    }
                    // One panel per call (8 rows, fewer than PACK_MIN_ROWS: read
                    // in place), as a thread split by panels does.
                    let mut by_panel = init.clone();
                    for panel in 0..p.panels() {
                        let call = PointwiseCall::same_span(stride, 0, count, panel..panel + 1);
                        let c0 = p.channel_of(panel, 0);
                        pointwise_at(level, &p, &input, &mut by_panel[c0 * stride..], &call)
                            .unwrap();
                    }
                    assert!(
                        by_panel
                            .iter()
                            .zip(&whole)
                            .all(|(a, b)| a.to_bits() == b.to_bits()),
                        "{} g{groups} k{k} m{m} {epilogue:?} by panel",
                        level.name()
                    );
                    for splits in [
                        [3, count - 3],
                        [count - 21, 21],
                        [count / 2 + 1, count - count / 2 - 1],
                    ] {
                        let parts = run(level, &p, &input, stride, &init, &splits);
                        assert!(
                            parts
                                .iter()
                                .zip(&whole)
                                .all(|(a, b)| a.to_bits() == b.to_bits()),
                            "{} g{groups} k{k} m{m} {epilogue:?} split {splits:?}",
                            level.name()
                        );
                    }
                }
            }
        }
    }
}
