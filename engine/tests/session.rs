//! Sessions: bad arguments are errors, never panics; odd sizes run or are refused.

use shufflenet::exec::SessionError;
use shufflenet::model::Model;
use shufflenet::session::{Session, SessionOptions};
use shufflenet::{family, plan, Error};
use std::sync::Arc;

mod common;
use common::session_bits;

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

/// Sessions on 2 and 3 threads (pools that size their parts by the workers'
/// speeds) give bit for bit the one-thread result in every execution mode: whole
/// tensors, streamed chains, the row pipeline in one piece and in segments. The
/// sizes are large enough for the stem's band to keep rows from one band to the
/// next, so the last part of a split call ends inside its last plane.
#[test]
fn threaded_sessions_match_one_thread_in_every_mode() {
    let m = model(3, 0.5);
    // (stream, pipeline, segments)
    let modes = [
        (false, false, false),
        (true, false, false),
        (true, true, false),
        (true, true, true),
    ];
    for (h, w) in [(128, 128), (97, 161)] {
        let x: Vec<f32> = (0..3 * h * w)
            .map(|i| ((i * 37 % 101) as f32) / 50.0 - 1.0)
            .collect();
        for (stream, pipeline, pipeline_segments) in modes {
            let opts = |threads| SessionOptions {
                threads,
                stream,
                band_bytes: 16 << 10,
                pipeline_min_bytes: if pipeline { 0 } else { usize::MAX },
                pipeline_segments,
                ..Default::default()
            };
            // Several runs: the pools learn their workers' speeds as they go.
            let run = |threads| session_bits(&m, (h, w), opts(threads), &x, 4);
            let one = run(1);
            for threads in [2, 3] {
                assert_eq!(
                    run(threads),
                    one,
                    "{h}x{w} stream {stream} pipeline {pipeline} segments {pipeline_segments}: {threads} threads"
                );
            }
        }
    }
}

/// The default options on 2 threads at 480x640, a size where ARM's default plan
/// is the row pipeline (its largest tensor passes the pipeline threshold) and
/// x86-64's runs on whole tensors: the one-thread result, bit for bit.
#[test]
fn default_sessions_on_two_threads_match_one_at_480x640() {
    let m = model(3, 0.5);
    let x: Vec<f32> = (0..3 * 480 * 640)
        .map(|i| ((i * 29 % 97) as f32) / 48.0 - 1.0)
        .collect();
    let run = |threads| {
        let opts = SessionOptions {
            threads,
            ..Default::default()
        };
        session_bits(&m, (480, 640), opts, &x, 1)
    };
    assert_eq!(run(2), run(1));
}
