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
use crate::MR;
use core::arch::aarch64::*;

/// Pixels per register tile: three q registers per weight row.
pub(crate) const NR: usize = 12;
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
