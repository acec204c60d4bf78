//! Running a planned pipeline: the [`Driver`] of each segment keeps the
//! schedule's state (each element's front, what each window holds) and pulls rows
//! through the elements, calling the kernels on bands and windows (or, with no
//! [`Compute`], only advancing the state: the planner's dry run that sizes the
//! windows); [`run`] splits the arena between the segments and the handoff
//! buffers and runs the segments on the thread pool.

use super::{Element, Pipeline, Segment, GRACE, MAX_ELEMENTS, MAX_SEGMENTS};
use crate::exec::handoff::{aborted, is_abort, Handoff, SLOTS};
use crate::exec::plan::{input_rows, StemBand, UnitBand};
use crate::exec::stream::{shift, Loc, Shortcut, Stem, Unit, Window};
use crate::exec::{split, tensor_f32, ExecPlan};
use crate::program::{Step, TensorSource};
use crate::Error;
use kernels::{dispatch, Planes};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// How a segment meets its neighbours during a run.
struct Links<'a, T: TensorSource + Sync + ?Sized> {
    /// Where the feed sends its chunks.
    out: Option<&'a Handoff<'a>>,
    /// Where the source's chunks come from, and the producer segment's slot.
    input: Option<(&'a Handoff<'a>, &'a Mutex<Slot<'a, T>>)>,
    /// Raised when any segment fails.
    abort: &'a AtomicBool,
    /// Run the producer as soon as no chunk is waiting (a one-thread run).
    eager: bool,
    /// When the run started (for [`GRACE`]).
    started: Instant,
}

/// A segment's driver waiting for a thread.
struct Slot<'a, T: TensorSource + Sync + ?Sized> {
    driver: Option<Driver<'a, T>>,
    /// Taken up by its consumer, which runs it chunk by chunk.
    cooperative: bool,
}

fn lock<'m, X>(m: &'m Mutex<X>) -> MutexGuard<'m, X> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What a run computes with (absent in the dry run).
struct Compute<'a, T: TensorSource + Sync + ?Sized> {
    plan: &'a ExecPlan,
    steps: &'a [Step],
    tensors: &'a T,
    /// The segment's region of the arena.
    arena: &'a mut [f32],
    /// Arena offset of `arena`.
    base: usize,
    ext: &'a [f32],
    /// Threads for splitting kernel calls (1 when the pipeline is segmented).
    threads: usize,
    links: Links<'a, T>,
}

impl<T: TensorSource + Sync + ?Sized> Compute<'_, T> {
    /// Range of arena area `a` within the segment's region.
    fn area(&self, a: usize) -> Result<Range<usize>, Error> {
        shift(self.plan.area(a), self.base)
    }
}

/// The schedule's state: fronts, reader positions and window contents.
struct Driver<'a, T: TensorSource + Sync + ?Sized> {
    pipe: &'a Segment,
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

impl<'a, T: TensorSource + Sync + ?Sized> Driver<'a, T> {
    fn new(pipe: &'a Segment, compute: Option<Compute<'a, T>>) -> Option<Self> {
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

    fn cx(&mut self) -> Result<&mut Compute<'a, T>, Error> {
        self.compute
            .as_mut()
            .ok_or_else(|| Error::Argument("dry run".into()))
    }

    fn loc(&self, w: usize) -> Result<Loc, Error> {
        let c = self
            .compute
            .as_ref()
            .ok_or_else(|| Error::Argument("dry run".into()))?;
        let spec = &self.pipe.windows[w];
        let range = c.area(spec.area)?;
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
                let [buf] = split(c.arena, [c.area(spec.area)?])?;
                let (from, len, stride) = (
                    (keep - lo) * spec.width,
                    (held_hi - keep) * spec.width,
                    spec.cap * spec.width,
                );
                dispatch::move_to_front(buf, spec.channels, stride, from, len)?;
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
                Element::Source { out, rows: chunk } => {
                    let rows = start..(start + chunk).min(self.pipe.windows[out].h);
                    self.make_room(out, rows.end)?;
                    self.receive(out, rows.clone())?;
                    self.held[out].1 = rows.end;
                    self.front[e] = rows.end;
                }
                Element::Sink { .. } | Element::Feed { .. } => {
                    return Err(Error::Argument("a sink or feed produces no rows".into()))
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
            let sums = self
                .pipe
                .sums
                .ok_or_else(|| Error::Argument("no sums".into()))?;
            let [sums] = split(cx.arena, [cx.area(sums)?])?;
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
                let sums = self
                    .pipe
                    .sums
                    .ok_or_else(|| Error::Argument("no sums".into()))?;
                let [sums, xs] = split(cx.arena, [cx.area(sums)?, x.range()])?;
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
                weights: tensor_f32(cx.tensors, weights)?,
                bias: tensor_f32(cx.tensors, bias)?,
            };
            let sums = self
                .pipe
                .sums
                .ok_or_else(|| Error::Argument("no sums".into()))?;
            let out = shift(cx.plan.range(output), cx.base)?;
            let [out, sums] = split(cx.arena, [out, cx.area(sums)?])?;
            dispatch::fc(&fc, &sums[..c], out)?;
        }
        Ok(())
    }

    /// Runs the segment's last element to the end: the sink, or the feed.
    fn run_last(&mut self) -> Result<(), Error> {
        match self.pipe.elements.last() {
            Some(Element::Sink { .. }) => self.run_sink(),
            Some(Element::Feed { .. }) => {
                while self.feed_one()? {}
                Ok(())
            }
            _ => Err(Error::Argument("segment without a sink or feed".into())),
        }
    }

    /// Sends the next chunk of rows to the next segment; `false` (sending
    /// nothing) once all are sent.
    fn feed_one(&mut self) -> Result<bool, Error> {
        let e = self.pipe.elements.len() - 1;
        let Element::Feed { input, rows: chunk } = self.pipe.elements[e] else {
            return Err(Error::Argument("segment without a feed".into()));
        };
        let spec = self.pipe.windows[input];
        let start = self.front[e];
        if start >= spec.h {
            return Ok(false);
        }
        let rows = start..(start + chunk).min(spec.h);
        self.need_from[e] = rows.start;
        self.pull(e - 1, rows.end)?;
        if self.compute.is_some() {
            let src = self.loc(input)?;
            let cx = self.cx()?;
            let out = cx
                .links
                .out
                .ok_or_else(|| Error::Argument("feed without a handoff".into()))?;
            let buf = out.take_free(cx.links.abort)?;
            let n = rows.len() * spec.width;
            if buf.len() < spec.channels * n {
                return Err(Error::Argument("handoff buffer too small".into()));
            }
            let [x] = split(cx.arena, [src.range()])?;
            for (ch, dst) in buf.chunks_exact_mut(n).take(spec.channels).enumerate() {
                let from = ch * src.stride + src.at(rows.start);
                let src = x
                    .get(from..from + n)
                    .ok_or_else(|| Error::Argument("feed rows outside the window".into()))?;
                dispatch::copy(src, dst)?;
            }
            out.push(rows.start, buf)?;
        }
        self.front[e] = rows.end;
        self.need_from[e] = rows.end;
        Ok(true)
    }

    /// Copies rows `rows` of window `w` from the previous segment: a chunk already
    /// handed over, or one this thread computes by running the producer itself
    /// (when no thread took it up within [`GRACE`], or at once in a one-thread run).
    fn receive(&mut self, w: usize, rows: Range<usize>) -> Result<(), Error> {
        if self.compute.is_none() {
            return Ok(());
        }
        let dst = self.loc(w)?;
        let spec = self.pipe.windows[w];
        let cx = self.cx()?;
        let links = &cx.links;
        let (handoff, producer) = links
            .input
            .ok_or_else(|| Error::Argument("source without a handoff".into()))?;
        let (first, buf) = loop {
            if let Some(chunk) = handoff.pop(links.abort, Some(Duration::ZERO))? {
                break chunk;
            }
            let patient = !links.eager && links.started.elapsed() < GRACE;
            let mut slot = lock(producer);
            if slot.driver.is_none() {
                // Its own thread runs it: wait for the chunk.
                drop(slot);
                break handoff.pop(links.abort, None)?.ok_or_else(aborted)?;
            }
            if slot.cooperative || !patient {
                slot.cooperative = true;
                let sent = match slot.driver.as_mut() {
                    Some(d) => d.feed_one()?,
                    None => false,
                };
                if !sent {
                    return Err(Error::Argument("producer segment ended early".into()));
                }
                continue;
            }
            drop(slot);
            if let Some(chunk) = handoff.pop(links.abort, Some(Duration::from_micros(50)))? {
                break chunk;
            }
        };
        let n = rows.len() * spec.width;
        if first != rows.start || buf.len() < spec.channels * n {
            return Err(Error::Argument("handoff chunk out of order".into()));
        }
        let [x] = split(cx.arena, [dst.range()])?;
        for (ch, src) in buf.chunks_exact(n).take(spec.channels).enumerate() {
            let to = ch * dst.stride + dst.at(rows.start);
            let dst = x
                .get_mut(to..to + n)
                .ok_or_else(|| Error::Argument("received rows outside the window".into()))?;
            dispatch::copy(src, dst)?;
        }
        handoff.give_back(buf)
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
        let stem = stem.rebased(cx.base)?;
        let x = Loc::view(cx.plan, input).rebased(cx.base)?;
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
        let u = Unit::new(cx.plan, &unit, cx.steps, cx.tensors)?.rebased(cx.base)?;
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
        Shortcut::new(&spec, o, shortcut).band(&need, rows, &x, cx.arena, cx.ext, cx.threads)
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
        let u = Unit::new(cx.plan, &unit, cx.steps, cx.tensors)?.rebased(cx.base)?;
        u.band(&mut win, rows, &x, &x, cx.arena, cx.ext, cx.threads)?;
        self.bands[e] = win.rows();
        Ok(())
    }
}

/// The most rows each window of `seg` holds at once, from a dry run of its
/// schedule (no kernel runs); `None` if the schedule cannot run.
pub(super) fn dry_spans(seg: &Segment) -> Option<[usize; MAX_ELEMENTS]> {
    let mut dry = Driver::<[crate::program::TensorData]>::new(seg, None)?;
    dry.run_last().ok()?;
    Some(dry.max_span)
}

/// Runs one segment if no thread has taken it up yet (nor its consumer).
fn run_slot<T: TensorSource + Sync + ?Sized>(
    slot: &Mutex<Slot<'_, T>>,
    abort: &AtomicBool,
    handoffs: &[Handoff<'_>],
) -> Result<(), Error> {
    let taken = {
        let mut s = lock(slot);
        if s.cooperative {
            None
        } else {
            s.driver.take()
        }
    };
    let Some(mut d) = taken else {
        return Ok(());
    };
    let raise = || {
        abort.store(true, Ordering::Release);
        for h in handoffs {
            h.wake();
        }
    };
    /// Raises the abort flag if the segment unwinds.
    struct OnUnwind<F: Fn()>(F);
    impl<F: Fn()> Drop for OnUnwind<F> {
        fn drop(&mut self) {
            if std::thread::panicking() {
                (self.0)();
            }
        }
    }
    let guard = OnUnwind(raise);
    let r = d.run_last();
    if r.is_err() {
        (guard.0)();
    }
    r
}

/// Runs the last of `slots` on this thread and the others on the pool's.
fn run_from<T: TensorSource + Sync + ?Sized>(
    slots: &[Mutex<Slot<'_, T>>],
    abort: &AtomicBool,
    handoffs: &[Handoff<'_>],
) -> Result<(), Error> {
    match slots {
        [] => Ok(()),
        [only] => run_slot(only, abort, handoffs),
        [rest @ .., last] => {
            let (a, b) = rayon::join(
                || run_slot(last, abort, handoffs),
                || run_from(rest, abort, handoffs),
            );
            match (a, b) {
                (Err(e), Err(f)) if is_abort(&e) => Err(f),
                (Err(e), _) | (_, Err(e)) => Err(e),
                (Ok(()), Ok(())) => Ok(()),
            }
        }
    }
}

/// Runs the pipeline over the arena: one segment per thread when it has several
/// (`threads > 1`, inside a pool with that many workers), otherwise all on this
/// thread.
pub fn run<T: TensorSource + Sync + ?Sized>(
    plan: &ExecPlan,
    pipe: &Pipeline,
    steps: &[Step],
    tensors: &T,
    arena: &mut [f32],
    ext: &[f32],
    threads: usize,
) -> Result<(), Error> {
    let n = pipe.segments.len();
    if n == 0 || n > MAX_SEGMENTS || pipe.regions.len() != n + 1 || pipe.handoffs.len() + 1 != n {
        return Err(Error::Argument("pipeline segments do not match".into()));
    }
    // Split the arena into the segments' regions and the handoff buffers.
    let mut regions: [&mut [f32]; MAX_SEGMENTS + 1] = Default::default();
    let mut rest = arena;
    let mut consumed = 0;
    for (i, r) in pipe.regions.iter().enumerate() {
        if r.is_empty() {
            continue;
        }
        if r.start < consumed || r.end - consumed > rest.len() {
            return Err(Error::Argument("pipeline regions overlap".into()));
        }
        let tail = std::mem::take(&mut rest).split_at_mut(r.start - consumed).1;
        let (mine, tail) = tail.split_at_mut(r.len());
        regions[i] = mine;
        rest = tail;
        consumed = r.end;
    }
    let handoffs: [Handoff; MAX_SEGMENTS] = Default::default();
    let mut buffers = std::mem::take(&mut regions[n]);
    let mut at = pipe.regions[n].start;
    for (h, spec) in handoffs.iter().zip(&pipe.handoffs) {
        let r = plan.area(spec.area);
        if r.start < at || r.end - at > buffers.len() || spec.chunk_floats == 0 {
            return Err(Error::Argument(
                "handoff buffers outside their region".into(),
            ));
        }
        let tail = std::mem::take(&mut buffers).split_at_mut(r.start - at).1;
        let (mine, tail) = tail.split_at_mut(r.len());
        for b in mine.chunks_exact_mut(spec.chunk_floats).take(SLOTS) {
            h.add_buffer(b)?;
        }
        buffers = tail;
        at = r.end;
    }
    let abort = AtomicBool::new(false);
    let slots: [Mutex<Slot<'_, T>>; MAX_SEGMENTS] = std::array::from_fn(|_| {
        Mutex::new(Slot {
            driver: None,
            cooperative: false,
        })
    });
    let started = Instant::now();
    for (s, region) in regions.into_iter().take(n).enumerate() {
        let links = Links {
            out: (s + 1 < n).then(|| &handoffs[s]),
            input: s.checked_sub(1).map(|p| (&handoffs[p], &slots[p])),
            abort: &abort,
            eager: threads <= 1,
            started,
        };
        let compute = Compute {
            plan,
            steps,
            tensors,
            arena: region,
            base: pipe.regions[s].start,
            ext,
            threads: if n == 1 { threads } else { 1 },
            links,
        };
        let d = Driver::new(&pipe.segments[s], Some(compute))
            .ok_or_else(|| Error::Argument("pipeline too long".into()))?;
        lock(&slots[s]).driver = Some(d);
    }
    if threads <= 1 {
        run_slot(&slots[n - 1], &abort, &handoffs)
    } else {
        run_from(&slots[..n], &abort, &handoffs)
    }
}
