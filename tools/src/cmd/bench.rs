//! `shufflenet bench`: latency per resolution (median and min of timed runs after a
//! warm-up), with progress on stderr.

use super::{model_path, parse};
use crate::{args, json, load, CliError, CliResult};
use shufflenet::complexity::step_macs;
use shufflenet::session::{Session, SessionOptions};
use std::io::Write;
use std::time::Instant;

/// One measured resolution.
#[derive(Clone, Debug)]
pub struct Measurement {
    /// Multiply-adds, millions.
    pub mflops: f64,
    /// Median latency.
    pub median_ms: f64,
    /// Fastest run.
    pub min_ms: f64,
}

impl Measurement {
    /// Useful GFLOP/s at the median (2 FLOPs per multiply-add).
    pub fn gflops(&self) -> f64 {
        2.0 * self.mflops / self.median_ms
    }
}

/// Times `session` `runs` times after `warmup` untimed runs; reports progress.
pub fn measure(
    session: &mut Session,
    label: &str,
    warmup: usize,
    runs: usize,
) -> Result<(f64, f64), CliError> {
    let x: Vec<f32> = (0..session.input_len())
        .map(|i| ((i * 2_654_435_761) % 1000) as f32 / 500.0 - 1.0)
        .collect();
    let mut out = vec![0.0; session.output_len()];
    let mut times = Vec::with_capacity(runs);
    for i in 0..warmup + runs {
        let t = Instant::now();
        session.run(&x, &mut out)?;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        if i >= warmup {
            times.push(ms);
        }
        eprint!("\r{label}: run {}/{}   ", i + 1, warmup + runs);
        let _ = std::io::stderr().flush();
    }
    eprint!("\r{:<60}\r", "");
    times.sort_by(f64::total_cmp);
    Ok((times[times.len() / 2], times[0]))
}

/// Runs the command.
pub fn run(argv: &[String]) -> CliResult {
    let a = parse(
        argv,
        &["json"],
        &["resolutions", "runs", "warmup", "threads"],
    )?;
    let res = args::resolutions(a.value("resolutions").unwrap_or("224x224,480x640,720x1280"))
        .map_err(CliError::Usage)?;
    let runs: usize = a.parsed("runs", 20).map_err(CliError::Usage)?;
    let warmup: usize = a.parsed("warmup", 3).map_err(CliError::Usage)?;
    let threads: usize = a.parsed("threads", 1).map_err(CliError::Usage)?;
    if runs == 0 {
        return Err(CliError::Usage("--runs must be at least 1".into()));
    }
    let model = load::model(model_path(&a)?)?;
    if !a.flag("json") {
        println!(
            "{} ({} kernels, {threads} thread(s))",
            model.program().description,
            kernels::dispatch::isa()
        );
        println!(
            "{:>10} {:>9} {:>10} {:>10} {:>9}",
            "resolution", "MFLOPs", "median ms", "min ms", "GFLOP/s"
        );
    }
    for (h, w) in res {
        let mut session = Session::new(
            model.clone(),
            h,
            w,
            SessionOptions {
                threads,
                ..Default::default()
            },
        )?;
        let plan = session.plan();
        let macs: u64 = session
            .program()
            .steps
            .iter()
            .zip(&plan.shapes)
            .map(|(s, sh)| step_macs(s, sh))
            .sum();
        let (median_ms, min_ms) = measure(&mut session, &format!("{h}x{w}"), warmup, runs)?;
        let m = Measurement {
            mflops: macs as f64 / 1e6,
            median_ms,
            min_ms,
        };
        if a.flag("json") {
            println!(
                "{}",
                json::object(&[
                    ("resolution", json::string(&format!("{h}x{w}"))),
                    ("mflops", json::number(m.mflops)),
                    ("median_ms", json::number(m.median_ms)),
                    ("min_ms", json::number(m.min_ms)),
                    ("gflops", json::number(m.gflops())),
                    ("runs", runs.to_string()),
                    ("threads", threads.to_string()),
                    ("isa", json::string(kernels::dispatch::isa())),
                ])
            );
        } else {
            println!(
                "{:>10} {:>9.1} {:>10.3} {:>10.3} {:>9.2}",
                format!("{h}x{w}"),
                m.mflops,
                m.median_ms,
                m.min_ms,
                m.gflops()
            );
        }
    }
    Ok(())
}
