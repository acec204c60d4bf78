//! Per-op import: each handler checks its node's attributes and inputs and appends
//! the equivalent engine nodes.

use super::consts;
use super::error::OnnxError;
use super::import::{Act, Form, Importer, Sym};
use super::layout;
use super::node::NodeCtx;
use super::tensor::Const;
use super::window;
use crate::graph::{BatchNorm, Fc, Op, Shape};
use std::rc::Rc;

/// Imports one node; returns the symbols of its leading outputs.
pub(crate) fn import_node(
    imp: &mut Importer,
    ctx: &NodeCtx,
    ins: &[Option<Sym>],
) -> Result<Vec<Sym>, OnnxError> {
    match ctx.op {
        "Conv" => window::conv(imp, ctx, ins),
        "MaxPool" | "AveragePool" => window::pool(imp, ctx, ins),
        "GlobalAveragePool" => window::global_avg_pool(imp, ctx, ins),
        "ReduceMean" => window::reduce_mean(imp, ctx, ins),
        "Pad" => window::pad(ctx, ins),
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
pub(crate) fn f32s<'c>(ctx: &NodeCtx, c: &'c Const, what: &str) -> Result<&'c [f32], OnnxError> {
    c.f32s()
        .ok_or_else(|| ctx.err(format!("{what} must be a float tensor")))
}

/// A constant integer list (axes, pads, shapes).
pub(crate) fn ints<'c>(ctx: &NodeCtx, c: &'c Const, what: &str) -> Result<&'c [i64], OnnxError> {
    c.i64s()
        .ok_or_else(|| ctx.err(format!("{what} must be an integer tensor")))
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
