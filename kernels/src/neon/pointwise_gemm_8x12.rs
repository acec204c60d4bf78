//! Pointwise (grouped 1x1) convolution as a register-blocked GEMM: an 8-row weight
//! panel times 12 pixels per register tile (24 accumulators, two weight registers
//! holding two K steps, three pixel registers; 29 of the 32 q registers).
//!
//! Per call and group the K input-row offsets are computed once from the index
//! table (`in_rows`); per 12-pixel tile the K rows are copied once into a small
//! packed buffer (`[k][12]`, on the stack) that every panel of the group then
//! streams with one `ld1 {3 regs}` per K step, so the inner loop is loads and
//! `fmla v.4s, v.4s, v.s[lane]` only: no index table, no bounds checks. A panel with
//! at most 4 real rows (`m % 8 <= 4`) runs a 4-row variant; pixel tails run 8 or 4
//! pixel tiles and the last partial vector is loaded and stored lane by lane.
//! K beyond [`KC`] is processed in chunks, the partial sums parked in the output.

use super::common::{load_part, store_part, zero};
use crate::{KernelError, Pointwise, PointwiseCall, MR};
use core::arch::aarch64::*;
use core::mem::MaybeUninit;

/// Pixels per register tile: three q registers per weight row.
pub(crate) const NR: usize = 12;
/// K rows per packed chunk (the packed input tile lives on the stack: 12 KiB).
pub(crate) const KC: usize = 256;
/// Panels whose bias tables are built at once.
const PB: usize = 16;
/// Floats of one panel's bias table: `NR / 4` vectors for each of the `MR` rows.
pub(crate) const BIAS_TAB: usize = (NR / 4) * MR * 4;

/// How a register tile starts and ends.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TileMode {
    /// First K chunk: start from the bias table (else from the partial sums the
    /// previous chunk left in the output).
    pub first: bool,
    /// Add the value already in the output (honoured on the first chunk only).
    pub accumulate: bool,
    /// Clamp at zero before the store (the caller sets it on the last chunk only).
    pub relu: bool,
}

/// Fills a panel's bias table: vector `j * MR + r` (for `j < NR / 4`) holds the bias
/// of row `r` in all lanes, rows past `rows` hold zero.
///
/// # Safety
/// `tab .. tab + BIAS_TAB` must be writable (it may be uninitialised).
pub(crate) unsafe fn fill_bias_table(
    tab: *mut f32,
    bias_of_row: impl Fn(usize) -> f32,
    rows: usize,
) {
    for r in 0..MR {
        let v = if r < rows { bias_of_row(r) } else { 0.0 };
        // SAFETY: writes vectors j * MR + r < BIAS_TAB / 4 (caller's contract).
        unsafe {
            let b = vdupq_n_f32(v);
            for j in 0..NR / 4 {
                vst1q_f32(tab.add((j * MR + r) * 4), b);
            }
        }
    }
}

/// Loads `NV` consecutive vectors (one multi-register `ld1`).
///
/// # Safety
/// `p .. p + 4 * NV` must be readable.
#[inline(always)]
unsafe fn ldx<const NV: usize>(p: *const f32) -> [float32x4_t; NV] {
    let mut v = [zero(); NV];
    // SAFETY: each arm reads 4 * NV floats from `p` (caller's contract) and fills
    // exactly the NV entries of `v`.
    unsafe {
        match NV {
            1 => v[0] = vld1q_f32(p),
            2 => {
                let t = vld1q_f32_x2(p);
                v.as_mut_ptr().write(t.0);
                v.as_mut_ptr().add(1).write(t.1);
            }
            _ => {
                let t = vld1q_f32_x3(p);
                v.as_mut_ptr().write(t.0);
                v.as_mut_ptr().add(1).write(t.1);
                v.as_mut_ptr().add(2).write(t.2);
            }
        }
    }
    v
}

/// Stores `NV` consecutive vectors (separate stores: multi-register tuples next to
/// the accumulators make LLVM's register allocator spill).
///
/// # Safety
/// `p .. p + 4 * NV` must be writable.
#[inline(always)]
unsafe fn stx<const NV: usize>(p: *mut f32, v: &[float32x4_t; NV]) {
    for (j, x) in v.iter().enumerate() {
        // SAFETY: writes 4 floats at p + 4j, j < NV (caller's contract).
        unsafe { vst1q_f32(p.add(4 * j), *x) };
    }
}

/// One K step: `acc[r][j] += w[r] * x[j]` for rows `0..4 * H` (weights of rows 0-3
/// in `w0`, 4-7 in `w1`).
#[inline(always)]
fn step<const NV: usize, const H: usize>(
    acc: &mut [[float32x4_t; NV]; MR],
    x: &[float32x4_t; NV],
    w0: float32x4_t,
    w1: float32x4_t,
) {
    // SAFETY: register-only NEON arithmetic (NEON is baseline on aarch64).
    unsafe {
        for j in 0..NV {
            acc[0][j] = vfmaq_laneq_f32::<0>(acc[0][j], x[j], w0);
            acc[1][j] = vfmaq_laneq_f32::<1>(acc[1][j], x[j], w0);
            acc[2][j] = vfmaq_laneq_f32::<2>(acc[2][j], x[j], w0);
            acc[3][j] = vfmaq_laneq_f32::<3>(acc[3][j], x[j], w0);
            if H == 2 {
                acc[4][j] = vfmaq_laneq_f32::<0>(acc[4][j], x[j], w1);
                acc[5][j] = vfmaq_laneq_f32::<1>(acc[5][j], x[j], w1);
                acc[6][j] = vfmaq_laneq_f32::<2>(acc[6][j], x[j], w1);
                acc[7][j] = vfmaq_laneq_f32::<3>(acc[7][j], x[j], w1);
            }
        }
    }
}

/// Loads the output tile (rows `< rows`, last vector `lanes` wide) into `acc`
/// (when `add`, adds it instead).
///
/// # Safety
/// As for [`tile`]'s output.
#[inline(always)]
unsafe fn load_out<const NV: usize, const H: usize>(
    acc: &mut [[float32x4_t; NV]; MR],
    rp: &[*mut f32; MR],
    rows: usize,
    lanes: usize,
    add: bool,
) {
    let full = rows == 4 * H && lanes == 4;
    for r in 0..4 * H {
        if !full && r >= rows {
            break;
        }
        // SAFETY: row `r < rows` of the tile is inside the output (caller's
        // contract); the last vector reads only its `lanes` valid floats.
        unsafe {
            let p = rp[r];
            let e = if full {
                ldx::<NV>(p)
            } else {
                let mut e = [zero(); NV];
                for (j, v) in e.iter_mut().enumerate() {
                    *v = load_part(p.add(4 * j), if j + 1 == NV { lanes } else { 4 });
                }
                e
            };
            for j in 0..NV {
                acc[r][j] = if add {
                    vaddq_f32(acc[r][j], e[j])
                } else {
                    e[j]
                };
            }
        }
    }
}

/// One register tile: rows `0..4 * H` of a weight panel times `4 * NV` packed pixels,
/// over `kc` K steps, then the epilogue and the store of rows `< rows` (the last
/// vector `lanes` wide).
///
/// # Safety
/// - `b`: `kc * 4 * NV` readable floats (the packed pixels, `[k][4 * NV]`);
/// - `w`: `kc * MR` readable floats (the panel, k-major);
/// - `bias`: the panel's bias table (see [`fill_bias_table`]) when `mode.first`;
/// - `out`: for each row `r < rows`, `4 * (NV - 1) + lanes` floats at
///   `out + r * ostride`, readable and writable.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) unsafe fn tile<const NV: usize, const H: usize>(
    kc: usize,
    b: *const f32,
    w: *const f32,
    bias: *const f32,
    out: *mut f32,
    ostride: usize,
    rows: usize,
    lanes: usize,
    mode: TileMode,
) {
    let mut acc = [[zero(); NV]; MR];
    // Row pointers, computed once for the loads and the stores (rows past `rows`
    // are never dereferenced, hence the wrapping arithmetic).
    let rp: [*mut f32; MR] = core::array::from_fn(|r| out.wrapping_add(r * ostride));
    // SAFETY: all pointers are used within the extents of the caller's contract:
    // the bias table has NV*MR vectors, `b` holds kc rows of 4*NV floats, `w` kc
    // rows of MR floats; the output is touched through `load_out` and the stores
    // below, which stay inside rows < rows and the tile's valid lanes.
    unsafe {
        if mode.first {
            for j in 0..NV {
                for (r, row) in acc.iter_mut().enumerate().take(4 * H) {
                    row[j] = vld1q_f32(bias.add((j * MR + r) * 4));
                }
            }
        } else {
            load_out::<NV, H>(&mut acc, &rp, rows, lanes, false);
        }

        // Eight K steps per iteration, bounded by the packed-pixel pointer, then
        // a block of four.
        let (mut b, mut w) = (b, w);
        let step4 = |acc: &mut [[float32x4_t; NV]; MR], b: *const f32, w: *const f32| {
            let wa = vld1q_f32_x4(w);
            let x0 = ldx::<NV>(b);
            step::<NV, H>(acc, &x0, wa.0, wa.1);
            let x1 = ldx::<NV>(b.add(4 * NV));
            step::<NV, H>(acc, &x1, wa.2, wa.3);
            let wb = vld1q_f32_x4(w.add(2 * MR));
            let x2 = ldx::<NV>(b.add(8 * NV));
            step::<NV, H>(acc, &x2, wb.0, wb.1);
            let x3 = ldx::<NV>(b.add(12 * NV));
            step::<NV, H>(acc, &x3, wb.2, wb.3);
        };
        let end16 = b.add((kc & !15) * 4 * NV);
        while b != end16 {
            step4(&mut acc, b, w);
            step4(&mut acc, b.add(16 * NV), w.add(4 * MR));
            step4(&mut acc, b.add(32 * NV), w.add(8 * MR));
            step4(&mut acc, b.add(48 * NV), w.add(12 * MR));
            b = b.add(64 * NV);
            w = w.add(16 * MR);
        }
        if kc & 8 != 0 {
            step4(&mut acc, b, w);
            step4(&mut acc, b.add(16 * NV), w.add(4 * MR));
            b = b.add(32 * NV);
            w = w.add(8 * MR);
        }
        if kc & 4 != 0 {
            step4(&mut acc, b, w);
            b = b.add(16 * NV);
            w = w.add(4 * MR);
        }
        let mut k = kc & 3;
        while k > 0 {
            let wa = vld1q_f32_x2(w);
            let x0 = ldx::<NV>(b);
            step::<NV, H>(&mut acc, &x0, wa.0, wa.1);
            b = b.add(4 * NV);
            w = w.add(MR);
            k -= 1;
        }

        if mode.first && mode.accumulate {
            load_out::<NV, H>(&mut acc, &rp, rows, lanes, true);
        }
        if mode.relu {
            let z = zero();
            for row in acc.iter_mut().take(4 * H) {
                for v in row.iter_mut() {
                    *v = vmaxq_f32(*v, z);
                }
            }
        }
        let full = rows == 4 * H && lanes == 4;
        for (r, row) in acc.iter().enumerate().take(4 * H) {
            if !full && r >= rows {
                break;
            }
            let p = rp[r];
            if full {
                stx::<NV>(p, row);
            } else {
                for (j, v) in row.iter().enumerate() {
                    store_part(p.add(4 * j), *v, if j + 1 == NV { lanes } else { 4 });
                }
            }
        }
    }
}

/// Runs the tile variant for `nv` pixel vectors and `rows` real panel rows.
///
/// # Safety
/// As for [`tile`], with `nv` in `1..=3` and `rows` in `1..=8`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) unsafe fn tile_dyn(
    nv: usize,
    kc: usize,
    b: *const f32,
    w: *const f32,
    bias: *const f32,
    out: *mut f32,
    ostride: usize,
    rows: usize,
    lanes: usize,
    mode: TileMode,
) {
    // SAFETY: forwarded contract.
    unsafe {
        match (nv, rows > 4) {
            (3, true) => tile::<3, 2>(kc, b, w, bias, out, ostride, rows, lanes, mode),
            (3, false) => tile::<3, 1>(kc, b, w, bias, out, ostride, rows, lanes, mode),
            (2, true) => tile::<2, 2>(kc, b, w, bias, out, ostride, rows, lanes, mode),
            (2, false) => tile::<2, 1>(kc, b, w, bias, out, ostride, rows, lanes, mode),
            (_, true) => tile::<1, 2>(kc, b, w, bias, out, ostride, rows, lanes, mode),
            (_, false) => tile::<1, 1>(kc, b, w, bias, out, ostride, rows, lanes, mode),
        }
    }
}

/// Copies `n` pixels (`n <= NR`) starting at `input + off + px` for every K row
/// offset `off` into `dst` as `[k][4 * ceil(n / 4)]`, zero-filling the last vector.
///
/// # Safety
/// For every `off` in `offs`, `input + off + px .. + n` must be readable; `dst` must
/// hold `offs.len() * 4 * ceil(n / 4)` writable floats.
#[inline(always)]
unsafe fn pack(input: *const f32, offs: &[usize], px: usize, n: usize, dst: *mut f32) {
    // SAFETY: reads n floats per row (caller's contract), writes 4*ceil(n/4)
    // floats per row inside `dst`.
    unsafe {
        let src = input.add(px);
        let mut d = dst;
        match n {
            12 => {
                for &o in offs {
                    vst1q_f32_x3(d, vld1q_f32_x3(src.add(o)));
                    d = d.add(12);
                }
            }
            8 => {
                for &o in offs {
                    vst1q_f32_x2(d, vld1q_f32_x2(src.add(o)));
                    d = d.add(8);
                }
            }
            4 => {
                for &o in offs {
                    vst1q_f32(d, vld1q_f32(src.add(o)));
                    d = d.add(4);
                }
            }
            _ => {
                let (full, rem) = (n / 4, n % 4);
                for &o in offs {
                    let s = src.add(o);
                    for j in 0..full {
                        vst1q_f32(d, vld1q_f32(s.add(4 * j)));
                        d = d.add(4);
                    }
                    if rem > 0 {
                        vst1q_f32(d, load_part(s.add(4 * full), rem));
                        d = d.add(4);
                    }
                }
            }
        }
    }
}

/// Computes the panels and pixels of `call`; see [`Pointwise`] for the math. Same
/// contract and results (up to float rounding) as the scalar twin.
pub fn pointwise(
    p: &Pointwise,
    input: &[f32],
    output: &mut [f32],
    call: &PointwiseCall,
) -> Result<(), KernelError> {
    p.check(input, output, call)?;
    if call.count == 0 || call.panels.is_empty() {
        return Ok(());
    }
    let c0 = p.channels_of(&call.panels).start;
    let ppg = p.panels_per_group();
    let k = p.k;
    // Scratch on the stack, left uninitialised (zeroing 20 KiB would cost more
    // than a small call): every float is written before it is read.
    let mut bias_tab = MaybeUninit::<[f32; PB * BIAS_TAB]>::uninit();
    let mut offs = MaybeUninit::<[usize; KC]>::uninit();
    let mut packed = MaybeUninit::<[f32; KC * NR]>::uninit();
    let (bias_tab, offs_p, packed) = (
        bias_tab.as_mut_ptr().cast::<f32>(),
        offs.as_mut_ptr().cast::<usize>(),
        packed.as_mut_ptr().cast::<f32>(),
    );
    let mut panel = call.panels.start;
    while panel < call.panels.end {
        let g = panel / ppg;
        let end = call.panels.end.min((g + 1) * ppg).min(panel + PB);
        // Per panel of the block: real rows and first output plane (the divisions
        // of `channel_of` stay out of the tile loop).
        let mut prow = [0usize; PB];
        let mut pch = [0usize; PB];
        for (i, pn) in (panel..end).enumerate() {
            prow[i] = p.rows_in_panel(pn);
            pch[i] = p.channel_of(pn, 0) - c0;
            // SAFETY: panel i < PB of the block has its BIAS_TAB floats.
            unsafe {
                fill_bias_table(
                    bias_tab.add(i * BIAS_TAB),
                    |r| p.bias[p.channel_of(pn, r)],
                    prow[i],
                );
            }
        }
        let mut k0 = 0;
        while k0 < k {
            let kc = KC.min(k - k0);
            for (kk, &row) in p.in_rows[g * k + k0..g * k + k0 + kc].iter().enumerate() {
                // SAFETY: kk < kc <= KC entries of the offsets array.
                unsafe {
                    offs_p
                        .add(kk)
                        .write(row as usize * call.input.stride + call.input.start)
                };
            }
            // SAFETY: the first kc offsets were written just above.
            let offs = unsafe { std::slice::from_raw_parts(offs_p, kc) };
            let mode = TileMode {
                first: k0 == 0,
                accumulate: p.epilogue.accumulate,
                relu: p.epilogue.relu && k0 + kc == k,
            };
            let mut px = 0;
            while px < call.count {
                let n = NR.min(call.count - px);
                let nv = n.div_ceil(4);
                let lanes = n - 4 * (nv - 1);
                // SAFETY: `check` proved every K row offset plus `count` pixels is
                // inside `input` (`max_row * stride + start + count <= len`), and
                // `px + n <= count`; `packed` holds KC rows of NR floats. The tiles
                // below read exactly the kc rows of 4 nv floats written here, and
                // the bias tables filled above.
                unsafe { pack(input.as_ptr(), offs, px, n, packed) };
                let out_px = call.output.start + px;
                for i in 0..end - panel {
                    // SAFETY: `check` proved the weights hold all panels of the call
                    // (`(panel + 1) * k * MR <= len`), and the output holds rows
                    // `channels_of(panels)` at `(c - c0) * stride + start + count`;
                    // this tile writes the panel's real rows `pch .. pch + prow` at
                    // pixels `px .. px + n`, all inside.
                    unsafe {
                        tile_dyn(
                            nv,
                            kc,
                            packed,
                            p.weights.as_ptr().add(((panel + i) * k + k0) * MR),
                            bias_tab.add(i * BIAS_TAB),
                            output
                                .as_mut_ptr()
                                .add(pch[i] * call.output.stride + out_px),
                            call.output.stride,
                            prow[i],
                            lanes,
                            mode,
                        );
                    }
                }
                px += n;
            }
            k0 += kc;
        }
        panel = end;
    }
    Ok(())
}
