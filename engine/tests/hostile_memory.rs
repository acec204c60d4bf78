//! The memory limit holds for the whole of session creation, whatever the thread
//! count: a session with many worker threads warms them up on arenas from a stock
//! that fits under `max_arena_bytes`, instead of one arena per worker at once.

use shufflenet::model::Model;
use shufflenet::session::{Session, SessionOptions};
use shufflenet::{family, plan};
use std::sync::Arc;

#[path = "hostile_alloc.rs"]
mod hostile_alloc;
use hostile_alloc::peak_live_bytes;

#[test]
fn many_threads_warm_up_within_the_memory_limit() {
    let graph = family::build(3, 0.25, 5).unwrap();
    let model = Arc::new(Model::from_lowered(&plan::lower(&graph).unwrap()).unwrap());
    let (h, w) = (768, 768);
    // Whole tensors: an arena of several MiB.
    let base = SessionOptions {
        stream: false,
        ..SessionOptions::default()
    };
    let one = Session::new(model.clone(), h, w, base).unwrap();
    let arena = one.plan().layout.peak * 4;
    let image = one.input_len() * 4;
    assert!(
        arena >= 4 << 20,
        "arena of {arena} bytes: pick a larger size"
    );
    // Room for the session's arena, the warm-up image and one more arena: two
    // workers warm up at a time, the other six wait.
    let limit = arena + image + arena;
    let opts = SessionOptions {
        threads: 8,
        max_arena_bytes: limit,
        ..base
    };
    let (s, peak) = peak_live_bytes(|| Session::new(model.clone(), h, w, opts));
    let mut s = s.unwrap();
    // Besides the arenas and the image: the kernels' per-thread scratch pools, the
    // worker threads' bookkeeping, the plan. One arena per worker (the old warm-up)
    // would be 8 more arenas.
    let slack = arena / 2;
    assert!(
        peak <= limit + slack,
        "creating the session held {peak} bytes at once; limit {limit}, arena {arena}"
    );
    // It runs like a single-threaded session.
    let x: Vec<f32> = (0..s.input_len())
        .map(|i| (i % 17) as f32 / 8.0 - 1.0)
        .collect();
    let (mut y, mut y1) = (vec![0.0; 1000], vec![0.0; 1000]);
    s.run(&x, &mut y).unwrap();
    let mut one = one;
    one.run(&x, &mut y1).unwrap();
    assert_eq!(y, y1);
}

/// The watcher's peak (here: this binary's tests all hold its lock while they
/// measure, so none counts another's allocations).
#[test]
fn the_peak_counts_every_thread() {
    let ((), peak) = peak_live_bytes(|| {
        let held = vec![1u8; 2 << 20];
        std::thread::scope(|s| {
            s.spawn(|| drop(std::hint::black_box(vec![2u8; 3 << 20])));
        });
        drop(held);
    });
    assert!(peak >= 5 << 20, "{peak}");
}
