//! Binding a program to an input size ([`ExecPlan`]: shapes, lifetimes, the arena
//! layout) and running it over one arena ([`execute`]). Running allocates nothing:
//! every buffer and scratch area is a range of the arena, split into disjoint
//! slices with safe `split_at_mut`.

use crate::arena::{self, Lifetime};
use crate::graph::{window_out, Layout as InputLayout};
use crate::program::{Program, Step, TensorSource, View};
use crate::Error;
use kernels::{dispatch, Epilogue, PixelSpan, PlaneGeom, Planes, PointwiseCall};
use std::ops::Range;

/// Default limit on the arena of one session: 1 GiB.
pub const DEFAULT_MAX_ARENA_BYTES: usize = 1 << 30;

/// Why a program cannot be bound to an input size, or a run's arguments are wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// The input size does not work with the network.
    #[error("input size {h}x{w}: {what}")]
    Size {
        /// Height.
        h: usize,
        /// Width.
        w: usize,
        /// What goes wrong, naming the step.
        what: String,
    },
    /// The arena would exceed the configured limit.
    #[error("input size {h}x{w} needs a {needed}-byte arena, above the {limit}-byte limit")]
    ArenaTooLarge {
        /// Height.
        h: usize,
        /// Width.
        w: usize,
        /// Bytes needed.
        needed: u64,
        /// The limit.
        limit: u64,
    },
    /// The input buffer has the wrong number of elements.
    #[error("input has {got} values, expected {expected} ({layout} {c}x{h}x{w})")]
    InputLength {
        /// Elements given.
        got: usize,
        /// Elements expected.
        expected: usize,
        /// Layout.
        layout: InputLayout,
        /// Channels.
        c: usize,
        /// Height.
        h: usize,
        /// Width.
        w: usize,
    },
    /// The output buffer is too small.
    #[error("output holds {got} values, the network produces {needed}")]
    OutputCapacity {
        /// Capacity given.
        got: usize,
        /// Values produced.
        needed: usize,
    },
    /// Bad thread count.
    #[error("thread count must be between 1 and 256, got {0}")]
    Threads(usize),
}

/// Spatial sizes seen by one step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StepShape {
    /// Input height and width.
    pub input: (usize, usize),
    /// Output height and width.
    pub output: (usize, usize),
}

/// A program bound to one input size.
#[derive(Clone, Debug)]
pub struct ExecPlan {
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Per step.
    pub shapes: Vec<StepShape>,
    /// Height and width of every buffer (then of every scratch area).
    pub buffer_hw: Vec<(usize, usize)>,
    /// Scratch area of each step, as an index into the layout's buffers.
    pub scratch: Vec<Option<usize>>,
    /// Live range of every buffer and scratch area.
    pub lifetimes: Vec<Option<Lifetime>>,
    /// Where everything lives.
    pub layout: arena::Layout,
    /// Floats if every step's output (and the input) had its own buffer.
    pub naive_floats: usize,
}

fn size_err(h: usize, w: usize, step: usize, s: &Step, what: &str) -> SessionError {
    SessionError::Size {
        h,
        w,
        what: format!("step {step} ({}): {what}", s.kernel()),
    }
}

/// Output height and width of a step whose input is `hw`.
fn output_hw(step: &Step, (h, w): (usize, usize)) -> Result<(usize, usize), &'static str> {
    let win = |kh: usize, kw: usize, sh: usize, sw: usize, p: crate::graph::Pads, ceil: bool| {
        Ok((
            window_out(h, kh, sh, p.top, p.bottom, ceil).ok_or("input smaller than the window")?,
            window_out(w, kw, sw, p.left, p.right, ceil).ok_or("input smaller than the window")?,
        ))
    };
    match *step {
        Step::Depthwise { stride, pads, .. } => {
            win(3, 3, stride as usize, stride as usize, pads, false)
        }
        Step::Conv {
            kh,
            kw,
            stride,
            pads,
            ..
        } => win(
            kh as usize,
            kw as usize,
            stride.0 as usize,
            stride.1 as usize,
            pads,
            false,
        ),
        Step::Pool { spec, .. } => win(
            spec.kh,
            spec.kw,
            spec.stride.0,
            spec.stride.1,
            spec.pads,
            spec.ceil_mode,
        ),
        Step::GapFc { .. } | Step::GlobalAvgPool { .. } => Ok((1, 1)),
        Step::Fc { .. } | Step::Softmax { .. } if (h, w) != (1, 1) => Err("needs a 1x1 input"),
        _ => Ok((h, w)),
    }
}

impl ExecPlan {
    /// Infers every shape for an `h x w` input and lays out the arena, refusing
    /// sizes that do not fit the network or would exceed `max_arena_bytes`.
    pub fn new(
        program: &Program,
        h: usize,
        w: usize,
        max_arena_bytes: usize,
    ) -> Result<ExecPlan, SessionError> {
        if h == 0 || w == 0 {
            return Err(SessionError::Size {
                h,
                w,
                what: "height and width must be positive".into(),
            });
        }
        let nb = program.buffers.len();
        let mut hw: Vec<Option<(usize, usize)>> = vec![None; nb];
        hw[0] = Some((h, w));
        let mut shapes = Vec::with_capacity(program.steps.len());
        let mut scratch = Vec::with_capacity(program.steps.len());
        let mut scratch_hw = Vec::new();
        let mut lifetimes: Vec<Option<Lifetime>> = vec![None; nb];
        lifetimes[0] = Some(Lifetime { first: 0, last: 0 });
        let mut naive = 0usize;
        let touch = |b: usize, t: usize, lifetimes: &mut Vec<Option<Lifetime>>| {
            let l = lifetimes[b].get_or_insert(Lifetime { first: t, last: t });
            l.last = l.last.max(t);
        };
        for (i, step) in program.steps.iter().enumerate() {
            let err = |what: &str| size_err(h, w, i, step, what);
            let reads = step.reads();
            let in_hw =
                hw[reads[0].buffer as usize].ok_or_else(|| err("reads an unwritten buffer"))?;
            for r in &reads {
                if hw[r.buffer as usize] != Some(in_hw) {
                    return Err(err("operands have different sizes"));
                }
            }
            let out_hw = output_hw(step, in_hw).map_err(err)?;
            let out = step.writes();
            match hw[out.buffer as usize] {
                Some(prev) if prev != out_hw => {
                    return Err(err(&format!(
                        "writes {}x{} into a buffer of {}x{} (concat parts disagree)",
                        out_hw.0, out_hw.1, prev.0, prev.1
                    )))
                }
                _ => hw[out.buffer as usize] = Some(out_hw),
            }
            let plane = out_hw
                .0
                .checked_mul(out_hw.1)
                .ok_or_else(|| err("size overflows"))?;
            naive = (out.channels as usize)
                .checked_mul(plane)
                .and_then(|x| naive.checked_add(x))
                .ok_or_else(|| err("size overflows"))?;
            for r in &reads {
                touch(r.buffer as usize, i, &mut lifetimes);
            }
            touch(out.buffer as usize, i, &mut lifetimes);
            if let Step::GapFc { input, .. } = step {
                scratch.push(Some(nb + scratch_hw.len()));
                scratch_hw.push((input.channels as usize, 1));
                lifetimes.push(Some(Lifetime { first: i, last: i }));
            } else {
                scratch.push(None);
            }
            shapes.push(StepShape {
                input: in_hw,
                output: out_hw,
            });
        }
        let last = program.steps.len().saturating_sub(1);
        touch(program.output.buffer as usize, last, &mut lifetimes);
        let buffer_hw: Vec<(usize, usize)> = hw
            .iter()
            .map(|x| x.unwrap_or((0, 0)))
            .chain(scratch_hw)
            .collect();
        let overflow = || SessionError::Size {
            h,
            w,
            what: "tensor sizes overflow".into(),
        };
        let sizes: Vec<usize> = buffer_hw
            .iter()
            .enumerate()
            .map(|(b, &(bh, bw))| {
                let c = program.buffers.get(b).map_or(1, |d| d.channels as usize);
                c.checked_mul(bh)?.checked_mul(bw)
            })
            .collect::<Option<_>>()
            .ok_or_else(overflow)?;
        naive = naive.checked_add(sizes[0]).ok_or_else(overflow)?;
        let layout = arena::plan(&sizes, &lifetimes).ok_or_else(overflow)?;
        let needed = layout.peak as u64 * 4;
        if needed > max_arena_bytes as u64 {
            return Err(SessionError::ArenaTooLarge {
                h,
                w,
                needed,
                limit: max_arena_bytes as u64,
            });
        }
        Ok(ExecPlan {
            h,
            w,
            shapes,
            buffer_hw,
            scratch,
            lifetimes,
            layout,
            naive_floats: naive,
        })
    }

    /// Floats per plane of a buffer.
    pub fn plane(&self, buffer: u32) -> usize {
        let (h, w) = self.buffer_hw[buffer as usize];
        h * w
    }

    /// Arena range of a view.
    pub fn range(&self, v: View) -> Range<usize> {
        let plane = self.plane(v.buffer);
        let start = self.layout.offsets[v.buffer as usize] + v.offset as usize * plane;
        start..start + v.channels as usize * plane
    }

    /// Arena range of a scratch area of `floats` floats.
    fn scratch_range(&self, s: usize) -> Range<usize> {
        let start = self.layout.offsets[s];
        start..start + self.buffer_hw[s].0
    }

    /// Number of values the network writes to the output.
    pub fn output_len(&self, program: &Program) -> usize {
        program.output.channels as usize * self.plane(program.output.buffer)
    }
}

/// Splits `arena` into disjoint mutable slices, one per range, in the order given.
/// Errors (rather than aliasing) if two ranges overlap.
fn split<const N: usize>(
    arena: &mut [f32],
    ranges: [Range<usize>; N],
) -> Result<[&mut [f32]; N], Error> {
    let mut order: [usize; N] = std::array::from_fn(|i| i);
    order.sort_unstable_by_key(|&i| ranges[i].start);
    let mut out: [&mut [f32]; N] = std::array::from_fn(|_| Default::default());
    let mut rest = arena;
    let mut consumed = 0;
    for &i in &order {
        let r = &ranges[i];
        if r.start < consumed || r.end < r.start || r.end - consumed > rest.len() {
            return Err(Error::Argument(format!(
                "arena ranges overlap or overflow at {r:?}"
            )));
        }
        let tail = std::mem::take(&mut rest).split_at_mut(r.start - consumed).1;
        let (mine, tail) = tail.split_at_mut(r.len());
        out[i] = mine;
        rest = tail;
        consumed = r.end;
    }
    Ok(out)
}

fn tensor_f32<T: TensorSource + ?Sized>(t: &T, id: u32) -> Result<&[f32], Error> {
    t.f32s(id)
        .ok_or_else(|| Error::Argument(format!("tensor {id} missing")))
}

fn tensor_u32<T: TensorSource + ?Sized>(t: &T, id: u32) -> Result<&[u32], Error> {
    t.u32s(id)
        .ok_or_else(|| Error::Argument(format!("tensor {id} missing")))
}

fn geom(p: &ExecPlan, i: usize, input: View, output: View, pads: crate::graph::Pads) -> PlaneGeom {
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

/// Copies the user's input (in `layout`) into the planar input buffer.
fn load_input(layout: InputLayout, c: usize, input: &[f32], planar: &mut [f32]) {
    match layout {
        InputLayout::Nchw => planar.copy_from_slice(input),
        InputLayout::Nhwc => {
            let hw = planar.len() / c.max(1);
            for (p, pixel) in input.chunks_exact(c).enumerate() {
                for (ch, &v) in pixel.iter().enumerate() {
                    planar[ch * hw + p] = v;
                }
            }
        }
    }
}

/// Runs one step.
fn run_step<T: TensorSource + ?Sized>(
    p: &ExecPlan,
    i: usize,
    step: &Step,
    t: &T,
    arena: &mut [f32],
) -> Result<(), Error> {
    let out_view = step.writes();
    let out_r = p.range(out_view);
    match *step {
        Step::Pointwise {
            groups,
            k,
            m,
            weights,
            bias,
            in_rows,
            relu,
            accumulate,
            input,
            output,
        } => {
            let [out, inp] = split(arena, [out_r, p.range(input)])?;
            let params = kernels::Pointwise {
                groups: groups as usize,
                k: k as usize,
                m: m as usize,
                weights: tensor_f32(t, weights)?,
                bias: tensor_f32(t, bias)?,
                in_rows: tensor_u32(t, in_rows)?,
                epilogue: Epilogue { accumulate, relu },
            };
            let call = PointwiseCall {
                input: PixelSpan {
                    stride: p.plane(input.buffer),
                    start: 0,
                },
                output: PixelSpan {
                    stride: p.plane(output.buffer),
                    start: 0,
                },
                count: p.plane(output.buffer),
                panels: 0..params.panels(),
            };
            dispatch::pointwise(&params, inp, out, &call)?;
        }
        Step::Depthwise {
            stride,
            pads,
            weights,
            bias,
            relu,
            input,
            output,
        } => {
            let [out, inp] = split(arena, [out_r, p.range(input)])?;
            let params = kernels::Depthwise3x3 {
                stride: stride as usize,
                weights: tensor_f32(t, weights)?,
                bias: tensor_f32(t, bias)?,
                relu,
            };
            let g = geom(p, i, input, output, pads);
            dispatch::dwconv3x3(&params, &g, inp, out, 0..output.channels as usize)?;
        }
        Step::Conv {
            groups,
            kh,
            kw,
            stride,
            pads,
            weights,
            bias,
            relu,
            input,
            output,
        } => {
            let [out, inp] = split(arena, [out_r, p.range(input)])?;
            let params = kernels::Conv2d {
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
            };
            let g = geom(p, i, input, output, pads);
            dispatch::conv2d(&params, &g, inp, out, 0..output.channels as usize)?;
        }
        Step::Pool {
            spec,
            input,
            output,
        } => {
            let [out, inp] = split(arena, [out_r, p.range(input)])?;
            let params = kernels::Pool {
                kind: spec.kind,
                kh: spec.kh,
                kw: spec.kw,
                stride_h: spec.stride.0,
                stride_w: spec.stride.1,
                pad_bottom: spec.pads.bottom,
                pad_right: spec.pads.right,
            };
            let g = geom(p, i, input, output, spec.pads);
            dispatch::pool(&params, &g, inp, out, 0..output.channels as usize)?;
        }
        Step::GapFc {
            weights,
            bias,
            input,
            output,
        } => {
            let s = p.scratch[i].ok_or_else(|| Error::Argument("gap_fc scratch missing".into()))?;
            let [out, inp, pooled] = split(arena, [out_r, p.range(input), p.scratch_range(s)])?;
            let fc = kernels::Fc {
                inputs: input.channels as usize,
                outputs: output.channels as usize,
                weights: tensor_f32(t, weights)?,
                bias: tensor_f32(t, bias)?,
            };
            let plane = p.plane(input.buffer);
            let planes = Planes {
                channels: input.channels as usize,
                hw: plane,
                stride: plane,
            };
            dispatch::gap_fc(&fc, &planes, inp, pooled, out)?;
        }
        Step::GlobalAvgPool { input, .. } => {
            let [out, inp] = split(arena, [out_r, p.range(input)])?;
            let plane = p.plane(input.buffer);
            let planes = Planes {
                channels: input.channels as usize,
                hw: plane,
                stride: plane,
            };
            dispatch::global_avg_pool(&planes, inp, out)?;
        }
        Step::Fc {
            weights,
            bias,
            input,
            output,
        } => {
            let [out, inp] = split(arena, [out_r, p.range(input)])?;
            let fc = kernels::Fc {
                inputs: input.channels as usize,
                outputs: output.channels as usize,
                weights: tensor_f32(t, weights)?,
                bias: tensor_f32(t, bias)?,
            };
            dispatch::fc(&fc, inp, out)?;
        }
        Step::Add { a, b, relu, output } => {
            if output == a || output == b {
                let other = if output == a { b } else { a };
                if other == output {
                    let [out] = split(arena, [out_r])?;
                    for v in out.iter_mut() {
                        *v += *v;
                        if relu {
                            *v = kernels::scalar::relu(*v);
                        }
                    }
                } else {
                    let [out, o] = split(arena, [out_r, p.range(other)])?;
                    dispatch::add_assign(out, o, relu)?;
                }
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
            let [out, inp] = split(arena, [out_r, p.range(input)])?;
            let plane = p.plane(input.buffer);
            let planes = Planes {
                channels: input.channels as usize,
                hw: plane,
                stride: plane,
            };
            dispatch::affine(
                &planes,
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
            let [out, inp] = split(arena, [out_r, p.range(input)])?;
            let plane = p.plane(input.buffer);
            let planes = Planes {
                channels: input.channels as usize,
                hw: plane,
                stride: plane,
            };
            dispatch::permute(&planes, tensor_u32(t, table)?, inp, out)?;
        }
    }
    Ok(())
}

/// Runs `program` as bound by `plan` over `arena` (at least `plan.layout.peak`
/// floats): loads `input` (in the program's input layout), runs every step, copies
/// the result to the front of `output`.
pub fn execute<T: TensorSource + ?Sized>(
    plan: &ExecPlan,
    program: &Program,
    tensors: &T,
    arena: &mut [f32],
    input: &[f32],
    output: &mut [f32],
) -> Result<(), Error> {
    let c = program.input.channels;
    let expected = c * plan.h * plan.w;
    if input.len() != expected {
        return Err(SessionError::InputLength {
            got: input.len(),
            expected,
            layout: program.input.layout,
            c,
            h: plan.h,
            w: plan.w,
        }
        .into());
    }
    let needed = plan.output_len(program);
    if output.len() < needed {
        return Err(SessionError::OutputCapacity {
            got: output.len(),
            needed,
        }
        .into());
    }
    if arena.len() < plan.layout.peak {
        return Err(Error::Argument("arena smaller than the plan".into()));
    }
    let input_view = View {
        buffer: 0,
        offset: 0,
        channels: c as u32,
    };
    let [planar] = split(arena, [plan.range(input_view)])?;
    load_input(program.input.layout, c, input, planar);
    for (i, step) in program.steps.iter().enumerate() {
        run_step(plan, i, step, tensors, arena)?;
    }
    let [result] = split(arena, [plan.range(program.output)])?;
    output[..needed].copy_from_slice(result);
    Ok(())
}

/// Runs a lowered model once on an `h x w` input, allocating a fresh arena: a
/// convenience for tests and tools; sessions reuse their arena.
pub fn run_lowered(
    model: &crate::program::LoweredModel,
    h: usize,
    w: usize,
    input: &[f32],
) -> Result<Vec<f32>, Error> {
    let plan = ExecPlan::new(&model.program, h, w, DEFAULT_MAX_ARENA_BYTES)?;
    let mut arena = vec![0.0; plan.layout.peak];
    let mut out = vec![0.0; plan.output_len(&model.program)];
    execute(
        &plan,
        &model.program,
        model.tensors.as_slice(),
        &mut arena,
        input,
        &mut out,
    )?;
    Ok(out)
}
