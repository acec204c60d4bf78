//! `shufflenet bench`: latency per resolution (median and min of timed runs after a
//! warm-up), with progress on stderr. `--compare` runs 0.5x, 1x and 2x (g = 3)
//! interleaved at each resolution and prints the paper's Table 8 view: the speedup
//! between model sizes next to their FLOP ratio, and the efficiency ratio
//! E = GFLOP/s(0.5x) / GFLOP/s(2x). `--scaling` runs one thread and `--threads N`
//! interleaved and prints the speedup against the machine's ceiling
//! ([`scaling`]). `--profile` adds the time per stage
//! ([`super::profile`]); with `--compare`, each model's share of it per kernel
//! class, side by side.

mod scaling;

use super::profile::{self, Class};
use super::progress::Progress;
use super::{median, model_path, parse, quartiles};
use crate::{args, json, load, CliError, CliResult};
use shufflenet::complexity::step_macs;
use shufflenet::model::Model;
use shufflenet::session::{Session, SessionOptions};
use shufflenet::{family, plan};
use std::sync::Arc;
use std::time::Instant;

/// Timings of one model at one resolution.
#[derive(Clone, Debug)]
struct Measurement {
    /// Multiply-adds, millions.
    mflops: f64,
    /// Median latency.
    median_ms: f64,
    /// Fastest run.
    min_ms: f64,
}

impl Measurement {
    /// Useful GFLOP/s at the median (2 FLOPs per multiply-add).
    fn gflops(&self) -> f64 {
        2.0 * self.mflops / self.median_ms
    }

    fn from_times(mflops: f64, mut times: Vec<f64>) -> Measurement {
        let median_ms = median(&mut times);
        Measurement {
            mflops,
            median_ms,
            // Sorted by `median`.
            min_ms: times.first().copied().unwrap_or(f64::NAN),
        }
    }
}

/// A session with its input and output buffers.
struct Bench {
    session: Session,
    input: Vec<f32>,
    output: Vec<f32>,
    mflops: f64,
}

impl Bench {
    fn new(model: Arc<Model>, h: usize, w: usize, s: &Settings) -> Result<Bench, CliError> {
        Bench::with_threads(model, h, w, s, s.threads)
    }

    fn with_threads(
        model: Arc<Model>,
        h: usize,
        w: usize,
        s: &Settings,
        threads: usize,
    ) -> Result<Bench, CliError> {
        let opts = SessionOptions {
            threads,
            stream: s.stream,
            pipeline_min_bytes: if s.pipeline {
                s.pipeline_kib.saturating_mul(1024)
            } else {
                usize::MAX
            },
            pipeline_segments: s.segments,
            band_bytes: s.band_kib.saturating_mul(1024),
            split_in_place_min_bytes: s.split_kib.saturating_mul(1024),
            ..Default::default()
        };
        let session = Session::new(model, h, w, opts)?;
        let plan = session.plan();
        let macs: u64 = session
            .program()
            .steps
            .iter()
            .zip(&plan.shapes)
            .map(|(s, sh)| step_macs(s, sh))
            .sum();
        let input = (0..session.input_len())
            .map(|i| ((i * 2_654_435_761) % 1000) as f32 / 500.0 - 1.0)
            .collect();
        let output = vec![0.0; session.output_len()];
        Ok(Bench {
            session,
            input,
            output,
            mflops: macs as f64 / 1e6,
        })
    }
}

/// What [`interleaved`] times, one run at a time.
trait Timed {
    /// One timed run, in milliseconds.
    fn time(&mut self) -> Result<f64, CliError>;
}

impl Timed for Bench {
    fn time(&mut self) -> Result<f64, CliError> {
        let t = Instant::now();
        self.session.run(&self.input, &mut self.output)?;
        Ok(t.elapsed().as_secs_f64() * 1e3)
    }
}

/// `benches` as [`interleaved`] takes them.
fn timed(benches: &mut [Bench]) -> Vec<&mut dyn Timed> {
    benches.iter_mut().map(|b| b as &mut dyn Timed).collect()
}

/// Timed runs of benches run in turn.
struct Timings {
    /// Per bench, every timed run (ms), in order.
    runs: Vec<Vec<f64>>,
    /// Per bench, the mean of its timed runs in each round that timed runs of
    /// every bench (the same rounds for all, so `rounds[a][r]` and `rounds[b][r]`
    /// were measured back to back).
    rounds: Vec<Vec<f64>>,
}

/// Runs the benches in turn, `block` runs of one before the next (so all see the
/// same machine load), the first `untimed` of each block not counted, until each
/// has `warmup + runs` counted runs, and returns the timed runs of each with
/// their per-round means ([`Timings`]; pair them with [`paired_quartiles`]).
fn interleaved(
    benches: &mut [&mut dyn Timed],
    label: &str,
    (warmup, runs): (usize, usize),
    (block, untimed): (usize, usize),
) -> Result<Timings, CliError> {
    let skip = untimed.min(block.saturating_sub(1));
    let counted = block.max(1) - skip;
    let n_rounds = (warmup + runs).div_ceil(counted);
    let mut times = vec![Vec::with_capacity(runs); benches.len()];
    let mut rounds = vec![Vec::with_capacity(n_rounds); benches.len()];
    let mut progress = Progress::new();
    for i in 0..n_rounds {
        let mut means = Vec::with_capacity(benches.len());
        for (b, t) in benches.iter_mut().zip(&mut times) {
            let before = t.len();
            for j in 0..skip + counted {
                let ms = b.time()?;
                if j >= skip && i * counted + j - skip >= warmup && t.len() < runs {
                    t.push(ms);
                }
            }
            let this_round = &t[before..];
            means.push(this_round.iter().sum::<f64>() / this_round.len() as f64);
        }
        if means.iter().all(|m| m.is_finite()) {
            for (r, m) in rounds.iter_mut().zip(means) {
                r.push(m);
            }
        }
        progress.update(&format!("{label}: round {}/{n_rounds}", i + 1));
    }
    Ok(Timings {
        runs: times,
        rounds,
    })
}

/// Lower quartile, median and upper quartile over rounds of `a[r] / b[r]` (NaN
/// when there is no round). The median is the paired ratio: the ratio of two
/// benches measured back to back in each round, so a change of machine speed
/// between rounds (another guest's load, a clock change) cancels, where the ratio
/// of two medians of runs taken across such changes does not; the quartiles show
/// how far the rounds spread.
fn paired_quartiles(a: &[f64], b: &[f64]) -> [f64; 3] {
    let mut ratios: Vec<f64> = a.iter().zip(b).map(|(x, y)| x / y).collect();
    quartiles(&mut ratios)
}

/// Runs per model and round of `--compare`, and the untimed first ones of each.
/// A block shows a model run back to back, as an app runs it. With one run per
/// model in turn, every run started with the other models' weights in the caches
/// (2x's 21 MB) and the small model paid its weights from DRAM (Zen 4, 0.5x g = 3
/// at 224x224: 1.30 ms one run at a time against 1.02 in blocks; E 0.68 against
/// 0.88). A few untimed runs are not enough either: after 2x's block, 0.5x at
/// 224x224 recovers over about eight runs. Medians by position in blocks of 24
/// (10 blocks each, 2026-11-30, Zen 4): runs 1-8 1.046, 0.986, 0.958, 0.944,
/// 0.908, 0.883, 0.868, 0.891 ms, runs 9-16 0.865 (median), runs 17-24 0.861;
/// with four untimed runs (runs 5-8 timed, 0.891) E at 224x224 read 3% low. At
/// 480x640 runs 5-8 were 0.7% slower than runs 9-16 (5.178 / 5.143 ms), at
/// 720x1280 no slower; 1x and 2x are at their speed from the third run on.
const COMPARE_BLOCK: (usize, usize) = (16, 8);

struct Settings {
    resolutions: Vec<(usize, usize)>,
    runs: usize,
    warmup: usize,
    threads: usize,
    stream: bool,
    pipeline: bool,
    segments: bool,
    band_kib: usize,
    pipeline_kib: usize,
    split_kib: usize,
    json: bool,
    profile: bool,
}

/// Runs the command.
pub fn run(argv: &[String]) -> CliResult {
    let a = parse(
        argv,
        &[
            "json",
            "compare",
            "scaling",
            "no-stream",
            "no-pipeline",
            "segments",
            "profile",
        ],
        &[
            "resolutions",
            "runs",
            "warmup",
            "threads",
            "band-kib",
            "pipeline-kib",
            "split-kib",
        ],
    )?;
    let s = Settings {
        resolutions: args::resolutions(
            a.value("resolutions").unwrap_or("224x224,480x640,720x1280"),
        )
        .map_err(CliError::Usage)?,
        runs: a.parsed("runs", 20).map_err(CliError::Usage)?,
        warmup: a.parsed("warmup", 3).map_err(CliError::Usage)?,
        threads: super::threads(&a)?,
        stream: !a.flag("no-stream"),
        pipeline: !a.flag("no-pipeline"),
        segments: a.flag("segments"),
        band_kib: a
            .parsed("band-kib", shufflenet::exec::DEFAULT_BAND_BYTES >> 10)
            .map_err(CliError::Usage)?,
        pipeline_kib: a
            .parsed(
                "pipeline-kib",
                shufflenet::exec::DEFAULT_PIPELINE_MIN_BYTES >> 10,
            )
            .map_err(CliError::Usage)?,
        split_kib: a
            .parsed(
                "split-kib",
                shufflenet::exec::SPLIT_IN_PLACE_MIN_BYTES >> 10,
            )
            .map_err(CliError::Usage)?,
        json: a.flag("json"),
        profile: a.flag("profile"),
    };
    if s.runs == 0 {
        return Err(CliError::Usage("--runs must be at least 1".into()));
    }
    if s.profile && a.flag("scaling") {
        return Err(CliError::Usage(
            "--profile profiles at one thread count: not with --scaling".into(),
        ));
    }
    if a.flag("compare") {
        if !a.positional.is_empty() {
            return Err(CliError::Usage(
                "--compare uses the built-in 0.5x, 1x and 2x g=3 models".into(),
            ));
        }
        return compare(&s);
    }
    let model = load::model(model_path(&a)?)?;
    if a.flag("scaling") {
        return scaling::run(&model, &s);
    }
    if !s.json {
        out!(
            "{} ({} kernels, {} thread(s))",
            model.program().description,
            kernels::dispatch::isa(),
            s.threads
        );
        out!(
            "{:>10} {:>9} {:>10} {:>10} {:>9}",
            "resolution",
            "MFLOPs",
            "median ms",
            "min ms",
            "GFLOP/s"
        );
    }
    for &(h, w) in &s.resolutions {
        let mut b = [Bench::new(model.clone(), h, w, &s)?];
        let label = format!("{h}x{w}");
        let times = interleaved(&mut timed(&mut b), &label, (s.warmup, s.runs), (1, 0))?.runs;
        let m = Measurement::from_times(b[0].mflops, times.into_iter().next().unwrap_or_default());
        if s.json {
            out!(
                "{}",
                json::object(&[
                    ("resolution", json::string(&format!("{h}x{w}"))),
                    ("mflops", json::number(m.mflops)),
                    ("median_ms", json::number(m.median_ms)),
                    ("min_ms", json::number(m.min_ms)),
                    ("gflops", json::number(m.gflops())),
                    ("runs", s.runs.to_string()),
                    ("threads", s.threads.to_string()),
                    ("isa", json::string(kernels::dispatch::isa())),
                ])
            );
        } else {
            out!(
                "{:>10} {:>9.1} {:>10.3} {:>10.3} {:>9.2}",
                format!("{h}x{w}"),
                m.mflops,
                m.median_ms,
                m.min_ms,
                m.gflops()
            );
        }
        if s.profile {
            let Bench {
                session,
                input,
                output,
                ..
            } = &mut b[0];
            let label = format!("{h}x{w}");
            super::profile::profile(session, input, output, &label, (0, s.runs), s.json)?;
        }
    }
    Ok(())
}

/// The paper-style comparison of 0.5x, 1x and 2x (g = 3).
fn compare(s: &Settings) -> CliResult {
    const SCALES: [f32; 3] = [0.5, 1.0, 2.0];
    let models: Vec<Arc<Model>> = SCALES
        .iter()
        .map(|&scale| {
            let graph = family::build(3, scale, family::DEFAULT_SEED)?;
            Ok(Arc::new(Model::from_lowered(&plan::lower(&graph)?)?))
        })
        .collect::<Result<_, CliError>>()?;
    if !s.json {
        out!(
            "ShuffleNet v1 g=3, {} kernels, {} thread(s), median of {} interleaved runs",
            kernels::dispatch::isa(),
            s.threads,
            s.runs
        );
        out!(
            "{:>10} {:>5} {:>8} {:>9} {:>8}   {:>9} {:>9}",
            "resolution",
            "scale",
            "MFLOPs",
            "median ms",
            "GFLOP/s",
            "FLOP x",
            "time x"
        );
    }
    for &(h, w) in &s.resolutions {
        let mut benches = models
            .iter()
            .map(|m| Bench::new(m.clone(), h, w, s))
            .collect::<Result<Vec<_>, _>>()?;
        let times = interleaved(
            &mut timed(&mut benches),
            &format!("{h}x{w}"),
            (s.warmup, s.runs),
            COMPARE_BLOCK,
        )?;
        let ms: Vec<Measurement> = benches
            .iter()
            .zip(times.runs)
            .map(|(b, t)| Measurement::from_times(b.mflops, t))
            .collect();
        let e = ms[0].gflops() / ms[2].gflops();
        // Per round, GFLOP/s(0.5x) / GFLOP/s(2x) = (t(2x) / t(0.5x)) * (F(0.5x) / F(2x)).
        let [e_q1, e_paired, e_q3] = paired_quartiles(&times.rounds[2], &times.rounds[0])
            .map(|r| r * ms[0].mflops / ms[2].mflops);
        for (i, m) in ms.iter().enumerate() {
            let (flop_x, time_x) = if i == 0 {
                (f64::NAN, f64::NAN)
            } else {
                (
                    m.mflops / ms[i - 1].mflops,
                    m.median_ms / ms[i - 1].median_ms,
                )
            };
            if s.json {
                out!(
                    "{}",
                    json::object(&[
                        ("resolution", json::string(&format!("{h}x{w}"))),
                        ("scale", json::number(SCALES[i] as f64)),
                        ("mflops", json::number(m.mflops)),
                        ("median_ms", json::number(m.median_ms)),
                        ("min_ms", json::number(m.min_ms)),
                        ("gflops", json::number(m.gflops())),
                        ("flop_ratio", json::number(flop_x)),
                        ("time_ratio", json::number(time_x)),
                        ("efficiency_ratio", json::number(e)),
                        ("efficiency_ratio_paired", json::number(e_paired)),
                        (
                            "efficiency_ratio_paired_quartiles",
                            json::numbers(&[e_q1, e_q3]),
                        ),
                        ("paired_rounds", times.rounds[0].len().to_string()),
                        ("runs", s.runs.to_string()),
                        ("threads", s.threads.to_string()),
                    ])
                );
            } else {
                let ratio = |x: f64| {
                    if x.is_nan() {
                        String::new()
                    } else {
                        format!("{x:.2}")
                    }
                };
                out!(
                    "{:>10} {:>5} {:>8.1} {:>9.3} {:>8.2}   {:>9} {:>9}",
                    format!("{h}x{w}"),
                    format!("{}x", SCALES[i]),
                    m.mflops,
                    m.median_ms,
                    m.gflops(),
                    ratio(flop_x),
                    ratio(time_x)
                );
            }
        }
        if !s.json {
            out!("{:>10} E = GFLOP/s(0.5x) / GFLOP/s(2x) = {e:.2}", "");
            out!(
                "{:>10} E paired by round (median over {} rounds) = {e_paired:.2} \
                 (quartiles {e_q1:.2} - {e_q3:.2})",
                "",
                times.rounds[0].len()
            );
        }
        if s.profile {
            compare_profiles(&mut benches, &SCALES, &format!("{h}x{w}"), s)?;
        }
    }
    Ok(())
}

/// Rounds of `--compare --profile`.
const PROFILE_ROUNDS: usize = 5;

/// `--compare --profile`: per model, each kernel class's share of the stages' sum
/// ([`profile::Class`]), the median over [`PROFILE_ROUNDS`] rounds in which the
/// models are profiled in turn (so the shares of a round come from the same
/// machine speed; times across rounds would not compare on a host that changes
/// speed). Each model's block starts with untimed runs, as in `--compare`.
fn compare_profiles(benches: &mut [Bench], scales: &[f32], label: &str, s: &Settings) -> CliResult {
    let per_round = s.runs.div_ceil(PROFILE_ROUNDS);
    let mut shares =
        vec![vec![Vec::with_capacity(PROFILE_ROUNDS); Class::ALL.len()]; benches.len()];
    for _ in 0..PROFILE_ROUNDS {
        for (b, model) in benches.iter_mut().zip(&mut shares) {
            let runs = (COMPARE_BLOCK.1, per_round);
            let rows = profile::collect(&mut b.session, &b.input, &mut b.output, label, runs)?;
            for (class, share) in model.iter_mut().zip(profile::class_shares(&rows)) {
                class.push(share);
            }
        }
    }
    // Per class present in some model, each model's median share.
    let mut table = Vec::new();
    for (c, class) in Class::ALL.into_iter().enumerate() {
        let v: Vec<f64> = shares.iter_mut().map(|m| median(&mut m[c])).collect();
        if v.iter().any(|&x| x > 0.0) {
            table.push((class, v));
        }
    }
    if s.json {
        let classes: Vec<(&str, String)> = table
            .iter()
            .map(|(c, v)| (c.key(), json::numbers(v)))
            .collect();
        out!(
            "{}",
            json::object(&[
                ("resolution", json::string(label)),
                ("profile_rounds", PROFILE_ROUNDS.to_string()),
                ("profile_runs", per_round.to_string()),
                ("class_shares", json::object(&classes)),
            ])
        );
        return Ok(());
    }
    out!(
        "{:>10} share of the stages' sum by kernel class (per class the median over \
         {PROFILE_ROUNDS} rounds of {per_round} profiled runs per model, so a column need not \
         add up to 100%):",
        ""
    );
    let heads: Vec<String> = scales
        .iter()
        .map(|x| format!("{:>7}", format!("{x}x")))
        .collect();
    out!("{:>10} {:<30} {}", "", "", heads.join(" "));
    for (class, v) in &table {
        let cells: Vec<String> = v.iter().map(|x| format!("{:>6.1}%", 100.0 * x)).collect();
        out!("{:>10} {:<30} {}", "", class.label(), cells.join(" "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{median, paired_quartiles};

    /// The median of the round ratios.
    fn paired_ratio(a: &[f64], b: &[f64]) -> f64 {
        paired_quartiles(a, b)[1]
    }

    #[test]
    fn a_paired_ratio_cancels_a_machine_that_halves_its_speed_between_rounds() {
        // Bench a takes 3x bench b in every round; the machine runs at full speed
        // in rounds 0, 2, 3 and at half speed in rounds 1 and 4 (every time doubles).
        let speed = [1.0, 2.0, 1.0, 1.0, 2.0];
        let a: Vec<f64> = speed.iter().map(|s| 3.0 * s).collect();
        let b: Vec<f64> = speed.to_vec();
        assert_eq!(paired_ratio(&a, &b), 3.0);
        // Phases that fall on the benches differently: a was slow in three rounds, b
        // in two. The ratio of the medians reads 6 (a's median is a slow run, b's a
        // fast one); the paired ratio still reads 3 in three rounds of five.
        let a2 = [3.0, 6.0, 6.0, 3.0, 6.0];
        let b2 = [1.0, 2.0, 2.0, 1.0, 1.0];
        assert_eq!(median(&mut a2.clone()) / median(&mut b2.clone()), 6.0);
        assert_eq!(paired_ratio(&a2, &b2), 3.0);
    }

    #[test]
    fn a_paired_ratio_is_the_median_of_the_round_ratios() {
        assert_eq!(paired_ratio(&[1.0, 8.0, 3.0], &[1.0, 2.0, 1.0]), 3.0);
        // One outlier round does not move it.
        assert_eq!(paired_ratio(&[2.0, 2.0, 100.0], &[1.0, 1.0, 1.0]), 2.0);
        assert!(paired_ratio(&[], &[]).is_nan());
    }

    #[test]
    fn paired_quartiles_bracket_the_round_ratios() {
        // Round ratios 5, 1, 4, 2, 3 (sorted 1..=5): positions 1, 2, 3.
        let a = [10.0, 1.0, 8.0, 2.0, 9.0];
        let b = [2.0, 1.0, 2.0, 1.0, 3.0];
        assert_eq!(paired_quartiles(&a, &b), [2.0, 3.0, 4.0]);
        // Eight rounds: positions 2, 4, 6 of the sorted ratios 1..=8.
        let a8: Vec<f64> = [8, 3, 6, 1, 5, 2, 7, 4].map(f64::from).to_vec();
        assert_eq!(paired_quartiles(&a8, &[1.0; 8]), [3.0, 5.0, 7.0]);
        // One round: all three are its ratio; none: NaN.
        assert_eq!(paired_quartiles(&[6.0], &[2.0]), [3.0; 3]);
        assert!(paired_quartiles(&[], &[]).iter().all(|q| q.is_nan()));
    }
}
