//! The fused plan of every member of the family, at two small resolutions, equals
//! the reference executor on the unfused graph, and contains no shuffle copy.

use shufflenet::exec::run_lowered;
use shufflenet::program::Step;
use shufflenet::{family, plan, reference};

fn input(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2_654_435_761).max(1);
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s >> 8) as f32 / (1u32 << 23) as f32 - 1.0
        })
        .collect()
}

fn max_abs(v: &[f32]) -> f32 {
    v.iter().fold(0.0, |m, x| m.max(x.abs()))
}

#[test]
fn every_family_member_matches_the_reference() {
    for g in family::GROUPS {
        for s in family::SCALES {
            let graph = family::build(g, s, 11).unwrap();
            let lowered = plan::lower(&graph).unwrap();
            let permutes = lowered
                .program
                .steps
                .iter()
                .filter(|st| matches!(st, Step::Permute { .. }))
                .count();
            assert_eq!(permutes, 0, "g={g} s={s}: the plan copies a shuffle");
            for (h, w) in [(64, 64), (96, 128)] {
                let x = input(3 * h * w, (g * 100 + h) as u32);
                let want = reference::run(&graph, h, w, &x).unwrap().data;
                let got = run_lowered(&lowered, h, w, &x).unwrap();
                let scale = max_abs(&want);
                let err = got
                    .iter()
                    .zip(&want)
                    .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
                assert!(
                    err <= 1e-5 * scale,
                    "g={g} s={s} {h}x{w}: max error {err} vs max logit {scale}"
                );
            }
        }
    }
}
