//! Compute kernels of the ShuffleNet engine. No graph knowledge lives here: every
//! kernel works on planar f32 buffers (one contiguous plane per channel) described
//! by the parameter structs of [`params`].
//!
//! Layout of the crate:
//! - [`params`]: the kernel parameter structs and their validation (all bounds are
//!   checked once per call, before any unchecked access in a fast kernel);
//! - [`scalar`]: the straightforward twin of every kernel, the test oracle;
//! - `neon` (aarch64 only): hand-written `std::arch::aarch64` kernels;
//! - [`portable`]: the same kernels over `pulp` (AVX-512, AVX2+FMA, scalar fallback);
//! - [`dispatch`]: the one place that picks NEON on aarch64 and `portable` elsewhere;
//! - [`PlaneRows`]: rows of every plane of an output, for threads that split a
//!   kernel's output by rows.

pub mod dispatch;
mod error;
#[cfg(target_arch = "aarch64")]
pub mod neon;
pub mod params;
mod plane_rows;
pub mod portable;
pub mod scalar;
pub mod scratch;

pub use error::KernelError;
pub use params::*;
use plane_rows::InputPlanes;
pub use plane_rows::PlaneRows;
