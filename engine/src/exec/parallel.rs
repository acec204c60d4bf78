//! Splitting one kernel call over threads by output channels (or weight panels):
//! each thread gets a contiguous range of units and the matching contiguous part of
//! the output, so the split is safe (`split_at_mut`) and every output value is
//! computed by the same code as in a single-threaded run: results are bit-identical
//! for any thread count and any cut. Forks with [`super::awake::join`]
//! (`rayon::join` whose forking side does not sleep while the other half runs),
//! which allocates nothing.
//!
//! Workers of unequal speed get unequal parts ([`Balance`]): a phone's big and
//! little cores, or a virtual CPU whose host core is shared. The pool made by
//! [`pool`] gives its workers one `Balance`, which learns each worker's relative
//! speed from the parts they run (each part is timed). Which worker runs which
//! part is up to rayon's work stealing, so a part is sized when it starts: the
//! worker that runs it claims its share of the units still unclaimed, at its
//! speed against the pool's other workers' for the parts still to come. Measured
//! on the Intel Xeon guest with two threads (2 vCPUs, one of which often runs at
//! about two thirds of the other's speed for seconds to minutes; 1x g = 3 at
//! 480x640, `--threads 2`): see `tools/PERFORMANCE.md`, Intel section. Pools
//! of more than [`MAX_BALANCED`] threads, and calls outside such a pool, split
//! evenly.

use crate::Error;
use std::cell::OnceCell;
use std::ops::Range;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Runs `f(units, out_part)` over `parts` contiguous pieces of `units` in parallel.
/// `offset(u)` is where unit `u`'s output starts, in floats, on the same origin for
/// every unit (only differences are used).
pub fn for_parts<F, O>(
    out: &mut [f32],
    units: Range<usize>,
    parts: usize,
    offset: &O,
    f: &F,
) -> Result<(), Error>
where
    F: Fn(Range<usize>, &mut [f32]) -> Result<(), Error> + Sync,
    O: Fn(usize) -> usize + Sync,
{
    let n = units.len();
    if parts >= 2 && n >= 2 {
        if let Some(balance) = Balance::of_this_worker() {
            return balanced(&balance, out, units, parts, offset, f);
        }
    }
    let left_parts = parts / 2;
    let mid = units.start + n * left_parts / parts.max(1);
    if parts <= 1 || mid == units.start || mid == units.end {
        return f(units, out);
    }
    let (a, b) = split_at_unit(out, units.start, mid, offset)?;
    let (ra, rb) = super::awake::join(
        || for_parts(a, units.start..mid, left_parts, offset, f),
        || for_parts(b, mid..units.end, parts - left_parts, offset, f),
    );
    ra.and(rb)
}

/// `out` (the output of the units from `start`) cut where unit `mid`'s output
/// starts.
fn split_at_unit<'o, O>(
    out: &'o mut [f32],
    start: usize,
    mid: usize,
    offset: &O,
) -> Result<(&'o mut [f32], &'o mut [f32]), Error>
where
    O: Fn(usize) -> usize,
{
    let cut = offset(mid)
        .checked_sub(offset(start))
        .filter(|&c| c <= out.len())
        .ok_or_else(|| Error::Argument("parallel split outside the output".into()))?;
    Ok(out.split_at_mut(cut))
}

/// The work of a split call, `f(units, out_part)` (as [`for_parts`] takes it).
trait PartFn: Fn(Range<usize>, &mut [f32]) -> Result<(), Error> + Sync {}
impl<T: Fn(Range<usize>, &mut [f32]) -> Result<(), Error> + Sync> PartFn for T {}

/// Where a unit's output starts, `offset(unit)` (as [`for_parts`] takes it).
trait UnitOffset: Fn(usize) -> usize + Sync {}
impl<T: Fn(usize) -> usize + Sync> UnitOffset for T {}

/// The state the parts of one balanced call share while they claim: the
/// workers' speeds when the call started, the output and units not yet claimed,
/// how many parts are still to claim, and the workers that have not claimed one
/// (bit per worker).
struct Claims<'o> {
    speeds: Speeds,
    rest: &'o mut [f32],
    next: usize,
    parts_left: usize,
    waiting: u32,
}

/// Per worker, the units and nanoseconds of the parts it ran in one call.
type Ran = [(AtomicU64, AtomicU64); MAX_BALANCED];

/// [`for_parts`] in `parts` pieces (at most one per unit), each sized by
/// `balance` when it starts, for the worker that runs it; every part is timed
/// and `balance` learns from the call.
fn balanced<F: PartFn, O: UnitOffset>(
    balance: &Balance,
    out: &mut [f32],
    units: Range<usize>,
    parts: usize,
    offset: &O,
    f: &F,
) -> Result<(), Error> {
    let parts = parts.min(units.len()).min(MAX_BALANCED);
    let claims = Mutex::new(Claims {
        speeds: balance.speeds(),
        rest: out,
        next: units.start,
        parts_left: parts,
        waiting: u32::MAX,
    });
    let ran: Ran = Default::default();
    let result = run_parts(parts, (&claims, &ran), units.end, offset, f);
    let mut timed = [(0, 0, 0.0); MAX_BALANCED];
    let mut n = 0;
    for (w, (units, nanos)) in ran.iter().enumerate() {
        let (units, nanos) = (units.load(Relaxed), nanos.load(Relaxed));
        if units > 0 {
            timed[n] = (w, units as usize, nanos as f32 * 1e-9);
            n += 1;
        }
    }
    balance.observe(&timed[..n]);
    result
}

/// Runs `parts` parts of a balanced call (forked in halves with `rayon::join`).
fn run_parts<F: PartFn, O: UnitOffset>(
    parts: usize,
    state: (&Mutex<Claims>, &Ran),
    end: usize,
    offset: &O,
    f: &F,
) -> Result<(), Error> {
    if parts <= 1 {
        return run_claimed(state, end, offset, f);
    }
    let half = parts / 2;
    let (ra, rb) = super::awake::join(
        || run_parts(half, state, end, offset, f),
        || run_parts(parts - half, state, end, offset, f),
    );
    ra.and(rb)
}

/// One part of a balanced call: claims this worker's share of the units left
/// (before `end`), runs `f` on them and adds them and the time they took to the
/// worker's count.
fn run_claimed<F: PartFn, O: UnitOffset>(
    (claims, ran): (&Mutex<Claims>, &Ran),
    end: usize,
    offset: &O,
    f: &F,
) -> Result<(), Error> {
    let worker = rayon::current_thread_index().filter(|&w| w < MAX_BALANCED);
    let (units, part) = {
        let mut c = claims.lock().unwrap_or_else(|e| e.into_inner());
        let left = end.saturating_sub(c.next);
        let take = c.speeds.claim(worker, c.parts_left, left, c.waiting);
        let (start, mid) = (c.next, c.next + take);
        let all = std::mem::take(&mut c.rest);
        // The last part takes all the output left: it may end inside its last
        // unit (a band buffer's last plane, after kept rows).
        let (part, rest) = if mid < end {
            split_at_unit(all, start, mid, offset)?
        } else {
            (all, &mut [][..])
        };
        c.rest = rest;
        c.next = mid;
        c.parts_left = c.parts_left.saturating_sub(1);
        if let Some(w) = worker {
            c.waiting &= !(1 << w);
        }
        (start..mid, part)
    };
    let started = Instant::now();
    let n = units.len();
    let result = f(units, part);
    if let Some((units, nanos)) = worker.map(|w| &ran[w]) {
        let took = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        units.fetch_add(n as u64, Relaxed);
        nanos.fetch_add(took, Relaxed);
    }
    result
}

/// The relative speeds of a pool's workers, as `ln(speed)` per worker (f32 bits;
/// speed = units of a split call per second, up to a factor common to all
/// workers), learnt from the parts they run.
#[derive(Debug)]
pub struct Balance {
    ln_speed: [AtomicU32; MAX_BALANCED],
    workers: usize,
}

/// Most workers a [`Balance`] follows (larger pools split evenly).
pub const MAX_BALANCED: usize = 16;
/// Weight of one split call's observation in [`Balance`]'s running estimates (a
/// slower worker is followed within a few calls; one call's noise moves a split
/// by a fifth of its error).
const BALANCE_STEP: f32 = 0.2;
/// Largest speed ratio between two workers that [`Balance`] assumes (with two
/// workers, no part is below a fifth of a call).
const BALANCE_MAX_RATIO: f32 = 4.0;

thread_local! {
    /// The [`Balance`] of the pool this thread works in (set once when the worker
    /// starts, see [`pool`]).
    static WORKER_BALANCE: OnceCell<Arc<Balance>> = const { OnceCell::new() };
}

impl Balance {
    /// A balance of `workers` workers (at most [`MAX_BALANCED`]), all of one
    /// speed.
    pub fn new(workers: usize) -> Balance {
        Balance {
            ln_speed: Default::default(),
            workers: workers.min(MAX_BALANCED),
        }
    }

    /// This thread's pool balance, if it is a worker of a pool made by [`pool`]
    /// with one.
    fn of_this_worker() -> Option<Arc<Balance>> {
        rayon::current_thread_index()?;
        WORKER_BALANCE.with(|b| b.get().cloned())
    }

    /// The workers' estimated speeds now.
    pub fn speeds(&self) -> Speeds {
        let mut speed = [0.0; MAX_BALANCED];
        for (s, ln) in speed.iter_mut().zip(&self.ln_speed[..self.workers]) {
            *s = f32::from_bits(ln.load(Relaxed)).exp();
        }
        Speeds {
            speed,
            workers: self.workers,
        }
    }

    /// Learns from one split call's parts (worker, units, seconds): each worker
    /// that ran a part moves its estimate a [`BALANCE_STEP`] of the way toward its
    /// speed in this call, relative to the other workers of the call. A call whose
    /// timed parts come from fewer than two of this balance's workers (one
    /// worker ran them all, or none took measurable time) teaches nothing.
    /// No worker is taken for more than [`BALANCE_MAX_RATIO`] times slower than
    /// the fastest.
    pub fn observe(&self, parts: &[(usize, usize, f32)]) {
        let mut units = [0.0f32; MAX_BALANCED];
        let mut seconds = [0.0f32; MAX_BALANCED];
        for &(w, n, t) in parts {
            if w < self.workers && n > 0 && t > 0.0 {
                units[w] += n as f32;
                seconds[w] += t;
            }
        }
        let ran = |w: &usize| units[*w] > 0.0;
        let count = (0..self.workers).filter(ran).count();
        if count < 2 {
            return;
        }
        let ln_old = |w: usize| f32::from_bits(self.ln_speed[w].load(Relaxed));
        let ln_rate = |w: usize| (units[w] / seconds[w]).ln();
        let mean_rate = (0..self.workers).filter(ran).map(ln_rate).sum::<f32>() / count as f32;
        let mean_old = (0..self.workers).filter(ran).map(ln_old).sum::<f32>() / count as f32;
        let mut new = [0.0f32; MAX_BALANCED];
        for (w, v) in new.iter_mut().enumerate().take(self.workers) {
            let old = ln_old(w);
            *v = if units[w] > 0.0 {
                old + BALANCE_STEP * (ln_rate(w) - mean_rate + mean_old - old)
            } else {
                old
            };
        }
        let new = &new[..self.workers];
        if !new.iter().all(|v| v.is_finite()) {
            return;
        }
        // At most BALANCE_MAX_RATIO below the fastest, then centred on zero (only
        // differences matter; this keeps the values small).
        let floor = new.iter().fold(f32::MIN, |m, &v| m.max(v)) - BALANCE_MAX_RATIO.ln();
        let mean = new.iter().map(|v| v.max(floor)).sum::<f32>() / self.workers as f32;
        for (slot, v) in self.ln_speed.iter().zip(new) {
            slot.store((v.max(floor) - mean).to_bits(), Relaxed);
        }
    }
}

/// A [`Balance`]'s speed estimates at one moment (relative), by which the parts
/// of one call claim their units.
#[derive(Clone, Copy, Debug)]
pub struct Speeds {
    speed: [f32; MAX_BALANCED],
    workers: usize,
}

impl Speeds {
    /// Units that worker `worker` claims of the `left` units of a call not yet
    /// claimed, when `parts` parts (its own included) are still to claim and the
    /// workers in `waiting` (bit `w` for worker `w`) have not claimed one yet: its
    /// share of its own speed plus, for each of the other parts, the mean speed of
    /// the other waiting workers (its own if none waits: it will run them).
    /// Every part gets at least one unit (so at most `left - parts + 1`); the
    /// last part takes all that is left. An unknown worker (`None`, or not one of
    /// this balance's) claims an even share.
    pub fn claim(&self, worker: Option<usize>, parts: usize, left: usize, waiting: u32) -> usize {
        if parts <= 1 || left <= 1 {
            return left;
        }
        let share = match worker.filter(|&w| w < self.workers) {
            Some(w) => {
                let others = (0..self.workers).filter(|&o| o != w && waiting & (1 << o) != 0);
                let (count, sum) = others.fold((0, 0.0f32), |(c, s), o| (c + 1, s + self.speed[o]));
                let own = self.speed[w];
                let other = if count == 0 { own } else { sum / count as f32 };
                own / (own + (parts - 1) as f32 * other)
            }
            None => 1.0 / parts as f32,
        };
        let most = left.saturating_sub(parts - 1).max(1);
        let take = (left as f32 * share).round();
        if take.is_finite() {
            (take as usize).clamp(1, most)
        } else {
            left.div_ceil(parts).clamp(1, most)
        }
    }
}

/// A pool of `threads` workers named `shufflenet-N`; with 2 to [`MAX_BALANCED`],
/// they share one [`Balance`] that [`for_parts`] sizes their parts by.
pub fn pool(threads: usize) -> Result<rayon::ThreadPool, rayon::ThreadPoolBuildError> {
    let builder = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("shufflenet-{i}"));
    if !(2..=MAX_BALANCED).contains(&threads) {
        return builder.build();
    }
    let balance = Arc::new(Balance::new(threads));
    builder
        .start_handler(move |_| WORKER_BALANCE.with(|b| drop(b.set(balance.clone()))))
        .build()
}

/// [`for_parts`] over the first `n` floats of `out`, one per item, cut only at
/// multiples of `block` items: `f(items, out_part)`.
pub fn for_blocks<F>(
    out: &mut [f32],
    n: usize,
    block: usize,
    threads: usize,
    f: &F,
) -> Result<(), Error>
where
    F: Fn(Range<usize>, &mut [f32]) -> Result<(), Error> + Sync,
{
    let out = out
        .get_mut(..n)
        .ok_or_else(|| Error::Argument("output shorter than its items".into()))?;
    let block = block.max(1);
    for_parts(
        out,
        0..n.div_ceil(block),
        threads,
        &|b| b * block,
        &|r, o| f(r.start * block..(r.end * block).min(n), o),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// No worker has claimed a part yet.
    const ALL: u32 = u32::MAX;

    /// Writes `u + 1` into the three floats of each unit `u` of its part.
    fn fill(r: Range<usize>, o: &mut [f32]) -> Result<(), Error> {
        assert_eq!(o.len(), r.len() * 3);
        for (i, u) in r.enumerate() {
            o[i * 3..i * 3 + 3].fill(u as f32 + 1.0);
        }
        Ok(())
    }

    fn filled(units: usize) -> Vec<f32> {
        (0..units).flat_map(|u| [u as f32 + 1.0; 3]).collect()
    }

    /// Estimated `ln(speed)` of worker `w`.
    fn ln_speed(b: &Balance, w: usize) -> f32 {
        f32::from_bits(b.ln_speed[w].load(Relaxed))
    }

    #[test]
    fn every_unit_is_done_once_in_its_own_part() {
        for parts in 1..6 {
            let mut out = vec![0.0f32; 37 * 3];
            for_parts(&mut out, 0..37, parts, &|u| u * 3, &fill).unwrap();
            assert_eq!(out, filled(37), "parts={parts}");
        }
    }

    #[test]
    fn every_unit_is_done_once_in_balanced_pools() {
        for threads in 2..6 {
            let workers = pool(threads).unwrap();
            let b = workers.install(|| Balance::of_this_worker().unwrap());
            // Skewed estimates, as a pool with a slow worker learns them.
            b.observe(&[(0, 10, 1.0), (threads - 1, 10, 0.05)]);
            for parts in 2..8 {
                for units in [2, 3, 5, 37] {
                    let mut out = vec![0.0f32; units * 3];
                    workers
                        .install(|| for_parts(&mut out, 0..units, parts, &|u| u * 3, &fill))
                        .unwrap();
                    assert_eq!(out, filled(units), "{threads} threads, {parts} parts");
                }
            }
        }
    }

    #[test]
    fn the_last_part_takes_an_output_that_ends_inside_its_last_unit() {
        // As in a band buffer whose first rows are kept: the output ends two
        // floats short of the last unit's full three.
        let short = |r: Range<usize>, o: &mut [f32]| {
            for (i, u) in r.enumerate() {
                let end = (i * 3 + 3).min(o.len());
                o[i * 3..end].fill(u as f32 + 1.0);
            }
            Ok(())
        };
        for threads in [1, 2, 3] {
            let workers = pool(threads).unwrap();
            for parts in 1..5 {
                for units in [2, 5, 37] {
                    let mut out = vec![0.0f32; units * 3 - 2];
                    workers
                        .install(|| for_parts(&mut out, 0..units, parts, &|u| u * 3, &short))
                        .unwrap_or_else(|e| panic!("{threads} threads, {parts} parts: {e}"));
                    assert_eq!(out, filled(units)[..units * 3 - 2], "{threads} threads");
                }
            }
        }
    }

    /// A two-worker balance taught that worker 1 does `ratio` times worker 0's
    /// units per second.
    fn taught(ratio: f32) -> Balance {
        let b = Balance::new(2);
        for _ in 0..200 {
            b.observe(&[(0, 10, 1.0), (1, 10, 1.0 / ratio)]);
        }
        b
    }

    #[test]
    fn a_new_balance_claims_evenly() {
        let b = Balance::new(4);
        for w in [Some(0), Some(3), None] {
            assert_eq!(b.speeds().claim(w, 2, 10, ALL), 5);
            assert_eq!(b.speeds().claim(w, 4, 40, ALL), 10);
            assert_eq!(b.speeds().claim(w, 2, 2, ALL), 1);
            assert_eq!(b.speeds().claim(w, 1, 7, ALL), 7);
            assert_eq!(b.speeds().claim(w, 2, 1, ALL), 1);
            assert_eq!(b.speeds().claim(w, 2, 0, ALL), 0);
        }
    }

    #[test]
    fn the_faster_worker_gets_the_larger_part_whichever_claims_first() {
        // Worker 1 twice as fast: it does 2/3 of a call, whichever part it runs.
        let b = taught(2.0);
        assert_eq!(b.speeds().claim(Some(0), 2, 30, ALL), 10);
        assert_eq!(b.speeds().claim(Some(1), 2, 30, ALL), 20);
        // The same speeds observed with the parts the other way round.
        let c = Balance::new(2);
        for _ in 0..200 {
            c.observe(&[(1, 8, 1.0), (0, 4, 1.0)]);
        }
        assert_eq!(c.speeds().claim(Some(0), 2, 30, ALL), 10);
        assert_eq!(c.speeds().claim(Some(1), 2, 30, ALL), 20);
        // Worker 0 faster.
        let d = taught(0.5);
        assert_eq!(d.speeds().claim(Some(0), 2, 30, ALL), 20);
    }

    #[test]
    fn one_call_moves_the_estimates_by_a_step_of_their_error() {
        let b = Balance::new(2);
        b.observe(&[(0, 10, 1.0), (1, 10, 0.5)]);
        let gap = ln_speed(&b, 1) - ln_speed(&b, 0);
        assert!((gap - BALANCE_STEP * 2f32.ln()).abs() < 1e-6, "{gap}");
    }

    #[test]
    fn calls_that_show_no_speeds_teach_nothing() {
        let b = taught(2.0);
        let before = [0, 1].map(|w| b.ln_speed[w].load(Relaxed));
        b.observe(&[(0, 10, 1.0), (0, 10, 0.1)]); // one worker ran both parts
        b.observe(&[(0, 10, 0.0), (1, 10, 1.0)]); // no time measured
        b.observe(&[(0, 0, 1.0), (1, 10, 1.0)]); // an empty part
        b.observe(&[(2, 10, 1.0), (1, 10, 1.0)]); // not a worker of this balance
        b.observe(&[]);
        assert_eq!([0, 1].map(|w| b.ln_speed[w].load(Relaxed)), before);
    }

    #[test]
    fn no_worker_is_taken_for_more_than_four_times_another() {
        let b = taught(1000.0);
        assert_eq!(b.speeds().claim(Some(0), 2, 100, ALL), 20);
        assert_eq!(b.speeds().claim(Some(1), 2, 100, ALL), 80);
        assert_eq!(b.speeds().claim(Some(0), 2, 2, ALL), 1);
        let c = Balance::new(4);
        for _ in 0..200 {
            c.observe(&[(0, 1000, 1.0), (1, 1, 1.0), (2, 1, 1.0), (3, 1, 1.0)]);
        }
        let fastest = (1..4).map(|w| ln_speed(&c, 0) - ln_speed(&c, w));
        for gap in fastest {
            assert!(gap <= BALANCE_MAX_RATIO.ln() + 1e-5, "{gap}");
        }
    }

    #[test]
    fn a_slow_worker_of_four_claims_less() {
        // Worker 3 a third of the others' speed: it claims a tenth of a call (its
        // speed over the four's sum) whether it claims first or last.
        let b = Balance::new(4);
        for _ in 0..200 {
            b.observe(&[(0, 30, 1.0), (1, 30, 1.0), (2, 30, 1.0), (3, 10, 1.0)]);
        }
        assert_eq!(b.speeds().claim(Some(3), 4, 100, ALL), 10);
        assert_eq!(b.speeds().claim(Some(0), 3, 90, 0b0111), 30);
        assert_eq!(b.speeds().claim(Some(0), 4, 100, ALL), 30);
        assert_eq!(b.speeds().claim(Some(1), 3, 70, 0b1110), 30);
        assert_eq!(b.speeds().claim(Some(2), 2, 40, 0b1100), 30);
        // With no other worker waiting, the claimer runs the other parts too.
        assert_eq!(b.speeds().claim(Some(0), 3, 90, 0b0001), 30);
        assert_eq!(b.speeds().claim(Some(3), 2, 20, 0b1000), 10);
        // A call that workers 0 and 1 ran moves them apart, around their mean, and
        // leaves the two that sat it out where they were.
        let pair = |b: &Balance| (ln_speed(b, 0) + ln_speed(b, 1)) / 2.0;
        let (gap, to_pair) = (
            ln_speed(&b, 2) - ln_speed(&b, 3),
            pair(&b) - ln_speed(&b, 2),
        );
        b.observe(&[(0, 30, 1.0), (1, 60, 1.0)]);
        assert!(ln_speed(&b, 1) > ln_speed(&b, 0));
        assert!((ln_speed(&b, 2) - ln_speed(&b, 3) - gap).abs() < 1e-5);
        assert!((pair(&b) - ln_speed(&b, 2) - to_pair).abs() < 1e-5);
    }

    /// `f` after a sleep of `ms[w]` milliseconds per unit on worker `w`, counting
    /// the units each worker runs into `units_of`.
    fn sleepy<'a>(
        ms: &'a [u64],
        units_of: &'a [AtomicU32],
    ) -> impl Fn(Range<usize>, &mut [f32]) -> Result<(), Error> + Sync + 'a {
        move |r, o| {
            let w = rayon::current_thread_index().unwrap();
            std::thread::sleep(Duration::from_millis(ms[w] * r.len() as u64));
            units_of[w].fetch_add(r.len() as u32, Relaxed);
            fill(r, o)
        }
    }

    #[test]
    fn a_split_call_teaches_its_balance() {
        // Worker 0 sleeps 3 ms per unit, worker 1 1 ms: once the two workers have
        // run the two parts (each part takes long enough for the other worker to
        // take its own), the balance favours worker 1.
        let workers = pool(2).unwrap();
        let b = workers.install(|| Balance::of_this_worker().unwrap());
        let units_of = [AtomicU32::new(0), AtomicU32::new(0)];
        let slow = sleepy(&[3, 1], &units_of);
        for _ in 0..50 {
            let mut out = vec![0.0f32; 4 * 3];
            workers
                .install(|| for_parts(&mut out, 0..4, 2, &|u| u * 3, &slow))
                .unwrap();
            assert_eq!(out, filled(4));
            if ln_speed(&b, 1) != ln_speed(&b, 0) {
                break;
            }
        }
        assert!(ln_speed(&b, 1) > ln_speed(&b, 0));
        assert!(b.speeds().claim(Some(1), 2, 100, ALL) > 50);
    }

    #[test]
    fn balanced_pools_give_their_faster_workers_more_units() {
        // Through `for_parts` in pools made by `pool`: the worker that sleeps three
        // times as long per unit does the fewest units by the tenth call.
        for threads in [2, 4] {
            let ms: Vec<u64> = (0..threads).map(|w| if w == 0 { 3 } else { 1 }).collect();
            let units_of: Vec<AtomicU32> = (0..threads).map(|_| AtomicU32::new(0)).collect();
            let slow = sleepy(&ms, &units_of);
            let workers = pool(threads).unwrap();
            let units = 10 * threads;
            for _ in 0..10 {
                units_of.iter().for_each(|u| u.store(0, Relaxed));
                let mut out = vec![0.0f32; units * 3];
                workers
                    .install(|| for_parts(&mut out, 0..units, threads, &|u| u * 3, &slow))
                    .unwrap();
                assert_eq!(out, filled(units));
            }
            let done: Vec<u32> = units_of.iter().map(|u| u.load(Relaxed)).collect();
            assert_eq!(done.iter().sum::<u32>() as usize, units);
            let most = *done[1..].iter().max().unwrap();
            assert!(
                done[0] < most,
                "{threads} threads: units per worker {done:?}"
            );
        }
    }

    #[test]
    fn a_four_thread_pool_sizes_each_part_for_its_worker() {
        // Worker 3 a third of the others' speed (and sleeping accordingly, so the
        // calls keep teaching the same): in a call whose four parts ran on the
        // four workers, whatever the order they claimed in, worker 3 did 10 of
        // 100 units and each other worker 30.
        let workers = pool(4).unwrap();
        let b = workers.install(|| Balance::of_this_worker().unwrap());
        for _ in 0..200 {
            b.observe(&[(0, 30, 1.0), (1, 30, 1.0), (2, 30, 1.0), (3, 10, 1.0)]);
        }
        let units_of: Vec<AtomicU32> = (0..4).map(|_| AtomicU32::new(0)).collect();
        let parts_of: Vec<AtomicU32> = (0..4).map(|_| AtomicU32::new(0)).collect();
        let slow = sleepy(&[1, 1, 1, 3], &units_of);
        let counted = |r: Range<usize>, o: &mut [f32]| {
            parts_of[rayon::current_thread_index().unwrap()].fetch_add(1, Relaxed);
            slow(r, o)
        };
        for _ in 0..20 {
            units_of
                .iter()
                .chain(&parts_of)
                .for_each(|u| u.store(0, Relaxed));
            let mut out = vec![0.0f32; 100 * 3];
            workers
                .install(|| for_parts(&mut out, 0..100, 4, &|u| u * 3, &counted))
                .unwrap();
            assert_eq!(out, filled(100));
            if parts_of.iter().all(|p| p.load(Relaxed) == 1) {
                let done: Vec<u32> = units_of.iter().map(|u| u.load(Relaxed)).collect();
                assert_eq!(done, [30, 30, 30, 10]);
                return;
            }
        }
        panic!("no call ran one part on each of the four workers");
    }

    #[test]
    fn pools_of_two_to_sixteen_threads_balance() {
        for threads in [1, 2, 3, 4, MAX_BALANCED, MAX_BALANCED + 1] {
            let found = pool(threads)
                .unwrap()
                .install(|| Balance::of_this_worker().map(|b| b.workers));
            let want = (2..=MAX_BALANCED).contains(&threads).then_some(threads);
            assert_eq!(found, want, "{threads} threads");
        }
        assert!(Balance::of_this_worker().is_none());
    }
}
