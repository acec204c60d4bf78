//! aarch64 NEON kernels (`std::arch::aarch64` intrinsics). NEON is baseline on
//! aarch64, so no runtime detection is needed.
//!
//! One file per microkernel; every public function calls the same `check` from
//! [`crate::params`] at entry and only then uses unchecked pointer access.

mod common;
mod pointwise_gemm_8x12;

pub use crate::scalar::conv2d::conv2d;
pub use crate::scalar::dwconv3x3::dwconv3x3;
pub use crate::scalar::gap_fc::{fc, gap_fc, global_avg_pool};
pub use crate::scalar::pool::pool;
pub use pointwise_gemm_8x12::pointwise;

/// Name of the instruction set this path uses.
pub fn isa() -> &'static str {
    "neon"
}
