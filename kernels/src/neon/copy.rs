//! Float copy with 64-byte NEON loads and stores (`ld1`/`st1` of four registers).
//!
//! The engine moves rows with it: the rows a band buffer or pipeline window still
//! needs go to the front of every plane ([`move_to_front`], one call for all the
//! planes), and rows cross between pipeline segments. The static musl binary's
//! `memcpy` (the one `bench-android/run.sh` runs on the phone) copies 16 bytes per
//! `ldp`/`stp` pair of general registers, 10 instructions per 64 bytes in its
//! loop; this one takes 3 (aarch64 instruction count, 0.5x g = 3 at 720x1280: see
//! kernels/NEON.md).

use crate::KernelError;
use core::arch::aarch64::*;

/// Copies `src` into `dst` (same length).
pub fn copy(src: &[f32], dst: &mut [f32]) -> Result<(), KernelError> {
    if dst.len() != src.len() {
        return Err(KernelError::Shape {
            kernel: "copy",
            what: format!("source {} floats, destination {}", src.len(), dst.len()),
        });
    }
    copy_prefix(src, dst);
    Ok(())
}

/// Moves, in each of `planes` planes `stride` floats apart, the `len` floats
/// starting `from` floats into the plane to the plane's start (the ranges may
/// overlap); the scalar twin's contract. Ranges reaching past `buf` are an error,
/// checked once for all the planes; each plane then costs a few instructions
/// around its copy (against about 60 for a checked per-plane call: 0.5x g = 3 at
/// 720x1280, 28K plane moves per inference).
pub fn move_to_front(
    buf: &mut [f32],
    planes: usize,
    stride: usize,
    from: usize,
    len: usize,
) -> Result<(), KernelError> {
    crate::scalar::elementwise::check_move(buf.len(), planes, stride, from, len)?;
    if planes == 0 || len == 0 || from == 0 {
        return Ok(());
    }
    let base = buf.as_mut_ptr();
    // One forward copy per plane when it reads every float before overwriting it
    // (see `copy_raw`), else pieces of at most `from` floats.
    let piece = if from >= 16 { len } else { from };
    for p in 0..planes {
        let mut done = 0;
        while done < len {
            let n = piece.min(len - done);
            // SAFETY: `check_move` proved (planes - 1) stride + from + len <=
            // buf.len(), so the plane's source p stride + from + done .. + n and
            // destination p stride + done .. + n are inside `buf`; the source lies
            // `from` floats after the destination, and either `n <= from` (no
            // overlap) or `from >= 16` (the forward copy's condition).
            unsafe {
                let d = base.add(p * stride + done);
                copy_raw(d.add(from), d, n);
            }
            done += n;
        }
    }
    Ok(())
}

/// Copies the first `min(src.len(), dst.len())` floats of `src` into `dst` (the
/// kernels' own row copies, whose lengths match by construction).
pub(super) fn copy_prefix(src: &[f32], dst: &mut [f32]) {
    let n = src.len().min(dst.len());
    // SAFETY: both slices hold at least n floats and cannot overlap (one is
    // borrowed mutably).
    unsafe { copy_raw(src.as_ptr(), dst.as_mut_ptr(), n) }
}

/// Copies `n` floats from `s` to `d`: 128 bytes per loop pass in inline assembly
/// (two 4-register `ld1`/`st1`, 6 instructions: written with intrinsics, LLVM
/// splits each `ld1` into two `ldp` and turns the shorter loops into calls to
/// `memcpy`), then the rest as one 64-byte block and overlapping vectors, with no
/// loop.
///
/// Also a forward move within one buffer: with `s = d + k` for `k >= 16`, every
/// source float is read before its address is stored to (each loop pass loads
/// before it stores, and stores only below the floats still to be read; the last
/// 16-float block reads from `s + n - 16 >= d + n`, above every store before it;
/// shorter copies do not overlap at all).
///
/// # Safety
/// `s .. s + n` readable, `d .. d + n` writable, not overlapping or `s >= d + 16`.
#[inline(always)]
unsafe fn copy_raw(s: *const f32, d: *mut f32, n: usize) {
    // SAFETY: the caller's contract. The loop copies 32 * (n / 32) floats from the
    // start; every other access is at i .. i + 16, i .. i + 4 or i .. i + 2 with
    // i >= 0 and the end at most n (each guarded by the length test before it). A
    // last block or vector may overlap the one before: it rewrites floats already
    // copied with the same values.
    unsafe {
        let passes = n / 32;
        if passes > 0 {
            core::arch::asm!(
                "2:",
                "ld1 {{v0.4s, v1.4s, v2.4s, v3.4s}}, [{s}], #64",
                "ld1 {{v4.4s, v5.4s, v6.4s, v7.4s}}, [{s}], #64",
                "st1 {{v0.4s, v1.4s, v2.4s, v3.4s}}, [{d}], #64",
                "st1 {{v4.4s, v5.4s, v6.4s, v7.4s}}, [{d}], #64",
                "subs {k}, {k}, #1",
                "b.ne 2b",
                s = inout(reg) s => _,
                d = inout(reg) d => _,
                k = inout(reg) passes => _,
                out("v0") _, out("v1") _, out("v2") _, out("v3") _,
                out("v4") _, out("v5") _, out("v6") _, out("v7") _,
                options(nostack),
            );
        }
        let i = 32 * passes;
        if n >= 16 {
            if n - i > 16 {
                vst1q_f32_x4(d.add(i), vld1q_f32_x4(s.add(i)));
            }
            if n > i {
                vst1q_f32_x4(d.add(n - 16), vld1q_f32_x4(s.add(n - 16)));
            }
        } else if n >= 4 {
            vst1q_f32(d, vld1q_f32(s));
            if n > 8 {
                vst1q_f32(d.add(4), vld1q_f32(s.add(4)));
            }
            if n > 12 {
                vst1q_f32(d.add(8), vld1q_f32(s.add(8)));
            }
            vst1q_f32(d.add(n - 4), vld1q_f32(s.add(n - 4)));
        } else if n >= 2 {
            vst1_f32(d, vld1_f32(s));
            vst1_f32(d.add(n - 2), vld1_f32(s.add(n - 2)));
        } else if n == 1 {
            *d = *s;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::copy;

    #[test]
    fn copies_every_length_and_offset_exactly() {
        let src: Vec<f32> = (0..300).map(|i| i as f32 * 0.5 - 7.0).collect();
        for off in 0..5 {
            for n in 0..=140 {
                let mut dst = vec![f32::NAN; n + 10];
                assert_eq!(copy(&src[off..off + n], &mut dst[3..3 + n]), Ok(()));
                assert_eq!(dst[3..3 + n], src[off..off + n], "n {n} offset {off}");
                assert!(dst[..3].iter().chain(&dst[3 + n..]).all(|v| v.is_nan()));
            }
        }
        assert!(copy(&src[..5], &mut [0.0; 4]).is_err());
    }
}
