//! Every member of the family, lowered to the fused op list:
//! - equals the reference executor on the unfused graph (1e-5 relative);
//! - contains no shuffle copy; runs every stride-1 unit in place and every
//!   stride-2 concat with zero copies;
//! - has a sound arena (no two live buffers overlap, peak >= lower bound), and a run
//!   over an arena poisoned with NaN gives exactly the same result (no step reads
//!   memory no earlier step wrote).
//!
//! Host: 64x64 and 96x128. aarch64 (under qemu, where this is slow): 64x64.

use kernels::PoolKind;
use shufflenet::arena;
use shufflenet::exec::{execute, ExecPlan, DEFAULT_MAX_ARENA_BYTES};
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
                let p = ExecPlan::new(&lowered.program, h, w, DEFAULT_MAX_ARENA_BYTES).unwrap();
                arena::check(&p.layout, &p.lifetimes).unwrap_or_else(|e| panic!("{what}: {e}"));
                assert!(p.layout.lower_bound <= p.layout.peak && p.layout.peak <= p.naive_floats);

                let x = input(3 * h * w, g * 100 + h);
                let want = reference::run(&graph, h, w, &x).unwrap().data;
                let tensors = lowered.tensors.as_slice();
                let mut got = vec![0.0; 1000];
                let mut poisoned_out = vec![0.0; 1000];
                execute(
                    &p,
                    &lowered.program,
                    tensors,
                    &mut vec![0.0; p.layout.peak],
                    &x,
                    &mut got,
                )
                .unwrap();
                let mut poisoned = vec![f32::NAN; p.layout.peak];
                execute(
                    &p,
                    &lowered.program,
                    tensors,
                    &mut poisoned,
                    &x,
                    &mut poisoned_out,
                )
                .unwrap();
                assert_eq!(got, poisoned_out, "{what}: a step read unwritten memory");

                let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                let err = got
                    .iter()
                    .zip(&want)
                    .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
                assert!(
                    scale > 0.0 && err <= 1e-5 * scale,
                    "{what}: max error {err} vs max logit {scale}"
                );
            }
        }
    }
}
