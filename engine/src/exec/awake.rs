//! Keeping a pool's workers awake through one inference.
//!
//! A rayon worker with nothing to do sleeps after a few dozen rounds of looking
//! for work. The next split kernel call then waits for it to wake, and a woken
//! thread on a halted virtual CPU (or a phone core that went idle) can take
//! 50-150 us to start, longer than a whole depthwise call: the caller runs both
//! halves itself or waits. Measured on the Zen 4 guest in its slow phases (1x
//! g = 3, 480x640, two threads, `--profile`): every depthwise and average pool
//! call took 2-8x its time in the fast phases (+50-180 us each); with the workers
//! kept awake, 1.05-1.13x. In a calm phase, paired against sleeping workers, the
//! depthwise calls took 0.88 of the time and the pools 0.72. See
//! `tools/PERFORMANCE.md`, 2026-12-03.
//!
//! [`with_workers_awake`] runs the inference beside one spinner per other
//! worker. A spinner runs the jobs it finds (`rayon::yield_now`, which steals
//! like an idle worker) until the inference ends, and gives up after
//! [`IDLE_LIMIT`] without finding any: so a spinner that a worker picks up while
//! it waits inside a part of the inference (it can, with three or more threads)
//! holds that part up by at most that long, never for good, and a run that
//! panics still ends. The spinners are nested `rayon::join`s: nothing is
//! allocated.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How long a spinner looks for work before it lets its worker sleep: longer
/// than the gaps between the split calls of one inference (microseconds), short
/// enough that a spinner in the wrong place costs little.
pub const IDLE_LIMIT: Duration = Duration::from_micros(500);

/// Runs `run` on this pool worker while the pool's other `threads - 1` workers
/// spin, taking the parts `run` splits off as soon as they appear. Outside a
/// pool, or with one thread, it just runs `run`.
pub fn with_workers_awake<R, F>(threads: usize, run: F) -> R
where
    F: FnOnce() -> R + Send,
    R: Send,
{
    let Some(owner) = rayon::current_thread_index() else {
        return run();
    };
    if threads < 2 {
        return run();
    }
    let done = AtomicBool::new(false);
    let (result, ()) = rayon::join(
        || {
            let result = run();
            done.store(true, Ordering::Release);
            result
        },
        || spinners(threads - 1, owner, &done),
    );
    result
}

/// `count` spinners, each on whichever worker takes it (the owner of the run
/// does not spin: it would wait on itself).
fn spinners(count: usize, owner: usize, done: &AtomicBool) {
    if count == 0 || rayon::current_thread_index() == Some(owner) {
        return;
    }
    if count == 1 {
        spin(done);
    } else {
        rayon::join(|| spin(done), || spinners(count - 1, owner, done));
    }
}

/// Runs the jobs this worker can find until `done`, or until it has found none
/// for [`IDLE_LIMIT`].
fn spin(done: &AtomicBool) {
    let mut idle_since = Instant::now();
    while !done.load(Ordering::Acquire) {
        match rayon::yield_now() {
            Some(rayon::Yield::Executed) => idle_since = Instant::now(),
            Some(rayon::Yield::Idle) if idle_since.elapsed() < IDLE_LIMIT => {
                std::hint::spin_loop();
            }
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::parallel::pool;
    use std::sync::mpsc;

    /// Sums `0..n` by splitting it in halves down to single values.
    fn split_sum(r: std::ops::Range<u64>) -> u64 {
        if r.end - r.start <= 1 {
            return r.start;
        }
        let mid = r.start + (r.end - r.start) / 2;
        let (a, b) = rayon::join(|| split_sum(r.start..mid), || split_sum(mid..r.end));
        a + b
    }

    #[test]
    fn a_run_with_workers_awake_returns_its_result_on_every_pool_size() {
        for threads in 1..=6 {
            let workers = pool(threads).unwrap();
            // In a thread of its own, so that a hang fails the test.
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                let sums: Vec<u64> = (0..50)
                    .map(|_| workers.install(|| with_workers_awake(threads, || split_sum(0..2000))))
                    .collect();
                let _ = tx.send(sums);
            });
            let sums = rx
                .recv_timeout(Duration::from_secs(120))
                .expect("run ended");
            assert!(
                sums.iter().all(|&s| s == 1999 * 2000 / 2),
                "{threads} threads"
            );
        }
        // Outside a pool it runs in place.
        assert_eq!(with_workers_awake(4, || split_sum(0..10)), 45);
    }

    #[test]
    fn a_spinner_with_nothing_to_do_gives_up_after_the_idle_limit() {
        // As a spinner that a worker picked up inside a part of the run: the
        // run's end is not coming from this stack, so it must stop by itself.
        let workers = pool(2).unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let took = workers.install(|| {
                let t = Instant::now();
                spin(&AtomicBool::new(false));
                t.elapsed()
            });
            let _ = tx.send(took);
        });
        let took = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("spinner ended");
        assert!(took >= IDLE_LIMIT, "{took:?}");
        // And one whose run has ended stops at once, work or not.
        let ended = AtomicBool::new(true);
        let t = Instant::now();
        spin(&ended);
        assert!(t.elapsed() < IDLE_LIMIT);
    }
}
