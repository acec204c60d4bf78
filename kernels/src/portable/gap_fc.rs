//! Global average pooling, the fully connected layer, and the two in sequence.
//!
//! Both are memory-bound streams (the FC of the 1000-class head reads 3.8 MB of
//! weights per image): global pooling sums each plane with four independent vector
//! accumulators; the FC computes four outputs at a time, so each loaded vector of
//! the features feeds four weight rows, and prefetches the next four rows into L2
//! line by line as it goes (one prefetch per row and step, interleaved with the
//! FMAs: the weights come from memory whenever the network's tensors pushed them
//! out of L3). Measured on an AMD EPYC Zen 4, `bench --profile` medians of the
//! global pool + FC stage, us, before / after: 0.5x g = 3 at 480x640 91-123 /
//! 61-102, at 720x1280 150-153 / 116-117; 2x at 224x224 361-381 / 297-311, at
//! 720x1280 446-481 / 420-436; 0.5x at 224x224 (weights in L3) 27-30 / 29-30.
//! On an Intel Xeon (Emerald Rapids) the FC streams at the core's L3 bandwidth
//! with or without the prefetch (probe, FC 960 -> 1000: 3.84 MB in 133-156 us,
//! 25-28 GB/s); prefetching 8-64 rows ahead was slower (142-156 us).

use super::simd::{load, prefetch_l2, Kernel, Level, SimdExt};
use crate::{Fc, KernelError, Planes};

/// `out[c] = mean of plane c`, with the best level of this CPU.
pub fn global_avg_pool(planes: &Planes, input: &[f32], out: &mut [f32]) -> Result<(), KernelError> {
    global_avg_pool_at(Level::best(), planes, input, out)
}

/// [`global_avg_pool`] with a chosen instruction-set level.
pub fn global_avg_pool_at(
    level: Level,
    planes: &Planes,
    input: &[f32],
    out: &mut [f32],
) -> Result<(), KernelError> {
    planes.check("global_avg_pool", input)?;
    if out.len() < planes.channels {
        return Err(KernelError::Shape {
            kernel: "global_avg_pool",
            what: "output shorter than the channel count".into(),
        });
    }
    level.run(Gap { planes, input, out });
    Ok(())
}

/// `out = W x + b`, with the best level of this CPU.
pub fn fc(p: &Fc, x: &[f32], out: &mut [f32]) -> Result<(), KernelError> {
    fc_at(Level::best(), p, x, out)
}

/// [`fc`] with a chosen instruction-set level.
pub fn fc_at(level: Level, p: &Fc, x: &[f32], out: &mut [f32]) -> Result<(), KernelError> {
    p.check(out)?;
    if x.len() < p.inputs {
        return Err(KernelError::Shape {
            kernel: "fc",
            what: "input shorter than the feature count".into(),
        });
    }
    level.run(FcOp { p, x, out });
    Ok(())
}

/// Global average pool then FC; `pooled` is scratch of at least `planes.channels`.
pub fn gap_fc(
    p: &Fc,
    planes: &Planes,
    input: &[f32],
    pooled: &mut [f32],
    out: &mut [f32],
) -> Result<(), KernelError> {
    gap_fc_at(Level::best(), p, planes, input, pooled, out)
}

/// [`gap_fc`] with a chosen instruction-set level.
pub fn gap_fc_at(
    level: Level,
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
    global_avg_pool_at(level, planes, input, pooled)?;
    fc_at(level, p, pooled, out)
}

struct Gap<'a> {
    planes: &'a Planes,
    input: &'a [f32],
    out: &'a mut [f32],
}

/// Sum of `xs` with four vector accumulators.
#[inline(always)]
fn sum<S: SimdExt>(simd: S, xs: &[f32]) -> f32 {
    let l = S::F32_LANES;
    let zero = simd.splat_f32s(0.0);
    let mut acc = [zero; 4];
    let mut chunks = xs.chunks_exact(4 * l);
    for c in &mut chunks {
        for (i, a) in acc.iter_mut().enumerate() {
            // SAFETY: `c` holds 4 * l floats.
            *a = simd.add_f32s(*a, unsafe { load::<S>(c.as_ptr().add(i * l)) });
        }
    }
    let mut rest = chunks.remainder().chunks_exact(l);
    for c in &mut rest {
        // SAFETY: `c` holds l floats.
        acc[0] = simd.add_f32s(acc[0], unsafe { load::<S>(c.as_ptr()) });
    }
    let v = simd.add_f32s(simd.add_f32s(acc[0], acc[1]), simd.add_f32s(acc[2], acc[3]));
    simd.reduce_sum_f32s(v) + rest.remainder().iter().sum::<f32>()
}

impl Kernel for Gap<'_> {
    type Output = ();

    #[inline(always)]
    fn run<S: SimdExt>(self, simd: S) {
        let Gap { planes, input, out } = self;
        let inv = 1.0 / planes.hw as f32;
        for (c, o) in out.iter_mut().take(planes.channels).enumerate() {
            *o = sum(simd, &input[c * planes.stride..][..planes.hw]) * inv;
        }
    }
}

struct FcOp<'a, 'b> {
    p: &'a Fc<'b>,
    x: &'a [f32],
    out: &'a mut [f32],
}

/// Dot products of `R` weight rows with `x` (all `n` long); `next` (the next
/// rows to come, or empty) is prefetched into L2 alongside.
#[inline(always)]
fn dots<S: SimdExt, const R: usize>(simd: S, w: [&[f32]; R], next: &[f32], x: &[f32]) -> [f32; R] {
    let l = S::F32_LANES;
    let n = x.len();
    let zero = simd.splat_f32s(0.0);
    let mut acc = [zero; R];
    let mut i = 0;
    while i + l <= n {
        for r in 0..R {
            prefetch_l2(next, r * n + i);
        }
        // SAFETY: i + l <= n and every row holds n floats.
        let xv = unsafe { load::<S>(x.as_ptr().add(i)) };
        for (a, row) in acc.iter_mut().zip(&w) {
            // SAFETY: as above.
            *a = simd.mul_add_e_f32s(unsafe { load::<S>(row.as_ptr().add(i)) }, xv, *a);
        }
        i += l;
    }
    let mut res = [0.0; R];
    for ((r, a), row) in res.iter_mut().zip(acc).zip(&w) {
        *r = simd.reduce_sum_f32s(a)
            + row[i..n]
                .iter()
                .zip(&x[i..n])
                .map(|(w, v)| w * v)
                .sum::<f32>();
    }
    res
}

impl Kernel for FcOp<'_, '_> {
    type Output = ();

    #[inline(always)]
    fn run<S: SimdExt>(self, simd: S) {
        let FcOp { p, x, out } = self;
        let n = p.inputs;
        let x = &x[..n];
        let row = |o: usize| &p.weights[o * n..(o + 1) * n];
        let mut o = 0;
        while o + 4 <= p.outputs {
            let next = p
                .weights
                .get((o + 4) * n..((o + 8) * n).min(p.weights.len()))
                .unwrap_or(&[]);
            let d = dots::<S, 4>(simd, [row(o), row(o + 1), row(o + 2), row(o + 3)], next, x);
            for r in 0..4 {
                out[o + r] = p.bias[o + r] + d[r];
            }
            o += 4;
        }
        while o < p.outputs {
            out[o] = p.bias[o] + dots::<S, 1>(simd, [row(o)], &[], x)[0];
            o += 1;
        }
    }
}
