//! Direct convolution.
//!
//! Fast path: dense (`groups == 1`) 3x3 convolutions with equal strides of 1 or 2,
//! any padding the parameters allow, any `cin` and `cout` (the ShuffleNet stem is
//! 3x3 stride 2, `cin = 3`, `cout` 6..48, pad 1). Per output row it prepares the
//! `3 * cin` input rows the row reads (padded, and split into even and odd columns
//! for stride 2, see [`super::rows`]; a row the previous output row prepared is
//! kept, so stride 2 prepares two rows per channel and output row, stride 1 one);
//! the `cin * 9` taps are then `K` rows of a
//! small GEMM whose rows are pointers into those prepared rows, computed by the
//! pointwise kernel's register tile (weights repacked per call into its `MR`-row
//! panels). Every other convolution (grouped, other kernel sizes, unequal strides)
//! falls back to the scalar twin.
//!
//! Measured (AVX2, best of N, Zen 3): the stem 3 -> 24 at 224x224 runs at 57
//! GFLOP/s (55% of the FMA peak; K = 27 is short, so the tile's bias/epilogue and
//! the per-row preparation weigh more than in the stage GEMMs), 55 at 720x1280.
//!
//! Inputs of 1 MiB and more (a camera frame; not in the caches when a run starts)
//! are prefetched one output row ahead, except on Intel CPUs (below): the row's
//! GEMM runs in [`PREFETCH_PARTS`] pixel chunks, and before each chunk a share of
//! the next row's new input lines is prefetched into L2, so the image streams in
//! while the FMAs run instead of stalling the next row's preparation. Measured
//! (Zen 4, AVX-512, `bench --profile`), 0.5x g = 3 at 720x1280: conv + max pool
//! 2976 -> 2665 us, the network 0.964-0.968 of the time in paired rounds
//! (control 0.993-1.000); at 480x640 (the 3.7 MB image partly stays in L3
//! between runs) 0.992-1.001; 2x at 720x1280 9.0-9.2 -> 8.8-9.2 ms. Four parts
//! instead of eight gave 0.99 at 720x1280, hints into L1 less.
//!
//! Tried on an Intel Xeon (Emerald Rapids, 2026-12-01) and dropped: column strips
//! of 96-240 outputs, so that a strip's prepared rows stay in L1. They help only
//! when the input is in L2 (64x1280: 78 -> 98 GFLOP/s); at 480x640 and 720x1280
//! the input comes from L3 and the strips were no faster (`tools/PERFORMANCE.md`, Intel).
//! Also dropped there (2026-12-01, later): (1) the next row's prefetches spread
//! over the GEMM's `k` steps (one per step, from a queue the row tiles share)
//! instead of eight bursts: 0.5x g = 3 at 720x1280, stem 3003 against 3098 us in
//! 8 alternating profiled rounds, within noise; (2) the GEMM reading the interior
//! output columns' taps straight from the image (two loads and an even/odd
//! split per vector, only the edge columns prepared): probe 3 -> 12 / 24 / 48 at
//! 720x1280 0.81 / 0.89 / 0.98 of the time (its output goes to memory), but in
//! the network, where the output is a band in L2, the stem took 0.99 of the time
//! at 720x1280 and 1.11 at 480x640 (10 alternating profiled rounds each).
//!
//! On that Intel Xeon the prefetch costs time (2026-12-02): without it, probe
//! 3 -> 12 / 24 at 720x1280 0.926 / 0.954 of the time (8 alternating rounds;
//! 3 -> 48, whose output goes to memory, 1.11), and in the network, where the
//! output is an L2 band, 0.5x g = 3 0.988 (quartiles 0.979-0.995, 12 rounds) at
//! 480x640 and 0.983 (0.955-1.003, 10 rounds) at 720x1280, 2x at 720x1280 0.999.
//! Prefetching two output rows ahead instead of one changed nothing (1.003 at
//! 480x640). Its L2 streamer follows the image rows alone; the prefetch
//! instructions, issued in bursts, wait for fill buffers. So [`conv2d_at`]
//! prefetches on every x86-64 CPU but Intel's; [`conv2d_with`] chooses.

use super::pointwise_gemm::{pixels, Gemm};
use super::pointwise_tail::tail_block;
use super::rows::RowLayout;
use super::simd::{intel_cpu, prefetch_l2, Kernel, Level, SimdExt};
use crate::scratch;
use crate::{pack_pointwise_into, packed_len, Conv2d, Epilogue, KernelError, PlaneGeom, Pointwise};
use std::ops::Range;

/// Computes output channels `out_channels` with the best level of this CPU; the
/// input holds all `cin` planes.
pub fn conv2d(
    p: &Conv2d,
    g: &PlaneGeom,
    input: &[f32],
    output: &mut [f32],
    out_channels: Range<usize>,
) -> Result<(), KernelError> {
    conv2d_at(Level::best(), p, g, input, output, out_channels)
}

/// [`conv2d`] with a chosen instruction-set level.
pub fn conv2d_at(
    level: Level,
    p: &Conv2d,
    g: &PlaneGeom,
    input: &[f32],
    output: &mut [f32],
    out_channels: Range<usize>,
) -> Result<(), KernelError> {
    conv2d_with(level, !intel_cpu(), p, g, input, output, out_channels)
}

/// [`conv2d_at`] that prefetches the next output row's input lines of a large
/// input (1 MiB and more) if `prefetch`, whatever the CPU (see the module notes).
/// The results do not depend on it.
pub fn conv2d_with(
    level: Level,
    prefetch: bool,
    p: &Conv2d,
    g: &PlaneGeom,
    input: &[f32],
    output: &mut [f32],
    out_channels: Range<usize>,
) -> Result<(), KernelError> {
    let fast = p.groups == 1
        && p.kh == 3
        && p.kw == 3
        && p.stride_h == p.stride_w
        && (p.stride_h == 1 || p.stride_h == 2);
    if !fast {
        return crate::scalar::conv2d::conv2d(p, g, input, output, out_channels);
    }
    p.check(g, input, output, &out_channels)?;
    if out_channels.is_empty() || g.out_h == 0 || g.out_w == 0 {
        return Ok(());
    }
    let kdim = p.cin * 9;
    let mut packed = scratch::take(packed_len(1, out_channels.len(), kdim), 0.0f32);
    pack_pointwise_into(
        1,
        out_channels.len(),
        kdim,
        &p.weights[out_channels.start * kdim..out_channels.end * kdim],
        &mut packed,
    );
    let gemm = Pointwise {
        floor: None,
        groups: 1,
        k: kdim,
        m: out_channels.len(),
        weights: &packed,
        bias: &p.bias[out_channels.clone()],
        in_rows: &[],
        epilogue: Epilogue {
            accumulate: false,
            relu: p.relu,
        },
    };
    level.run(Op {
        p,
        prefetch,
        gemm: &gemm,
        g,
        input,
        output,
    });
    Ok(())
}

/// Portions of the next output row's input prefetched per output row.
const PREFETCH_PARTS: usize = 8;
/// Inputs smaller than this are not prefetched (they come from the caches; the
/// row's GEMM then runs as one chunk).
const PREFETCH_MIN_BYTES: usize = 1 << 20;
/// Pixel chunks are multiples of this (the widest pixel block, 3 vectors of 16,
/// and a multiple of every level's block), so only the last chunk has a tail.
const CHUNK_PIXELS: usize = 48;
/// Floats per 64-byte cache line.
const LINE_FLOATS: usize = 16;

/// Prefetches cache lines `lines` of `row` into L2 (a hint: no effect on results,
/// and none on targets without one).
#[inline(always)]
fn prefetch_lines(row: &[f32], lines: Range<usize>) {
    for line in lines {
        prefetch_l2(row, line * LINE_FLOATS);
    }
}

struct Op<'a, 'b> {
    p: &'a Conv2d<'b>,
    prefetch: bool,
    gemm: &'a Pointwise<'a>,
    g: &'a PlaneGeom,
    input: &'a [f32],
    output: &'a mut [f32],
}

impl Kernel for Op<'_, '_> {
    type Output = ();

    #[inline(always)]
    fn run<S: SimdExt>(self, simd: S) {
        let Op {
            p,
            prefetch,
            gemm,
            g,
            input,
            output,
        } = self;
        let l = S::F32_LANES;
        let st = p.stride_h;
        let lay = RowLayout::new(st, g.pad_left, g.in_w, g.out_w, l);
        let len = lay.len;
        let kdim = gemm.k;
        // Prepared rows: input row iy of channel ic at slot ic * 3 + iy % 3 (the
        // three rows of an output row are consecutive, so they never share a
        // slot, and a row the next output row reads again stays where it is),
        // then one padding row. All start as padding (zero); copies only write
        // input columns.
        let mut buf = scratch::take((3 * p.cin + 1) * len, 0.0f32);
        let pad_slot = 3 * p.cin;
        let mut rows = scratch::take(kdim, core::ptr::null::<f32>());
        // Per (ic, dy): the slot read; per slot: the input row it holds.
        let mut slots = scratch::take(3 * p.cin, pad_slot);
        let mut held = scratch::take(3 * p.cin, usize::MAX);
        // The row table moved to the tail pixels.
        let mut shifted = scratch::take(kdim, core::ptr::null::<f32>());
        // Plane offsets of the input rows the next output row prepares.
        let mut next = scratch::take(3 * p.cin, 0usize);
        let taps = [lay.tap(0), lay.tap(1), lay.tap(2)];
        let in_hw = g.in_h * g.in_w;
        let parts = if prefetch && 4 * p.cin * in_hw >= PREFETCH_MIN_BYTES {
            PREFETCH_PARTS
        } else {
            1
        };
        let out_w = g.out_w;
        // Cache lines per input row, and the pixel chunk of one prefetch portion.
        let lines = g.in_w.div_ceil(LINE_FLOATS);
        let chunk = out_w.div_ceil(parts).next_multiple_of(CHUNK_PIXELS);
        let ostride = g.out_stride;
        let out_base = output.as_mut_ptr();
        for y in 0..g.out_h {
            slots.fill(pad_slot);
            for ic in 0..p.cin {
                let plane = &input[ic * g.in_stride..][..in_hw];
                for dy in 0..3 {
                    let iy = (y * st + dy) as isize - g.pad_top as isize;
                    if iy >= 0 && (iy as usize) < g.in_h {
                        let iy = iy as usize;
                        let s = ic * 3 + iy % 3;
                        if held[s] != iy {
                            let src = &plane[iy * g.in_w..(iy + 1) * g.in_w];
                            lay.fill_interior(simd, src, &mut buf[s * len..(s + 1) * len]);
                            held[s] = iy;
                        }
                        slots[ic * 3 + dy] = s;
                    }
                }
            }
            // Pointers taken after all fills (no later write invalidates them).
            let base = buf.as_ptr();
            for (i, &slot) in slots.iter().enumerate() {
                for (dx, &t) in taps.iter().enumerate() {
                    rows[i * 3 + dx] = base.wrapping_add(slot * len + t);
                }
            }
            // The rows the next output row prepares (not held now): their cache
            // lines are prefetched in PREFETCH_PARTS portions, one before each
            // pixel chunk of this row's GEMM, so the image streams in while the
            // FMAs run instead of stalling the next row's preparation.
            let mut n_next = 0;
            if parts > 1 && y + 1 < g.out_h {
                for ic in 0..p.cin {
                    for dy in 0..3 {
                        let iy = ((y + 1) * st + dy) as isize - g.pad_top as isize;
                        if iy >= 0 && (iy as usize) < g.in_h {
                            let iy = iy as usize;
                            if held[ic * 3 + iy % 3] != iy {
                                next[n_next] = ic * g.in_stride + iy * g.in_w;
                                n_next += 1;
                            }
                        }
                    }
                }
            }
            let gm = Gemm {
                p: gemm,
                rows: rows.as_ptr(),
                out: out_base.wrapping_add(y * out_w),
                stride: ostride,
                c0: 0,
            };
            let mut px = 0;
            for part in 0..parts {
                let (l0, l1) = (part * lines / parts, (part + 1) * lines / parts);
                for &at in &next[..n_next] {
                    prefetch_lines(&input[at..at + g.in_w], l0..l1);
                }
                let end = if part + 1 == parts {
                    out_w
                } else {
                    (px + chunk).min(out_w)
                };
                if end <= px {
                    continue;
                }
                for (a, r) in shifted.iter_mut().zip(rows.iter()) {
                    *a = r.wrapping_add(px);
                }
                let at = Gemm {
                    rows: shifted.as_ptr(),
                    out: gm.out.wrapping_add(px),
                    ..gm
                };
                // SAFETY: prepared rows hold vecs * l (+1 or +2) floats past each
                // tap origin and the whole vectors end at or before out_w; check()
                // validated the output planes of every computed channel. The chunk
                // starts at px, a multiple of the vector width.
                let done = unsafe { pixels(simd, at, 0, 0, gemm.m, end - px) };
                px += done;
                if px < end {
                    break;
                }
            }
            if px < out_w {
                for (a, r) in shifted.iter_mut().zip(rows.iter()) {
                    *a = r.wrapping_add(px);
                }
                let gm = Gemm {
                    rows: shifted.as_ptr(),
                    out: gm.out.wrapping_add(px),
                    ..gm
                };
                // SAFETY: the prepared rows are readable for a full vector at px
                // (< vecs * l); each output row holds out_w - px floats from there.
                unsafe { tail_block(simd, gm, 0, 0, gemm.m, out_w - px) };
            }
        }
    }
}
