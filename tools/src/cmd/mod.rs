//! One module per subcommand, and `bench --profile`'s table.

pub mod bench;
pub mod convert;
pub mod info;
pub mod plan;
mod profile;
mod progress;
pub mod run;
pub mod synth;

use crate::args::Args;
use crate::CliError;
use shufflenet::session::MAX_THREADS;

/// Parses a subcommand's arguments, mapping errors to usage errors.
pub fn parse(argv: &[String], switches: &[&str], valued: &[&str]) -> Result<Args, CliError> {
    Args::parse(argv, switches, valued).map_err(CliError::Usage)
}

/// At most one positional argument: the model path.
pub fn model_path(a: &Args) -> Result<Option<&str>, CliError> {
    match a.positional.as_slice() {
        [] => Ok(None),
        [p] => Ok(Some(p.as_str())),
        _ => Err(CliError::Usage("expected at most one model file".into())),
    }
}

/// The `--threads` value (default 1), refused as a usage error outside
/// `1..=MAX_THREADS` before any work starts.
pub fn threads(a: &Args) -> Result<usize, CliError> {
    let n = a.parsed("threads", 1usize).map_err(CliError::Usage)?;
    if (1..=MAX_THREADS).contains(&n) {
        Ok(n)
    } else {
        Err(CliError::Usage(format!(
            "--threads must be between 1 and {MAX_THREADS}, got {n}"
        )))
    }
}

/// The median of `v` (the upper one of an even count; NaN when `v` is empty),
/// sorting `v`.
pub fn median(v: &mut [f64]) -> f64 {
    quartiles(v)[1]
}

/// The lower quartile, the median and the upper quartile of `v` (the values at
/// positions `n / 4`, `n / 2` and `3n / 4` of `v` sorted; NaN when `v` is empty),
/// sorting `v`.
pub fn quartiles(v: &mut [f64]) -> [f64; 3] {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    [n / 4, n / 2, 3 * n / 4].map(|i| v.get(i).copied().unwrap_or(f64::NAN))
}
