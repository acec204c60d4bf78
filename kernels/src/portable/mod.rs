//! Portable SIMD kernels over `pulp`: runtime dispatch to AVX-512, AVX2+FMA or
//! pulp's scalar fallback on x86-64 (the scalar fallback elsewhere).
//!
//! Each kernel is written once, generic over the instruction set (see [`Level`]),
//! validates its arguments with the same `check` as its scalar twin, and has a
//! `*_at` variant that runs it at a chosen level (the tests run every level this
//! CPU has against the scalar twins).

mod conv2d;
mod dwconv3x3;
mod dwconv3x3s1p1_rows;
mod dwconv3x3s2p1_rows;
mod gap_fc;
mod pointwise_gemm;
mod pointwise_tail;
mod pool;
mod pool3x3s2p1;
mod rows;
mod simd;
mod small_plane;

pub use crate::scalar::elementwise::{copy, move_to_front};
pub use conv2d::{conv2d, conv2d_at, conv2d_with};
pub use dwconv3x3::{dwconv3x3, dwconv3x3_at};
pub use gap_fc::{fc, fc_at, gap_fc, gap_fc_at, global_avg_pool, global_avg_pool_at};
#[cfg(not(target_arch = "aarch64"))]
pub(crate) use pointwise_gemm::pointwise_raw;
pub use pointwise_gemm::{pointwise, pointwise_at};
pub use pool::{pool, pool_at};
pub use simd::Level;

/// Name of the best instruction set this path uses on this CPU: "avx512",
/// "avx2+fma" or "scalar" (with AVX-512, narrow rows and pointwise tails run with
/// AVX2: [`Level::for_rows`], [`pointwise`]).
pub fn isa() -> &'static str {
    Level::best().name()
}
