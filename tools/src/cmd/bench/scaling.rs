//! `shufflenet bench --scaling`: one thread against `--threads N` at each
//! resolution, and next to them what the machine gives N independent workers at
//! the same moments: N one-thread sessions, each on its own OS thread, running
//! their inferences at the same time ("side by side"). Their throughput against
//! one session alone is the ceiling no split of one inference can pass on this
//! machine now (a shared host's other guests, big and little cores, a memory bus
//! that one core already fills); the N-thread speedup is printed against it.
//!
//! The three run in turn, in blocks, so each round's three measurements see the
//! same machine; the ratios are paired by round (see [`paired_quartiles`]).

use super::{interleaved, paired_quartiles, timed, Bench, Measurement, Settings, Timed};
use crate::{json, CliError, CliResult};
use shufflenet::model::Model;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;

/// Runs per bench and round, the first untimed: a thread pool idle during the
/// other benches' runs starts its block cold, which that run absorbs, so the timed
/// runs show back-to-back inference.
const BLOCK: usize = 4;

/// One-thread sessions that run one inference each at the same time, each on its
/// own OS thread (started per run; the start is not timed).
struct SideBySide<T> {
    benches: Vec<T>,
}

/// When the threads of a [`SideBySide`] run may start: `None` until all are
/// spawned, then whether all were.
type Start = (Mutex<Option<bool>>, Condvar);

/// Waits for `start`; `Ok(false)` when the run was called off.
fn wait(start: &Start) -> Result<bool, CliError> {
    let (lock, ready) = start;
    let poisoned = |_| CliError::Failed("side-by-side start lock poisoned".into());
    let mut go = lock.lock().map_err(poisoned)?;
    while go.is_none() {
        go = ready.wait(go).map_err(poisoned)?;
    }
    Ok(*go == Some(true))
}

/// Releases the waiting threads: all run (`true`) or none does.
fn release(start: &Start, all: bool) -> Result<(), CliError> {
    let (lock, ready) = start;
    *lock
        .lock()
        .map_err(|_| CliError::Failed("side-by-side start lock poisoned".into()))? = Some(all);
    ready.notify_all();
    Ok(())
}

impl<T: Timed + Send> Timed for SideBySide<T> {
    /// The mean of the sessions' run times.
    fn time(&mut self) -> Result<f64, CliError> {
        let n = self.benches.len() as f64;
        let start: Start = (Mutex::new(None), Condvar::new());
        let start = &start;
        let times = thread::scope(|scope| {
            let spawned: Vec<_> = self
                .benches
                .iter_mut()
                .enumerate()
                .map(|(i, b)| {
                    thread::Builder::new()
                        .name(format!("side-by-side-{i}"))
                        .spawn_scoped(scope, move || match wait(start)? {
                            true => b.time(),
                            false => Ok(f64::NAN),
                        })
                })
                .collect();
            let all = spawned.iter().all(Result::is_ok);
            let released = release(start, all);
            let mut times = Vec::with_capacity(spawned.len());
            for s in spawned {
                let handle = s.map_err(|e| CliError::Failed(format!("starting a thread: {e}")))?;
                let t = handle
                    .join()
                    .map_err(|_| CliError::Failed("a side-by-side session panicked".into()))?;
                times.push(t?);
            }
            released.map(|()| times)
        })?;
        Ok(times.iter().sum::<f64>() / n)
    }
}

/// One thread, `s.threads` threads and `s.threads` one-thread sessions side by
/// side, interleaved, at each resolution: the medians, the speedup (ratio of the
/// medians), the paired speedup (median over rounds of the ratio within a round,
/// which cancels the machine's slower drifts), the paired ceiling (N times one
/// session's time over the side-by-side time: the throughput of N independent
/// sessions against one) and the paired share of it the N threads reach.
pub(super) fn run(model: &Arc<Model>, s: &Settings) -> CliResult {
    let n = s.threads;
    if n < 2 {
        return Err(CliError::Usage(
            "--scaling compares one thread with --threads N, N >= 2".into(),
        ));
    }
    if !s.json {
        out!(
            "{} ({} kernels), 1 vs {n} threads, median of {} interleaved runs; \
             ceiling: {n} one-thread sessions side by side against one",
            model.program().description,
            kernels::dispatch::isa(),
            s.runs
        );
        out!(
            "{:>10} {:>9} {:>12} {:>12} {:>8} {:>8} {:>13}  {:>12} {:>8} {:>6}",
            "resolution",
            "MFLOPs",
            "1 thread ms",
            format!("{n} threads ms"),
            "speedup",
            "paired",
            "(quartiles)",
            "side by side",
            "ceiling",
            "of it"
        );
    }
    for &(h, w) in &s.resolutions {
        let mut benches = [
            Bench::with_threads(model.clone(), h, w, s, 1)?,
            Bench::new(model.clone(), h, w, s)?,
        ];
        let mut side = SideBySide {
            benches: (0..n)
                .map(|_| Bench::with_threads(model.clone(), h, w, s, 1))
                .collect::<Result<_, _>>()?,
        };
        let label = format!("{h}x{w}");
        let mut all = timed(&mut benches);
        all.push(&mut side);
        let times = interleaved(&mut all, &label, (s.warmup, s.runs), (BLOCK, 1))?;
        let mflops = benches[0].mflops;
        let [one, many, beside] =
            [0, 1, 2].map(|i| Measurement::from_times(mflops, times.runs[i].clone()));
        let speedup = one.median_ms / many.median_ms;
        let [q1, paired, q3] = paired_quartiles(&times.rounds[0], &times.rounds[1]);
        // Per round: n * t(1) / t(side by side), and speedup / ceiling =
        // t(side by side) / (n * t(n threads)).
        let nf = n as f64;
        let ceiling = paired_quartiles(&times.rounds[0], &times.rounds[2]).map(|r| r * nf);
        let of_it = paired_quartiles(&times.rounds[2], &times.rounds[1])[1] / nf;
        if s.json {
            out!(
                "{}",
                json::object(&[
                    ("resolution", json::string(&label)),
                    ("mflops", json::number(one.mflops)),
                    ("median_ms_1", json::number(one.median_ms)),
                    ("median_ms_n", json::number(many.median_ms)),
                    ("median_ms_side_by_side", json::number(beside.median_ms)),
                    ("speedup", json::number(speedup)),
                    ("paired_speedup", json::number(paired)),
                    ("paired_speedup_quartiles", json::numbers(&[q1, q3])),
                    ("paired_ceiling", json::number(ceiling[1])),
                    (
                        "paired_ceiling_quartiles",
                        json::numbers(&[ceiling[0], ceiling[2]])
                    ),
                    ("paired_share_of_ceiling", json::number(of_it)),
                    ("runs", s.runs.to_string()),
                    ("threads", n.to_string()),
                    ("isa", json::string(kernels::dispatch::isa())),
                ])
            );
        } else {
            out!(
                "{:>10} {:>9.1} {:>12.3} {:>12.3} {:>8.2} {:>8.2} {:>13}  {:>12.3} {:>8.2} {:>5.0}%",
                label,
                one.mflops,
                one.median_ms,
                many.median_ms,
                speedup,
                paired,
                format!("({q1:.2} - {q3:.2})"),
                beside.median_ms,
                ceiling[1],
                100.0 * of_it
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{SideBySide, Timed};
    use crate::CliError;
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use std::time::{Duration, Instant};

    /// A run that reports `ms`, after waiting (up to a few seconds) until
    /// `running` counts all `n` runs started: `overlapped` says whether it saw them.
    struct Fake<'a> {
        ms: f64,
        n: usize,
        running: &'a AtomicUsize,
        overlapped: bool,
    }

    impl Timed for Fake<'_> {
        fn time(&mut self) -> Result<f64, CliError> {
            self.running.fetch_add(1, SeqCst);
            let t = Instant::now();
            while self.running.load(SeqCst) < self.n && t.elapsed() < Duration::from_secs(5) {
                std::thread::yield_now();
            }
            self.overlapped = self.running.load(SeqCst) >= self.n;
            Ok(self.ms)
        }
    }

    #[test]
    fn side_by_side_runs_all_at_once_and_reports_their_mean() {
        let running = AtomicUsize::new(0);
        let fake = |ms| Fake {
            ms,
            n: 3,
            running: &running,
            overlapped: false,
        };
        let mut side = SideBySide {
            benches: vec![fake(1.0), fake(2.0), fake(6.0)],
        };
        assert_eq!(side.time().ok(), Some(3.0));
        assert!(side.benches.iter().all(|f| f.overlapped));
        assert_eq!(running.load(SeqCst), 3);
    }
}
