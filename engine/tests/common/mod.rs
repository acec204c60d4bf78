//! Helpers shared by the engine's test binaries.

// Each test binary compiles this module on its own and uses only part of it.
#![allow(dead_code)]

use shufflenet::model::Model;
use shufflenet::session::{Session, SessionOptions};
use std::sync::Arc;

/// The output bits of `runs` inferences of `x` on a new `h x w` session, which
/// must all be the same (a balanced pool sizes each run's parts from the
/// previous runs); panics naming the options on any error.
pub fn session_bits(
    model: &Arc<Model>,
    (h, w): (usize, usize),
    opts: SessionOptions,
    x: &[f32],
    runs: usize,
) -> Vec<u32> {
    let what = format!("{h}x{w} {opts:?}");
    let mut s = Session::new(model.clone(), h, w, opts).unwrap_or_else(|e| panic!("{what}: {e}"));
    let mut out = vec![0.0; s.output_len()];
    let mut first = None;
    for run in 0..runs {
        s.run(x, &mut out).unwrap_or_else(|e| panic!("{what}: {e}"));
        let bits: Vec<u32> = out.iter().map(|v| v.to_bits()).collect();
        match &first {
            None => first = Some(bits),
            Some(f) => assert_eq!(&bits, f, "{what}: run {run} differs from run 0"),
        }
    }
    first.unwrap_or_default()
}

/// xorshift64*: seeded, reproducible shapes and data (no dependency).
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// One of `from`.
    pub fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[self.below(from.len())]
    }

    /// `n` floats uniform in [-1, 1).
    pub fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n)
            .map(|_| (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0)
            .collect()
    }

    /// `n` floats uniform in [-0.5, 0.5).
    pub fn f32s(&mut self, n: usize) -> Vec<f32> {
        self.vec(n).into_iter().map(|v| v * 0.5).collect()
    }
}
