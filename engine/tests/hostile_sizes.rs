//! Hostile sizes and lengths: every absurd input size, thread count, arena limit,
//! input and output length gives an error or a correct result, never an overflow,
//! a panic or an abort; sizes whose arena is over the limit are refused before
//! anything large is allocated.

use shufflenet::exec::{SessionError, DEFAULT_MAX_ARENA_BYTES};
use shufflenet::graph::Graph;
use shufflenet::model::Model;
use shufflenet::session::{Session, SessionOptions};
use shufflenet::{family, plan, reference, Error};
use std::sync::{Arc, OnceLock};

#[path = "hostile_alloc.rs"]
mod hostile_alloc;
use hostile_alloc::largest_allocation;

/// ShuffleNet 0.25x (g = 3) and its graph (for the reference executor).
fn net() -> &'static (Graph, Arc<Model>) {
    static NET: OnceLock<(Graph, Arc<Model>)> = OnceLock::new();
    NET.get_or_init(|| {
        let graph = family::build(3, 0.25, 7).unwrap();
        let model = Arc::new(Model::from_lowered(&plan::lower(&graph).unwrap()).unwrap());
        (graph, model)
    })
}

fn opts() -> SessionOptions {
    SessionOptions::default()
}

fn input(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2_654_435_761) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s % 2000) as f32 / 1000.0 - 1.0
        })
        .collect()
}

/// Runs a session of `h x w` and checks it against the reference executor on the
/// unfused graph; the session must accept exactly the sizes the graph accepts.
fn check_against_reference(h: usize, w: usize) {
    let (graph, model) = net();
    let graph_ok = graph.shapes(h, w).is_ok();
    match Session::new(model.clone(), h, w, opts()) {
        Ok(mut s) => {
            assert!(
                graph_ok,
                "{h}x{w}: the session accepts what the graph refuses"
            );
            let x = input(s.input_len(), (h * 31 + w) as u32);
            let mut got = vec![0.0; s.output_len()];
            s.run(&x, &mut got).unwrap();
            let want = reference::run(graph, h, w, &x).unwrap().data;
            let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let err = got
                .iter()
                .zip(&want)
                .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(
                scale > 0.0 && err <= 1e-4 * scale,
                "{h}x{w}: max error {err} vs max logit {scale}"
            );
        }
        Err(Error::Session(SessionError::Size { .. })) => {
            assert!(!graph_ok, "{h}x{w}: the graph runs, the session refuses")
        }
        Err(e) => panic!("{h}x{w}: {e}"),
    }
}

#[test]
fn empty_sizes_are_size_errors() {
    for (h, w) in [(0, 0), (0, 1), (1, 0), (0, usize::MAX), (usize::MAX, 0)] {
        let r = Session::new(net().1.clone(), h, w, opts());
        assert!(
            matches!(r, Err(Error::Session(SessionError::Size { .. }))),
            "{h}x{w}: {r:?}"
        );
    }
}

#[test]
fn tiny_sizes_run_correctly() {
    // conv1 (3x3, stride 2, pad 1) and every later stride-2 window accept a 1-pixel
    // input: the whole network runs at 1x1.
    for (h, w) in [
        (1, 1),
        (1, 2),
        (2, 1),
        (2, 2),
        (3, 3),
        (7, 9),
        (33, 1),
        (1, 33),
    ] {
        check_against_reference(h, w);
    }
}

#[test]
fn one_pixel_by_100000_runs_correctly() {
    check_against_reference(1, 100_000);
    check_against_reference(100_000, 1);
}

/// Sizes whose `H * W`, `C * H * W` or arena size overflows `usize` (or nearly does),
/// and sizes merely far too large for the default 1 GiB arena limit: each is a
/// `Size` or `ArenaTooLarge` error, and nothing larger than 64 KiB is allocated on
/// the way (the shapes and the layout are computed, the arena never is).
#[test]
fn overflowing_and_huge_sizes_are_refused_before_allocating() {
    let max = usize::MAX;
    // Sizes written for 64-bit targets; on a 32-bit one they saturate to usize::MAX.
    let big = |v: u64| usize::try_from(v).unwrap_or(max);
    let sizes = [
        (max, max),
        (max, 1),
        (1, max),
        (max / 2, 3),
        (big(1 << 32), big(1 << 32)),
        (big(1 << 31), big(1 << 31)), // H * W fits, C * H * W does not
        (big(3_037_000_500), big(3_037_000_500)), // just above sqrt(2^63)
        (max / 3 + 1, 3),
        (big(1 << 40), 1),
        (20_000, 20_000), // fits in usize, needs far more than 1 GiB
        (1, 1 << 28),
    ];
    for (h, w) in sizes {
        let (r, largest) = largest_allocation(|| Session::new(net().1.clone(), h, w, opts()));
        match r {
            Err(Error::Session(SessionError::Size { .. })) => {}
            Err(Error::Session(SessionError::ArenaTooLarge { needed, limit, .. })) => {
                assert!(needed > limit && limit == DEFAULT_MAX_ARENA_BYTES as u64)
            }
            other => panic!("{h}x{w}: {other:?}"),
        }
        assert!(largest <= 64 << 10, "{h}x{w}: allocated {largest} bytes");
    }
}

/// Found by the `session` fuzz target: with the whole-network row pipeline, the
/// arena holds only a few rows, so it did not bound the height, and planning the
/// pipeline (a dry run of its row schedule) took minutes for a 2^31 x 27 input
/// before the session refused it (its input image is over the limit). The
/// pipeline is now not planned for an input image above the limit.
#[test]
fn fuzz_timeout_huge_heights_are_refused_without_planning_the_pipeline() {
    let tall = |h: u64| usize::try_from(h).unwrap_or(usize::MAX);
    let model = net().1.clone();
    for (h, w, limit) in [
        (tall((1 << 31) - 1), 27, 1 << 20),
        (tall(1 << 40), 1, DEFAULT_MAX_ARENA_BYTES),
        (tall(1 << 34), 3, DEFAULT_MAX_ARENA_BYTES),
    ] {
        let opts = SessionOptions {
            pipeline_min_bytes: 0,
            max_arena_bytes: limit,
            ..opts()
        };
        let (r, largest) = largest_allocation(|| Session::new(model.clone(), h, w, opts));
        match r {
            Err(Error::Session(SessionError::ArenaTooLarge { needed, .. })) => {
                assert!(needed > limit as u64)
            }
            Err(Error::Session(SessionError::Size { .. })) => {}
            other => panic!("{h}x{w}: {other:?}"),
        }
        assert!(largest <= 64 << 10, "{h}x{w}: allocated {largest} bytes");
    }
    // Below the limit the pipeline is still planned for a tall input.
    let opts = SessionOptions {
        pipeline_min_bytes: 0,
        ..opts()
    };
    let s = Session::new(model, 4096, 2, opts).unwrap();
    assert!(s.plan().pipeline.is_some());
}

#[test]
fn arena_limit_is_exact() {
    let model = net().1.clone();
    let s = Session::new(model.clone(), 64, 48, opts()).unwrap();
    let (image, arena) = (s.input_len() * 4, s.plan().layout.peak * 4);
    // The limit covers the arena and the zero image the session warms up on.
    let needed = arena + image;
    // (No row pipeline: over the limit the planner would try it next.)
    let with_limit = |max_arena_bytes| {
        Session::new(
            model.clone(),
            64,
            48,
            SessionOptions {
                max_arena_bytes,
                pipeline_min_bytes: usize::MAX,
                ..opts()
            },
        )
    };
    // The watch sees the arena when it is allocated...
    let (r, largest) = largest_allocation(|| with_limit(needed));
    assert!(r.is_ok() && largest >= arena, "{largest} < {arena}");
    // ...and it is not allocated when the size is refused.
    for limit in [needed - 1, arena, image, 1, 0] {
        let (r, largest) = largest_allocation(|| with_limit(limit));
        match r {
            // Below the image alone, the plan refuses before scheduling and reports
            // the image; otherwise it reports the arena plus the image.
            Err(Error::Session(SessionError::ArenaTooLarge { needed: n, .. })) => {
                let want = if limit < image { image } else { needed };
                assert_eq!(n, want as u64, "limit {limit}")
            }
            other => panic!("limit {limit}: {other:?}"),
        }
        assert!(largest < arena, "limit {limit}: allocated {largest} bytes");
    }
    // A limit of usize::MAX is no limit, not an overflow.
    assert!(with_limit(usize::MAX).is_ok());
}

#[test]
fn thread_counts_out_of_range_are_errors_and_in_range_agree() {
    let model = net().1.clone();
    for threads in [0, 257, 1 << 20, usize::MAX] {
        let r = Session::new(model.clone(), 32, 32, SessionOptions { threads, ..opts() });
        assert!(
            matches!(r, Err(Error::Session(SessionError::Threads(t))) if t == threads),
            "{threads}: {r:?}"
        );
    }
    let x = input(3 * 32 * 32, 5);
    let mut outs = Vec::new();
    for threads in [1, 2, 3, 8, 256] {
        let mut s = Session::new(model.clone(), 32, 32, SessionOptions { threads, ..opts() })
            .unwrap_or_else(|e| panic!("{threads} threads: {e}"));
        let mut y = vec![0.0; s.output_len()];
        s.run(&x, &mut y).unwrap();
        outs.push(y.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
    }
    assert!(outs.windows(2).all(|p| p[0] == p[1]));
}

#[test]
fn wrong_buffer_lengths_are_errors_and_leave_the_output_alone() {
    let mut s = Session::new(net().1.clone(), 16, 24, opts()).unwrap();
    let n = s.input_len();
    assert_eq!(n, 3 * 16 * 24);
    let mut y = vec![7.0; 1000];
    for len in [0, 1, n - 1, n + 1, 2 * n, 3 * 24 * 16 * 16] {
        let x = vec![0.5; len];
        let r = s.run(&x, &mut y);
        assert!(
            matches!(r, Err(Error::Session(SessionError::InputLength { got, expected, .. })) if got == len && expected == n),
            "input of {len}: {r:?}"
        );
    }
    let x = vec![0.5; n];
    for len in [0, 1, 999] {
        let mut short = vec![7.0; len];
        let r = s.run(&x, &mut short);
        assert!(
            matches!(r, Err(Error::Session(SessionError::OutputCapacity { got, needed: 1000 })) if got == len),
            "output of {len}: {r:?}"
        );
        assert!(
            short.iter().all(|&v| v == 7.0),
            "a refused run wrote output"
        );
    }
    assert!(y.iter().all(|&v| v == 7.0), "a refused run wrote output");
    // A longer output buffer is fine: the logits go to its front, the rest is untouched.
    let mut long = vec![7.0; 1500];
    s.run(&x, &mut long).unwrap();
    assert!(long[..1000].iter().all(|v| v.is_finite() && *v != 7.0));
    assert!(long[1000..].iter().all(|&v| v == 7.0));
}
