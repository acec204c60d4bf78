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
                let mut max = f32::NEG_INFINITY;
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
