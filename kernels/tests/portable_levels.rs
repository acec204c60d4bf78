//! The portable kernels at every instruction-set level this CPU has (pulp's scalar
//! fallback included, not only the best level), against the scalar twins on the
//! shape sets of `against_scalar.rs`, plus targeted cases: every pixel tail and row
//! count of the pointwise tile, planes narrower than a vector, NaN in max pooling.
//! Buffers carry NaN guard zones as in `against_scalar.rs`.

use kernels::portable::{self, Level};
use kernels::{scalar, *};

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

/// Geometry of a `k` x `k` window with stride `stride` over `h` x `w` planes,
/// padding `(top, left, bottom, right)`, input and output planes `extra` floats
/// apart beyond their size (the caller has checked that the window fits).
fn window_geom(
    k: usize,
    stride: usize,
    (h, w): (usize, usize),
    (pt, pl, pb, pr): (usize, usize, usize, usize),
    extra: (usize, usize),
) -> PlaneGeom {
    let (oh, ow) = (
        (h + pt + pb - k) / stride + 1,
        (w + pl + pr - k) / stride + 1,
    );
    PlaneGeom {
        in_h: h,
        in_w: w,
        in_stride: h * w + extra.0,
        out_h: oh,
        out_w: ow,
        out_stride: oh * ow + extra.1,
        pad_top: pt,
        pad_left: pl,
    }
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

fn levels() -> Vec<Level> {
    let all = Level::available();
    assert!(all.iter().any(|l| l.name() == "scalar"));
    assert_eq!(all[0].name(), portable::isa());
    all
}

#[test]
fn isa_reports_a_known_level() {
    assert!(["avx512", "avx2+fma", "scalar"].contains(&portable::isa()));
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        assert!(Level::avx2_fma().is_some());
        assert_ne!(portable::isa(), "scalar");
    }
    assert_eq!(Level::scalar().name(), "scalar");
}

#[test]
fn short_rows_take_avx2_on_an_avx512_cpu() {
    let best = Level::best().name();
    // Rows of 64 floats or more, and whole 16-lane vectors: the best level.
    for width in [64, 65, 160, 4096, 16, 48] {
        assert_eq!(Level::for_rows(width).name(), best, "width {width}");
    }
    // Shorter rows with a partial 16-lane vector: AVX2 where the CPU has both.
    let short = if Level::avx512().is_some() {
        Level::avx2_fma().map_or(best, |l| l.name())
    } else {
        best
    };
    for width in [1, 7, 14, 28, 40, 63] {
        assert_eq!(Level::for_rows(width).name(), short, "width {width}");
    }
}

#[allow(clippy::too_many_arguments)]
fn check_pointwise(
    level: Level,
    rng: &mut Rng,
    groups: usize,
    k: usize,
    m: usize,
    in_rows: &[u32],
    cin: usize,
    stride: usize,
    calls: &[(std::ops::Range<usize>, usize, usize)],
    epilogue: Epilogue,
) {
    let w = rng.vec(groups * m * k);
    let packed = pack_pointwise(groups, m, k, &w);
    let bias = rng.vec(groups * m);
    let input = Guarded::new(&rng.vec(cin * stride));
    // Every other ReLU call clamps at per-channel floors.
    let floor_v = rng.vec(groups * m);
    let floor = (epilogue.relu && rng.below(2) == 0).then_some(&floor_v[..]);
    let p = Pointwise {
        floor,
        groups,
        k,
        m,
        weights: &packed,
        bias: &bias,
        in_rows,
        epilogue,
    };
    for (panels, first, count) in calls {
        let call = PointwiseCall {
            input: PixelSpan {
                stride,
                start: *first,
            },
            output: PixelSpan {
                stride,
                start: *first,
            },
            count: *count,
            panels: panels.clone(),
        };
        let chans = p.channels_of(panels);
        let out0 = rng.vec((chans.len() - 1) * stride + first + count);
        let what = format!(
            "{} pointwise g={groups} k={k} m={m} px={count} panels={panels:?} {epilogue:?} \
             floor {}",
            level.name(),
            floor.is_some()
        );
        compare(
            &what,
            &out0,
            |o| portable::pointwise_at(level, &p, input.get(), o, &call),
            |o| scalar::pointwise::pointwise(&p, input.get(), o, &call),
        );
    }
}

#[test]
fn pointwise_every_level() {
    for level in levels() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
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
        ];
        for _ in 0..40 {
            shapes.push((
                rng.pick(&[1, 2, 3, 4, 8]),
                1 + rng.below(70),
                1 + rng.below(40),
            ));
        }
        for (i, &(groups, k, m)) in shapes.iter().enumerate() {
            let pixels = rng.pick(&[1, 2, 3, 4, 5, 7, 8, 9, 12, 13, 16, 17, 24, 49, 196, 785]);
            let extra = rng.below(5);
            let stride = pixels + extra;
            let cin = groups * k + rng.below(3);
            let in_rows: Vec<u32> = if i % 2 == 0 && cin == groups * k {
                shuffle_table(cin, groups)
            } else {
                (0..groups * k).map(|_| rng.below(cin) as u32).collect()
            };
            let epilogue = Epilogue {
                accumulate: rng.below(2) == 1,
                relu: rng.below(2) == 1,
            };
            let total = groups * m.div_ceil(MR);
            let lo = rng.below(total);
            let hi = lo + 1 + rng.below(total - lo);
            let start = rng.below(extra + 1);
            let sub = stride - start - rng.below(stride - start);
            let calls = [(0..total, 0, pixels), (lo..hi, start, sub)];
            check_pointwise(
                level, &mut rng, groups, k, m, &in_rows, cin, stride, &calls, epilogue,
            );
        }
    }
}

/// ReLU keeps NaN at every level (x86 computes it as one `max` with zero first):
/// a NaN input pixel makes that pixel NaN in every output channel of a pointwise
/// conv, and the 3x3 windows that read it NaN in a depthwise conv, as in the
/// scalar twins.
#[test]
fn relu_keeps_nan_every_level() {
    let relu = Epilogue {
        accumulate: false,
        relu: true,
    };
    for level in levels() {
        let mut rng = Rng(0x0bad_f00d_dead_10cc);
        let (k, m, px) = (8, 20, 100);
        let w = rng.vec(m * k);
        let packed = pack_pointwise(1, m, k, &w);
        let bias = rng.vec(m);
        let mut x = rng.vec(k * px);
        x[3 * px + 7] = f32::NAN;
        x[5 * px + 60] = f32::NAN;
        let in_rows: Vec<u32> = (0..k as u32).collect();
        let p = Pointwise {
            floor: None,
            groups: 1,
            k,
            m,
            weights: &packed,
            bias: &bias,
            in_rows: &in_rows,
            epilogue: relu,
        };
        let call = PointwiseCall::same_span(px, 0, px, 0..m.div_ceil(MR));
        let mut out = vec![0.0; m * px];
        portable::pointwise_at(level, &p, &x, &mut out, &call).unwrap();
        for c in 0..m {
            for pixel in [7, 60] {
                assert!(
                    out[c * px + pixel].is_nan(),
                    "{} pointwise channel {c}",
                    level.name()
                );
            }
        }
        compare(
            &format!("{} pointwise relu NaN", level.name()),
            &vec![0.0; m * px],
            |o| portable::pointwise_at(level, &p, &x, o, &call),
            |o| scalar::pointwise::pointwise(&p, &x, o, &call),
        );
        let (h, wd) = (9, 40);
        let geom = window_geom(3, 1, (h, wd), (1, 1, 1, 1), (0, 0));
        let (weights, bias) = (rng.vec(2 * 9), rng.vec(2));
        let mut img = rng.vec(2 * h * wd);
        img[h * wd + 4 * wd + 20] = f32::NAN;
        let dw = Depthwise3x3 {
            stride: 1,
            weights: &weights,
            bias: &bias,
            relu: true,
        };
        let mut out = vec![0.0; 2 * h * wd];
        portable::dwconv3x3_at(level, &dw, &geom, &img, &mut out, 0..2).unwrap();
        assert!(
            out[h * wd + 4 * wd + 20].is_nan(),
            "{} dwconv3x3",
            level.name()
        );
        compare(
            &format!("{} dwconv3x3 relu NaN", level.name()),
            &vec![0.0; 2 * h * wd],
            |o| portable::dwconv3x3_at(level, &dw, &geom, &img, o, 0..2),
            |o| scalar::dwconv3x3::dwconv3x3(&dw, &geom, &img, o, 0..2),
        );
    }
}

/// Long sums split into parts (partial sums through the output, the epilogue
/// after the last part), with every epilogue, whole blocks and tails.
#[test]
fn pointwise_long_k_in_parts() {
    for level in levels() {
        let mut rng = Rng(0x5151_7eaf_00d1_2345);
        for (groups, k, m) in [
            (1usize, 193usize, 20usize),
            (3, 320, 13),
            (2, 385, 8),
            (1, 640, 7),
        ] {
            for (acc, relu) in [(false, false), (true, false), (false, true), (true, true)] {
                let pixels = rng.pick(&[16, 49, 100]);
                let stride = pixels + rng.below(3);
                let cin = groups * k;
                let in_rows = shuffle_table(cin, groups);
                let total = groups * m.div_ceil(MR);
                let calls = [(0..total, 0, pixels)];
                let epilogue = Epilogue {
                    accumulate: acc,
                    relu,
                };
                check_pointwise(
                    level, &mut rng, groups, k, m, &in_rows, cin, stride, &calls, epilogue,
                );
            }
        }
    }
}

/// Every pixel count up to three AVX-512 tiles plus a tail, every row count of a
/// panel pair, every epilogue: all the tile and tail combinations.
#[test]
fn pointwise_tiles_and_tails() {
    for level in levels() {
        let mut rng = Rng(0x0123_4567_89ab_cdef);
        for m in 1..=17usize {
            for count in (1..=50).chain([95, 96, 97]) {
                let (groups, k) = (2, 1 + rng.below(9));
                let stride = count + rng.below(3);
                let in_rows = shuffle_table(groups * k, groups);
                let total = groups * m.div_ceil(MR);
                let epilogue = Epilogue {
                    accumulate: count % 2 == 0,
                    relu: count % 3 == 0,
                };
                let calls = [(0..total, 0, count), (1..total, stride - count, count)];
                let calls = if total > 1 { &calls[..] } else { &calls[..1] };
                check_pointwise(
                    level,
                    &mut rng,
                    groups,
                    k,
                    m,
                    &in_rows,
                    groups * k,
                    stride,
                    calls,
                    epilogue,
                );
            }
        }
    }
}

#[test]
fn dwconv3x3_every_level() {
    for level in levels() {
        let mut rng = Rng(0x1234_5678_9abc_def1);
        let mut sizes = SIZES.to_vec();
        // Widths around the vector lengths (8, 16), and planes large enough to be
        // cut into several bands of rows (stride 1 and 2).
        sizes.extend([(2, 8), (3, 16), (4, 17), (5, 15), (6, 33), (1, 40), (2, 7)]);
        // Rows just inside and just past two and four AVX-512 vectors (the
        // register-row path of small planes: index tables, split stride-2 rows).
        sizes.extend([(5, 31), (3, 32), (6, 30), (3, 63), (4, 64), (2, 65)]);
        sizes.extend([(150, 97), (97, 150), (333, 41)]);
        for &(h, w) in &sizes {
            for stride in [1, 2] {
                for (pt, pl, pb, pr) in [
                    (1, 1, 1, 1),
                    (0, 0, 1, 1),
                    (1, 1, 0, 0),
                    (0, 0, 0, 0),
                    (2, 2, 2, 2),
                    (0, 1, 1, 0),
                    (2, 1, 0, 3),
                    // One padding column each side and 0 or 2 rows on top (the row
                    // bands of a streamed unit).
                    (0, 1, 2, 1),
                    (2, 1, 0, 1),
                    (0, 1, 0, 1),
                ] {
                    if h + pt + pb < 3 || w + pl + pr < 3 {
                        continue;
                    }
                    let channels = 1 + rng.below(6);
                    let extra = (rng.below(3), rng.below(3));
                    let geom = window_geom(3, stride, (h, w), (pt, pl, pb, pr), extra);
                    let (oh, ow, in_stride, out_stride) =
                        (geom.out_h, geom.out_w, geom.in_stride, geom.out_stride);
                    let input = Guarded::new(&rng.vec((channels - 1) * in_stride + h * w));
                    let (weights, bias) = (rng.vec(channels * 9), rng.vec(channels));
                    let p = Depthwise3x3 {
                        stride,
                        weights: &weights,
                        bias: &bias,
                        relu: rng.below(2) == 1,
                    };
                    let first = rng.below(channels);
                    let range = first..channels;
                    let out0 = rng.vec((range.len() - 1) * out_stride + oh * ow);
                    let what = format!(
                        "{} dwconv3x3 {h}x{w} s{stride} pads {pt},{pl},{pb},{pr} ch {range:?}",
                        level.name()
                    );
                    compare(
                        &what,
                        &out0,
                        |o| portable::dwconv3x3_at(level, &p, &geom, input.get(), o, range.clone()),
                        |o| scalar::dwconv3x3::dwconv3x3(&p, &geom, input.get(), o, range.clone()),
                    );
                }
            }
        }
    }
}

#[test]
fn conv2d_every_level() {
    for level in levels() {
        let mut rng = Rng(0xdead_beef_cafe_f00d);
        let cases = [
            (3, 24, 1, 3, 2, 1),
            (3, 12, 1, 3, 2, 1),
            (3, 16, 1, 3, 2, 1),
            (3, 48, 1, 3, 2, 1),
            (3, 6, 1, 3, 2, 1),
            (3, 24, 1, 3, 2, 0),
            (3, 24, 1, 3, 2, 2),
            (3, 24, 1, 3, 1, 1),
            (5, 9, 1, 3, 1, 0),
            (4, 6, 2, 3, 1, 0),
            (6, 6, 3, 5, 2, 2),
            (5, 7, 1, 1, 1, 0),
            (2, 3, 1, 2, 2, 1),
        ];
        for &(cin, cout, groups, k, stride, pad) in &cases {
            for &(h, w) in SIZES.iter().chain(&[(9, 40), (5, 47), (5, 203), (3, 390)]) {
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
                        "{} conv2d {cin}->{cout}/{groups} k{k} s{stride} p{pad} {h}x{w} {range:?}",
                        level.name()
                    );
                    compare(
                        &what,
                        &out0,
                        |o| portable::conv2d_at(level, &p, &geom, input.get(), o, range.clone()),
                        |o| scalar::conv2d::conv2d(&p, &geom, input.get(), o, range.clone()),
                    );
                }
            }
        }
    }
}

/// A large-image stem case: output channels, stride, input size, padding, and
/// the gaps after each input and output plane.
type Case = (
    usize,
    usize,
    (usize, usize),
    (usize, usize, usize, usize),
    (usize, usize),
);

/// Stems over images of 1 MiB and more, which prefetch the next output row's
/// input while the row's GEMM runs in chunks: same results as the scalar twin for
/// both strides, odd sizes, output widths that end in a partial vector, a narrow
/// row (193 columns), no top padding (as the streamed stem's bands after the
/// first), other paddings, plane strides with gaps, and a part of the output
/// channels; and without the prefetch (as on Intel CPUs) the same bits.
#[test]
fn conv2d_large_images_every_level() {
    let mut rng = Rng(0x005e_ed1a_76e1_a6e5);
    // (cout, stride, (h, w), (top, left, bottom, right) padding, plane stride gaps)
    let cases: [Case; 9] = [
        (12, 2, (245, 403), (1, 1, 1, 1), (0, 0)),
        (24, 2, (300, 301), (1, 1, 1, 1), (0, 0)),
        (6, 1, (230, 397), (1, 1, 1, 1), (0, 0)),
        (12, 2, (453, 193), (1, 1, 1, 1), (0, 0)),
        (12, 2, (453, 194), (1, 1, 1, 1), (3, 0)),
        (12, 2, (400, 290), (0, 1, 1, 1), (0, 0)),
        (24, 2, (400, 292), (1, 1, 0, 0), (0, 0)),
        (48, 2, (301, 389), (1, 1, 1, 1), (5, 7)),
        (12, 2, (260, 420), (1, 0, 1, 1), (0, 0)),
    ];
    for level in levels() {
        for &(cout, stride, (h, w), pads, extra) in &cases {
            assert!(
                3 * h * w * 4 >= 1 << 20,
                "the image must take the prefetching path"
            );
            let geom = window_geom(3, stride, (h, w), pads, extra);
            let input = Guarded::new(&rng.vec(3 * geom.in_stride));
            let (weights, bias) = (rng.vec(cout * 27), rng.vec(cout));
            let p = Conv2d::dense_3x3(3, cout, stride, &weights, &bias, true);
            let lo = cout / 3;
            let what = format!(
                "{} conv2d 3->{cout} s{stride} {h}x{w} pads {pads:?} extra {extra:?}",
                level.name()
            );
            for range in [0..cout, lo..cout] {
                let out0 = rng.vec(range.len() * geom.out_stride);
                compare(
                    &format!("{what} {range:?}"),
                    &out0,
                    |o| {
                        portable::conv2d_with(level, true, &p, &geom, input.get(), o, range.clone())
                    },
                    |o| scalar::conv2d::conv2d(&p, &geom, input.get(), o, range.clone()),
                );
            }
            // Without the prefetch (the row's GEMM in one chunk): the same bits.
            let out: [Vec<f32>; 2] = [true, false].map(|prefetch| {
                let mut o = vec![0.0; cout * geom.out_stride];
                portable::conv2d_with(level, prefetch, &p, &geom, input.get(), &mut o, 0..cout)
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
                o
            });
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(
                bits(&out[0]),
                bits(&out[1]),
                "{what}: prefetch changed the bits"
            );
        }
    }
}

const KINDS: [PoolKind; 3] = [
    PoolKind::Max,
    PoolKind::Avg {
        count_include_pad: true,
    },
    PoolKind::Avg {
        count_include_pad: false,
    },
];

#[test]
fn pool_every_level() {
    for level in levels() {
        let mut rng = Rng(0x0bad_cafe_1234_5678);
        for &(h, w) in SIZES
            .iter()
            .chain(&[(3, 16), (5, 17), (4, 33), (150, 97), (333, 41)])
            .chain(&[(5, 31), (3, 32), (6, 30), (3, 63), (4, 64), (2, 65)])
            .chain(&[(7, 112), (4, 95)])
        {
            for kind in KINDS {
                for (k, stride, pt, pl, pb, pr) in [
                    (3, 2, 1, 1, 1, 1),
                    (3, 2, 0, 0, 1, 1),
                    (3, 2, 0, 0, 0, 0),
                    (3, 1, 1, 1, 1, 1),
                    (2, 2, 0, 0, 0, 0),
                    (3, 2, 1, 1, 2, 2),
                    (3, 2, 2, 2, 0, 3),
                    (3, 1, 2, 0, 2, 1),
                    (3, 2, 0, 1, 1, 0),
                    (3, 2, 2, 1, 0, 2),
                ] {
                    if h + pt + pb < k || w + pl + pr < k {
                        continue;
                    }
                    let channels = 1 + rng.below(5);
                    let extra = (rng.below(3), rng.below(3));
                    let geom = window_geom(k, stride, (h, w), (pt, pl, pb, pr), extra);
                    let (oh, ow, in_stride, out_stride) =
                        (geom.out_h, geom.out_w, geom.in_stride, geom.out_stride);
                    let p = Pool {
                        kind,
                        kh: k,
                        kw: k,
                        stride_h: stride,
                        stride_w: stride,
                        pad_bottom: pb,
                        pad_right: pr,
                        relu: false,
                    };
                    let input = Guarded::new(&rng.vec((channels - 1) * in_stride + h * w));
                    let first = rng.below(channels);
                    let range = first..channels;
                    let out0 = rng.vec((range.len() - 1) * out_stride + oh * ow);
                    let what = format!(
                        "{} pool {kind:?} k{k} s{stride} pads {pt},{pl},{pb},{pr} {h}x{w}",
                        level.name()
                    );
                    compare(
                        &what,
                        &out0,
                        |o| portable::pool_at(level, &p, &geom, input.get(), o, range.clone()),
                        |o| scalar::pool::pool(&p, &geom, input.get(), o, range.clone()),
                    );
                }
            }
        }
    }
}

/// Max pool propagates a NaN to exactly the windows that hold it, and an infinity
/// stays an infinity, at every level, as the scalar twin does. The 70-wide rows put
/// non-finite values in each part of the row check (four-vector blocks, the scalar
/// tail).
#[test]
fn max_pool_propagates_nan() {
    // (row, column, value) put into the input.
    type Special = (usize, usize, f32);
    // The last two are taller than the stride-2 path's blocks of 16 rows checked
    // at once: values at a block's first and last rows, in a later block, in the
    // last row, with clean blocks between.
    let cases: [(usize, usize, [Special; 3]); 4] = [
        (
            13,
            21,
            [
                (5, 9, f32::NAN),
                (10, 20, f32::INFINITY),
                (0, 0, f32::NEG_INFINITY),
            ],
        ),
        (
            9,
            70,
            [(2, 40, f32::NAN), (6, 67, f32::INFINITY), (4, 3, f32::NAN)],
        ),
        (
            37,
            19,
            [
                (15, 4, f32::NAN),
                (16, 10, f32::INFINITY),
                (36, 18, f32::NAN),
            ],
        ),
        (
            70,
            33,
            [
                (3, 0, f32::NAN),
                (47, 32, f32::NEG_INFINITY),
                (64, 17, f32::NAN),
            ],
        ),
    ];
    for level in levels() {
        for (stride, &(h, w, specials)) in [1, 2]
            .into_iter()
            .flat_map(|s| cases.iter().map(move |c| (s, c)))
        {
            let (oh, ow) = ((h + 2 - 3) / stride + 1, (w + 2 - 3) / stride + 1);
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
                kind: PoolKind::Max,
                kh: 3,
                kw: 3,
                stride_h: stride,
                stride_w: stride,
                pad_bottom: 1,
                pad_right: 1,
                relu: false,
            };
            let mut input: Vec<f32> = (0..h * w).map(|i| (i % 17) as f32 - 8.0).collect();
            for (y, x, v) in specials {
                input[y * w + x] = v;
            }
            let mut got = vec![0.0; oh * ow];
            let mut want = vec![0.0; oh * ow];
            portable::pool_at(level, &p, &geom, &input, &mut got, 0..1).unwrap();
            scalar::pool::pool(&p, &geom, &input, &mut want, 0..1).unwrap();
            let nans = want.iter().filter(|v| v.is_nan()).count();
            assert!(nans > 0);
            for (i, (g, v)) in got.iter().zip(&want).enumerate() {
                assert!(
                    g.to_bits() == v.to_bits() || (g.is_nan() && v.is_nan()) || g == v,
                    "{} s{stride} {h}x{w} element {i}: got {g}, want {v}",
                    level.name()
                );
            }
        }
    }
}

#[test]
fn gap_fc_every_level() {
    for level in levels() {
        let mut rng = Rng(0x5151_5151_7272_7272);
        for (channels, hw, outputs) in [
            (1, 1, 1),
            (7, 49, 10),
            (60, 50, 1000),
            (960, 49, 1000),
            (13, 3, 5),
            (240, 1, 17),
            (5, 33, 7),
            (3, 65, 6),
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
            let name = level.name();
            compare(
                &format!("{name} gap_fc {channels}x{hw} -> {outputs}"),
                &rng.vec(outputs),
                |o| portable::gap_fc_at(level, &fc, &planes, input.get(), &mut pooled_a, o),
                |o| scalar::gap_fc::gap_fc(&fc, &planes, input.get(), &mut pooled_b, o),
            );
            compare(
                &format!("{name} global_avg_pool {channels}x{hw}"),
                &rng.vec(channels),
                |o| portable::global_avg_pool_at(level, &planes, input.get(), o),
                |o| scalar::gap_fc::global_avg_pool(&planes, input.get(), o),
            );
            let x = Guarded::new(&rng.vec(channels));
            compare(
                &format!("{name} fc {channels} -> {outputs}"),
                &rng.vec(outputs),
                |o| portable::fc_at(level, &fc, x.get(), o),
                |o| scalar::gap_fc::fc(&fc, x.get(), o),
            );
        }
    }
}

#[test]
fn every_level_refuses_short_buffers() {
    for level in levels() {
        let w = pack_pointwise(1, 8, 4, &[0.5; 32]);
        let p = Pointwise {
            floor: None,
            groups: 1,
            k: 4,
            m: 8,
            weights: &w,
            bias: &[0.0; 8],
            in_rows: &[0, 1, 2, 3],
            epilogue: Epilogue::default(),
        };
        let call = PointwiseCall::same_span(10, 0, 10, 0..1);
        let mut out = vec![0.0; 80];
        assert!(portable::pointwise_at(level, &p, &[0.0; 39], &mut out, &call).is_err());
        assert!(portable::pointwise_at(level, &p, &[0.0; 40], &mut out[..79], &call).is_err());
        let geom = PlaneGeom {
            in_h: 4,
            in_w: 4,
            in_stride: 16,
            out_h: 2,
            out_w: 2,
            out_stride: 4,
            pad_top: 1,
            pad_left: 1,
        };
        let dw = Depthwise3x3 {
            stride: 2,
            weights: &[0.0; 18],
            bias: &[0.0; 2],
            relu: false,
        };
        assert!(
            portable::dwconv3x3_at(level, &dw, &geom, &[0.0; 31], &mut [0.0; 8], 0..2).is_err()
        );
        assert!(
            portable::dwconv3x3_at(level, &dw, &geom, &[0.0; 32], &mut [0.0; 7], 0..2).is_err()
        );
        let pool = Pool {
            kind: PoolKind::Max,
            kh: 3,
            kw: 3,
            stride_h: 2,
            stride_w: 2,
            pad_bottom: 1,
            pad_right: 1,
            relu: false,
        };
        assert!(portable::pool_at(level, &pool, &geom, &[0.0; 31], &mut [0.0; 8], 0..2).is_err());
        let conv = Conv2d::dense_3x3(2, 2, 2, &[0.0; 36], &[0.0; 2], false);
        assert!(portable::conv2d_at(level, &conv, &geom, &[0.0; 31], &mut [0.0; 8], 0..2).is_err());
        assert!(portable::conv2d_at(level, &conv, &geom, &[0.0; 32], &mut [0.0; 7], 0..2).is_err());
        assert!(portable::conv2d_at(level, &conv, &geom, &[0.0; 32], &mut [0.0; 8], 0..2).is_ok());
    }
}

/// Planes with no input columns or rows are refused even where the padding
/// would make outputs: by the pools and the depthwise conv at every level, like
/// the scalar twin, with the output left as it was.
#[test]
fn empty_planes_are_refused_at_every_level() {
    for level in levels() {
        for (h, w) in [(0, 5), (5, 0), (0, 0), (1, 0)] {
            for stride in [1, 2] {
                let (pt, pl, pb, pr) = (1, 1, 2, 2);
                let geom = window_geom(3, stride, (h, w), (pt, pl, pb, pr), (0, 0));
                let (oh, ow) = (geom.out_h, geom.out_w);
                let what = format!("{} {h}x{w} s{stride}", level.name());
                let channels = 2;
                let input = vec![1.0f32; channels * h * w];
                let untouched = vec![7.0f32; channels * oh * ow];
                for kind in KINDS {
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
                    let mut got = untouched.clone();
                    let mut want = untouched.clone();
                    let a = portable::pool_at(level, &p, &geom, &input, &mut got, 0..channels);
                    let b = scalar::pool::pool(&p, &geom, &input, &mut want, 0..channels);
                    assert!(a.is_err() && b.is_err(), "pool {kind:?} {what}");
                    assert_eq!(got, untouched, "pool {kind:?} {what}");
                }
                let (wts, bias) = (vec![0.5f32; channels * 9], vec![0.25f32; channels]);
                let dw = Depthwise3x3 {
                    stride,
                    weights: &wts,
                    bias: &bias,
                    relu: false,
                };
                let mut got = untouched.clone();
                let mut want = untouched.clone();
                let a = portable::dwconv3x3_at(level, &dw, &geom, &input, &mut got, 0..channels);
                let b = scalar::dwconv3x3::dwconv3x3(&dw, &geom, &input, &mut want, 0..channels);
                assert!(a.is_err() && b.is_err(), "dwconv3x3 {what}");
                assert_eq!(got, untouched, "dwconv3x3 {what}");
            }
        }
    }
}
