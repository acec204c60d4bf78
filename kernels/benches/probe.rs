//! A quick probe for tuning on a shared machine: best-of-N wall time (robust to other
//! processes stealing the core, unlike a median) of every kernel on the 224x224
//! stage shapes, next to this core's measured FMA peak.
//! `cargo bench -p kernels --bench probe [-- filter]`.

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
    // PROBE_REPS scales the repetitions (for profiling).
    let scale: usize = std::env::var("PROBE_REPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let reps = reps * scale;
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
    let filtered = std::env::args().nth(1).is_some_and(|a| !a.starts_with('-'));
    let peak = if filtered { f64::NAN } else { fma_peak() };
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
    // (720x1280 shapes are listed after the sum.)
    let big = [
        ("720p s2 gconv2", 3, 20, 80, (90, 160), residual),
        ("720p s3 gconv1", 3, 160, 40, (45, 80), relu),
    ];
    let (mut flops, mut secs) = (0.0, 0.0);
    let only_others = std::env::args().nth(1).is_some_and(|a| !a.starts_with('-'));
    for (name, groups, k, m, hw, epilogue) in shapes {
        if only_others {
            break;
        }
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
    for (name, groups, k, m, (h, w), epilogue) in big {
        if only_others {
            break;
        }
        let px = h * w;
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
        let t = best(20, || {
            portable::pointwise(&p, black_box(&input), &mut out, &call).unwrap();
        });
        report(name, 2 * groups * m * k * px, t);
    }
    others();
}

fn report(name: &str, flops: usize, t: f64) {
    println!(
        "{name:28} {:8.1} us  {:6.1} GFLOP/s",
        t * 1e6,
        flops as f64 / t / 1e9
    );
}

fn geom(h: usize, w: usize, stride: usize) -> PlaneGeom {
    let (oh, ow) = if stride == 2 {
        ((h - 1) / 2 + 1, (w - 1) / 2 + 1)
    } else {
        (h, w)
    };
    PlaneGeom {
        in_h: h,
        in_w: w,
        in_stride: h * w,
        out_h: oh,
        out_w: ow,
        out_stride: oh * ow,
        pad_top: 1,
        pad_left: 1,
    }
}

/// The other kernels on the 224x224 stage shapes.
fn others() {
    let filter = std::env::args().nth(1).filter(|a| !a.starts_with('-'));
    let want = |n: &str| filter.as_deref().is_none_or(|f| n.contains(f));
    for (ch, (h, w), stride) in [
        (60, (56, 56), 2),
        (60, (28, 28), 1),
        (120, (14, 14), 1),
        (240, (7, 7), 1),
        (60, (180, 320), 2),
        (60, (90, 160), 1),
    ] {
        let name = format!("dw s{stride} {ch}ch {h}x{w}");
        if !want(&name) {
            continue;
        }
        let hw = h * w;
        let g = geom(h, w, stride);
        let (wts, bias) = (data(ch * 9, 5), data(ch, 6));
        let p = Depthwise3x3 {
            stride,
            weights: &wts,
            bias: &bias,
            relu: false,
        };
        let input = data(ch * hw, 7);
        let mut out = vec![0.0; ch * g.out_h * g.out_w];
        let t = best(if hw > 10_000 { 20 } else { 300 }, || {
            portable::dwconv3x3(&p, &g, black_box(&input), &mut out, 0..ch).unwrap()
        });
        report(&name, 18 * ch * g.out_h * g.out_w, t);
    }
    for (kind, ch, hw) in [
        (PoolKind::Max, 24, 112),
        (
            PoolKind::Avg {
                count_include_pad: false,
            },
            24,
            56,
        ),
    ] {
        let name = format!("pool {kind:?} {ch}ch {hw}x{hw}");
        if !want(&name) {
            continue;
        }
        let g = geom(hw, hw, 2);
        let p = Pool {
            kind,
            kh: 3,
            kw: 3,
            stride_h: 2,
            stride_w: 2,
            pad_bottom: 1,
            pad_right: 1,
        };
        let input = data(ch * hw * hw, 7);
        let mut out = vec![0.0; ch * g.out_h * g.out_w];
        let t = best(300, || {
            portable::pool(&p, &g, black_box(&input), &mut out, 0..ch).unwrap()
        });
        report(&name, 9 * ch * g.out_h * g.out_w, t);
    }
    if want("conv1") {
        let g = geom(224, 224, 2);
        let (wts, bias) = (data(24 * 27, 8), data(24, 9));
        let p = Conv2d {
            cin: 3,
            cout: 24,
            groups: 1,
            kh: 3,
            kw: 3,
            stride_h: 2,
            stride_w: 2,
            weights: &wts,
            bias: &bias,
            relu: true,
        };
        let input = data(3 * 224 * 224, 10);
        let mut out = vec![0.0; 24 * g.out_h * g.out_w];
        let t = best(100, || {
            portable::conv2d(&p, &g, black_box(&input), &mut out, 0..24).unwrap()
        });
        report("conv1 3->24 s2 224x224", 2 * 27 * 24 * g.out_h * g.out_w, t);
    }
    if want("gap") || want("fc") {
        let planes = Planes {
            channels: 960,
            hw: 49,
            stride: 49,
        };
        let (wts, bias) = (data(960 * 1000, 12), data(1000, 13));
        let fc = Fc {
            inputs: 960,
            outputs: 1000,
            weights: &wts,
            bias: &bias,
        };
        let input = data(960 * 49, 14);
        let (mut pooled, mut out) = (vec![0.0; 960], vec![0.0; 1000]);
        let t = best(300, || {
            portable::global_avg_pool(&planes, black_box(&input), &mut pooled).unwrap()
        });
        report("gap 960ch 7x7", 960 * 49, t);
        let t = best(300, || {
            portable::fc(&fc, black_box(&pooled), &mut out).unwrap()
        });
        report("fc 960->1000", 2 * 960 * 1000, t);
    }
}
