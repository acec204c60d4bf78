//! Sessions: bad arguments are errors, never panics; odd sizes run or are refused.

use shufflenet::exec::SessionError;
use shufflenet::model::Model;
use shufflenet::session::{Session, SessionOptions};
use shufflenet::{family, plan, Error};
use std::sync::Arc;

fn model(g: usize, s: f32) -> Arc<Model> {
    let graph = family::build(g, s, 2).unwrap();
    Arc::new(Model::from_lowered(&plan::lower(&graph).unwrap()).unwrap())
}

#[test]
fn bad_arguments_are_errors() {
    let m = model(1, 0.25);
    let opts = SessionOptions::default();
    let session = |h, w, o| Session::new(m.clone(), h, w, o);
    assert!(matches!(
        session(0, 10, opts),
        Err(Error::Session(SessionError::Size { .. }))
    ));
    // Too small for conv1 + maxpool + three stride-2 stages: the error names the step.
    match session(1, 1, opts) {
        Ok(_) => {}
        Err(e) => assert!(e.to_string().contains("1x1"), "{e}"),
    }
    let small = SessionOptions {
        max_arena_bytes: 1 << 20,
        ..opts
    };
    assert!(matches!(
        session(512, 512, small),
        Err(Error::Session(SessionError::ArenaTooLarge { .. }))
    ));
    assert!(matches!(
        session(usize::MAX / 2, 3, opts),
        Err(Error::Session(
            SessionError::Size { .. } | SessionError::ArenaTooLarge { .. }
        ))
    ));
    assert!(matches!(
        session(64, 64, SessionOptions { threads: 0, ..opts }),
        Err(Error::Session(SessionError::Threads(0)))
    ));
    let mut s = session(64, 64, opts).unwrap();
    let mut out = vec![0.0; 1000];
    assert!(matches!(
        s.run(&[0.0; 10], &mut out),
        Err(Error::Session(SessionError::InputLength { .. }))
    ));
    let x = vec![0.0; s.input_len()];
    assert!(matches!(
        s.run(&x, &mut out[..999]),
        Err(Error::Session(SessionError::OutputCapacity { .. }))
    ));
    s.run(&x, &mut out).unwrap();
}

#[test]
fn odd_sizes_run_or_refuse_cleanly() {
    let m = model(2, 0.25);
    for (h, w) in [
        (1, 1),
        (1, 100_000),
        (33, 1),
        (7, 9),
        (31, 47),
        (2, 2),
        (40, 3),
    ] {
        match Session::new(m.clone(), h, w, SessionOptions::default()) {
            Ok(mut s) => {
                let x = vec![0.5; s.input_len()];
                let mut out = vec![0.0; s.output_len()];
                s.run(&x, &mut out).unwrap();
                assert!(out.iter().all(|v| v.is_finite()), "{h}x{w}");
            }
            Err(e) => assert!(matches!(e, Error::Session(_)), "{h}x{w}: {e}"),
        }
    }
}

#[test]
fn model_is_shareable_and_session_sendable() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<Model>();
    send::<Session>();
}
