//! Running one step on whole tensors, and the kernel calls it shares with the
//! streamed stages: parameters built from a step and its tensors, and each kernel
//! split over threads by output channels.

use super::parallel::{for_blocks, for_parts};
use super::{out_in, split, tensor_f32, tensor_u32, ExecPlan};
use crate::graph::Pads;
use crate::program::{Step, TensorSource, View};
use crate::Error;
use kernels::{dispatch, Epilogue, PixelSpan, PlaneGeom, Planes, PointwiseCall};
use std::ops::Range;

/// Pointwise kernel parameters of a `Step::Pointwise`.
pub fn pointwise_of<'t, T: TensorSource + ?Sized>(
    step: &Step,
    t: &'t T,
) -> Result<kernels::Pointwise<'t>, Error> {
    let Step::Pointwise {
        groups,
        k,
        m,
        weights,
        bias,
        in_rows,
        relu,
        floor,
        accumulate,
        ..
    } = *step
    else {
        return Err(Error::Argument("not a pointwise step".into()));
    };
    Ok(kernels::Pointwise {
        floor: floor.map(|f| tensor_f32(t, f)).transpose()?,
        groups: groups as usize,
        k: k as usize,
        m: m as usize,
        weights: tensor_f32(t, weights)?,
        bias: tensor_f32(t, bias)?,
        in_rows: tensor_u32(t, in_rows)?,
        epilogue: Epilogue { accumulate, relu },
    })
}

/// Depthwise kernel parameters of a `Step::Depthwise`.
pub fn depthwise_of<'t, T: TensorSource + ?Sized>(
    step: &Step,
    t: &'t T,
) -> Result<kernels::Depthwise3x3<'t>, Error> {
    let Step::Depthwise {
        stride,
        weights,
        bias,
        relu,
        ..
    } = *step
    else {
        return Err(Error::Argument("not a depthwise step".into()));
    };
    Ok(kernels::Depthwise3x3 {
        stride: stride as usize,
        weights: tensor_f32(t, weights)?,
        bias: tensor_f32(t, bias)?,
        relu,
    })
}

/// Direct conv kernel parameters of a `Step::Conv`.
pub fn conv_of<'t, T: TensorSource + ?Sized>(
    step: &Step,
    t: &'t T,
) -> Result<kernels::Conv2d<'t>, Error> {
    let Step::Conv {
        groups,
        kh,
        kw,
        stride,
        weights,
        bias,
        relu,
        input,
        output,
        ..
    } = *step
    else {
        return Err(Error::Argument("not a conv step".into()));
    };
    Ok(kernels::Conv2d {
        cin: input.channels as usize,
        cout: output.channels as usize,
        groups: groups as usize,
        kh: kh as usize,
        kw: kw as usize,
        stride_h: stride.0 as usize,
        stride_w: stride.1 as usize,
        weights: tensor_f32(t, weights)?,
        bias: tensor_f32(t, bias)?,
        relu,
    })
}

/// Pool kernel parameters of a pool spec.
pub fn pool_of(spec: &crate::graph::PoolSpec) -> kernels::Pool {
    kernels::Pool {
        kind: spec.kind,
        kh: spec.kh,
        kw: spec.kw,
        stride_h: spec.stride.0,
        stride_w: spec.stride.1,
        pad_bottom: spec.pads.bottom,
        pad_right: spec.pads.right,
        relu: false,
    }
}

/// The pointwise kernel over all panels, split over threads by panels.
pub fn par_pointwise(
    p: &kernels::Pointwise,
    input: &[f32],
    out: &mut [f32],
    spans: (PixelSpan, PixelSpan),
    count: usize,
    threads: usize,
) -> Result<(), Error> {
    let offset = |panel: usize| p.channel_of(panel, 0) * spans.1.stride;
    for_parts(out, 0..p.panels(), threads, &offset, &|panels, o| {
        let call = PointwiseCall {
            input: spans.0,
            output: spans.1,
            count,
            panels,
        };
        Ok(dispatch::pointwise(p, input, o, &call)?)
    })
}

/// A per-channel kernel over `channels` output planes, split over threads.
pub fn par_channels<F>(
    out: &mut [f32],
    channels: usize,
    out_stride: usize,
    threads: usize,
    f: F,
) -> Result<(), Error>
where
    F: Fn(Range<usize>, &mut [f32]) -> Result<(), kernels::KernelError> + Sync,
{
    for_parts(out, 0..channels, threads, &|c| c * out_stride, &|r, o| {
        Ok(f(r, o)?)
    })
}

/// Channels per unit of work in [`par_global_avg_pool`]: the NEON kernel sums
/// four planes as a block and a remainder plane by plane; cutting only at whole
/// blocks leaves every value computed by the same code as in one call, so results
/// are bit-identical for any thread count.
const POOL_BLOCK: usize = 4;
/// Outputs per unit of work in [`par_fc`] (eight-row blocks in the NEON kernel),
/// for the same reason.
const FC_BLOCK: usize = 8;

/// The global average pool split over threads by blocks of channels.
pub fn par_global_avg_pool(
    planes: &Planes,
    input: &[f32],
    out: &mut [f32],
    threads: usize,
) -> Result<(), Error> {
    for_blocks(out, planes.channels, POOL_BLOCK, threads, &|c, o| {
        let part = Planes {
            channels: c.len(),
            ..*planes
        };
        let inp = input.get(c.start * planes.stride..).unwrap_or(&[]);
        Ok(dispatch::global_avg_pool(&part, inp, o)?)
    })
}

/// The FC layer split over threads by blocks of outputs.
pub fn par_fc(fc: &kernels::Fc, x: &[f32], out: &mut [f32], threads: usize) -> Result<(), Error> {
    for_blocks(out, fc.outputs, FC_BLOCK, threads, &|rows, o| {
        let short = || Error::Argument("fc parameters too short".into());
        let part = kernels::Fc {
            inputs: fc.inputs,
            outputs: rows.len(),
            weights: fc
                .weights
                .get(rows.start * fc.inputs..rows.end * fc.inputs)
                .ok_or_else(short)?,
            bias: fc.bias.get(rows).ok_or_else(short)?,
        };
        Ok(dispatch::fc(&part, x, o)?)
    })
}

/// Plane geometry of step `i` on whole tensors.
pub fn geom(p: &ExecPlan, i: usize, input: View, output: View, pads: Pads) -> PlaneGeom {
    let s = p.shapes[i];
    PlaneGeom {
        in_h: s.input.0,
        in_w: s.input.1,
        in_stride: p.plane(input.buffer),
        out_h: s.output.0,
        out_w: s.output.1,
        out_stride: p.plane(output.buffer),
        pad_top: pads.top,
        pad_left: pads.left,
    }
}

fn planes(p: &ExecPlan, v: View) -> Planes {
    let plane = p.plane(v.buffer);
    Planes {
        channels: v.channels as usize,
        hw: plane,
        stride: plane,
    }
}

/// Runs step `i` on whole tensors; the channel-parallel kernels split over
/// `threads`.
pub fn run_step<T: TensorSource + ?Sized>(
    p: &ExecPlan,
    i: usize,
    step: &Step,
    t: &T,
    arena: &mut [f32],
    ext: &[f32],
    threads: usize,
) -> Result<(), Error> {
    let out_r = p.range(step.writes());
    match *step {
        Step::Pointwise { input, output, .. } => {
            let (out, inp) = out_in(p, arena, ext, out_r, input)?;
            let span = |v: View| PixelSpan {
                stride: p.plane(v.buffer),
                start: 0,
            };
            let count = p.plane(output.buffer);
            par_pointwise(
                &pointwise_of(step, t)?,
                inp,
                out,
                (span(input), span(output)),
                count,
                threads,
            )?;
        }
        Step::Depthwise {
            pads,
            input,
            output,
            ..
        } => {
            let (out, inp) = out_in(p, arena, ext, out_r, input)?;
            let (params, g) = (depthwise_of(step, t)?, geom(p, i, input, output, pads));
            par_channels(
                out,
                output.channels as usize,
                g.out_stride,
                threads,
                |r, o| dispatch::dwconv3x3(&params, &g, inp, o, r),
            )?;
        }
        Step::Conv {
            pads,
            input,
            output,
            ..
        } => {
            let (out, inp) = out_in(p, arena, ext, out_r, input)?;
            let (params, g) = (conv_of(step, t)?, geom(p, i, input, output, pads));
            par_channels(
                out,
                output.channels as usize,
                g.out_stride,
                threads,
                |r, o| dispatch::conv2d(&params, &g, inp, o, r),
            )?;
        }
        Step::Pool {
            spec,
            input,
            output,
        } => {
            let (out, inp) = out_in(p, arena, ext, out_r, input)?;
            let (params, g) = (pool_of(&spec), geom(p, i, input, output, spec.pads));
            par_channels(
                out,
                output.channels as usize,
                g.out_stride,
                threads,
                |r, o| dispatch::pool(&params, &g, inp, o, r),
            )?;
        }
        Step::GapFc {
            weights,
            bias,
            input,
            output,
        } => {
            let s = p.scratch[i].ok_or_else(|| Error::Argument("gap_fc scratch missing".into()))?;
            let [out, inp, pooled] = split(arena, [out_r, p.range(input), p.area(s)])?;
            let fc = kernels::Fc {
                inputs: input.channels as usize,
                outputs: output.channels as usize,
                weights: tensor_f32(t, weights)?,
                bias: tensor_f32(t, bias)?,
            };
            if threads <= 1 {
                dispatch::gap_fc(&fc, &planes(p, input), inp, pooled, out)?;
            } else {
                par_global_avg_pool(&planes(p, input), inp, pooled, threads)?;
                par_fc(&fc, pooled, out, threads)?;
            }
        }
        Step::GlobalAvgPool { input, .. } => {
            let (out, inp) = out_in(p, arena, ext, out_r, input)?;
            par_global_avg_pool(&planes(p, input), inp, out, threads)?;
        }
        Step::Fc {
            weights,
            bias,
            input,
            output,
        } => {
            let (out, inp) = out_in(p, arena, ext, out_r, input)?;
            let fc = kernels::Fc {
                inputs: input.channels as usize,
                outputs: output.channels as usize,
                weights: tensor_f32(t, weights)?,
                bias: tensor_f32(t, bias)?,
            };
            par_fc(&fc, inp, out, threads)?;
        }
        Step::Add { a, b, relu, output } => {
            if a == b && output == a {
                let [out] = split(arena, [out_r])?;
                for v in out.iter_mut() {
                    let s = *v + *v;
                    *v = if relu { kernels::scalar::relu(s) } else { s };
                }
            } else if output == a || output == b {
                let other = if output == a { b } else { a };
                let [out, o] = split(arena, [out_r, p.range(other)])?;
                dispatch::add_assign(out, o, relu)?;
            } else if a == b {
                let [out, x] = split(arena, [out_r, p.range(a)])?;
                dispatch::add(x, x, out, relu)?;
            } else {
                let [out, x, y] = split(arena, [out_r, p.range(a), p.range(b)])?;
                dispatch::add(x, y, out, relu)?;
            }
        }
        Step::Affine {
            scale,
            shift,
            relu,
            input,
            ..
        } => {
            let (out, inp) = out_in(p, arena, ext, out_r, input)?;
            dispatch::affine(
                &planes(p, input),
                tensor_f32(t, scale)?,
                tensor_f32(t, shift)?,
                relu,
                inp,
                out,
            )?;
        }
        Step::Relu { .. } => {
            let [out] = split(arena, [out_r])?;
            dispatch::relu_in_place(out);
        }
        Step::Softmax { .. } => {
            let [out] = split(arena, [out_r])?;
            dispatch::softmax_in_place(out);
        }
        Step::Permute { table, input, .. } => {
            let (out, inp) = out_in(p, arena, ext, out_r, input)?;
            dispatch::permute(&planes(p, input), tensor_u32(t, table)?, inp, out)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 7919 + seed * 104_729) % 2001) as f32 / 1000.0 - 1.0)
            .collect()
    }

    #[test]
    fn split_pointwise_matches_one_call_bit_for_bit() {
        // Groups whose panels a split cuts (m = 20: 3 panels per group) or not,
        // a ReLU with an accumulate, on a plain and on a balanced pool.
        let pools = [None, Some(super::super::parallel::pool(3).unwrap())];
        for (groups, m, k) in [
            (1, 20, 7),
            (2, 20, 5),
            (3, 20, 6),
            (3, 8, 4),
            (4, 13, 3),
            (8, 9, 2),
        ] {
            let w = kernels::pack_pointwise(groups, m, k, &data(groups * m * k, 4));
            let (bias, pixels) = (data(groups * m, 5), 37);
            let in_rows: Vec<u32> = (0..groups * k).rev().map(|r| r as u32).collect();
            let p = kernels::Pointwise {
                groups,
                k,
                m,
                weights: &w,
                bias: &bias,
                in_rows: &in_rows,
                epilogue: Epilogue {
                    accumulate: true,
                    relu: true,
                },
                floor: None,
            };
            let x = data(groups * k * pixels, 6);
            let span = PixelSpan {
                stride: pixels,
                start: 0,
            };
            let start = data(groups * m * pixels, 7);
            let mut want = start.clone();
            let call = PointwiseCall::same_span(pixels, 0, pixels, 0..p.panels());
            dispatch::pointwise(&p, &x, &mut want, &call).unwrap();
            for pool in &pools {
                for threads in 1..=4 {
                    let mut got = start.clone();
                    let run =
                        |got: &mut [f32]| par_pointwise(&p, &x, got, (span, span), pixels, threads);
                    match pool {
                        Some(pool) => pool.install(|| run(&mut got)).unwrap(),
                        None => run(&mut got).unwrap(),
                    }
                    assert_eq!(got, want, "g={groups} m={m}, {threads} threads");
                }
            }
        }
    }

    #[test]
    fn split_fc_and_global_pool_match_one_call_bit_for_bit() {
        for (inputs, outputs) in [(13, 1), (16, 7), (37, 37), (480, 1000)] {
            let (w, b, x) = (data(inputs * outputs, 1), data(outputs, 2), data(inputs, 3));
            let fc = kernels::Fc {
                inputs,
                outputs,
                weights: &w,
                bias: &b,
            };
            let mut want = vec![0.0; outputs];
            dispatch::fc(&fc, &x, &mut want).unwrap();
            for threads in 1..=4 {
                let mut got = vec![f32::NAN; outputs];
                par_fc(&fc, &x, &mut got, threads).unwrap();
                assert_eq!(got, want, "fc {inputs}->{outputs}, {threads} threads");
            }
            let short = kernels::Fc {
                weights: &w[..w.len() - 1],
                ..fc
            };
            assert!(par_fc(&short, &x, &mut want, 2).is_err());
        }
        for (channels, hw, stride) in [(1, 1, 1), (3, 5, 8), (13, 49, 49), (480, 920, 924)] {
            let planes = Planes {
                channels,
                hw,
                stride,
            };
            let input = data(channels * stride, 4);
            let mut want = vec![0.0; channels];
            dispatch::global_avg_pool(&planes, &input, &mut want).unwrap();
            for threads in 1..=4 {
                let mut got = vec![f32::NAN; channels];
                par_global_avg_pool(&planes, &input, &mut got, threads).unwrap();
                assert_eq!(got, want, "pool {channels}x{hw}, {threads} threads");
            }
            let short = &input[..input.len() - stride];
            assert!(par_global_avg_pool(&planes, short, &mut want, 2).is_err());
        }
    }
}
