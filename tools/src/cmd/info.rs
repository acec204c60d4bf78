//! `shufflenet info`: architecture, parameters and MFLOPs of a model.

use super::{model_path, parse};
use crate::{json, load, CliResult};
use shufflenet::complexity::{program_params, step_macs};
use shufflenet::exec::ExecPlan;

/// Runs the command.
pub fn run(argv: &[String]) -> CliResult {
    let a = parse(argv, &["json"], &["resolution"])?;
    let model = load::model(model_path(&a)?)?;
    let (h, w) = load::resolution(a.value("resolution"), &model)?;
    let program = model.program();
    let plan = ExecPlan::new(program, h, w, &Default::default())?;
    let macs: u64 = program
        .steps
        .iter()
        .zip(&plan.shapes)
        .map(|(s, sh)| step_macs(s, sh))
        .sum();
    let params = program_params(program);
    let mflops = macs as f64 / 1e6;
    let input = &program.input;
    let default = input
        .default_size
        .map_or("none".to_string(), |(h, w)| format!("{h}x{w}"));
    if a.flag("json") {
        out!(
            "{}",
            json::object(&[
                ("model", json::string(&program.description)),
                ("resolution", json::string(&format!("{h}x{w}"))),
                ("mflops", json::number(mflops)),
                ("params", params.to_string()),
                ("input_layout", json::string(&input.layout.to_string())),
                ("input_channels", input.channels.to_string()),
                ("default_size", json::string(&default)),
                ("outputs", plan.output_len(program).to_string()),
                ("output_name", json::string(&program.output_name)),
                ("steps", program.steps.len().to_string()),
                ("file_bytes", model.file_bytes().to_string()),
                ("isa", json::string(kernels::dispatch::isa())),
            ])
        );
        return Ok(());
    }
    out!("model       {}", program.description);
    out!(
        "input       {} {} channels, default size {default}",
        input.layout,
        input.channels
    );
    if let Some(p) = &input.preprocess {
        out!("preprocess  (x - {:?}) * {:?}", p.mean, p.scale);
    }
    out!(
        "output      '{}', {} values",
        program.output_name,
        plan.output_len(program)
    );
    out!(
        "parameters  {params} ({:.2} M, BatchNorm folded)",
        params as f64 / 1e6
    );
    out!("complexity  {mflops:.1} MFLOPs (multiply-adds) at {h}x{w}");
    out!("fused ops   {}", program.steps.len());
    out!("file        {} bytes", model.file_bytes());
    out!("kernels     {}", kernels::dispatch::isa());
    Ok(())
}
