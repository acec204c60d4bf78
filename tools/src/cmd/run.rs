//! `shufflenet run`: one inference on a `.npy` input; writes the output `.npy` and
//! prints the top-5 classes.

use super::parse;
use crate::{CliError, CliResult};
use shufflenet::graph::Layout;
use shufflenet::npy;
use shufflenet::session::{Session, SessionOptions};
use std::path::Path;

/// Indices of the `k` largest values, largest first.
pub fn top_k(v: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[b].total_cmp(&v[a]).then(a.cmp(&b)));
    idx.truncate(k);
    idx
}

/// Runs the command.
pub fn run(argv: &[String]) -> CliResult {
    let a = parse(argv, &[], &["input", "output", "threads"])?;
    let [path] = a.positional.as_slice() else {
        return Err(CliError::Usage("run takes one model file".into()));
    };
    let threads = super::threads(&a)?;
    let model = crate::load::model(Some(path))?;
    let x = npy::read(Path::new(a.required("input").map_err(CliError::Usage)?))?;
    let c = model.program().input.channels;
    let layout = model.program().input.layout;
    let (h, w) = match (layout, x.shape.as_slice()) {
        (Layout::Nchw, [1, ch, h, w] | [ch, h, w]) if *ch == c => (*h, *w),
        (Layout::Nhwc, [1, h, w, ch] | [h, w, ch]) if *ch == c => (*h, *w),
        _ => {
            return Err(CliError::Failed(format!(
                "input shape {:?} does not fit the model's {layout} input with {c} channels",
                x.shape
            )))
        }
    };
    let mut session = Session::new(
        model,
        h,
        w,
        SessionOptions {
            threads,
            ..Default::default()
        },
    )?;
    let mut out = vec![0.0; session.output_len()];
    session.run(&x.data, &mut out)?;
    if let Some(o) = a.value("output") {
        npy::write(Path::new(o), &[1, out.len()], &out)?;
    }
    let top: Vec<String> = top_k(&out, 5)
        .iter()
        .map(|&i| format!("{i} ({:.4})", out[i]))
        .collect();
    out!("top-5: {}", top.join(", "));
    Ok(())
}
