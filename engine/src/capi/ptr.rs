//! Checked conversions of C pointers into references and slices. The caller (an
//! exported function) passes on its own C contract: a non-NULL pointer points to
//! what the header says; these helpers reject NULL, misaligned pointers and lengths
//! no allocation can have, so those are status codes rather than undefined behaviour.

use super::status::{Failure, SnStatus};

/// `p` as a shared reference, or a NULL-pointer failure naming `what`.
///
/// # Safety
/// If `p` is not NULL and is aligned it must point to a live `T` that nothing
/// mutates for `'a`.
pub(super) unsafe fn as_ref<'a, T>(p: *const T, what: &str) -> Result<&'a T, Failure> {
    if p.is_null() {
        return Err(Failure::null(what));
    }
    if !p.is_aligned() {
        return Err(Failure::new(
            SnStatus::ErrInvalidArgument,
            format!("{what} is misaligned"),
        ));
    }
    // SAFETY: non-NULL and aligned (checked above); the caller guarantees it points
    // to a live, unmutated `T` for 'a.
    Ok(unsafe { &*p })
}

/// `p` as an exclusive reference, or a NULL-pointer failure naming `what`.
///
/// # Safety
/// If `p` is not NULL and is aligned it must point to a live `T` that nothing else
/// accesses for `'a`.
pub(super) unsafe fn as_mut<'a, T>(p: *mut T, what: &str) -> Result<&'a mut T, Failure> {
    // SAFETY: forwarded contract (the shared check only reads the address).
    unsafe { as_ref(p, what) }?;
    // SAFETY: non-NULL and aligned (checked by `as_ref`); the caller guarantees it is
    // a live `T` nothing else accesses for 'a.
    Ok(unsafe { &mut *p })
}

/// Writes `value` to the out-parameter `p`.
///
/// # Safety
/// If `p` is not NULL and is aligned it must be valid for a write of a `T`.
pub(super) unsafe fn write<T: Copy>(p: *mut T, value: T, what: &str) -> Result<(), Failure> {
    if p.is_null() {
        return Err(Failure::null(what));
    }
    if !p.is_aligned() {
        return Err(Failure::new(
            SnStatus::ErrInvalidArgument,
            format!("{what} is misaligned"),
        ));
    }
    // SAFETY: non-NULL and aligned (checked above), valid for writes by the caller's
    // contract; `T: Copy` so the old value needs no drop.
    unsafe { p.write(value) };
    Ok(())
}

/// Checks a buffer's pointer and length before it is turned into a slice.
pub(super) fn check_buffer<T>(p: *const T, len: usize, what: &str) -> Result<(), Failure> {
    if p.is_null() {
        return Err(Failure::null(what));
    }
    if !p.is_aligned() {
        return Err(Failure::new(
            SnStatus::ErrInvalidArgument,
            format!(
                "{what} is not aligned to {} bytes",
                std::mem::align_of::<T>()
            ),
        ));
    }
    let too_long = len
        .checked_mul(std::mem::size_of::<T>())
        .is_none_or(|bytes| bytes > isize::MAX as usize);
    if too_long {
        return Err(Failure::new(
            SnStatus::ErrInvalidArgument,
            format!("{what}: {len} elements is larger than any buffer can be"),
        ));
    }
    Ok(())
}

/// The `len` elements at `p`.
///
/// # Safety
/// If `p` is not NULL and aligned it must be valid for reads of `len` elements that
/// nothing mutates for `'a`.
pub(super) unsafe fn slice<'a, T>(p: *const T, len: usize, what: &str) -> Result<&'a [T], Failure> {
    check_buffer(p, len, what)?;
    // SAFETY: non-NULL, aligned, `len * size_of::<T>() <= isize::MAX` (checked);
    // readable and unmutated for 'a by the caller's contract.
    Ok(unsafe { std::slice::from_raw_parts(p, len) })
}

/// The `len` elements at `p`, writable.
///
/// # Safety
/// If `p` is not NULL and aligned it must be valid for reads and writes of `len`
/// elements that nothing else accesses for `'a`.
pub(super) unsafe fn slice_mut<'a, T>(
    p: *mut T,
    len: usize,
    what: &str,
) -> Result<&'a mut [T], Failure> {
    check_buffer(p, len, what)?;
    // SAFETY: non-NULL, aligned, `len * size_of::<T>() <= isize::MAX` (checked);
    // exclusively accessible for 'a by the caller's contract.
    Ok(unsafe { std::slice::from_raw_parts_mut(p, len) })
}
