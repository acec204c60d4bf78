//! Random sessions: random models, sizes, cache budgets, pipeline thresholds and
//! thread counts. Every session on several threads gives bit for bit its
//! options' one-thread result, and every one-thread result matches the
//! whole-tensor plan's up to rounding.

use shufflenet::model::Model;
use shufflenet::session::SessionOptions;
use shufflenet::{family, plan};
use std::sync::Arc;

mod common;
use common::{session_bits, Rng};

/// Cases drawn: fewer under qemu (aarch64 test runs), where every instruction is
/// emulated.
const CASES: usize = if cfg!(target_arch = "aarch64") {
    16
} else {
    48
};

/// The last of two runs (the second's parts are sized from the first's).
fn run(model: &Arc<Model>, h: usize, w: usize, opts: SessionOptions, x: &[f32]) -> Vec<f32> {
    let bits = session_bits(model, (h, w), opts, x, 2);
    bits.into_iter().map(f32::from_bits).collect()
}

#[test]
fn random_sessions_on_threads_match_one_thread_and_the_whole_tensor_plan() {
    let mut rng = Rng(0x5EED_1234_ABCD_0001);
    for case in 0..CASES {
        let groups = rng.pick(&[1, 2, 3, 4, 8]);
        let scale = rng.pick(&[0.25, 0.5]);
        let model = Arc::new(
            Model::from_lowered(
                &plan::lower(&family::build(groups, scale, case as u64).unwrap()).unwrap(),
            )
            .unwrap(),
        );
        let (h, w) = (33 + rng.below(160), 33 + rng.below(160));
        let x = rng.vec(3 * h * w);
        let opts = SessionOptions {
            stream: rng.below(4) != 0,
            band_bytes: rng.pick(&[0, 2 << 10, 8 << 10, 64 << 10, 1 << 20]),
            pipeline_min_bytes: rng.pick(&[0, 16 << 10, 256 << 10, usize::MAX]),
            pipeline_segments: rng.below(2) == 0,
            ..Default::default()
        };
        let threads = 2 + rng.below(3);
        let what = format!("case {case}: g={groups} {scale}x {h}x{w} {opts:?}");
        let one = run(&model, h, w, opts, &x);
        let many = run(&model, h, w, SessionOptions { threads, ..opts }, &x);
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&many), bits(&one), "{what}: {threads} threads");
        let whole = SessionOptions {
            stream: false,
            ..Default::default()
        };
        let want = run(&model, h, w, whole, &x);
        let scale_of = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let err = one
            .iter()
            .zip(&want)
            .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
        // Rounding only (the bound of the family's end-to-end test).
        assert!(
            scale_of > 0.0 && err <= 2e-5 * scale_of,
            "{what}: max error {err} against the whole-tensor plan (max logit {scale_of})"
        );
    }
}
