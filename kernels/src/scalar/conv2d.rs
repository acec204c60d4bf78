//! Scalar twin of the direct convolution (any kernel, stride, padding and groups).

use super::dwconv3x3::sample;
use crate::{Conv2d, KernelError, PlaneGeom};
use std::ops::Range;

/// Computes output channels `out_channels`; the input holds all `cin` planes.
pub fn conv2d(
    p: &Conv2d,
    g: &PlaneGeom,
    input: &[f32],
    output: &mut [f32],
    out_channels: Range<usize>,
) -> Result<(), KernelError> {
    p.check(g, input, output, &out_channels)?;
    let cin_g = p.cin / p.groups;
    let cout_g = p.cout / p.groups;
    let taps = p.kh * p.kw;
    for oc in out_channels.clone() {
        let group = oc / cout_g;
        let out = &mut output[(oc - out_channels.start) * g.out_stride..];
        for y in 0..g.out_h {
            for x in 0..g.out_w {
                let mut acc = 0.0f32;
                for ic in 0..cin_g {
                    let plane = &input[(group * cin_g + ic) * g.in_stride..];
                    let w = &p.weights[(oc * cin_g + ic) * taps..][..taps];
                    for ky in 0..p.kh {
                        for kx in 0..p.kw {
                            let iy = (y * p.stride_h + ky) as isize - g.pad_top as isize;
                            let ix = (x * p.stride_w + kx) as isize - g.pad_left as isize;
                            if let Some(v) = sample(plane, g, iy, ix) {
                                acc += w[ky * p.kw + kx] * v;
                            }
                        }
                    }
                }
                acc += p.bias[oc];
                if p.relu {
                    acc = super::relu(acc);
                }
                out[y * g.out_w + x] = acc;
            }
        }
    }
    Ok(())
}
