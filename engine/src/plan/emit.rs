//! Places every value in a buffer and emits the program:
//! - the parts of a concat are produced directly into adjacent channels of the
//!   concat's buffer (zero-copy); a part that cannot be (the input, a value already
//!   placed elsewhere) is copied there;
//! - a pointwise conv with a residual stores over the residual's view (in place);
//!   a standalone ReLU or softmax, and an add, run in place on their input when no
//!   later step reads that storage; otherwise the value is first copied;
//! - every other value gets a buffer of its own (the arena later overlaps buffers
//!   whose lifetimes do not intersect);
//! - weights are packed for their kernels and stored in the tensor table.

use super::fused::{identity, Fused, Kind};
use super::PlanError;
use crate::graph::ValueId;
use crate::program::{BufferDecl, LoweredModel, Program, Step, TensorData, TensorId, View};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Place {
    buffer: u32,
    offset: u32,
}

struct Emitter<'a> {
    f: &'a Fused,
    places: Vec<Option<Place>>,
    buffers: Vec<BufferDecl>,
    steps: Vec<Step>,
    tensors: Vec<TensorData>,
}

impl Emitter<'_> {
    fn new_buffer(&mut self, channels: usize) -> Place {
        self.buffers.push(BufferDecl {
            channels: channels as u32,
        });
        Place {
            buffer: self.buffers.len() as u32 - 1,
            offset: 0,
        }
    }

    fn tensor(&mut self, t: TensorData) -> TensorId {
        self.tensors.push(t);
        self.tensors.len() as TensorId - 1
    }

    fn f32s(&mut self, v: &[f32]) -> TensorId {
        self.tensor(TensorData::F32(v.to_vec()))
    }

    fn view_at(&self, p: Place, v: ValueId) -> View {
        View {
            buffer: p.buffer,
            offset: p.offset,
            channels: self.f.channels[v] as u32,
        }
    }

    fn view(&self, v: ValueId) -> Result<View, PlanError> {
        let p = self.places[v].ok_or_else(|| {
            PlanError::Invalid(crate::program::ProgramError::Structure(format!(
                "value {v} read before it is placed"
            )))
        })?;
        Ok(self.view_at(p, v))
    }

    /// True when nothing stored in `view` is read by a node after `node`.
    fn free_after(&self, node: usize, view: View) -> bool {
        (0..self.places.len()).all(|v| {
            let Some(p) = self.places[v] else {
                return true;
            };
            let other = self.view_at(p, v);
            let overlaps = other.buffer == view.buffer
                && other.offset < view.offset + view.channels
                && view.offset < other.offset + other.channels;
            !overlaps || (v != self.f.graph.output && self.f.readers(v).iter().all(|&r| r <= node))
        })
    }

    /// Output place of a fresh value: its concat slot if it has one, else a buffer.
    fn place_output(&mut self, v: ValueId) -> View {
        let p = match self.places[v] {
            Some(p) => p,
            None => {
                let p = self.new_buffer(self.f.channels[v]);
                self.places[v] = Some(p);
                p
            }
        };
        self.view_at(p, v)
    }

    /// Copies `from` into a new buffer and returns the copy's view.
    fn copy(&mut self, from: View) -> View {
        let to = self.new_buffer(from.channels as usize);
        let table = self.tensor(TensorData::U32(identity(from.channels as usize)));
        let to = View {
            buffer: to.buffer,
            offset: 0,
            channels: from.channels,
        };
        self.steps.push(Step::Permute {
            table,
            input: from,
            output: to,
        });
        to
    }

    /// The view an in-place step at `node` may overwrite: `v`'s own, if free after
    /// the step, else a fresh copy.
    fn writable(&mut self, node: usize, v: ValueId) -> Result<View, PlanError> {
        let view = self.view(v)?;
        Ok(if self.free_after(node, view) {
            view
        } else {
            self.copy(view)
        })
    }

    /// Reserves concat slots, outermost concat first so nested concats nest.
    fn reserve_concats(&mut self) {
        for node in self.f.nodes.iter().rev() {
            if node.kind != Kind::Concat {
                continue;
            }
            let base = match self.places[node.output] {
                Some(p) => p,
                None => {
                    let p = self.new_buffer(self.f.channels[node.output]);
                    self.places[node.output] = Some(p);
                    p
                }
            };
            let mut offset = base.offset;
            for &u in &node.inputs {
                let relocatable = self.places[u].is_none()
                    && self.f.producer(u).is_some_and(|p| {
                        let pn = &self.f.nodes[p];
                        pn.residual.is_none()
                            && !matches!(pn.kind, Kind::Relu | Kind::Softmax | Kind::Add)
                    });
                if relocatable {
                    self.places[u] = Some(Place {
                        buffer: base.buffer,
                        offset,
                    });
                }
                offset += self.f.channels[u] as u32;
            }
        }
    }

    fn emit(&mut self, n: usize) -> Result<(), PlanError> {
        let node = &self.f.nodes[n];
        let out = node.output;
        let relu = node.relu;
        let step = match &node.kind {
            Kind::Concat => {
                let base = self.view(out)?;
                let mut offset = base.offset;
                for &u in &node.inputs {
                    let slot = View {
                        buffer: base.buffer,
                        offset,
                        channels: self.f.channels[u] as u32,
                    };
                    let from = self.view(u)?;
                    if from != slot {
                        let table = self.tensor(TensorData::U32(identity(slot.channels as usize)));
                        self.steps.push(Step::Permute {
                            table,
                            input: from,
                            output: slot,
                        });
                    }
                    offset += slot.channels;
                }
                return Ok(());
            }
            Kind::Relu | Kind::Softmax => {
                let view = self.writable(n, node.inputs[0])?;
                self.places[out] = Some(Place {
                    buffer: view.buffer,
                    offset: view.offset,
                });
                if node.kind == Kind::Relu {
                    Step::Relu { view }
                } else {
                    Step::Softmax { view }
                }
            }
            Kind::Add => {
                let a = self.view(node.inputs[0])?;
                let b = self.view(node.inputs[1])?;
                let output = if self.places[out].is_none() && self.free_after(n, a) {
                    self.places[out] = self.places[node.inputs[0]];
                    a
                } else {
                    self.place_output(out)
                };
                Step::Add { a, b, relu, output }
            }
            Kind::Pointwise {
                groups,
                weight,
                bias,
                in_rows,
                floor,
            } => {
                let input = self.view(node.inputs[0])?;
                let output = match node.residual {
                    Some(res) => {
                        let view = self.writable(n, res)?;
                        let overlaps_input = view.buffer == input.buffer
                            && view.offset < input.offset + input.channels
                            && input.offset < view.offset + view.channels;
                        let view = if overlaps_input {
                            self.copy(view)
                        } else {
                            view
                        };
                        self.places[out] = Some(Place {
                            buffer: view.buffer,
                            offset: view.offset,
                        });
                        view
                    }
                    None => self.place_output(out),
                };
                let k = in_rows.len() / groups;
                let m = self.f.channels[out] / groups;
                let packed = kernels::pack_pointwise(*groups, m, k, weight);
                Step::Pointwise {
                    groups: *groups as u32,
                    k: k as u32,
                    m: m as u32,
                    weights: self.tensor(TensorData::F32(packed)),
                    bias: self.f32s(bias),
                    in_rows: self.tensor(TensorData::U32(in_rows.clone())),
                    relu,
                    floor: floor.as_ref().map(|f| self.f32s(f)),
                    accumulate: node.residual.is_some(),
                    input,
                    output,
                }
            }
            Kind::Depthwise {
                stride,
                pads,
                weight,
                bias,
            } => Step::Depthwise {
                stride: *stride as u32,
                pads: *pads,
                weights: self.f32s(weight),
                bias: self.f32s(bias),
                relu,
                input: self.view(node.inputs[0])?,
                output: self.place_output(out),
            },
            Kind::Conv(c) => Step::Conv {
                groups: c.groups as u32,
                kh: c.kh as u32,
                kw: c.kw as u32,
                stride: (c.stride.0 as u32, c.stride.1 as u32),
                pads: c.pads,
                weights: self.f32s(&c.weight),
                bias: match &c.bias {
                    Some(b) => self.f32s(b),
                    None => self.f32s(&vec![0.0; c.cout]),
                },
                relu,
                input: self.view(node.inputs[0])?,
                output: self.place_output(out),
            },
            Kind::Pool(spec) => Step::Pool {
                spec: *spec,
                input: self.view(node.inputs[0])?,
                output: self.place_output(out),
            },
            Kind::GlobalAvgPool => Step::GlobalAvgPool {
                input: self.view(node.inputs[0])?,
                output: self.place_output(out),
            },
            Kind::Fc { weight, bias } | Kind::GapFc { weight, bias } => {
                let (weights, bias) = (self.f32s(weight), self.f32s(bias));
                let input = self.view(node.inputs[0])?;
                let output = self.place_output(out);
                if matches!(node.kind, Kind::Fc { .. }) {
                    Step::Fc {
                        weights,
                        bias,
                        input,
                        output,
                    }
                } else {
                    Step::GapFc {
                        weights,
                        bias,
                        input,
                        output,
                    }
                }
            }
            Kind::Affine { scale, shift } => Step::Affine {
                scale: self.f32s(scale),
                shift: self.f32s(shift),
                relu,
                input: self.view(node.inputs[0])?,
                output: self.place_output(out),
            },
            Kind::Permute { table } => Step::Permute {
                table: self.tensor(TensorData::U32(table.clone())),
                input: self.view(node.inputs[0])?,
                output: self.place_output(out),
            },
        };
        self.steps.push(step);
        Ok(())
    }
}

/// Runs the pass and validates the program it produces.
pub fn run(f: &Fused) -> Result<LoweredModel, PlanError> {
    let mut e = Emitter {
        f,
        places: vec![None; f.channels.len()],
        buffers: vec![BufferDecl {
            channels: f.graph.input.channels as u32,
        }],
        steps: Vec::new(),
        tensors: Vec::new(),
    };
    e.places[0] = Some(Place {
        buffer: 0,
        offset: 0,
    });
    e.reserve_concats();
    for n in 0..f.nodes.len() {
        e.emit(n)?;
    }
    let mut output = e.view(f.graph.output)?;
    if output.buffer == 0 {
        // The output must not alias the input buffer the session refills.
        output = e.copy(output);
    }
    let program = Program {
        description: f.graph.description.clone(),
        input: f.graph.input.clone(),
        output_name: f.graph.output_name.clone(),
        buffers: e.buffers,
        steps: e.steps,
        output,
    };
    program.validate(e.tensors.as_slice())?;
    Ok(LoweredModel {
        program,
        tensors: e.tensors,
    })
}
