//! Cases the shared shape lists of `against_scalar.rs` do not reach, aimed at the
//! NEON kernels' internal paths (they run on every target, against the scalar
//! twins): pointwise K beyond one packed chunk (256 rows), partial panels, pixel
//! tails and unaligned spans into a larger output; random depthwise and pool
//! geometries with every pad of 0..=2 on each side, odd planes, slack strides and
//! channel sub-ranges; the row pipeline's short depthwise bands; stem
//! convolutions wider than one column chunk; NaN propagation in max pooling; FC
//! sizes off the vector widths. Buffers carry NaN guard zones as in
//! `against_scalar.rs`.

use kernels::{dispatch, scalar, *};

mod common;
use common::*;

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

#[test]
fn pointwise_long_k_partial_panels_and_offset_spans() {
    let mut rng = Rng(0x0123_4567_89ab_cdef);
    // (groups, k, m): K past one and two packed chunks, every panel remainder.
    let shapes = [
        (1, 257, 8),
        (3, 300, 20),
        (1, 520, 13),
        (2, 256, 9),
        (1, 640, 4),
        (3, 1, 5),
        (4, 3, 7),
        (1, 5, 6),
        (8, 2, 1),
        (2, 33, 15),
        (3, 40, 12),
    ];
    for (n, &(groups, k, m)) in shapes.iter().enumerate() {
        for &count in &[1usize, 3, 4, 5, 8, 11, 12, 13, 25, 49] {
            let in_stride = count + rng.below(7);
            let in_start = rng.below(in_stride - count + 1);
            let out_stride = count + rng.below(9);
            let out_start = rng.below(out_stride - count + 1);
            let cin = groups * k + rng.below(4);
            let in_rows: Vec<u32> = (0..groups * k).map(|_| rng.below(cin) as u32).collect();
            let packed = pack_pointwise(groups, m, k, &rng.vec(groups * m * k));
            let bias = rng.vec(groups * m);
            let input = Guarded::new(&rng.vec(cin * in_stride));
            let epilogue = Epilogue {
                accumulate: (n + count) % 2 == 0,
                relu: (n + count) % 3 != 0,
            };
            let p = Pointwise {
                floor: None,
                groups,
                k,
                m,
                weights: &packed,
                bias: &bias,
                in_rows: &in_rows,
                epilogue,
            };
            let total = p.panels();
            let lo = rng.below(total);
            let panels = lo..lo + 1 + rng.below(total - lo);
            let call = PointwiseCall {
                input: PixelSpan {
                    stride: in_stride,
                    start: in_start,
                },
                output: PixelSpan {
                    stride: out_stride,
                    start: out_start,
                },
                count,
                panels: panels.clone(),
            };
            let chans = p.channels_of(&panels);
            // A larger output buffer: the call writes at an offset inside it
            // (the slice handed over starts at the first written plane).
            let out0 = rng.vec((chans.len() - 1) * out_stride + out_start + count);
            let what = format!(
                "pointwise g={groups} k={k} m={m} px={count} panels={panels:?} {epilogue:?}"
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

/// A random plane geometry for a 3-wide window with stride `s`: pads 0..=2 on
/// each side (so outputs may extend past the padded input on the right and
/// bottom), slack strides.
fn random_geom(rng: &mut Rng, s: usize) -> Option<PlaneGeom> {
    let (h, w) = (1 + rng.below(40), 1 + rng.below(40));
    let (pt, pl, pb, pr) = (rng.below(3), rng.below(3), rng.below(3), rng.below(3));
    if h + pt + pb < 3 || w + pl + pr < 3 {
        return None;
    }
    let (oh, ow) = ((h + pt + pb - 3) / s + 1, (w + pl + pr - 3) / s + 1);
    Some(PlaneGeom {
        in_h: h,
        in_w: w,
        in_stride: h * w + rng.below(5),
        out_h: oh,
        out_w: ow,
        out_stride: oh * ow + rng.below(5),
        pad_top: pt,
        pad_left: pl,
    })
}

/// A depthwise bias: random, all zero (as the planner leaves it after moving it
/// into the next pointwise conv; the NEON kernels then start each output with an
/// `fmul`), or zero but for its last channel (which must keep the bias path).
fn bias_or_zero(rng: &mut Rng, channels: usize) -> Vec<f32> {
    match rng.below(3) {
        0 => vec![0.0; channels],
        1 => {
            let mut b = vec![0.0; channels];
            b[channels - 1] = 0.5;
            b
        }
        _ => rng.vec(channels),
    }
}

#[test]
fn dwconv3x3_random_geometries() {
    let mut rng = Rng(0x2468_ace0_1357_9bdf);
    let mut done = 0;
    while done < 400 {
        let stride = 1 + done % 2;
        let Some(g) = random_geom(&mut rng, stride) else {
            continue;
        };
        done += 1;
        let channels = 1 + rng.below(7);
        let input = Guarded::new(&rng.vec((channels - 1) * g.in_stride + g.in_h * g.in_w));
        let (weights, bias) = (rng.vec(channels * 9), bias_or_zero(&mut rng, channels));
        let p = Depthwise3x3 {
            stride,
            weights: &weights,
            bias: &bias,
            relu: rng.below(2) == 1,
        };
        let first = rng.below(channels);
        let range = first..channels;
        let out0 = rng.vec((range.len() - 1) * g.out_stride + g.out_h * g.out_w);
        let what = format!("dwconv3x3 s{stride} {g:?} ch {range:?} relu {}", p.relu);
        compare(
            &what,
            &out0,
            |o| dispatch::dwconv3x3(&p, &g, input.get(), o, range.clone()),
            |o| scalar::dwconv3x3::dwconv3x3(&p, &g, input.get(), o, range.clone()),
        );
    }
}

/// The row pipeline's depthwise bands: 1-6 output rows from the input rows
/// around them (no padding above, the input ending at the band's last row + 2, + 1
/// or before it), and the first band of a plane (padding above), at widths from 1
/// to 67 (up to eight pairs of body steps, which the stride-1 bands of 1-4 rows
/// run in their own asm loop), left padding 0-2 and both strides.
#[test]
fn dwconv3x3_band_shapes() {
    let mut rng = Rng(0x0bad_5eed_f00d_1234);
    for stride in [1, 2] {
        for oh in 1..=6 {
            for pt in [0, 1] {
                let full: usize = stride * (oh - 1) + 3 - pt;
                for in_h in [full, full - 1, full.saturating_sub(2).max(1)] {
                    for (w, pl) in [1, 2, 3, 4, 5, 8, 9, 13, 16, 17, 24, 33, 41, 67]
                        .into_iter()
                        .flat_map(|w| [(w, 1), (w, 0), (w, 2)])
                        .filter(|&(w, pl)| w + 2 * pl >= 3)
                    {
                        let ow = (w + 2 * pl - 3) / stride + 1;
                        let channels = 1 + rng.below(4);
                        let g = PlaneGeom {
                            in_h,
                            in_w: w,
                            in_stride: in_h * w + rng.below(3),
                            out_h: oh,
                            out_w: ow,
                            out_stride: oh * ow + rng.below(3),
                            pad_top: pt,
                            pad_left: pl,
                        };
                        let input = Guarded::new(&rng.vec((channels - 1) * g.in_stride + in_h * w));
                        let weights = rng.vec(channels * 9);
                        let bias = bias_or_zero(&mut rng, channels);
                        let p = Depthwise3x3 {
                            stride,
                            weights: &weights,
                            bias: &bias,
                            relu: rng.below(2) == 1,
                        };
                        let range = rng.below(channels)..channels;
                        let out0 = rng.vec((range.len() - 1) * g.out_stride + oh * ow);
                        let what = format!("dwconv3x3 band s{stride} {g:?} ch {range:?}");
                        compare(
                            &what,
                            &out0,
                            |o| dispatch::dwconv3x3(&p, &g, input.get(), o, range.clone()),
                            |o| scalar::dwconv3x3::dwconv3x3(&p, &g, input.get(), o, range.clone()),
                        );
                    }
                }
            }
        }
    }
}

/// A stride-1 band of 1-4 rows (the pipeline's call: the rows around it as its
/// input, no padding above) gives the same bits as the same rows of the whole
/// plane: the pipeline and the whole-tensor plans must not drift apart. Widths
/// with one to eight pairs of body steps, odd and even.
#[test]
fn dwconv3x3_s1_bands_match_the_whole_plane_bit_for_bit() {
    let mut rng = Rng(0x5eed_ba4d_0000_0001);
    let (h, channels) = (11, 3);
    for w in [9, 16, 17, 24, 41, 67] {
        let whole = PlaneGeom {
            in_h: h,
            in_w: w,
            in_stride: h * w,
            out_h: h,
            out_w: w,
            out_stride: h * w,
            pad_top: 1,
            pad_left: 1,
        };
        let input = rng.vec(channels * h * w);
        let weights = rng.vec(channels * 9);
        // Odd widths a zero bias (the `fmul` start), even ones a random bias.
        let bias = if w % 2 == 1 {
            vec![0.0; channels]
        } else {
            rng.vec(channels)
        };
        let p = Depthwise3x3 {
            stride: 1,
            weights: &weights,
            bias: &bias,
            relu: false,
        };
        let mut full = vec![0.0; channels * h * w];
        dispatch::dwconv3x3(&p, &whole, &input, &mut full, 0..channels).unwrap();
        for b in 1..=4 {
            for y0 in 1..h - b - 1 {
                // Input rows y0 - 1 .. y0 + b + 1 of every plane.
                let band = PlaneGeom {
                    in_h: b + 2,
                    out_h: b,
                    out_stride: b * w,
                    pad_top: 0,
                    ..whole
                };
                let at = (y0 - 1) * w;
                let mut out = vec![f32::NAN; channels * b * w];
                dispatch::dwconv3x3(&p, &band, &input[at..], &mut out, 0..channels).unwrap();
                for c in 0..channels {
                    let want = &full[c * h * w + y0 * w..][..b * w];
                    let got = &out[c * b * w..][..b * w];
                    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    assert_eq!(
                        bits(got),
                        bits(want),
                        "width {w} band {b} at row {y0} plane {c}"
                    );
                }
            }
        }
    }
}

/// Stride-2 bands of 1-6 output rows (the pipeline's call: the `2 B + 1` input
/// rows under them, no padding above; past 4 rows the kernel runs them in chunks)
/// give the same bits as the same rows of the
/// whole plane, for the depthwise convolution (zero and random bias, with and
/// without ReLU), max pooling (with NaNs, with and without the ReLU behind it) and
/// average pooling. Widths with one to eight pairs of body steps, odd and even,
/// and a tail step.
#[test]
fn stride2_bands_match_the_whole_plane_bit_for_bit() {
    let mut rng = Rng(0x5eed_ba4d_0000_0002);
    let (h, channels) = (17, 3);
    for w in [17, 18, 19, 24, 33, 47, 66] {
        let (oh, ow) = ((h - 1) / 2 + 1, (w - 1) / 2 + 1);
        let whole = PlaneGeom {
            in_h: h,
            in_w: w,
            in_stride: h * w,
            out_h: oh,
            out_w: ow,
            out_stride: oh * ow,
            pad_top: 1,
            pad_left: 1,
        };
        let mut input = rng.vec(channels * h * w);
        input[rng.below(channels * h * w)] = f32::NAN;
        let weights = rng.vec(channels * 9);
        let random_bias = rng.vec(channels);
        let zero_bias = vec![0.0; channels];
        // 0: max pool, 1: average pool, 2-5: depthwise, 6: max pool with the ReLU.
        for case in 0..7 {
            let dw = Depthwise3x3 {
                stride: 2,
                weights: &weights,
                bias: if case % 2 == 0 {
                    &zero_bias
                } else {
                    &random_bias
                },
                relu: case >= 4,
            };
            let pool = |kind| Pool {
                kind,
                kh: 3,
                kw: 3,
                stride_h: 2,
                stride_w: 2,
                pad_bottom: 1,
                pad_right: 1,
                relu: case == 6,
            };
            let run = |g: &PlaneGeom, x: &[f32], o: &mut [f32]| match case {
                0 | 6 => dispatch::pool(&pool(PoolKind::Max), g, x, o, 0..channels),
                1 => dispatch::pool(
                    &pool(PoolKind::Avg {
                        count_include_pad: true,
                    }),
                    g,
                    x,
                    o,
                    0..channels,
                ),
                _ => dispatch::dwconv3x3(&dw, g, x, o, 0..channels),
            };
            let mut full = vec![0.0; channels * oh * ow];
            run(&whole, &input, &mut full).unwrap();
            // Bands past 4 rows run as chunks of at most 4.
            for b in 1..=6 {
                for y0 in 1..oh - b {
                    // Input rows 2 y0 - 1 .. 2 (y0 + b) of every plane.
                    let band = PlaneGeom {
                        in_h: 2 * b + 1,
                        out_h: b,
                        out_stride: b * ow,
                        pad_top: 0,
                        ..whole
                    };
                    let at = (2 * y0 - 1) * w;
                    let mut out = vec![f32::NAN; channels * b * ow];
                    run(&band, &input[at..], &mut out).unwrap();
                    for c in 0..channels {
                        let want = &full[c * oh * ow + y0 * ow..][..b * ow];
                        let got = &out[c * b * ow..][..b * ow];
                        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                        assert_eq!(
                            bits(got),
                            bits(want),
                            "case {case} width {w} band {b} at row {y0} plane {c}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn pool3x3s2_random_geometries_and_nan() {
    let mut rng = Rng(0x1357_9bdf_2468_ace0);
    let kinds = [
        PoolKind::Max,
        PoolKind::Avg {
            count_include_pad: true,
        },
        PoolKind::Avg {
            count_include_pad: false,
        },
    ];
    let mut done = 0;
    while done < 300 {
        let Some(g) = random_geom(&mut rng, 2) else {
            continue;
        };
        let kind = kinds[done % 3];
        done += 1;
        let p = Pool {
            kind,
            kh: 3,
            kw: 3,
            stride_h: 2,
            stride_w: 2,
            pad_bottom: rng.below(3),
            pad_right: rng.below(3),
            relu: kind == PoolKind::Max && rng.below(2) == 0,
        };
        let channels = 1 + rng.below(5);
        let mut data = rng.vec((channels - 1) * g.in_stride + g.in_h * g.in_w);
        // Sprinkle NaNs (max must propagate them) and large negatives (padding
        // must never win a max).
        for _ in 0..rng.below(3) {
            let i = rng.below(data.len());
            data[i] = f32::NAN;
        }
        for v in data.iter_mut() {
            if rng.below(4) == 0 {
                *v -= 100.0;
            }
        }
        let input = Guarded::new(&data);
        let first = rng.below(channels);
        let range = first..channels;
        let out0 = rng.vec((range.len() - 1) * g.out_stride + g.out_h * g.out_w);
        let what = format!(
            "pool {kind:?} relu {} {g:?} pads_end {},{} ch {range:?}",
            p.relu, p.pad_bottom, p.pad_right
        );
        compare(
            &what,
            &out0,
            |o| dispatch::pool(&p, &g, input.get(), o, range.clone()),
            |o| scalar::pool::pool(&p, &g, input.get(), o, range.clone()),
        );
    }
}

/// Moving rows to the front of every plane equals `copy_within` plane by plane for
/// every overlap (`from` below, at and above `len`), lengths around the copy's
/// 32- and 16-float blocks and slack strides; ranges past the buffer are errors
/// and touch nothing.
#[test]
fn move_to_front_matches_copy_within() {
    for planes in [1, 3] {
        for from in [1, 2, 5, 16, 31, 32, 33, 70] {
            for len in [0, 1, 3, 4, 15, 16, 17, 31, 32, 33, 48, 65, 100] {
                let stride = from + len + planes;
                let orig: Vec<f32> = (0..planes * stride + 2).map(|i| i as f32).collect();
                let mut want = orig.clone();
                for p in 0..planes {
                    let at = p * stride;
                    want.copy_within(at + from..at + from + len, at);
                }
                let mut got = orig.clone();
                let what = format!("planes {planes} from {from} len {len}");
                dispatch::move_to_front(&mut got, planes, stride, from, len)
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
                assert_eq!(got, want, "{what}");
                let mut got = orig.clone();
                scalar::elementwise::move_to_front(&mut got, planes, stride, from, len).unwrap();
                assert_eq!(got, want, "scalar {what}");
            }
        }
    }
    let mut short = vec![0.0; 10];
    assert!(dispatch::move_to_front(&mut short, 1, 0, 4, 7).is_err());
    assert!(dispatch::move_to_front(&mut short, 2, 3, 4, 4).is_err());
    assert!(dispatch::move_to_front(&mut short, usize::MAX, usize::MAX, 1, 1).is_err());
    assert_eq!(short, vec![0.0; 10]);
    assert!(dispatch::move_to_front(&mut short, 2, 3, 3, 4).is_ok());
}

#[test]
fn stem_conv_wide_rows_and_pads() {
    let mut rng = Rng(0xfeed_face_dead_beef);
    // (cout, in_h, in_w, pad): widths past one 256-column output chunk, then
    // narrow rows.
    let cases = [
        (24, 9, 600, 1),
        (12, 5, 515, 0),
        (48, 7, 33, 2),
        (16, 3, 3, 1),
        (20, 4, 520, 2),
        (8, 11, 17, 0),
    ];
    // Every width from 1 to 64 at each pad: the in-place tiles' first and last
    // columns at every offset from the row's ends.
    let narrow = (1..=64).flat_map(|w| [(12, 5 + w % 3, w, 1), (24, 3 + w % 4, w, w % 3)]);
    let cases: Vec<_> = cases.into_iter().chain(narrow).collect();
    for &(cout, h, w, pad) in &cases {
        let (oh, ow) = ((h + 2 * pad - 3) / 2 + 1, (w + 2 * pad - 3) / 2 + 1);
        let g = PlaneGeom {
            in_h: h,
            in_w: w,
            in_stride: h * w + 3,
            out_h: oh,
            out_w: ow,
            out_stride: oh * ow + 1,
            pad_top: pad,
            pad_left: pad,
        };
        let input = Guarded::new(&rng.vec(2 * g.in_stride + h * w));
        let (weights, bias) = (rng.vec(cout * 27), rng.vec(cout));
        let p = Conv2d::dense_3x3(3, cout, 2, &weights, &bias, cout % 3 == 0);
        let lo = rng.below(cout);
        for range in [0..cout, lo..cout] {
            let out0 = rng.vec((range.len() - 1) * g.out_stride + oh * ow);
            let what = format!("stem 3->{cout} p{pad} {h}x{w} {range:?}");
            compare(
                &what,
                &out0,
                |o| dispatch::conv2d(&p, &g, input.get(), o, range.clone()),
                |o| scalar::conv2d::conv2d(&p, &g, input.get(), o, range.clone()),
            );
        }
    }
}

#[test]
fn fc_and_gap_odd_sizes() {
    let mut rng = Rng(0x7777_1111_3333_5555);
    for (inputs, outputs) in [
        (1, 1),
        (15, 9),
        (17, 8),
        (33, 7),
        (64, 16),
        (100, 23),
        (5, 1000),
    ] {
        let x = Guarded::new(&rng.vec(inputs));
        let (weights, bias) = (rng.vec(inputs * outputs), rng.vec(outputs));
        let p = Fc {
            inputs,
            outputs,
            weights: &weights,
            bias: &bias,
        };
        compare(
            &format!("fc {inputs} -> {outputs}"),
            &rng.vec(outputs),
            |o| dispatch::fc(&p, x.get(), o),
            |o| scalar::gap_fc::fc(&p, x.get(), o),
        );
    }
    for (channels, hw) in [(1, 1), (3, 2), (5, 3), (7, 5), (9, 8), (13, 9), (6, 31)] {
        let planes = Planes {
            channels,
            hw,
            stride: hw + 1,
        };
        let input = Guarded::new(&rng.vec((channels - 1) * (hw + 1) + hw));
        compare(
            &format!("global_avg_pool {channels}x{hw}"),
            &rng.vec(channels),
            |o| dispatch::global_avg_pool(&planes, input.get(), o),
            |o| scalar::gap_fc::global_avg_pool(&planes, input.get(), o),
        );
    }
}
