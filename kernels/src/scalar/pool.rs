//! Scalar twin of max and average pooling (any window, stride and padding).

use super::dwconv3x3::sample;
use crate::{KernelError, PlaneGeom, Pool, PoolKind};
use std::ops::Range;

/// Pools planes `channels` (layout as for the depthwise conv).
pub fn pool(
    p: &Pool,
    g: &PlaneGeom,
    input: &[f32],
    output: &mut [f32],
    channels: Range<usize>,
) -> Result<(), KernelError> {
    p.check(g, input, output, &channels)?;
    let (top, left) = (g.pad_top as isize, g.pad_left as isize);
    let bottom = (g.in_h + p.pad_bottom) as isize;
    let right = (g.in_w + p.pad_right) as isize;
    for c in channels.clone() {
        let plane = &input[c * g.in_stride..];
        let out = &mut output[(c - channels.start) * g.out_stride..];
        for y in 0..g.out_h {
            for x in 0..g.out_w {
                // With the ReLU the max starts at zero: relu(max) = max(0, max).
                let mut max = if p.relu { 0.0 } else { f32::NEG_INFINITY };
                let mut sum = 0.0f32;
                let (mut inside, mut padded) = (0usize, 0usize);
                for ky in 0..p.kh {
                    for kx in 0..p.kw {
                        let iy = (y * p.stride_h + ky) as isize - top;
                        let ix = (x * p.stride_w + kx) as isize - left;
                        if iy < bottom && ix < right {
                            padded += 1;
                        }
                        if let Some(v) = sample(plane, g, iy, ix) {
                            inside += 1;
                            sum += v;
                            // NaN propagates: a comparison with NaN keeps NaN.
                            if v > max || v.is_nan() {
                                max = v;
                            }
                        }
                    }
                }
                out[y * g.out_w + x] = match p.kind {
                    PoolKind::Max => max,
                    PoolKind::Avg { count_include_pad } => {
                        let n = if count_include_pad { padded } else { inside };
                        if n == 0 {
                            0.0
                        } else {
                            sum / n as f32
                        }
                    }
                };
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ReLU behind a max pool gives the ReLU of the pool's outputs (NaN kept),
    /// including windows over padding only; an average pool refuses it.
    #[test]
    fn relu_behind_max_pool() {
        let input = [
            -1.0,
            -2.0,
            3.0,
            -4.0,
            f32::NAN,
            -6.0,
            -7.0,
            8.0,
            -9.0,
            -0.5,
            -0.25,
            -3.0,
        ];
        // 3x4 plane, 3x3 windows, stride 2, one padding row and column on every
        // side, plus a second padding row below: the last output row sees only
        // padding.
        let g = PlaneGeom {
            in_h: 3,
            in_w: 4,
            in_stride: 12,
            out_h: 3,
            out_w: 2,
            out_stride: 6,
            pad_top: 1,
            pad_left: 1,
        };
        let mut p = Pool {
            kind: PoolKind::Max,
            kh: 3,
            kw: 3,
            stride_h: 2,
            stride_w: 2,
            pad_bottom: 2,
            pad_right: 1,
            relu: false,
        };
        let mut plain = [0.0; 6];
        pool(&p, &g, &input, &mut plain, 0..1).unwrap();
        p.relu = true;
        let mut clamped = [0.0; 6];
        pool(&p, &g, &input, &mut clamped, 0..1).unwrap();
        assert!(plain.iter().any(|&v| v < 0.0), "{plain:?}");
        assert!(plain.iter().any(|v| v.is_nan()), "{plain:?}");
        for (a, b) in plain.iter().zip(&clamped) {
            let want = crate::scalar::relu(*a);
            assert!(want.to_bits() == b.to_bits(), "{plain:?} -> {clamped:?}");
        }
        p.kind = PoolKind::Avg {
            count_include_pad: true,
        };
        assert!(pool(&p, &g, &input, &mut clamped, 0..1).is_err());
    }
}
