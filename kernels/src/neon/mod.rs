//! aarch64 NEON kernels (`std::arch::aarch64` intrinsics). NEON is baseline on
//! aarch64, so no runtime detection is needed.
//!
//! One file per microkernel; every public function calls the same `check` from
//! [`crate::params`] at entry and only then uses unchecked pointer access.

mod common;
mod conv3x3s2_stem;
mod conv3x3s2_stem12;
mod copy;
mod dwconv3x3_s1;
mod dwconv3x3_s2;
mod dwconv3x3s1_band;
mod gap_fc;
mod pointwise;
mod pool3x3s2;
mod pw_tile;
mod sweep_s2;
mod sweep_s2_band;

use crate::{Depthwise3x3, KernelError, PlaneGeom};
use std::ops::Range;

pub use conv3x3s2_stem::conv2d;
pub use copy::{copy, move_to_front};
pub use gap_fc::{fc, gap_fc, global_avg_pool};
pub use pointwise::pointwise;
pub(crate) use pointwise::pointwise_raw;
pub use pool3x3s2::pool;

/// 3x3 depthwise convolution of planes `channels` (contract of the scalar twin).
/// Stride 1 and 2 run the NEON kernels; inputs or outputs narrower than 4 columns
/// and outputs far wider than their input (more than 8 border steps per row) run
/// the scalar twin.
pub fn dwconv3x3(
    p: &Depthwise3x3,
    g: &PlaneGeom,
    input: &[f32],
    output: &mut [f32],
    channels: Range<usize>,
) -> Result<(), KernelError> {
    p.check(g, input, output, &channels)?;
    // Zero-bias filters (the planner moves a depthwise bias into the next
    // pointwise conv) start each output with an `fmul` instead of a bias copy.
    let zero_bias = p
        .bias
        .get(channels.clone())
        // Sign bits dropped, OR-ed without an early exit (vectorised): zero
        // exactly when every bias is +0 or -0.
        .is_some_and(|b| b.iter().fold(0, |a, &b| a | (b.to_bits() << 1)) == 0);
    let done = if p.stride == 1 {
        dwconv3x3_s1::run(p, g, input, output, channels.clone(), zero_bias)
    } else {
        dwconv3x3_s2::run(p, g, input, output, channels.clone(), zero_bias)
    };
    if done {
        Ok(())
    } else {
        crate::scalar::dwconv3x3::dwconv3x3(p, g, input, output, channels)
    }
}

/// Name of the instruction set this path uses.
pub fn isa() -> &'static str {
    "neon"
}
