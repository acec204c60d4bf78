//! Scalar twins: the plainest correct implementation of every kernel, used as the
//! test oracle for the NEON and portable kernels. Written for clarity, not speed.

pub mod conv2d;
pub mod dwconv3x3;
pub mod elementwise;
pub mod gap_fc;
pub mod pointwise;
pub mod pool;
