//! `shufflenet plan`: the fused op list with shapes, MFLOPs and arena offsets, and
//! the arena summary.

use super::{model_path, parse};
use crate::{json, load, CliResult};
use shufflenet::complexity::step_macs;
use shufflenet::exec::{ExecPlan, DEFAULT_MAX_ARENA_BYTES};
use shufflenet::program::View;

fn shape(plan: &ExecPlan, v: View) -> String {
    let (h, w) = plan.buffer_hw[v.buffer as usize];
    format!("{}x{h}x{w}", v.channels)
}

fn offset_bytes(plan: &ExecPlan, v: View) -> usize {
    plan.range(v).start * 4
}

/// Runs the command.
pub fn run(argv: &[String]) -> CliResult {
    let a = parse(argv, &["json"], &["resolution"])?;
    let model = load::model(model_path(&a)?)?;
    let (h, w) = load::resolution(a.value("resolution"), &model)?;
    let program = model.program();
    let plan = ExecPlan::new(program, h, w, DEFAULT_MAX_ARENA_BYTES)?;
    let (peak, lower, naive) = (
        plan.layout.peak * 4,
        plan.layout.lower_bound * 4,
        plan.naive_floats * 4,
    );
    let mut ops = Vec::new();
    for (i, (step, sh)) in program.steps.iter().zip(&plan.shapes).enumerate() {
        let input = step.reads()[0];
        let output = step.writes();
        let mflops = step_macs(step, sh) as f64 / 1e6;
        if a.flag("json") {
            ops.push(json::object(&[
                ("index", i.to_string()),
                ("kernel", json::string(step.kernel())),
                ("input", json::string(&shape(&plan, input))),
                ("output", json::string(&shape(&plan, output))),
                ("mflops", json::number(mflops)),
                ("input_offset", offset_bytes(&plan, input).to_string()),
                ("output_offset", offset_bytes(&plan, output).to_string()),
            ]));
        } else {
            println!(
                "{i:>3} {:<20} {:>14} -> {:<14} {mflops:>8.2} MFLOPs  in @{:<10} out @{}",
                step.kernel(),
                shape(&plan, input),
                shape(&plan, output),
                offset_bytes(&plan, input),
                offset_bytes(&plan, output)
            );
        }
    }
    if a.flag("json") {
        println!(
            "{}",
            json::object(&[
                ("model", json::string(&program.description)),
                ("resolution", json::string(&format!("{h}x{w}"))),
                ("ops", format!("[{}]", ops.join(", "))),
                ("peak_bytes", peak.to_string()),
                ("lower_bound_bytes", lower.to_string()),
                ("naive_bytes", naive.to_string()),
            ])
        );
    } else {
        let mb = |b: usize| b as f64 / (1 << 20) as f64;
        println!(
            "{} at {h}x{w}: {} fused ops",
            program.description,
            program.steps.len()
        );
        println!("arena peak   {peak} bytes ({:.2} MiB)", mb(peak));
        println!("lower bound  {lower} bytes ({:.2} MiB)", mb(lower));
        println!(
            "naive total  {naive} bytes ({:.2} MiB, every op output its own buffer)",
            mb(naive)
        );
    }
    Ok(())
}
