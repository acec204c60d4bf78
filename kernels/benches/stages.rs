//! Criterion benchmarks of every dispatched kernel on the stage shapes of
//! ShuffleNet v1 1x, g=3, at 224x224 and 720x1280 (`cargo bench -p kernels`).
//!
//! Throughput is reported in "elements" that are floating-point operations, so
//! criterion's `Gelem/s` reads as GFLOP/s: `2 * MACs` for the convolutions and the
//! FC, one operation per window tap for the pools, one per input value for the
//! global pool.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use kernels::{dispatch, *};
use std::hint::black_box;
use std::time::Duration;

#[path = "../tests/common/mod.rs"]
mod common;

/// Deterministic pseudo-random values in [-1, 1) (the kernel tests' generator).
fn data(n: usize, seed: u64) -> Vec<f32> {
    common::Rng(seed | 1).vec(n)
}

fn shuffle_table(c: usize, groups: usize) -> Vec<u32> {
    let n = c / groups;
    (0..c)
        .map(|i| ((i % groups) * n + i / groups) as u32)
        .collect()
}

/// Spatial size after a 3x3 stride-2 window with padding 1.
fn down(x: usize) -> usize {
    (x + 2 - 3) / 2 + 1
}

/// The resolutions: name, input height, input width.
const RES: [(&str, usize, usize); 2] = [("224x224", 224, 224), ("720x1280", 720, 1280)];

#[allow(clippy::too_many_arguments)]
fn bench_pointwise(
    c: &mut Criterion,
    res: &str,
    name: &str,
    groups: usize,
    k: usize,
    m: usize,
    (h, w): (usize, usize),
    epilogue: Epilogue,
) {
    let px = h * w;
    let cin = groups * k;
    let wts = pack_pointwise(groups, m, k, &data(groups * m * k, 1));
    let bias = data(groups * m, 2);
    let in_rows = shuffle_table(cin, groups);
    let input = data(cin * px, 3);
    let mut output = data(groups * m * px, 4);
    let p = Pointwise {
        floor: None,
        groups,
        k,
        m,
        weights: &wts,
        bias: &bias,
        in_rows: &in_rows,
        epilogue,
    };
    let call = PointwiseCall {
        input: PixelSpan {
            stride: px,
            start: 0,
        },
        output: PixelSpan {
            stride: px,
            start: 0,
        },
        count: px,
        panels: 0..p.panels(),
    };
    let mut g = c.benchmark_group(format!("{res}/pointwise"));
    g.throughput(Throughput::Elements((2 * groups * m * k * px) as u64));
    let id = format!("{name} g{groups} k{k} m{m} {h}x{w}");
    g.bench_function(BenchmarkId::from_parameter(id), |b| {
        b.iter(|| dispatch::pointwise(&p, black_box(&input), &mut output, &call).unwrap())
    });
    g.finish();
}

fn bench_dw(c: &mut Criterion, res: &str, ch: usize, stride: usize, (h, w): (usize, usize)) {
    let (oh, ow) = if stride == 2 {
        (down(h), down(w))
    } else {
        (h, w)
    };
    let geom = PlaneGeom {
        in_h: h,
        in_w: w,
        in_stride: h * w,
        out_h: oh,
        out_w: ow,
        out_stride: oh * ow,
        pad_top: 1,
        pad_left: 1,
    };
    let (wts, bias) = (data(ch * 9, 5), data(ch, 6));
    let p = Depthwise3x3 {
        stride,
        weights: &wts,
        bias: &bias,
        relu: false,
    };
    let input = data(ch * h * w, 7);
    let mut output = vec![0.0; ch * oh * ow];
    let mut g = c.benchmark_group(format!("{res}/dwconv3x3"));
    g.throughput(Throughput::Elements((2 * 9 * ch * oh * ow) as u64));
    let id = format!("s{stride} {ch}ch {h}x{w}");
    g.bench_function(BenchmarkId::from_parameter(id), |b| {
        b.iter(|| dispatch::dwconv3x3(&p, &geom, black_box(&input), &mut output, 0..ch).unwrap())
    });
    g.finish();
}

fn bench_conv1(c: &mut Criterion, res: &str, (h, w): (usize, usize)) {
    let (cin, cout) = (3, 24);
    let (oh, ow) = (down(h), down(w));
    let geom = PlaneGeom {
        in_h: h,
        in_w: w,
        in_stride: h * w,
        out_h: oh,
        out_w: ow,
        out_stride: oh * ow,
        pad_top: 1,
        pad_left: 1,
    };
    let (wts, bias) = (data(cout * cin * 9, 8), data(cout, 9));
    let p = Conv2d::dense_3x3(cin, cout, 2, &wts, &bias, true);
    let input = data(cin * h * w, 10);
    let mut output = vec![0.0; cout * oh * ow];
    let mut g = c.benchmark_group(format!("{res}/conv2d"));
    g.throughput(Throughput::Elements((2 * 27 * cout * oh * ow) as u64));
    let id = format!("conv1 3->24 s2 {h}x{w}");
    g.bench_function(BenchmarkId::from_parameter(id), |b| {
        b.iter(|| dispatch::conv2d(&p, &geom, black_box(&input), &mut output, 0..cout).unwrap())
    });
    g.finish();
}

fn bench_pool(c: &mut Criterion, res: &str, kind: PoolKind, ch: usize, (h, w): (usize, usize)) {
    let (oh, ow) = (down(h), down(w));
    let geom = PlaneGeom {
        in_h: h,
        in_w: w,
        in_stride: h * w,
        out_h: oh,
        out_w: ow,
        out_stride: oh * ow,
        pad_top: 1,
        pad_left: 1,
    };
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
    let input = data(ch * h * w, 11);
    let mut output = vec![0.0; ch * oh * ow];
    let mut g = c.benchmark_group(format!("{res}/pool"));
    g.throughput(Throughput::Elements((9 * ch * oh * ow) as u64));
    let name = match kind {
        PoolKind::Max => "max",
        PoolKind::Avg { .. } => "avg",
    };
    let id = format!("{name} 3x3 s2 {ch}ch {h}x{w}");
    g.bench_function(BenchmarkId::from_parameter(id), |b| {
        b.iter(|| dispatch::pool(&p, &geom, black_box(&input), &mut output, 0..ch).unwrap())
    });
    g.finish();
}

fn bench_gap_fc(c: &mut Criterion, res: &str, (h, w): (usize, usize)) {
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
    let mut g = c.benchmark_group(format!("{res}/gap_fc"));
    g.throughput(Throughput::Elements((ch * hw) as u64));
    g.bench_function(
        BenchmarkId::from_parameter(format!("gap {ch}ch {h}x{w}")),
        |b| b.iter(|| dispatch::global_avg_pool(&planes, black_box(&input), &mut pooled).unwrap()),
    );
    g.throughput(Throughput::Elements((2 * ch * classes) as u64));
    g.bench_function(
        BenchmarkId::from_parameter(format!("fc {ch}->{classes}")),
        |b| b.iter(|| dispatch::fc(&fc, black_box(&pooled), &mut out).unwrap()),
    );
    g.throughput(Throughput::Elements((ch * hw + 2 * ch * classes) as u64));
    let id = format!("gap_fc {ch}ch {h}x{w} -> {classes}");
    g.bench_function(BenchmarkId::from_parameter(id), |b| {
        b.iter(|| dispatch::gap_fc(&fc, &planes, black_box(&input), &mut pooled, &mut out).unwrap())
    });
    g.finish();
}

fn stages(c: &mut Criterion) {
    eprintln!("kernels run with: {}", dispatch::isa());
    let relu = Epilogue {
        accumulate: false,
        relu: true,
    };
    let residual = Epilogue {
        accumulate: true,
        relu: true,
    };
    for (res, h, w) in RES {
        let s1 = (down(h), down(w)); // conv1 output
        let s2in = (down(s1.0), down(s1.1)); // maxpool output, stage 2 input
        let st2 = (down(s2in.0), down(s2in.1));
        let st3 = (down(st2.0), down(st2.1));
        let st4 = (down(st3.0), down(st3.1));
        bench_conv1(c, res, (h, w));
        bench_pool(c, res, PoolKind::Max, 24, s1);
        // Stage 2, unit 0 (stride 2).
        bench_pointwise(c, res, "s2u0 gconv1", 1, 24, 60, s2in, relu);
        bench_dw(c, res, 60, 2, s2in);
        bench_pointwise(c, res, "s2u0 gconv2", 3, 20, 72, st2, relu);
        let avg = PoolKind::Avg {
            count_include_pad: false,
        };
        bench_pool(c, res, avg, 24, s2in);
        // Stride-1 units of stages 2, 3, 4.
        for (stage, size, m) in [(2, st2, 20), (3, st3, 40), (4, st4, 80)] {
            let cb = 3 * m;
            let cout = 4 * cb;
            let name1 = format!("s{stage} gconv1");
            bench_pointwise(c, res, &name1, 3, cout / 3, m, size, relu);
            bench_dw(c, res, cb, 1, size);
            let name2 = format!("s{stage} gconv2");
            bench_pointwise(c, res, &name2, 3, m, cout / 3, size, residual);
        }
        bench_gap_fc(c, res, st4);
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    targets = stages
}
criterion_main!(benches);
