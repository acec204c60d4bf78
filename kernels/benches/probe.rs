//! A quick probe for tuning on a shared machine: best-of-N wall time (robust to other
//! processes stealing the core, unlike a median) of the pointwise kernel on the
//! 224x224 stage shapes, next to this core's measured FMA peak.
//! `cargo bench -p kernels --bench probe`.

use kernels::portable::{self, Level};
use kernels::*;
use std::hint::black_box;
use std::time::Instant;

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

/// Best time of `reps` runs of `f`, in seconds, after a warm-up.
fn best(reps: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..reps / 10 + 1 {
        f();
    }
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

/// GFLOP/s of 12 independent FMA chains on 8-float vectors (the FMA peak of one
/// core when two FMA pipes are busy), through pulp.
fn fma_peak() -> f64 {
    struct Peak(usize);
    impl pulp::WithSimd for Peak {
        type Output = f32;
        #[inline(always)]
        fn with_simd<S: pulp::Simd>(self, s: S) -> f32 {
            let mut acc = [s.splat_f32s(0.0); 12];
            let (a, b) = (s.splat_f32s(0.999), s.splat_f32s(0.001));
            for _ in 0..self.0 {
                for x in acc.iter_mut() {
                    *x = s.mul_add_e_f32s(*x, a, b);
                }
            }
            let mut t = s.splat_f32s(0.0);
            for x in acc {
                t = s.add_f32s(t, x);
            }
            s.reduce_sum_f32s(t)
        }
    }
    let n = 200_000;
    let lanes = if Level::avx2_fma().is_some() { 8 } else { 1 };
    let t = best(20, || {
        black_box(pulp::Arch::new().dispatch(Peak(black_box(n))));
    });
    (n * 12 * 2 * lanes) as f64 / t / 1e9
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let peak = fma_peak();
    println!("isa {}  FMA peak {peak:.1} GFLOP/s", portable::isa());
    let relu = Epilogue {
        accumulate: false,
        relu: true,
    };
    let residual = Epilogue {
        accumulate: true,
        relu: true,
    };
    let shapes = [
        ("s2u0 gconv1", 1, 24, 60, 56, relu),
        ("s2u0 gconv2", 3, 20, 72, 28, relu),
        ("s2 gconv1", 3, 80, 20, 28, relu),
        ("s2 gconv2", 3, 20, 80, 28, residual),
        ("s3 gconv1", 3, 160, 40, 14, relu),
        ("s3 gconv2", 3, 40, 160, 14, residual),
        ("s4 gconv1", 3, 320, 80, 7, relu),
        ("s4 gconv2", 3, 80, 320, 7, residual),
    ];
    let (mut flops, mut secs) = (0.0, 0.0);
    for (name, groups, k, m, hw, epilogue) in shapes {
        let px = hw * hw;
        let wts = pack_pointwise(groups, m, k, &data(groups * m * k, 1));
        let bias = data(groups * m, 2);
        let in_rows: Vec<u32> = (0..(groups * k) as u32).collect();
        let input = data(groups * k * px, 3);
        let mut out = data(groups * m * px, 4);
        let p = Pointwise {
            groups,
            k,
            m,
            weights: &wts,
            bias: &bias,
            in_rows: &in_rows,
            epilogue,
        };
        let span = PixelSpan {
            stride: px,
            start: 0,
        };
        let call = PointwiseCall {
            input: span,
            output: span,
            count: px,
            panels: 0..p.panels(),
        };
        let t = best(300, || {
            portable::pointwise(&p, black_box(&input), &mut out, &call).unwrap();
        });
        let f = (2 * groups * m * k * px) as f64;
        flops += f;
        secs += t;
        println!(
            "{name:12} g{groups} k{k:3} m{m:3} {hw:2}x{hw:<2}  {:7.1} us  {:6.1} GFLOP/s  {:4.0}% of peak",
            t * 1e6,
            f / t / 1e9,
            100.0 * f / t / 1e9 / peak
        );
    }
    println!("all pointwise shapes: {:.1} GFLOP/s", flops / secs / 1e9);
}
