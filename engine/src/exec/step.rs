//! Running one step on whole tensors, and the kernel calls it shares with the
//! streamed stages: parameters built from a step and its tensors, and each kernel
//! split over threads by output channels.

use super::parallel::for_parts;
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
        accumulate,
        ..
    } = *step
    else {
        return Err(Error::Argument("not a pointwise step".into()));
    };
    Ok(kernels::Pointwise {
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
            dispatch::gap_fc(&fc, &planes(p, input), inp, pooled, out)?;
        }
        Step::GlobalAvgPool { input, .. } => {
            let (out, inp) = out_in(p, arena, ext, out_r, input)?;
            dispatch::global_avg_pool(&planes(p, input), inp, out)?;
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
            dispatch::fc(&fc, inp, out)?;
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
