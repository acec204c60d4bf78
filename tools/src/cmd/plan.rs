//! `shufflenet plan`: the fused op list with shapes, MFLOPs, arena offsets and band
//! streaming, and the arena summary.

use super::{model_path, parse};
use crate::{json, load, CliError, CliResult};
use shufflenet::complexity::step_macs;
use shufflenet::exec::{
    ExecOptions, ExecPlan, Stage, DEFAULT_BAND_BYTES, DEFAULT_PIPELINE_MIN_BYTES,
    SPLIT_IN_PLACE_MIN_BYTES,
};
use shufflenet::program::View;

/// A view's shape as `CxHxW`.
pub(super) fn shape(plan: &ExecPlan, v: View) -> String {
    let (h, w) = plan.buffer_hw[v.buffer as usize];
    format!("{}x{h}x{w}", v.channels)
}

/// Where a view lives: its arena offset in bytes, or `None` for a tensor that only
/// exists band by band.
fn offset(plan: &ExecPlan, v: View) -> Option<usize> {
    plan.lifetimes[v.buffer as usize].map(|_| plan.range(v).start * 4)
}

/// Runs the command.
pub fn run(argv: &[String]) -> CliResult {
    let a = parse(
        argv,
        &["json", "no-stream"],
        &[
            "resolution",
            "band-kib",
            "segments",
            "threads",
            "pipeline-kib",
            "split-kib",
        ],
    )?;
    let model = load::model(model_path(&a)?)?;
    let (h, w) = load::resolution(a.value("resolution"), &model)?;
    let program = model.program();
    let band_kib: usize = a
        .parsed("band-kib", DEFAULT_BAND_BYTES >> 10)
        .map_err(CliError::Usage)?;
    let pipeline_kib: usize = a
        .parsed("pipeline-kib", DEFAULT_PIPELINE_MIN_BYTES >> 10)
        .map_err(CliError::Usage)?;
    let opts = ExecOptions {
        stream: !a.flag("no-stream"),
        band_bytes: band_kib.saturating_mul(1024),
        pipeline_min_bytes: pipeline_kib.saturating_mul(1024),
        segments: a.parsed("segments", 1).map_err(CliError::Usage)?,
        threads: super::threads(&a)?,
        split_in_place_min_bytes: a
            .parsed("split-kib", SPLIT_IN_PLACE_MIN_BYTES >> 10)
            .map_err(CliError::Usage)?
            .saturating_mul(1024),
        ..Default::default()
    };
    let plan = ExecPlan::new(program, h, w, &opts)?;
    let whole = ExecPlan::new(
        program,
        h,
        w,
        &ExecOptions {
            stream: false,
            ..opts
        },
    )?;
    let peak = plan.layout.peak * 4;
    let lower = plan.layout.lower_bound * 4;
    let naive = plan.naive_floats * 4;
    let unstreamed = whole.layout.peak * 4;
    let mut band = vec![String::new(); program.steps.len()];
    for stage in &plan.stages {
        let (steps, rows, parts): (&[usize], usize, usize) = match stage {
            Stage::Unit(u) => (&u.steps, u.rows, u.parts),
            Stage::Down(d) => (&d.steps, d.unit.rows, d.unit.parts),
            Stage::Stem(s) => (&s.steps, s.rows, 1),
            Stage::Step(_) => continue,
        };
        for &s in steps {
            band[s] = match parts {
                1 => format!("band of {rows} rows"),
                n => format!("band of {rows} rows, {n} row parts at once"),
            };
        }
    }
    let mut ops = Vec::new();
    for (i, (step, sh)) in program.steps.iter().zip(&plan.shapes).enumerate() {
        let input = step.reads()[0];
        let output = step.writes();
        let mflops = step_macs(step, sh) as f64 / 1e6;
        let at = |v: View| offset(&plan, v);
        if a.flag("json") {
            let num = |o: Option<usize>| o.map_or("null".to_string(), |b| b.to_string());
            ops.push(json::object(&[
                ("index", i.to_string()),
                ("kernel", json::string(step.kernel())),
                ("input", json::string(&shape(&plan, input))),
                ("output", json::string(&shape(&plan, output))),
                ("mflops", json::number(mflops)),
                ("input_offset", num(at(input))),
                ("output_offset", num(at(output))),
                ("streamed", json::string(&band[i])),
            ]));
        } else {
            let show = |o: Option<usize>| o.map_or("band".to_string(), |b| format!("@{b}"));
            out!(
                "{i:>3} {:<20} {:>14} -> {:<14} {mflops:>8.2} MFLOPs  in {:<11} out {:<11} {}",
                step.kernel(),
                shape(&plan, input),
                shape(&plan, output),
                show(at(input)),
                show(at(output)),
                band[i]
            );
        }
    }
    if a.flag("json") {
        out!(
            "{}",
            json::object(&[
                ("model", json::string(&program.description)),
                ("resolution", json::string(&format!("{h}x{w}"))),
                ("ops", format!("[{}]", ops.join(", "))),
                ("peak_bytes", peak.to_string()),
                ("lower_bound_bytes", lower.to_string()),
                ("naive_bytes", naive.to_string()),
                ("unstreamed_peak_bytes", unstreamed.to_string()),
            ])
        );
    } else {
        let mb = |b: usize| b as f64 / (1 << 20) as f64;
        out!(
            "{} at {h}x{w}: {} fused ops",
            program.description,
            program.steps.len()
        );
        out!("arena peak   {peak} bytes ({:.2} MiB)", mb(peak));
        out!("lower bound  {lower} bytes ({:.2} MiB)", mb(lower));
        out!(
            "naive total  {naive} bytes ({:.2} MiB, every op output its own buffer)",
            mb(naive)
        );
        out!(
            "unstreamed   {unstreamed} bytes ({:.2} MiB, the same plan without band streaming)",
            mb(unstreamed)
        );
    }
    Ok(())
}
