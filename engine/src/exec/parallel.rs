//! Splitting one kernel call over threads by output channels (or weight panels):
//! each thread gets a contiguous range of units and the matching contiguous part of
//! the output, so the split is safe (`split_at_mut`) and every output value is
//! computed by the same code as in a single-threaded run: results are bit-identical
//! for any thread count and any cut. Uses `rayon::join`, which allocates nothing.
//!
//! Two threads split unevenly when one is slower ([`Balance`]): a phone's big and
//! little cores, or a virtual CPU whose host core is shared. The pool made by
//! [`pool`] gives its workers one `Balance`, which learns the two workers' relative
//! speed from the calls they split (each part is timed) and gives the faster worker
//! the larger part. Measured on the Intel Xeon guest (2 vCPUs, one of which often
//! runs at about two thirds of the other's speed for seconds to minutes; 1x g = 3
//! at 480x640, `--threads 2`): see the README's Intel section. More threads split
//! evenly (which worker runs which part of a deeper split is up to rayon's work
//! stealing), and so does any call outside such a pool.

use crate::Error;
use std::cell::OnceCell;
use std::ops::Range;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::sync::Arc;
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
    if parts == 2 && n >= 2 {
        if let Some((balance, caller)) = Balance::of_this_worker() {
            return balanced(&balance, caller, out, units, offset, f);
        }
    }
    let left_parts = parts / 2;
    let mid = units.start + n * left_parts / parts.max(1);
    if parts <= 1 || mid == units.start || mid == units.end {
        return f(units, out);
    }
    let (a, b) = split_at_unit(out, units.start, mid, offset)?;
    let (ra, rb) = rayon::join(
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

/// [`for_parts`] in two parts, the caller's (worker `caller` of a two-thread pool)
/// sized by `balance`; both parts are timed and `balance` learns from them.
fn balanced<F, O>(
    balance: &Balance,
    caller: usize,
    out: &mut [f32],
    units: Range<usize>,
    offset: &O,
    f: &F,
) -> Result<(), Error>
where
    F: Fn(Range<usize>, &mut [f32]) -> Result<(), Error> + Sync,
    O: Fn(usize) -> usize + Sync,
{
    let n = units.len();
    let left = balance.left_units(caller, n);
    let mid = units.start + left;
    let (a, b) = split_at_unit(out, units.start, mid, offset)?;
    let timed = |r: Range<usize>, o: &mut [f32]| {
        let start = Instant::now();
        let result = f(r, o);
        (
            result,
            start.elapsed().as_secs_f32(),
            rayon::current_thread_index(),
        )
    };
    let ((ra, ta, wa), (rb, tb, wb)) =
        rayon::join(|| timed(units.start..mid, a), || timed(mid..units.end, b));
    if let (Some(wa), Some(wb)) = (wa, wb) {
        balance.observe((wa, left, ta), (wb, n - left, tb));
    }
    ra.and(rb)
}

/// The relative speed of the two workers of a two-thread pool, as `ln(speed of
/// worker 1 / speed of worker 0)` (f32 bits; speed = units of a split call per
/// second), learnt from the calls they split.
#[derive(Debug, Default)]
pub struct Balance {
    ln_ratio: AtomicU32,
}

/// Weight of one split call's observation in [`Balance`]'s running estimate (a
/// slower worker is followed within a few calls; one call's noise moves the
/// split by a fifth of its error).
const BALANCE_STEP: f32 = 0.2;
/// Largest speed ratio [`Balance`] assumes (so no part is below a fifth).
const BALANCE_MAX_RATIO: f32 = 4.0;

thread_local! {
    /// The [`Balance`] of the two-thread pool this thread works in (set once when
    /// the worker starts, see [`pool`]).
    static WORKER_BALANCE: OnceCell<Arc<Balance>> = const { OnceCell::new() };
}

impl Balance {
    /// This thread's pool balance and its worker index, if it is a worker of a
    /// two-thread pool made by [`pool`].
    fn of_this_worker() -> Option<(Arc<Balance>, usize)> {
        let caller = rayon::current_thread_index().filter(|&i| i < 2)?;
        let balance = WORKER_BALANCE.with(|b| b.get().cloned())?;
        Some((balance, caller))
    }

    /// Units of `n` that worker `caller` keeps when it splits a call in two: its
    /// share of the two workers' summed speed, at least one unit and at most
    /// `n - 1` (all `n` if `n < 2`: there is nothing to split).
    pub fn left_units(&self, caller: usize, n: usize) -> usize {
        if n < 2 {
            return n;
        }
        // Speed of the other worker over the caller's.
        let q = f32::from_bits(self.ln_ratio.load(Relaxed)).exp();
        let other_over_caller = if caller == 0 { q } else { 1.0 / q };
        let share = 1.0 / (1.0 + other_over_caller);
        ((n as f32 * share).round() as usize).clamp(1, n - 1)
    }

    /// Learns from one split call: each part as (worker index, units, seconds).
    /// Parts that one worker ran both, or that took no measurable time, teach
    /// nothing.
    pub fn observe(&self, a: (usize, usize, f32), b: (usize, usize, f32)) {
        let ((wa, na, ta), (wb, nb, tb)) = (a, b);
        if wa == wb || wa > 1 || wb > 1 || ta <= 0.0 || tb <= 0.0 || na == 0 || nb == 0 {
            return;
        }
        let (rate_a, rate_b) = (na as f32 / ta, nb as f32 / tb);
        let seen = if wa == 0 {
            rate_b / rate_a
        } else {
            rate_a / rate_b
        }
        .ln();
        let max = BALANCE_MAX_RATIO.ln();
        let old = f32::from_bits(self.ln_ratio.load(Relaxed));
        let new = (old + BALANCE_STEP * (seen - old)).clamp(-max, max);
        if new.is_finite() {
            self.ln_ratio.store(new.to_bits(), Relaxed);
        }
    }
}

/// A pool of `threads` workers named `shufflenet-N`; with two, they share one
/// [`Balance`] that [`for_parts`] splits their calls by.
pub fn pool(threads: usize) -> Result<rayon::ThreadPool, rayon::ThreadPoolBuildError> {
    let builder = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("shufflenet-{i}"));
    if threads != 2 {
        return builder.build();
    }
    let balance = Arc::new(Balance::default());
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

    #[test]
    fn every_unit_is_done_once_in_its_own_part() {
        for parts in 1..6 {
            let mut out = vec![0.0f32; 37 * 3];
            for_parts(&mut out, 0..37, parts, &|u| u * 3, &fill).unwrap();
            assert_eq!(out, filled(37), "parts={parts}");
        }
    }

    /// A balance taught that worker 1 does `ratio` times worker 0's units per
    /// second.
    fn taught(ratio: f32) -> Balance {
        let b = Balance::default();
        for _ in 0..200 {
            b.observe((0, 10, 1.0), (1, 10, 1.0 / ratio));
        }
        b
    }

    #[test]
    fn a_new_balance_splits_evenly() {
        let b = Balance::default();
        for caller in 0..2 {
            assert_eq!(b.left_units(caller, 10), 5);
            assert_eq!(b.left_units(caller, 2), 1);
            assert_eq!(b.left_units(caller, 1), 1);
            assert_eq!(b.left_units(caller, 0), 0);
        }
    }

    #[test]
    fn the_faster_worker_gets_the_larger_part_whichever_calls() {
        // Worker 1 twice as fast: it does 2/3 of a call, whichever worker splits it.
        let b = taught(2.0);
        assert_eq!(b.left_units(0, 30), 10);
        assert_eq!(b.left_units(1, 30), 20);
        // The same speeds observed with the parts the other way round.
        let c = Balance::default();
        for _ in 0..200 {
            c.observe((1, 8, 1.0), (0, 4, 1.0));
        }
        assert_eq!(c.left_units(0, 30), 10);
        assert_eq!(c.left_units(1, 30), 20);
        // Worker 0 faster.
        let d = taught(0.5);
        assert_eq!(d.left_units(0, 30), 20);
    }

    #[test]
    fn one_call_moves_the_split_by_a_step_of_its_error() {
        let b = Balance::default();
        b.observe((0, 10, 1.0), (1, 10, 0.5));
        let ln = f32::from_bits(b.ln_ratio.load(Relaxed));
        assert!((ln - BALANCE_STEP * 2f32.ln()).abs() < 1e-6, "{ln}");
    }

    #[test]
    fn calls_that_show_no_speeds_teach_nothing() {
        let b = taught(2.0);
        let before = b.ln_ratio.load(Relaxed);
        b.observe((0, 10, 1.0), (0, 10, 0.1)); // one worker ran both parts
        b.observe((0, 10, 0.0), (1, 10, 1.0)); // no time measured
        b.observe((0, 0, 1.0), (1, 10, 1.0)); // an empty part
        b.observe((2, 10, 1.0), (1, 10, 1.0)); // not a worker of a two-thread pool
        assert_eq!(b.ln_ratio.load(Relaxed), before);
    }

    #[test]
    fn no_part_is_below_a_fifth() {
        let b = taught(1000.0);
        assert_eq!(b.left_units(0, 100), 20);
        assert_eq!(b.left_units(1, 100), 80);
        assert_eq!(b.left_units(0, 2), 1);
    }

    #[test]
    fn uneven_splits_do_every_unit_once() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        for ratio in [0.25, 0.7, 1.0, 3.0] {
            let b = taught(ratio);
            for units in [2, 3, 37] {
                let mut out = vec![0.0f32; units * 3];
                pool.install(|| {
                    let caller = rayon::current_thread_index().unwrap();
                    balanced(&b, caller, &mut out, 0..units, &|u| u * 3, &fill)
                })
                .unwrap();
                assert_eq!(out, filled(units), "ratio {ratio}, {units} units");
            }
        }
    }

    #[test]
    fn a_split_call_teaches_its_balance() {
        // Worker 0 sleeps 3 ms per unit, worker 1 1 ms: once the two workers have
        // run the two parts (each part takes long enough for the other worker to
        // take its own), the balance favours worker 1.
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        let b = Balance::default();
        let slow = |r: Range<usize>, o: &mut [f32]| {
            let per_unit = if rayon::current_thread_index() == Some(0) {
                3
            } else {
                1
            };
            std::thread::sleep(std::time::Duration::from_millis(per_unit * r.len() as u64));
            fill(r, o)
        };
        for _ in 0..50 {
            let mut out = vec![0.0f32; 4 * 3];
            pool.install(|| {
                let caller = rayon::current_thread_index().unwrap();
                balanced(&b, caller, &mut out, 0..4, &|u| u * 3, &slow)
            })
            .unwrap();
            assert_eq!(out, filled(4));
            if b.ln_ratio.load(Relaxed) != 0 {
                break;
            }
        }
        assert!(f32::from_bits(b.ln_ratio.load(Relaxed)) > 0.0);
        assert!(b.left_units(1, 100) > 50);
    }

    #[test]
    fn a_two_thread_pool_gives_its_faster_worker_more_units() {
        // As above, through `for_parts` in a pool made by `pool`: by the tenth call
        // worker 1 (three times as fast) does most of the units.
        let units_of = [AtomicU32::new(0), AtomicU32::new(0)];
        let slow = |r: Range<usize>, o: &mut [f32]| {
            let w = rayon::current_thread_index().unwrap();
            let per_unit = if w == 0 { 3 } else { 1 };
            std::thread::sleep(std::time::Duration::from_millis(per_unit * r.len() as u64));
            units_of[w].store(r.len() as u32, Relaxed);
            fill(r, o)
        };
        let workers = pool(2).unwrap();
        for _ in 0..10 {
            let mut out = vec![0.0f32; 20 * 3];
            workers
                .install(|| for_parts(&mut out, 0..20, 2, &|u| u * 3, &slow))
                .unwrap();
            assert_eq!(out, filled(20));
        }
        let [w0, w1] = units_of.map(|u| u.into_inner());
        assert_eq!(w0 + w1, 20);
        assert!(w1 > w0, "worker 0 did {w0} units, worker 1 {w1}");
    }

    #[test]
    fn only_two_thread_pools_balance() {
        for threads in 1..4 {
            let found = pool(threads)
                .unwrap()
                .install(|| WORKER_BALANCE.with(|b| b.get().is_some()));
            assert_eq!(found, threads == 2, "{threads} threads");
        }
        assert!(Balance::of_this_worker().is_none());
    }
}
