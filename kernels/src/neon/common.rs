//! Small NEON helpers shared by the kernels: partial-vector loads and stores for
//! tails, the weight-lane FMA of one 3-tap row, and the constant rows that stand in
//! for padding rows.

use core::arch::aarch64::*;

/// Floats in [`ZERO_ROW`] and [`NEG_INF_ROW`]: the widest input row a window kernel
/// serves from its fast path (a padding row points at one of these).
pub(crate) const PAD_ROW_LEN: usize = 4096;

/// A row of zeros standing in for a padding row above or below a plane.
pub(crate) static ZERO_ROW: [f32; PAD_ROW_LEN] = [0.0; PAD_ROW_LEN];

/// A row of negative infinities: a padding row for max pooling.
pub(crate) static NEG_INF_ROW: [f32; PAD_ROW_LEN] = [f32::NEG_INFINITY; PAD_ROW_LEN];

/// A zero vector.
#[inline(always)]
pub(crate) fn zero() -> float32x4_t {
    // SAFETY: NEON is baseline on aarch64; register-only.
    unsafe { vdupq_n_f32(0.0) }
}

/// Loads the first `n` floats at `p` (`n` in `1..=4`), zero in the other lanes.
///
/// # Safety
/// `p .. p + n` must be readable.
#[inline(always)]
pub(crate) unsafe fn load_part(p: *const f32, n: usize) -> float32x4_t {
    // SAFETY: each branch reads exactly the first `n` floats at `p`, which the
    // caller guarantees are readable.
    unsafe {
        let z = vdupq_n_f32(0.0);
        match n {
            1 => vld1q_lane_f32::<0>(p, z),
            2 => vcombine_f32(vld1_f32(p), vdup_n_f32(0.0)),
            3 => vld1q_lane_f32::<2>(p.add(2), vcombine_f32(vld1_f32(p), vdup_n_f32(0.0))),
            _ => vld1q_f32(p),
        }
    }
}

/// Stores the first `n` lanes of `v` at `p` (`n` in `1..=4`).
///
/// # Safety
/// `p .. p + n` must be writable.
#[inline(always)]
pub(crate) unsafe fn store_part(p: *mut f32, v: float32x4_t, n: usize) {
    // SAFETY: each branch writes exactly the first `n` floats at `p`, which the
    // caller guarantees are writable.
    unsafe {
        match n {
            1 => vst1q_lane_f32::<0>(p, v),
            2 => vst1_f32(p, vget_low_f32(v)),
            3 => {
                vst1_f32(p, vget_low_f32(v));
                vst1q_lane_f32::<2>(p.add(2), v);
            }
            _ => vst1q_f32(p, v),
        }
    }
}

/// `acc + t0 * w[3dy] + t1 * w[3dy + 1] + t2 * w[3dy + 2]` for the 3x3 filter held
/// in the lanes of `w` (taps 0-3, 4-7, 8 in lane 0 of `w[2]`). `dy` is a constant
/// after inlining, so the match folds away.
#[inline(always)]
pub(crate) fn fma_taps(
    acc: float32x4_t,
    t: &[float32x4_t; 3],
    w: &[float32x4_t; 3],
    dy: usize,
) -> float32x4_t {
    // SAFETY: NEON is baseline on aarch64; these intrinsics only touch registers.
    unsafe {
        match dy {
            0 => {
                let a = vfmaq_laneq_f32::<0>(acc, t[0], w[0]);
                let a = vfmaq_laneq_f32::<1>(a, t[1], w[0]);
                vfmaq_laneq_f32::<2>(a, t[2], w[0])
            }
            1 => {
                let a = vfmaq_laneq_f32::<3>(acc, t[0], w[0]);
                let a = vfmaq_laneq_f32::<0>(a, t[1], w[1]);
                vfmaq_laneq_f32::<1>(a, t[2], w[1])
            }
            _ => {
                let a = vfmaq_laneq_f32::<2>(acc, t[0], w[1]);
                let a = vfmaq_laneq_f32::<3>(a, t[1], w[1]);
                vfmaq_laneq_f32::<0>(a, t[2], w[2])
            }
        }
    }
}

/// Loads a 3x3 filter (9 floats) into three vectors for [`fma_taps`].
///
/// # Safety
/// `w .. w + 9` must be readable.
#[inline(always)]
pub(crate) unsafe fn load_filter(w: *const f32) -> [float32x4_t; 3] {
    // SAFETY: reads w[0..8] and w[8], all inside the caller's 9 floats.
    unsafe { [vld1q_f32(w), vld1q_f32(w.add(4)), vld1q_dup_f32(w.add(8))] }
}

/// Byte-index vector for `vqtbl*q_u8` that gathers, for lanes `t = 0..4`, the float
/// at position `first + t` of a row whose valid positions are `0..len`, from a
/// register table holding the row's floats `off .. off + table_floats`. Lanes whose
/// position is outside the row (padding) or outside the table get index 0xFF, which
/// the table lookup turns into zero (or, with `vqtbx`, leaves the fill value).
pub(crate) fn gather_index(
    first: isize,
    len: usize,
    off: usize,
    table_floats: usize,
) -> uint8x16_t {
    let mut bytes = [0xFFu8; 16];
    for t in 0..4 {
        let pos = first + t as isize;
        if pos >= 0 && (pos as usize) < len {
            let rel = pos as usize;
            if rel >= off && rel - off < table_floats {
                for b in 0..4 {
                    bytes[t * 4 + b] = ((rel - off) * 4 + b) as u8;
                }
            }
        }
    }
    // SAFETY: reads 16 bytes from a local array of 16 bytes.
    unsafe { vld1q_u8(bytes.as_ptr()) }
}
