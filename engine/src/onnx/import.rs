//! The importer's state and its driver: model checks, the graph input, node-by-node
//! import in topological order, the graph output, and the final clean-up passes.
//!
//! Every ONNX value becomes a [`Sym`]: either a constant, or an activation ([`Act`])
//! backed by an engine value together with the ONNX view of it ([`Form`]): NCHW,
//! NHWC, a flat `[1, C]` vector, the 5-D (or 4-D) split of a channel shuffle, or a
//! zero-padded map awaiting the conv or pool it folds into. All shapes are concrete
//! at the *trace size*: the input size the file declares, or 224x224 where it
//! declares none.

use super::error::OnnxError;
use super::node::NodeCtx;
use super::proto::{
    data_type, DimensionValue, ModelProto, StringStringEntryProto, TensorProto, ValueInfoProto,
};
use super::tensor::{data_type_name, Const};
use super::{ops, topo};
use crate::graph::{Graph, InputSpec, Layout, Node, Op, Pads, Preprocess, Shape, Value, ValueId};
use std::collections::{HashMap, HashSet};
use std::rc::Rc;

/// Size used for dimensions the file leaves symbolic.
pub(crate) const DEFAULT_TRACE: usize = 224;
/// Largest input height or width accepted.
const MAX_DIM: usize = 1 << 16;
/// Largest channel count accepted for the input.
const MAX_INPUT_CHANNELS: usize = 1 << 16;

/// How an activation's engine value is viewed by ONNX.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Form {
    /// `[1, C, H, W]`.
    Nchw,
    /// `[1, H, W, C]` (the engine value is planar; this is ONNX's view of it).
    Nhwc,
    /// `[1, C]`; `H = W = 1`.
    Flat,
    /// The channels split in two factors, as inside a channel shuffle.
    Split(Split),
    /// `[1, C, H + top + bottom, W + left + right]`, the zero-padded value; it
    /// may only feed a Conv or a pool, into which the padding folds.
    Padded(Pads),
}

/// The channels of an activation viewed as `a x b` (`a * b = C`).
///
/// Untransposed, its ONNX dims are `[1, a, b, H, W]` (`merged`: `[1, a, b, H*W]`)
/// or, for an NHWC view, `[1, H, W, a, b]`; transposed (the middle step of a
/// shuffle) the two factors are swapped. Reading a transposed split in memory order
/// is a channel shuffle with `a` groups.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Split {
    /// First factor of the reshape.
    pub a: usize,
    /// Second factor.
    pub b: usize,
    /// The factors have been swapped by a Transpose.
    pub transposed: bool,
    /// The split view is of an NHWC tensor.
    pub nhwc: bool,
    /// The spatial axes are merged into one (`H*W`).
    pub merged: bool,
}

/// An activation: an engine value, its shape at the trace size, and its ONNX view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Act {
    /// Engine value.
    pub v: ValueId,
    /// Channels.
    pub c: usize,
    /// Height at the trace size (of the unpadded value for [`Form::Padded`]).
    pub h: usize,
    /// Width at the trace size.
    pub w: usize,
    /// Known to be non-negative (produced by a ReLU or from such values).
    pub nonneg: bool,
    /// ONNX view.
    pub form: Form,
}

impl Act {
    /// An NCHW activation.
    pub fn nchw(v: ValueId, s: Shape, nonneg: bool) -> Act {
        Act {
            v,
            c: s.c,
            h: s.h,
            w: s.w,
            nonneg,
            form: Form::Nchw,
        }
    }

    /// The engine shape of the value.
    pub fn shape(&self) -> Shape {
        Shape {
            c: self.c,
            h: self.h,
            w: self.w,
        }
    }

    /// The ONNX dims of this view.
    pub fn dims(&self) -> Vec<usize> {
        let (c, h, w) = (self.c, self.h, self.w);
        match self.form {
            Form::Nchw => vec![1, c, h, w],
            Form::Nhwc => vec![1, h, w, c],
            Form::Flat => vec![1, c],
            Form::Split(s) => {
                let (x, y) = if s.transposed { (s.b, s.a) } else { (s.a, s.b) };
                if s.nhwc {
                    vec![1, h, w, x, y]
                } else if s.merged {
                    vec![1, x, y, h.saturating_mul(w)]
                } else {
                    vec![1, x, y, h, w]
                }
            }
            Form::Padded(p) => vec![
                1,
                c,
                h.saturating_add(p.top).saturating_add(p.bottom),
                w.saturating_add(p.left).saturating_add(p.right),
            ],
        }
    }
}

/// An imported ONNX value.
#[derive(Clone, Debug)]
pub(crate) enum Sym {
    /// A constant (initializer, Constant node, or folded shape arithmetic).
    Const(Rc<Const>),
    /// An activation.
    Act(Act),
}

/// The importer's state.
pub(crate) struct Importer {
    /// Opset of the default domain.
    pub opset: i64,
    syms: HashMap<String, Sym>,
    inits: HashMap<String, TensorProto>,
    values: Vec<Value>,
    shapes: Vec<Shape>,
    nodes: Vec<Node>,
    bias_adds: Vec<usize>,
}

impl Importer {
    /// Appends an engine node; returns its output value.
    pub fn push(&mut self, name: &str, op: Op, inputs: &[ValueId], shape: Shape) -> ValueId {
        let output = self.values.len();
        self.values.push(Value {
            name: name.to_string(),
            channels: shape.c,
        });
        self.shapes.push(shape);
        self.nodes.push(Node {
            name: name.to_string(),
            op,
            inputs: inputs.to_vec(),
            output,
        });
        output
    }

    /// Like [`Importer::push`] for a per-channel bias add (a BatchNorm with unit
    /// scale), which the clean-up folds into a preceding Fc or Conv when it is that
    /// value's only reader.
    pub fn push_bias_add(&mut self, name: &str, op: Op, input: ValueId, shape: Shape) -> ValueId {
        self.bias_adds.push(self.nodes.len());
        self.push(name, op, &[input], shape)
    }

    /// The symbol of a value name, decoding an initializer on first use.
    fn get(&mut self, name: &str) -> Result<Option<Sym>, OnnxError> {
        if let Some(s) = self.syms.get(name) {
            return Ok(Some(s.clone()));
        }
        match self.inits.remove(name) {
            None => Ok(None),
            Some(t) => {
                let s = Sym::Const(Rc::new(Const::from_proto(t, name)?));
                self.syms.insert(name.to_string(), s.clone());
                Ok(Some(s))
            }
        }
    }
}

/// Static dims of the graph input (`None` for symbolic ones).
fn input_dims(vi: &ValueInfoProto, name: &str) -> Result<Vec<Option<usize>>, OnnxError> {
    let tt = vi
        .r#type
        .as_ref()
        .and_then(|t| t.tensor_type.as_ref())
        .ok_or_else(|| OnnxError::Model(format!("input '{name}' is not a tensor")))?;
    let et = tt.elem_type.unwrap_or(0);
    if et != data_type::FLOAT {
        return Err(OnnxError::Model(format!(
            "input '{name}' has element type {}; only FLOAT inputs are supported",
            data_type_name(et)
        )));
    }
    let shape = tt.shape.as_ref().ok_or_else(|| {
        OnnxError::Model(format!(
            "input '{name}' declares no shape (its rank and channel count must be known)"
        ))
    })?;
    Ok(shape
        .dim
        .iter()
        .map(|d| match d.value {
            Some(DimensionValue::DimValue(v)) if v > 0 => usize::try_from(v).ok(),
            _ => None,
        })
        .collect())
}

/// Reads `shufflenet.mean` / `shufflenet.scale` (comma-separated floats, one per
/// channel).
fn preprocess(
    meta: &[StringStringEntryProto],
    channels: usize,
) -> Result<Option<Preprocess>, OnnxError> {
    let get = |key: &str| -> Result<Option<Vec<f32>>, OnnxError> {
        let Some(e) = meta.iter().find(|e| e.key.as_deref() == Some(key)) else {
            return Ok(None);
        };
        let err = |what: String| OnnxError::Metadata {
            key: key.to_string(),
            what,
        };
        let text = e.value.as_deref().unwrap_or("");
        let vals = text
            .split(',')
            .map(|s| {
                s.trim()
                    .parse::<f32>()
                    .ok()
                    .filter(|v| v.is_finite())
                    .ok_or_else(|| err(format!("'{}' is not a finite number", s.trim())))
            })
            .collect::<Result<Vec<f32>, _>>()?;
        if vals.len() != channels {
            return Err(err(format!(
                "{} value(s) for an input of {channels} channel(s)",
                vals.len()
            )));
        }
        Ok(Some(vals))
    };
    let mean = get(super::META_MEAN)?;
    let scale = get(super::META_SCALE)?;
    Ok(match (mean, scale) {
        (None, None) => None,
        (mean, scale) => Some(Preprocess {
            mean: mean.unwrap_or_else(|| vec![0.0; channels]),
            scale: scale.unwrap_or_else(|| vec![1.0; channels]),
        }),
    })
}

/// Checks the opset imports; returns the default domain's version.
fn opset(model: &ModelProto) -> Result<i64, OnnxError> {
    let mut found = None;
    for o in &model.opset_import {
        let d = o.domain.as_deref().unwrap_or("");
        if d.is_empty() || d == "ai.onnx" {
            found = Some(o.version.unwrap_or(0));
        }
    }
    let v = found.unwrap_or(0);
    if !(super::MIN_OPSET..=super::MAX_OPSET).contains(&v) {
        return Err(OnnxError::Opset {
            domain: "ai.onnx".into(),
            version: v,
        });
    }
    Ok(v)
}

/// Imports a decoded model.
pub(crate) fn import_model(model: ModelProto, name: &str) -> Result<Graph, OnnxError> {
    let opset = opset(&model)?;
    let ModelProto {
        graph,
        metadata_props,
        ..
    } = model;
    let graph = graph.ok_or_else(|| OnnxError::Model("the file contains no graph".into()))?;
    if graph.node.len() > super::MAX_NODES {
        return Err(OnnxError::Model(format!(
            "the graph has {} nodes, more than the {} supported",
            graph.node.len(),
            super::MAX_NODES
        )));
    }
    if !graph.sparse_initializer.is_empty() {
        return Err(OnnxError::Model(
            "sparse initializers are not supported".into(),
        ));
    }
    let mut inits: HashMap<String, TensorProto> = HashMap::new();
    for t in graph.initializer {
        let n = t.name.clone().unwrap_or_default();
        if n.is_empty() {
            continue;
        }
        if inits.insert(n.clone(), t).is_some() {
            return Err(OnnxError::Model(format!(
                "initializer '{n}' is defined more than once"
            )));
        }
    }
    let [out_info] = &graph.output[..] else {
        return Err(OnnxError::Model(format!(
            "the graph has {} outputs; exactly one (the logits) is supported",
            graph.output.len()
        )));
    };
    let output_name = out_info.name.clone().unwrap_or_default();
    let inputs: Vec<&ValueInfoProto> = graph
        .input
        .iter()
        .filter(|i| !inits.contains_key(i.name.as_deref().unwrap_or("")))
        .collect();
    let mut defined: HashSet<&str> = inits.keys().map(|s| s.as_str()).collect();
    for i in &inputs {
        defined.insert(i.name.as_deref().unwrap_or(""));
    }
    let order = topo::order(&graph.node, &defined, &[output_name.as_str()])?;

    // Names read by the nodes that run, and the output.
    let mut used: HashSet<&str> = HashSet::new();
    for &i in &order {
        for s in graph.node[i].input.iter().filter(|s| !s.is_empty()) {
            used.insert(s);
        }
    }
    used.insert(&output_name);
    let live: Vec<&ValueInfoProto> = inputs
        .iter()
        .copied()
        .filter(|i| used.contains(i.name.as_deref().unwrap_or("")))
        .collect();
    let input_info = match live[..] {
        [one] => one,
        [] => {
            return Err(OnnxError::Model(
                "the graph output does not depend on any graph input".into(),
            ))
        }
        _ => {
            return Err(OnnxError::Model(format!(
                "the graph reads {} inputs ({}); the engine takes one image",
                live.len(),
                live.iter()
                    .map(|i| i.name.clone().unwrap_or_default())
                    .collect::<Vec<_>>()
                    .join(", ")
            )))
        }
    };
    let input_name = input_info.name.clone().unwrap_or_default();
    let dims = input_dims(input_info, &input_name)?;
    if dims.len() != 4 {
        return Err(OnnxError::Model(format!(
            "input '{input_name}' has rank {}; a 4-D image tensor is expected",
            dims.len()
        )));
    }
    if dims[0].is_some_and(|n| n != 1) {
        return Err(OnnxError::Model(format!(
            "input '{input_name}' has batch size {}; only batch 1 (or a symbolic batch) is supported",
            dims[0].unwrap_or(0)
        )));
    }
    // A Transpose from NHWC to NCHW reading the input makes it an NHWC model.
    let nhwc = order.iter().any(|&i| {
        let n = &graph.node[i];
        n.op_type.as_deref() == Some("Transpose")
            && n.input.first() == Some(&input_name)
            && n.attribute
                .iter()
                .any(|a| a.name.as_deref() == Some("perm") && a.ints == [0, 3, 1, 2])
    });
    let (c, h, w) = if nhwc {
        (dims[3], dims[1], dims[2])
    } else {
        (dims[1], dims[2], dims[3])
    };
    let channels = c
        .filter(|&c| c <= MAX_INPUT_CHANNELS)
        .ok_or_else(|| {
            OnnxError::Model(format!(
                "input '{input_name}' must declare a fixed channel count (at most {MAX_INPUT_CHANNELS})"
            ))
        })?;
    if h.is_some_and(|v| v > MAX_DIM) || w.is_some_and(|v| v > MAX_DIM) {
        return Err(OnnxError::Model(format!(
            "input '{input_name}' declares a size above {MAX_DIM}"
        )));
    }
    let default_size = h.zip(w);
    let trace = Shape {
        c: channels,
        h: h.unwrap_or(DEFAULT_TRACE),
        w: w.unwrap_or(DEFAULT_TRACE),
    };
    let layout = if nhwc { Layout::Nhwc } else { Layout::Nchw };
    let input = InputSpec {
        channels,
        layout,
        default_size,
        preprocess: preprocess(&metadata_props, channels)?,
    };

    let mut imp = Importer {
        opset,
        syms: HashMap::new(),
        inits,
        values: vec![Value {
            name: input_name.clone(),
            channels,
        }],
        shapes: vec![trace],
        nodes: Vec::new(),
        bias_adds: Vec::new(),
    };
    let mut input_act = Act::nchw(0, trace, false);
    if nhwc {
        input_act.form = Form::Nhwc;
    }
    imp.syms.insert(input_name.clone(), Sym::Act(input_act));

    for &i in &order {
        let proto = &graph.node[i];
        let ctx = NodeCtx {
            proto,
            name: topo::node_name(proto, i),
            op: proto.op_type.as_deref().unwrap_or(""),
            opset,
        };
        let domain = proto.domain.as_deref().unwrap_or("");
        if !(domain.is_empty() || domain == "ai.onnx") {
            return Err(OnnxError::UnsupportedOp {
                node: ctx.name.clone(),
                op: ctx.op.to_string(),
                domain: domain.to_string(),
            });
        }
        let mut ins = Vec::with_capacity(proto.input.len());
        for s in &proto.input {
            if s.is_empty() {
                ins.push(None);
                continue;
            }
            match imp.get(s)? {
                Some(sym) => ins.push(Some(sym)),
                None => {
                    return Err(OnnxError::Undefined {
                        node: ctx.name.clone(),
                        op: ctx.op.to_string(),
                        input: s.clone(),
                    })
                }
            }
        }
        let outs = ops::import_node(&mut imp, &ctx, &ins)?;
        for (k, name) in proto.output.iter().enumerate() {
            if name.is_empty() {
                continue;
            }
            match outs.get(k) {
                Some(s) => {
                    imp.syms.insert(name.clone(), s.clone());
                }
                None if used.contains(name.as_str()) => {
                    return Err(ctx.err(format!(
                        "output #{k} ('{name}') is read by the graph, but only the first {} output(s) of {} are supported",
                        outs.len(),
                        ctx.op
                    )))
                }
                None => {}
            }
        }
    }

    let out = match imp.get(&output_name)? {
        Some(Sym::Act(a)) => a,
        Some(Sym::Const(_)) => {
            return Err(OnnxError::Model(format!(
                "graph output '{output_name}' is a constant"
            )))
        }
        None => {
            return Err(OnnxError::Model(format!(
                "graph output '{output_name}' is never produced"
            )))
        }
    };
    let ok_form = match out.form {
        Form::Nchw | Form::Flat => true,
        Form::Nhwc => out.h == 1 && out.w == 1,
        Form::Split(_) | Form::Padded(_) => false,
    };
    if !ok_form {
        return Err(OnnxError::Model(format!(
            "graph output '{output_name}' has shape {:?}; an NCHW map or a [1, C] vector is expected",
            out.dims()
        )));
    }
    let graph_name = graph.name.clone().unwrap_or_default();
    finish(imp, out.v, name, &graph_name, input, output_name, trace)
}

/// Folds bias adds, drops dead nodes, renumbers values, and validates.
fn finish(
    imp: Importer,
    output: ValueId,
    name: &str,
    graph_name: &str,
    input: InputSpec,
    output_name: String,
    trace: Shape,
) -> Result<Graph, OnnxError> {
    let Importer {
        opset,
        values,
        shapes,
        mut nodes,
        bias_adds,
        ..
    } = imp;
    let nvals = values.len();
    let mut producer: Vec<Option<usize>> = vec![None; nvals];
    let mut uses = vec![0usize; nvals];
    for (i, n) in nodes.iter().enumerate() {
        producer[n.output] = Some(i);
        for &v in &n.inputs {
            uses[v] += 1;
        }
    }
    uses[output] += 1;
    // Fold bias adds into the Fc or Conv before them.
    let mut redirect: Vec<ValueId> = (0..nvals).collect();
    let mut removed = vec![false; nodes.len()];
    for &b in &bias_adds {
        let (Some(&src), out) = (nodes[b].inputs.first(), nodes[b].output) else {
            continue;
        };
        let src = redirect[src];
        let Op::BatchNorm(bn) = &nodes[b].op else {
            continue;
        };
        let add = bn.beta.clone();
        let Some(p) = producer[src] else { continue };
        if uses[src] != 1 {
            continue;
        }
        let folded = match &mut nodes[p].op {
            Op::Fc(fc) if fc.bias.len() == add.len() => {
                fc.bias.iter_mut().zip(&add).for_each(|(x, a)| *x += a);
                true
            }
            Op::Conv(cv) if cv.cout == add.len() => {
                let bias = cv.bias.get_or_insert_with(|| vec![0.0; add.len()]);
                bias.iter_mut().zip(&add).for_each(|(x, a)| *x += a);
                true
            }
            _ => false,
        };
        if folded {
            removed[b] = true;
            redirect[out] = src;
            uses[src] = uses[src] - 1 + uses[out];
        }
    }
    let output = redirect[output];
    for n in nodes.iter_mut() {
        for v in n.inputs.iter_mut() {
            *v = redirect[*v];
        }
    }
    // Keep the nodes the output depends on.
    let mut needed = vec![false; nvals];
    needed[output] = true;
    for (i, n) in nodes.iter().enumerate().rev() {
        if removed[i] || !needed[n.output] {
            removed[i] = true;
            continue;
        }
        for &v in &n.inputs {
            needed[v] = true;
        }
    }
    let mut new_id: Vec<Option<ValueId>> = vec![None; nvals];
    new_id[0] = Some(0);
    let mut new_values = vec![values[0].clone()];
    let mut new_shapes = vec![shapes[0]];
    let mut new_nodes = Vec::new();
    for (i, mut n) in nodes.into_iter().enumerate() {
        if removed[i] {
            continue;
        }
        new_id[n.output] = Some(new_values.len());
        new_values.push(values[n.output].clone());
        new_shapes.push(shapes[n.output]);
        n.output = new_values.len() - 1;
        for v in n.inputs.iter_mut() {
            *v = new_id[*v].ok_or_else(|| {
                OnnxError::Model("internal error: node reads a value defined later".into())
            })?;
        }
        new_nodes.push(n);
    }
    let output = new_id[output]
        .ok_or_else(|| OnnxError::Model("internal error: output value dropped".into()))?;
    let description = if graph_name.is_empty() {
        format!("{name} (ONNX opset {opset})")
    } else {
        format!("{name} (ONNX opset {opset}, graph '{graph_name}')")
    };
    let graph = Graph {
        description,
        input,
        values: new_values,
        nodes: new_nodes,
        output,
        output_name,
    };
    graph.validate()?;
    let got = graph.shapes(trace.h, trace.w)?;
    if got != new_shapes {
        return Err(OnnxError::Model(
            "internal error: the engine's shapes disagree with the importer's".into(),
        ));
    }
    Ok(graph)
}
