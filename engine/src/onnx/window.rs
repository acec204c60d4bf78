//! Window operators: Conv, MaxPool, AveragePool, global pooling (GlobalAveragePool,
//! ReduceMean) and the zero Pad that folds into the conv or pool reading it.

use super::error::OnnxError;
use super::import::{Act, Form, Importer, Sym};
use super::node::NodeCtx;
use super::ops::{f32s, ints, norm_axes, opt_const, req_act, req_const};
use crate::graph::{window_out, Conv, Op, Pads, PoolSpec, Shape};
use kernels::PoolKind;

/// An activation with NCHW dims that a conv or pool reads: the engine value and
/// the zero padding a preceding Pad left to fold.
fn window_input(ctx: &NodeCtx, x: &Act) -> Result<Pads, OnnxError> {
    match x.form {
        Form::Nchw => Ok(Pads::default()),
        Form::Padded(p) => Ok(p),
        _ => Err(ctx.err(format!(
            "input of shape {:?} is not an NCHW map (a 4-D [1, C, H, W] tensor is expected)",
            x.dims()
        ))),
    }
}

/// `strides`, default 1.
fn strides(ctx: &NodeCtx) -> Result<(usize, usize), OnnxError> {
    match ctx.ints("strides")? {
        None => Ok((1, 1)),
        Some(s) => match s[..] {
            [a, b] if a >= 1 && b >= 1 => Ok((a as usize, b as usize)),
            _ => Err(ctx.err(format!(
                "strides {s:?} not supported (two positive values expected)"
            ))),
        },
    }
}

/// Refuses dilations other than 1.
fn no_dilations(ctx: &NodeCtx) -> Result<(), OnnxError> {
    match ctx.ints("dilations")? {
        Some(d) if d.iter().any(|&x| x != 1) => {
            Err(ctx.err(format!("dilations {d:?} not supported")))
        }
        _ => Ok(()),
    }
}

/// Padding of one axis under `auto_pad` SAME: output `ceil(len / stride)`, the
/// odd pixel at the end (`upper`) or at the beginning.
pub(crate) fn same_pads(len: usize, k: usize, stride: usize, upper: bool) -> (usize, usize) {
    let out = len.div_ceil(stride.max(1));
    let total = out
        .saturating_sub(1)
        .saturating_mul(stride)
        .saturating_add(k)
        .saturating_sub(len);
    let small = total / 2;
    if upper {
        (small, total - small)
    } else {
        (total - small, small)
    }
}

/// The node's own padding (`pads` or `auto_pad`), for an input of `hw` (the
/// padded size when a Pad precedes it). SAME padding is resolved at the trace size.
fn own_pads(
    ctx: &NodeCtx,
    hw: (usize, usize),
    k: (usize, usize),
    stride: (usize, usize),
) -> Result<Pads, OnnxError> {
    let auto = ctx.string("auto_pad")?.unwrap_or_default();
    match auto.as_str() {
        "" | "NOTSET" => match ctx.ints("pads")? {
            None => Ok(Pads::default()),
            Some(p) => {
                let u: Vec<usize> = p.iter().filter_map(|&v| usize::try_from(v).ok()).collect();
                match u[..] {
                    [top, left, bottom, right] if p.len() == 4 => Ok(Pads {
                        top,
                        left,
                        bottom,
                        right,
                    }),
                    _ => Err(ctx.err(format!(
                        "pads {p:?} not supported (four non-negative values expected)"
                    ))),
                }
            }
        },
        "VALID" => Ok(Pads::default()),
        "SAME_UPPER" | "SAME_LOWER" => {
            let upper = auto == "SAME_UPPER";
            let (top, bottom) = same_pads(hw.0, k.0, stride.0, upper);
            let (left, right) = same_pads(hw.1, k.1, stride.1, upper);
            Ok(Pads {
                top,
                left,
                bottom,
                right,
            })
        }
        other => Err(ctx.err(format!("auto_pad '{other}' not supported"))),
    }
}

fn add_pads(ctx: &NodeCtx, a: Pads, b: Pads) -> Result<Pads, OnnxError> {
    let f = |x: usize, y: usize| x.checked_add(y).ok_or_else(|| ctx.err("padding overflows"));
    Ok(Pads {
        top: f(a.top, b.top)?,
        left: f(a.left, b.left)?,
        bottom: f(a.bottom, b.bottom)?,
        right: f(a.right, b.right)?,
    })
}

fn padded_hw(x: &Act, p: Pads) -> (usize, usize) {
    (
        x.h.saturating_add(p.top).saturating_add(p.bottom),
        x.w.saturating_add(p.left).saturating_add(p.right),
    )
}

/// Output size of a window op, or an error naming the sizes.
fn out_size(
    ctx: &NodeCtx,
    x: &Act,
    k: (usize, usize),
    stride: (usize, usize),
    p: Pads,
    ceil: bool,
) -> Result<(usize, usize), OnnxError> {
    if p.top >= k.0 || p.bottom >= k.0 || p.left >= k.1 || p.right >= k.1 {
        return Err(ctx.err(format!(
            "padding (top {}, left {}, bottom {}, right {}) not supported: it must be smaller than the {}x{} window",
            p.top, p.left, p.bottom, p.right, k.0, k.1
        )));
    }
    let oh = window_out(x.h, k.0, stride.0, p.top, p.bottom, ceil);
    let ow = window_out(x.w, k.1, stride.1, p.left, p.right, ceil);
    oh.zip(ow).ok_or_else(|| {
        ctx.err(format!(
            "the {}x{} input is smaller than the {}x{} window",
            x.h, x.w, k.0, k.1
        ))
    })
}

pub(crate) fn conv(
    imp: &mut Importer,
    ctx: &NodeCtx,
    ins: &[Option<Sym>],
) -> Result<Vec<Sym>, OnnxError> {
    ctx.only_attrs(&[
        "auto_pad",
        "dilations",
        "group",
        "kernel_shape",
        "pads",
        "strides",
    ])?;
    let x = req_act(ctx, ins, 0, "X")?;
    let wt = req_const(ctx, ins, 1, "W")?;
    let b = opt_const(ctx, ins, 2, "B")?;
    let pre = window_input(ctx, &x)?;
    let [m, cg, kh, kw] = wt.dims[..] else {
        return Err(ctx.err(format!(
            "weight of shape {:?}: only 2-D convolutions (4-D weights) are supported",
            wt.dims
        )));
    };
    if m == 0 || cg == 0 || kh == 0 || kw == 0 {
        return Err(ctx.err(format!("weight of shape {:?} is empty", wt.dims)));
    }
    let group = ctx.int("group", 1)?;
    let group = usize::try_from(group)
        .ok()
        .filter(|&g| g >= 1)
        .ok_or_else(|| ctx.err(format!("group {group} is not positive")))?;
    if cg.checked_mul(group) != Some(x.c) {
        return Err(ctx.err(format!(
            "weight of shape {:?} with group {group} needs {} input channels, but the input has {}",
            wt.dims,
            cg.saturating_mul(group),
            x.c
        )));
    }
    if m % group != 0 {
        return Err(ctx.err(format!(
            "weight of shape {:?}: {m} output channels do not divide by group {group}",
            wt.dims
        )));
    }
    if let Some(ks) = ctx.ints("kernel_shape")? {
        if ks.len() != 2 || ks[0] != kh as i64 || ks[1] != kw as i64 {
            return Err(ctx.err(format!(
                "kernel_shape {ks:?} disagrees with the weight of shape {:?}",
                wt.dims
            )));
        }
    }
    no_dilations(ctx)?;
    let stride = strides(ctx)?;
    let own = own_pads(ctx, padded_hw(&x, pre), (kh, kw), stride)?;
    let pads = add_pads(ctx, pre, own)?;
    let (oh, ow) = out_size(ctx, &x, (kh, kw), stride, pads, false)?;
    let weight = f32s(ctx, &wt, "W")?.to_vec();
    let bias = match b {
        None => None,
        Some(b) => {
            let v = f32s(ctx, &b, "B")?;
            if b.dims != [m] {
                return Err(ctx.err(format!(
                    "bias of shape {:?} does not match {m} output channels",
                    b.dims
                )));
            }
            Some(v.to_vec())
        }
    };
    let shape = Shape { c: m, h: oh, w: ow };
    let op = Op::Conv(Conv {
        cin: x.c,
        cout: m,
        groups: group,
        kh,
        kw,
        stride,
        pads,
        weight,
        bias,
    });
    let v = imp.push(&ctx.name, op, &[x.v], shape);
    Ok(vec![Sym::Act(Act::nchw(v, shape, false))])
}

pub(crate) fn pool(
    imp: &mut Importer,
    ctx: &NodeCtx,
    ins: &[Option<Sym>],
) -> Result<Vec<Sym>, OnnxError> {
    let max = ctx.op == "MaxPool";
    if max {
        ctx.only_attrs(&[
            "auto_pad",
            "ceil_mode",
            "dilations",
            "kernel_shape",
            "pads",
            "storage_order",
            "strides",
        ])?;
    } else {
        ctx.only_attrs(&[
            "auto_pad",
            "ceil_mode",
            "count_include_pad",
            "dilations",
            "kernel_shape",
            "pads",
            "strides",
        ])?;
    }
    let x = req_act(ctx, ins, 0, "X")?;
    let pre = window_input(ctx, &x)?;
    let ks = ctx
        .ints("kernel_shape")?
        .ok_or_else(|| ctx.err("kernel_shape is required"))?;
    let (kh, kw) = match ks[..] {
        [a, b] if a >= 1 && b >= 1 => (a as usize, b as usize),
        _ => {
            return Err(ctx.err(format!(
                "kernel_shape {ks:?} not supported (2-D pooling with a positive window)"
            )))
        }
    };
    no_dilations(ctx)?;
    let stride = strides(ctx)?;
    let ceil = match ctx.int("ceil_mode", 0)? {
        0 => false,
        1 => true,
        v => return Err(ctx.err(format!("ceil_mode {v} not supported"))),
    };
    let include_pad = match ctx.int("count_include_pad", 0)? {
        0 => false,
        1 => true,
        v => return Err(ctx.err(format!("count_include_pad {v} not supported"))),
    };
    let own = own_pads(ctx, padded_hw(&x, pre), (kh, kw), stride)?;
    let zero = Pads::default();
    // A window covering the whole map (`AvgPool2d(7)` in many ShuffleNet sources)
    // is the global pool at the trace size and stays one at every size.
    if !max && pre == zero && own == zero && (kh, kw) == (x.h, x.w) {
        let shape = Shape { c: x.c, h: 1, w: 1 };
        let v = imp.push(&ctx.name, Op::GlobalAvgPool, &[x.v], shape);
        return Ok(vec![Sym::Act(Act::nchw(v, shape, x.nonneg))]);
    }
    let (pads, kind) = if max {
        if pre != zero && !x.nonneg {
            return Err(ctx.err(
                "a zero Pad before MaxPool is only supported when its input is known to be non-negative (e.g. produced by Relu); here it may be negative",
            ));
        }
        (add_pads(ctx, pre, own)?, PoolKind::Max)
    } else if pre != zero {
        if !include_pad && own != zero {
            return Err(ctx.err(
                "a zero Pad before an AveragePool that pads again with count_include_pad=0 is not supported",
            ));
        }
        // The zeros of the Pad are real elements: they count.
        (
            add_pads(ctx, pre, own)?,
            PoolKind::Avg {
                count_include_pad: true,
            },
        )
    } else {
        (
            own,
            PoolKind::Avg {
                count_include_pad: include_pad,
            },
        )
    };
    let (oh, ow) = out_size(ctx, &x, (kh, kw), stride, pads, ceil)?;
    let shape = Shape {
        c: x.c,
        h: oh,
        w: ow,
    };
    let op = Op::Pool(PoolSpec {
        kind,
        kh,
        kw,
        stride,
        pads,
        ceil_mode: ceil,
    });
    let v = imp.push(&ctx.name, op, &[x.v], shape);
    Ok(vec![Sym::Act(Act::nchw(v, shape, x.nonneg))])
}

pub(crate) fn global_avg_pool(
    imp: &mut Importer,
    ctx: &NodeCtx,
    ins: &[Option<Sym>],
) -> Result<Vec<Sym>, OnnxError> {
    ctx.only_attrs(&[])?;
    let x = req_act(ctx, ins, 0, "X")?;
    if x.form != Form::Nchw {
        return Err(ctx.err(format!("input of shape {:?} is not an NCHW map", x.dims())));
    }
    let shape = Shape { c: x.c, h: 1, w: 1 };
    let v = imp.push(&ctx.name, Op::GlobalAvgPool, &[x.v], shape);
    Ok(vec![Sym::Act(Act::nchw(v, shape, x.nonneg))])
}

pub(crate) fn reduce_mean(
    imp: &mut Importer,
    ctx: &NodeCtx,
    ins: &[Option<Sym>],
) -> Result<Vec<Sym>, OnnxError> {
    ctx.only_attrs(&["axes", "keepdims", "noop_with_empty_axes"])?;
    let x = req_act(ctx, ins, 0, "data")?;
    let keep = ctx.int("keepdims", 1)? != 0;
    let axes: Option<Vec<i64>> = if ctx.opset >= 18 {
        opt_const(ctx, ins, 1, "axes")?
            .map(|c| ints(ctx, &c, "axes").map(|v| v.to_vec()))
            .transpose()?
    } else {
        ctx.ints("axes")?
    };
    let axes = match axes {
        Some(a) if !a.is_empty() => a,
        _ => {
            if ctx.int("noop_with_empty_axes", 0)? != 0 {
                return Ok(vec![Sym::Act(x)]);
            }
            return Err(
                ctx.err("reducing over all axes is not supported (only over height and width)")
            );
        }
    };
    let dims = x.dims();
    let axes = norm_axes(ctx, &axes, dims.len())?;
    let spatial = match x.form {
        Form::Nchw => axes == [2, 3],
        Form::Nhwc => axes == [1, 2],
        _ => false,
    };
    if !spatial {
        return Err(ctx.err(format!(
            "ReduceMean over axes {axes:?} of a {dims:?} tensor is not supported (only over height and width)"
        )));
    }
    let shape = Shape { c: x.c, h: 1, w: 1 };
    let v = imp.push(&ctx.name, Op::GlobalAvgPool, &[x.v], shape);
    let mut y = Act::nchw(v, shape, x.nonneg);
    y.form = if !keep { Form::Flat } else { x.form };
    Ok(vec![Sym::Act(y)])
}

pub(crate) fn pad(ctx: &NodeCtx, ins: &[Option<Sym>]) -> Result<Vec<Sym>, OnnxError> {
    let x = req_act(ctx, ins, 0, "data")?;
    let (pads, value) = if ctx.opset < 11 {
        ctx.only_attrs(&["mode", "pads", "value"])?;
        let p = ctx
            .ints("pads")?
            .ok_or_else(|| ctx.err("pads is required"))?;
        (p, ctx.float("value", 0.0)?)
    } else {
        ctx.only_attrs(&["mode"])?;
        let p = req_const(ctx, ins, 1, "pads")?;
        let p = ints(ctx, &p, "pads")?.to_vec();
        let v = match opt_const(ctx, ins, 2, "constant_value")? {
            None => 0.0,
            Some(c) => c
                .scalar()
                .ok_or_else(|| ctx.err("constant_value must be a scalar"))?,
        };
        (p, v)
    };
    let mode = ctx.string("mode")?.unwrap_or_else(|| "constant".into());
    if mode != "constant" {
        return Err(ctx.err(format!(
            "mode '{mode}' not supported (only constant zero padding)"
        )));
    }
    if value != 0.0 {
        return Err(ctx.err(format!(
            "padding value {value} not supported (only zero, which folds into the next Conv or pool)"
        )));
    }
    let dims = x.dims();
    let r = dims.len();
    let full: Vec<i64> = match opt_const(ctx, ins, 3, "axes")? {
        None => {
            if pads.len() != 2 * r {
                return Err(ctx.err(format!(
                    "pads {pads:?} has {} values for a rank-{r} input",
                    pads.len()
                )));
            }
            pads
        }
        Some(a) => {
            let a = ints(ctx, &a, "axes")?;
            if pads.len() != 2 * a.len() {
                return Err(ctx.err(format!(
                    "pads {pads:?} has {} values for {} axes",
                    pads.len(),
                    a.len()
                )));
            }
            let mut full = vec![0; 2 * r];
            for (j, &ax) in a.iter().enumerate() {
                let n = norm_axes(ctx, &[ax], r)?[0];
                full[n] = pads[j];
                full[n + r] = pads[j + a.len()];
            }
            full
        }
    };
    if full.iter().any(|&p| p < 0) {
        return Err(ctx.err(format!("negative pads {full:?} (cropping) not supported")));
    }
    if full.iter().all(|&p| p == 0) {
        return Ok(vec![Sym::Act(x)]);
    }
    let pre = match x.form {
        Form::Nchw => Pads::default(),
        Form::Padded(p) => p,
        _ => {
            return Err(ctx.err(format!(
                "padding a tensor of shape {:?} is not supported (only NCHW maps)",
                dims
            )))
        }
    };
    if full[0] != 0 || full[1] != 0 || full[4] != 0 || full[5] != 0 {
        return Err(ctx.err(format!(
            "pads {full:?} pad the batch or channel axis; only height and width are supported"
        )));
    }
    let u = |v: i64| usize::try_from(v).map_err(|_| ctx.err("pads too large"));
    let p = Pads {
        top: u(full[2])?,
        left: u(full[3])?,
        bottom: u(full[6])?,
        right: u(full[7])?,
    };
    let mut y = x;
    y.form = Form::Padded(add_pads(ctx, pre, p)?);
    Ok(vec![Sym::Act(y)])
}

#[cfg(test)]
mod tests {
    use super::same_pads;

    #[test]
    fn same_padding_follows_onnx() {
        // 3x3 stride 2 on an even size: one pixel, at the end (UPPER) or start.
        assert_eq!(same_pads(224, 3, 2, true), (0, 1));
        assert_eq!(same_pads(224, 3, 2, false), (1, 0));
        // Odd size: symmetric.
        assert_eq!(same_pads(225, 3, 2, true), (1, 1));
        // Stride 1: k - 1 in total.
        assert_eq!(same_pads(7, 3, 1, true), (1, 1));
        assert_eq!(same_pads(7, 4, 1, true), (1, 2));
        assert_eq!(same_pads(7, 4, 1, false), (2, 1));
        // 1x1: none.
        assert_eq!(same_pads(9, 1, 2, true), (0, 0));
    }
}
