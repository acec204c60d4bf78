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
//!
//! Threads: a plan may cut the chain into `n` *segments* of about
//! equal work (multiply-adds, depthwise and pools weighted by their lower
//! efficiency), each run by one thread with its own windows and bands in its own
//! region of the arena. A segment ends in a *feed*, which copies each chunk of rows
//! of its last window into a [`Handoff`](super::handoff::Handoff) buffer; the
//! next segment starts with a *source*, which copies the chunks into its own
//! window. The only
//! synchronisation is the handoff, a few dozen times per inference, instead of a
//! fork and join in every kernel call. Every kernel call is the same as in one
//! thread, so results are bit-identical for any thread count. If no thread takes
//! up a producer segment in time (a busy pool, or a one-thread run of a plan made
//! for several), its consumer runs it itself, chunk by chunk. (The other way to use
//! threads, splitting each kernel call by output channels, needs no segments.)

mod driver;

pub use driver::run;

use super::handoff::SLOTS;
use super::plan::{shortcut_pool, Areas, ExecOptions, Stage, StemBand, StepShape, UnitBand};
use crate::arena::Layout;
use crate::program::{Program, Step, View};
use kernels::PoolKind;
use std::ops::Range;
use std::time::Duration;

/// Most elements a pipeline may have (the schedule state lives on the stack).
pub const MAX_ELEMENTS: usize = 48;

/// Spare rows per window beyond the most it must hold at once: the rows still
/// needed are moved to the front once every `WINDOW_SLACK_ROWS + 1` new rows
/// instead of for every row. Measured (aarch64 instruction count, 0.5x g = 3 at
/// 720x1280): 322.3M per inference without slack, 314.0M with 2 rows, 309.1M
/// with 4; the 1x g = 3 arena at 720x1280 grows from 6.82 to 7.80 MB (2 rows)
/// or 8.79 MB (4 rows).
const WINDOW_SLACK_ROWS: usize = 2;

/// Floats of spare rows a window may hold beyond [`WINDOW_SLACK_ROWS`], split
/// between the segments: a narrow window (few channels, or narrow rows) gets as
/// many spare rows as fill its share (two rows of 1x g = 3's stage-2 window at
/// 720x1280 in one segment), so it moves rows to the front less often, or never
/// when its rows then span the tensor. Measured (aarch64 instructions per
/// inference at e5eb635, 0.5x g = 3, one segment): 480x640 72.213M with two
/// spare rows in every window, 72.102M with 76,800 floats (38,400: 72.227M);
/// 720x1280 217.617M and 216.774M. The 1x g = 3 arena at 720x1280 grows from
/// 7.93 to 8.17 MB in one segment (0.30 of the whole-tensor plan) and from
/// 9.04 to 9.13 MB in two (0.33; the whole budget in each segment gave 9.29 MB,
/// over the third).
const WINDOW_SLACK_FLOATS: usize = 76_800;

/// Most segments (threads) a pipeline is cut into.
pub const MAX_SEGMENTS: usize = 8;

/// How long a consumer waits for a thread to take up its producer segment before
/// running the producer itself.
const GRACE: Duration = Duration::from_millis(20);

/// Relative cost of a depthwise or pooling multiply-add next to a pointwise one
/// (they run at about half the FLOPs per instruction, see kernels/NEON.md).
const SLOW_OP_WEIGHT: f64 = 2.5;

/// Output pixels per band the pipeline aims for at least (band height = pixels /
/// width).
const BAND_PIXELS: usize = 80;

/// Floats of one unit's depthwise output band (bottleneck channels x rows x
/// width; the stem's conv channels for its band) the pipeline aims for at
/// least: a narrow network gets taller bands, so its kernel calls are as large
/// in bytes as a wide one's and their per-call work (filter loads, sweep set-up,
/// edge columns, tile tails) is spread over as many outputs. Measured (aarch64
/// instructions per inference, 0.5x g = 3 at 480x640): 100.80M with 80-pixel
/// bands alone, 93.45M with 4800 floats, 86.32M with 9600, 81.58M with 19200
/// (79.47M for whole tensors); the 1x g = 3 arena at 720x1280 stays at 7.93 MB
/// with 9600 (0.29 of the whole-tensor plan) but grows to 10.71 MB with 19200.
const BAND_FLOATS: usize = 9600;

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
    /// The start of a later segment: rows of window `out` received from the
    /// previous segment, `rows` at a time.
    Source {
        /// The window filled.
        out: usize,
        /// Rows per chunk.
        rows: usize,
    },
    /// The end of an earlier segment: rows of window `input` sent to the next
    /// segment, `rows` at a time.
    Feed {
        /// The window sent.
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

/// One segment of the pipeline: the elements one thread runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Elements in network order (a source first unless this is the first
    /// segment, a feed last unless it is the last).
    pub elements: Vec<Element>,
    /// Windows.
    pub windows: Vec<WindowSpec>,
    /// Shared depthwise output band of the segment's units.
    pub band_out: usize,
    /// The sink's running channel means, then one chunk's means (last segment).
    pub sums: Option<usize>,
}

/// The chunk buffers between two segments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HandoffSpec {
    /// Arena area of the chunk buffers (four: how far a producer may run ahead).
    pub area: usize,
    /// Floats of one buffer (all channels of one chunk of rows).
    pub chunk_floats: usize,
}

/// The planned pipeline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pipeline {
    /// Segments in network order, one per thread.
    pub segments: Vec<Segment>,
    /// Handoff `i` carries rows from segment `i` to segment `i + 1`.
    pub handoffs: Vec<HandoffSpec>,
    /// Arena range of each segment's areas, then of all handoff buffers (each a
    /// contiguous region, so a run can split the arena between threads).
    pub regions: Vec<Range<usize>>,
}

impl Element {
    fn input(&self) -> Option<usize> {
        match *self {
            Element::Stem { .. } | Element::Source { .. } => None,
            Element::Down { input, .. }
            | Element::Sink { input, .. }
            | Element::Feed { input, .. } => Some(input),
            Element::InPlace { win, .. } => Some(win),
        }
    }

    /// The window this element writes (or updates).
    fn output(&self) -> Option<usize> {
        match *self {
            Element::Stem { out, .. } | Element::Down { out, .. } | Element::Source { out, .. } => {
                Some(out)
            }
            Element::InPlace { win, .. } => Some(win),
            Element::Sink { .. } | Element::Feed { .. } => None,
        }
    }

    /// The same element with its windows renamed by `map`.
    fn renamed(mut self, map: &mut impl FnMut(usize) -> usize) -> Element {
        match &mut self {
            Element::Stem { out: w, .. }
            | Element::InPlace { win: w, .. }
            | Element::Sink { input: w, .. }
            | Element::Source { out: w, .. }
            | Element::Feed { input: w, .. } => *w = map(*w),
            Element::Down { input, out, .. } => {
                *input = map(*input);
                *out = map(*out);
            }
        }
        self
    }

    /// The arena area of its band buffer (stem and units).
    fn band_area(&self) -> Option<usize> {
        match self {
            Element::Stem { band, .. } => Some(band.band),
            Element::Down { unit, .. } | Element::InPlace { unit, .. } => Some(unit.band_in),
            _ => None,
        }
    }

    /// Estimated work: multiply-adds, depthwise and pooling ones weighted.
    fn cost(&self, steps: &[Step], shapes: &[StepShape]) -> f64 {
        let step = |i: usize| {
            let (h, w) = shapes[i].output;
            let px = (h * w) as f64;
            match steps[i] {
                Step::Pointwise { groups, k, m, .. } => px * f64::from(groups * k * m),
                Step::Depthwise { output, .. } => {
                    px * 9.0 * f64::from(output.channels) * SLOW_OP_WEIGHT
                }
                Step::Conv {
                    kh,
                    kw,
                    groups,
                    input,
                    output,
                    ..
                } => px * f64::from(kh * kw * (input.channels / groups.max(1)) * output.channels),
                Step::Pool { spec, output, .. } => {
                    px * (spec.kh * spec.kw) as f64 * f64::from(output.channels) * SLOW_OP_WEIGHT
                }
                Step::GapFc { input, output, .. } => {
                    let (ih, iw) = shapes[i].input;
                    f64::from(input.channels) * ((ih * iw) as f64 + f64::from(output.channels))
                }
                _ => 0.0,
            }
        };
        match *self {
            Element::Stem { band, .. } => band.steps.iter().map(|&i| step(i)).sum(),
            Element::Down { unit, pool, .. } => {
                unit.steps.iter().map(|&i| step(i)).sum::<f64>() + step(pool)
            }
            Element::InPlace { unit, .. } => unit.steps.iter().map(|&i| step(i)).sum(),
            Element::Sink { step: i, .. } => step(i),
            Element::Source { .. } | Element::Feed { .. } => 0.0,
        }
    }
}

/// Where to cut elements of `costs` into at most `parts` runs of about equal
/// total: the first index of each run, then `costs.len()`. Every run is non-empty.
fn cuts(costs: &[f64], parts: usize) -> Vec<usize> {
    let n = costs.len();
    let mut prefix = vec![0.0; n + 1];
    for (i, c) in costs.iter().enumerate() {
        prefix[i + 1] = prefix[i] + c;
    }
    let mut cuts = vec![0];
    for j in 1..parts {
        let target = prefix[n] * j as f64 / parts as f64;
        let lo = cuts[cuts.len() - 1] + 1;
        let best = (lo..n).min_by(|&a, &b| {
            (prefix[a] - target)
                .abs()
                .total_cmp(&(prefix[b] - target).abs())
        });
        match best {
            Some(k) => cuts.push(k),
            None => break,
        }
    }
    cuts.push(n);
    cuts
}

impl Pipeline {
    /// The arena areas (and buffers) of each segment, then those of the
    /// handoffs: `input` (the planar input, when in the arena) goes with the first
    /// segment, `output` (the logits) with the last.
    pub(super) fn groups(&self, input: Option<usize>, output: usize) -> Vec<Vec<usize>> {
        let n = self.segments.len();
        let mut groups: Vec<Vec<usize>> = self
            .segments
            .iter()
            .enumerate()
            .map(|(s, seg)| {
                let mut g: Vec<usize> = Vec::new();
                if s == 0 {
                    g.extend(input);
                }
                g.extend(seg.elements.iter().filter_map(Element::band_area));
                g.push(seg.band_out);
                g.extend(seg.windows.iter().map(|w| w.area));
                g.extend(seg.sums);
                if s + 1 == n {
                    g.push(output);
                }
                g
            })
            .collect();
        groups.push(self.handoffs.iter().map(|h| h.area).collect());
        groups
    }

    /// Records the arena region of each group of [`Pipeline::groups`] under
    /// `layout`; `None` if some group is not contiguous.
    pub(super) fn set_regions(&mut self, layout: &Layout, groups: &[Vec<usize>]) -> Option<()> {
        let mut regions = Vec::with_capacity(groups.len());
        for g in groups {
            let mut parts: Vec<Range<usize>> = g
                .iter()
                .map(|&b| layout.offsets[b]..layout.offsets[b] + layout.sizes[b])
                .filter(|r| !r.is_empty())
                .collect();
            parts.sort_by_key(|r| r.start);
            let start = parts.first().map_or(0, |r| r.start);
            let mut end = start;
            for r in &parts {
                if r.start != end {
                    return None;
                }
                end = r.end;
            }
            regions.push(start..end);
        }
        // Regions in order and apart (empty ones anywhere).
        let mut at = 0;
        for r in regions.iter().filter(|r| !r.is_empty()) {
            if r.start < at {
                return None;
            }
            at = r.end;
        }
        self.regions = regions;
        Some(())
    }
}

/// Rows of a chunk handed on or pooled at the end: [`BAND_PIXELS`] pixels.
fn rows_for(width: usize, h: usize) -> usize {
    rows_of(BAND_PIXELS, width, h)
}

/// Rows of a unit's or the stem's band with `channels` channels per row (see
/// [`BAND_FLOATS`]).
fn band_rows(width: usize, h: usize, channels: usize) -> usize {
    rows_of(BAND_PIXELS.max(BAND_FLOATS / channels.max(1)), width, h)
}

/// Rows holding at least `pixels` pixels of a `width`-wide tensor, between 1 and
/// its height `h`.
fn rows_of(pixels: usize, width: usize, h: usize) -> usize {
    pixels.div_ceil(width.max(1)).clamp(1, h.max(1))
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
                // A stride-2 unit: its shortcut pool (an average pool into the
                // channels before the unit's, of one whole tensor) is the stage
                // just after.
                let shortcut = match stages.get(i + 1) {
                    Some(&Stage::Step(j)) => shortcut_pool(steps, &u, j).filter(|spec| {
                        let Step::Pool { output, .. } = steps[j] else {
                            return false;
                        };
                        matches!(spec.kind, PoolKind::Avg { .. })
                            && output.buffer == o.buffer
                            && output.offset == 0
                            && output.channels == o.offset
                            && whole(View {
                                channels: o.offset + o.channels,
                                ..output
                            })
                    }),
                    _ => None,
                };
                let (pool_stage, pads_top) = (i + 1, shortcut?.pads.top);
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
    if biggest < opts.pipeline_threshold() {
        return None;
    }
    // Bands sized for the pipeline, replacing the whole-tensor streaming bands.
    let mut band_out_floats = vec![0; d.elements.len()];
    for (e, band_out) in d.elements.iter_mut().zip(&mut band_out_floats) {
        match e {
            Element::Stem { band, .. } => {
                let (sc, sp) = (band.steps[0], band.steps[1]);
                let Step::Pool { spec, .. } = steps[sp] else {
                    return None;
                };
                let ((hp, wp), wc) = (hw(sp), shapes[sc].output.1);
                let c = steps[sc].writes().channels as usize;
                let rows = band_rows(wp, hp, c);
                let in_rows = (rows - 1) * spec.stride.0 + spec.kh;
                areas.retire_area(band.band);
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
                let c = steps[s2].writes().channels as usize;
                let rows = band_rows(w2, h2, c);
                let in_rows = (rows - 1) * stride as usize + 3;
                areas.retire_area(unit.band_in);
                areas.retire_area(unit.band_out);
                *band_out = c * rows * w2;
                *unit = UnitBand {
                    rows,
                    in_rows,
                    band_in: areas.add(c * in_rows * w1, 0, last),
                    ..*unit
                };
            }
            Element::Sink { .. } | Element::Source { .. } | Element::Feed { .. } => {}
        }
    }
    let all: Vec<WindowSpec> = d
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
    let sink_channels = d.tensors.last()?.0.channels as usize;
    // Cut into segments, one per thread; each gets its windows (a window on a
    // cut is held by both sides), bands and, between two, a handoff.
    let costs: Vec<f64> = d.elements.iter().map(|e| e.cost(steps, shapes)).collect();
    let cuts = cuts(&costs, opts.segments.clamp(1, MAX_SEGMENTS));
    let n = d.elements.len();
    let mut segments = Vec::new();
    let mut handoffs = Vec::new();
    for run in cuts.windows(2) {
        let (a, b) = (run[0], run[1]);
        let mut local = vec![usize::MAX; all.len()];
        let mut windows: Vec<WindowSpec> = Vec::new();
        let mut map = |g: usize| {
            if local[g] == usize::MAX {
                local[g] = windows.len();
                windows.push(all[g]);
            }
            local[g]
        };
        let mut elements = Vec::with_capacity(b - a + 2);
        if a > 0 {
            let g = d.elements[a].input()?;
            let rows = rows_for(all[g].width, all[g].h);
            elements.push(Element::Source { out: map(g), rows });
        }
        elements.extend(d.elements[a..b].iter().map(|e| e.renamed(&mut map)));
        if b < n {
            let g = d.elements[b].input()?;
            if d.elements[b - 1].output() != Some(g) {
                return None;
            }
            let spec = all[g];
            let rows = rows_for(spec.width, spec.h);
            let chunk_floats = spec.channels * rows * spec.width;
            elements.push(Element::Feed {
                input: map(g),
                rows,
            });
            handoffs.push(HandoffSpec {
                area: areas.add(SLOTS * chunk_floats, 0, last),
                chunk_floats,
            });
        }
        let band_out = areas.add(band_out_floats[a..b].iter().copied().max()?, 0, last);
        for e in &mut elements {
            if let Element::Down { unit, .. } | Element::InPlace { unit, .. } = e {
                unit.band_out = band_out;
            }
        }
        let sums = (b == n).then(|| areas.add(2 * sink_channels, 0, last));
        let mut seg = Segment {
            elements,
            windows,
            band_out,
            sums,
        };
        // Window sizes from a dry run of the segment's schedule.
        let spans = driver::dry_spans(&seg)?;
        for (w, spec) in seg.windows.iter_mut().enumerate() {
            let share = WINDOW_SLACK_FLOATS / (cuts.len() - 1).max(1);
            let slack = WINDOW_SLACK_ROWS.max(share / (spec.channels * spec.width).max(1));
            spec.cap = (spans[w] + slack).clamp(1, spec.h.max(1));
            spec.area = areas.add(spec.channels * spec.cap * spec.width, 0, last);
        }
        segments.push(seg);
    }
    for (v, _) in &d.tensors {
        areas.retire(v.buffer);
    }
    Some(Pipeline {
        segments,
        handoffs,
        regions: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::cuts;

    #[test]
    fn cuts_balance_the_work_and_keep_every_part_non_empty() {
        assert_eq!(cuts(&[1.0; 8], 1), vec![0, 8]);
        assert_eq!(cuts(&[1.0; 8], 2), vec![0, 4, 8]);
        assert_eq!(cuts(&[1.0; 9], 3), vec![0, 3, 6, 9]);
        // A heavy first element: the cut goes right after it.
        assert_eq!(cuts(&[10.0, 1.0, 1.0, 1.0, 1.0, 1.0], 2), vec![0, 1, 6]);
        // More parts than elements: as many non-empty parts as there are elements.
        assert_eq!(cuts(&[1.0, 1.0], 4), vec![0, 1, 2]);
        for parts in 1..6 {
            let c = cuts(&[3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0], parts);
            assert!(c.windows(2).all(|w| w[0] < w[1]), "{c:?}");
            assert_eq!((c[0], c[c.len() - 1]), (0, 8));
        }
    }
}
