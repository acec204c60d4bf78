//! Scalar twin of the 3x3 depthwise convolution (stride 1 and 2, any pad up to 2).

use crate::{Depthwise3x3, KernelError, PlaneGeom};
use std::ops::Range;

/// Input sample at signed position `(iy, ix)` of a plane, zero outside it.
pub(crate) fn sample(plane: &[f32], g: &PlaneGeom, iy: isize, ix: isize) -> Option<f32> {
    if iy < 0 || ix < 0 || iy >= g.in_h as isize || ix >= g.in_w as isize {
        return None;
    }
    Some(plane[iy as usize * g.in_w + ix as usize])
}

/// Convolves planes `channels`; input plane `c` at `c * in_stride`, output plane `c`
/// at `(c - channels.start) * out_stride`.
pub fn dwconv3x3(
    p: &Depthwise3x3,
    g: &PlaneGeom,
    input: &[f32],
    output: &mut [f32],
    channels: Range<usize>,
) -> Result<(), KernelError> {
    p.check(g, input, output, &channels)?;
    for c in channels.clone() {
        let plane = &input[c * g.in_stride..];
        let w = &p.weights[c * 9..][..9];
        let out = &mut output[(c - channels.start) * g.out_stride..];
        for y in 0..g.out_h {
            for x in 0..g.out_w {
                let mut acc = 0.0f32;
                for dy in 0..3 {
                    for dx in 0..3 {
                        let iy = (y * p.stride + dy) as isize - g.pad_top as isize;
                        let ix = (x * p.stride + dx) as isize - g.pad_left as isize;
                        if let Some(v) = sample(plane, g, iy, ix) {
                            acc += w[dy * 3 + dx] * v;
                        }
                    }
                }
                acc += p.bias[c];
                if p.relu {
                    acc = super::relu(acc);
                }
                out[y * g.out_w + x] = acc;
            }
        }
    }
    Ok(())
}
