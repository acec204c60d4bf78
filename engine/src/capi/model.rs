//! Model handles: open from a path or a memory buffer, query the input, free.

use super::guard::{guard, guard_ptr};
use super::ptr;
use super::status::{Failure, SnLayout, SnStatus};
use crate::model::Model;
use std::ffi::{c_char, c_void, CStr, CString};
use std::path::PathBuf;
use std::sync::Arc;

/// A loaded model (`sn_model` in the header, opaque to C). Sessions hold their own
/// reference to the model, so the handle may be freed while they live.
pub struct SnModel {
    model: Arc<Model>,
    description: CString,
}

impl SnModel {
    /// The shared model.
    pub(super) fn model(&self) -> &Arc<Model> {
        &self.model
    }

    /// A new handle for `model`, owned by the caller.
    fn into_raw(model: Model) -> *mut SnModel {
        let description =
            CString::new(model.program().description.replace('\0', " ")).unwrap_or_default();
        Box::into_raw(Box::new(SnModel {
            model: Arc::new(model),
            description,
        }))
    }
}

/// A path from a C string: its bytes as they are on Unix, UTF-8 elsewhere.
fn to_path(path: &CStr) -> Result<PathBuf, Failure> {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        Ok(std::ffi::OsStr::from_bytes(path.to_bytes()).into())
    }
    #[cfg(not(unix))]
    {
        path.to_str()
            .map(PathBuf::from)
            .map_err(|_| Failure::new(SnStatus::ErrInvalidArgument, "path is not valid UTF-8"))
    }
}

/// Opens the model file at `path` (memory-mapped, validated).
///
/// # Safety
/// `path` is NULL or a NUL-terminated string; `out_model` is NULL or valid for a
/// write of a pointer.
#[no_mangle]
pub unsafe extern "C" fn sn_model_open(
    path: *const c_char,
    out_model: *mut *mut SnModel,
) -> SnStatus {
    guard(|| {
        // SAFETY: `out_model` is NULL or writable (contract); NULL is reported.
        unsafe { ptr::write(out_model, std::ptr::null_mut(), "out_model") }?;
        if path.is_null() {
            return Err(Failure::null("path"));
        }
        // SAFETY: non-NULL and NUL-terminated by the contract; not kept past this call.
        let path = to_path(unsafe { CStr::from_ptr(path) })?;
        let model = Model::open(&path)?;
        // SAFETY: as above; the write cannot fail now (checked at the start).
        unsafe { ptr::write(out_model, SnModel::into_raw(model), "out_model") }
    })
}

/// Loads a model file held in memory: the `len` bytes at `data` are copied (any
/// alignment) and validated.
///
/// # Safety
/// `data` is NULL or valid for reads of `len` bytes; `out_model` is NULL or valid
/// for a write of a pointer.
#[no_mangle]
pub unsafe extern "C" fn sn_model_from_memory(
    data: *const c_void,
    len: usize,
    out_model: *mut *mut SnModel,
) -> SnStatus {
    guard(|| {
        // SAFETY: `out_model` is NULL or writable (contract); NULL is reported.
        unsafe { ptr::write(out_model, std::ptr::null_mut(), "out_model") }?;
        if len == 0 && !data.is_null() {
            return Err(Failure::new(
                SnStatus::ErrInvalidArgument,
                "data is empty (len is 0)",
            ));
        }
        // SAFETY: `data` is NULL (reported) or readable for `len` bytes (contract).
        let bytes = unsafe { ptr::slice(data.cast::<u8>(), len, "data") }?;
        let model = Model::from_bytes(bytes)?;
        // SAFETY: as above; the write cannot fail now (checked at the start).
        unsafe { ptr::write(out_model, SnModel::into_raw(model), "out_model") }
    })
}

/// Frees the model handle `*model` and sets `*model` to NULL (so a second call on
/// the same variable does nothing). NULL `model` or `*model` is a no-op.
///
/// # Safety
/// `model` is NULL or points to NULL or to a handle from `sn_model_open` or
/// `sn_model_from_memory` that no other thread is using.
#[no_mangle]
pub unsafe extern "C" fn sn_model_free(model: *mut *mut SnModel) {
    let _ = guard(|| {
        if model.is_null() {
            return Ok(());
        }
        // SAFETY: non-NULL, and by the contract a live variable holding a handle.
        let slot = unsafe { ptr::as_mut(model, "model") }?;
        let handle = std::mem::replace(slot, std::ptr::null_mut());
        if !handle.is_null() {
            // SAFETY: a handle from `SnModel::into_raw` (Box::into_raw), not yet
            // freed (its variable is set to NULL when freed), unused by other threads.
            drop(unsafe { Box::from_raw(handle) });
        }
        Ok(())
    });
}

/// Borrows the model behind a handle.
///
/// # Safety
/// `model` is NULL or a live handle.
unsafe fn handle<'a>(model: *const SnModel) -> Result<&'a SnModel, Failure> {
    // SAFETY: forwarded contract.
    unsafe { ptr::as_ref(model, "model") }
}

/// Writes the layout of the model's input buffer to `*out_layout`.
///
/// # Safety
/// `model` is NULL or a live handle; `out_layout` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn sn_model_input_layout(
    model: *const SnModel,
    out_layout: *mut SnLayout,
) -> SnStatus {
    guard(|| {
        // SAFETY: forwarded contract.
        let m = unsafe { handle(model) }?;
        let layout = SnLayout::from(m.model.program().input.layout);
        // SAFETY: NULL (reported) or writable by the contract.
        unsafe { ptr::write(out_layout, layout, "out_layout") }
    })
}

/// Writes the number of input channels (3 for RGB) to `*out_channels`.
///
/// # Safety
/// `model` is NULL or a live handle; `out_channels` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn sn_model_input_channels(
    model: *const SnModel,
    out_channels: *mut usize,
) -> SnStatus {
    guard(|| {
        // SAFETY: forwarded contract.
        let m = unsafe { handle(model) }?;
        let c = m.model.program().input.channels;
        // SAFETY: NULL (reported) or writable by the contract.
        unsafe { ptr::write(out_channels, c, "out_channels") }
    })
}

/// Writes the input size the model was exported for, or 0 x 0 if it declares none.
///
/// # Safety
/// `model` is NULL or a live handle; `out_height`, `out_width` are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn sn_model_default_size(
    model: *const SnModel,
    out_height: *mut usize,
    out_width: *mut usize,
) -> SnStatus {
    guard(|| {
        // SAFETY: forwarded contract.
        let m = unsafe { handle(model) }?;
        let (h, w) = m.model.program().input.default_size.unwrap_or((0, 0));
        if out_width.is_null() {
            return Err(Failure::null("out_width"));
        }
        // SAFETY: NULL (reported) or writable by the contract.
        unsafe { ptr::write(out_height, h, "out_height") }?;
        // SAFETY: NULL (reported) or writable by the contract.
        unsafe { ptr::write(out_width, w, "out_width") }
    })
}

/// Writes the model's recorded preprocessing, `x = (raw - mean[c]) * scale[c]` with
/// `raw` a pixel value in [0, 255], into `mean[0..n]` and `scale[0..n]` and `n` into
/// `*out_count`; `n` is the channel count, or 0 if the model records none. If
/// `capacity < n` nothing is written to the arrays, `*out_count` is set to `n` and
/// the status is `SN_ERR_OUTPUT_CAPACITY`.
///
/// # Safety
/// `model` is NULL or a live handle; `mean` and `scale` are NULL or writable for
/// `capacity` floats; `out_count` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn sn_model_preprocess(
    model: *const SnModel,
    mean: *mut f32,
    scale: *mut f32,
    capacity: usize,
    out_count: *mut usize,
) -> SnStatus {
    guard(|| {
        // SAFETY: forwarded contract.
        let m = unsafe { handle(model) }?;
        // SAFETY: NULL (reported) or writable for `capacity` floats by the contract.
        let mean_out = unsafe { ptr::slice_mut(mean, capacity, "mean") }?;
        // SAFETY: as above.
        let scale_out = unsafe { ptr::slice_mut(scale, capacity, "scale") }?;
        let (src_mean, src_scale) = match &m.model.program().input.preprocess {
            Some(p) => (p.mean.as_slice(), p.scale.as_slice()),
            None => (&[][..], &[][..]),
        };
        let n = src_mean.len();
        if src_scale.len() != n {
            return Err(Failure::new(
                SnStatus::ErrInternal,
                "preprocessing mean and scale differ in length",
            ));
        }
        // SAFETY: NULL (reported) or writable by the contract.
        unsafe { ptr::write(out_count, n, "out_count") }?;
        if capacity < n {
            return Err(Failure::new(
                SnStatus::ErrOutputCapacity,
                format!("preprocessing has {n} channels, the arrays hold {capacity}"),
            ));
        }
        mean_out[..n].copy_from_slice(src_mean);
        scale_out[..n].copy_from_slice(src_scale);
        Ok(())
    })
}

/// The model's description (e.g. `"ShuffleNet v1 1x (g = 3)"`): a NUL-terminated
/// string valid until the handle is freed; NULL if `model` is NULL.
///
/// # Safety
/// `model` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn sn_model_description(model: *const SnModel) -> *const c_char {
    guard_ptr(std::ptr::null(), || {
        // SAFETY: forwarded contract.
        match unsafe { handle(model) } {
            Ok(m) => m.description.as_ptr(),
            Err(_) => std::ptr::null(),
        }
    })
}
