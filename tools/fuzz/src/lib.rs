//! Shared checks of the fuzz targets: what must hold for every input the engine
//! accepts. A violated property panics, which libFuzzer reports as a crash.

use shufflenet::exec::SessionError;
use shufflenet::model::Model;
use shufflenet::model_file;
use shufflenet::session::{Session, SessionOptions};
use shufflenet::Error;
use std::sync::Arc;

/// Arena limit of the sessions the targets create: small, so that a huge size is
/// refused before anything is allocated and an accepted size runs fast.
pub const FUZZ_ARENA_BYTES: usize = 1 << 20;

/// Session options of the targets: one thread, the fuzz arena limit, and one of
/// the execution modes: `0` the default (streamed bands; the row pipeline only
/// for large tensors, so never at fuzz sizes), `1` whole tensors, `2` one-row
/// bands, `3` the whole-network row pipeline whenever the program is one.
pub fn options(mode: u8) -> SessionOptions {
    let base = SessionOptions {
        threads: 1,
        max_arena_bytes: FUZZ_ARENA_BYTES,
        ..SessionOptions::default()
    };
    match mode % 4 {
        1 => SessionOptions {
            stream: false,
            ..base
        },
        2 => SessionOptions {
            band_bytes: 0,
            ..base
        },
        3 => SessionOptions {
            pipeline_min_bytes: 0,
            ..base
        },
        _ => base,
    }
}

/// Creates a session for `model` at `h x w` with `opts` and runs it on
/// `input_value` everywhere. A size the network refuses is fine; once a session
/// exists, a run with buffers of the right length must succeed, twice, with
/// identical bits.
pub fn run_at(model: &Arc<Model>, h: usize, w: usize, opts: SessionOptions, input_value: f32) {
    let mut s = match Session::new(model.clone(), h, w, opts) {
        Ok(s) => s,
        Err(Error::Session(SessionError::Size { .. } | SessionError::ArenaTooLarge { .. })) => {
            return
        }
        Err(e) => panic!("session {h}x{w}: unexpected error {e}"),
    };
    assert_eq!(s.input_len(), model.program().input.channels * h * w);
    let x = vec![input_value; s.input_len()];
    let mut y = vec![0.0; s.output_len()];
    if let Err(e) = s.run(&x, &mut y) {
        panic!("a validated model failed to run at {h}x{w}: {e}");
    }
    let mut y2 = vec![0.0; s.output_len()];
    s.run(&x, &mut y2).expect("second run");
    let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&y), bits(&y2), "two runs of one session differ");
}

/// Everything a loaded model must support: a copy of its program and tensors that
/// re-encodes, reloads and re-encodes to the same bytes, and sessions at a few small
/// sizes (its default size too, if small).
pub fn exercise(model: Arc<Model>) {
    let lowered = model.to_lowered();
    let bytes = model_file::to_bytes(&lowered).expect("a loaded model re-encodes");
    let again = Model::from_bytes(&bytes).expect("a re-encoded model loads");
    assert_eq!(
        model_file::to_bytes(&again.to_lowered()).expect("re-encodes"),
        bytes,
        "re-encoding is not stable"
    );
    let mut sizes = vec![(1, 1), (5, 3), (16, 16)];
    if let Some((h, w)) = model.program().input.default_size {
        if h.saturating_mul(w) <= 64 * 64 {
            sizes.push((h, w));
        }
    }
    for (h, w) in sizes {
        run_at(&model, h, w, options(0), 0.5);
    }
    // The other execution modes (whole tensors, one-row bands, row pipeline).
    for mode in 1..4 {
        run_at(&model, 16, 16, options(mode), 0.5);
    }
}
