//! Global average pooling, the fully connected layer, and the two in sequence.
//!
//! The pool sums four planes at a time (vector adds, the tail vector loaded lane
//! by lane), reduces the four sums with pairwise adds into one vector and stores
//! the four means at once. The FC is a GEMV over row-major weights: eight outputs
//! at a time, sixteen inputs loaded once and multiplied into the eight rows (every
//! weight is loaded exactly once, sixteen per four-register `ld1`), the eight row
//! sums reduced with pairwise adds; leftover outputs run one at a time.

use super::common::{load_part, zero};
use crate::{Fc, KernelError, Planes};
use core::arch::aarch64::*;
use core::arch::asm;

/// Sum of `hw` floats at `p`.
///
/// # Safety
/// `p .. p + hw` must be readable.
#[inline(always)]
unsafe fn plane_sum(p: *const f32, hw: usize) -> float32x4_t {
    // SAFETY: reads whole vectors below hw & !3, then the last hw % 4 floats.
    unsafe {
        let (mut s0, mut s1) = (zero(), zero());
        let mut i = 0;
        while i + 8 <= hw {
            s0 = vaddq_f32(s0, vld1q_f32(p.add(i)));
            s1 = vaddq_f32(s1, vld1q_f32(p.add(i + 4)));
            i += 8;
        }
        if i + 4 <= hw {
            s0 = vaddq_f32(s0, vld1q_f32(p.add(i)));
            i += 4;
        }
        if i < hw {
            s1 = vaddq_f32(s1, load_part(p.add(i), hw - i));
        }
        vaddq_f32(s0, s1)
    }
}

/// `out[c] = mean of plane c` (contract of the scalar twin).
pub fn global_avg_pool(planes: &Planes, input: &[f32], out: &mut [f32]) -> Result<(), KernelError> {
    planes.check("global_avg_pool", input)?;
    if out.len() < planes.channels {
        return Err(KernelError::Shape {
            kernel: "global_avg_pool",
            what: "output shorter than the channel count".into(),
        });
    }
    let (n, hw, stride) = (planes.channels, planes.hw, planes.stride);
    let scale = 1.0 / hw as f32;
    // SAFETY: `check` proved plane c (`hw` floats at `c * stride`) is inside
    // `input` for c < channels, and `out` holds `channels` floats.
    unsafe {
        let src = input.as_ptr();
        let dst = out.as_mut_ptr();
        let mut c = 0;
        while c + 4 <= n {
            let s = [0, 1, 2, 3].map(|k| plane_sum(src.add((c + k) * stride), hw));
            let v = vpaddq_f32(vpaddq_f32(s[0], s[1]), vpaddq_f32(s[2], s[3]));
            vst1q_f32(dst.add(c), vmulq_n_f32(v, scale));
            c += 4;
        }
        while c < n {
            *dst.add(c) = vaddvq_f32(plane_sum(src.add(c * stride), hw)) * scale;
            c += 1;
        }
    }
    Ok(())
}

/// Adds row `w[0 .. len]` times `x[0 .. len]` into `acc` (lane-wise partial sums).
///
/// # Safety
/// `w .. w + len` and `x .. x + len` must be readable.
#[inline(always)]
unsafe fn dot_tail(acc: float32x4_t, w: *const f32, x: *const f32, len: usize) -> float32x4_t {
    // SAFETY: reads only the first `len` floats of both.
    unsafe {
        let mut a = acc;
        let mut i = 0;
        while i + 4 <= len {
            a = vfmaq_f32(a, vld1q_f32(w.add(i)), vld1q_f32(x.add(i)));
            i += 4;
        }
        if i < len {
            a = vfmaq_f32(
                a,
                load_part(w.add(i), len - i),
                load_part(x.add(i), len - i),
            );
        }
        a
    }
}

/// One row's four lane FMAs (`v$a += v4..v7 * v0..v3`) after loading its
/// sixteen weights from cursor `{$r}` into `v4 - v7`.
macro_rules! gemv_row {
    ($r:literal, $a:literal) => {
        concat!(
            "ld1 {{v4.4s, v5.4s, v6.4s, v7.4s}}, [{",
            $r,
            "}], #64\n",
            "fmla v",
            $a,
            ".4s, v4.4s, v0.4s\n",
            "fmla v",
            $a,
            ".4s, v5.4s, v1.4s\n",
            "fmla v",
            $a,
            ".4s, v6.4s, v2.4s\n",
            "fmla v",
            $a,
            ".4s, v7.4s, v3.4s\n",
        )
    };
}

/// Adds rows `r[0..8]` times `x`, `16 steps` floats of each, into `acc` (lane-wise
/// partial sums): per step one four-register `ld1` of sixteen inputs, one per
/// row of its sixteen weights (post-incremented), 32 FMAs.
///
/// # Safety
/// `steps >= 1`; `r[i] .. r[i] + 16 steps` and `x .. x + 16 steps` are readable.
#[inline(always)]
unsafe fn gemv_rows8(
    r: [*const f32; 8],
    x: *const f32,
    steps: usize,
    acc: [float32x4_t; 8],
) -> [float32x4_t; 8] {
    let [mut a0, mut a1, mut a2, mut a3, mut a4, mut a5, mut a6, mut a7] = acc;
    // SAFETY: reads exactly the ranges of the contract; registers only otherwise.
    unsafe {
        asm!(
            "2:",
            "ld1 {{v0.4s, v1.4s, v2.4s, v3.4s}}, [{x}], #64",
            gemv_row!("r0", 16),
            gemv_row!("r1", 17),
            gemv_row!("r2", 18),
            gemv_row!("r3", 19),
            gemv_row!("r4", 20),
            gemv_row!("r5", 21),
            gemv_row!("r6", 22),
            gemv_row!("r7", 23),
            "subs {n}, {n}, #1",
            "b.ne 2b",
            x = inout(reg) x => _,
            n = inout(reg) steps => _,
            r0 = inout(reg) r[0] => _,
            r1 = inout(reg) r[1] => _,
            r2 = inout(reg) r[2] => _,
            r3 = inout(reg) r[3] => _,
            r4 = inout(reg) r[4] => _,
            r5 = inout(reg) r[5] => _,
            r6 = inout(reg) r[6] => _,
            r7 = inout(reg) r[7] => _,
            inout("v16") a0,
            inout("v17") a1,
            inout("v18") a2,
            inout("v19") a3,
            inout("v20") a4,
            inout("v21") a5,
            inout("v22") a6,
            inout("v23") a7,
            out("v0") _, out("v1") _, out("v2") _, out("v3") _,
            out("v4") _, out("v5") _, out("v6") _, out("v7") _,
            options(nostack, readonly),
        );
    }
    [a0, a1, a2, a3, a4, a5, a6, a7]
}

/// `out = W x + b` (contract of the scalar twin).
pub fn fc(p: &Fc, x: &[f32], out: &mut [f32]) -> Result<(), KernelError> {
    p.check(out)?;
    if x.len() < p.inputs {
        return Err(KernelError::Shape {
            kernel: "fc",
            what: "input shorter than the feature count".into(),
        });
    }
    let (ni, no) = (p.inputs, p.outputs);
    let main = ni & !15;
    // SAFETY: `check` proved `weights` holds `outputs` rows of `inputs` floats and
    // `bias` and `out` hold `outputs` floats; `x` holds `inputs` floats (above).
    // Every row access below stays below `inputs`.
    unsafe {
        let w = p.weights.as_ptr();
        let xp = x.as_ptr();
        let mut o = 0;
        while o + 8 <= no {
            let rows: [*const f32; 8] = core::array::from_fn(|r| w.add((o + r) * ni));
            let mut acc = [zero(); 8];
            if main > 0 {
                // The eight rows hold `main` floats from `rows[r]`, `x` `main`
                // from `xp`; `main` is a multiple of 16.
                acc = gemv_rows8(rows, xp, main / 16, acc);
            }
            if main < ni {
                for r in 0..8 {
                    acc[r] = dot_tail(acc[r], rows[r].add(main), xp.add(main), ni - main);
                }
            }
            let lo = vpaddq_f32(vpaddq_f32(acc[0], acc[1]), vpaddq_f32(acc[2], acc[3]));
            let hi = vpaddq_f32(vpaddq_f32(acc[4], acc[5]), vpaddq_f32(acc[6], acc[7]));
            let b = p.bias.as_ptr().add(o);
            vst1q_f32(out.as_mut_ptr().add(o), vaddq_f32(lo, vld1q_f32(b)));
            vst1q_f32(
                out.as_mut_ptr().add(o + 4),
                vaddq_f32(hi, vld1q_f32(b.add(4))),
            );
            o += 8;
        }
        while o < no {
            let s = dot_tail(zero(), w.add(o * ni), xp, ni);
            *out.as_mut_ptr().add(o) = *p.bias.as_ptr().add(o) + vaddvq_f32(s);
            o += 1;
        }
    }
    Ok(())
}

/// Global average pool then FC; `pooled` is scratch of at least `planes.channels`
/// (contract of the scalar twin).
pub fn gap_fc(
    p: &Fc,
    planes: &Planes,
    input: &[f32],
    pooled: &mut [f32],
    out: &mut [f32],
) -> Result<(), KernelError> {
    if p.inputs != planes.channels {
        return Err(KernelError::Shape {
            kernel: "gap_fc",
            what: "FC inputs differ from the pooled channels".into(),
        });
    }
    global_avg_pool(planes, input, pooled)?;
    fc(p, pooled, out)
}
