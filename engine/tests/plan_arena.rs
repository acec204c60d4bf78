//! The arena layout of every family member at two small resolutions: no two buffers
//! alive at one step overlap, peak respects the lower bound, stride-1 units run in
//! place, stride-2 units concatenate with zero copies, and a run over an arena
//! poisoned with NaN gives exactly the same result (so no step reads memory that no
//! earlier step wrote).

use shufflenet::arena;
use shufflenet::exec::{execute, ExecPlan, DEFAULT_MAX_ARENA_BYTES};
use shufflenet::program::Step;
use shufflenet::{family, plan};

#[test]
fn every_family_arena_is_sound() {
    for g in family::GROUPS {
        for s in family::SCALES {
            let graph = family::build(g, s, 5).unwrap();
            let lowered = plan::lower(&graph).unwrap();
            let program = &lowered.program;
            let steps = &program.steps;
            let in_place = steps
                .iter()
                .filter(|st| matches!(st, Step::Pointwise { accumulate: true, input, output, .. } if input.buffer != output.buffer))
                .count();
            assert_eq!(in_place, 13, "g={g} s={s}: stride-1 units in place");
            // Each stride-2 unit: the avgpool and the branch's last conv write adjacent
            // channels of one buffer.
            let concats = steps
                .iter()
                .filter_map(|st| match st {
                    Step::Pool { spec, output, .. } if matches!(spec.kind, kernels::PoolKind::Avg { .. }) => Some(*output),
                    _ => None,
                })
                .filter(|pool| {
                    steps.iter().any(|st| {
                        matches!(st, Step::Pointwise { output, .. }
                            if output.buffer == pool.buffer && output.offset == pool.offset + pool.channels)
                    })
                })
                .count();
            assert_eq!(concats, 3, "g={g} s={s}: zero-copy concats");
            for (h, w) in [(64, 64), (96, 128)] {
                let p = ExecPlan::new(program, h, w, DEFAULT_MAX_ARENA_BYTES).unwrap();
                arena::check(&p.layout, &p.lifetimes)
                    .unwrap_or_else(|e| panic!("g={g} s={s} {h}x{w}: {e}"));
                assert!(p.layout.peak >= p.layout.lower_bound);
                assert!(p.layout.peak <= p.naive_floats);
                let x: Vec<f32> = (0..3 * h * w)
                    .map(|i| ((i * 7919) % 255) as f32 / 128.0 - 1.0)
                    .collect();
                let mut out_a = vec![0.0; 1000];
                let mut out_b = vec![0.0; 1000];
                let mut zeroed = vec![0.0; p.layout.peak];
                let mut poisoned = vec![f32::NAN; p.layout.peak];
                execute(
                    &p,
                    program,
                    lowered.tensors.as_slice(),
                    &mut zeroed,
                    &x,
                    &mut out_a,
                )
                .unwrap();
                execute(
                    &p,
                    program,
                    lowered.tensors.as_slice(),
                    &mut poisoned,
                    &x,
                    &mut out_b,
                )
                .unwrap();
                assert!(out_a.iter().all(|v| v.is_finite()));
                assert_eq!(
                    out_a, out_b,
                    "g={g} s={s} {h}x{w}: a step read unwritten memory"
                );
            }
        }
    }
}
