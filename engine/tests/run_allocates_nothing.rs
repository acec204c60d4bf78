//! `Session::run` makes no heap allocation, on one thread or several, streamed or
//! not. A counting global allocator sees every thread; this binary holds this one
//! test so nothing else allocates while it counts.

use shufflenet::model::Model;
use shufflenet::session::{Session, SessionOptions};
use shufflenet::{family, plan};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static COUNT: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator; only adds an atomic counter.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            COUNT.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            COUNT.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

#[test]
fn running_allocates_nothing() {
    let graph = family::build(3, 0.5, 2).unwrap();
    let model = Arc::new(Model::from_lowered(&plan::lower(&graph).unwrap()).unwrap());
    // (threads, stream, row pipeline, one pipeline segment per thread)
    let configs = [
        (1, false, false, false),
        (1, true, false, false),
        (2, false, false, false),
        (2, true, false, false),
        (1, true, true, false),
        (2, true, true, false),
        (2, true, true, true),
        (3, true, true, true),
        (4, false, false, false),
    ];
    // Sessions stay alive to the end: a dropped session's worker threads exit
    // asynchronously, and their thread-local destructors would be counted.
    let mut keep = Vec::new();
    for (threads, stream, pipeline, pipeline_segments) in configs {
        let opts = SessionOptions {
            threads,
            stream,
            band_bytes: 8 << 10,
            pipeline_min_bytes: if pipeline { 0 } else { usize::MAX },
            pipeline_segments,
            ..Default::default()
        };
        let mut session = Session::new(model.clone(), 96, 80, opts).unwrap();
        let x = vec![0.25; session.input_len()];
        let mut out = vec![0.0; session.output_len()];
        // Session::new has sized the kernels' per-thread scratch: count from the
        // very first run.
        COUNT.store(0, Ordering::SeqCst);
        COUNTING.store(true, Ordering::SeqCst);
        for _ in 0..5 {
            session.run(&x, &mut out).unwrap();
        }
        COUNTING.store(false, Ordering::SeqCst);
        let n = COUNT.load(Ordering::SeqCst);
        assert_eq!(
            n, 0,
            "{threads} thread(s), stream {stream}, pipeline {pipeline}, segments {pipeline_segments}: run allocated {n} times"
        );
        assert!(out.iter().all(|v| v.is_finite()));
        keep.push(session);
    }
}
