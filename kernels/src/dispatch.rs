//! The one dispatch point: NEON on aarch64, the portable `pulp` path elsewhere.
//! Every function validates its arguments (see [`crate::params`]) and returns an
//! error rather than touching memory out of bounds.

#[cfg(target_arch = "aarch64")]
use crate::neon as arch;
#[cfg(not(target_arch = "aarch64"))]
use crate::portable as arch;

pub use crate::scalar::elementwise::{
    add, add_assign, affine, permute, relu_in_place, softmax_in_place,
};
pub use arch::{conv2d, copy, dwconv3x3, fc, gap_fc, global_avg_pool, pointwise, pool};

/// Name of the instruction set the kernels run with on this machine
/// ("neon", "avx512", "avx2+fma" or "scalar").
pub fn isa() -> &'static str {
    arch::isa()
}
