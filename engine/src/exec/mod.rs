//! Binding a program to an input size ([`ExecPlan`]: shapes, the schedule of
//! whole-tensor steps and band-streamed chains, lifetimes, the arena layout) and
//! running it over one arena ([`execute`]). Running allocates nothing: every buffer,
//! band and scratch area is a range of the arena, split into disjoint slices with
//! safe `split_at_mut`; threads split kernels by output channels.

pub(crate) mod awake;
mod handoff;
pub(crate) mod parallel;
mod pipeline;
mod plan;
mod step;
mod stream;

pub use pipeline::{Element, HandoffSpec, Pipeline, Segment, WindowSpec, MAX_SEGMENTS};
pub use plan::{
    input_rows, DownBand, ExecOptions, ExecPlan, Stage, StemBand, StepShape, UnitBand,
    DEFAULT_BAND_BYTES, DEFAULT_MAX_ARENA_BYTES, DEFAULT_PIPELINE_MIN_BYTES, FUSE_SHORTCUT_POOLS,
    SPLIT_IN_PLACE_MIN_BYTES, SPLIT_UNITS_BY_ROWS, THREADED_PIPELINE_FACTOR,
};

use crate::graph::Layout as InputLayout;
use crate::program::{Program, TensorSource, View};
use crate::Error;
use std::ops::Range;
use std::time::{Duration, Instant};

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
    #[error("thread count must be between 1 and {max}, got {0}", max = crate::session::MAX_THREADS)]
    Threads(usize),
    /// The worker threads could not be started.
    #[error("cannot start worker threads: {0}")]
    ThreadPool(String),
    /// A pipeline segment stopped because the segment on another thread failed
    /// (that segment's own error is the one reported).
    #[error("a pipeline segment on another thread failed")]
    SegmentFailed,
}

/// Splits `arena` into disjoint mutable slices, one per range, in the order given.
/// Errors (rather than aliasing) if two ranges overlap.
pub(crate) fn split<const N: usize>(
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

/// The output slice and the input slice of a single-input step. The input is read
/// from the caller's buffer when it is the external input (see
/// [`ExecPlan::external_input`]).
pub(crate) fn out_in<'a>(
    p: &ExecPlan,
    arena: &'a mut [f32],
    ext: &'a [f32],
    out: Range<usize>,
    input: View,
) -> Result<(&'a mut [f32], &'a [f32]), Error> {
    if input.buffer == 0 && p.external_input {
        let plane = p.plane(0);
        let r = input.offset as usize * plane..(input.offset + input.channels) as usize * plane;
        let i = ext
            .get(r)
            .ok_or_else(|| Error::Argument("input view outside the input".into()))?;
        let [o] = split(arena, [out])?;
        Ok((o, i))
    } else {
        let [o, i] = split(arena, [out, p.range(input)])?;
        Ok((o, i))
    }
}

fn tensor_f32<T: TensorSource + ?Sized>(t: &T, id: u32) -> Result<&[f32], Error> {
    t.f32s(id)
        .ok_or_else(|| Error::Argument(format!("tensor {id} missing")))
}

fn tensor_u32<T: TensorSource + ?Sized>(t: &T, id: u32) -> Result<&[u32], Error> {
    t.u32s(id)
        .ok_or_else(|| Error::Argument(format!("tensor {id} missing")))
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

/// Wall time of each stage of one run, in the order of [`ExecPlan::stages`]; a plan
/// with a row pipeline has one entry, the whole pipeline (its steps interleave).
pub type StageTimes = Vec<Duration>;

/// Runs `program` as bound by `plan` over `arena` (at least `plan.layout.peak`
/// floats): loads `input` (in the program's input layout), runs every stage, copies
/// the result to the front of `output`. With `threads > 1` the kernels split over
/// that many rayon workers (call it inside the session's pool). With `times`, also
/// records each stage's wall time there (cleared first; a `times` that held a run's
/// entries before does not allocate; loading the input and copying the output out
/// are not part of any stage); without, no clock is read.
#[allow(clippy::too_many_arguments)]
pub fn execute<T: TensorSource + Sync + ?Sized>(
    plan: &ExecPlan,
    program: &Program,
    tensors: &T,
    arena: &mut [f32],
    input: &[f32],
    output: &mut [f32],
    threads: usize,
    mut times: Option<&mut StageTimes>,
) -> Result<(), Error> {
    if let Some(t) = times.as_deref_mut() {
        t.clear();
    }
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
    if !plan.external_input {
        let input_view = View {
            buffer: 0,
            offset: 0,
            channels: c as u32,
        };
        let [planar] = split(arena, [plan.range(input_view)])?;
        load_input(program.input.layout, c, input, planar);
    }
    if let Some(pipe) = &plan.pipeline {
        let start = times.is_some().then(Instant::now);
        pipeline::run(plan, pipe, &program.steps, tensors, arena, input, threads)?;
        record(times, start);
        let [result] = split(arena, [plan.range(program.output)])?;
        output[..needed].copy_from_slice(result);
        return Ok(());
    }
    for stage in &plan.stages {
        let start = times.is_some().then(Instant::now);
        match stage {
            Stage::Step(i) => {
                step::run_step(plan, *i, &program.steps[*i], tensors, arena, input, threads)?
            }
            Stage::Unit(u) => {
                let io = (&mut *arena, input);
                stream::run_unit(plan, u, None, &program.steps, tensors, io, threads)?
            }
            Stage::Down(d) => {
                let (io, pool) = ((&mut *arena, input), Some(d.steps[3]));
                stream::run_unit(plan, &d.unit, pool, &program.steps, tensors, io, threads)?
            }
            Stage::Stem(s) => {
                stream::run_stem(plan, s, &program.steps, tensors, arena, input, threads)?
            }
        }
        record(times.as_deref_mut(), start);
    }
    let [result] = split(arena, [plan.range(program.output)])?;
    output[..needed].copy_from_slice(result);
    Ok(())
}

/// Appends the time since `start` to `times` (both present when profiling).
fn record(times: Option<&mut StageTimes>, start: Option<Instant>) {
    if let (Some(t), Some(s)) = (times, start) {
        t.push(s.elapsed());
    }
}

/// Runs a lowered model once on an `h x w` input, allocating a fresh arena: a
/// convenience for tests and tools; sessions reuse their arena.
pub fn run_lowered(
    model: &crate::program::LoweredModel,
    h: usize,
    w: usize,
    input: &[f32],
) -> Result<Vec<f32>, Error> {
    let plan = ExecPlan::new(&model.program, h, w, &ExecOptions::default())?;
    let mut arena = vec![0.0; plan.layout.peak];
    let mut out = vec![0.0; plan.output_len(&model.program)];
    execute(
        &plan,
        &model.program,
        model.tensors.as_slice(),
        &mut arena,
        input,
        &mut out,
        1,
        None,
    )?;
    Ok(out)
}
