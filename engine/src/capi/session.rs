//! Session handles: a model bound to one input size, with its working memory.

use super::guard::guard;
use super::model::SnModel;
use super::ptr;
use super::status::{Failure, SnStatus};
use crate::session::{Session, SessionOptions};

/// A model bound to one input size (`sn_session` in the header, opaque to C).
/// Used by one thread at a time.
pub struct SnSession {
    session: Session,
}

/// Creates a session running `model` on `height x width` inputs with `threads`
/// worker threads (1 = the caller's thread; at most 256). Working memory is
/// allocated here (at most 1 GiB); running allocates nothing.
///
/// # Safety
/// `model` is NULL or a live handle; `out_session` is NULL or valid for a write of a
/// pointer.
#[no_mangle]
pub unsafe extern "C" fn sn_session_create(
    model: *const SnModel,
    height: usize,
    width: usize,
    threads: usize,
    out_session: *mut *mut SnSession,
) -> SnStatus {
    guard(|| {
        // SAFETY: `out_session` is NULL or writable (contract); NULL is reported.
        unsafe { ptr::write(out_session, std::ptr::null_mut(), "out_session") }?;
        // SAFETY: `model` is NULL (reported) or a live handle (contract).
        let m = unsafe { ptr::as_ref(model, "model") }?;
        let options = SessionOptions {
            threads,
            ..SessionOptions::default()
        };
        let session = Session::new(m.model().clone(), height, width, options)?;
        let handle = Box::into_raw(Box::new(SnSession { session }));
        // SAFETY: as above; the write cannot fail now (checked at the start).
        unsafe { ptr::write(out_session, handle, "out_session") }
    })
}

/// Runs one inference. `input` holds `input_len` floats in the model's layout
/// (`input_len` must equal `sn_session_input_len`); the result is written to the
/// first `sn_session_output_len` floats of `output`, which holds
/// `output_capacity` floats. Input and output must not overlap.
///
/// # Safety
/// `session` is NULL or a live handle no other thread is using; `input` is NULL or
/// readable for `input_len` floats; `output` is NULL or writable for
/// `output_capacity` floats.
#[no_mangle]
pub unsafe extern "C" fn sn_session_run(
    session: *mut SnSession,
    input: *const f32,
    input_len: usize,
    output: *mut f32,
    output_capacity: usize,
) -> SnStatus {
    guard(|| {
        // SAFETY: NULL (reported) or a live handle used only by this thread (contract).
        let s = unsafe { ptr::as_mut(session, "session") }?;
        ptr::check_buffer(input, input_len, "input")?;
        ptr::check_buffer(output, output_capacity, "output")?;
        let bytes = |n: usize| n.saturating_mul(std::mem::size_of::<f32>());
        let (i0, o0) = (input as usize, output as usize);
        let (i1, o1) = (
            i0.saturating_add(bytes(input_len)),
            o0.saturating_add(bytes(output_capacity)),
        );
        if i0 < o1 && o0 < i1 {
            return Err(Failure::new(
                SnStatus::ErrInvalidArgument,
                "input and output buffers overlap",
            ));
        }
        // SAFETY: readable for `input_len` floats (contract); disjoint from `output`
        // (checked above), so nothing mutates it during the call.
        let x = unsafe { ptr::slice(input, input_len, "input") }?;
        // SAFETY: writable for `output_capacity` floats (contract), disjoint from
        // `input` (checked above).
        let y = unsafe { ptr::slice_mut(output, output_capacity, "output") }?;
        s.session.run(x, y).map_err(Failure::from)
    })
}

/// Borrows the session behind a handle.
///
/// # Safety
/// `session` is NULL or a live handle.
unsafe fn handle<'a>(session: *const SnSession) -> Result<&'a Session, Failure> {
    // SAFETY: forwarded contract.
    unsafe { ptr::as_ref(session, "session") }.map(|s| &s.session)
}

/// Writes the number of floats a run reads (`channels * height * width`).
///
/// # Safety
/// `session` is NULL or a live handle; `out_len` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn sn_session_input_len(
    session: *const SnSession,
    out_len: *mut usize,
) -> SnStatus {
    guard(|| {
        // SAFETY: forwarded contract.
        let s = unsafe { handle(session) }?;
        // SAFETY: NULL (reported) or writable by the contract.
        unsafe { ptr::write(out_len, s.input_len(), "out_len") }
    })
}

/// Writes the number of floats a run writes (1000 logits for an ImageNet
/// classifier).
///
/// # Safety
/// `session` is NULL or a live handle; `out_len` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn sn_session_output_len(
    session: *const SnSession,
    out_len: *mut usize,
) -> SnStatus {
    guard(|| {
        // SAFETY: forwarded contract.
        let s = unsafe { handle(session) }?;
        // SAFETY: NULL (reported) or writable by the contract.
        unsafe { ptr::write(out_len, s.output_len(), "out_len") }
    })
}

/// Writes the output's shape: planar `channels x height x width` floats (1000 x 1 x
/// 1 for a classifier); their product is `sn_session_output_len`.
///
/// # Safety
/// `session` is NULL or a live handle; the out-parameters are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn sn_session_output_shape(
    session: *const SnSession,
    out_channels: *mut usize,
    out_height: *mut usize,
    out_width: *mut usize,
) -> SnStatus {
    guard(|| {
        // SAFETY: forwarded contract.
        let s = unsafe { handle(session) }?;
        let view = s.program().output;
        let &(h, w) = s
            .plan()
            .buffer_hw
            .get(view.buffer as usize)
            .ok_or_else(|| Failure::new(SnStatus::ErrInternal, "output buffer has no shape"))?;
        for (p, name) in [
            (out_channels, "out_channels"),
            (out_height, "out_height"),
            (out_width, "out_width"),
        ] {
            if p.is_null() {
                return Err(Failure::null(name));
            }
        }
        // SAFETY: non-NULL (checked) and writable by the contract.
        unsafe { ptr::write(out_channels, view.channels as usize, "out_channels") }?;
        // SAFETY: as above.
        unsafe { ptr::write(out_height, h, "out_height") }?;
        // SAFETY: as above.
        unsafe { ptr::write(out_width, w, "out_width") }
    })
}

/// Frees the session `*session` and sets `*session` to NULL (a second call on the
/// same variable does nothing). NULL `session` or `*session` is a no-op.
///
/// # Safety
/// `session` is NULL or points to NULL or to a handle from `sn_session_create` that
/// no other thread is using.
#[no_mangle]
pub unsafe extern "C" fn sn_session_free(session: *mut *mut SnSession) {
    let _ = guard(|| {
        if session.is_null() {
            return Ok(());
        }
        // SAFETY: non-NULL, and by the contract a live variable holding a handle.
        let slot = unsafe { ptr::as_mut(session, "session") }?;
        let handle = std::mem::replace(slot, std::ptr::null_mut());
        if !handle.is_null() {
            // SAFETY: a handle from `Box::into_raw` in `sn_session_create`, not yet
            // freed (its variable is set to NULL when freed), unused by other threads.
            drop(unsafe { Box::from_raw(handle) });
        }
        Ok(())
    });
}
