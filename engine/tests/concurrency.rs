//! One model shared by eight sessions on eight threads: every result is bit for bit
//! the result of the same input run on one thread. `Model` is `Send + Sync` and
//! `Session` is `Send` (checked at compile time).

use shufflenet::model::Model;
use shufflenet::session::{Session, SessionOptions};
use shufflenet::{family, plan};
use std::sync::{Arc, Barrier};
use std::thread;

// Compile-time: a model can be shared between threads, a session moved to one.
const _: fn() = || {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<Model>();
    send_sync::<Arc<Model>>();
    send::<Session>();
};

const THREADS: usize = 8;
/// Inferences per thread: 100 natively; fewer under qemu (aarch64 test runs), where
/// every instruction is emulated.
const RUNS: usize = if cfg!(target_arch = "aarch64") {
    25
} else {
    100
};

/// Each thread binds its own input size, so the eight arenas differ too.
fn size_of(thread: usize) -> (usize, usize) {
    (16 + 8 * (thread % 3), 16 + 8 * (thread % 4))
}

/// A different input for every (thread, run).
fn input(thread: usize, run: usize, n: usize) -> Vec<f32> {
    let mut s = ((thread * 1000 + run) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s >> 12;
            s ^= s << 25;
            s ^= s >> 27;
            ((s.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
        })
        .collect()
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|f| f.to_bits()).collect()
}

/// Runs thread `t`'s inputs on a session of its own and returns every output.
fn run_all(model: &Arc<Model>, t: usize, start: Option<&Barrier>) -> Vec<Vec<u32>> {
    let (h, w) = size_of(t);
    let mut s = Session::new(model.clone(), h, w, SessionOptions::default()).unwrap();
    let mut y = vec![0.0; s.output_len()];
    if let Some(b) = start {
        b.wait();
    }
    (0..RUNS)
        .map(|r| {
            s.run(&input(t, r, s.input_len()), &mut y).unwrap();
            bits(&y)
        })
        .collect()
}

#[test]
fn eight_sessions_on_eight_threads_match_one_thread() {
    let graph = family::build(3, 0.25, 11).unwrap();
    let model = Arc::new(Model::from_lowered(&plan::lower(&graph).unwrap()).unwrap());

    let alone: Vec<Vec<Vec<u32>>> = (0..THREADS).map(|t| run_all(&model, t, None)).collect();

    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let model = Arc::clone(&model);
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || run_all(&model, t, Some(&barrier)))
        })
        .collect();
    let together: Vec<Vec<Vec<u32>>> = handles.into_iter().map(|h| h.join().unwrap()).collect();

    for t in 0..THREADS {
        for r in 0..RUNS {
            assert_eq!(
                together[t][r], alone[t][r],
                "thread {t}, run {r}: differs from the single-threaded result"
            );
        }
        // The inputs differ, so the outputs must too (the test would prove nothing
        // if every run produced the same logits).
        assert_ne!(together[t][0], together[t][1]);
    }
    // Only the test's own references remain: no session kept the model alive.
    assert_eq!(Arc::strong_count(&model), 1);
}

#[test]
fn sessions_move_between_threads() {
    let graph = family::build(1, 0.25, 12).unwrap();
    let model = Arc::new(Model::from_lowered(&plan::lower(&graph).unwrap()).unwrap());
    let mut s = Session::new(model.clone(), 24, 24, SessionOptions::default()).unwrap();
    let x = input(0, 0, s.input_len());
    let mut here = vec![0.0; s.output_len()];
    s.run(&x, &mut here).unwrap();
    // Created here, run there, handed back, run here again: same bits each time.
    let (s, there) = thread::spawn(move || {
        let mut s = s;
        let mut y = vec![0.0; s.output_len()];
        s.run(&x, &mut y).unwrap();
        (s, y)
    })
    .join()
    .unwrap();
    let mut s = s;
    let x = input(0, 0, s.input_len());
    let mut again = vec![0.0; s.output_len()];
    s.run(&x, &mut again).unwrap();
    assert_eq!(bits(&here), bits(&there));
    assert_eq!(bits(&here), bits(&again));
}
