//! The pointwise GEMM's pixel tails: the last pixels of a run that fill less
//! than one pixel block. Where a weight panel is one vector (`LANES == MR`), a
//! tail of at most [`GEMV_TAIL_MAX`] pixels runs as matrix-vector products along
//! the output rows ([`gemv_tail`]); a tail shorter than one vector otherwise
//! runs through zero-padded scratch ([`tail_block`]). Both compute every output
//! with the same operations in the same order as a pixel tile, so the bits do
//! not depend on where a run ends (see `pointwise_gemm`).

use super::pointwise_gemm::{rows_block, Gemm, Rows};
use super::simd::{load, store, SimdExt, MAX_LANES};
use crate::MR;

/// Tails of at most this many pixels run as matrix-vector products
/// ([`gemv_tail`]) where a weight panel is one vector: per pixel it costs about
/// `1/MR` of a pixel tile's FMAs, which compute a whole vector of pixels for
/// every output row however few are kept.
pub(crate) const GEMV_TAIL_MAX: usize = 4;

/// Whether the `tail` last pixels of a run go through [`gemv_tail`].
#[inline(always)]
fn gemv_tail_fits<S: SimdExt>(tail: usize) -> bool {
    S::F32_LANES == MR && (1..=GEMV_TAIL_MAX).contains(&tail)
}

/// Pixels `px0 .. px0 + tail` (`tail <= GEMV_TAIL_MAX`) of group `g`'s local rows
/// `lo..hi` (`lo` a multiple of `MR`), as matrix-vector products along the output
/// rows: per weight panel (its `MR` rows are one vector, `LANES == MR`) and pixel,
/// the sum starts from the bias and adds `W[.., kk] * x[kk]` by FMA for `kk = 0,
/// 1, ...`, then the epilogue: the same operations in the same order as a pixel
/// tile, so the result is bit-identical, at one vector of FMAs per `MR` rows
/// instead of one per row. Two pixels run with up to four panels, a single pixel
/// with up to eight: eight independent FMA chains either way. (A single pixel ran
/// with four panels before, four chains against the FMA latency; Intel Xeon,
/// Emerald Rapids, probe at 224x224, 21 alternating rounds, the seven 7x7 shapes,
/// whose planes end in one such pixel: 0.975-0.990 of the time.) Rows past `hi`
/// (a panel's zero rows) are computed and dropped.
///
/// # Safety
/// `S::F32_LANES == MR`; the row table `gm.rows` holds group `g`'s `k` rows, each
/// readable for pixels `px0 .. px0 + tail`; output rows `lo..hi` are writable (and
/// readable, for the accumulate epilogue) there.
#[inline(always)]
unsafe fn gemv_tail<S: SimdExt>(
    simd: S,
    gm: Gemm,
    g: usize,
    lo: usize,
    hi: usize,
    px0: usize,
    tail: usize,
) {
    let mut r0 = lo;
    while r0 < hi {
        let panels = (hi - r0).div_ceil(MR).min(8);
        let mut px = 0;
        while px < tail {
            let at = px0 + px;
            if tail - px >= 2 {
                let mut q = 0;
                while q < panels {
                    let r = r0 + q * MR;
                    // SAFETY: the caller's contract, for the panels that exist from
                    // row r (at most four) and pixels at, at + 1.
                    unsafe {
                        match panels - q {
                            1 => gemv_block::<S, 1, 2>(simd, gm, g, r, hi, at),
                            2 => gemv_block::<S, 2, 2>(simd, gm, g, r, hi, at),
                            3 => gemv_block::<S, 3, 2>(simd, gm, g, r, hi, at),
                            _ => gemv_block::<S, 4, 2>(simd, gm, g, r, hi, at),
                        }
                    }
                    q += 4;
                }
                px += 2;
            } else {
                // SAFETY: the caller's contract, for the panels that exist from row
                // r0 (at most eight) and pixel at.
                unsafe {
                    match panels {
                        1 => gemv_block::<S, 1, 1>(simd, gm, g, r0, hi, at),
                        2 => gemv_block::<S, 2, 1>(simd, gm, g, r0, hi, at),
                        3 => gemv_block::<S, 3, 1>(simd, gm, g, r0, hi, at),
                        4 => gemv_block::<S, 4, 1>(simd, gm, g, r0, hi, at),
                        5 => gemv_block::<S, 5, 1>(simd, gm, g, r0, hi, at),
                        6 => gemv_block::<S, 6, 1>(simd, gm, g, r0, hi, at),
                        7 => gemv_block::<S, 7, 1>(simd, gm, g, r0, hi, at),
                        _ => gemv_block::<S, 8, 1>(simd, gm, g, r0, hi, at),
                    }
                }
                px += 1;
            }
        }
        r0 += 8 * MR;
    }
}

/// Whether [`try_gemv_tail`] takes a tail of `tail` pixels at this level.
#[inline(always)]
pub(crate) fn gemv_tail_applies<S: SimdExt>(tail: usize) -> bool {
    gemv_tail_fits::<S>(tail) || gemv_tail_fits::<S::Panel>(tail)
}

/// [`gemv_tail`] for the last `tail` pixels from `px0`, at this level or at its
/// panel-wide one ([`SimdExt::Panel`]: AVX2 inside an AVX-512 call, so the call
/// keeps its row table and needs no second one for its last pixels) if either
/// fits; `false` (nothing done) if neither does.
///
/// # Safety
/// As for [`gemv_tail`] (the level's lanes aside).
#[inline(always)]
pub(crate) unsafe fn try_gemv_tail<S: SimdExt>(
    simd: S,
    gm: Gemm,
    g: usize,
    lo: usize,
    hi: usize,
    px0: usize,
    tail: usize,
) -> bool {
    if gemv_tail_fits::<S>(tail) {
        // SAFETY: the caller's contract; S's vectors are one panel.
        unsafe { gemv_tail(simd, gm, g, lo, hi, px0, tail) };
    } else if gemv_tail_fits::<S::Panel>(tail) {
        // SAFETY: as above, with the panel-wide level.
        unsafe { gemv_tail(simd.panel(), gm, g, lo, hi, px0, tail) };
    } else {
        return false;
    }
    true
}

/// `NP` weight panels from local row `r0` (rows up to `hi` stored) times `W`
/// pixels from `px` (see [`gemv_tail`]).
///
/// # Safety
/// As for [`gemv_tail`]; the `NP` panels from row `r0` exist in group `g`.
#[inline(always)]
unsafe fn gemv_block<S: SimdExt, const NP: usize, const W: usize>(
    simd: S,
    gm: Gemm,
    g: usize,
    r0: usize,
    hi: usize,
    px: usize,
) {
    let p = gm.p;
    let (k, m, ppg) = (p.k, p.m, p.panels_per_group());
    let epi = p.epilogue;
    let panel: [*const f32; NP] =
        core::array::from_fn(|i| p.weights[(g * ppg + r0 / MR + i) * k * MR..].as_ptr());
    let rows = (hi - r0).min(NP * MR);
    let mut bias = [0.0f32; 8 * MR];
    bias[..rows].copy_from_slice(&p.bias[g * m + r0..g * m + r0 + rows]);
    let mut acc = [[simd.splat_f32s(0.0); W]; NP];
    for (i, a) in acc.iter_mut().enumerate() {
        // SAFETY: `bias` holds 8 * MR >= (i + 1) * LANES floats.
        *a = [unsafe { load::<S>(bias.as_ptr().add(i * MR)) }; W];
    }
    for kk in 0..k {
        // SAFETY: row kk of the table is readable at pixels px .. px + W; every
        // panel holds k * MR floats.
        unsafe {
            let x = (*gm.rows.add(kk)).add(px);
            // (Loops, not closures: a closure is compiled without the level's
            // target features.)
            let mut xs = [simd.splat_f32s(0.0); W];
            for (j, xj) in xs.iter_mut().enumerate() {
                *xj = simd.splat_f32s(*x.add(j));
            }
            for (a, &pp) in acc.iter_mut().zip(&panel) {
                let wv = load::<S>(pp.add(kk * MR));
                for (aj, &xj) in a.iter_mut().zip(&xs) {
                    *aj = simd.mul_add_e_f32s(wv, xj, *aj);
                }
            }
        }
    }
    let out = gm.out.wrapping_add((g * m + r0 - gm.c0) * gm.stride + px);
    let mut v = [0.0f32; 8 * MR];
    for j in 0..W {
        for (i, a) in acc.iter().enumerate() {
            // SAFETY: `v` holds 8 * MR >= (i + 1) * LANES floats.
            unsafe { store::<S>(v.as_mut_ptr().add(i * MR), a[j]) };
        }
        for (r, &x) in v.iter().enumerate().take(rows) {
            // SAFETY: output row r0 + r < hi at pixel px + j (the caller's
            // contract).
            unsafe {
                let o = out.add(r * gm.stride + j);
                let mut x = x;
                if epi.accumulate {
                    x += *o;
                }
                if epi.relu {
                    x = crate::scalar::relu_at(x, p.floor_of(g * m + r0 + r));
                }
                *o = x;
            }
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
        unsafe {
            rows_block::<S, 1, Rows>(
                simd,
                scratch,
                Rows(gm.rows),
                g,
                h,
                h + n,
                0,
                1,
                0,
                (0, gm.p.k),
            )
        };
        for r in 0..n {
            // SAFETY: as above.
            unsafe { core::ptr::copy_nonoverlapping(bp.add(r * l), out.add(r * gm.stride), tail) };
        }
        h += n;
    }
}
