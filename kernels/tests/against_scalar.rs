//! Every dispatched kernel (NEON on aarch64, the portable pulp path elsewhere)
//! against its scalar twin, on seeded random shapes: odd sizes, 1x1, 1xN and Nx1
//! planes, every group count of the family, both strides, every epilogue. Buffers
//! carry NaN guard zones: a write outside the output changes a guard, a read outside
//! the input pulls a NaN into the result.

use kernels::{dispatch, scalar, *};

mod common;
use common::*;

/// Runs `fast` and `slow` on identical guarded copies of `out0` and compares.
fn compare(
    what: &str,
    out0: &[f32],
    fast: impl FnOnce(&mut [f32]) -> Result<(), KernelError>,
    slow: impl FnOnce(&mut [f32]) -> Result<(), KernelError>,
) {
    let mut a = Guarded::new(out0);
    let mut b = out0.to_vec();
    fast(a.get_mut()).unwrap_or_else(|e| panic!("{what}: {e}"));
    slow(&mut b).unwrap_or_else(|e| panic!("{what}: {e}"));
    a.assert_guards(what);
    assert_close(a.get(), &b, what);
}

/// The channel shuffle permutation for `c = groups * n` channels.
fn shuffle_table(c: usize, groups: usize) -> Vec<u32> {
    let n = c / groups;
    (0..c)
        .map(|i| ((i % groups) * n + i / groups) as u32)
        .collect()
}

#[test]
fn pointwise_matches_scalar() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    // (groups, k, m): the family's stage shapes at several scales, then odd ones.
    let mut shapes = vec![
        (1, 24, 60),
        (3, 20, 80),
        (3, 20, 72),
        (3, 40, 160),
        (3, 80, 320),
        (8, 6, 48),
        (8, 12, 48),
        (4, 17, 68),
        (2, 25, 100),
        (1, 36, 144),
        (3, 10, 14),
        (1, 12, 6),
        (2, 9, 30),
    ];
    for _ in 0..40 {
        shapes.push((
            rng.pick(&[1, 2, 3, 4, 8]),
            1 + rng.below(70),
            1 + rng.below(40),
        ));
    }
    for (i, &(groups, k, m)) in shapes.iter().enumerate() {
        let pixels = rng.pick(&[
            1, 2, 3, 4, 5, 7, 8, 9, 12, 13, 16, 17, 21, 24, 28, 49, 196, 300, 785,
        ]);
        let extra = rng.below(5);
        let stride = pixels + extra;
        let cin = groups * k + rng.below(3);
        let in_rows: Vec<u32> = if i % 2 == 0 && cin == groups * k {
            shuffle_table(cin, groups)
        } else {
            (0..groups * k).map(|_| rng.below(cin) as u32).collect()
        };
        let w = rng.vec(groups * m * k);
        let packed = pack_pointwise(groups, m, k, &w);
        // None, every other panel's, half at random or all of the biases zero: an
        // in-place residual whose panel has a zero bias starts from the output on
        // NEON.
        let zero_bias = rng.below(4);
        let mut bias = rng.vec(groups * m);
        for (c, b) in bias.iter_mut().enumerate() {
            let zero = match zero_bias {
                1 => ((c % m) / MR).is_multiple_of(2),
                2 => rng.below(2) == 0,
                3 => true,
                _ => false,
            };
            if zero {
                *b = 0.0;
            }
        }
        let input = Guarded::new(&rng.vec(cin * stride));
        let epilogue = Epilogue {
            accumulate: rng.below(2) == 1,
            relu: rng.below(2) == 1,
        };
        let floor_v = rng.vec(groups * m);
        let floor = (epilogue.relu && rng.below(3) != 0).then_some(&floor_v[..]);
        let p = Pointwise {
            floor,
            groups,
            k,
            m,
            weights: &packed,
            bias: &bias,
            in_rows: &in_rows,
            epilogue,
        };
        // The whole range and a sub-range of panels and pixels.
        let total = p.panels();
        let lo = rng.below(total);
        let hi = lo + 1 + rng.below(total - lo);
        let start = rng.below(extra + 1);
        for (panels, first, count) in [
            (0..total, 0, pixels),
            (lo..hi, start, stride - start - rng.below(stride - start)),
        ] {
            let call = PointwiseCall {
                input: PixelSpan {
                    stride,
                    start: first,
                },
                output: PixelSpan {
                    stride,
                    start: first,
                },
                count,
                panels: panels.clone(),
            };
            let chans = p.channels_of(&panels);
            let out0 = rng.vec((chans.len() - 1) * stride + first + count);
            let what = format!(
                "pointwise g={groups} k={k} m={m} px={count} panels={panels:?} {epilogue:?} \
                 zero bias {zero_bias}/3 floor {}",
                floor.is_some()
            );
            compare(
                &what,
                &out0,
                |o| dispatch::pointwise(&p, input.get(), o, &call),
                |o| scalar::pointwise::pointwise(&p, input.get(), o, &call),
            );
        }
    }
}

/// Threads writing different rows of the same output planes through
/// [`PlaneRows`] (two to four parts, cut at random rows) give the scalar twin's
/// result over all rows; runs outside a part's rows, and a stride other than the
/// planes', are refused.
#[test]
fn pointwise_rows_in_threads_match_scalar() {
    let mut rng = Rng(0x5eed_0f7a_110f_f5e5);
    for case in 0..60 {
        let (groups, k, m) = (
            rng.pick(&[1, 2, 3, 4, 8]),
            1 + rng.below(40),
            1 + rng.below(30),
        );
        let (h, w) = (1 + rng.below(13), 1 + rng.below(37));
        let stride = h * w + rng.below(3);
        let cin = groups * k;
        let in_rows = shuffle_table(cin, groups);
        let weights = pack_pointwise(groups, m, k, &rng.vec(groups * m * k));
        let bias = rng.vec(groups * m);
        let epilogue = Epilogue {
            accumulate: rng.below(2) == 1,
            relu: rng.below(2) == 1,
        };
        let p = Pointwise {
            floor: None,
            groups,
            k,
            m,
            weights: &weights,
            bias: &bias,
            in_rows: &in_rows,
            epilogue,
        };
        let input = rng.vec(cin * stride);
        let out0 = rng.vec(groups * m * stride);
        let call = |r0: usize, r1: usize| PointwiseCall {
            input: PixelSpan {
                stride,
                start: r0 * w,
            },
            output: PixelSpan {
                stride,
                start: r0 * w,
            },
            count: (r1 - r0) * w,
            panels: 0..p.panels(),
        };
        let mut want = out0.clone();
        scalar::pointwise::pointwise(&p, &input, &mut want, &call(0, h)).unwrap();
        let parts = 2 + rng.below(3);
        let mut cuts: Vec<usize> = (0..parts - 1).map(|_| rng.below(h + 1)).collect();
        cuts.sort_unstable();
        let mut got = out0.clone();
        let mut rest = PlaneRows::new(&mut got, stride).unwrap();
        let mut pieces = Vec::new();
        let mut r0 = 0;
        for &cut in &cuts {
            let (a, b) = rest.split_at(cut * w).unwrap();
            pieces.push((r0, cut, a));
            (rest, r0) = (b, cut);
        }
        pieces.push((r0, h, rest));
        let what = format!("case {case}: g={groups} k={k} m={m} {h}x{w} cuts {cuts:?}");
        std::thread::scope(|s| {
            for (r0, r1, mut part) in pieces {
                let (p, input, what) = (&p, &input, &what);
                s.spawn(move || {
                    dispatch::pointwise_rows(p, input, &mut part, &call(r0, r1))
                        .unwrap_or_else(|e| panic!("{what}: {e}"));
                    if r1 < h || r0 > 0 {
                        let over = if r1 < h {
                            call(r0, r1 + 1)
                        } else {
                            call(r0 - 1, r1)
                        };
                        assert!(dispatch::pointwise_rows(p, input, &mut part, &over).is_err());
                    }
                    let mut skew = call(r0, r1);
                    skew.output.stride += 1;
                    if skew.count > 0 {
                        assert!(dispatch::pointwise_rows(p, input, &mut part, &skew).is_err());
                    }
                });
            }
        });
        assert_close(&got, &want, &what);
    }
}

/// Threads that each read their rows of the same planes through
/// [`PlaneRows`] (`pointwise_from_rows`, into a buffer of their own) and then
/// write a residual over those rows (`pointwise_rows`, accumulating), as a unit
/// split by rows that writes over its input does, give the scalar twin's result
/// over all rows; reads outside a part's rows, and a stride other than the
/// planes', are refused.
#[test]
fn pointwise_reading_then_writing_rows_in_threads_matches_scalar() {
    let mut rng = Rng(0x0dd_ba11_5eed_0001);
    for case in 0..60 {
        let (groups, k, m) = (
            rng.pick(&[1, 2, 3, 4, 8]),
            1 + rng.below(24),
            1 + rng.below(20),
        );
        let (h, w) = (1 + rng.below(13), 1 + rng.below(37));
        let stride = h * w + rng.below(3);
        let (cin, mid) = (groups * k, groups * m);
        let in_rows = shuffle_table(cin, groups);
        let (wa, ba) = (
            pack_pointwise(groups, m, k, &rng.vec(mid * k)),
            rng.vec(mid),
        );
        let (wb, bb) = (
            pack_pointwise(1, cin, mid, &rng.vec(cin * mid)),
            rng.vec(cin),
        );
        let ident: Vec<u32> = (0..mid as u32).collect();
        let relu = Epilogue {
            accumulate: false,
            relu: true,
        };
        let a = Pointwise {
            floor: None,
            groups,
            k,
            m,
            weights: &wa,
            bias: &ba,
            in_rows: &in_rows,
            epilogue: relu,
        };
        let b = Pointwise {
            floor: None,
            groups: 1,
            k: mid,
            m: cin,
            weights: &wb,
            bias: &bb,
            in_rows: &ident,
            epilogue: Epilogue {
                accumulate: true,
                relu: rng.below(2) == 1,
            },
        };
        // Rows r0..r1 of the planes, and the same pixels of a buffer of r rows.
        let planes = |r0: usize, r1: usize, panels| PointwiseCall {
            input: PixelSpan {
                stride,
                start: r0 * w,
            },
            output: PixelSpan {
                stride: (r1 - r0).max(1) * w,
                start: 0,
            },
            count: (r1 - r0) * w,
            panels,
        };
        let back = |r0: usize, r1: usize| {
            let c = planes(r0, r1, 0..b.panels());
            PointwiseCall {
                input: c.output,
                output: c.input,
                ..c
            }
        };
        let x = rng.vec(cin * stride);
        let mut want = x.clone();
        let mut t = vec![0.0; mid * h * w];
        scalar::pointwise::pointwise(&a, &x, &mut t, &planes(0, h, 0..a.panels())).unwrap();
        scalar::pointwise::pointwise(&b, &t, &mut want, &back(0, h)).unwrap();
        let cut = rng.below(h + 1);
        let mut got = x.clone();
        let (top, bottom) = PlaneRows::new(&mut got, stride)
            .unwrap()
            .split_at(cut * w)
            .unwrap();
        let what = format!("case {case}: g={groups} k={k} m={m} {h}x{w} cut {cut}");
        std::thread::scope(|s| {
            for (r0, r1, mut part) in [(0, cut, top), (cut, h, bottom)] {
                let (a, b, what) = (&a, &b, &what);
                s.spawn(move || {
                    let mut t = vec![0.0; mid * (r1 - r0).max(1) * w];
                    let read = planes(r0, r1, 0..a.panels());
                    dispatch::pointwise_from_rows(a, &part, &mut t, &read)
                        .unwrap_or_else(|e| panic!("{what}: {e}"));
                    if r1 < h || r0 > 0 {
                        let over = if r1 < h {
                            planes(r0, r1 + 1, 0..a.panels())
                        } else {
                            planes(r0 - 1, r1, 0..a.panels())
                        };
                        let mut t = vec![0.0; mid * (r1 - r0 + 1) * w];
                        assert!(dispatch::pointwise_from_rows(a, &part, &mut t, &over).is_err());
                    }
                    let mut skew = read.clone();
                    skew.input.stride += 1;
                    if skew.count > 0 {
                        assert!(dispatch::pointwise_from_rows(a, &part, &mut t, &skew).is_err());
                    }
                    dispatch::pointwise_rows(b, &t, &mut part, &back(r0, r1))
                        .unwrap_or_else(|e| panic!("{what}: {e}"));
                });
            }
        });
        assert_close(&got, &want, &what);
    }
}

/// A call split into pieces of pixels gives the bits of the whole call, with
/// K rows read in place (shuffle table) and packed (a random table), K past
/// the kernels' K blocks (NEON: 256) and every epilogue: a unit band by band,
/// split by rows or on whole tensors gets the same result.
#[test]
fn pointwise_pixel_pieces_give_the_whole_calls_bits() {
    let mut rng = Rng(0x91ec_e5b1_75aa_3e01);
    // Every K with and without the residual, K rows in order (read in place),
    // shuffled and at random.
    let ks = [3, 40, 255, 256, 257, 288, 600];
    for case in 0..ks.len() * 12 {
        let (k, accumulate, table) = (ks[case % 7], case / 7 % 2 == 1, case / 14 % 3);
        let groups = rng.pick(&[1, 2, 3]);
        let m = 1 + rng.below(20);
        let n = 1 + rng.below(200);
        let cin = groups * k;
        let in_rows: Vec<u32> = match table {
            0 => (0..cin as u32).collect(),
            1 => shuffle_table(cin, groups),
            _ => (0..cin).map(|_| rng.below(cin) as u32).collect(),
        };
        let weights = pack_pointwise(groups, m, k, &rng.vec(groups * m * k));
        let (bias, floor) = (rng.vec(groups * m), rng.vec(groups * m));
        let relu = rng.below(2) == 1;
        let p = Pointwise {
            floor: (relu && rng.below(2) == 1).then_some(&floor[..]),
            groups,
            k,
            m,
            weights: &weights,
            bias: &bias,
            in_rows: &in_rows,
            epilogue: Epilogue { accumulate, relu },
        };
        let input = rng.vec(cin * n);
        let out0 = rng.vec(groups * m * n);
        let call = |a: usize, b: usize| PointwiseCall::same_span(n, a, b - a, 0..p.panels());
        let mut whole = out0.clone();
        dispatch::pointwise(&p, &input, &mut whole, &call(0, n)).unwrap();
        // Each piece's input ends at its last pixel (as a band buffer does):
        // its tail cannot read whole vectors in place.
        let last_row = *in_rows.iter().max().unwrap() as usize;
        let mut pieces = out0.clone();
        let mut a = 0;
        while a < n {
            let b = (a + 1 + rng.below(30)).min(n);
            let input = &input[..last_row * n + b];
            dispatch::pointwise(&p, input, &mut pieces, &call(a, b)).unwrap();
            a = b;
        }
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        assert!(
            bits(&whole) == bits(&pieces),
            "case {case}: g={groups} k={k} m={m} n={n} {:?}",
            p.epilogue
        );
    }
}

/// Every epilogue (bias or a zero bias with the residual, ReLU, floors) on whole
/// 12-pixel tiles of every panel height (2, 4, 6, 8 rows), K rows read in place
/// (shuffle table) and packed (a random table), K both even and odd: NEON runs
/// ShuffleNet's hot epilogues there with programs of their own.
#[test]
fn pointwise_epilogues_on_whole_tiles() {
    let mut rng = Rng(0x5eed_0ff1_0d00);
    for (groups, k, m) in [(3, 10, 40), (3, 20, 14), (1, 7, 2), (2, 9, 4), (3, 4, 6)] {
        for accumulate in [false, true] {
            for relu in [false, true] {
                for (floored, zero_bias) in [(false, false), (true, true), (true, false)] {
                    if floored && !relu {
                        continue;
                    }
                    for (in_place, pixels) in [(true, 36), (false, 49), (true, 196)] {
                        let cin = groups * k;
                        let in_rows: Vec<u32> = if in_place {
                            shuffle_table(cin, groups)
                        } else {
                            (0..cin).map(|_| rng.below(cin) as u32).collect()
                        };
                        let w = rng.vec(groups * m * k);
                        let packed = pack_pointwise(groups, m, k, &w);
                        let bias = if zero_bias {
                            vec![0.0; groups * m]
                        } else {
                            rng.vec(groups * m)
                        };
                        let floor_v = rng.vec(groups * m);
                        let input = Guarded::new(&rng.vec(cin * pixels));
                        let epilogue = Epilogue { accumulate, relu };
                        let p = Pointwise {
                            floor: floored.then_some(&floor_v[..]),
                            groups,
                            k,
                            m,
                            weights: &packed,
                            bias: &bias,
                            in_rows: &in_rows,
                            epilogue,
                        };
                        let span = PixelSpan {
                            stride: pixels,
                            start: 0,
                        };
                        let call = PointwiseCall {
                            input: span,
                            output: span,
                            count: pixels,
                            panels: 0..p.panels(),
                        };
                        let out0 = rng.vec(groups * m * pixels);
                        let what = format!(
                            "pointwise g={groups} k={k} m={m} px={pixels} {epilogue:?} floor \
                             {floored} zero bias {zero_bias} in place {in_place}"
                        );
                        compare(
                            &what,
                            &out0,
                            |o| dispatch::pointwise(&p, input.get(), o, &call),
                            |o| scalar::pointwise::pointwise(&p, input.get(), o, &call),
                        );
                    }
                }
            }
        }
    }
}

/// Output extent of a 3-wide window.
fn out_len(len: usize, stride: usize, pad_begin: usize, pad_end: usize) -> usize {
    (len + pad_begin + pad_end - 3) / stride + 1
}

/// Plane sizes that cover 1x1, 1xN, Nx1, odd and stage-like planes.
const SIZES: [(usize, usize); 14] = [
    (1, 1),
    (1, 9),
    (9, 1),
    (2, 2),
    (3, 5),
    (7, 7),
    (5, 13),
    (14, 14),
    (13, 17),
    (28, 28),
    (17, 33),
    (56, 56),
    (4, 37),
    (31, 6),
];

#[test]
fn dwconv3x3_matches_scalar() {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    for &(h, w) in &SIZES {
        for stride in [1, 2] {
            for (pt, pl, pb, pr) in [
                (1, 1, 1, 1),
                (0, 0, 1, 1),
                (1, 1, 0, 0),
                (0, 0, 0, 0),
                (2, 2, 2, 2),
                (0, 1, 1, 0),
            ] {
                if h + pt + pb < 3 || w + pl + pr < 3 {
                    continue;
                }
                let (oh, ow) = (out_len(h, stride, pt, pb), out_len(w, stride, pl, pr));
                let channels = 1 + rng.below(6);
                let (in_stride, out_stride) = (h * w + rng.below(3), oh * ow + rng.below(3));
                let geom = PlaneGeom {
                    in_h: h,
                    in_w: w,
                    in_stride,
                    out_h: oh,
                    out_w: ow,
                    out_stride,
                    pad_top: pt,
                    pad_left: pl,
                };
                let input = Guarded::new(&rng.vec((channels - 1) * in_stride + h * w));
                let (weights, bias) = (rng.vec(channels * 9), rng.vec(channels));
                let relu = rng.below(2) == 1;
                let p = Depthwise3x3 {
                    stride,
                    weights: &weights,
                    bias: &bias,
                    relu,
                };
                let first = rng.below(channels);
                let range = first..channels;
                let out0 = rng.vec((range.len() - 1) * out_stride + oh * ow);
                let what =
                    format!("dwconv3x3 {h}x{w} s{stride} pads {pt},{pl},{pb},{pr} ch {range:?}");
                compare(
                    &what,
                    &out0,
                    |o| dispatch::dwconv3x3(&p, &geom, input.get(), o, range.clone()),
                    |o| scalar::dwconv3x3::dwconv3x3(&p, &geom, input.get(), o, range.clone()),
                );
            }
        }
    }
}

#[test]
fn conv2d_matches_scalar() {
    let mut rng = Rng(0xdead_beef_cafe_f00d);
    // (cin, cout, groups, k, stride, pad): the stem at every conv1 width, then others.
    let cases = [
        (3, 24, 1, 3, 2, 1),
        (3, 12, 1, 3, 2, 1),
        (3, 16, 1, 3, 2, 1),
        (3, 48, 1, 3, 2, 1),
        (3, 6, 1, 3, 2, 1),
        (3, 24, 1, 3, 1, 1),
        (4, 6, 2, 3, 1, 0),
        (6, 6, 3, 5, 2, 2),
        (5, 7, 1, 1, 1, 0),
        (2, 3, 1, 2, 2, 1),
    ];
    for &(cin, cout, groups, k, stride, pad) in &cases {
        for &(h, w) in &SIZES {
            if h + 2 * pad < k || w + 2 * pad < k {
                continue;
            }
            let (oh, ow) = (
                (h + 2 * pad - k) / stride + 1,
                (w + 2 * pad - k) / stride + 1,
            );
            let geom = PlaneGeom {
                in_h: h,
                in_w: w,
                in_stride: h * w,
                out_h: oh,
                out_w: ow,
                out_stride: oh * ow,
                pad_top: pad,
                pad_left: pad,
            };
            let input = Guarded::new(&rng.vec(cin * h * w));
            let weights = rng.vec(cout * cin / groups * k * k);
            let bias = rng.vec(cout);
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
                relu: rng.below(2) == 1,
            };
            let lo = rng.below(cout);
            for range in [0..cout, lo..cout] {
                let out0 = rng.vec(range.len() * oh * ow);
                let what = format!(
                    "conv2d {cin}->{cout}/{groups} k{k} s{stride} p{pad} {h}x{w} {range:?}"
                );
                compare(
                    &what,
                    &out0,
                    |o| dispatch::conv2d(&p, &geom, input.get(), o, range.clone()),
                    |o| scalar::conv2d::conv2d(&p, &geom, input.get(), o, range.clone()),
                );
            }
        }
    }
}

#[test]
fn pool_matches_scalar() {
    let mut rng = Rng(0x0bad_cafe_1234_5678);
    // (kind, ReLU behind the pool): only a max pool takes the ReLU.
    let kinds = [
        (PoolKind::Max, false),
        (PoolKind::Max, true),
        (
            PoolKind::Avg {
                count_include_pad: true,
            },
            false,
        ),
        (
            PoolKind::Avg {
                count_include_pad: false,
            },
            false,
        ),
    ];
    for &(h, w) in &SIZES {
        for (kind, relu) in kinds {
            for (k, stride, pt, pl, pb, pr) in [
                (3, 2, 1, 1, 1, 1),
                (3, 2, 0, 0, 1, 1),
                (3, 2, 0, 0, 0, 0),
                (3, 1, 1, 1, 1, 1),
                (2, 2, 0, 0, 0, 0),
                (3, 2, 1, 1, 2, 2),
            ] {
                if h + pt + pb < k || w + pl + pr < k {
                    continue;
                }
                let (oh, ow) = (
                    (h + pt + pb - k) / stride + 1,
                    (w + pl + pr - k) / stride + 1,
                );
                let channels = 1 + rng.below(5);
                // Gaps between planes: a write past a plane's last output changes
                // a gap, which the scalar twin leaves alone.
                let (in_stride, out_stride) = (h * w + rng.below(3), oh * ow + rng.below(3));
                let geom = PlaneGeom {
                    in_h: h,
                    in_w: w,
                    in_stride,
                    out_h: oh,
                    out_w: ow,
                    out_stride,
                    pad_top: pt,
                    pad_left: pl,
                };
                let p = Pool {
                    kind,
                    kh: k,
                    kw: k,
                    stride_h: stride,
                    stride_w: stride,
                    pad_bottom: pb,
                    pad_right: pr,
                    relu,
                };
                let input = Guarded::new(&rng.vec((channels - 1) * in_stride + h * w));
                let out0 = rng.vec((channels - 1) * out_stride + oh * ow);
                let what = format!(
                    "pool {kind:?} relu {relu} k{k} s{stride} pads {pt},{pl},{pb},{pr} {h}x{w}"
                );
                compare(
                    &what,
                    &out0,
                    |o| dispatch::pool(&p, &geom, input.get(), o, 0..channels),
                    |o| scalar::pool::pool(&p, &geom, input.get(), o, 0..channels),
                );
            }
        }
    }
}

#[test]
fn gap_fc_matches_scalar() {
    let mut rng = Rng(0x5151_5151_7272_7272);
    for (channels, hw, outputs) in [
        (1, 1, 1),
        (7, 49, 10),
        (60, 50, 1000),
        (960, 49, 1000),
        (13, 3, 5),
        (240, 1, 17),
    ] {
        let stride = hw + rng.below(3);
        let planes = Planes {
            channels,
            hw,
            stride,
        };
        let input = Guarded::new(&rng.vec((channels - 1) * stride + hw));
        let (weights, bias) = (rng.vec(channels * outputs), rng.vec(outputs));
        let fc = Fc {
            inputs: channels,
            outputs,
            weights: &weights,
            bias: &bias,
        };
        let mut pooled_a = vec![0.0; channels];
        let mut pooled_b = vec![0.0; channels];
        let what = format!("gap_fc {channels}x{hw} -> {outputs}");
        compare(
            &what,
            &rng.vec(outputs),
            |o| dispatch::gap_fc(&fc, &planes, input.get(), &mut pooled_a, o),
            |o| scalar::gap_fc::gap_fc(&fc, &planes, input.get(), &mut pooled_b, o),
        );
        compare(
            &format!("global_avg_pool {channels}x{hw}"),
            &rng.vec(channels),
            |o| dispatch::global_avg_pool(&planes, input.get(), o),
            |o| scalar::gap_fc::global_avg_pool(&planes, input.get(), o),
        );
    }
}

#[test]
fn kernels_refuse_short_buffers() {
    let w = pack_pointwise(1, 8, 4, &[0.5; 32]);
    let bias = [0.0; 8];
    let rows = [0u32, 1, 2, 3];
    let p = Pointwise {
        floor: None,
        groups: 1,
        k: 4,
        m: 8,
        weights: &w,
        bias: &bias,
        in_rows: &rows,
        epilogue: Epilogue::default(),
    };
    let call = PointwiseCall {
        input: PixelSpan {
            stride: 10,
            start: 0,
        },
        output: PixelSpan {
            stride: 10,
            start: 0,
        },
        count: 10,
        panels: 0..1,
    };
    let mut out = vec![0.0; 80];
    assert!(dispatch::pointwise(&p, &[0.0; 39], &mut out, &call).is_err());
    assert!(dispatch::pointwise(&p, &[0.0; 40], &mut out[..79], &call).is_err());
    assert!(dispatch::pointwise(&p, &[0.0; 40], &mut out, &call).is_ok());
    // A floor needs the ReLU epilogue and one float per output channel.
    let floor = [0.5; 8];
    let relu = Epilogue {
        relu: true,
        ..Epilogue::default()
    };
    for (floor, epilogue, ok) in [
        (&floor[..], Epilogue::default(), false),
        (&floor[..7], relu, false),
        (&floor[..], relu, true),
    ] {
        let q = Pointwise {
            floor: Some(floor),
            epilogue,
            ..p
        };
        let r = dispatch::pointwise(&q, &[0.0; 40], &mut out, &call);
        assert_eq!(r.is_ok(), ok, "{epilogue:?} {} floors", floor.len());
    }
    assert!(out.iter().all(|&v| v == 0.5));
    let geom = PlaneGeom {
        in_h: 4,
        in_w: 4,
        in_stride: 16,
        out_h: 4,
        out_w: 4,
        out_stride: 16,
        pad_top: 1,
        pad_left: 1,
    };
    let dw = Depthwise3x3 {
        stride: 1,
        weights: &[0.0; 18],
        bias: &[0.0; 2],
        relu: false,
    };
    assert!(dispatch::dwconv3x3(&dw, &geom, &[0.0; 31], &mut [0.0; 32], 0..2).is_err());
    assert!(dispatch::dwconv3x3(&dw, &geom, &[0.0; 32], &mut [0.0; 31], 0..2).is_err());
    assert!(dispatch::dwconv3x3(&dw, &geom, &[0.0; 32], &mut [0.0; 32], 0..3).is_err());
}
