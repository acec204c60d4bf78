//! Portable SIMD kernels over `pulp`: runtime dispatch to AVX-512, AVX2+FMA or
//! scalar code on x86-64 (and pulp's scalar path elsewhere).

pub use crate::scalar::conv2d::conv2d;
pub use crate::scalar::dwconv3x3::dwconv3x3;
pub use crate::scalar::gap_fc::{fc, gap_fc, global_avg_pool};
pub use crate::scalar::pointwise::pointwise;
pub use crate::scalar::pool::pool;

/// Name of the instruction set this path uses.
pub fn isa() -> &'static str {
    "scalar"
}
