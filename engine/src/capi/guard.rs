//! The boundary guard (every exported function's body runs under `catch_unwind`)
//! and the per-thread last error message.

use super::status::{Failure, SnStatus};
use std::cell::RefCell;
use std::ffi::{c_char, c_int, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

thread_local! {
    /// The message of the last failed call on this thread ("" before any failure).
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// Stores `message` as this thread's last error (interior NULs become spaces).
fn set_last_error(message: &str) {
    let text = CString::new(message.replace('\0', " ")).unwrap_or_default();
    // `try_with` fails only while the thread is being torn down: nothing to keep.
    let _ = LAST_ERROR.try_with(|e| {
        if let Ok(mut e) = e.try_borrow_mut() {
            *e = text;
        }
    });
}

/// The text of a panic payload.
fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}

/// Runs `body`, turning its failure into a status code and the thread's last error,
/// and a panic into [`SnStatus::ErrInternal`] (the panic does not cross into C).
pub(super) fn guard(body: impl FnOnce() -> Result<(), Failure>) -> SnStatus {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => SnStatus::Ok,
        Ok(Err(f)) => {
            set_last_error(&f.message);
            f.status
        }
        Err(payload) => {
            set_last_error(&format!("internal error: panic: {}", panic_text(&*payload)));
            // Dropping a payload could itself panic; keep that inside too.
            let _ = catch_unwind(AssertUnwindSafe(move || drop(payload)));
            SnStatus::ErrInternal
        }
    }
}

/// Runs `body`, which returns a pointer, returning `fallback` if it panics.
pub(super) fn guard_ptr(
    fallback: *const c_char,
    body: impl FnOnce() -> *const c_char,
) -> *const c_char {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or(fallback)
}

/// The message of the last call on the calling thread that failed: a NUL-terminated
/// string owned by the library, valid until the next failing call on this thread.
/// Empty before any failure; successful calls leave it unchanged. Never NULL.
#[no_mangle]
pub extern "C" fn sn_last_error() -> *const c_char {
    guard_ptr(c"".as_ptr(), || {
        LAST_ERROR
            .try_with(|e| e.try_borrow().map(|s| s.as_ptr()).unwrap_or(c"".as_ptr()))
            .unwrap_or(c"".as_ptr())
    })
}

/// A static description of a status code (`"unknown status"` for a value that is
/// not one). Never NULL.
#[no_mangle]
pub extern "C" fn sn_status_message(status: c_int) -> *const c_char {
    guard_ptr(c"unknown status".as_ptr(), || {
        SnStatus::from_code(status).map_or(c"unknown status".as_ptr(), |s| s.message().as_ptr())
    })
}

/// The library version (`"MAJOR.MINOR.PATCH"`), static. Never NULL.
#[no_mangle]
pub extern "C" fn sn_version() -> *const c_char {
    guard_ptr(c"?".as_ptr(), || {
        concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    fn last() -> String {
        // SAFETY: `sn_last_error` returns a live NUL-terminated string; copied at once.
        unsafe { CStr::from_ptr(sn_last_error()) }
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn a_panic_becomes_an_internal_error() {
        let st = guard(|| panic!("boom {}", 42));
        assert_eq!(st, SnStatus::ErrInternal);
        assert_eq!(last(), "internal error: panic: boom 42");
        let st = guard(|| std::panic::panic_any(7u8));
        assert_eq!(st, SnStatus::ErrInternal);
        assert_eq!(last(), "internal error: panic: non-string panic payload");
        assert_eq!(
            guard_ptr(c"fallback".as_ptr(), || panic!("x")),
            c"fallback".as_ptr()
        );
    }

    #[test]
    fn failures_set_the_message_and_nuls_are_kept_out() {
        let st = guard(|| Err(Failure::new(SnStatus::ErrSize, "a\0b")));
        assert_eq!(st, SnStatus::ErrSize);
        assert_eq!(last(), "a b");
        assert_eq!(guard(|| Ok(())), SnStatus::Ok);
        assert_eq!(last(), "a b");
    }
}
