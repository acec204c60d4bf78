//! The kernels' error type.

/// A kernel was called with parameters or buffers that do not fit together. The
/// engine validates shapes before calling, so this signals a planner bug, reported
/// instead of touching memory out of bounds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KernelError {
    /// Buffer lengths, strides or parameters are inconsistent.
    #[error("{kernel}: {what}")]
    Shape {
        /// Kernel name.
        kernel: &'static str,
        /// What does not fit.
        what: String,
    },
}
