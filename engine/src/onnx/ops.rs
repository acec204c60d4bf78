//! Per-op import: each handler checks its node's attributes and inputs and appends
//! the equivalent engine nodes.

use super::consts;
use super::error::OnnxError;
use super::import::{Act, Form, Importer, Sym};
use super::layout;
use super::node::NodeCtx;
use super::tensor::Const;
use crate::graph::{window_out, BatchNorm, Conv, Fc, Op, Pads, PoolSpec, Shape};
use kernels::PoolKind;
use std::rc::Rc;

/// Imports one node; returns the symbols of its leading outputs.
pub(crate) fn import_node(
    imp: &mut Importer,
    ctx: &NodeCtx,
    ins: &[Option<Sym>],
) -> Result<Vec<Sym>, OnnxError> {
    match ctx.op {
        "Conv" => conv(imp, ctx, ins),
        "MaxPool" | "AveragePool" => pool(imp, ctx, ins),
        "GlobalAveragePool" => global_avg_pool(imp, ctx, ins),
        "ReduceMean" => reduce_mean(imp, ctx, ins),
        "Pad" => pad(ctx, ins),
        "BatchNormalization" => batch_norm(imp, ctx, ins),
        "Relu" => {
            ctx.only_attrs(&[])?;
            relu(imp, ctx, ins)
        }
        "Clip" => clip(imp, ctx, ins),
        "Add" | "Sub" | "Mul" | "Div" => binary(imp, ctx, ins),
        "Concat" => concat(imp, ctx, ins),
        "Gemm" => gemm(imp, ctx, ins),
        "MatMul" => matmul(imp, ctx, ins),
        "Softmax" => softmax(imp, ctx, ins),
        "Identity" => {
            ctx.only_attrs(&[])?;
            Ok(vec![req(ctx, ins, 0, "input")?.clone()])
        }
        "Dropout" => dropout(ctx, ins),
        "Reshape" => layout::reshape(imp, ctx, ins),
        "Flatten" => layout::flatten(imp, ctx, ins),
        "Squeeze" => layout::squeeze(imp, ctx, ins),
        "Unsqueeze" => layout::unsqueeze(imp, ctx, ins),
        "Transpose" => layout::transpose(ctx, ins),
        "Constant" => consts::constant(ctx),
        "Shape" => consts::shape(ctx, ins),
        "Gather" => consts::gather(ctx, ins),
        "Cast" => consts::cast(ctx, ins),
        "Slice" => consts::slice(ctx, ins),
        _ => Err(OnnxError::UnsupportedOp {
            node: ctx.name.clone(),
            op: ctx.op.to_string(),
            domain: "ai.onnx".into(),
        }),
    }
}

/// Input `i`, which must be present.
pub(crate) fn req<'s>(
    ctx: &NodeCtx,
    ins: &'s [Option<Sym>],
    i: usize,
    what: &str,
) -> Result<&'s Sym, OnnxError> {
    ins.get(i)
        .and_then(|s| s.as_ref())
        .ok_or_else(|| ctx.err(format!("input #{i} ({what}) is missing")))
}

/// Input `i`, which must be an activation.
pub(crate) fn req_act(
    ctx: &NodeCtx,
    ins: &[Option<Sym>],
    i: usize,
    what: &str,
) -> Result<Act, OnnxError> {
    match req(ctx, ins, i, what)? {
        Sym::Act(a) => Ok(*a),
        Sym::Const(_) => Err(ctx.err(format!(
            "input #{i} ({what}) is a constant; a computed tensor is expected"
        ))),
    }
}

/// Input `i`, which must be a constant.
pub(crate) fn req_const(
    ctx: &NodeCtx,
    ins: &[Option<Sym>],
    i: usize,
    what: &str,
) -> Result<Rc<Const>, OnnxError> {
    opt_const(ctx, ins, i, what)?.ok_or_else(|| ctx.err(format!("input #{i} ({what}) is missing")))
}

/// Input `i` if present, which must then be a constant.
pub(crate) fn opt_const(
    ctx: &NodeCtx,
    ins: &[Option<Sym>],
    i: usize,
    what: &str,
) -> Result<Option<Rc<Const>>, OnnxError> {
    match ins.get(i).and_then(|s| s.as_ref()) {
        None => Ok(None),
        Some(Sym::Const(c)) => Ok(Some(c.clone())),
        Some(Sym::Act(_)) => Err(ctx.err(format!(
            "input #{i} ({what}) is computed at run time; it must be a constant (initializer)"
        ))),
    }
}

/// The float elements of a constant.
fn f32s<'c>(ctx: &NodeCtx, c: &'c Const, what: &str) -> Result<&'c [f32], OnnxError> {
    c.f32s()
        .ok_or_else(|| ctx.err(format!("{what} must be a float tensor")))
}

/// A constant integer list (axes, pads, shapes).
pub(crate) fn ints<'c>(ctx: &NodeCtx, c: &'c Const, what: &str) -> Result<&'c [i64], OnnxError> {
    c.i64s()
        .ok_or_else(|| ctx.err(format!("{what} must be an integer tensor")))
}

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

fn conv(imp: &mut Importer, ctx: &NodeCtx, ins: &[Option<Sym>]) -> Result<Vec<Sym>, OnnxError> {
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

fn pool(imp: &mut Importer, ctx: &NodeCtx, ins: &[Option<Sym>]) -> Result<Vec<Sym>, OnnxError> {
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

fn global_avg_pool(
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

/// Normalises possibly negative axes against `rank`; sorted, deduplicated.
pub(crate) fn norm_axes(ctx: &NodeCtx, axes: &[i64], rank: usize) -> Result<Vec<usize>, OnnxError> {
    let r = rank as i64;
    let mut out = axes
        .iter()
        .map(|&a| {
            let n = if a < 0 { a + r } else { a };
            if (0..r).contains(&n) {
                Ok(n as usize)
            } else {
                Err(ctx.err(format!("axis {a} is out of range for rank {rank}")))
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

fn reduce_mean(
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

fn pad(ctx: &NodeCtx, ins: &[Option<Sym>]) -> Result<Vec<Sym>, OnnxError> {
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

fn batch_norm(
    imp: &mut Importer,
    ctx: &NodeCtx,
    ins: &[Option<Sym>],
) -> Result<Vec<Sym>, OnnxError> {
    ctx.only_attrs(&["epsilon", "momentum", "spatial", "training_mode"])?;
    if ctx.int("training_mode", 0)? != 0 {
        return Err(ctx.err("training_mode=1 not supported (inference only)"));
    }
    if ctx.int("spatial", 1)? != 1 {
        return Err(ctx.err("spatial=0 not supported"));
    }
    let x = req_act(ctx, ins, 0, "X")?;
    if !matches!(x.form, Form::Nchw | Form::Flat) {
        return Err(ctx.err(format!(
            "input of shape {:?} is not an NCHW map or a [1, C] vector",
            x.dims()
        )));
    }
    let mut p = Vec::new();
    for (i, what) in [(1, "scale"), (2, "B"), (3, "input_mean"), (4, "input_var")] {
        let c = req_const(ctx, ins, i, what)?;
        let v = f32s(ctx, &c, what)?;
        if v.len() != x.c {
            return Err(ctx.err(format!(
                "{what} has {} values for {} channels",
                v.len(),
                x.c
            )));
        }
        p.push(v.to_vec());
    }
    let eps = ctx.float("epsilon", 1e-5)?;
    let [gamma, beta, mean, var] = <[Vec<f32>; 4]>::try_from(p)
        .map_err(|_| ctx.err("internal error: BatchNorm parameters"))?;
    let op = Op::BatchNorm(BatchNorm {
        gamma,
        beta,
        mean,
        var,
        eps,
    });
    let v = imp.push(&ctx.name, op, &[x.v], x.shape());
    Ok(vec![Sym::Act(Act {
        v,
        nonneg: false,
        ..x
    })])
}

fn relu(imp: &mut Importer, ctx: &NodeCtx, ins: &[Option<Sym>]) -> Result<Vec<Sym>, OnnxError> {
    let x = req_act(ctx, ins, 0, "X")?;
    let v = imp.push(&ctx.name, Op::Relu, &[x.v], x.shape());
    Ok(vec![Sym::Act(Act {
        v,
        nonneg: true,
        ..x
    })])
}

fn clip(imp: &mut Importer, ctx: &NodeCtx, ins: &[Option<Sym>]) -> Result<Vec<Sym>, OnnxError> {
    let (min, max) = if ctx.opset < 11 {
        ctx.only_attrs(&["min", "max"])?;
        (
            ctx.has("min").then(|| ctx.float("min", 0.0)).transpose()?,
            ctx.has("max").then(|| ctx.float("max", 0.0)).transpose()?,
        )
    } else {
        ctx.only_attrs(&[])?;
        let get = |i: usize, what: &str| -> Result<Option<f32>, OnnxError> {
            opt_const(ctx, ins, i, what)?
                .map(|c| {
                    c.scalar()
                        .ok_or_else(|| ctx.err(format!("{what} must be a scalar")))
                })
                .transpose()
        };
        (get(1, "min")?, get(2, "max")?)
    };
    let x = req_act(ctx, ins, 0, "input")?;
    if let Some(hi) = max.filter(|&m| m.is_nan() || m < f32::MAX) {
        return Err(ctx.err(format!(
            "max {hi} not supported (only Clip(0, inf), i.e. ReLU; ReLU6 and other bounded clips are not)"
        )));
    }
    match min {
        None => Ok(vec![Sym::Act(x)]),
        Some(lo) if lo <= -f32::MAX => Ok(vec![Sym::Act(x)]),
        Some(0.0) => relu(imp, ctx, ins),
        Some(lo) => Err(ctx.err(format!(
            "min {lo} not supported (only 0, i.e. ReLU, or no lower bound)"
        ))),
    }
}

/// The per-channel values of a constant that broadcasts over `x` along its
/// channel axis only.
fn per_channel(ctx: &NodeCtx, x: &Act, k: &Const) -> Result<Vec<f32>, OnnxError> {
    let vals = f32s(ctx, k, "the constant operand")?;
    let dims = x.dims();
    let axis = match x.form {
        Form::Nchw | Form::Flat => 1,
        Form::Nhwc => 3,
        _ => {
            return Err(ctx.err(format!(
                "arithmetic on a tensor of shape {dims:?} is not supported"
            )))
        }
    };
    let fail = || {
        ctx.err(format!(
            "constant of shape {:?} does not broadcast per channel over {dims:?} (only per-channel or scalar constants are supported)",
            k.dims
        ))
    };
    if k.dims.len() > dims.len() {
        return Err(fail());
    }
    let lead = dims.len() - k.dims.len();
    for (i, &d) in k.dims.iter().enumerate() {
        if d != 1 && !(i + lead == axis && d == x.c) {
            return Err(fail());
        }
    }
    match vals.len() {
        1 => Ok(vec![vals[0]; x.c]),
        n if n == x.c => Ok(vals.to_vec()),
        _ => Err(fail()),
    }
}

fn binary(imp: &mut Importer, ctx: &NodeCtx, ins: &[Option<Sym>]) -> Result<Vec<Sym>, OnnxError> {
    ctx.only_attrs(&[])?;
    let a = req(ctx, ins, 0, "A")?;
    let b = req(ctx, ins, 1, "B")?;
    let (x, k, act_first) = match (a, b) {
        (Sym::Const(p), Sym::Const(q)) => return consts::binary(ctx, p, q),
        (Sym::Act(x), Sym::Act(y)) => {
            if ctx.op != "Add" {
                return Err(ctx.err(format!(
                    "{} of two computed tensors is not supported (only Add)",
                    ctx.op
                )));
            }
            let same_form = x.form == y.form && !matches!(x.form, Form::Padded(_));
            if !same_form || x.shape() != y.shape() {
                return Err(ctx.err(format!(
                    "Add of shapes {:?} and {:?} not supported (both operands must have the same shape; broadcasting is not supported)",
                    x.dims(),
                    y.dims()
                )));
            }
            let v = imp.push(&ctx.name, Op::Add, &[x.v, y.v], x.shape());
            return Ok(vec![Sym::Act(Act {
                v,
                nonneg: x.nonneg && y.nonneg,
                ..*x
            })]);
        }
        (Sym::Act(x), Sym::Const(k)) => (*x, k.clone(), true),
        (Sym::Const(k), Sym::Act(x)) => (*x, k.clone(), false),
    };
    if !act_first && matches!(ctx.op, "Sub" | "Div") {
        return Err(ctx.err(format!(
            "{} with a constant first operand is not supported",
            ctx.op
        )));
    }
    let vals = per_channel(ctx, &x, &k)?;
    let c = x.c;
    let (gamma, beta) = match ctx.op {
        "Add" => (vec![1.0; c], vals),
        "Sub" => (vec![1.0; c], vals.iter().map(|v| -v).collect()),
        "Mul" => (vals, vec![0.0; c]),
        _ => {
            if vals.contains(&0.0) {
                return Err(ctx.err("division by zero"));
            }
            (vals.iter().map(|v| 1.0 / v).collect(), vec![0.0; c])
        }
    };
    let nonneg = x.nonneg && gamma.iter().all(|&g| g >= 0.0) && beta.iter().all(|&b| b >= 0.0);
    let bias_only = matches!(ctx.op, "Add" | "Sub");
    // `(x - 0) / sqrt(1 + 0) * gamma + beta`: exact for a bias or a scale.
    let op = Op::BatchNorm(BatchNorm {
        gamma,
        beta,
        mean: vec![0.0; c],
        var: vec![1.0; c],
        eps: 0.0,
    });
    let v = if bias_only {
        imp.push_bias_add(&ctx.name, op, x.v, x.shape())
    } else {
        imp.push(&ctx.name, op, &[x.v], x.shape())
    };
    Ok(vec![Sym::Act(Act { v, nonneg, ..x })])
}

fn concat(imp: &mut Importer, ctx: &NodeCtx, ins: &[Option<Sym>]) -> Result<Vec<Sym>, OnnxError> {
    ctx.only_attrs(&["axis"])?;
    if !ctx.has("axis") {
        return Err(ctx.err("axis is required"));
    }
    let axis = ctx.int("axis", 1)?;
    let syms = (0..ins.len().max(1))
        .map(|i| req(ctx, ins, i, "input"))
        .collect::<Result<Vec<_>, _>>()?;
    if syms.iter().all(|s| matches!(s, Sym::Const(_))) {
        return consts::concat(ctx, &syms, axis);
    }
    let acts = syms
        .iter()
        .map(|s| match s {
            Sym::Act(a) => Ok(*a),
            Sym::Const(_) => {
                Err(ctx.err("concatenating a constant with computed tensors is not supported"))
            }
        })
        .collect::<Result<Vec<Act>, _>>()?;
    let first = acts[0];
    let dims = first.dims();
    let channel_axis = match first.form {
        Form::Nchw | Form::Flat => 1,
        Form::Nhwc => 3,
        _ => usize::MAX,
    };
    let ax = norm_axes(ctx, &[axis], dims.len())?[0];
    if ax != channel_axis {
        return Err(ctx.err(format!(
            "concatenation along axis {axis} of {dims:?} tensors is not supported (only along channels)"
        )));
    }
    let mut c = 0usize;
    for a in &acts {
        if a.form != first.form || (a.h, a.w) != (first.h, first.w) {
            return Err(ctx.err(format!(
                "inputs of shapes {:?} and {:?} cannot be concatenated along channels",
                dims,
                a.dims()
            )));
        }
        c = c
            .checked_add(a.c)
            .ok_or_else(|| ctx.err("channel count overflows"))?;
    }
    if acts.len() == 1 {
        return Ok(vec![Sym::Act(first)]);
    }
    let shape = Shape { c, ..first.shape() };
    let inputs: Vec<_> = acts.iter().map(|a| a.v).collect();
    let v = imp.push(&ctx.name, Op::Concat, &inputs, shape);
    Ok(vec![Sym::Act(Act {
        v,
        c,
        nonneg: acts.iter().all(|a| a.nonneg),
        ..first
    })])
}

/// A `[1, K]` activation for Gemm or MatMul.
fn vector_input(ctx: &NodeCtx, ins: &[Option<Sym>]) -> Result<Act, OnnxError> {
    let a = req_act(ctx, ins, 0, "A")?;
    if a.form != Form::Flat {
        return Err(ctx.err(format!(
            "input of shape {:?} not supported (only [1, K] vectors, e.g. after Flatten)",
            a.dims()
        )));
    }
    Ok(a)
}

fn push_fc(
    imp: &mut Importer,
    ctx: &NodeCtx,
    a: &Act,
    outputs: usize,
    weight: Vec<f32>,
    bias: Vec<f32>,
) -> Vec<Sym> {
    let shape = Shape {
        c: outputs,
        h: 1,
        w: 1,
    };
    let op = Op::Fc(Fc {
        inputs: a.c,
        outputs,
        weight,
        bias,
    });
    let v = imp.push(&ctx.name, op, &[a.v], shape);
    vec![Sym::Act(Act {
        v,
        c: outputs,
        h: 1,
        w: 1,
        nonneg: false,
        form: Form::Flat,
    })]
}

fn gemm(imp: &mut Importer, ctx: &NodeCtx, ins: &[Option<Sym>]) -> Result<Vec<Sym>, OnnxError> {
    ctx.only_attrs(&["alpha", "beta", "transA", "transB"])?;
    let a = vector_input(ctx, ins)?;
    let b = req_const(ctx, ins, 1, "B")?;
    let c = opt_const(ctx, ins, 2, "C")?;
    if ctx.int("transA", 0)? != 0 {
        return Err(ctx.err("transA=1 not supported"));
    }
    let trans_b = match ctx.int("transB", 0)? {
        0 => false,
        1 => true,
        v => return Err(ctx.err(format!("transB {v} not supported"))),
    };
    let alpha = ctx.float("alpha", 1.0)?;
    let beta = ctx.float("beta", 1.0)?;
    let [r0, r1] = b.dims[..] else {
        return Err(ctx.err(format!("B of shape {:?} is not 2-D", b.dims)));
    };
    let (k, n) = if trans_b { (r1, r0) } else { (r0, r1) };
    if k != a.c {
        return Err(ctx.err(format!(
            "B of shape {:?} (transB={}) needs {k} input features, but the input has {}",
            b.dims, trans_b as u8, a.c
        )));
    }
    let bv = f32s(ctx, &b, "B")?;
    let mut weight = vec![0.0f32; bv.len()];
    for o in 0..n {
        for i in 0..k {
            let src = if trans_b { o * k + i } else { i * n + o };
            weight[o * k + i] = alpha * bv[src];
        }
    }
    let bias = match c {
        None => vec![0.0; n],
        Some(c) => {
            let cv = f32s(ctx, &c, "C")?;
            let shape_ok = c.dims.iter().rev().skip(1).all(|&d| d == 1)
                && c.dims.len() <= 2
                && (cv.len() == n || cv.len() == 1);
            if !shape_ok {
                return Err(ctx.err(format!(
                    "C of shape {:?} does not broadcast to [1, {n}]",
                    c.dims
                )));
            }
            (0..n)
                .map(|o| beta * if cv.len() == 1 { cv[0] } else { cv[o] })
                .collect()
        }
    };
    Ok(push_fc(imp, ctx, &a, n, weight, bias))
}

fn matmul(imp: &mut Importer, ctx: &NodeCtx, ins: &[Option<Sym>]) -> Result<Vec<Sym>, OnnxError> {
    ctx.only_attrs(&[])?;
    let a = vector_input(ctx, ins)?;
    let b = req_const(ctx, ins, 1, "B")?;
    let [k, n] = b.dims[..] else {
        return Err(ctx.err(format!("B of shape {:?} is not 2-D", b.dims)));
    };
    if k != a.c {
        return Err(ctx.err(format!(
            "B of shape {:?} needs {k} input features, but the input has {}",
            b.dims, a.c
        )));
    }
    let bv = f32s(ctx, &b, "B")?;
    let mut weight = vec![0.0f32; bv.len()];
    for o in 0..n {
        for i in 0..k {
            weight[o * k + i] = bv[i * n + o];
        }
    }
    Ok(push_fc(imp, ctx, &a, n, weight, vec![0.0; n]))
}

fn softmax(imp: &mut Importer, ctx: &NodeCtx, ins: &[Option<Sym>]) -> Result<Vec<Sym>, OnnxError> {
    ctx.only_attrs(&["axis"])?;
    let x = req_act(ctx, ins, 0, "input")?;
    let dims = x.dims();
    let axis = ctx.int("axis", if ctx.opset < 13 { 1 } else { -1 })?;
    let ax = norm_axes(ctx, &[axis], dims.len())?[0];
    // Before opset 13 the input is coerced to 2-D at `axis`: softmax over all axes
    // from `axis` on, which is the channels alone when H = W = 1.
    let over_channels = x.h == 1
        && x.w == 1
        && match x.form {
            Form::Flat => ax == 1,
            Form::Nchw => ax == 1,
            Form::Nhwc => ax == 3 || (ctx.opset < 13 && ax >= 1),
            _ => false,
        };
    if !over_channels {
        return Err(ctx.err(format!(
            "softmax along axis {axis} of a {dims:?} tensor is not supported (only over the channels of a [1, C] or [1, C, 1, 1] tensor)"
        )));
    }
    let v = imp.push(&ctx.name, Op::Softmax, &[x.v], x.shape());
    Ok(vec![Sym::Act(Act {
        v,
        nonneg: true,
        ..x
    })])
}

fn dropout(ctx: &NodeCtx, ins: &[Option<Sym>]) -> Result<Vec<Sym>, OnnxError> {
    ctx.only_attrs(&["ratio", "seed"])?;
    if let Some(t) = opt_const(ctx, ins, 2, "training_mode")? {
        if t.scalar().is_some_and(|v| v != 0.0) {
            return Err(ctx.err("training_mode=true not supported (inference only)"));
        }
    } else if ins.get(2).is_some_and(|s| s.is_some()) {
        return Err(ctx.err("training_mode must be a constant"));
    }
    Ok(vec![req(ctx, ins, 0, "data")?.clone()])
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
