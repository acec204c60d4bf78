//! Reshape, Flatten, Squeeze, Unsqueeze and Transpose: views of activations, and
//! the recognition of channel shuffles.
//!
//! A shuffle is whatever Reshape-Transpose-Reshape sequence splits the channels
//! into `a x b` (`[1, a, b, H, W]`, `[1, a, b, H*W]`, or `[1, H, W, a, b]` on an
//! NHWC view), swaps the two factors, and reads the result back in memory order:
//! that is `Op::ChannelShuffle { groups: a }`. The paper's and torchvision's
//! `[N, g, C/g, H, W]` gives `groups = g`; the authors' released code's
//! `[N, C/g, g, H, W]` gives `groups = C/g`, the inverse permutation. The steps may
//! sit anywhere in the graph, with Relu or Identity between them.

use super::error::OnnxError;
use super::import::{Act, Form, Importer, Split, Sym};
use super::node::NodeCtx;
use super::ops::{ints, norm_axes, opt_const, req, req_const};
use super::tensor::{numel, Const};
use crate::graph::Op;
use std::rc::Rc;

/// The dims of any symbol.
fn dims_of(s: &Sym) -> Vec<usize> {
    match s {
        Sym::Act(a) => a.dims(),
        Sym::Const(c) => c.dims.clone(),
    }
}

/// Resolves a Reshape target (`0` copies the input dim unless `allowzero`, `-1`
/// is inferred) against the input dims.
pub(crate) fn resolve_reshape(
    ctx: &NodeCtx,
    input: &[usize],
    shape: &[i64],
    allowzero: bool,
) -> Result<Vec<usize>, OnnxError> {
    let total = numel(input).ok_or_else(|| ctx.err("input size overflows"))?;
    let mut out = Vec::with_capacity(shape.len());
    let mut infer = None;
    for (i, &s) in shape.iter().enumerate() {
        match s {
            -1 => {
                if infer.replace(i).is_some() {
                    return Err(ctx.err(format!("shape {shape:?} has more than one -1")));
                }
                out.push(1);
            }
            0 if !allowzero => out.push(*input.get(i).ok_or_else(|| {
                ctx.err(format!(
                    "shape {shape:?}: the 0 at position {i} copies a dimension the {input:?} input does not have"
                ))
            })?),
            s => out.push(
                usize::try_from(s)
                    .map_err(|_| ctx.err(format!("shape {shape:?} has an invalid dimension {s}")))?,
            ),
        }
    }
    let known = numel(&out).ok_or_else(|| ctx.err(format!("shape {shape:?} overflows")))?;
    let mismatch = |what: String| {
        let mut msg = format!("cannot reshape {input:?} ({total} elements) to {shape:?}: {what}");
        // The reshape that opens a channel shuffle: say so in its own terms.
        let split = match (input, shape.len()) {
            ([1, _, _, _], 5) => true,
            ([1, _, h, w], 4) => usize::try_from(shape[3]).ok() == h.checked_mul(*w),
            _ => false,
        };
        if split && matches!(shape[0], -1..=1) {
            if let Some(&g) = shape.get(1).filter(|&&g| g > 0) {
                msg.push_str(&format!(
                    "; as a channel shuffle, {} channels do not split into {g} groups",
                    input[1]
                ));
            }
        }
        ctx.err(msg)
    };
    match infer {
        Some(i) => {
            if known == 0 || total % known != 0 {
                return Err(mismatch(format!(
                    "{total} is not a multiple of the {known} elements the other dimensions give"
                )));
            }
            out[i] = total / known;
        }
        None => {
            if known != total {
                return Err(mismatch(format!("the target has {known} elements")));
            }
        }
    }
    Ok(out)
}

/// Memory order of an activation's engine value as ONNX reads it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mem {
    Nchw,
    Nhwc,
}

/// The engine value holding `x` in plain memory order: a transposed split is
/// materialised as a channel shuffle.
fn materialize(imp: &mut Importer, ctx: &NodeCtx, x: &Act) -> Result<(Act, Mem), OnnxError> {
    match x.form {
        Form::Nchw | Form::Flat => Ok((*x, Mem::Nchw)),
        Form::Nhwc => Ok((*x, Mem::Nhwc)),
        Form::Split(s) => {
            let mem = if s.nhwc { Mem::Nhwc } else { Mem::Nchw };
            let mut y = *x;
            if s.transposed && s.a > 1 && s.b > 1 {
                y.v = imp.push(
                    &ctx.name,
                    Op::ChannelShuffle { groups: s.a },
                    &[x.v],
                    x.shape(),
                );
            }
            Ok((y, mem))
        }
        Form::Padded(_) => {
            Err(ctx.err("the output of a Pad can only feed a Conv, MaxPool or AveragePool"))
        }
    }
}

/// Reinterprets an activation with new dims.
fn reshape_act(
    imp: &mut Importer,
    ctx: &NodeCtx,
    x: &Act,
    target: &[usize],
) -> Result<Act, OnnxError> {
    if target == x.dims() {
        return Ok(*x);
    }
    let (y, mem) = materialize(imp, ctx, x)?;
    let (c, h, w) = (y.c, y.h, y.w);
    let with = |form: Form| Act { form, ..y };
    let split = |a: usize, b: usize, nhwc: bool, merged: bool| {
        with(Form::Split(Split {
            a,
            b,
            transposed: false,
            nhwc,
            merged,
        }))
    };
    let divides = |a: usize, b: usize| a.checked_mul(b) == Some(c);
    if h == 1 && w == 1 {
        match *target {
            [1, n] if n == c => return Ok(with(Form::Flat)),
            [1, n, 1, 1] if n == c => return Ok(with(Form::Nchw)),
            [1, 1, 1, n] if n == c => return Ok(with(Form::Nhwc)),
            _ => {}
        }
    }
    let found = match (mem, target) {
        (Mem::Nchw, &[1, n, th, tw]) if (n, th, tw) == (c, h, w) => Some(with(Form::Nchw)),
        (Mem::Nchw, &[1, a, b, th, tw]) if divides(a, b) && (th, tw) == (h, w) => {
            Some(split(a, b, false, false))
        }
        (Mem::Nchw, &[1, a, b, hw]) if divides(a, b) && Some(hw) == h.checked_mul(w) => {
            Some(split(a, b, false, true))
        }
        (Mem::Nhwc, &[1, th, tw, n]) if (n, th, tw) == (c, h, w) => Some(with(Form::Nhwc)),
        (Mem::Nhwc, &[1, th, tw, a, b]) if divides(a, b) && (th, tw) == (h, w) => {
            Some(split(a, b, true, false))
        }
        _ => None,
    };
    found.ok_or_else(|| {
        let hint = if h.saturating_mul(w) > 1 && target.len() == 2 {
            " (flattening is only supported after global pooling, when H = W = 1)"
        } else {
            " (supported: the channel-shuffle splits, NCHW <-> [1, C] at 1x1, identity)"
        };
        ctx.err(format!(
            "reshape of a {:?} tensor to {target:?} is not supported{hint}",
            x.dims()
        ))
    })
}

/// Applies new dims to a symbol: constants change dims, activations are reviewed.
fn apply(
    imp: &mut Importer,
    ctx: &NodeCtx,
    x: &Sym,
    target: Vec<usize>,
) -> Result<Vec<Sym>, OnnxError> {
    match x {
        Sym::Const(c) => {
            if numel(&target) != Some(c.len()) {
                return Err(ctx.err(format!(
                    "cannot reshape a constant of shape {:?} to {target:?}",
                    c.dims
                )));
            }
            Ok(vec![Sym::Const(Rc::new(Const {
                dims: target,
                data: c.data.clone(),
            }))])
        }
        Sym::Act(a) => Ok(vec![Sym::Act(reshape_act(imp, ctx, a, &target)?)]),
    }
}

/// `Reshape`.
pub(crate) fn reshape(
    imp: &mut Importer,
    ctx: &NodeCtx,
    ins: &[Option<Sym>],
) -> Result<Vec<Sym>, OnnxError> {
    ctx.only_attrs(&["allowzero"])?;
    let x = req(ctx, ins, 0, "data")?;
    let shape = req_const(ctx, ins, 1, "shape")?;
    let shape = ints(ctx, &shape, "shape")?;
    let allowzero = ctx.int("allowzero", 0)? != 0;
    let target = resolve_reshape(ctx, &dims_of(x), shape, allowzero)?;
    apply(imp, ctx, x, target)
}

/// `Flatten`: `[prod(dims[..axis]), prod(dims[axis..])]`.
pub(crate) fn flatten(
    imp: &mut Importer,
    ctx: &NodeCtx,
    ins: &[Option<Sym>],
) -> Result<Vec<Sym>, OnnxError> {
    ctx.only_attrs(&["axis"])?;
    let x = req(ctx, ins, 0, "input")?;
    let dims = dims_of(x);
    let r = dims.len() as i64;
    let axis = ctx.int("axis", 1)?;
    let a = if axis < 0 { axis + r } else { axis };
    if !(0..=r).contains(&a) {
        return Err(ctx.err(format!("axis {axis} is out of range for rank {r}")));
    }
    let (lo, hi) = dims.split_at(a as usize);
    let target = vec![
        numel(lo).ok_or_else(|| ctx.err("size overflows"))?,
        numel(hi).ok_or_else(|| ctx.err("size overflows"))?,
    ];
    apply(imp, ctx, x, target)
}

/// The `axes` of Squeeze/Unsqueeze: an attribute before opset 13, an input after.
fn axes(ctx: &NodeCtx, ins: &[Option<Sym>]) -> Result<Option<Vec<i64>>, OnnxError> {
    if ctx.opset < 13 {
        ctx.only_attrs(&["axes"])?;
        ctx.ints("axes")
    } else {
        ctx.only_attrs(&[])?;
        opt_const(ctx, ins, 1, "axes")?
            .map(|c| ints(ctx, &c, "axes").map(|v| v.to_vec()))
            .transpose()
    }
}

/// `Squeeze`: drops size-1 axes (all of them when no axes are given).
pub(crate) fn squeeze(
    imp: &mut Importer,
    ctx: &NodeCtx,
    ins: &[Option<Sym>],
) -> Result<Vec<Sym>, OnnxError> {
    let x = req(ctx, ins, 0, "data")?;
    let dims = dims_of(x);
    let drop = match axes(ctx, ins)? {
        None => (0..dims.len()).filter(|&i| dims[i] == 1).collect(),
        Some(a) => norm_axes(ctx, &a, dims.len())?,
    };
    if let Some(&i) = drop.iter().find(|&&i| dims[i] != 1) {
        return Err(ctx.err(format!(
            "cannot squeeze axis {i} of size {} in {dims:?}",
            dims[i]
        )));
    }
    let target = (0..dims.len())
        .filter(|i| !drop.contains(i))
        .map(|i| dims[i])
        .collect();
    apply(imp, ctx, x, target)
}

/// `Unsqueeze`: inserts size-1 axes.
pub(crate) fn unsqueeze(
    imp: &mut Importer,
    ctx: &NodeCtx,
    ins: &[Option<Sym>],
) -> Result<Vec<Sym>, OnnxError> {
    let x = req(ctx, ins, 0, "data")?;
    let dims = dims_of(x);
    let a = axes(ctx, ins)?.ok_or_else(|| ctx.err("axes are required"))?;
    let rank = dims.len().saturating_add(a.len());
    let add = norm_axes(ctx, &a, rank)?;
    if add.len() != a.len() {
        return Err(ctx.err(format!("axes {a:?} repeat an axis")));
    }
    let mut it = dims.iter();
    let target = (0..rank)
        .map(|i| {
            if add.contains(&i) {
                Some(1)
            } else {
                it.next().copied()
            }
        })
        .collect::<Option<Vec<usize>>>()
        .ok_or_else(|| ctx.err("internal error: unsqueeze"))?;
    apply(imp, ctx, x, target)
}

/// `Transpose`: NCHW <-> NHWC views and the middle step of a channel shuffle.
pub(crate) fn transpose(ctx: &NodeCtx, ins: &[Option<Sym>]) -> Result<Vec<Sym>, OnnxError> {
    ctx.only_attrs(&["perm"])?;
    let x = match req(ctx, ins, 0, "data")? {
        Sym::Act(a) => *a,
        Sym::Const(c) => {
            return Err(ctx.err(format!(
                "transposing a constant of shape {:?} is not supported",
                c.dims
            )))
        }
    };
    let dims = x.dims();
    let r = dims.len();
    let perm: Vec<i64> = ctx
        .ints("perm")?
        .unwrap_or_else(|| (0..r as i64).rev().collect());
    if perm.len() != r || norm_axes(ctx, &perm, r)?.len() != r {
        return Err(ctx.err(format!("perm {perm:?} is not a permutation of {r} axes")));
    }
    let p: Vec<usize> = perm
        .iter()
        .map(|&a| if a < 0 { a + r as i64 } else { a } as usize)
        .collect();
    let identity = p.iter().enumerate().all(|(i, &a)| i == a);
    let form = match (x.form, &p[..]) {
        _ if identity => Some(x.form),
        (Form::Nchw, [0, 2, 3, 1]) => Some(Form::Nhwc),
        (Form::Nhwc, [0, 3, 1, 2]) => Some(Form::Nchw),
        (Form::Split(s), [0, 2, 1, 3, 4]) if !s.nhwc && !s.merged => Some(Form::Split(Split {
            transposed: !s.transposed,
            ..s
        })),
        (Form::Split(s), [0, 2, 1, 3]) if s.merged => Some(Form::Split(Split {
            transposed: !s.transposed,
            ..s
        })),
        (Form::Split(s), [0, 1, 2, 4, 3]) if s.nhwc => Some(Form::Split(Split {
            transposed: !s.transposed,
            ..s
        })),
        _ => None,
    };
    match form {
        Some(form) => Ok(vec![Sym::Act(Act { form, ..x })]),
        None => Err(ctx.err(format!(
            "perm {perm:?} of a {dims:?} tensor is not supported (only NCHW <-> NHWC and the swap inside a channel shuffle)"
        ))),
    }
}
