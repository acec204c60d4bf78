//! Small enough for Miri (`tools/hostile.sh miri`), and run by every `cargo test`:
//! every dispatched kernel against its scalar twin on tiny shapes with guard zones;
//! a miniature ShuffleNet through the planner, the model-file writer and loader
//! (aligned and unaligned bytes), sessions on one and two threads and the reference
//! executor; and damaged model files (every truncation, resealed byte flips),
//! which must be errors.

use kernels::{dispatch, scalar, *};
use shufflenet::graph::{
    BatchNorm, Conv, Fc as FcOp, Graph, GraphBuilder, InputSpec, Layout, Op, Pads, PoolSpec,
};
use shufflenet::model::Model;
use shufflenet::model_file::{self, format};
use shufflenet::session::{Session, SessionOptions};
use shufflenet::{plan, reference};
use std::sync::Arc;

mod common;
use common::Rng;

const GUARD: usize = 5;
const POISON: u32 = 0x7fc0_dead;

/// `inner` between NaN guard zones: a write outside changes a guard, a read outside
/// pulls a NaN into the result.
fn guarded(inner: &[f32]) -> Vec<f32> {
    let poison = f32::from_bits(POISON);
    let mut v = vec![poison; GUARD];
    v.extend_from_slice(inner);
    v.extend(std::iter::repeat_n(poison, GUARD));
    v
}

fn inner(v: &[f32]) -> &[f32] {
    &v[GUARD..v.len() - GUARD]
}

/// Runs `fast` and `slow` on guarded copies of `out0`; the results must agree and
/// the guards stay intact.
fn compare(
    what: &str,
    out0: &[f32],
    fast: impl FnOnce(&mut [f32]) -> Result<(), KernelError>,
    slow: impl FnOnce(&mut [f32]) -> Result<(), KernelError>,
) {
    let (mut a, mut b) = (guarded(out0), guarded(out0));
    let n = a.len() - GUARD;
    fast(&mut a[GUARD..n]).unwrap_or_else(|e| panic!("{what}: {e}"));
    slow(&mut b[GUARD..n]).unwrap_or_else(|e| panic!("{what}: {e}"));
    for v in a[..GUARD].iter().chain(&a[n..]) {
        assert_eq!(v.to_bits(), POISON, "{what}: write outside the output");
    }
    for (x, y) in inner(&a).iter().zip(inner(&b)) {
        assert!(
            (x - y).abs() <= 1e-4 * (1.0 + y.abs()),
            "{what}: {x} vs {y}"
        );
    }
}

#[test]
fn pointwise_on_tiny_shapes() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for (groups, k, m, pixels, extra) in [(1, 2, 1, 1, 0), (3, 2, 5, 3, 2), (2, 3, MR + 1, 5, 1)] {
        let stride = pixels + extra;
        let cin = groups * k;
        let in_rows: Vec<u32> = (0..groups * k).map(|_| rng.below(cin) as u32).collect();
        let packed = pack_pointwise(groups, m, k, &rng.vec(groups * m * k));
        let bias = rng.vec(groups * m);
        let input = guarded(&rng.vec(cin * stride));
        for (accumulate, relu) in [(false, false), (true, true)] {
            let p = Pointwise {
                floor: None,
                groups,
                k,
                m,
                weights: &packed,
                bias: &bias,
                in_rows: &in_rows,
                epilogue: Epilogue { accumulate, relu },
            };
            let call = PointwiseCall {
                input: PixelSpan { stride, start: 0 },
                output: PixelSpan { stride, start: 0 },
                count: pixels,
                panels: 0..p.panels(),
            };
            let out0 = rng.vec((groups * m - 1) * stride + pixels);
            compare(
                &format!("pointwise g{groups} k{k} m{m}"),
                &out0,
                |o| dispatch::pointwise(&p, inner(&input), o, &call),
                |o| scalar::pointwise::pointwise(&p, inner(&input), o, &call),
            );
        }
    }
}

fn geom(h: usize, w: usize, oh: usize, ow: usize, pt: usize, pl: usize) -> PlaneGeom {
    PlaneGeom {
        in_h: h,
        in_w: w,
        in_stride: h * w,
        out_h: oh,
        out_w: ow,
        out_stride: oh * ow,
        pad_top: pt,
        pad_left: pl,
    }
}

fn out_len(len: usize, k: usize, stride: usize, pad_begin: usize, pad_end: usize) -> usize {
    (len + pad_begin + pad_end - k) / stride + 1
}

#[test]
fn windows_on_tiny_shapes() {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    for (h, w) in [(1, 1), (3, 5), (4, 4)] {
        for stride in [1, 2] {
            for (pt, pl, pb, pr) in [(1, 1, 1, 1), (0, 1, 2, 0)] {
                if h + pt + pb < 3 || w + pl + pr < 3 {
                    continue;
                }
                let (oh, ow) = (out_len(h, 3, stride, pt, pb), out_len(w, 3, stride, pl, pr));
                let g = geom(h, w, oh, ow, pt, pl);
                let channels = 2;
                let input = guarded(&rng.vec(channels * h * w));
                let (weights, bias) = (rng.vec(channels * 9), rng.vec(channels));
                let dw = Depthwise3x3 {
                    stride,
                    weights: &weights,
                    bias: &bias,
                    relu: stride == 2,
                };
                let what = format!("{h}x{w} s{stride} pads {pt},{pl},{pb},{pr}");
                compare(
                    &format!("dwconv3x3 {what}"),
                    &rng.vec(channels * oh * ow),
                    |o| dispatch::dwconv3x3(&dw, &g, inner(&input), o, 0..channels),
                    |o| scalar::dwconv3x3::dwconv3x3(&dw, &g, inner(&input), o, 0..channels),
                );
                for kind in [
                    PoolKind::Max,
                    PoolKind::Avg {
                        count_include_pad: pt == 0,
                    },
                ] {
                    let p = Pool {
                        kind,
                        kh: 3,
                        kw: 3,
                        stride_h: stride,
                        stride_w: stride,
                        pad_bottom: pb,
                        pad_right: pr,
                        relu: false,
                    };
                    compare(
                        &format!("pool {kind:?} {what}"),
                        &rng.vec(channels * oh * ow),
                        |o| dispatch::pool(&p, &g, inner(&input), o, 0..channels),
                        |o| scalar::pool::pool(&p, &g, inner(&input), o, 0..channels),
                    );
                }
            }
        }
    }
    // Direct convolution: the stem shape, and a grouped one without padding.
    for (cin, cout, groups, k, stride, pad, h, w) in [
        (3, 6, 1, 3, 2, 1, 3, 5),
        (4, 6, 2, 2, 1, 0, 3, 3),
        (3, 4, 1, 3, 2, 1, 1, 1),
    ] {
        let (oh, ow) = (
            out_len(h, k, stride, pad, pad),
            out_len(w, k, stride, pad, pad),
        );
        let g = geom(h, w, oh, ow, pad, pad);
        let input = guarded(&rng.vec(cin * h * w));
        let (weights, bias) = (rng.vec(cout * cin / groups * k * k), rng.vec(cout));
        let p = Conv2d {
            cin,
            cout,
            groups,
            kh: k,
            kw: k,
            stride_h: stride,
            stride_w: stride,
            weights: &weights,
            bias: &bias,
            relu: true,
        };
        compare(
            &format!("conv2d {cin}->{cout}/{groups} k{k} {h}x{w}"),
            &rng.vec(cout * oh * ow),
            |o| dispatch::conv2d(&p, &g, inner(&input), o, 1..cout),
            |o| scalar::conv2d::conv2d(&p, &g, inner(&input), o, 1..cout),
        );
    }
}

#[test]
fn classifier_and_elementwise_on_tiny_shapes() {
    let mut rng = Rng(0x5151_5151_7272_7272);
    let (channels, hw, stride, outputs) = (4, 5, 6, 3);
    let planes = Planes {
        channels,
        hw,
        stride,
    };
    let input = guarded(&rng.vec((channels - 1) * stride + hw));
    let (weights, bias) = (rng.vec(channels * outputs), rng.vec(outputs));
    let fc = Fc {
        inputs: channels,
        outputs,
        weights: &weights,
        bias: &bias,
    };
    let (mut pa, mut pb) = (vec![0.0; channels], vec![0.0; channels]);
    compare(
        "gap_fc",
        &rng.vec(outputs),
        |o| dispatch::gap_fc(&fc, &planes, inner(&input), &mut pa, o),
        |o| scalar::gap_fc::gap_fc(&fc, &planes, inner(&input), &mut pb, o),
    );
    compare(
        "global_avg_pool",
        &rng.vec(channels),
        |o| dispatch::global_avg_pool(&planes, inner(&input), o),
        |o| scalar::gap_fc::global_avg_pool(&planes, inner(&input), o),
    );
    let x = rng.vec(channels);
    compare(
        "fc",
        &rng.vec(outputs),
        |o| dispatch::fc(&fc, &x, o),
        |o| scalar::gap_fc::fc(&fc, &x, o),
    );
    // The element-wise kernels are the scalar code itself: check them by value.
    let mut out = vec![0.0; (channels - 1) * stride + hw];
    dispatch::permute(&planes, &[3, 0, 2, 1], inner(&input), &mut out).unwrap();
    assert_eq!(&out[..hw], &inner(&input)[3 * stride..3 * stride + hw]);
    dispatch::affine(
        &planes,
        &[2.0; 4],
        &[1.0; 4],
        false,
        inner(&input),
        &mut out,
    )
    .unwrap();
    assert_eq!(out[stride], inner(&input)[stride] * 2.0 + 1.0);
    let mut a = vec![1.0, -3.0, 2.0];
    dispatch::add_assign(&mut a, &[1.0, 1.0, -5.0], true).unwrap();
    assert_eq!(a, [2.0, 0.0, 0.0]);
    let mut s = vec![0.0, (2.0f32).ln()];
    dispatch::softmax_in_place(&mut s);
    assert!((s[0] - 1.0 / 3.0).abs() < 1e-6 && (s[1] - 2.0 / 3.0).abs() < 1e-6);
    // A short buffer is an error, not an out-of-bounds access.
    assert!(dispatch::global_avg_pool(&planes, &inner(&input)[1..], &mut out[..4]).is_err());
}

fn conv(cin: usize, cout: usize, groups: usize, k: usize, stride: usize, rng: &mut Rng) -> Op {
    Op::Conv(Conv {
        cin,
        cout,
        groups,
        kh: k,
        kw: k,
        stride: (stride, stride),
        pads: Pads::uniform(k / 2),
        weight: rng.vec(cout * cin / groups * k * k),
        bias: None,
    })
}

fn bn(c: usize, rng: &mut Rng) -> Op {
    Op::BatchNorm(BatchNorm {
        gamma: rng.vec(c).iter().map(|v| v + 1.5).collect(),
        beta: rng.vec(c),
        mean: rng.vec(c),
        var: rng.vec(c).iter().map(|v| v + 1.5).collect(),
        eps: 1e-5,
    })
}

fn pool(kind: PoolKind) -> Op {
    Op::Pool(PoolSpec {
        kind,
        kh: 3,
        kw: 3,
        stride: (2, 2),
        pads: Pads::uniform(1),
        ceil_mode: false,
    })
}

/// A miniature ShuffleNet (g = 3, NHWC input): stem, max pool, a stride-2 unit
/// (average-pool shortcut, zero-copy concat), a stride-1 unit (in-place residual),
/// global pool, classifier and softmax.
fn mini_shufflenet() -> Graph {
    let mut rng = Rng(0xfeed_f00d_1234_5678);
    let mut b = GraphBuilder::new(
        "mini",
        InputSpec {
            channels: 3,
            layout: Layout::Nhwc,
            default_size: Some((8, 8)),
            preprocess: None,
        },
    );
    let x = b.input();
    let x = b.push("conv1", conv(3, 6, 1, 3, 2, &mut rng), &[x], 6);
    let x = b.push("bn1", bn(6, &mut rng), &[x], 6);
    let x = b.push("relu1", Op::Relu, &[x], 6);
    let x = b.push("maxpool", pool(PoolKind::Max), &[x], 6);
    let y = b.push("a.g1", conv(6, 6, 3, 1, 1, &mut rng), &[x], 6);
    let y = b.push("a.bn1", bn(6, &mut rng), &[y], 6);
    let y = b.push("a.relu", Op::Relu, &[y], 6);
    let y = b.push("a.shuffle", Op::ChannelShuffle { groups: 3 }, &[y], 6);
    let y = b.push("a.dw", conv(6, 6, 6, 3, 2, &mut rng), &[y], 6);
    let y = b.push("a.bn2", bn(6, &mut rng), &[y], 6);
    let y = b.push("a.g2", conv(6, 6, 3, 1, 1, &mut rng), &[y], 6);
    let y = b.push("a.bn3", bn(6, &mut rng), &[y], 6);
    let avg = PoolKind::Avg {
        count_include_pad: true,
    };
    let s = b.push("a.avg", pool(avg), &[x], 6);
    let x = b.push("a.concat", Op::Concat, &[s, y], 12);
    let x = b.push("a.out", Op::Relu, &[x], 12);
    let y = b.push("b.g1", conv(12, 6, 3, 1, 1, &mut rng), &[x], 6);
    let y = b.push("b.bn1", bn(6, &mut rng), &[y], 6);
    let y = b.push("b.relu", Op::Relu, &[y], 6);
    let y = b.push("b.shuffle", Op::ChannelShuffle { groups: 3 }, &[y], 6);
    let y = b.push("b.dw", conv(6, 6, 6, 3, 1, &mut rng), &[y], 6);
    let y = b.push("b.bn2", bn(6, &mut rng), &[y], 6);
    let y = b.push("b.g2", conv(6, 12, 3, 1, 1, &mut rng), &[y], 12);
    let y = b.push("b.bn3", bn(12, &mut rng), &[y], 12);
    let x = b.push("b.add", Op::Add, &[x, y], 12);
    let x = b.push("b.out", Op::Relu, &[x], 12);
    let x = b.push("gap", Op::GlobalAvgPool, &[x], 12);
    let fc = FcOp {
        inputs: 12,
        outputs: 5,
        weight: rng.vec(60),
        bias: rng.vec(5),
    };
    let x = b.push("fc", Op::Fc(fc), &[x], 5);
    let x = b.push("softmax", Op::Softmax, &[x], 5);
    b.finish(x, "probs").unwrap()
}

#[test]
fn mini_network_through_planner_file_loader_and_session() {
    let graph = mini_shufflenet();
    let lowered = plan::lower(&graph).unwrap();
    let bytes = model_file::to_bytes(&lowered).unwrap();
    // From aligned and from unaligned bytes: the same model.
    let mut shifted = vec![0u8; bytes.len() + 3];
    shifted[3..].copy_from_slice(&bytes);
    let unaligned = Model::from_bytes(&shifted[3..]).unwrap();
    assert_eq!(
        model_file::to_bytes(&unaligned.to_lowered()).unwrap(),
        bytes
    );
    let model = Arc::new(Model::from_bytes(&bytes).unwrap());
    let mut rng = Rng(77);
    for (h, w) in [(8, 8), (5, 3), (1, 1)] {
        let mut s = Session::new(model.clone(), h, w, SessionOptions::default()).unwrap();
        let x = rng.vec(s.input_len());
        let mut y = vec![0.0; s.output_len()];
        s.run(&x, &mut y).unwrap();
        let want = reference::run(&graph, h, w, &x).unwrap().data;
        for (a, b) in y.iter().zip(&want) {
            assert!((a - b).abs() <= 1e-5, "{h}x{w}: {a} vs {b}");
        }
        assert!((y.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }
}

/// Two threads with one-row bands: the stem streams with its calls split, each
/// unit runs on both threads at once, each on its own output rows (the
/// pointwise kernel writing through `PlaneRows`, and in the stride-1 units also
/// reading its input rows through it; where `SPLIT_UNITS_BY_ROWS`, else on
/// whole tensors); the same bits as one thread.
/// (Under Miri with Tree Borrows: rayon's crossbeam-epoch breaks a Stacked
/// Borrows rule when its pool starts, see `tools/hostile.sh`.)
#[test]
fn mini_network_on_two_threads_by_rows() {
    let lowered = plan::lower(&mini_shufflenet()).unwrap();
    let model = Arc::new(Model::from_lowered(&lowered).unwrap());
    let mut rng = Rng(78);
    // At 24x20 the stride-2 unit has three output rows: two parts.
    let (h, w) = (24, 20);
    let x = rng.vec(3 * h * w);
    let run = |threads| {
        let opts = SessionOptions {
            threads,
            band_bytes: 1,
            pipeline_min_bytes: usize::MAX,
            split_in_place_min_bytes: 0,
            ..SessionOptions::default()
        };
        let mut s = Session::new(model.clone(), h, w, opts).unwrap();
        let mut y = vec![0.0; s.output_len()];
        s.run(&x, &mut y).unwrap();
        y.iter().map(|f| f.to_bits()).collect::<Vec<_>>()
    };
    assert_eq!(run(2), run(1));
}

#[test]
fn damaged_model_files_are_errors() {
    let bytes = model_file::to_bytes(&plan::lower(&mini_shufflenet()).unwrap()).unwrap();
    // Every proper prefix (stepping through the header and tables byte by byte, and
    // through the rest in strides, to keep Miri's run short).
    let cuts = (0..256.min(bytes.len())).chain((256..bytes.len()).step_by(61));
    for cut in cuts {
        assert!(Model::from_bytes(&bytes[..cut]).is_err(), "prefix of {cut}");
    }
    // Byte flips with the checksum fixed up, so they reach the decoder and the
    // validation: each load is an error or a model that runs.
    let mut rng = Rng(0xabad_1dea);
    let program = model_file::inspect(&bytes).unwrap().program;
    for _ in 0..64 {
        let mut b = bytes.clone();
        let at = if rng.below(2) == 0 {
            program.offset as usize + rng.below(program.length as usize)
        } else {
            format::HEADER_LEN + rng.below(bytes.len() - format::HEADER_LEN)
        };
        b[at] ^= 1 << rng.below(8);
        format::reseal(&mut b);
        if let Ok(m) = Model::from_bytes(&b) {
            if let Ok(mut s) = Session::new(Arc::new(m), 4, 4, SessionOptions::default()) {
                let x = vec![0.5; s.input_len()];
                let mut y = vec![0.0; s.output_len()];
                s.run(&x, &mut y).unwrap();
            }
        }
    }
}
