//! The `shufflenet` command-line program: build, inspect, run and benchmark
//! ShuffleNet v1 models. Run `shufflenet help` for the commands.

/// `println!` for command output: a write error ends the command with an error,
/// and a closed pipe (`shufflenet plan | head`) ends it quietly.
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($t)*).map_err($crate::CliError::from_write)?
    }};
}

mod args;
mod cmd;
mod json;
mod load;

use std::process::ExitCode;

const USAGE: &str = "\
usage: shufflenet <command> [options]

commands:
  synth   --groups G --scale S [--seed N] -o FILE    write a model with synthetic weights
  convert IN.onnx -o FILE                             convert an ONNX model to the engine's file
  info    [FILE] [--resolution HxW] [--json]          architecture, parameters, MFLOPs
  plan    [FILE] [--resolution HxW] [--json] [--no-stream] [--band-kib N] [--segments N]
          [--threads N] [--pipeline-kib N] [--split-kib N]
                                                      the fused op list and the arena
  run     FILE --input IN.npy --output OUT.npy [--threads N]
                                                      one inference; prints the top-5 classes
  bench   [FILE] [--resolutions 224x224,480x640,720x1280] [--runs N] [--warmup N]
          [--threads N] [--json] [--compare] [--scaling] [--no-stream] [--no-pipeline]
          [--segments] [--band-kib N] [--pipeline-kib N] [--split-kib N] [--profile]
                                                      latency per resolution (median, min);
                                                      --compare: 0.5x/1x/2x g=3 side by side
                                                      --scaling: 1 thread vs --threads N, and N
                                                      one-thread sessions side by side (the ceiling)
                                                      --profile: then the time per stage and kernel
                                                      (with --compare: each model's share per
                                                      kernel class, side by side)

FILE is an engine model file or an .onnx file (converted in memory); where FILE is
optional, the built-in default is ShuffleNet 1x (g = 3) with synthetic weights.
--pipeline-kib N: run the whole network as a row pipeline from a largest tensor of
N KiB (0: always), and whenever whole tensors would pass the arena limit; default
2048 on ARM, 1048576 on x86-64 (there the pipeline measured slower: in practice
only over the limit); on x86-64 a session splitting its calls over --threads N > 1
(no --segments) uses 4x that.
--band-kib N: cache budget of a streamed unit's band buffers (default 256 on ARM,
1024 on x86-64).
--split-kib N: with --threads N > 1 on x86-64, split a stride-1 unit by rows over
the threads from an input tensor of N KiB (default 8192); smaller ones run on
whole tensors.";

/// A failure of the command line itself (print the usage) or of the work.
#[derive(Debug)]
pub enum CliError {
    /// Bad arguments.
    Usage(String),
    /// The command failed.
    Failed(String),
    /// Standard output was closed by its reader.
    Closed,
}

impl CliError {
    /// The error of a failed write to standard output.
    fn from_write(e: std::io::Error) -> CliError {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            CliError::Closed
        } else {
            CliError::Failed(format!("writing the output: {e}"))
        }
    }
}

impl<E: std::error::Error> From<E> for CliError {
    fn from(e: E) -> Self {
        CliError::Failed(e.to_string())
    }
}

/// Result of a command.
pub type CliResult = Result<(), CliError>;

fn help() -> CliResult {
    out!("{USAGE}");
    Ok(())
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let Some((command, rest)) = argv.split_first() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let result = match command.as_str() {
        "synth" => cmd::synth::run(rest),
        "convert" => cmd::convert::run(rest),
        "info" => cmd::info::run(rest),
        "plan" => cmd::plan::run(rest),
        "run" => cmd::run::run(rest),
        "bench" => cmd::bench::run(rest),
        "help" | "--help" | "-h" => help(),
        other => Err(CliError::Usage(format!("unknown command '{other}'"))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError::Usage(e)) => {
            eprintln!("shufflenet: {e}\n\n{USAGE}");
            ExitCode::from(2)
        }
        Err(CliError::Failed(e)) => {
            eprintln!("shufflenet: {e}");
            ExitCode::FAILURE
        }
        Err(CliError::Closed) => ExitCode::SUCCESS,
    }
}
