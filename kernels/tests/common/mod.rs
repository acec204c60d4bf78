//! Helpers shared by the kernel test binaries: a seeded generator, buffers with
//! NaN guard zones, and the float comparison against a scalar twin.

// Each test binary compiles this module on its own and uses only part of it.
#![allow(dead_code)]

/// Xorshift64: seeded, reproducible shapes and data.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    pub fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len())]
    }
    /// Uniform in [-1, 1).
    pub fn f32(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
    pub fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.f32()).collect()
    }
}

/// Floats of guard zone on each side of a [`Guarded`] buffer.
pub const GUARD: usize = 67;
/// The guard zones' NaN bit pattern.
pub const POISON: u32 = 0x7fc0_dead;

/// A buffer with NaN guard zones on both sides: a write outside it changes a
/// guard, a read outside it pulls a NaN into the result.
pub struct Guarded {
    pub data: Vec<f32>,
    pub len: usize,
}

impl Guarded {
    pub fn new(inner: &[f32]) -> Self {
        let mut data = vec![f32::from_bits(POISON); GUARD];
        data.extend_from_slice(inner);
        data.extend(std::iter::repeat_n(f32::from_bits(POISON), GUARD));
        Guarded {
            data,
            len: inner.len(),
        }
    }
    pub fn get(&self) -> &[f32] {
        &self.data[GUARD..GUARD + self.len]
    }
    pub fn get_mut(&mut self) -> &mut [f32] {
        &mut self.data[GUARD..GUARD + self.len]
    }
    pub fn assert_guards(&self, what: &str) {
        let (head, rest) = self.data.split_at(GUARD);
        for v in head.iter().chain(&rest[self.len..]) {
            assert_eq!(v.to_bits(), POISON, "{what}: write outside the output");
        }
    }
}

/// Equal values (infinities included) or within float tolerance; NaN only where
/// the oracle has NaN.
pub fn assert_close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        if w.is_nan() || g.is_nan() {
            assert!(
                w.is_nan() && g.is_nan(),
                "{what}: element {i}: got {g}, want {w}"
            );
            continue;
        }
        let tol = 1e-4 * (1.0 + w.abs());
        assert!(
            g == w || (g - w).abs() <= tol,
            "{what}: element {i}: got {g}, want {w}"
        );
    }
}
