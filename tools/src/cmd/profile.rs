//! `shufflenet bench --profile`: wall time per schedule stage (a step on whole
//! tensors, a band-streamed unit or stem, or the whole row pipeline, whose steps
//! interleave), the median over the profiled runs, with MFLOPs, GFLOP/s and its
//! share of the stages' sum; then the same summed by kernel. Run it on the phone
//! to see where the time goes there (the instruction counts under qemu say nothing
//! about memory stalls). `bench --compare --profile` sets the models' shares by
//! kernel class ([`Class`]) side by side.

use super::median;
use super::plan::shape;
use super::progress::Progress;
use crate::{json, CliResult};
use shufflenet::complexity::step_macs;
use shufflenet::exec::StageTimes;
use shufflenet::session::Session;

/// A coarse kind of stage, to compare where models of different sizes spend
/// their time (the stages differ between them: one streams what another runs on
/// whole tensors).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// A stage with a pointwise conv (a streamed unit runs its depthwise conv and
    /// shortcut pool too).
    Gemm,
    /// The stem: a direct conv, a max pool (ShuffleNet's only one follows it).
    Stem,
    /// Depthwise convs, average pools and other window or elementwise kernels on
    /// whole tensors.
    Window,
    /// Global pool, fully connected layer, softmax.
    Classifier,
    /// The row pipeline: every step in one stage.
    Pipeline,
}

impl Class {
    /// Every class, in the order the table prints them.
    pub const ALL: [Class; 5] = [
        Class::Gemm,
        Class::Stem,
        Class::Window,
        Class::Classifier,
        Class::Pipeline,
    ];

    /// The row label of the comparison table.
    pub fn label(self) -> &'static str {
        match self {
            Class::Gemm => "pointwise and streamed units",
            Class::Stem => "stem (conv, max pool)",
            Class::Window => "depthwise, pools (whole)",
            Class::Classifier => "classifier",
            Class::Pipeline => "row pipeline (all steps)",
        }
    }

    /// The JSON key.
    pub fn key(self) -> &'static str {
        match self {
            Class::Gemm => "pointwise_units",
            Class::Stem => "stem",
            Class::Window => "depthwise_pools",
            Class::Classifier => "classifier",
            Class::Pipeline => "pipeline",
        }
    }

    /// The class of a stage running `kernels` (its steps' kernel names).
    fn of(kernels: &[&str], pipeline: bool) -> Class {
        let has = |names: &[&str]| kernels.iter().any(|k| names.contains(k));
        if pipeline {
            Class::Pipeline
        } else if kernels.iter().any(|k| k.starts_with("pointwise")) {
            Class::Gemm
        } else if has(&["conv2d", "maxpool"]) {
            Class::Stem
        } else if has(&["gap_fc", "global_avg_pool", "fc", "softmax"]) {
            Class::Classifier
        } else {
            Class::Window
        }
    }
}

/// One stage of the schedule as the profile shows it.
pub struct Row {
    /// First and last program step.
    steps: (usize, usize),
    /// The steps' kernels, joined by `+`.
    kernels: String,
    /// The stage's class.
    class: Class,
    /// Band-streamed (or the row pipeline).
    streamed: bool,
    /// Input shape of the first step, output shape of the last.
    shapes: (String, String),
    /// Multiply-adds, millions.
    mflops: f64,
    /// Median wall time, microseconds.
    median_us: f64,
}

/// GFLOP/s of `mflops` multiply-adds in `us` microseconds (2 FLOPs each).
fn gflops(mflops: f64, us: f64) -> f64 {
    2.0 * mflops / us * 1e3
}

/// The stages of `session`'s schedule, times not yet filled in.
fn rows(session: &Session) -> Vec<Row> {
    let (plan, program) = (session.plan(), session.program());
    let all: Vec<usize> = (0..program.steps.len()).collect();
    let stages: Vec<(&[usize], bool)> = if plan.pipeline.is_some() {
        vec![(&all[..], true)]
    } else {
        plan.stages
            .iter()
            .map(|s| (s.steps(), s.steps().len() > 1))
            .collect()
    };
    stages
        .into_iter()
        .filter_map(|(steps, streamed)| {
            let (&first, &last) = (steps.first()?, steps.last()?);
            let step = |i: usize| &program.steps[i];
            let names: Vec<&str> = steps.iter().map(|&i| step(i).kernel()).collect();
            let pipeline = steps.len() == all.len() && plan.pipeline.is_some();
            let kernels = if pipeline {
                format!("row pipeline of all {} steps", steps.len())
            } else {
                names.join("+")
            };
            let macs: u64 = steps
                .iter()
                .map(|&i| step_macs(step(i), &plan.shapes[i]))
                .sum();
            Some(Row {
                steps: (first, last),
                kernels,
                class: Class::of(&names, pipeline),
                streamed,
                shapes: (
                    shape(plan, step(first).reads()[0]),
                    shape(plan, step(last).writes()),
                ),
                mflops: macs as f64 / 1e6,
                median_us: 0.0,
            })
        })
        .collect()
}

/// Profiles `runs` runs (after `warmup`) of `session` and prints the table (or one
/// JSON line) for resolution `label`.
pub fn profile(
    session: &mut Session,
    input: &[f32],
    output: &mut [f32],
    label: &str,
    (warmup, runs): (usize, usize),
    json_out: bool,
) -> CliResult {
    let rows = collect(session, input, output, label, (warmup, runs))?;
    print(&rows, label, runs, json_out)
}

/// Each class's share of the stages' sum of `rows` (in [`Class::ALL`] order).
pub fn class_shares(rows: &[Row]) -> [f64; Class::ALL.len()] {
    let total: f64 = rows.iter().map(|r| r.median_us).sum();
    Class::ALL.map(|c| {
        // (A fold from +0: an empty f64 sum is -0.)
        let t = rows
            .iter()
            .filter(|r| r.class == c)
            .fold(0.0, |t, r| t + r.median_us);
        t / total
    })
}

/// The stages of `session`'s schedule with the median time of each over `runs`
/// profiled runs (after `warmup`); progress on stderr under `label`.
pub fn collect(
    session: &mut Session,
    input: &[f32],
    output: &mut [f32],
    label: &str,
    (warmup, runs): (usize, usize),
) -> Result<Vec<Row>, crate::CliError> {
    let mut rows = rows(session);
    let mut samples = vec![Vec::with_capacity(runs); rows.len()];
    let mut times = StageTimes::with_capacity(rows.len());
    let mut progress = Progress::new();
    for i in 0..warmup + runs {
        session.run_profiled(input, output, &mut times)?;
        if i >= warmup {
            for (s, t) in samples.iter_mut().zip(&times) {
                s.push(t.as_secs_f64() * 1e6);
            }
        }
        progress.update(&format!("{label} profile: run {}/{}", i + 1, warmup + runs));
    }
    for (r, s) in rows.iter_mut().zip(&mut samples) {
        r.median_us = median(s);
    }
    Ok(rows)
}

/// Prints the profile `rows` of resolution `label` (`runs` profiled runs): the
/// table, or one JSON line.
fn print(rows: &[Row], label: &str, runs: usize, json_out: bool) -> CliResult {
    let total: f64 = rows.iter().map(|r| r.median_us).sum();
    // Per kernel combination, in order of first appearance.
    let mut kinds: Vec<(&str, f64, f64)> = Vec::new();
    for r in rows {
        match kinds.iter_mut().find(|k| k.0 == r.kernels) {
            Some(k) => (k.1, k.2) = (k.1 + r.mflops, k.2 + r.median_us),
            None => kinds.push((&r.kernels, r.mflops, r.median_us)),
        }
    }
    if json_out {
        let stages: Vec<String> = rows
            .iter()
            .map(|r| {
                json::object(&[
                    (
                        "steps",
                        json::string(&format!("{}-{}", r.steps.0, r.steps.1)),
                    ),
                    ("kernels", json::string(&r.kernels)),
                    ("streamed", r.streamed.to_string()),
                    ("input", json::string(&r.shapes.0)),
                    ("output", json::string(&r.shapes.1)),
                    ("mflops", json::number(r.mflops)),
                    ("median_us", json::number(r.median_us)),
                ])
            })
            .collect();
        let by_kernel: Vec<String> = kinds
            .iter()
            .map(|&(k, mflops, us)| {
                json::object(&[
                    ("kernels", json::string(k)),
                    ("mflops", json::number(mflops)),
                    ("median_us", json::number(us)),
                ])
            })
            .collect();
        out!(
            "{}",
            json::object(&[
                ("resolution", json::string(label)),
                ("profile_runs", runs.to_string()),
                ("stages", format!("[{}]", stages.join(", "))),
                ("by_kernel", format!("[{}]", by_kernel.join(", "))),
            ])
        );
        return Ok(());
    }
    out!(
        "{label}: per stage, median of {runs} profiled runs (the stages sum to {:.3} ms)",
        total / 1e3
    );
    out!(
        "{:>7}  {:<44} {:>30} {:>8} {:>10} {:>6} {:>8}",
        "steps",
        "kernels",
        "shapes",
        "MFLOPs",
        "median us",
        "share",
        "GFLOP/s"
    );
    for r in rows {
        let kernels = if r.streamed {
            format!("{} (streamed)", r.kernels)
        } else {
            r.kernels.clone()
        };
        out!(
            "{:>7}  {kernels:<44} {:>30} {:>8.2} {:>10.1} {:>5.1}% {:>8.1}",
            format!("{}-{}", r.steps.0, r.steps.1),
            format!("{} -> {}", r.shapes.0, r.shapes.1),
            r.mflops,
            r.median_us,
            100.0 * r.median_us / total,
            gflops(r.mflops, r.median_us)
        );
    }
    out!("{label}: by kernel");
    for &(k, mflops, us) in &kinds {
        out!(
            "         {k:<44} {:>30} {mflops:>8.2} {us:>10.1} {:>5.1}% {:>8.1}",
            "",
            100.0 * us / total,
            gflops(mflops, us)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_fall_into_the_classes_of_their_kernels() {
        let of = |k: &[&str]| Class::of(k, false);
        let unit = ["pointwise", "dwconv3x3s1", "pointwise+residual"];
        assert_eq!(of(&unit), Class::Gemm);
        assert_eq!(
            of(&["pointwise", "dwconv3x3s2", "pointwise", "avgpool"]),
            Class::Gemm
        );
        assert_eq!(of(&["conv2d", "maxpool"]), Class::Stem);
        assert_eq!(of(&["maxpool"]), Class::Stem);
        assert_eq!(of(&["dwconv3x3s1"]), Class::Window);
        assert_eq!(of(&["avgpool"]), Class::Window);
        assert_eq!(of(&["gap_fc"]), Class::Classifier);
        assert_eq!(of(&["global_avg_pool"]), Class::Classifier);
        assert_eq!(Class::of(&unit, true), Class::Pipeline);
    }

    #[test]
    fn class_shares_split_the_stages_sum() {
        let row = |class, median_us| Row {
            steps: (0, 0),
            kernels: String::new(),
            class,
            streamed: false,
            shapes: (String::new(), String::new()),
            mflops: 0.0,
            median_us,
        };
        let rows = [
            row(Class::Gemm, 50.0),
            row(Class::Stem, 20.0),
            row(Class::Gemm, 20.0),
            row(Class::Classifier, 10.0),
        ];
        let shares = class_shares(&rows);
        assert_eq!(shares, [0.7, 0.2, 0.0, 0.1, 0.0]);
        assert!(shares[2].is_sign_positive(), "an absent class reads +0");
    }
}
