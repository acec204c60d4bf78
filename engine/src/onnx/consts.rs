//! Constant folding of the small integer arithmetic exporters emit around shapes
//! (`Shape -> Gather -> Unsqueeze -> Concat -> Reshape`), and of Constant and Cast.

use super::error::OnnxError;
use super::import::Sym;
use super::node::NodeCtx;
use super::ops::{ints, norm_axes, opt_const, req, req_const};
use super::proto::data_type;
use super::tensor::{numel, Const, Data};
use std::rc::Rc;

fn out(c: Const) -> Result<Vec<Sym>, OnnxError> {
    Ok(vec![Sym::Const(Rc::new(c))])
}

/// `Constant`: the value of its attribute.
pub(crate) fn constant(ctx: &NodeCtx) -> Result<Vec<Sym>, OnnxError> {
    ctx.only_attrs(&[
        "value",
        "value_float",
        "value_floats",
        "value_int",
        "value_ints",
    ])?;
    if let Some(t) = ctx.tensor("value")? {
        return out(Const::from_proto(t, &ctx.name)?);
    }
    if ctx.has("value_float") {
        return out(Const::scalar_f32(ctx.float("value_float", 0.0)?));
    }
    if let Some(v) = ctx.floats("value_floats")? {
        return out(Const {
            dims: vec![v.len()],
            data: Data::F32(v),
        });
    }
    if ctx.has("value_int") {
        return out(Const {
            dims: vec![],
            data: Data::I64(vec![ctx.int("value_int", 0)?]),
        });
    }
    if let Some(v) = ctx.ints("value_ints")? {
        return out(Const::ints(v));
    }
    Err(ctx.err("no value attribute"))
}

/// `Shape`: the dims of an activation (at the trace size) or a constant.
pub(crate) fn shape(ctx: &NodeCtx, ins: &[Option<Sym>]) -> Result<Vec<Sym>, OnnxError> {
    ctx.only_attrs(&["start", "end"])?;
    let dims = match req(ctx, ins, 0, "data")? {
        Sym::Act(a) => a.dims(),
        Sym::Const(c) => c.dims.clone(),
    };
    let r = dims.len() as i64;
    let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
    let start = clamp(ctx.int("start", 0)?);
    let end = clamp(ctx.int("end", r)?);
    let sel = dims.get(start..end.max(start)).unwrap_or(&[]);
    out(Const::ints(sel.iter().map(|&d| d as i64).collect()))
}

/// `Gather` on a 1-D constant along axis 0.
pub(crate) fn gather(ctx: &NodeCtx, ins: &[Option<Sym>]) -> Result<Vec<Sym>, OnnxError> {
    ctx.only_attrs(&["axis"])?;
    let (Sym::Const(data), Sym::Const(idx)) =
        (req(ctx, ins, 0, "data")?, req(ctx, ins, 1, "indices")?)
    else {
        return Err(ctx.err("only Gather on constants (shape arithmetic) is supported"));
    };
    if data.dims.len() != 1 || norm_axes(ctx, &[ctx.int("axis", 0)?], 1)? != [0] {
        return Err(ctx.err(format!(
            "Gather on a constant of shape {:?} is not supported (only 1-D, axis 0)",
            data.dims
        )));
    }
    let n = data.len() as i64;
    let pick = ints(ctx, idx, "indices")?
        .iter()
        .map(|&i| {
            let j = if i < 0 { i + n } else { i };
            if (0..n).contains(&j) {
                Ok(j as usize)
            } else {
                Err(ctx.err(format!("index {i} out of range for {n} elements")))
            }
        })
        .collect::<Result<Vec<usize>, _>>()?;
    let data = match &data.data {
        Data::F32(v) => Data::F32(pick.iter().map(|&i| v[i]).collect()),
        Data::I64(v) => Data::I64(pick.iter().map(|&i| v[i]).collect()),
    };
    out(Const {
        dims: idx.dims.clone(),
        data,
    })
}

/// `Cast`: converts constants; a cast of an activation to FLOAT is an identity.
pub(crate) fn cast(ctx: &NodeCtx, ins: &[Option<Sym>]) -> Result<Vec<Sym>, OnnxError> {
    ctx.only_attrs(&["to", "saturate"])?;
    let to = ctx.int("to", 0)?;
    let x = req(ctx, ins, 0, "input")?;
    let to_float = to == data_type::FLOAT as i64 || to == data_type::DOUBLE as i64;
    let to_int = to == data_type::INT64 as i64 || to == data_type::INT32 as i64;
    match x {
        Sym::Act(_) if to == data_type::FLOAT as i64 => Ok(vec![x.clone()]),
        Sym::Const(c) if to_float => out(Const {
            dims: c.dims.clone(),
            data: match &c.data {
                Data::F32(v) => Data::F32(v.clone()),
                Data::I64(v) => Data::F32(v.iter().map(|&x| x as f32).collect()),
            },
        }),
        Sym::Const(c) if to_int => out(Const {
            dims: c.dims.clone(),
            data: match &c.data {
                Data::I64(v) => Data::I64(v.clone()),
                Data::F32(v) => Data::I64(
                    v.iter()
                        .map(|&x| {
                            if x.is_finite() && x.abs() < 9.2e18 {
                                Ok(x.trunc() as i64)
                            } else {
                                Err(ctx.err(format!("cannot cast {x} to an integer")))
                            }
                        })
                        .collect::<Result<_, _>>()?,
                ),
            },
        }),
        _ => Err(ctx.err(format!("cast to element type {to} is not supported"))),
    }
}

/// Element-wise Add/Sub/Mul/Div of two constants of the same shape, or of a
/// constant and a one-element constant.
pub(crate) fn binary(ctx: &NodeCtx, a: &Const, b: &Const) -> Result<Vec<Sym>, OnnxError> {
    let dims = if a.dims == b.dims || b.len() == 1 && a.dims.len() >= b.dims.len() {
        a.dims.clone()
    } else if a.len() == 1 && b.dims.len() >= a.dims.len() {
        b.dims.clone()
    } else {
        return Err(ctx.err(format!(
            "constant arithmetic on shapes {:?} and {:?} is not supported",
            a.dims, b.dims
        )));
    };
    let n = numel(&dims).ok_or_else(|| ctx.err("shape overflows"))?;
    let at = |len: usize, i: usize| if len == 1 { 0 } else { i };
    let data = match (&a.data, &b.data) {
        (Data::F32(x), Data::F32(y)) => Data::F32(
            (0..n)
                .map(|i| {
                    let (p, q) = (x[at(x.len(), i)], y[at(y.len(), i)]);
                    match ctx.op {
                        "Add" => p + q,
                        "Sub" => p - q,
                        "Mul" => p * q,
                        _ => p / q,
                    }
                })
                .collect(),
        ),
        (Data::I64(x), Data::I64(y)) => Data::I64(
            (0..n)
                .map(|i| {
                    let (p, q) = (x[at(x.len(), i)], y[at(y.len(), i)]);
                    match ctx.op {
                        "Add" => p.checked_add(q),
                        "Sub" => p.checked_sub(q),
                        "Mul" => p.checked_mul(q),
                        _ => p.checked_div(q),
                    }
                    .ok_or_else(|| {
                        ctx.err(format!(
                            "integer overflow or division by zero in {p} and {q}"
                        ))
                    })
                })
                .collect::<Result<_, _>>()?,
        ),
        _ => return Err(ctx.err("operands of different element types")),
    };
    if (match &data {
        Data::F32(v) => v.len(),
        Data::I64(v) => v.len(),
    }) != n
    {
        return Err(ctx.err("internal error: constant arithmetic"));
    }
    out(Const { dims, data })
}

/// `Concat` of 1-D constants.
pub(crate) fn concat(ctx: &NodeCtx, syms: &[&Sym], axis: i64) -> Result<Vec<Sym>, OnnxError> {
    let mut f = Vec::new();
    let mut i = Vec::new();
    for s in syms {
        let Sym::Const(c) = s else {
            return Err(ctx.err("internal error: constant concat"));
        };
        if c.dims.len() != 1 || norm_axes(ctx, &[axis], 1)? != [0] {
            return Err(ctx.err(format!(
                "concatenating constants of shape {:?} is not supported (only 1-D)",
                c.dims
            )));
        }
        match &c.data {
            Data::F32(v) => f.extend_from_slice(v),
            Data::I64(v) => i.extend_from_slice(v),
        }
    }
    match (f.is_empty(), i.is_empty()) {
        (_, true) => out(Const {
            dims: vec![f.len()],
            data: Data::F32(f),
        }),
        (true, false) => out(Const::ints(i)),
        (false, false) => Err(ctx.err("operands of different element types")),
    }
}

/// `Slice` of a 1-D constant (e.g. `Shape(x)[2:]`).
pub(crate) fn slice(ctx: &NodeCtx, ins: &[Option<Sym>]) -> Result<Vec<Sym>, OnnxError> {
    let Sym::Const(data) = req(ctx, ins, 0, "data")? else {
        return Err(ctx.err(
            "slicing a computed tensor is not supported (only constants, for shape arithmetic)",
        ));
    };
    let (starts, ends, axes, steps) = if ctx.opset < 10 {
        ctx.only_attrs(&["starts", "ends", "axes"])?;
        (
            ctx.ints("starts")?.unwrap_or_default(),
            ctx.ints("ends")?.unwrap_or_default(),
            ctx.ints("axes")?,
            None,
        )
    } else {
        ctx.only_attrs(&[])?;
        let list = |i: usize, what: &str| -> Result<Option<Vec<i64>>, OnnxError> {
            opt_const(ctx, ins, i, what)?
                .map(|c| ints(ctx, &c, what).map(|v| v.to_vec()))
                .transpose()
        };
        let starts = ints(ctx, &*req_const(ctx, ins, 1, "starts")?, "starts")?.to_vec();
        let ends = ints(ctx, &*req_const(ctx, ins, 2, "ends")?, "ends")?.to_vec();
        (starts, ends, list(3, "axes")?, list(4, "steps")?)
    };
    let one_d = data.dims.len() == 1
        && starts.len() == 1
        && ends.len() == 1
        && axes
            .as_ref()
            .is_none_or(|a| a.len() == 1 && (a[0] == 0 || a[0] == -1))
        && steps.as_ref().is_none_or(|s| s.len() == 1);
    if !one_d {
        return Err(ctx.err(format!(
            "Slice of a constant of shape {:?} is not supported (only 1-D, one axis)",
            data.dims
        )));
    }
    let n = data.len() as i64;
    let step = steps.map_or(1, |s| s[0]);
    if step == 0 {
        return Err(ctx.err("step 0"));
    }
    let wrap = |v: i64| if v < 0 { v.saturating_add(n) } else { v };
    let (start, end) = if n == 0 {
        (0, 0)
    } else if step > 0 {
        (wrap(starts[0]).clamp(0, n), wrap(ends[0]).clamp(0, n))
    } else {
        (
            wrap(starts[0]).clamp(0, n - 1),
            wrap(ends[0]).clamp(-1, n - 1),
        )
    };
    let mut pick = Vec::new();
    let mut i = start;
    while (step > 0 && i < end) || (step < 0 && i > end) {
        pick.push(i as usize);
        i = i.saturating_add(step);
    }
    let data = match &data.data {
        Data::F32(v) => Data::F32(pick.iter().map(|&i| v[i]).collect()),
        Data::I64(v) => Data::I64(pick.iter().map(|&i| v[i]).collect()),
    };
    out(Const {
        dims: vec![pick.len()],
        data,
    })
}
