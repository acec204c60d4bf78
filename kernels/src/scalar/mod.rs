//! Scalar twins: the plainest correct implementation of every kernel, used as the
//! test oracle for the NEON and portable kernels. Written for clarity, not speed.

pub mod conv2d;
pub mod dwconv3x3;
pub mod elementwise;
pub mod gap_fc;
pub mod pointwise;
pub mod pool;

/// ReLU, `max(v, 0)`, propagating NaN: a NaN gives NaN (IEEE 754-2019 `maximum`,
/// as NEON's `FMAX` does) and -0.0 gives +0.0. (`f32::max` is IEEE `maxNum`: it
/// would turn a NaN into 0 and hide it.) Every kernel's ReLU follows this.
#[inline(always)]
pub fn relu(v: f32) -> f32 {
    relu_at(v, 0.0)
}

/// ReLU with its clamp moved to `floor`: `max(v, floor)`, propagating NaN as
/// [`relu`] does.
#[inline(always)]
pub fn relu_at(v: f32, floor: f32) -> f32 {
    if v <= floor {
        floor
    } else {
        v
    }
}
