//! Every member of the family, lowered to the fused op list:
//! - equals the reference executor on the unfused graph (1e-5 relative);
//! - contains no shuffle copy; runs every stride-1 unit in place and every
//!   stride-2 concat with zero copies;
//! - has a sound arena (no two live buffers overlap, peak >= lower bound), and a run
//!   over an arena poisoned with NaN gives exactly the same result (no step reads
//!   memory no earlier step wrote);
//! - gives the same result streamed band by band (one-row bands, and bands sized
//!   by a small cache budget, and as one whole-network row pipeline) and
//!   bit-identical results on 2 threads;
//! - at 720x1280, 1x g = 3 runs as a row pipeline whose arena is at most a third
//!   of the whole-tensor plan's (one segment, and two).
//!
//! Host: 64x64 and 96x128. aarch64 (under qemu, where this is slow): 64x64.

use kernels::PoolKind;
use shufflenet::arena;
use shufflenet::exec::{
    execute, ExecOptions, ExecPlan, SessionError, Stage, UnitBand, FUSE_SHORTCUT_POOLS,
    SPLIT_UNITS_BY_ROWS, THREADED_PIPELINE_FACTOR,
};
use shufflenet::program::{LoweredModel, Step};
use shufflenet::{family, plan, reference};

const SIZES: &[(usize, usize)] = if cfg!(target_arch = "aarch64") {
    &[(64, 64)]
} else {
    &[(64, 64), (96, 128)]
};

fn input(n: usize, seed: usize) -> Vec<f32> {
    (0..n)
        .map(|i| (((i + seed) * 2_654_435_761) % 2001) as f32 / 1000.0 - 1.0)
        .collect()
}

fn check_structure(lowered: &LoweredModel, what: &str) {
    let steps = &lowered.program.steps;
    let permutes = steps
        .iter()
        .filter(|s| matches!(s, Step::Permute { .. }))
        .count();
    assert_eq!(
        permutes, 0,
        "{what}: the plan copies data (shuffle or concat)"
    );
    let in_place = steps
        .iter()
        .filter(|s| matches!(s, Step::Pointwise { accumulate: true, input, output, .. } if input.buffer != output.buffer))
        .count();
    assert_eq!(in_place, 13, "{what}: stride-1 units in place");
    let concats = steps
        .iter()
        .filter_map(|s| match s {
            Step::Pool { spec, output, .. } if matches!(spec.kind, PoolKind::Avg { .. }) => {
                Some(*output)
            }
            _ => None,
        })
        .filter(|pool| {
            steps.iter().any(|s| {
                matches!(s, Step::Pointwise { output, .. }
                    if output.buffer == pool.buffer && output.offset == pool.offset + pool.channels)
            })
        })
        .count();
    assert_eq!(concats, 3, "{what}: zero-copy concats");
}

#[test]
fn every_family_member_matches_the_reference_with_a_sound_arena() {
    for g in family::GROUPS {
        for s in family::SCALES {
            let graph = family::build(g, s, 11).unwrap();
            let lowered = plan::lower(&graph).unwrap();
            check_structure(&lowered, &format!("g={g} s={s}"));
            for &(h, w) in SIZES {
                let what = format!("g={g} s={s} {h}x{w}");
                let x = input(3 * h * w, g * 100 + h);
                let want = reference::run(&graph, h, w, &x).unwrap().data;
                let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                let tensors = lowered.tensors.as_slice();
                // Whole tensors; streamed in one-row bands, on 1 and 2 threads
                // (planned for 2: units split by rows where SPLIT_UNITS_BY_ROWS);
                // streamed in bands sized by a small cache budget.
                let whole = ExecOptions {
                    stream: false,
                    ..Default::default()
                };
                let one_row = ExecOptions {
                    band_bytes: 0,
                    ..Default::default()
                };
                // Planned for two threads: units split by rows.
                let one_row2 = ExecOptions {
                    threads: 2,
                    split_in_place_min_bytes: 0,
                    ..one_row
                };
                let banded = ExecOptions {
                    band_bytes: 3 << 10,
                    ..Default::default()
                };
                let mut outs = Vec::new();
                let piped = ExecOptions {
                    pipeline_min_bytes: 0,
                    ..Default::default()
                };
                // Pipelines cut into segments, one per thread; also run on fewer
                // threads than segments (the consumer then runs its producers).
                let segmented = |segments| ExecOptions { segments, ..piped };
                let configs: &[(ExecOptions, usize)] = if cfg!(target_arch = "aarch64") {
                    &[
                        (whole, 1),
                        (one_row, 1),
                        (one_row2, 2),
                        (segmented(2), 2),
                        (segmented(3), 1),
                        (piped, 1),
                    ]
                } else {
                    &[
                        (whole, 1),
                        (one_row, 1),
                        (one_row2, 2),
                        (banded, 1),
                        (piped, 2),
                        (segmented(2), 2),
                        (segmented(3), 3),
                        (segmented(4), 2),
                        (segmented(2), 1),
                        (piped, 1),
                    ]
                };
                for &(opts, threads) in configs {
                    let p = ExecPlan::new(&lowered.program, h, w, &opts).unwrap();
                    arena::check(&p.layout, &p.lifetimes).unwrap_or_else(|e| panic!("{what}: {e}"));
                    // (Segments, one per thread, each hold their own windows: at
                    // these tiny sizes that can exceed the naive total.)
                    assert!(
                        p.layout.lower_bound <= p.layout.peak
                            && (opts.segments > 1 || p.layout.peak <= p.naive_floats)
                    );
                    let units = p
                        .stages
                        .iter()
                        .filter(|s| matches!(s, Stage::Unit(_) | Stage::Down(_)))
                        .count();
                    // Outside a pipeline, each stride-2 unit runs with its
                    // shortcut pool where that is the default.
                    let downs = p
                        .stages
                        .iter()
                        .filter(|s| matches!(s, Stage::Down(_)))
                        .count();
                    let stems = p
                        .stages
                        .iter()
                        .filter(|s| matches!(s, Stage::Stem(_)))
                        .count();
                    if opts.band_bytes == 0 {
                        // (Units stream on several threads only split by rows.)
                        let all = opts.threads == 1 || SPLIT_UNITS_BY_ROWS;
                        let want = (if all { 16 } else { 0 }, 1);
                        assert_eq!((units, stems), want, "{what}: one-row bands stream all");
                        let fused =
                            FUSE_SHORTCUT_POOLS && p.pipeline.is_none() && opts.threads == 1;
                        let want = if fused { 3 } else { 0 };
                        assert_eq!(downs, want, "{what}: shortcut pools in their units");
                    }
                    assert!(opts.stream || units + stems == 0);
                    assert_eq!(
                        p.pipeline.is_some(),
                        opts.pipeline_min_bytes == 0,
                        "{what} {opts:?}"
                    );
                    if let Some(pipe) = &p.pipeline {
                        assert_eq!(pipe.segments.len(), opts.segments, "{what} {opts:?}");
                    }
                    let mut got = vec![0.0; 1000];
                    let mut poisoned_out = vec![0.0; 1000];
                    let run = |arena: &mut [f32], out: &mut [f32]| {
                        execute(&p, &lowered.program, tensors, arena, &x, out, threads, None)
                            .unwrap()
                    };
                    run(&mut vec![0.0; p.layout.peak], &mut got);
                    run(&mut vec![f32::NAN; p.layout.peak], &mut poisoned_out);
                    assert_eq!(
                        got, poisoned_out,
                        "{what} {opts:?}: a step read unwritten memory"
                    );
                    let err = got
                        .iter()
                        .zip(&want)
                        .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
                    // Rounding only: the offset chains store values shifted by sums
                    // of biases, so a stored value rounds at the scale of its offset
                    // (largest measured: 1.06e-5 of the top logit, g = 1 0.5x at
                    // 64x64; a wrong offset or floor is off by far more).
                    assert!(
                        scale > 0.0 && err <= 2e-5 * scale,
                        "{what} {opts:?}: max error {err} vs max logit {scale}"
                    );
                    outs.push(got);
                }
                assert_eq!(outs[1], outs[2], "{what}: 2 threads differ from 1");
                // Pipelined runs: the last config is one thread, one segment.
                let one = &outs[outs.len() - 1];
                for (i, o) in outs.iter().enumerate().skip(3) {
                    if configs[i].0.pipeline_min_bytes == 0 {
                        assert_eq!(o, one, "{what} {:?}: pipelined results differ", configs[i]);
                    }
                }
            }
        }
    }
}

#[test]
fn the_720p_pipeline_arena_is_at_most_a_third_of_the_whole_tensor_plan() {
    let lowered = plan::lower(&family::build(3, 1.0, 1).unwrap()).unwrap();
    let plan_with = |opts: ExecOptions| ExecPlan::new(&lowered.program, 720, 1280, &opts).unwrap();
    let whole = plan_with(ExecOptions {
        stream: false,
        ..Default::default()
    });
    // One thread; two splitting each kernel call; two running a segment each. (A
    // 2 MiB threshold: pipelined on every target, also where a session splitting
    // its calls over threads multiplies it, see the next test.)
    for (segments, threads) in [(1, 1), (1, 2), (2, 2)] {
        let p = plan_with(ExecOptions {
            segments,
            threads,
            pipeline_min_bytes: 2 << 20,
            ..Default::default()
        });
        assert!(p.pipeline.is_some());
        arena::check(&p.layout, &p.lifetimes).unwrap();
        assert!(
            3 * p.layout.peak <= whole.layout.peak,
            "{segments} segment(s), {threads} thread(s): {} floats against {}",
            p.layout.peak,
            whole.layout.peak
        );
    }
}

#[test]
fn a_plan_over_the_arena_limit_falls_back_to_the_row_pipeline() {
    let lowered = plan::lower(&family::build(3, 1.0, 1).unwrap()).unwrap();
    let plan_with = |pipeline_min_bytes, max_arena_bytes, stream| {
        let opts = ExecOptions {
            pipeline_min_bytes,
            max_arena_bytes,
            stream,
            ..Default::default()
        };
        ExecPlan::new(&lowered.program, 720, 1280, &opts)
    };
    let roomy = usize::MAX;
    let bytes = |p: &ExecPlan| p.memory_bytes() as usize;
    let whole = bytes(&plan_with(usize::MAX, roomy, true).unwrap());
    let piped = bytes(&plan_with(0, roomy, true).unwrap());
    assert!(
        piped < whole,
        "pipeline {piped} bytes, streamed units {whole}"
    );
    let limit = (piped + whole) / 2;
    // A threshold no tensor reaches: over the limit, the planner takes the
    // pipeline instead of refusing.
    let p = plan_with(1 << 30, limit, true).unwrap();
    assert!(p.pipeline.is_some());
    assert_eq!(bytes(&p), piped);
    arena::check(&p.layout, &p.lifetimes).unwrap();
    // Under the limit it does not.
    assert!(plan_with(1 << 30, roomy, true).unwrap().pipeline.is_none());
    // Ruled out (`usize::MAX`, or no streaming): refused with the plan's need.
    for (min, stream) in [(usize::MAX, true), (1 << 30, false)] {
        match plan_with(min, limit, stream) {
            Err(SessionError::ArenaTooLarge { needed, .. }) => assert!(needed > limit as u64),
            other => panic!("{min} {stream}: {:?}", other.map(|p| p.layout.peak)),
        }
    }
    // Below the pipeline's own need: refused, reporting the pipeline's.
    match plan_with(1 << 30, piped - 1, true) {
        Err(SessionError::ArenaTooLarge { needed, .. }) => assert_eq!(needed, piped as u64),
        other => panic!("{:?}", other.map(|p| p.layout.peak)),
    }
}

#[test]
fn threads_splitting_calls_raise_the_pipeline_threshold() {
    let lowered = plan::lower(&family::build(3, 1.0, 1).unwrap()).unwrap();
    // 1x g = 3 at 720x1280: largest tensor 13.8 MB, between an 8 MiB threshold
    // and the threaded one on x86-64.
    let pipelined = |segments, threads| {
        let opts = ExecOptions {
            segments,
            threads,
            pipeline_min_bytes: 8 << 20,
            ..Default::default()
        };
        let p = ExecPlan::new(&lowered.program, 720, 1280, &opts).unwrap();
        arena::check(&p.layout, &p.lifetimes).unwrap();
        p.pipeline.is_some()
    };
    assert!(pipelined(1, 1));
    assert!(pipelined(2, 2), "segments keep the pipeline");
    assert_eq!(pipelined(1, 2), THREADED_PIPELINE_FACTOR == 1);
    let opts = ExecOptions {
        pipeline_min_bytes: 1000,
        threads: 2,
        ..Default::default()
    };
    assert_eq!(opts.pipeline_threshold(), 1000 * THREADED_PIPELINE_FACTOR);
    let never = ExecOptions {
        pipeline_min_bytes: usize::MAX,
        ..opts
    };
    assert_eq!(never.pipeline_threshold(), usize::MAX);
    assert_eq!(
        ExecOptions {
            segments: 2,
            ..opts
        }
        .pipeline_threshold(),
        1000
    );
}

/// With several threads (where `SPLIT_UNITS_BY_ROWS`), every streamed unit
/// runs on all of them at once, each on its own rows; a unit that writes over
/// its input convolves the rows at each cut first (its halo area), and splits
/// only from `split_in_place_min_bytes`.
#[test]
fn several_threads_split_streamed_units_by_rows() {
    let lowered = plan::lower(&family::build(3, 1.0, 1).unwrap()).unwrap();
    let steps = &lowered.program.steps;
    // Whether a unit writes over its input (a stride-1 unit's residual).
    let in_place = |u: &UnitBand| match (&steps[u.steps[0]], &steps[u.steps[2]]) {
        (Step::Pointwise { input, .. }, Step::Pointwise { output, .. }) => {
            input.buffer == output.buffer
        }
        _ => panic!("unit over the wrong steps"),
    };
    for threads in [1, 2, 4] {
        let p = ExecPlan::new(
            &lowered.program,
            224,
            224,
            &ExecOptions {
                pipeline_min_bytes: usize::MAX,
                band_bytes: 64 << 10,
                threads,
                split_in_place_min_bytes: 0,
                ..Default::default()
            },
        )
        .unwrap();
        arena::check(&p.layout, &p.lifetimes).unwrap();
        assert!(p.pipeline.is_none());
        let what = format!("{threads} thread(s)");
        let units: Vec<UnitBand> = p
            .stages
            .iter()
            .filter_map(|s| match s {
                Stage::Unit(u) => Some(*u),
                Stage::Down(d) => Some(d.unit),
                _ => None,
            })
            .collect();
        assert!(units.iter().all(|u| u.parts == threads), "{what}");
        let split = threads == 1 || SPLIT_UNITS_BY_ROWS;
        assert_eq!(units.iter().any(in_place), split, "{what}");
        assert_eq!(units.iter().any(|u| !in_place(u)), split, "{what}");
        for u in &units {
            assert_eq!(u.halo.is_some(), threads > 1 && in_place(u), "{what}");
        }
        let downs = p.stages.iter().filter(|s| matches!(s, Stage::Down(_)));
        assert!(threads == 1 || downs.count() == 0, "{what}: no fused pools");
        let stems = p.stages.iter().filter(|s| matches!(s, Stage::Stem(_)));
        assert_eq!(stems.count(), 1, "{what}");
    }
    // By default a stride-1 unit's tensor at 224x224 is too small to split (it
    // runs on whole tensors); the stride-2 units split.
    let opts = ExecOptions {
        pipeline_min_bytes: usize::MAX,
        band_bytes: 64 << 10,
        threads: 2,
        ..Default::default()
    };
    let p = ExecPlan::new(&lowered.program, 224, 224, &opts).unwrap();
    let units = p.stages.iter().filter_map(|s| match s {
        Stage::Unit(u) => Some(*u),
        _ => None,
    });
    let (mut down, mut same) = (0, 0);
    for u in units {
        *(if in_place(&u) { &mut same } else { &mut down }) += 1;
    }
    let split = if SPLIT_UNITS_BY_ROWS { 3 } else { 0 };
    assert_eq!((down, same), (split, 0));
}
