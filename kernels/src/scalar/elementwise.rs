//! Element-wise and per-channel operations that only appear when a graph cannot be
//! fused (a standalone add, BatchNorm, ReLU, permutation or softmax). They move
//! little data, so the scalar code is also the code that runs.

use crate::{KernelError, Planes};

fn len_err(kernel: &'static str) -> KernelError {
    KernelError::Shape {
        kernel,
        what: "operand lengths differ".into(),
    }
}

/// `acc = acc + b`, then ReLU if asked.
pub fn add_assign(acc: &mut [f32], b: &[f32], relu: bool) -> Result<(), KernelError> {
    if acc.len() != b.len() {
        return Err(len_err("add"));
    }
    for (a, &v) in acc.iter_mut().zip(b) {
        let s = *a + v;
        *a = if relu { super::relu(s) } else { s };
    }
    Ok(())
}

/// `out = a + b`, then ReLU if asked.
pub fn add(a: &[f32], b: &[f32], out: &mut [f32], relu: bool) -> Result<(), KernelError> {
    if a.len() != out.len() {
        return Err(len_err("add"));
    }
    out.copy_from_slice(a);
    add_assign(out, b, relu)
}

/// Copies `src` into `dst` (same length): the scalar twin of the NEON copy, and
/// the copy of the portable path (the platform's `memcpy` is already vectorised).
pub fn copy(src: &[f32], dst: &mut [f32]) -> Result<(), KernelError> {
    if src.len() != dst.len() {
        return Err(len_err("copy"));
    }
    dst.copy_from_slice(src);
    Ok(())
}

/// Checks a [`move_to_front`]: every plane's ranges inside a buffer of `len_buf`
/// floats.
pub(crate) fn check_move(
    len_buf: usize,
    planes: usize,
    stride: usize,
    from: usize,
    len: usize,
) -> Result<(), KernelError> {
    let end = planes
        .checked_sub(1)
        .map(|last| {
            last.checked_mul(stride)?
                .checked_add(from)?
                .checked_add(len)
        })
        .unwrap_or(Some(0));
    match end {
        Some(end) if end <= len_buf => Ok(()),
        _ => Err(KernelError::Shape {
            kernel: "move_to_front",
            what: format!(
                "{planes} planes {stride} floats apart, {len} floats from {from}: past {len_buf}"
            ),
        }),
    }
}

/// Moves, in each of `planes` planes `stride` floats apart, the `len` floats
/// starting `from` floats into the plane to the plane's start (the ranges may
/// overlap): how a band buffer or pipeline window keeps the rows it still needs.
/// The scalar twin of the NEON move, and the move of the portable path.
pub fn move_to_front(
    buf: &mut [f32],
    planes: usize,
    stride: usize,
    from: usize,
    len: usize,
) -> Result<(), KernelError> {
    check_move(buf.len(), planes, stride, from, len)?;
    if len == 0 || from == 0 {
        return Ok(());
    }
    for p in 0..planes {
        let at = p * stride;
        let plane = buf
            .get_mut(at..at + from + len)
            .ok_or_else(|| len_err("move_to_front"))?;
        // Pieces of at most `from` floats never overlap their destination, so
        // each is a plain copy (`memcpy`), as the engine's moves were before they
        // became a kernel; x86-64 timings showed no difference against one
        // `copy_within` per plane within this host's noise.
        let mut done = 0;
        while done < len {
            let n = from.min(len - done);
            let (dst, src) = plane.split_at_mut(done + from);
            dst[done..done + n].copy_from_slice(&src[..n]);
            done += n;
        }
    }
    Ok(())
}

/// `x = max(x, 0)`, NaN propagating (see [`super::relu`]).
pub fn relu_in_place(x: &mut [f32]) {
    for v in x {
        *v = super::relu(*v);
    }
}

/// Per channel `out = x * scale[c] + shift[c]` (a BatchNorm that could not be
/// folded), then ReLU if asked. Both buffers use the layout of `planes`.
pub fn affine(
    planes: &Planes,
    scale: &[f32],
    shift: &[f32],
    relu: bool,
    input: &[f32],
    output: &mut [f32],
) -> Result<(), KernelError> {
    planes.check("affine", input)?;
    planes.check("affine", output)?;
    if scale.len() < planes.channels || shift.len() < planes.channels {
        return Err(len_err("affine"));
    }
    for c in 0..planes.channels {
        let src = &input[c * planes.stride..][..planes.hw];
        let dst = &mut output[c * planes.stride..][..planes.hw];
        for (d, &s) in dst.iter_mut().zip(src) {
            let v = s * scale[c] + shift[c];
            *d = if relu { super::relu(v) } else { v };
        }
    }
    Ok(())
}

/// Plane copy through a table: output plane `i` is input plane `table[i]`. An
/// explicit channel shuffle, used only where no consumer can absorb it.
pub fn permute(
    planes: &Planes,
    table: &[u32],
    input: &[f32],
    output: &mut [f32],
) -> Result<(), KernelError> {
    let out_planes = Planes {
        channels: table.len(),
        ..*planes
    };
    planes.check("permute", input)?;
    out_planes.check("permute", output)?;
    for (i, &src) in table.iter().enumerate() {
        if src as usize >= planes.channels {
            return Err(KernelError::Shape {
                kernel: "permute",
                what: "table entry past the input planes".into(),
            });
        }
        let from = &input[src as usize * planes.stride..][..planes.hw];
        output[i * planes.stride..][..planes.hw].copy_from_slice(from);
    }
    Ok(())
}

/// Numerically stable softmax in place.
pub fn softmax_in_place(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    for v in x.iter_mut() {
        *v /= sum;
    }
}
