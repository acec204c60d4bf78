//! The whole-network row pipeline. When the program is a chain stem -> units ->
//! global pool + classifier (ShuffleNet's shape), no tensor between them is ever
//! whole: each lives in a *window* of a few rows, produced on demand by the
//! element before it and dropped once every reader has moved past it.
//!
//! Elements and their windows:
//! - the stem writes the rows of its output window;
//! - a stride-2 unit reads its input window and writes its output window (the
//!   average-pooled shortcut into the first channels, the branch into the rest);
//! - a stride-1 unit updates its input window in place: rows below its front hold
//!   its output, rows above still hold its input (it only ever looks one row ahead,
//!   and always reads a row before overwriting it);
//! - the sink accumulates channel means of the last window and runs the classifier.
//!
//! Driving is pull-based: the sink asks the last unit for rows, which asks the one
//! before, and so on. A producer that runs out of window space moves the rows still
//! needed by some reader to the front. Window sizes come from a dry run of the same
//! schedule at plan time, so they are exact.

use super::plan::{input_rows, Areas, ExecOptions, Stage, StemBand, StepShape, UnitBand};
use super::stream::{Loc, Stem, Unit, Window};
use super::{split, ExecPlan};
use crate::program::{Program, Step, TensorSource, View};
use crate::Error;
use kernels::{dispatch, PlaneGeom, Planes, PoolKind};
use std::ops::Range;

/// Most elements a pipeline may have (the schedule state lives on the stack).
pub const MAX_ELEMENTS: usize = 48;

/// Output pixels per band the pipeline aims for (band height = this / width).
const BAND_PIXELS: usize = 80;

/// One element of the pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Element {
    /// Conv + max pool from the network input into window `out`.
    Stem {
        /// The stem's band.
        band: StemBand,
        /// Output window.
        out: usize,
    },
    /// A stride-2 unit with its average-pooled shortcut.
    Down {
        /// The branch.
        unit: UnitBand,
        /// The average pool step.
        pool: usize,
        /// Input window.
        input: usize,
        /// Output window.
        out: usize,
        /// Shortcut channels (the branch writes after them).
        shortcut: usize,
        /// Padding above the input of the pool and the depthwise conv.
        pad_top: usize,
    },
    /// A stride-1 unit in place on window `win`.
    InPlace {
        /// The unit.
        unit: UnitBand,
        /// Its window.
        win: usize,
    },
    /// Global average pool + classifier over window `input`.
    Sink {
        /// The GAP+FC step.
        step: usize,
        /// Input window.
        input: usize,
        /// Rows per chunk.
        rows: usize,
    },
}

/// A window: `cap` rows of a `channels x h x width` tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowSpec {
    /// Arena area.
    pub area: usize,
    /// Channels.
    pub channels: usize,
    /// Tensor height.
    pub h: usize,
    /// Row width.
    pub width: usize,
    /// Rows held.
    pub cap: usize,
}

/// The planned pipeline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pipeline {
    /// Elements in network order.
    pub elements: Vec<Element>,
    /// Windows.
    pub windows: Vec<WindowSpec>,
    /// Shared depthwise output band of all units.
    pub band_out: usize,
    /// The sink's running channel means, then one chunk's means.
    pub sums: usize,
}

impl Element {
    fn input(&self) -> Option<usize> {
        match *self {
            Element::Stem { .. } => None,
            Element::Down { input, .. } | Element::Sink { input, .. } => Some(input),
            Element::InPlace { win, .. } => Some(win),
        }
    }
}

fn rows_for(width: usize, h: usize) -> usize {
    BAND_PIXELS.div_ceil(width.max(1)).clamp(1, h.max(1))
}

/// Recognises the chain in `stages` and plans its windows and bands, or `None`
/// when the program is not such a chain (or too small to gain from it).
pub(super) fn plan(
    program: &Program,
    shapes: &[StepShape],
    stages: &[Stage],
    opts: &ExecOptions,
    areas: &mut Areas,
) -> Option<Pipeline> {
    let steps = &program.steps;
    let last = steps.len().checked_sub(1)?;
    let hw = |s: usize| shapes[s].output;
    let whole = |v: View| {
        program
            .buffers
            .get(v.buffer as usize)
            .is_some_and(|b| v.offset == 0 && v.channels == b.channels)
    };
    // Tensor views along the chain, with the window each one becomes.
    struct Draft {
        elements: Vec<Element>,
        tensors: Vec<(View, (usize, usize))>,
    }
    let mut d = Draft {
        elements: Vec::new(),
        tensors: Vec::new(),
    };
    let mut i = 0;
    let Stage::Stem(stem) = *stages.first()? else {
        return None;
    };
    let Step::Pool { output, .. } = steps[stem.steps[1]] else {
        return None;
    };
    if !whole(output) || output.buffer == 0 {
        return None;
    }
    d.tensors.push((output, hw(stem.steps[1])));
    d.elements.push(Element::Stem { band: stem, out: 0 });
    i += 1;
    while i < stages.len() {
        let cur = d.tensors.len() - 1;
        let t = d.tensors[cur].0;
        match stages[i] {
            Stage::Unit(u) => {
                let (Step::Pointwise { input: x, .. }, Step::Pointwise { output: o, .. }) =
                    (&steps[u.steps[0]], &steps[u.steps[2]])
                else {
                    return None;
                };
                if *x != t {
                    return None;
                }
                if *o == t {
                    d.elements.push(Element::InPlace { unit: u, win: cur });
                    i += 1;
                    continue;
                }
                // A stride-2 unit: its shortcut pool is the stage just after.
                let mut pads_top = 0;
                let mut is_pool = |st: &Stage| match *st {
                    Stage::Step(j) => match steps[j] {
                        Step::Pool {
                            spec,
                            input,
                            output,
                        } => {
                            pads_top = spec.pads.top;
                            matches!(spec.kind, PoolKind::Avg { .. })
                                && (spec.kh, spec.kw, spec.stride, spec.ceil_mode)
                                    == (3, 3, (2, 2), false)
                                && input == t
                                && output.buffer == o.buffer
                                && output.offset == 0
                                && output.channels == o.offset
                                && whole(View {
                                    channels: o.offset + o.channels,
                                    ..output
                                })
                                && matches!(steps[u.steps[1]], Step::Depthwise { stride: 2, pads, .. } if pads == spec.pads)
                        }
                        _ => false,
                    },
                    _ => false,
                };
                if !stages.get(i + 1).is_some_and(&mut is_pool) {
                    return None;
                }
                let pool_stage = i + 1;
                let Stage::Step(pool) = stages[pool_stage] else {
                    return None;
                };
                let out = View {
                    buffer: o.buffer,
                    offset: 0,
                    channels: o.offset + o.channels,
                };
                d.tensors.push((out, hw(u.steps[2])));
                d.elements.push(Element::Down {
                    unit: u,
                    pool,
                    input: cur,
                    out: cur + 1,
                    shortcut: o.offset as usize,
                    pad_top: pads_top,
                });
                i = pool_stage + 1;
            }
            Stage::Step(j) if j == last => {
                let Step::GapFc { input, output, .. } = steps[j] else {
                    return None;
                };
                if input != t || output != program.output {
                    return None;
                }
                let (h, w) = d.tensors[cur].1;
                d.elements.push(Element::Sink {
                    step: j,
                    input: cur,
                    rows: rows_for(w, h),
                });
                i += 1;
            }
            _ => return None,
        }
    }
    if !matches!(d.elements.last(), Some(Element::Sink { .. })) || d.elements.len() > MAX_ELEMENTS {
        return None;
    }
    // Worth it only when some tensor is large.
    let biggest = d
        .tensors
        .iter()
        .map(|(v, (h, w))| v.channels as usize * h * w * 4)
        .max()?;
    if biggest < opts.pipeline_min_bytes {
        return None;
    }
    // Bands sized for the pipeline, replacing the whole-tensor streaming bands.
    let mut band_out_floats = 0;
    for e in &mut d.elements {
        match e {
            Element::Stem { band, .. } => {
                let (sc, sp) = (band.steps[0], band.steps[1]);
                let Step::Pool { spec, .. } = steps[sp] else {
                    return None;
                };
                let ((hp, wp), wc) = (hw(sp), shapes[sc].output.1);
                let rows = rows_for(wp, hp);
                let in_rows = (rows - 1) * spec.stride.0 + spec.kh;
                areas.retire_area(band.band);
                let c = steps[sc].writes().channels as usize;
                *band = StemBand {
                    rows,
                    in_rows,
                    band: areas.add(c * in_rows * wc, 0, last),
                    ..*band
                };
            }
            Element::Down { unit, .. } | Element::InPlace { unit, .. } => {
                let s2 = unit.steps[1];
                let Step::Depthwise { stride, .. } = steps[s2] else {
                    return None;
                };
                let ((_, w1), (h2, w2)) = (shapes[s2].input, shapes[s2].output);
                let rows = rows_for(w2, h2);
                let in_rows = (rows - 1) * stride as usize + 3;
                let c = steps[s2].writes().channels as usize;
                areas.retire_area(unit.band_in);
                areas.retire_area(unit.band_out);
                band_out_floats = band_out_floats.max(c * rows * w2);
                *unit = UnitBand {
                    rows,
                    in_rows,
                    band_in: areas.add(c * in_rows * w1, 0, last),
                    ..*unit
                };
            }
            Element::Sink { .. } => {}
        }
    }
    let band_out = areas.add(band_out_floats, 0, last);
    for e in &mut d.elements {
        if let Element::Down { unit, .. } | Element::InPlace { unit, .. } = e {
            unit.band_out = band_out;
        }
    }
    let sink_channels = d.tensors.last()?.0.channels as usize;
    let sums = areas.add(2 * sink_channels, 0, last);
    // Window sizes from a dry run of the schedule.
    let mut windows: Vec<WindowSpec> = d
        .tensors
        .iter()
        .map(|(v, (h, w))| WindowSpec {
            area: 0,
            channels: v.channels as usize,
            h: *h,
            width: *w,
            cap: 0,
        })
        .collect();
    let mut pipe = Pipeline {
        elements: d.elements,
        windows: windows.clone(),
        band_out,
        sums,
    };
    let mut dry = Driver::<[crate::program::TensorData]>::new(&pipe, None)?;
    dry.run_sink().ok()?;
    for (w, spec) in windows.iter_mut().enumerate() {
        spec.cap = dry.max_span[w].max(1);
        spec.area = areas.add(spec.channels * spec.cap * spec.width, 0, last);
    }
    for (v, _) in &d.tensors {
        areas.retire(v.buffer);
    }
    pipe.windows = windows;
    Some(pipe)
}

/// What a run computes with (absent in the dry run).
struct Compute<'a, T: TensorSource + ?Sized> {
    plan: &'a ExecPlan,
    steps: &'a [Step],
    tensors: &'a T,
    arena: &'a mut [f32],
    ext: &'a [f32],
    threads: usize,
}

/// The schedule's state: fronts, reader positions and window contents.
struct Driver<'p, 'a, T: TensorSource + ?Sized> {
    pipe: &'p Pipeline,
    /// Output rows each element has produced.
    front: [usize; MAX_ELEMENTS],
    /// First input row each element still needs.
    need_from: [usize; MAX_ELEMENTS],
    /// Rows held by each window, as `lo..hi`.
    held: [(usize, usize); MAX_ELEMENTS],
    /// Each unit's and the stem's band window.
    bands: [(usize, usize); MAX_ELEMENTS],
    /// Largest span each window needed (dry run).
    max_span: [usize; MAX_ELEMENTS],
    compute: Option<Compute<'a, T>>,
}

impl<'p, 'a, T: TensorSource + ?Sized> Driver<'p, 'a, T> {
    fn new(pipe: &'p Pipeline, compute: Option<Compute<'a, T>>) -> Option<Self> {
        if pipe.elements.len() > MAX_ELEMENTS || pipe.windows.len() > MAX_ELEMENTS {
            return None;
        }
        Some(Driver {
            pipe,
            front: [0; MAX_ELEMENTS],
            need_from: [0; MAX_ELEMENTS],
            held: [(0, 0); MAX_ELEMENTS],
            bands: [(0, 0); MAX_ELEMENTS],
            max_span: [0; MAX_ELEMENTS],
            compute,
        })
    }

    fn loc(&self, w: usize) -> Result<Loc, Error> {
        let c = self
            .compute
            .as_ref()
            .ok_or_else(|| Error::Argument("dry run".into()))?;
        let spec = &self.pipe.windows[w];
        let range = c.plan.area(spec.area);
        Ok(Loc {
            start: range.start,
            len: range.len(),
            stride: spec.cap * spec.width,
            lo: self.held[w].0,
            width: spec.width,
            external: false,
        })
    }

    /// Makes window `w` able to hold rows up to `hi`, moving the rows still needed
    /// by its readers to the front if it must.
    fn make_room(&mut self, w: usize, hi: usize) -> Result<(), Error> {
        let keep = (0..self.pipe.elements.len())
            .filter(|&e| self.pipe.elements[e].input() == Some(w))
            .map(|e| self.need_from[e])
            .min()
            .unwrap_or(hi)
            .min(self.held[w].1);
        let (lo, held_hi) = self.held[w];
        match self.compute.as_mut() {
            None => {
                self.max_span[w] = self.max_span[w].max(hi - keep);
                self.held[w].0 = keep;
            }
            Some(c) => {
                let spec = self.pipe.windows[w];
                if hi - lo <= spec.cap {
                    return Ok(());
                }
                if hi - keep > spec.cap {
                    return Err(Error::Argument("pipeline window too small".into()));
                }
                let [buf] = split(c.arena, [c.plan.area(spec.area)])?;
                let (from, len, stride) = (
                    (keep - lo) * spec.width,
                    (held_hi - keep) * spec.width,
                    spec.cap * spec.width,
                );
                for ch in 0..spec.channels {
                    buf.copy_within(ch * stride + from..ch * stride + from + len, ch * stride);
                }
                self.held[w].0 = keep;
            }
        }
        Ok(())
    }

    /// Makes element `e` produce its output rows up to `upto`.
    fn pull(&mut self, e: usize, upto: usize) -> Result<(), Error> {
        while self.front[e] < upto {
            let start = self.front[e];
            match self.pipe.elements[e] {
                Element::Stem { band, out } => {
                    let rows = start..(start + band.rows).min(self.pipe.windows[out].h);
                    self.make_room(out, rows.end)?;
                    self.run_stem(e, band, out, rows.clone())?;
                    self.held[out].1 = rows.end;
                    self.front[e] = rows.end;
                }
                Element::Down {
                    unit,
                    pool,
                    input,
                    out,
                    shortcut,
                    pad_top,
                } => {
                    let (h1, h2) = (self.pipe.windows[input].h, self.pipe.windows[out].h);
                    let rows = start..(start + unit.rows).min(h2);
                    let need = input_rows(&rows, 2, pad_top, 3, h1);
                    self.need_from[e] = need.start;
                    self.pull(e - 1, need.end)?;
                    self.make_room(out, rows.end)?;
                    self.run_down(e, unit, pool, (input, out, shortcut), rows.clone(), need)?;
                    self.held[out].1 = rows.end;
                    self.front[e] = rows.end;
                }
                Element::InPlace { unit, win } => {
                    let h = self.pipe.windows[win].h;
                    let rows = start..(start + unit.rows).min(h);
                    self.need_from[e] = rows.start;
                    self.pull(e - 1, (rows.end + 1).min(h))?;
                    self.run_in_place(e, unit, win, rows.clone())?;
                    self.front[e] = rows.end;
                }
                Element::Sink { .. } => {
                    return Err(Error::Argument("the sink produces no rows".into()))
                }
            }
        }
        Ok(())
    }

    /// Runs the sink: every row of the last window, then the classifier.
    fn run_sink(&mut self) -> Result<(), Error> {
        let e = self.pipe.elements.len() - 1;
        let Element::Sink { step, input, rows } = self.pipe.elements[e] else {
            return Err(Error::Argument("pipeline without a sink".into()));
        };
        let spec = self.pipe.windows[input];
        let c = spec.channels;
        if let Some(cx) = self.compute.as_mut() {
            let [sums] = split(cx.arena, [cx.plan.area(self.pipe.sums)])?;
            sums[..c].fill(0.0);
        }
        let mut r0 = 0;
        while r0 < spec.h {
            let chunk = r0..(r0 + rows).min(spec.h);
            self.need_from[e] = chunk.start;
            self.pull(e - 1, chunk.end)?;
            if self.compute.is_some() {
                let x = self.loc(input)?;
                let cx = self
                    .compute
                    .as_mut()
                    .ok_or_else(|| Error::Argument("dry run".into()))?;
                let [sums, xs] = split(cx.arena, [cx.plan.area(self.pipe.sums), x.range()])?;
                let (total, part) = sums.split_at_mut(c);
                let planes = Planes {
                    channels: c,
                    hw: chunk.len() * spec.width,
                    stride: x.stride,
                };
                dispatch::global_avg_pool(&planes, &xs[x.at(chunk.start)..], part)?;
                let weight = chunk.len() as f32 / spec.h as f32;
                for (t, p) in total.iter_mut().zip(part.iter()) {
                    *t += p * weight;
                }
            }
            r0 = chunk.end;
        }
        self.need_from[e] = spec.h;
        if let Some(cx) = self.compute.as_mut() {
            let Step::GapFc {
                weights,
                bias,
                output,
                ..
            } = cx.steps[step]
            else {
                return Err(Error::Argument("sink over the wrong step".into()));
            };
            let fc = kernels::Fc {
                inputs: c,
                outputs: output.channels as usize,
                weights: super::tensor_f32(cx.tensors, weights)?,
                bias: super::tensor_f32(cx.tensors, bias)?,
            };
            let [out, sums] = split(
                cx.arena,
                [cx.plan.range(output), cx.plan.area(self.pipe.sums)],
            )?;
            dispatch::fc(&fc, &sums[..c], out)?;
        }
        Ok(())
    }

    fn band_window(&self, e: usize) -> Window {
        Window::from_rows(self.bands[e].0..self.bands[e].1)
    }

    fn run_stem(
        &mut self,
        e: usize,
        band: StemBand,
        out: usize,
        rows: Range<usize>,
    ) -> Result<(), Error> {
        if self.compute.is_none() {
            return Ok(());
        }
        let out_loc = self.loc(out)?;
        let mut win = self.band_window(e);
        let cx = self
            .compute
            .as_mut()
            .ok_or_else(|| Error::Argument("dry run".into()))?;
        let stem = Stem::new(cx.plan, &band, cx.steps, cx.tensors)?;
        let Step::Conv { input, .. } = cx.steps[band.steps[0]] else {
            return Err(Error::Argument("stem over the wrong steps".into()));
        };
        let x = Loc::view(cx.plan, input);
        stem.band(&mut win, rows, &x, &out_loc, cx.arena, cx.ext, cx.threads)?;
        self.bands[e] = win.rows();
        Ok(())
    }

    fn run_down(
        &mut self,
        e: usize,
        unit: UnitBand,
        pool: usize,
        (input, out, shortcut): (usize, usize, usize),
        rows: Range<usize>,
        need: Range<usize>,
    ) -> Result<(), Error> {
        if self.compute.is_none() {
            return Ok(());
        }
        let (x, o) = (self.loc(input)?, self.loc(out)?);
        let mut win = self.band_window(e);
        let cx = self
            .compute
            .as_mut()
            .ok_or_else(|| Error::Argument("dry run".into()))?;
        let u = Unit::new(cx.plan, &unit, cx.steps, cx.tensors)?;
        u.band(
            &mut win,
            rows.clone(),
            &x,
            &o.channel(shortcut),
            cx.arena,
            cx.ext,
            cx.threads,
        )?;
        self.bands[e] = win.rows();
        let Step::Pool { spec, .. } = cx.steps[pool] else {
            return Err(Error::Argument("shortcut over the wrong step".into()));
        };
        let params = super::step::pool_of(&spec);
        let g = PlaneGeom {
            in_h: need.len(),
            in_w: x.width,
            in_stride: x.stride,
            out_h: rows.len(),
            out_w: o.width,
            out_stride: o.stride,
            pad_top: need.start + spec.pads.top - rows.start * spec.stride.0,
            pad_left: spec.pads.left,
        };
        let [dst, src] = split(cx.arena, [o.range(), x.range()])?;
        let (dst, src) = (&mut dst[o.at(rows.start)..], &src[x.at(need.start)..]);
        super::step::par_channels(dst, shortcut, o.stride, cx.threads, |r, d| {
            dispatch::pool(&params, &g, src, d, r)
        })
    }

    fn run_in_place(
        &mut self,
        e: usize,
        unit: UnitBand,
        w: usize,
        rows: Range<usize>,
    ) -> Result<(), Error> {
        if self.compute.is_none() {
            return Ok(());
        }
        let x = self.loc(w)?;
        let mut win = self.band_window(e);
        let cx = self
            .compute
            .as_mut()
            .ok_or_else(|| Error::Argument("dry run".into()))?;
        let u = Unit::new(cx.plan, &unit, cx.steps, cx.tensors)?;
        u.band(&mut win, rows, &x, &x, cx.arena, cx.ext, cx.threads)?;
        self.bands[e] = win.rows();
        Ok(())
    }
}

/// Runs the pipeline over the arena.
pub fn run<T: TensorSource + ?Sized>(
    plan: &ExecPlan,
    pipe: &Pipeline,
    steps: &[Step],
    tensors: &T,
    arena: &mut [f32],
    ext: &[f32],
    threads: usize,
) -> Result<(), Error> {
    let compute = Compute {
        plan,
        steps,
        tensors,
        arena,
        ext,
        threads,
    };
    let mut d = Driver::new(pipe, Some(compute))
        .ok_or_else(|| Error::Argument("pipeline too long".into()))?;
    d.run_sink()
}
