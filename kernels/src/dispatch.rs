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
pub use arch::{
    conv2d, copy, dwconv3x3, fc, gap_fc, global_avg_pool, move_to_front, pointwise, pointwise_rows,
    pool,
};

/// Name of the best instruction set the kernels run with on this machine ("neon",
/// "avx512", "avx2+fma" or "scalar"). With AVX-512, depthwise convs and pools on
/// rows narrower than 64 floats and the pixels past a pointwise call's last
/// 16-lane vector run with AVX2 (see `portable::Level::for_rows`).
pub fn isa() -> &'static str {
    arch::isa()
}
