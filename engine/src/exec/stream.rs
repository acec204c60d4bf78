//! Streamed stages: a chain of steps run band by band, its intermediate tensors
//! living only in small band buffers that stay in cache.
//!
//! A band buffer holds the rows `[lo, hi)` the next op's current output rows read.
//! Moving to the next band, rows still needed are moved to the front of the buffer
//! (at most `kernel - stride` rows per channel) and only the new rows are computed,
//! so no work is repeated.
//!
//! The band functions read and write tensors through [`Loc`]s, so the same code
//! serves whole tensors (the chain's input and output are full buffers) and the
//! row windows of the whole-network pipeline (see `pipeline/`).

use super::plan::{input_rows, StemBand, UnitBand, HALO_ROWS};
use super::step::{conv_of, depthwise_of, par_channels, par_pointwise, pointwise_of, pool_of};
use super::{split, ExecPlan};
use crate::graph::{Pads, PoolSpec};
use crate::program::{Step, TensorSource, View};
use crate::Error;
use kernels::{dispatch, PixelSpan, PlaneGeom, PlaneRows, PointwiseCall, PoolKind};
use std::ops::Range;

/// Where some rows of a tensor's planes are stored: in the arena, or in the
/// caller's input buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Loc {
    /// First float of the first plane.
    pub start: usize,
    /// Floats of all planes (from `start`).
    pub len: usize,
    /// Floats from one plane to the next.
    pub stride: usize,
    /// The tensor row stored at row 0 of each plane.
    pub lo: usize,
    /// Floats per row.
    pub width: usize,
    /// In the caller's input buffer rather than the arena.
    pub external: bool,
}

impl Loc {
    /// A whole planar view.
    pub fn view(p: &ExecPlan, v: View) -> Loc {
        let plane = p.plane(v.buffer);
        let external = v.buffer == 0 && p.external_input;
        let range = if external {
            v.offset as usize * plane..(v.offset + v.channels) as usize * plane
        } else {
            p.range(v)
        };
        Loc {
            start: range.start,
            len: range.len(),
            stride: plane,
            lo: 0,
            width: p.buffer_hw[v.buffer as usize].1,
            external,
        }
    }

    /// The arena range of these planes.
    pub fn range(&self) -> Range<usize> {
        self.start..self.start + self.len
    }

    /// The same storage from channel `c` on.
    pub fn channel(&self, c: usize) -> Loc {
        let skip = (c * self.stride).min(self.len);
        Loc {
            start: self.start + skip,
            len: self.len - skip,
            ..*self
        }
    }

    /// The same storage seen from an arena region starting at `base` (storage in
    /// the caller's input stays as it is).
    pub fn rebased(self, base: usize) -> Result<Loc, Error> {
        if self.external {
            return Ok(self);
        }
        Ok(Loc {
            start: shift(self.range(), base)?.start,
            ..self
        })
    }

    /// Index of tensor row `r` inside each plane.
    pub fn at(&self, r: usize) -> usize {
        (r - self.lo) * self.width
    }
}

/// `r` moved down by `base` (into a region of the arena starting there).
pub fn shift(r: Range<usize>, base: usize) -> Result<Range<usize>, Error> {
    match (r.start.checked_sub(base), r.end.checked_sub(base)) {
        (Some(a), Some(b)) => Ok(a..b),
        _ => Err(Error::Argument("buffer outside its arena region".into())),
    }
}

/// Splits out the slice to write (`out`, in the arena) and the slice to read.
fn write_read<'a>(
    arena: &'a mut [f32],
    ext: &'a [f32],
    out: Range<usize>,
    read: &Loc,
) -> Result<(&'a mut [f32], &'a [f32]), Error> {
    if read.external {
        let r = ext
            .get(read.range())
            .ok_or_else(|| Error::Argument("input rows outside the input".into()))?;
        let [o] = split(arena, [out])?;
        Ok((o, r))
    } else {
        let [o, r] = split(arena, [out, read.range()])?;
        Ok((o, r))
    }
}

/// Rows of a band buffer: which input rows it holds now.
#[derive(Clone, Debug, Default)]
pub struct Window {
    held: Range<usize>,
}

impl Window {
    /// A band buffer holding `rows`.
    pub fn from_rows(rows: Range<usize>) -> Window {
        Window { held: rows }
    }

    /// The rows held, as `(start, end)`.
    pub fn rows(&self) -> (usize, usize) {
        (self.held.start, self.held.end)
    }

    /// Makes the buffer hold rows `want`, moving the rows it keeps to the front of
    /// each of its `channels` planes (`stride` floats apart, `width` floats a row).
    /// Returns the rows still to compute.
    fn advance(
        &mut self,
        want: Range<usize>,
        band: &mut [f32],
        channels: usize,
        stride: usize,
        width: usize,
    ) -> Result<Range<usize>, Error> {
        let keep = want.start.max(self.held.start)..self.held.end.min(want.end);
        let todo_from = if keep.is_empty() {
            want.start
        } else {
            keep.end
        };
        if !keep.is_empty() && keep.start > self.held.start {
            let from = (keep.start - self.held.start) * width;
            let len = keep.len() * width;
            dispatch::move_to_front(band, channels, stride, from, len)?;
        }
        self.held = want;
        Ok(todo_from..self.held.end)
    }
}

/// A pointwise -> depthwise -> pointwise unit, ready to run band by band.
pub struct Unit<'t> {
    pw1: kernels::Pointwise<'t>,
    dw: kernels::Depthwise3x3<'t>,
    pw2: kernels::Pointwise<'t>,
    pads: Pads,
    /// Depthwise input and output sizes.
    pub hw1: (usize, usize),
    /// Depthwise output size.
    pub hw2: (usize, usize),
    channels: usize,
    band_in: Range<usize>,
    in_rows: usize,
    band_out: Range<usize>,
    out_rows: usize,
    halo: Option<Range<usize>>,
}

impl<'t> Unit<'t> {
    /// The unit of steps `u.steps`, with band buffers at `band_in` (`u.in_rows`
    /// rows) and `band_out` (`u.rows` rows).
    pub fn new<T: TensorSource + ?Sized>(
        p: &ExecPlan,
        u: &UnitBand,
        steps: &[Step],
        t: &'t T,
    ) -> Result<Unit<'t>, Error> {
        let [s1, s2, s3] = u.steps;
        let (p1, dw, p2) = (&steps[s1], &steps[s2], &steps[s3]);
        let Step::Depthwise { pads, .. } = dw else {
            return Err(Error::Argument("unit band over the wrong steps".into()));
        };
        let pw1 = pointwise_of(p1, t)?;
        Ok(Unit {
            channels: pw1.groups * pw1.m,
            pw1,
            dw: depthwise_of(dw, t)?,
            pw2: pointwise_of(p2, t)?,
            pads: *pads,
            hw1: p.shapes[s2].input,
            hw2: p.shapes[s2].output,
            band_in: p.area(u.band_in),
            in_rows: u.in_rows,
            band_out: p.area(u.band_out),
            out_rows: u.rows,
            halo: u.halo.map(|a| p.area(a)),
        })
    }

    /// The same unit with its band buffers seen from an arena region starting at
    /// `base`.
    pub fn rebased(mut self, base: usize) -> Result<Unit<'t>, Error> {
        self.band_in = shift(self.band_in, base)?;
        self.band_out = shift(self.band_out, base)?;
        self.halo = self.halo.map(|h| shift(h, base)).transpose()?;
        Ok(self)
    }

    /// Input rows the output rows `rows` read.
    pub fn needs(&self, rows: &Range<usize>) -> Range<usize> {
        input_rows(rows, self.dw.stride, self.pads.top, 3, self.hw1.0)
    }

    /// Computes output rows `rows` (at most the band height) from `x` into `out`.
    #[allow(clippy::too_many_arguments)]
    pub fn band(
        &self,
        win: &mut Window,
        rows: Range<usize>,
        x: &Loc,
        out: &Loc,
        arena: &mut [f32],
        ext: &[f32],
        threads: usize,
    ) -> Result<(), Error> {
        {
            let (band, xs) = write_read(arena, ext, self.band_in.clone(), x)?;
            self.gconv1(win, &rows, (xs, x), band, threads)?;
        }
        {
            let [band2, band1] = split(arena, [self.band_out.clone(), self.band_in.clone()])?;
            self.depthwise(&rows, band1, band2, threads)?;
        }
        let [o, band2] = split(arena, [out.range(), self.band_out.clone()])?;
        let (call, w2) = (self.gconv2_spans(&rows, out), self.hw2.1);
        par_pointwise(&self.pw2, band2, o, call, rows.len() * w2, threads)
    }

    /// [`Unit::band`] for one of several threads that split the output rows:
    /// its own band buffers `band1` and `band2` (`x` read as `input` says), its
    /// rows of the output in `out` (planes as `out_loc` describes them).
    #[allow(clippy::too_many_arguments)]
    fn band_of_part(
        &self,
        win: &mut Window,
        rows: Range<usize>,
        input: &PartInput,
        (band1, band2): (&mut [f32], &mut [f32]),
        out: &mut PlaneRows,
        out_loc: &Loc,
        own: &Range<usize>,
    ) -> Result<(), Error> {
        match *input {
            PartInput::Shared(xs, x) => self.gconv1(win, &rows, (xs, x), band1, 1)?,
            PartInput::Own { x, halo, part } => {
                self.gconv1_own(win, &rows, (out, x), (halo, part, own), band1)?
            }
        }
        self.depthwise(&rows, band1, band2, 1)?;
        let (input, output) = self.gconv2_spans(&rows, out_loc);
        let call = PointwiseCall {
            input,
            output,
            count: rows.len() * self.hw2.1,
            panels: 0..self.pw2.panels(),
        };
        Ok(dispatch::pointwise_rows(&self.pw2, band2, out, &call)?)
    }

    /// The first pointwise conv of the input rows output rows `rows` need (those
    /// the band buffer does not hold yet), from `x` (read from `xs`).
    fn gconv1(
        &self,
        win: &mut Window,
        rows: &Range<usize>,
        (xs, x): (&[f32], &Loc),
        band: &mut [f32],
        threads: usize,
    ) -> Result<(), Error> {
        let (need, todo) = self.advance(win, rows, band)?;
        if todo.is_empty() {
            return Ok(());
        }
        let spans = self.gconv1_spans(x, &need, &todo);
        par_pointwise(&self.pw1, xs, band, spans, todo.len() * self.hw1.1, threads)
    }

    /// [`Unit::gconv1`] for part `part` of a unit split by rows that writes
    /// over its input: the part's own input rows `own` are read from `xo` (its
    /// rows of the input, which it overwrites band by band; stored as `x`
    /// says), the rows next to them from `halo` (see [`UnitBand::halo`]).
    fn gconv1_own(
        &self,
        win: &mut Window,
        rows: &Range<usize>,
        (xo, x): (&PlaneRows, &Loc),
        (halo, part, own): (&[f32], usize, &Range<usize>),
        band: &mut [f32],
    ) -> Result<(), Error> {
        let (need, todo) = self.advance(win, rows, band)?;
        let mine = todo.start.max(own.start)..todo.end.min(own.end);
        if !mine.is_empty() {
            let (input, output) = self.gconv1_spans(x, &need, &mine);
            let call = PointwiseCall {
                input,
                output,
                count: mine.len() * self.hw1.1,
                panels: 0..self.pw1.panels(),
            };
            dispatch::pointwise_from_rows(&self.pw1, xo, band, &call)?;
        }
        // Cut t (between parts t - 1 and t) holds the rows on both sides of it:
        // the row above part t is the first of cut t, the row below it the
        // second of cut t + 1 (slots t - 1 and t).
        for r in todo.filter(|r| !own.contains(r)) {
            let slot = if r < own.start {
                part.checked_sub(1).map(|s| (s, 0))
            } else {
                Some((part, 1))
            };
            let slot =
                slot.ok_or_else(|| Error::Argument("no rows above the first part".into()))?;
            self.copy_halo_row(halo, slot, band, r - need.start)?;
        }
        Ok(())
    }

    /// Copies row `i` of halo slot `slot` (the rows at cut `slot + 1`) to row
    /// `at` of the first band buffer `band`.
    fn copy_halo_row(
        &self,
        halo: &[f32],
        (slot, i): (usize, usize),
        band: &mut [f32],
        at: usize,
    ) -> Result<(), Error> {
        let w1 = self.hw1.1;
        let (hs, bs) = (HALO_ROWS * w1, self.in_rows * w1);
        let first = slot
            .checked_mul(self.channels * hs)
            .ok_or_else(|| Error::Argument("halo row outside its area".into()))?;
        for c in 0..self.channels {
            let src = halo
                .get(first + c * hs + i * w1..)
                .and_then(|h| h.get(..w1));
            let dst = band
                .get_mut(c * bs + at * w1..)
                .and_then(|b| b.get_mut(..w1));
            let (Some(src), Some(dst)) = (src, dst) else {
                return Err(Error::Argument("halo row outside its band".into()));
            };
            dispatch::copy(src, dst)?;
        }
        Ok(())
    }

    /// Computes the first pointwise conv of the rows at each cut between the
    /// `parts` parts of a unit split by rows into `halo` (see
    /// [`UnitBand::halo`]), from `x` (read from `xs`), before any part runs.
    fn gconv1_halo(
        &self,
        parts: usize,
        (xs, x): (&[f32], &Loc),
        halo: &mut [f32],
    ) -> Result<(), Error> {
        let (h, w1) = (self.hw1.0, self.hw1.1);
        let per_cut = self.channels * HALO_ROWS * w1;
        if halo.len() < parts.saturating_sub(1) * per_cut {
            return Err(Error::Argument("halo area shorter than its cuts".into()));
        }
        for (t, slot) in (1..parts).zip(halo.chunks_exact_mut(per_cut)) {
            let cut = part_start(h, parts, t);
            // A cut at the top or bottom has a part on one side only.
            if cut == 0 || cut >= h {
                continue;
            }
            let spans = (
                PixelSpan {
                    stride: x.stride,
                    start: x.at(cut - 1),
                },
                PixelSpan {
                    stride: HALO_ROWS * w1,
                    start: 0,
                },
            );
            par_pointwise(&self.pw1, xs, slot, spans, HALO_ROWS * w1, 1)?;
        }
        Ok(())
    }

    /// Drops the input rows the first band buffer holds that output rows
    /// `rows` no longer read; returns the input rows they read and those among
    /// them still to compute.
    fn advance(
        &self,
        win: &mut Window,
        rows: &Range<usize>,
        band: &mut [f32],
    ) -> Result<(Range<usize>, Range<usize>), Error> {
        let w1 = self.hw1.1;
        let need = self.needs(rows);
        let todo = win.advance(need.clone(), band, self.channels, self.in_rows * w1, w1)?;
        Ok((need, todo))
    }

    /// Where the first pointwise conv reads input rows `todo` (from `x`) and
    /// writes them (in the first band buffer, which holds rows `need`).
    fn gconv1_spans(
        &self,
        x: &Loc,
        need: &Range<usize>,
        todo: &Range<usize>,
    ) -> (PixelSpan, PixelSpan) {
        let w1 = self.hw1.1;
        let input = PixelSpan {
            stride: x.stride,
            start: x.at(todo.start),
        };
        let output = PixelSpan {
            stride: self.in_rows * w1,
            start: (todo.start - need.start) * w1,
        };
        (input, output)
    }

    /// The depthwise conv of output rows `rows`, from `band1` into `band2`.
    fn depthwise(
        &self,
        rows: &Range<usize>,
        band1: &[f32],
        band2: &mut [f32],
        threads: usize,
    ) -> Result<(), Error> {
        let ((_, w1), (_, w2)) = (self.hw1, self.hw2);
        let need = self.needs(rows);
        let g = PlaneGeom {
            in_h: need.len(),
            in_w: w1,
            in_stride: self.in_rows * w1,
            out_h: rows.len(),
            out_w: w2,
            out_stride: self.out_rows * w2,
            pad_top: need.start + self.pads.top - rows.start * self.dw.stride,
            pad_left: self.pads.left,
        };
        let dw = &self.dw;
        par_channels(band2, self.channels, g.out_stride, threads, |r, o| {
            dispatch::dwconv3x3(dw, &g, band1, o, r)
        })
    }

    /// Where the second pointwise conv reads output rows `rows` (its band) and
    /// writes them (`out`).
    fn gconv2_spans(&self, rows: &Range<usize>, out: &Loc) -> (PixelSpan, PixelSpan) {
        let input = PixelSpan {
            stride: self.out_rows * self.hw2.1,
            start: 0,
        };
        let output = PixelSpan {
            stride: out.stride,
            start: out.at(rows.start),
        };
        (input, output)
    }
}

/// Output rows `all` in bands of `rows` rows (the last may be shorter).
fn bands(all: Range<usize>, rows: usize) -> impl Iterator<Item = Range<usize>> {
    let end = all.end;
    all.step_by(rows.max(1))
        .map(move |r0| r0..(r0 + rows.max(1)).min(end))
}

/// Runs a pointwise -> depthwise -> pointwise unit band by band between whole
/// tensors; with `shortcut` (a stride-2 unit's pool step, see
/// [`super::DownBand`]) each band is followed by the same output
/// rows of the pool, which read the input rows the band just read.
pub fn run_unit<T: TensorSource + ?Sized>(
    p: &ExecPlan,
    u: &UnitBand,
    shortcut: Option<usize>,
    steps: &[Step],
    t: &T,
    (arena, ext): (&mut [f32], &[f32]),
    threads: usize,
) -> Result<(), Error> {
    let (Step::Pointwise { input: x, .. }, Step::Pointwise { output: out, .. }) =
        (&steps[u.steps[0]], &steps[u.steps[2]])
    else {
        return Err(Error::Argument("unit band over the wrong steps".into()));
    };
    let unit = Unit::new(p, u, steps, t)?;
    let shortcut = match shortcut.map(|j| &steps[j]) {
        Some(Step::Pool { spec, output, .. }) => Some(Shortcut::new(
            spec,
            Loc::view(p, *output),
            output.channels as usize,
        )),
        Some(_) => return Err(Error::Argument("shortcut over the wrong step".into())),
        None => None,
    };
    let (x, out) = (Loc::view(p, *x), Loc::view(p, *out));
    if u.parts > 1 {
        if shortcut.is_some() {
            return Err(Error::Argument(
                "a unit split by rows has no shortcut".into(),
            ));
        }
        return run_unit_rows(&unit, u.parts, (&x, &out), arena, ext);
    }
    let mut win = Window::default();
    for rows in bands(0..unit.hw2.0, u.rows) {
        unit.band(&mut win, rows.clone(), &x, &out, arena, ext, threads)?;
        if let Some(sc) = &shortcut {
            sc.band(&unit.needs(&rows), rows, &x, arena, ext, threads)?;
        }
    }
    Ok(())
}

/// Runs a unit on `parts` threads at once, each on its own rows of the output
/// with its own pair of band buffers (see [`UnitBand::parts`]): no kernel call
/// is split, and each thread's bands stay in its core's cache. A unit that
/// writes over its input first convolves the rows at each cut (see
/// [`UnitBand::halo`]); then each part reads and writes its own rows only.
fn run_unit_rows(
    unit: &Unit,
    parts: usize,
    (x, out): (&Loc, &Loc),
    arena: &mut [f32],
    ext: &[f32],
) -> Result<(), Error> {
    let bands = [unit.band_in.clone(), unit.band_out.clone()];
    if let Some(halo) = unit.halo.clone() {
        if x != out {
            return Err(Error::Argument(
                "a unit with cut rows must write over its input".into(),
            ));
        }
        {
            let [hs, xs] = split(arena, [halo.clone(), x.range()])?;
            unit.gconv1_halo(parts, (xs, x), hs)?;
        }
        let [b1, b2] = bands;
        let [o, b1, b2, hs] = split(arena, [out.range(), b1, b2, halo])?;
        let input = PartInput::Own {
            x,
            halo: hs,
            part: 0,
        };
        return RowsJob::new(unit, parts, input, out, (b1, b2)).run(o, (b1, b2));
    }
    let [b1, b2] = bands;
    let (o, b1, b2, xs) = if x.external {
        let xs = ext
            .get(x.range())
            .ok_or_else(|| Error::Argument("input rows outside the input".into()))?;
        let [o, b1, b2] = split(arena, [out.range(), b1, b2])?;
        (o, b1, b2, xs)
    } else {
        let [o, b1, b2, xs] = split(arena, [out.range(), b1, b2, x.range()])?;
        (o, b1, b2, &*xs)
    };
    let input = PartInput::Shared(xs, x);
    RowsJob::new(unit, parts, input, out, (b1, b2)).run(o, (b1, b2))
}

/// First output row of part `t` of `parts` over `h` rows.
fn part_start(h: usize, parts: usize, t: usize) -> usize {
    h * t / parts.max(1)
}

/// Where the parts of a unit split by rows read its input.
#[derive(Clone, Copy)]
enum PartInput<'a> {
    /// From the whole input (read from the slice, stored as the [`Loc`] says),
    /// which no part writes.
    Shared(&'a [f32], &'a Loc),
    /// Each part from its own rows of the output, which are also the input
    /// (stored as `x` says), the rows next to them from `halo`; `part` is the
    /// part's index.
    Own {
        /// How the input (and output) is stored.
        x: &'a Loc,
        /// The first conv's output at each cut.
        halo: &'a [f32],
        /// The part's index.
        part: usize,
    },
}

/// What the parts of a unit split by rows share.
struct RowsJob<'a, 't> {
    unit: &'a Unit<'t>,
    parts: usize,
    input: PartInput<'a>,
    out: &'a Loc,
    /// Floats of one part's first and second band buffer.
    band_floats: (usize, usize),
}

impl<'a, 't> RowsJob<'a, 't> {
    /// The job of `parts` parts whose band buffers are `b1` and `b2`.
    fn new(
        unit: &'a Unit<'t>,
        parts: usize,
        input: PartInput<'a>,
        out: &'a Loc,
        (b1, b2): (&[f32], &[f32]),
    ) -> Self {
        RowsJob {
            unit,
            parts,
            input,
            out,
            band_floats: (b1.len() / parts, b2.len() / parts),
        }
    }

    /// Runs every part, writing output `o`.
    fn run(&self, o: &mut [f32], bufs: (&mut [f32], &mut [f32])) -> Result<(), Error> {
        let rows = PlaneRows::new(o, self.out.stride)?;
        self.split(0..self.parts, rows, bufs)
    }

    /// Parts `parts` at once ([`super::awake::join`]s, which allocate nothing): `out` holds
    /// their rows, `b1` and `b2` their bands.
    fn split(
        &self,
        parts: Range<usize>,
        out: PlaneRows,
        (b1, b2): (&mut [f32], &mut [f32]),
    ) -> Result<(), Error> {
        let h = self.unit.hw2.0;
        if parts.len() <= 1 {
            let t = parts.start;
            let own = part_start(h, self.parts, t)..part_start(h, self.parts, t + 1);
            let input = match self.input {
                PartInput::Own { x, halo, .. } => PartInput::Own { x, halo, part: t },
                shared => shared,
            };
            let mut out = out;
            let mut win = Window::default();
            for band in bands(own.clone(), self.unit.out_rows) {
                let bufs = (&mut *b1, &mut *b2);
                self.unit
                    .band_of_part(&mut win, band, &input, bufs, &mut out, self.out, &own)?;
            }
            return Ok(());
        }
        let mid = parts.start + parts.len() / 2;
        let (oa, ob) = out.split_at(self.out.at(part_start(h, self.parts, mid)))?;
        let left = mid - parts.start;
        let (b1a, b1b) = b1.split_at_mut(left * self.band_floats.0);
        let (b2a, b2b) = b2.split_at_mut(left * self.band_floats.1);
        let (ra, rb) = super::awake::join(
            || self.split(parts.start..mid, oa, (b1a, b2a)),
            || self.split(mid..parts.end, ob, (b1b, b2b)),
        );
        ra.and(rb)
    }
}

/// A stride-2 unit's shortcut pool, run band by band after it (here and in the
/// row pipeline).
pub struct Shortcut {
    pool: kernels::Pool,
    spec: PoolSpec,
    /// The pool's output.
    out: Loc,
    channels: usize,
}

impl Shortcut {
    /// The pool `spec` writing its first `channels` output planes at `out`.
    pub fn new(spec: &PoolSpec, out: Loc, channels: usize) -> Shortcut {
        Shortcut {
            pool: pool_of(spec),
            spec: *spec,
            out,
            channels,
        }
    }

    /// Pool output rows `rows` from input rows `need` of `x`.
    pub fn band(
        &self,
        need: &Range<usize>,
        rows: Range<usize>,
        x: &Loc,
        arena: &mut [f32],
        ext: &[f32],
        threads: usize,
    ) -> Result<(), Error> {
        let (spec, out) = (&self.spec, &self.out);
        let g = PlaneGeom {
            in_h: need.len(),
            in_w: x.width,
            in_stride: x.stride,
            out_h: rows.len(),
            out_w: out.width,
            out_stride: out.stride,
            pad_top: need.start + spec.pads.top - rows.start * spec.stride.0,
            pad_left: spec.pads.left,
        };
        let (dst, src) = write_read(arena, ext, out.range(), x)?;
        let (dst, src) = (&mut dst[out.at(rows.start)..], &src[x.at(need.start)..]);
        let pool = &self.pool;
        par_channels(dst, self.channels, out.stride, threads, |r, o| {
            dispatch::pool(pool, &g, src, o, r)
        })
    }
}

/// A convolution -> max pool stem, ready to run band by band.
pub struct Stem<'t> {
    conv: kernels::Conv2d<'t>,
    pool: kernels::Pool,
    spec: PoolSpec,
    conv_pads: Pads,
    /// Input size.
    pub hw_in: (usize, usize),
    hw_conv: (usize, usize),
    /// Output size.
    pub hw_out: (usize, usize),
    band: Range<usize>,
    band_rows: usize,
}

impl<'t> Stem<'t> {
    /// The stem of steps `s.steps` with its band at `s.band`.
    pub fn new<T: TensorSource + ?Sized>(
        p: &ExecPlan,
        s: &StemBand,
        steps: &[Step],
        t: &'t T,
    ) -> Result<Stem<'t>, Error> {
        let [sc, sp] = s.steps;
        let (Step::Conv { pads, .. }, Step::Pool { spec, .. }) = (&steps[sc], &steps[sp]) else {
            return Err(Error::Argument("stem band over the wrong steps".into()));
        };
        let (mut conv, mut pool) = (conv_of(&steps[sc], t)?, pool_of(spec));
        // The conv's output lives only in the band, read only by the pool: a ReLU
        // moves behind a max pool (relu(max) = max(relu)), onto a quarter of the
        // values, and costs NEON nothing there (the maxima start at zero).
        if conv.relu && spec.kind == PoolKind::Max {
            conv.relu = false;
            pool.relu = true;
        }
        Ok(Stem {
            conv,
            pool,
            spec: *spec,
            conv_pads: *pads,
            hw_in: p.shapes[sc].input,
            hw_conv: p.shapes[sc].output,
            hw_out: p.shapes[sp].output,
            band: p.area(s.band),
            band_rows: s.in_rows,
        })
    }

    /// The same stem with its band buffer seen from an arena region starting at
    /// `base`.
    pub fn rebased(mut self, base: usize) -> Result<Stem<'t>, Error> {
        self.band = shift(self.band, base)?;
        Ok(self)
    }

    /// Computes pool output rows `rows` from the input `x` into `out`.
    #[allow(clippy::too_many_arguments)]
    pub fn band(
        &self,
        win: &mut Window,
        rows: Range<usize>,
        x: &Loc,
        out: &Loc,
        arena: &mut [f32],
        ext: &[f32],
        threads: usize,
    ) -> Result<(), Error> {
        let ((hin, win_w), (hc, wc)) = (self.hw_in, self.hw_conv);
        let band_stride = self.band_rows * wc;
        let (spec, conv) = (&self.spec, &self.conv);
        let need = input_rows(&rows, spec.stride.0, spec.pads.top, spec.kh, hc);
        {
            let (band, inp) = write_read(arena, ext, self.band.clone(), x)?;
            let todo = win.advance(need.clone(), band, conv.cout, band_stride, wc)?;
            if !todo.is_empty() {
                // Conv output rows `todo` read input rows from `first` on: start the
                // input slice there so the kernel sees them as its row 0.
                let first = (todo.start * conv.stride_h).saturating_sub(self.conv_pads.top);
                let g = PlaneGeom {
                    in_h: hin - first,
                    in_w: win_w,
                    in_stride: x.stride,
                    out_h: todo.len(),
                    out_w: wc,
                    out_stride: band_stride,
                    pad_top: first + self.conv_pads.top - todo.start * conv.stride_h,
                    pad_left: self.conv_pads.left,
                };
                let inp = inp.get(x.at(first)..).unwrap_or(&[]);
                let dst = &mut band[(todo.start - need.start) * wc..];
                par_channels(dst, conv.cout, band_stride, threads, |r, o| {
                    dispatch::conv2d(conv, &g, inp, o, r)
                })?;
            }
        }
        let [o, band] = split(arena, [out.range(), self.band.clone()])?;
        let g = PlaneGeom {
            in_h: need.len(),
            in_w: wc,
            in_stride: band_stride,
            out_h: rows.len(),
            out_w: self.hw_out.1,
            out_stride: out.stride,
            pad_top: need.start + spec.pads.top - rows.start * spec.stride.0,
            pad_left: spec.pads.left,
        };
        let dst = &mut o[out.at(rows.start)..];
        let pool = &self.pool;
        par_channels(dst, conv.cout, out.stride, threads, |r, o| {
            dispatch::pool(pool, &g, band, o, r)
        })
    }
}

/// Runs a convolution -> max pool stem band by band between whole tensors.
pub fn run_stem<T: TensorSource + ?Sized>(
    p: &ExecPlan,
    s: &StemBand,
    steps: &[Step],
    t: &T,
    arena: &mut [f32],
    ext: &[f32],
    threads: usize,
) -> Result<(), Error> {
    let (Step::Conv { input, .. }, Step::Pool { output, .. }) =
        (&steps[s.steps[0]], &steps[s.steps[1]])
    else {
        return Err(Error::Argument("stem band over the wrong steps".into()));
    };
    let stem = Stem::new(p, s, steps, t)?;
    let (x, out) = (Loc::view(p, *input), Loc::view(p, *output));
    let mut win = Window::default();
    for rows in bands(0..stem.hw_out.0, s.rows) {
        stem.band(&mut win, rows, &x, &out, arena, ext, threads)?;
    }
    Ok(())
}
