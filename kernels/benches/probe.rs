//! A probe for tuning on a shared machine: best-of-N wall time (robust to other
//! processes stealing the core, unlike criterion's median) of every kernel on the
//! stage shapes of ShuffleNet v1 1x g=3 at 224x224 and 720x1280 (the same shapes as
//! the `stages` criterion bench), next to this core's measured FMA peak.
//! `cargo bench -p kernels --bench probe [-- filter]`; `PROBE_REPS=n` multiplies
//! the repetitions (for profiling); `PROBE_LEVEL=avx512|avx2|scalar` runs a level
//! other than the best one of this CPU (to compare levels on the same shapes).

use kernels::portable;
use kernels::*;
use std::hint::black_box;
use std::time::Instant;

#[path = "../tests/common/mod.rs"]
mod common;

/// Deterministic pseudo-random values in [-1, 1) (the kernel tests' generator).
fn data(n: usize, seed: u64) -> Vec<f32> {
    common::Rng(seed | 1).vec(n)
}

/// The instruction-set level `PROBE_LEVEL` names, if set (else the probe calls
/// the kernels' own dispatch, as the engine does).
fn level() -> Option<portable::Level> {
    static LEVEL: std::sync::OnceLock<Option<portable::Level>> = std::sync::OnceLock::new();
    *LEVEL.get_or_init(|| {
        let name = std::env::var("PROBE_LEVEL")
            .ok()
            .filter(|n| !n.is_empty())?;
        let chosen = match name.as_str() {
            "avx512" => portable::Level::avx512(),
            "avx2" => portable::Level::avx2_fma(),
            "scalar" => Some(portable::Level::scalar()),
            other => panic!("PROBE_LEVEL={other}: use avx512, avx2 or scalar"),
        };
        Some(chosen.expect("PROBE_LEVEL names a level this CPU (or build) does not have"))
    })
}

/// Calls kernel `$f` through its dispatch, or `$f_at` at the `PROBE_LEVEL` level.
macro_rules! run {
    ($f:ident, $f_at:ident, $($a:expr),* $(,)?) => {
        match level() {
            Some(l) => portable::$f_at(l, $($a),*),
            None => portable::$f($($a),*),
        }
    };
}

/// One pointwise call at the probe's level.
fn pointwise(p: &Pointwise, input: &[f32], out: &mut [f32], call: &PointwiseCall) {
    run!(pointwise, pointwise_at, p, input, out, call).unwrap()
}

/// Best time in seconds of runs of `f` for about 0.3 s (at least 5 runs), after a
/// warm-up run.
fn best(mut f: impl FnMut()) -> f64 {
    let scale: f64 = std::env::var("PROBE_REPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let t = Instant::now();
    f();
    let first = t.elapsed().as_secs_f64();
    let reps = ((0.3 * scale / first.max(1e-7)) as usize).clamp(5, 3000);
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(first, f64::min)
}

/// GFLOP/s of 12 independent FMA chains on full vectors (the FMA peak of one core),
/// through pulp.
fn fma_peak() -> f64 {
    struct Peak(usize);
    impl pulp::WithSimd for Peak {
        type Output = (f32, usize);
        #[inline(always)]
        fn with_simd<S: pulp::Simd>(self, s: S) -> (f32, usize) {
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
            (s.reduce_sum_f32s(t), S::F32_LANES)
        }
    }
    let n = 200_000;
    // The lanes of the level pulp dispatches to (16 with AVX-512).
    let lanes = pulp::Arch::new().dispatch(Peak(1)).1;
    let t = best(|| {
        black_box(pulp::Arch::new().dispatch(Peak(black_box(n))));
    });
    (n * 12 * 2 * lanes) as f64 / t / 1e9
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

fn down(x: usize) -> usize {
    (x + 2 - 3) / 2 + 1
}

struct Probe {
    filter: Option<String>,
    peak: f64,
    /// Per resolution: (flops, seconds) of the pointwise shapes.
    pw: (f64, f64),
}

/// A pointwise shape's packed weights (`copies` different copies, for calls that
/// take them in turn), bias and identity row table.
struct PwWeights {
    groups: usize,
    k: usize,
    m: usize,
    copies: Vec<Vec<f32>>,
    bias: Vec<f32>,
    in_rows: Vec<u32>,
}

impl PwWeights {
    fn new(groups: usize, k: usize, m: usize, copies: usize) -> Self {
        PwWeights {
            groups,
            k,
            m,
            copies: (0..copies)
                .map(|c| pack_pointwise(groups, m, k, &data(groups * m * k, 1 + c as u64)))
                .collect(),
            bias: data(groups * m, 2),
            in_rows: (0..(groups * k) as u32).collect(),
        }
    }

    /// The kernel parameters of each copy.
    fn params(&self, epilogue: Epilogue) -> Vec<Pointwise<'_>> {
        self.copies
            .iter()
            .map(|weights| Pointwise {
                floor: None,
                groups: self.groups,
                k: self.k,
                m: self.m,
                weights,
                bias: &self.bias,
                in_rows: &self.in_rows,
                epilogue,
            })
            .collect()
    }
}

impl Probe {
    fn want(&self, name: &str) -> bool {
        self.filter.as_deref().is_none_or(|f| name.contains(f))
    }

    fn report(&self, name: &str, flops: usize, t: f64) {
        let g = flops as f64 / t / 1e9;
        let pct = if self.peak.is_nan() {
            String::new()
        } else {
            format!("  {:3.0}% of peak", 100.0 * g / self.peak)
        };
        println!("{name:44} {:9.1} us {g:6.1} GFLOP/s{pct}", t * 1e6);
    }

    /// One call over whole planes, the weights of successive calls taken from
    /// `copies` copies in turn (1: hot in cache; 16: from L3, as in the network,
    /// where every other layer runs between two calls of a layer).
    #[allow(clippy::too_many_arguments)]
    fn pointwise(
        &mut self,
        res: &str,
        name: &str,
        groups: usize,
        k: usize,
        m: usize,
        (h, w): (usize, usize),
        epi: Epilogue,
        copies: usize,
    ) {
        let cold = if copies > 1 { " cold" } else { "" };
        let name = format!("{res} pointwise{cold} {name} g{groups} k{k} m{m} {h}x{w}");
        if !self.want(&name) {
            return;
        }
        let px = h * w;
        let weights = PwWeights::new(groups, k, m, copies);
        let ps = weights.params(epi);
        let input = data(groups * k * px, 3);
        let mut out = data(groups * m * px, 4);
        let call = PointwiseCall::same_span(px, 0, px, 0..ps[0].panels());
        let mut i = 0;
        let t = best(|| {
            let p = &ps[i % copies];
            i += 1;
            pointwise(p, black_box(&input), &mut out, &call)
        });
        let f = 2 * groups * m * k * px;
        self.pw.0 += f as f64;
        self.pw.1 += t;
        self.report(&name, f, t);
    }

    /// The same shape as the engine's row pipeline calls it: one call per band of
    /// rows (at least 80 pixels and 9600 floats of the bottleneck, the smaller of
    /// the two sides; at least one row), input and output planes being
    /// windows of `WINDOW` bands that the calls cycle through, and the weights of
    /// each call one of `COPIES` copies in turn (in the pipeline every other
    /// layer runs between two calls of a layer, so its weights come from L3).
    #[allow(clippy::too_many_arguments)]
    fn pointwise_bands(
        &mut self,
        res: &str,
        name: &str,
        groups: usize,
        k: usize,
        m: usize,
        (h, w): (usize, usize),
        epi: Epilogue,
    ) {
        const WINDOW: usize = 4;
        const COPIES: usize = 8;
        let pixels = 80usize.max(9600 / (groups * k.min(m)).max(1));
        let rows = pixels.div_ceil(w).clamp(1, h.max(1));
        let name = format!("{res} pw bands {name} g{groups} k{k} m{m} {h}x{w} {rows}r");
        if !self.want(&name) {
            return;
        }
        let band = rows * w;
        let plane = WINDOW * band;
        let weights = PwWeights::new(groups, k, m, COPIES);
        let ps = weights.params(epi);
        let input = data(groups * k * plane, 3);
        let mut out = data(groups * m * plane, 4);
        let t = best(|| {
            let mut r = 0;
            let mut i = 0;
            while r < h {
                let n = rows.min(h - r);
                let call =
                    PointwiseCall::same_span(plane, (i % WINDOW) * band, n * w, 0..ps[0].panels());
                let p = &ps[i % COPIES];
                pointwise(p, black_box(&input), &mut out, &call);
                r += n;
                i += 1;
            }
        });
        let f = 2 * groups * m * k * h * w;
        self.pw.0 += f as f64;
        self.pw.1 += t;
        self.report(&name, f, t);
    }

    fn dw(&self, res: &str, ch: usize, stride: usize, (h, w): (usize, usize)) {
        let name = format!("{res} dwconv3x3 s{stride} {ch}ch {h}x{w}");
        if !self.want(&name) {
            return;
        }
        let g = geom(h, w, stride);
        let (wts, bias) = (data(ch * 9, 5), data(ch, 6));
        let p = Depthwise3x3 {
            stride,
            weights: &wts,
            bias: &bias,
            relu: false,
        };
        let input = data(ch * h * w, 7);
        let mut out = vec![0.0; ch * g.out_h * g.out_w];
        let t = best(|| {
            run!(
                dwconv3x3,
                dwconv3x3_at,
                &p,
                &g,
                black_box(&input),
                &mut out,
                0..ch
            )
            .unwrap()
        });
        self.report(&name, 18 * ch * g.out_h * g.out_w, t);
    }

    fn pool(&self, res: &str, kind: PoolKind, ch: usize, (h, w): (usize, usize)) {
        let kn = if kind == PoolKind::Max { "max" } else { "avg" };
        let name = format!("{res} pool {kn} 3x3 s2 {ch}ch {h}x{w}");
        if !self.want(&name) {
            return;
        }
        let g = geom(h, w, 2);
        let p = Pool {
            kind,
            kh: 3,
            kw: 3,
            stride_h: 2,
            stride_w: 2,
            pad_bottom: 1,
            pad_right: 1,
            relu: false,
        };
        let input = data(ch * h * w, 7);
        let mut out = vec![0.0; ch * g.out_h * g.out_w];
        let t = best(|| run!(pool, pool_at, &p, &g, black_box(&input), &mut out, 0..ch).unwrap());
        self.report(&name, 9 * ch * g.out_h * g.out_w, t);
    }

    fn conv1(&self, res: &str, cout: usize, (h, w): (usize, usize)) {
        let name = format!("{res} conv2d conv1 3->{cout} s2 {h}x{w}");
        if !self.want(&name) {
            return;
        }
        let g = geom(h, w, 2);
        let (wts, bias) = (data(cout * 27, 8), data(cout, 9));
        let p = Conv2d::dense_3x3(3, cout, 2, &wts, &bias, true);
        let input = data(3 * h * w, 10);
        let mut out = vec![0.0; cout * g.out_h * g.out_w];
        let t = best(|| {
            run!(
                conv2d,
                conv2d_at,
                &p,
                &g,
                black_box(&input),
                &mut out,
                0..cout
            )
            .unwrap()
        });
        self.report(&name, 2 * 27 * cout * g.out_h * g.out_w, t);
    }

    fn gap_fc(&self, res: &str, (h, w): (usize, usize)) {
        let (ch, classes, hw) = (960, 1000, h * w);
        let planes = Planes {
            channels: ch,
            hw,
            stride: hw,
        };
        let (wts, bias) = (data(ch * classes, 12), data(classes, 13));
        let fc = Fc {
            inputs: ch,
            outputs: classes,
            weights: &wts,
            bias: &bias,
        };
        let input = data(ch * hw, 14);
        let (mut pooled, mut out) = (vec![0.0; ch], vec![0.0; classes]);
        let name = format!("{res} gap {ch}ch {h}x{w}");
        if self.want(&name) {
            let t = best(|| {
                run!(
                    global_avg_pool,
                    global_avg_pool_at,
                    &planes,
                    black_box(&input),
                    &mut pooled
                )
                .unwrap()
            });
            self.report(&name, ch * hw, t);
        }
        let name = format!("{res} fc {ch}->{classes}");
        if self.want(&name) {
            let t = best(|| run!(fc, fc_at, &fc, black_box(&pooled), &mut out).unwrap());
            self.report(&name, 2 * ch * classes, t);
        }
        let name = format!("{res} gap_fc {ch}ch {h}x{w} -> {classes}");
        if self.want(&name) {
            let t = best(|| {
                run!(
                    gap_fc,
                    gap_fc_at,
                    &fc,
                    &planes,
                    black_box(&input),
                    &mut pooled,
                    &mut out,
                )
                .unwrap()
            });
            self.report(&name, ch * hw + 2 * ch * classes, t);
        }
    }
}

fn main() {
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let peak = if filter.is_some() {
        f64::NAN
    } else {
        fma_peak()
    };
    println!(
        "isa {}  FMA peak {peak:.1} GFLOP/s",
        level().map_or("dispatch", |l| l.name())
    );
    let mut pr = Probe {
        filter,
        peak,
        pw: (0.0, 0.0),
    };
    let relu = Epilogue {
        accumulate: false,
        relu: true,
    };
    let residual = Epilogue {
        accumulate: true,
        relu: true,
    };
    let avg = PoolKind::Avg {
        count_include_pad: false,
    };
    for (res, h, w) in [("224x224", 224, 224), ("720x1280", 720, 1280)] {
        pr.pw = (0.0, 0.0);
        let s1 = (down(h), down(w));
        let s2in = (down(s1.0), down(s1.1));
        let st2 = (down(s2in.0), down(s2in.1));
        let st3 = (down(st2.0), down(st2.1));
        let st4 = (down(st3.0), down(st3.1));
        for cout in [12, 24, 48] {
            pr.conv1(res, cout, (h, w));
        }
        pr.pool(res, PoolKind::Max, 24, s1);
        pr.pointwise(res, "s2u0 gconv1", 1, 24, 60, s2in, relu, 1);
        pr.dw(res, 60, 2, s2in);
        pr.pointwise(res, "s2u0 gconv2", 3, 20, 72, st2, relu, 1);
        pr.pool(res, avg, 24, s2in);
        for (stage, size, m) in [(2, st2, 20), (3, st3, 40), (4, st4, 80)] {
            let cout = 12 * m;
            pr.pointwise(
                res,
                &format!("s{stage} gconv1"),
                3,
                cout / 3,
                m,
                size,
                relu,
                1,
            );
            pr.dw(res, 3 * m, 1, size);
            pr.pointwise(
                res,
                &format!("s{stage} gconv2"),
                3,
                m,
                cout / 3,
                size,
                residual,
                1,
            );
        }
        // The stride-2 depthwise convs of stages 3 and 4.
        pr.dw(res, 120, 2, st2);
        pr.dw(res, 240, 2, st3);
        pr.gap_fc(res, st4);
        // Stage 3 and 4 shapes with cold weights (from L3, as in the network).
        for (stage, size, m) in [(3, st3, 40), (4, st4, 80)] {
            let cout = 12 * m;
            let name = format!("s{stage} gconv1");
            pr.pointwise(res, &name, 3, cout / 3, m, size, relu, 16);
            let name = format!("s{stage} gconv2");
            pr.pointwise(res, &name, 3, m, cout / 3, size, residual, 16);
        }
        pr.pointwise(res, "2x s4 gconv1", 3, 640, 160, st4, relu, 16);
        pr.pointwise(res, "2x s4 gconv2", 3, 160, 640, st4, residual, 16);
        // 2x g=3: the long-k shapes of stages 3 and 4.
        pr.pointwise(res, "2x s3 gconv1", 3, 320, 80, st3, relu, 1);
        pr.pointwise(res, "2x s3 gconv2", 3, 80, 320, st3, residual, 1);
        pr.pointwise(res, "2x s4 gconv1", 3, 640, 160, st4, relu, 1);
        // The engine's row-pipeline calls (bands of at least 80 pixels and 9600
        // bottleneck floats) of 0.5x and 2x g=3.
        pr.pointwise_bands(res, "0.5x s2 gconv1", 3, 40, 10, st2, relu);
        pr.pointwise_bands(res, "0.5x s2 gconv2", 3, 10, 40, st2, residual);
        pr.pointwise_bands(res, "0.5x s3 gconv1", 3, 80, 20, st3, relu);
        pr.pointwise_bands(res, "2x s2 gconv1", 3, 160, 40, st2, relu);
        pr.pointwise_bands(res, "2x s2 gconv2", 3, 40, 160, st2, residual);
        pr.pointwise_bands(res, "2x s3 gconv1", 3, 320, 80, st3, relu);
        pr.pointwise_bands(res, "2x s3 gconv2", 3, 80, 320, st3, residual);
        pr.pointwise_bands(res, "2x s4 gconv1", 3, 640, 160, st4, relu);
        pr.pointwise_bands(res, "2x s4 gconv2", 3, 160, 640, st4, residual);
        // The stride-2 shortcut pools of stages 3 and 4 (inputs in L2).
        pr.pool(res, avg, 240, st2);
        pr.pool(res, avg, 480, st3);
        if pr.pw.1 > 0.0 {
            println!(
                "{res}: all pointwise shapes (planes and bands) together {:.1} GFLOP/s",
                pr.pw.0 / pr.pw.1 / 1e9
            );
        }
    }
}
