//! Helpers shared by the engine's test binaries.

// Each test binary compiles this module on its own and uses only part of it.
#![allow(dead_code)]

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
