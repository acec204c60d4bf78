//! NaN and infinite inputs: they propagate as IEEE 754 arithmetic says, never crash
//! or hang. A NaN reaches exactly the outputs whose receptive field contains it:
//! convolutions, pools (max pooling included), ReLU (NaN stays NaN), global pooling
//! and the classifier all propagate it. An infinity becomes NaN where it meets a
//! weight of the opposite sign or zero (`inf - inf`, `inf * 0`).

use kernels::{dispatch, scalar, Planes, PoolKind};
use shufflenet::graph::{Conv, Graph, GraphBuilder, InputSpec, Layout, Op, Pads, PoolSpec};
use shufflenet::model::Model;
use shufflenet::session::{Session, SessionOptions};
use shufflenet::{family, plan, reference};
use std::sync::{Arc, OnceLock};

fn session(graph: &Graph, h: usize, w: usize) -> Session {
    let model = Arc::new(Model::from_lowered(&plan::lower(graph).unwrap()).unwrap());
    Session::new(model, h, w, SessionOptions::default()).unwrap()
}

fn run(s: &mut Session, x: &[f32]) -> Vec<f32> {
    let mut y = vec![0.0; s.output_len()];
    s.run(x, &mut y).unwrap();
    y
}

/// ShuffleNet 0.25x (g = 3).
fn net() -> &'static Graph {
    static NET: OnceLock<Graph> = OnceLock::new();
    NET.get_or_init(|| family::build(3, 0.25, 3).unwrap())
}

fn ramp(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0)
        .collect()
}

#[test]
fn relu_propagates_nan_in_every_kernel() {
    let x = [
        f32::NAN,
        -1.0,
        -0.0,
        0.0,
        2.5,
        f32::INFINITY,
        f32::NEG_INFINITY,
    ];
    let want = [f32::NAN, 0.0, 0.0, 0.0, 2.5, f32::INFINITY, 0.0];
    let same = |got: &[f32], what: &str| {
        for (g, w) in got.iter().zip(&want) {
            // Bit for bit: NaN stays NaN, and -0.0 becomes +0.0.
            assert!(
                g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()),
                "{what}: {got:?}"
            );
        }
    };
    same(&x.map(scalar::relu), "scalar::relu");
    let mut v = x;
    dispatch::relu_in_place(&mut v);
    same(&v, "relu_in_place");
    let mut v = x;
    dispatch::add_assign(&mut v, &[0.0; 7], true).unwrap();
    same(&v, "add_assign");
    let mut out = [9.0; 7];
    dispatch::add(&x, &[0.0; 7], &mut out, true).unwrap();
    same(&out, "add");
    let planes = Planes {
        channels: 1,
        hw: 7,
        stride: 7,
    };
    dispatch::affine(&planes, &[1.0], &[0.0], true, &x, &mut out).unwrap();
    same(&out, "affine");
}

/// One channel 9x9 -> conv 3x3 (pad 1, two output channels, ReLU) -> max pool 3x3
/// stride 2 (pad 1) -> 2x5x5.
fn window_graph() -> Graph {
    let mut b = GraphBuilder::new(
        "windows",
        InputSpec {
            channels: 1,
            layout: Layout::Nchw,
            default_size: None,
            preprocess: None,
        },
    );
    let x = b.input();
    let conv = Conv {
        cin: 1,
        cout: 2,
        groups: 1,
        kh: 3,
        kw: 3,
        stride: (1, 1),
        pads: Pads::uniform(1),
        weight: (0..18).map(|i| i as f32 / 9.0 - 1.0).collect(),
        bias: Some(vec![0.5, -0.5]),
    };
    let x = b.push("conv", Op::Conv(conv), &[x], 2);
    let x = b.push("relu", Op::Relu, &[x], 2);
    let pool = PoolSpec {
        kind: PoolKind::Max,
        kh: 3,
        kw: 3,
        stride: (2, 2),
        pads: Pads::uniform(1),
        ceil_mode: false,
    };
    let x = b.push("maxpool", Op::Pool(pool), &[x], 2);
    b.finish(x, "y").unwrap()
}

#[test]
fn a_nan_pixel_reaches_exactly_its_receptive_field() {
    let g = window_graph();
    let mut s = session(&g, 9, 9);
    let mut x = ramp(81);
    x[4 * 9 + 4] = f32::NAN; // row 4, column 4
    let y = run(&mut s, &x);
    // The conv spreads it over rows and columns 3..=5 (ReLU keeps it); the pool
    // window of output row r covers input rows 2r-1..=2r+1, which meet 3..=5 for
    // r in 1..=3.
    for c in 0..2 {
        for r in 0..5 {
            for col in 0..5 {
                let v = y[c * 25 + r * 5 + col];
                let reached = (1..=3).contains(&r) && (1..=3).contains(&col);
                assert_eq!(v.is_nan(), reached, "channel {c} ({r}, {col}) = {v}");
            }
        }
    }
    // The reference executor agrees: NaN for NaN, and to rounding elsewhere.
    let want = reference::run(&g, 9, 9, &x).unwrap().data;
    for (a, b) in y.iter().zip(&want) {
        assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()) || (a.is_nan() && b.is_nan()));
    }
}

#[test]
fn a_nan_pixel_reaches_every_logit() {
    let mut s = session(net(), 32, 32);
    let mut x = ramp(3 * 32 * 32);
    let clean = run(&mut s, &x);
    assert!(clean.iter().all(|v| v.is_finite()));
    x[32 * 32 + 17 * 32 + 5] = f32::NAN; // one green pixel
    let y = run(&mut s, &x);
    assert!(
        y.iter().all(|v| v.is_nan()),
        "global pooling mixes every pixel"
    );
    let want = reference::run(net(), 32, 32, &x).unwrap().data;
    assert!(want.iter().all(|v| v.is_nan()));
    // The session recovers: the arena holds no NaN into the next run.
    x[32 * 32 + 17 * 32 + 5] = 0.5;
    let again = run(&mut s, &x);
    assert!(again.iter().all(|v| v.is_finite()));
}

#[test]
fn infinite_pixels_give_non_finite_logits_without_crashing() {
    let mut s = session(net(), 24, 40);
    for bad in [f32::INFINITY, f32::NEG_INFINITY, f32::MAX, -f32::MAX] {
        let mut x = ramp(3 * 24 * 40);
        x[500] = bad;
        let y = run(&mut s, &x);
        let want = reference::run(net(), 24, 40, &x).unwrap().data;
        // `f32::MAX` times a weight above one overflows to infinity; then
        // infinities of both signs meet and give NaN.
        assert!(y.iter().all(|v| !v.is_finite()), "{bad}: {:?}", &y[..4]);
        assert!(want.iter().all(|v| !v.is_finite()), "{bad}");
    }
}

#[test]
fn all_nan_and_tiny_inputs_run() {
    let mut s = session(net(), 16, 16);
    let y = run(&mut s, &[f32::NAN; 3 * 16 * 16]);
    assert!(y.iter().all(|v| v.is_nan()));
    // Subnormal inputs are just small numbers: the logits are those of a zero
    // input, to rounding.
    let zero = run(&mut s, &[0.0; 3 * 16 * 16]);
    let tiny = run(&mut s, &[f32::MIN_POSITIVE / 8.0; 3 * 16 * 16]);
    for (a, b) in zero.iter().zip(&tiny) {
        assert!((a - b).abs() <= 1e-6 * (1.0 + a.abs()), "{a} vs {b}");
    }
}

#[test]
fn softmax_of_an_infinite_logit_is_nan() {
    // IEEE arithmetic, not the mathematical limit: the largest logit is +inf, and
    // inf - inf is NaN, so every probability is NaN. A NaN logit also makes every
    // probability NaN; -inf logits are probability 0.
    let mut x = [1.0, f32::INFINITY, 0.5];
    dispatch::softmax_in_place(&mut x);
    assert!(x.iter().all(|v| v.is_nan()));
    let mut x = [1.0, f32::NAN, 0.5];
    dispatch::softmax_in_place(&mut x);
    assert!(x.iter().all(|v| v.is_nan()));
    let mut x = [0.0, f32::NEG_INFINITY, 0.0];
    dispatch::softmax_in_place(&mut x);
    assert_eq!(x, [0.5, 0.0, 0.5]);
}
