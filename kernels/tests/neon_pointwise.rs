//! The pointwise kernel's input paths, against the scalar twin (on every target):
//! K rows that are planes at a constant distance (identity tables, strided, equal
//! and descending rows: the NEON kernel reads them in place) next to shuffle and
//! random tables (packed), with inputs that end right after the last pixel (so a
//! partial last tile cannot read its extra lanes in place), K past one packed
//! chunk, panels of every row count, pixel counts around the tile widths, panel
//! sub-ranges and every epilogue. Buffers carry NaN guard zones.

use kernels::{dispatch, scalar, *};

mod common;
use common::*;

/// How the K rows of each group are laid out in the input.
#[derive(Clone, Copy, Debug)]
enum Rows {
    /// Group `g` reads planes `g k .. g k + k` (a unit's first 1x1 conv).
    Identity,
    /// Planes `first + kk * step` per group (`step` may be 0 or negative).
    Strided(i64),
    /// The channel shuffle of `groups` (a unit's second 1x1 conv).
    Shuffle,
    /// Random planes.
    Random,
    /// Planes `g k + kk` but one middle row, a plane or two on (with K >= 4 the
    /// first and last rows and the first step are a progression's: it must not be
    /// read in place as one).
    Kinked,
}

/// The index table and the number of input planes it needs.
fn table(rng: &mut Rng, rows: Rows, groups: usize, k: usize) -> (Vec<u32>, usize) {
    let c = groups * k;
    match rows {
        Rows::Identity => ((0..c as u32).collect(), c),
        Rows::Shuffle => {
            let n = c / groups;
            let t = (0..c).map(|i| ((i % groups) * n + i / groups) as u32);
            (t.collect(), c)
        }
        Rows::Random => {
            let cin = c + rng.below(3);
            ((0..c).map(|_| rng.below(cin) as u32).collect(), cin)
        }
        Rows::Kinked => {
            let mut t: Vec<u32> = (0..c as u32).collect();
            if k >= 3 {
                for g in 0..groups {
                    let kk = if k >= 4 { 2 + rng.below(k - 3) } else { 1 };
                    t[g * k + kk] += 1 + rng.below(2) as u32;
                }
            }
            (t, c + 2)
        }
        Rows::Strided(step) => {
            let span = step.unsigned_abs() as usize * (k - 1) + 1;
            let mut t = Vec::with_capacity(c);
            for g in 0..groups {
                let lo = g * span;
                for kk in 0..k as i64 {
                    let r = if step >= 0 {
                        lo as i64 + kk * step
                    } else {
                        (lo + span - 1) as i64 + kk * step
                    };
                    t.push(r as u32);
                }
            }
            (t, groups * span)
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn check_case(
    rng: &mut Rng,
    groups: usize,
    k: usize,
    m: usize,
    count: usize,
    rows: Rows,
    tight: bool,
    epilogue: Epilogue,
    sub_range: bool,
) {
    let (in_rows, cin) = table(rng, rows, groups, k);
    // A tight input ends right after the last pixel of the last plane.
    let in_stride = count + if tight { 0 } else { 1 + rng.below(13) };
    let in_start = in_stride
        - count
        - if tight {
            0
        } else {
            rng.below(in_stride - count)
        };
    let out_stride = count + rng.below(5);
    let out_start = rng.below(out_stride - count + 1);
    let packed = pack_pointwise(groups, m, k, &rng.vec(groups * m * k));
    let bias = rng.vec(groups * m);
    let input = Guarded::new(&rng.vec((cin - 1) * in_stride + in_start + count));
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
    let panels = if sub_range {
        let lo = rng.below(total);
        lo..lo + 1 + rng.below(total - lo)
    } else {
        0..total
    };
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
    let out0 = rng.vec((chans.len() - 1) * out_stride + out_start + count);
    let what = format!(
        "pointwise g={groups} k={k} m={m} px={count} {rows:?} tight={tight} \
         panels={panels:?} {epilogue:?}"
    );
    let mut a = Guarded::new(&out0);
    let mut b = out0.clone();
    dispatch::pointwise(&p, input.get(), a.get_mut(), &call)
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    scalar::pointwise::pointwise(&p, input.get(), &mut b, &call)
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    a.assert_guards(&what);
    assert_close(a.get(), &b, &what);
}

#[test]
fn pointwise_in_place_and_packed_rows() {
    let mut rng = Rng(0x5151_7e57_c0de_0001);
    // (groups, k, m): the family's small shapes, odd panels, K past one chunk.
    let shapes = [
        (3, 40, 10),
        (3, 10, 36),
        (1, 12, 30),
        (3, 80, 20),
        (1, 24, 60),
        (3, 20, 13),
        (2, 7, 5),
        (1, 1, 3),
        (3, 3, 7),
        (1, 300, 11),
        (2, 513, 6),
    ];
    let tables = [
        Rows::Identity,
        Rows::Strided(2),
        Rows::Strided(0),
        Rows::Strided(-1),
        Rows::Shuffle,
        Rows::Random,
        Rows::Kinked,
    ];
    let mut n = 0usize;
    for &(groups, k, m) in &shapes {
        for &rows in &tables {
            for &count in &[1usize, 4, 5, 11, 12, 13, 16, 24, 27, 49, 100] {
                let tight = n.is_multiple_of(3);
                let epilogue = Epilogue {
                    accumulate: n.is_multiple_of(2),
                    relu: n % 5 != 1,
                };
                check_case(
                    &mut rng,
                    groups,
                    k,
                    m,
                    count,
                    rows,
                    tight,
                    epilogue,
                    n % 4 == 3,
                );
                n += 1;
            }
        }
    }
}
