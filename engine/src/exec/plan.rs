//! Binding a program to one input size: every step's shapes, the schedule (which
//! chains of steps stream band by band), lifetimes, and the arena layout.

use super::SessionError;
use crate::arena::{self, Lifetime};
use crate::graph::{window_out, Pads, PoolSpec};
use crate::program::{Program, Step, View};
use kernels::PoolKind;
use std::ops::Range;

/// Default limit on the arena of one session: 1 GiB.
pub const DEFAULT_MAX_ARENA_BYTES: usize = 1 << 30;

/// Default budget for the band buffers of one streamed chain. On ARM (and
/// anything but x86-64): half of a typical mobile L2 (256 KiB of 512 KiB),
/// leaving room for the weights and the streamed input and output rows.
#[cfg(not(target_arch = "x86_64"))]
pub const DEFAULT_BAND_BYTES: usize = 256 << 10;

/// Default budget for the band buffers of one streamed chain. On x86-64: 1 MiB
/// (a desktop core's L2 is 1-2 MiB). Measured on an AMD EPYC Zen 4 (1 MiB L2),
/// no row pipeline, time against 256 KiB bands in paired rounds, g = 3, 0.5x /
/// 1x / 2x: 224x224 0.99 / 0.98 / 0.95, 480x640 0.95 / 0.94 / 0.86 (against the
/// old pipeline default for 1x and 2x), 720x1280 0.91 / 0.90 / 0.84 (idem);
/// 512 KiB and 2 MiB were within 3% of 1 MiB, 512 KiB slower at 2x.
#[cfg(target_arch = "x86_64")]
pub const DEFAULT_BAND_BYTES: usize = 1 << 20;

/// Default size of the largest tensor from which the whole-network pipeline is
/// used. On ARM (and anything but x86-64): 2 MiB, about where a tensor stops
/// fitting in a phone's L2 and its round trips through DRAM start to cost more
/// than the pipeline's short bands and row moves.
#[cfg(not(target_arch = "x86_64"))]
pub const DEFAULT_PIPELINE_MIN_BYTES: usize = 2 << 20;

/// Default size of the largest tensor from which the whole-network pipeline is
/// used. On x86-64: 1 GiB, so in practice only when the plan without it would
/// exceed the arena limit (see [`ExecPlan::new`]). Its one-row bands cost more
/// than a desktop's caches save: on an AMD EPYC Zen 4, g = 3, the pipeline
/// against units streamed through 1 MiB bands on whole tensors between them
/// (paired rounds) took 1x at 720x1280 1.11x the time, 2x at 480x640 1.17x and
/// at 720x1280 1.19x, even though 2x's largest tensor at 720x1280 (110 MB) is
/// far past the L3. The arena grows: 1x at 720x1280 7.93 -> 21.77 MB (pass
/// `pipeline_min_bytes` to trade the time back for memory).
#[cfg(target_arch = "x86_64")]
pub const DEFAULT_PIPELINE_MIN_BYTES: usize = 1 << 30;

/// Factor on the pipeline threshold for a session that splits its kernel calls
/// over several threads (no segments; see [`ExecOptions::pipeline_threshold`]).
/// On x86-64: 4: split over threads, the pipeline's band
/// calls are too small, and whole tensors scale far better. Measured on an AMD
/// EPYC Zen 4, 1x g = 3 at 720x1280 (largest tensor 13.8 MB), two threads
/// against one, 12-16 interleaved rounds: pipeline 1.46-1.48x (paired
/// 1.48-1.54, two threads 45.8-47.9 ms), pipeline with segments 1.49x, whole
/// tensors 1.94-1.97x (35.2-36.5 ms); the arena grows from 7.93 to 27.65 MB.
/// Taller pipeline bands do not help: 4x taller 46.1 ms at 21.58 MB, 8x 38.0 ms
/// at 30.86 MB.
#[cfg(target_arch = "x86_64")]
pub const THREADED_PIPELINE_FACTOR: usize = 4;

/// Factor on the pipeline threshold for a session that splits its kernel calls
/// over several threads. On ARM (and anything but x86-64): 1, the same threshold
/// as one thread (not measured on a phone; a phone's memory is the scarcer
/// resource).
#[cfg(not(target_arch = "x86_64"))]
pub const THREADED_PIPELINE_FACTOR: usize = 1;

/// Whether a streamed stride-2 unit outside the row pipeline runs its shortcut
/// pool band by band with it ([`DownBand`]). On x86-64: yes; on an AMD EPYC Zen
/// 4, 2x g = 3 at 720x1280 took 0.977-0.979 of the time (its 27.6 MB stage-3
/// input was read from memory twice), the other sizes 0.99-1.01.
#[cfg(target_arch = "x86_64")]
pub const FUSE_SHORTCUT_POOLS: bool = true;

/// Whether a streamed stride-2 unit outside the row pipeline runs its shortcut
/// pool band by band with it ([`DownBand`]). On ARM (and anything but x86-64): no.
/// The large sizes run as a row pipeline, which pairs them anyway; at 224x224 the
/// pairing cost instructions (aarch64 count, 2x g = 3: 158.72M -> 159.13M per
/// inference; the per-band pool calls are short), and what it saves in memory
/// traffic is not measured on a phone.
#[cfg(not(target_arch = "x86_64"))]
pub const FUSE_SHORTCUT_POOLS: bool = false;

/// Whether a session on several threads runs each unit that does not write over
/// its input on all threads at once, each on its own output rows (see
/// [`ExecOptions::threads`]). On x86-64: yes (measured there).
#[cfg(target_arch = "x86_64")]
pub const SPLIT_UNITS_BY_ROWS: bool = true;

/// Whether a session on several threads runs each unit that does not write over
/// its input on all threads at once, each on its own output rows. On ARM (and
/// anything but x86-64): no. The rows are split evenly, while a phone's big and
/// little cores need the uneven parts the pool's balance gives a split kernel
/// call (`parallel::Balance`); not measured on a phone.
#[cfg(not(target_arch = "x86_64"))]
pub const SPLIT_UNITS_BY_ROWS: bool = false;

/// The smallest input tensor (bytes) of a unit that writes over its input (a
/// stride-1 unit) that a session on several threads splits by rows (see
/// [`ExecOptions::threads`]); smaller ones run on whole tensors, their kernel
/// calls split by channels. AMD EPYC Zen 4, 1x g = 3 at 720x1280, two threads,
/// 8 profiled rounds paired against whole tensors: the stage-2 units (13.8 MB
/// tensors) took 0.86 of the time split by rows, the stage-3 units (6.9 MB)
/// 1.04 (split from 4 MiB, the stage-2 ones then 0.94); whole runs 0.976
/// (identical-binary control 1.011). Each part reads all of a unit's weights,
/// and the rows at each cut are convolved on one thread first: on tensors that
/// the caches nearly hold, that costs what the memory traffic saves.
pub const SPLIT_IN_PLACE_MIN_BYTES: usize = 8 << 20;

/// Rows at each cut between the parts of a unit split by rows that writes over
/// its input whose first pointwise conv runs before the parts (see
/// [`UnitBand::halo`]): the last row above the cut and the first below.
pub(crate) const HALO_ROWS: usize = 2;

/// How a program is bound to an input size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExecOptions {
    /// Refuse sizes whose arena plus one input image exceeds this many bytes (a
    /// session holds both: the arena, and the zero image it warms up on).
    pub max_arena_bytes: usize,
    /// Stream pointwise -> depthwise -> pointwise units and conv -> max pool band by
    /// band through small buffers instead of whole intermediate tensors.
    pub stream: bool,
    /// Budget in bytes for the band buffers of one streamed chain; the band height
    /// is the largest that fits.
    pub band_bytes: usize,
    /// Run a stem -> units -> classifier chain as one row pipeline (no whole
    /// intermediate tensor) when its largest tensor has at least this many bytes,
    /// or when the plan without it would exceed `max_arena_bytes` (`usize::MAX`:
    /// never). Needs `stream`.
    pub pipeline_min_bytes: usize,
    /// Cut the row pipeline into this many segments (at most
    /// [`MAX_SEGMENTS`](super::MAX_SEGMENTS)), each run by its own thread
    /// when executed with that many threads; 1: one pipeline, whose kernel calls
    /// are split over the threads instead. Results do not depend on it.
    pub segments: usize,
    /// With several threads (where [`SPLIT_UNITS_BY_ROWS`]): the smallest input
    /// tensor, in bytes, of a unit that writes over its input that is split by
    /// rows (default [`SPLIT_IN_PLACE_MIN_BYTES`]); smaller ones run on whole
    /// tensors. Results do not depend on it.
    pub split_in_place_min_bytes: usize,
    /// Threads the session splits its work over. With more than one, in a
    /// program that is not pipelined, where [`SPLIT_UNITS_BY_ROWS`], a unit runs
    /// on all threads at once, each streaming its own rows of the output through
    /// its own band buffers (no kernel call split): every stride-2 unit (AMD EPYC
    /// Zen 4, 1x g = 3 at 720x1280, two threads, paired against those units on
    /// whole tensors: the stride-2 units 0.84 of the time, all stages 0.92 over
    /// 10 profiled rounds, whole runs 0.94 and 0.98 in two sets of 12 rounds; at
    /// 480x640 1.00, at 224x224 no unit needs a second band), and each stride-1
    /// unit (which writes over its input) from an input tensor of
    /// [`Self::split_in_place_min_bytes`]: it first convolves the input rows at
    /// each cut between parts, which a part overwrites while its neighbour still
    /// reads them ([`UnitBand::halo`]). The other units run on whole tensors,
    /// their kernel calls split over the threads: split band by band, a band's
    /// calls are too small (a fork and join for a few microseconds of work each,
    /// and every band buffer written by one core and read by the other;
    /// measured, 1x g = 3, two threads against one: 480x640 1.49x streamed,
    /// 1.72x on whole tensors; 224x224 1.16x and 1.37x). The stem streams with
    /// its calls split: its conv and pool split at the same channels, so a band
    /// stays on its core, and its whole conv output (22 MB at 720x1280) is what
    /// two threads cannot share well (two threads, stem time paired against
    /// whole tensors over 10 profiled rounds: 0.84 at 720x1280, 0.88 at
    /// 480x640; about 2% of the network). Results do not depend on it.
    pub threads: usize,
}

impl ExecOptions {
    /// The largest-tensor size from which the pipeline is used:
    /// `pipeline_min_bytes`, times [`THREADED_PIPELINE_FACTOR`] when kernel calls
    /// are split over several threads (`threads > 1`, `segments <= 1`).
    pub fn pipeline_threshold(&self) -> usize {
        if self.threads > 1 && self.segments <= 1 {
            self.pipeline_min_bytes
                .saturating_mul(THREADED_PIPELINE_FACTOR)
        } else {
            self.pipeline_min_bytes
        }
    }
}

impl Default for ExecOptions {
    fn default() -> Self {
        ExecOptions {
            max_arena_bytes: DEFAULT_MAX_ARENA_BYTES,
            stream: true,
            band_bytes: DEFAULT_BAND_BYTES,
            pipeline_min_bytes: DEFAULT_PIPELINE_MIN_BYTES,
            segments: 1,
            split_in_place_min_bytes: SPLIT_IN_PLACE_MIN_BYTES,
            threads: 1,
        }
    }
}

/// Spatial sizes seen by one step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StepShape {
    /// Input height and width.
    pub input: (usize, usize),
    /// Output height and width.
    pub output: (usize, usize),
}

/// A pointwise -> depthwise -> pointwise chain run band by band: the depthwise
/// output is produced `rows` rows at a time; both intermediate tensors live only in
/// band buffers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnitBand {
    /// The three steps.
    pub steps: [usize; 3],
    /// Depthwise output rows per band.
    pub rows: usize,
    /// Rows the first band buffer holds (input rows of one band).
    pub in_rows: usize,
    /// Arena area of the first pointwise conv's band.
    pub band_in: usize,
    /// Arena area of the depthwise conv's band.
    pub band_out: usize,
    /// Threads that run the unit at once, each on its own rows of the output
    /// with its own band buffers (the areas hold one pair per part); 1: one
    /// band loop, whose kernel calls may be split over threads.
    pub parts: usize,
    /// With several parts, in a unit that writes over its input: the arena area
    /// of the first pointwise conv's output on the two input rows at each cut
    /// between parts (computed before the parts start, as each part overwrites
    /// the row its neighbour's depthwise conv reads).
    pub halo: Option<usize>,
}

/// A stride-2 unit band with its shortcut pool: per band, the pool's output rows
/// are computed from the same input rows the unit's first conv just read, while
/// they are in cache (otherwise the pool reads the whole input once more, from
/// memory when it is large).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DownBand {
    /// The unit.
    pub unit: UnitBand,
    /// The unit's three steps, then the pool's.
    pub steps: [usize; 4],
}

/// A convolution -> max pool chain run band by band: the conv output lives only in a
/// band buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StemBand {
    /// The two steps.
    pub steps: [usize; 2],
    /// Pool output rows per band.
    pub rows: usize,
    /// Conv output rows the band buffer holds.
    pub in_rows: usize,
    /// Arena area of the band.
    pub band: usize,
}

/// One entry of the schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// A step on whole tensors.
    Step(usize),
    /// A streamed unit.
    Unit(UnitBand),
    /// A streamed stride-2 unit and its shortcut pool.
    Down(DownBand),
    /// A streamed stem.
    Stem(StemBand),
}

impl Stage {
    /// The program steps the stage runs, in order.
    pub fn steps(&self) -> &[usize] {
        match self {
            Stage::Step(i) => core::slice::from_ref(i),
            Stage::Unit(u) => &u.steps,
            Stage::Down(d) => &d.steps,
            Stage::Stem(s) => &s.steps,
        }
    }
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
    /// What runs, in order.
    pub stages: Vec<Stage>,
    /// Height and width of every buffer; scratch areas after the buffers are
    /// `(floats, 1)`.
    pub buffer_hw: Vec<(usize, usize)>,
    /// Scratch area of each step (the pooled vector of a GAP+FC).
    pub scratch: Vec<Option<usize>>,
    /// Live range of every buffer and scratch area (`None`: never allocated, e.g. a
    /// tensor that only exists band by band).
    pub lifetimes: Vec<Option<Lifetime>>,
    /// Where everything lives.
    pub layout: arena::Layout,
    /// Floats if every step's output (and the input) had its own buffer.
    pub naive_floats: usize,
    /// The whole-network row pipeline, when the program runs as one.
    pub pipeline: Option<super::pipeline::Pipeline>,
    /// The steps read the caller's input directly (it is planar and only read by
    /// single-input steps): buffer 0 takes no arena space and no copy.
    pub external_input: bool,
    /// Floats of one input image.
    pub input_floats: usize,
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
    let win = |kh: usize, kw: usize, sh: usize, sw: usize, p: Pads, ceil: bool| {
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

/// Input rows `[lo, hi)` that output rows `rows` of a window op read, clipped to
/// the `len` input rows.
pub fn input_rows(
    rows: &Range<usize>,
    stride: usize,
    pad: usize,
    k: usize,
    len: usize,
) -> Range<usize> {
    let lo = (rows.start * stride).saturating_sub(pad);
    let hi = ((rows.end - 1) * stride + k).saturating_sub(pad).min(len);
    lo..hi
}

/// Largest band height (output rows) whose buffers fit `budget` bytes, at least 1.
fn band_rows(
    out_rows: usize,
    stride: usize,
    k: usize,
    bytes_per_band: impl Fn(usize, usize) -> usize,
    budget: usize,
) -> (usize, usize) {
    let in_rows = |r: usize| (r - 1) * stride + k;
    let mut r = 1;
    while r < out_rows && bytes_per_band(r + 1, in_rows(r + 1)) <= budget {
        r += 1;
    }
    (r, in_rows(r))
}

/// True when the steps can read the caller's input in place: it is planar, no step
/// writes it, and every step reading it has it as its only input.
fn reads_input_in_place(program: &Program) -> bool {
    program.input.layout == crate::graph::Layout::Nchw
        && program.output.buffer != 0
        && program.steps.iter().all(|s| {
            let reads_input = s.reads().iter().any(|v| v.buffer == 0);
            s.writes().buffer != 0
                && (!reads_input
                    || matches!(
                        s,
                        Step::Pointwise {
                            accumulate: false,
                            ..
                        } | Step::Depthwise { .. }
                            | Step::Conv { .. }
                            | Step::Pool { .. }
                            | Step::GlobalAvgPool { .. }
                            | Step::Fc { .. }
                            | Step::Affine { .. }
                            | Step::Permute { .. }
                    ))
        })
}

/// Who writes and reads each buffer.
struct Uses {
    writers: Vec<Vec<usize>>,
    readers: Vec<Vec<usize>>,
}

impl Uses {
    fn of(program: &Program) -> Uses {
        let n = program.buffers.len();
        let mut u = Uses {
            writers: vec![Vec::new(); n],
            readers: vec![Vec::new(); n],
        };
        for (i, s) in program.steps.iter().enumerate() {
            u.writers[s.writes().buffer as usize].push(i);
            for r in s.reads() {
                u.readers[r.buffer as usize].push(i);
            }
        }
        u
    }

    /// True when `v` is a whole buffer written only by step `w` and read only by `r`.
    fn private(&self, program: &Program, v: View, w: usize, r: usize) -> bool {
        let b = v.buffer as usize;
        b != 0
            && v.buffer != program.output.buffer
            && v.offset == 0
            && v.channels == program.buffers[b].channels
            && self.writers[b] == [w]
            && self.readers[b] == [r]
    }
}

impl ExecPlan {
    /// Infers every shape for an `h x w` input, picks the streamed chains and lays
    /// out the arena, refusing sizes that do not fit the network or whose arena
    /// plus input image would exceed `opts.max_arena_bytes` (an image over the
    /// limit on its own is refused before scheduling, reporting just the image).
    /// A plan without the row pipeline that is over the limit is planned again
    /// with it (unless `pipeline_min_bytes` is `usize::MAX`) before it is refused.
    pub fn new(
        program: &Program,
        h: usize,
        w: usize,
        opts: &ExecOptions,
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
        let mut naive = 0usize;
        for (i, step) in program.steps.iter().enumerate() {
            let err = |what: &str| size_err(h, w, i, step, what);
            let reads = step.reads();
            let in_hw =
                hw[reads[0].buffer as usize].ok_or_else(|| err("reads an unwritten buffer"))?;
            if reads.iter().any(|r| hw[r.buffer as usize] != Some(in_hw)) {
                return Err(err("operands have different sizes"));
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
            naive = out_hw
                .0
                .checked_mul(out_hw.1)
                .and_then(|p| p.checked_mul(out.channels as usize))
                .and_then(|x| naive.checked_add(x))
                .ok_or_else(|| err("size overflows"))?;
            shapes.push(StepShape {
                input: in_hw,
                output: out_hw,
            });
        }
        let overflow = || SessionError::Size {
            h,
            w,
            what: "tensor sizes overflow".into(),
        };
        let mut buffer_hw: Vec<(usize, usize)> = hw.iter().map(|x| x.unwrap_or((0, 0))).collect();
        let mut sizes: Vec<usize> = buffer_hw
            .iter()
            .zip(&program.buffers)
            .map(|(&(bh, bw), d)| (d.channels as usize).checked_mul(bh)?.checked_mul(bw))
            .collect::<Option<_>>()
            .ok_or_else(overflow)?;
        naive = naive.checked_add(sizes[0]).ok_or_else(overflow)?;
        // The input image alone must fit the limit (a session holds one for its
        // warm-up); refusing it here keeps absurd sizes from reaching the schedule,
        // whose cost grows with the height.
        let input_floats = sizes[0];
        let input_bytes = input_floats as u64 * 4;
        if input_bytes > opts.max_arena_bytes as u64 {
            return Err(SessionError::ArenaTooLarge {
                h,
                w,
                needed: input_bytes,
                limit: opts.max_arena_bytes as u64,
            });
        }

        // Lifetimes of the buffers, then the schedule, which adds scratch areas and
        // retires streamed buffers.
        let mut lifetimes: Vec<Option<Lifetime>> = vec![None; nb];
        lifetimes[0] = Some(Lifetime { first: 0, last: 0 });
        let external_input = reads_input_in_place(program);
        let touch = |b: usize, t: usize, lifetimes: &mut Vec<Option<Lifetime>>| {
            let l = lifetimes[b].get_or_insert(Lifetime { first: t, last: t });
            l.last = l.last.max(t);
        };
        for (i, step) in program.steps.iter().enumerate() {
            for r in step.reads() {
                touch(r.buffer as usize, i, &mut lifetimes);
            }
            touch(step.writes().buffer as usize, i, &mut lifetimes);
        }
        let last = program.steps.len().saturating_sub(1);
        touch(program.output.buffer as usize, last, &mut lifetimes);

        // With the pipeline in view, stream every chain (one-row bands, resized by
        // the pipeline); if the program is no pipeline, schedule again normally.
        // (The pipeline's windows come from a dry run of its schedule, whose time
        // grows with the height: the image-size check above keeps absurd heights
        // from reaching it.)
        let uses = Uses::of(program);
        let try_pipeline = opts.stream && opts.pipeline_min_bytes != usize::MAX;
        // Units outside a pipeline stream only on one thread; the stem on any
        // number (see `threads`).
        let chains = Streamed {
            units: opts.stream && (opts.threads <= 1 || SPLIT_UNITS_BY_ROWS),
            parts: opts.threads,
            split_in_place_min_bytes: opts.split_in_place_min_bytes,
            stem: opts.stream,
            fuse_pools: FUSE_SHORTCUT_POOLS && opts.threads <= 1,
        };
        let snapshot = try_pipeline.then(|| (buffer_hw.clone(), sizes.clone(), lifetimes.clone()));
        // (The pipeline pairs each stride-2 unit with its pool itself.)
        let (streamed, budget) = if try_pipeline {
            let all = Streamed {
                units: true,
                parts: 1,
                split_in_place_min_bytes: 0,
                stem: true,
                fuse_pools: false,
            };
            (all, 0)
        } else {
            (chains, opts.band_bytes)
        };
        let mut areas = Areas {
            buffer_hw: &mut buffer_hw,
            sizes: &mut sizes,
            lifetimes: &mut lifetimes,
        };
        let (mut stages, mut scratch) =
            schedule(program, &shapes, &uses, streamed, budget, &mut areas);
        let mut pipeline = None;
        if let Some((hw0, sizes0, lifetimes0)) = snapshot {
            pipeline = super::pipeline::plan(program, &shapes, &stages, opts, &mut areas);
            if pipeline.is_none() {
                (*areas.buffer_hw, *areas.sizes, *areas.lifetimes) = (hw0, sizes0, lifetimes0);
                (stages, scratch) =
                    schedule(program, &shapes, &uses, chains, opts.band_bytes, &mut areas);
            }
        }
        if pipeline.is_some() {
            // Every step interleaves with every other: all that remains lives
            // throughout.
            for l in lifetimes.iter_mut().flatten() {
                *l = Lifetime { first: 0, last };
            }
        }
        if external_input {
            lifetimes[0] = None;
        }
        // A streamed chain interleaves its steps band by band: every tensor it
        // touches must stay alive (and apart) from its first step to its last.
        for stage in &stages {
            let chain: &[usize] = match stage {
                Stage::Step(_) => continue,
                _ => stage.steps(),
            };
            let (first, last) = (chain[0], chain[chain.len() - 1]);
            for &s in chain {
                let step = &program.steps[s];
                for v in step.reads().into_iter().chain([step.writes()]) {
                    if let Some(l) = &mut lifetimes[v.buffer as usize] {
                        l.first = l.first.min(first);
                        l.last = l.last.max(last);
                    }
                }
            }
        }

        let mut layout = arena::plan(&sizes, &lifetimes).ok_or_else(overflow)?;
        if let Some(pipe) = &mut pipeline {
            // Everything lives throughout: place each segment's buffers together.
            let input = lifetimes[0].is_some().then_some(0);
            let groups = pipe.groups(input, program.output.buffer as usize);
            layout =
                arena::sequential(&sizes, &lifetimes, &groups.concat()).ok_or_else(overflow)?;
            pipe.set_regions(&layout, &groups)
                .ok_or_else(|| SessionError::Size {
                    h,
                    w,
                    what: "pipeline segments are not contiguous in the arena".into(),
                })?;
        }
        let needed = layout.peak as u64 * 4 + input_bytes;
        if needed > opts.max_arena_bytes as u64 {
            if pipeline.is_none()
                && opts.stream
                && !matches!(opts.pipeline_min_bytes, 0 | usize::MAX)
            {
                // Over the limit without the row pipeline (not ruled out, not
                // already tried at any size): plan it, whose arena holds rows.
                let pipelined = ExecOptions {
                    pipeline_min_bytes: 0,
                    ..*opts
                };
                return ExecPlan::new(program, h, w, &pipelined);
            }
            return Err(SessionError::ArenaTooLarge {
                h,
                w,
                needed,
                limit: opts.max_arena_bytes as u64,
            });
        }
        Ok(ExecPlan {
            h,
            w,
            shapes,
            stages,
            buffer_hw,
            scratch,
            lifetimes,
            layout,
            naive_floats: naive,
            pipeline,
            external_input,
            input_floats,
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

    /// Arena range of a scratch area.
    pub fn area(&self, a: usize) -> Range<usize> {
        let start = self.layout.offsets[a];
        start..start + self.buffer_hw[a].0
    }

    /// Bytes a session at this size holds: the arena and one input image.
    pub fn memory_bytes(&self) -> u64 {
        (self.layout.peak as u64 + self.input_floats as u64) * 4
    }

    /// Number of values the network writes to the output.
    pub fn output_len(&self, program: &Program) -> usize {
        program.output.channels as usize * self.plane(program.output.buffer)
    }
}

/// Which chains a schedule streams.
#[derive(Clone, Copy)]
struct Streamed {
    /// Pointwise -> depthwise -> pointwise units.
    units: bool,
    /// Threads a unit's rows are split over ([`UnitBand::parts`]).
    parts: usize,
    /// With several parts, the smallest input tensor (bytes) of a unit that
    /// writes over its input that streams (split by rows).
    split_in_place_min_bytes: usize,
    /// Conv -> max pool stems.
    stem: bool,
    /// Each streamed stride-2 unit with its shortcut pool.
    fuse_pools: bool,
}

/// The schedule: each step alone, or the chains `streamed` names with band
/// buffers sized by `budget`; also the scratch area of each step.
fn schedule(
    program: &Program,
    shapes: &[StepShape],
    uses: &Uses,
    streamed: Streamed,
    budget: usize,
    areas: &mut Areas,
) -> (Vec<Stage>, Vec<Option<usize>>) {
    let mut stages = Vec::new();
    let mut scratch = vec![None; program.steps.len()];
    let mut i = 0;
    while i < program.steps.len() {
        if let Step::GapFc { input, .. } = program.steps[i] {
            scratch[i] = Some(areas.add(input.channels as usize, i, i));
        }
        let unit = streamed
            .units
            .then(|| {
                let split = (budget, streamed.parts, streamed.split_in_place_min_bytes);
                unit_band(program, shapes, uses, i, split, areas)
            })
            .flatten()
            .map(|unit| match shortcut_pool(&program.steps, &unit, i + 3) {
                Some(_) if streamed.fuse_pools => Stage::Down(DownBand {
                    unit,
                    steps: [i, i + 1, i + 2, i + 3],
                }),
                _ => Stage::Unit(unit),
            });
        let stage = unit.or_else(|| {
            streamed
                .stem
                .then(|| stem_band(program, shapes, uses, i, budget, areas))
                .flatten()
                .map(Stage::Stem)
        });
        let stage = stage.unwrap_or(Stage::Step(i));
        i += stage.steps().len();
        stages.push(stage);
    }
    (stages, scratch)
}

/// The arena areas under construction.
pub(super) struct Areas<'a> {
    buffer_hw: &'a mut Vec<(usize, usize)>,
    sizes: &'a mut Vec<usize>,
    lifetimes: &'a mut Vec<Option<Lifetime>>,
}

impl Areas<'_> {
    /// Adds a scratch area of `floats` floats alive over steps `first..=last`.
    pub(super) fn add(&mut self, floats: usize, first: usize, last: usize) -> usize {
        self.buffer_hw.push((floats, 1));
        self.sizes.push(floats);
        self.lifetimes.push(Some(Lifetime { first, last }));
        self.sizes.len() - 1
    }

    /// A buffer that will only exist band by band: never allocated.
    pub(super) fn retire(&mut self, buffer: u32) {
        self.lifetimes[buffer as usize] = None;
    }

    /// An area no longer used.
    pub(super) fn retire_area(&mut self, area: usize) {
        self.lifetimes[area] = None;
    }
}

/// Steps `i..i+3` as a streamed pointwise -> depthwise -> pointwise chain, if they
/// form one whose intermediates are private to it.
fn unit_band(
    program: &Program,
    shapes: &[StepShape],
    uses: &Uses,
    i: usize,
    (budget, parts, split_min): (usize, usize, usize),
    areas: &mut Areas,
) -> Option<UnitBand> {
    let steps = program.steps.get(i..i + 3)?;
    let (
        Step::Pointwise {
            input: x,
            output: b1,
            ..
        },
        Step::Depthwise {
            input: dw_in,
            output: b2,
            stride,
            pads,
            ..
        },
        Step::Pointwise {
            input: p2_in,
            output: out,
            ..
        },
    ) = (&steps[0], &steps[1], &steps[2])
    else {
        return None;
    };
    if dw_in != b1
        || p2_in != b2
        || !uses.private(program, *b1, i, i + 1)
        || !uses.private(program, *b2, i + 1, i + 2)
    {
        return None;
    }
    // Writing over the first conv's input is safe band by band only when the
    // depthwise conv never looks more than one row ahead (stride 1, pad 1): the
    // first conv has always read a row before the last conv overwrites it.
    if out.buffer == x.buffer && (out != x || *stride != 1 || pads.top != 1 || pads.bottom != 1) {
        return None;
    }
    let parts = parts.max(1);
    let (stride, c) = (*stride as usize, b1.channels as usize);
    let ((_, w1), (h2, w2)) = (shapes[i + 1].input, shapes[i + 1].output);
    let bytes = |r: usize, rin: usize| 4 * c * (rin * w1 + r * w2);
    let (rows, in_rows) = band_rows(h2, stride, 3, bytes, budget);
    if rows >= h2 {
        return None; // One band holds everything: nothing to save.
    }
    // Split by rows over a unit that writes over its input, each part
    // overwrites an input row next to a cut that its neighbour's depthwise conv
    // also reads: the first conv of the rows at each cut runs before the parts.
    let in_place = parts > 1 && out.buffer == x.buffer;
    let (h1, _) = shapes[i].input;
    if in_place && 4 * x.channels as usize * h1 * w1 < split_min {
        return None; // Whole tensors, calls split by channels: faster there.
    }
    areas.retire(b1.buffer);
    areas.retire(b2.buffer);
    Some(UnitBand {
        steps: [i, i + 1, i + 2],
        rows,
        in_rows,
        band_in: areas.add(parts * c * in_rows * w1, i, i + 2),
        band_out: areas.add(parts * c * rows * w2, i, i + 2),
        parts,
        halo: in_place.then(|| areas.add((parts - 1) * c * HALO_ROWS * w1, i, i + 2)),
    })
}

/// The pool of step `j` if it is the shortcut of stride-2 unit `u`, computable band
/// by band with it: a 3x3 stride-2 pool (no `ceil_mode`) of the unit's input with
/// the depthwise conv's padding, so its output rows read the same input rows as
/// the unit's, writing neither that input nor the unit's output channels.
pub(super) fn shortcut_pool(steps: &[Step], u: &UnitBand, j: usize) -> Option<PoolSpec> {
    let (Step::Pointwise { input: x, .. }, Step::Pointwise { output: o, .. }) =
        (&steps[u.steps[0]], &steps[u.steps[2]])
    else {
        return None;
    };
    let Step::Depthwise {
        stride: 2, pads, ..
    } = steps[u.steps[1]]
    else {
        return None;
    };
    let Some(Step::Pool {
        spec,
        input,
        output,
    }) = steps.get(j)
    else {
        return None;
    };
    let apart = |a: &View, b: &View| {
        a.buffer != b.buffer
            || a.offset + a.channels <= b.offset
            || b.offset + b.channels <= a.offset
    };
    ((spec.kh, spec.kw, spec.stride, spec.ceil_mode) == (3, 3, (2, 2), false)
        && spec.pads == pads
        && input == x
        && apart(output, x)
        && apart(output, o))
    .then_some(*spec)
}

/// Steps `i..i+2` as a streamed conv -> max pool chain, if the conv output is
/// private to it.
fn stem_band(
    program: &Program,
    shapes: &[StepShape],
    uses: &Uses,
    i: usize,
    budget: usize,
    areas: &mut Areas,
) -> Option<StemBand> {
    let steps = program.steps.get(i..i + 2)?;
    let (Step::Conv { output: c_out, .. }, Step::Pool { spec, input, .. }) = (&steps[0], &steps[1])
    else {
        return None;
    };
    if spec.kind != PoolKind::Max || input != c_out || !uses.private(program, *c_out, i, i + 1) {
        return None;
    }
    let c = c_out.channels as usize;
    let ((_, wc), (hp, _)) = (shapes[i + 1].input, shapes[i + 1].output);
    let bytes = |_: usize, rin: usize| 4 * c * rin * wc;
    let (rows, in_rows) = band_rows(hp, spec.stride.0, spec.kh, bytes, budget);
    if rows >= hp {
        return None;
    }
    areas.retire(c_out.buffer);
    Some(StemBand {
        steps: [i, i + 1],
        rows,
        in_rows,
        band: areas.add(c * in_rows * wc, i, i + 1),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_rows_cover_the_windows() {
        // 3x3 stride 1 pad 1 over 10 rows: output rows 0..4 read rows 0..5.
        assert_eq!(input_rows(&(0..4), 1, 1, 3, 10), 0..5);
        assert_eq!(input_rows(&(4..8), 1, 1, 3, 10), 3..9);
        assert_eq!(input_rows(&(8..10), 1, 1, 3, 10), 7..10);
        // stride 2 pad 1 over 9 rows: output rows 2..4 read rows 3..8.
        assert_eq!(input_rows(&(2..4), 2, 1, 3, 9), 3..8);
    }

    #[test]
    fn band_height_fits_the_budget() {
        let (r, rin) = band_rows(100, 1, 3, |r, rin| 10 * (r + rin), 200);
        assert_eq!((r, rin), (9, 11));
        assert_eq!(band_rows(100, 1, 3, |_, _| 1000, 10), (1, 3));
    }
}
