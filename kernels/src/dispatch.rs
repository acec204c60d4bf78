//! The one dispatch point: NEON on aarch64, the portable `pulp` path elsewhere.
//! Every function validates its arguments (see [`crate::params`]) and returns an
//! error rather than touching memory out of bounds.

#[cfg(target_arch = "aarch64")]
use crate::neon as arch;
#[cfg(not(target_arch = "aarch64"))]
use crate::portable as arch;
use crate::{InputPlanes, KernelError, PlaneRows, Pointwise, PointwiseCall};

pub use crate::scalar::elementwise::{
    add, add_assign, affine, permute, relu_in_place, softmax_in_place,
};
pub use arch::{
    conv2d, copy, dwconv3x3, fc, gap_fc, global_avg_pool, move_to_front, pointwise, pool,
};

/// [`pointwise`] writing its output runs into rows of planes that other threads
/// write other rows of (see [`PlaneRows`]): `call.output` must use the planes'
/// stride, and every run must lie inside `output`'s window.
pub fn pointwise_rows(
    p: &Pointwise,
    input: &[f32],
    output: &mut PlaneRows,
    call: &PointwiseCall,
) -> Result<(), KernelError> {
    p.check_rows(input, output, call)?;
    // SAFETY: `check_rows` proved the call valid and every run of it inside
    // the buffer and inside `output`'s window, which no other thread writes.
    unsafe { arch::pointwise_raw(p, InputPlanes::of(input), output.as_mut_ptr(), call) };
    Ok(())
}

/// [`pointwise`] reading its input runs from rows of planes that other threads
/// write other rows of (see [`PlaneRows`]): `call.input` must use the planes'
/// stride, and every run must lie inside `input`'s window. (A unit split by
/// rows that writes over its input reads its rows this way, then writes them.)
pub fn pointwise_from_rows(
    p: &Pointwise,
    input: &PlaneRows,
    output: &mut [f32],
    call: &PointwiseCall,
) -> Result<(), KernelError> {
    p.check_rows_input(input, output, call)?;
    // SAFETY: `check_rows_input` proved the call valid, every run of it inside
    // `output` and every run it reads inside `input`'s window, which no other
    // thread writes; `as_input` bounds the kernel's spare reads by the window.
    unsafe { arch::pointwise_raw(p, input.as_input(), output.as_mut_ptr(), call) };
    Ok(())
}

/// Name of the best instruction set the kernels run with on this machine ("neon",
/// "avx512", "avx2+fma" or "scalar"). With AVX-512, depthwise convs and pools on
/// rows narrower than 64 floats and the pixels past a pointwise call's last
/// 16-lane vector run with AVX2 (see `portable::Level::for_rows`).
pub fn isa() -> &'static str {
    arch::isa()
}
