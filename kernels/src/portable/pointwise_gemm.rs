//! Grouped 1x1 convolution as a register-blocked GEMM over planar input.
//!
//! Per group, the output block `rows x pixels` is `W[rows][k] * X[k][pixels]` where
//! row `kk` of `X` is input plane `in_rows[g * k + kk]` (so a channel shuffle costs
//! nothing). The pixels are contiguous within a plane, so the tile vectorises along
//! pixels: per `k`, it loads `V` vectors of pixels once, broadcasts `R` weights (one
//! per output row, read from the k-major `MR`-row panel) and issues `R * V` FMAs into
//! `R * V` accumulator registers.
//!
//! Tile choice (AVX2+FMA, 16 ymm registers): `R = 4` rows x `V = 3` vectors (24
//! pixels): 12 accumulators + 3 pixel vectors + 1 broadcast = 16 registers, 7 loads
//! per 12 FMAs. An 8-row panel is read as two 4-row halves, so a group of `m` rows
//! runs `ceil(m / 4)` half-panels and no FMA is spent on zero-padded rows unless `m`
//! is not a multiple of 4 (every ShuffleNet shape is: m = 20 runs 8 + 8 + 4).
//! AVX-512 (32 zmm registers) uses a full 8-row panel x 3 vectors of 16 (24
//! accumulators) when the panel has more than 4 rows.
//!
//! Pixel tails: after the 3-vector blocks, a 2- or 1-vector block, then fewer than
//! one vector of pixels, which are copied to a zero-padded scratch, computed with the
//! same tile and copied back (so the accumulate epilogue never reads or writes past
//! the run).

use super::simd::{load, store, Kernel, Level, SimdExt, MAX_LANES};
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

/// Where a tile writes: row `r` at `out + r * stride`.
#[derive(Clone, Copy)]
pub(crate) struct Dst {
    pub out: *mut f32,
    pub stride: usize,
}

/// One register tile: `R` rows x `V` vectors of pixels over the whole `k`.
///
/// `w` points at row 0 of the half-panel at `k = 0` (row `r` at `k` is
/// `w[k * MR + r]`); `rows[kk] + px` is the first pixel of input row `kk`; the first
/// `valid` rows are stored (the others are zero-weight padding); `bias` holds
/// `valid` values.
///
/// # Safety
/// `rows[..k]` and `w[.. k * MR]` are readable; every `rows[kk] + px .. + V * LANES`
/// is readable; `bias[..valid]` is readable; `dst` rows `0..valid` are writable for
/// `V * LANES` floats; `valid <= R <= MR`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) unsafe fn tile<S: SimdExt, const R: usize, const V: usize>(
    simd: S,
    w: *const f32,
    rows: *const *const f32,
    k: usize,
    px: usize,
    bias: *const f32,
    valid: usize,
    out: *mut f32,
    out_stride: usize,
    epi: Epilogue,
) {
    let l = S::F32_LANES;
    let zero = simd.splat_f32s(0.0);
    let mut acc = [[zero; V]; R];
    for (r, row) in acc.iter_mut().enumerate() {
        if r < valid {
            // SAFETY: r < valid and bias[..valid] is readable.
            let b = simd.splat_f32s(unsafe { *bias.add(r) });
            for a in row.iter_mut() {
                *a = b;
            }
        }
    }
    let mut wp = w;
    let mut rp = rows;
    for _ in 0..k {
        // SAFETY: rp walks rows[..k]; the caller guarantees the pixel range.
        let src = unsafe { (*rp).add(px) };
        let mut x = [zero; V];
        for (v, xv) in x.iter_mut().enumerate() {
            // SAFETY: src + v * l .. + l lies inside the caller's pixel range.
            *xv = unsafe { load::<S>(src.add(v * l)) };
        }
        for (r, row) in acc.iter_mut().enumerate() {
            // SAFETY: r < R <= MR, and wp walks the panel in steps of MR.
            let b = simd.splat_f32s(unsafe { *wp.add(r) });
            for (a, &xv) in row.iter_mut().zip(&x) {
                *a = simd.mul_add_e_f32s(b, xv, *a);
            }
        }
        // SAFETY: stays within (or one past) the panel and the row table.
        unsafe {
            wp = wp.add(MR);
            rp = rp.add(1);
        }
    }
    for (r, row) in acc.iter().enumerate() {
        if r >= valid {
            break;
        }
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
                a = simd.max_f32s(a, zero);
            }
            // SAFETY: as above.
            unsafe { store::<S>(ov, a) };
        }
    }
}

/// Runs the half-panels (or full panels on AVX-512) of one pixel block.
///
/// # Safety
/// As for [`tile`], for every panel in `panels` of group `g`, with `dst` pointing at
/// the block's first pixel in output row 0 of the call.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) unsafe fn block<S: SimdExt, const V: usize>(
    simd: S,
    p: &Pointwise,
    panels: core::ops::Range<usize>,
    c0: usize,
    rows: *const *const f32,
    px: usize,
    dst: Dst,
) {
    let k = p.k;
    let wide = S::F32_LANES >= 16;
    for panel in panels {
        let n = p.rows_in_panel(panel);
        let ch = p.channel_of(panel, 0);
        // SAFETY: check() proved weights hold every panel and bias every channel;
        // the destination row of channel ch is (ch - c0) (caller's contract).
        unsafe {
            let w = p.weights.as_ptr().add(panel * k * MR);
            let bias = p.bias.as_ptr().add(ch);
            let out = dst.out.add((ch - c0) * dst.stride);
            if wide && n > 4 {
                tile::<S, 8, V>(simd, w, rows, k, px, bias, n, out, dst.stride, p.epilogue);
            } else {
                let lo = n.min(4);
                tile::<S, 4, V>(simd, w, rows, k, px, bias, lo, out, dst.stride, p.epilogue);
                if n > 4 {
                    tile::<S, 4, V>(
                        simd,
                        w.add(4),
                        rows,
                        k,
                        px,
                        bias.add(4),
                        n - 4,
                        out.add(4 * dst.stride),
                        dst.stride,
                        p.epilogue,
                    );
                }
            }
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
        // All output access goes through this pointer (check() validated the
        // extent of every channel's run).
        let out_base = output.as_mut_ptr();
        let (ostride, ostart) = (call.output.stride, call.output.start);
        let mut rows: Vec<*const f32> = Vec::with_capacity(k);
        // Fewer than one vector of pixels at the end: zero-padded scratch rows.
        let tail = count % l;
        let mut tail_in = vec![0.0f32; if tail > 0 { k * l } else { 0 }];
        let tail_ptr = tail_in.as_mut_ptr();
        let tail_rows: Vec<*const f32> = (0..if tail > 0 { k } else { 0 })
            .map(|kk| tail_ptr.wrapping_add(kk * l).cast_const())
            .collect();
        let first_group = call.panels.start / ppg;
        let last_group = (call.panels.end - 1) / ppg;
        for g in first_group..=last_group {
            let panels = call.panels.start.max(g * ppg)..call.panels.end.min((g + 1) * ppg);
            rows.clear();
            for &r in &p.in_rows[g * k..(g + 1) * k] {
                let off = r as usize * call.input.stride + call.input.start;
                // SAFETY: check() proved every in_rows plane holds the pixel run.
                rows.push(unsafe { input.as_ptr().add(off) });
            }
            let at = |px: usize| Dst {
                out: out_base.wrapping_add(ostart + px),
                stride: ostride,
            };
            let mut px = 0;
            while px + 3 * l <= count {
                // SAFETY: px + 3 * l <= count: every pixel read and written lies in
                // the run that check() validated.
                unsafe { block::<S, 3>(simd, p, panels.clone(), c0, rows.as_ptr(), px, at(px)) };
                px += 3 * l;
            }
            if px + 2 * l <= count {
                // SAFETY: as above, with 2 vectors.
                unsafe { block::<S, 2>(simd, p, panels.clone(), c0, rows.as_ptr(), px, at(px)) };
                px += 2 * l;
            }
            if px + l <= count {
                // SAFETY: as above, with 1 vector.
                unsafe { block::<S, 1>(simd, p, panels.clone(), c0, rows.as_ptr(), px, at(px)) };
                px += l;
            }
            if tail == 0 {
                continue;
            }
            for (kk, &src) in rows.iter().enumerate() {
                // SAFETY: px + tail == count, inside the validated run; scratch row
                // kk holds l > tail floats.
                unsafe { core::ptr::copy_nonoverlapping(src.add(px), tail_ptr.add(kk * l), tail) };
            }
            for panel in panels.clone() {
                let n = p.rows_in_panel(panel);
                let ch = p.channel_of(panel, 0);
                let mut buf = [0.0f32; MR * MAX_LANES];
                let bp = buf.as_mut_ptr();
                let dst = at(px).out.wrapping_add((ch - c0) * ostride);
                for r in 0..n {
                    if p.epilogue.accumulate {
                        // SAFETY: row r of this panel's run (validated); buf holds MR
                        // rows of l floats.
                        unsafe {
                            core::ptr::copy_nonoverlapping(
                                dst.add(r * ostride),
                                bp.add(r * l),
                                tail,
                            )
                        };
                    }
                }
                // SAFETY: the scratch rows hold l floats each, buf MR rows of l
                // floats; the panel's weights and bias are in bounds (see block).
                unsafe {
                    block::<S, 1>(
                        simd,
                        p,
                        panel..panel + 1,
                        ch,
                        tail_rows.as_ptr(),
                        0,
                        Dst { out: bp, stride: l },
                    )
                };
                for r in 0..n {
                    // SAFETY: as above.
                    unsafe {
                        core::ptr::copy_nonoverlapping(bp.add(r * l), dst.add(r * ostride), tail)
                    };
                }
            }
        }
        drop(tail_in);
    }
}
