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
//!
//! Inside a call the same holds for the worker that forked it: [`join`] is
//! `rayon::join` whose first side, done with its half, spins until the half
//! another worker took ends, where rayon's own wait would put it to sleep after
//! a few dozen rounds (tens of microseconds) and the other worker's finish would
//! then have to wake it. Measured on the Zen 4 guest (two threads, one join per
//! step of about 40 us on each worker's own half of 1 MiB, 60 windows of ten
//! rounds, probe): 1.28x the one-thread speed with `rayon::join`, 1.64x with the
//! spinning join, 1.58x for two threads that never meet.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How long a spinner looks for work before it lets its worker sleep, and the
/// least a [`join`] spins for its other side: longer than the gaps between the
/// split calls of one inference (microseconds), short enough that a spinner in
/// the wrong place costs little.
pub const IDLE_LIMIT: Duration = Duration::from_micros(500);

/// `rayon::join(a, b)`, but the worker that ran `a` does not sleep while `b`
/// runs on another worker: it spins until `b` ends, for as long as `a` took and
/// at least [`IDLE_LIMIT`], then waits as rayon does (so a `b` that panics, or
/// a worker the system stopped, costs bounded spinning). If no worker has
/// started `b` yet, it runs it itself. Nothing is allocated.
pub fn join<A, B, RA, RB>(a: A, b: B) -> (RA, RB)
where
    A: FnOnce() -> RA + Send,
    B: FnOnce() -> RB + Send,
    RA: Send,
    RB: Send,
{
    let (started, done) = (AtomicBool::new(false), AtomicBool::new(false));
    rayon::join(
        || {
            let t = Instant::now();
            let ra = a();
            wait_for((&started, &done), t.elapsed().max(IDLE_LIMIT));
            ra
        },
        || {
            started.store(true, Ordering::Release);
            let rb = b();
            done.store(true, Ordering::Release);
            rb
        },
    )
}

/// Spins until `done`, or for `limit`. While the other side has not `started`,
/// runs this worker's newest local job instead: that is the other side itself
/// unless a worker is just taking it (then a job of an enclosing join, work
/// rayon's wait would also run).
fn wait_for((started, done): (&AtomicBool, &AtomicBool), limit: Duration) {
    let since = Instant::now();
    while !done.load(Ordering::Acquire) {
        if !started.load(Ordering::Acquire) && rayon::yield_local() == Some(rayon::Yield::Executed)
        {
            continue;
        }
        if since.elapsed() >= limit {
            return;
        }
        std::hint::spin_loop();
    }
}

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

    /// Runs `f` in a thread of its own and returns its result, failing the test
    /// if it does not end within a minute (a hang).
    fn ends<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(Duration::from_secs(60)).expect("ended")
    }

    /// [`split_sum`] forked with [`join`].
    fn join_sum(r: std::ops::Range<u64>) -> u64 {
        if r.end - r.start <= 1 {
            return r.start;
        }
        let mid = r.start + (r.end - r.start) / 2;
        let (a, b) = join(|| join_sum(r.start..mid), || join_sum(mid..r.end));
        a + b
    }

    #[test]
    fn join_returns_both_sides_on_every_pool_size() {
        for threads in 1..=6 {
            let sums = ends(move || {
                let workers = pool(threads).unwrap();
                (0..50)
                    .map(|_| workers.install(|| with_workers_awake(threads, || join_sum(0..2000))))
                    .collect::<Vec<u64>>()
            });
            assert!(
                sums.iter().all(|&s| s == 1999 * 2000 / 2),
                "{threads} threads"
            );
        }
        assert_eq!(join_sum(0..10), 45);
    }

    #[test]
    fn join_passes_on_a_panic_of_either_side() {
        for threads in [1, 2] {
            let workers = pool(threads).unwrap();
            let first = workers.install(|| {
                std::panic::catch_unwind(|| join(|| panic!("first"), || join_sum(0..100)))
            });
            assert!(first.is_err(), "{threads} threads");
            let second = ends(move || {
                workers.install(|| {
                    std::panic::catch_unwind(|| join(|| join_sum(0..100), || panic!("second")))
                        .is_err()
                })
            });
            assert!(second, "{threads} threads");
        }
    }

    #[test]
    fn the_waiting_side_runs_the_other_side_if_no_worker_took_it() {
        // One worker: the other side stays in its queue; waiting for it without
        // running it would spin for the whole limit (a minute: the test fails).
        let ran = ends(|| {
            let workers = pool(1).unwrap();
            let (started, done) = (AtomicBool::new(false), AtomicBool::new(false));
            workers.install(|| {
                rayon::join(
                    || wait_for((&started, &done), Duration::from_secs(600)),
                    || {
                        started.store(true, Ordering::Release);
                        done.store(true, Ordering::Release);
                    },
                )
            });
            done.load(Ordering::Acquire)
        });
        assert!(ran);
    }

    #[test]
    fn the_waiting_side_spins_until_the_other_ends_or_the_limit() {
        // The other side ends on another thread after 3 ms.
        let took = ends(|| {
            let (started, done) = (AtomicBool::new(true), AtomicBool::new(false));
            std::thread::scope(|s| {
                let t = Instant::now();
                s.spawn(|| {
                    std::thread::sleep(Duration::from_millis(3));
                    done.store(true, Ordering::Release);
                });
                wait_for((&started, &done), Duration::from_secs(600));
                t.elapsed()
            })
        });
        assert!(took >= Duration::from_millis(3), "{took:?}");
        // It never ends: the wait gives up after the limit.
        let took = ends(|| {
            let (started, done) = (AtomicBool::new(true), AtomicBool::new(false));
            let t = Instant::now();
            wait_for((&started, &done), Duration::from_millis(2));
            t.elapsed()
        });
        assert!(took >= Duration::from_millis(2), "{took:?}");
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
