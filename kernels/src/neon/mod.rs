//! aarch64 NEON kernels (`std::arch::aarch64` intrinsics). NEON is baseline on
//! aarch64, so no runtime detection is needed.

pub use crate::scalar::conv2d::conv2d;
pub use crate::scalar::dwconv3x3::dwconv3x3;
pub use crate::scalar::gap_fc::{fc, gap_fc, global_avg_pool};
pub use crate::scalar::pointwise::pointwise;
pub use crate::scalar::pool::pool;

/// Name of the instruction set this path uses.
pub fn isa() -> &'static str {
    "neon"
}
