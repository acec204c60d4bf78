//! Per-thread scratch vectors for kernels that need working memory. A kernel takes
//! a vector from its thread's pool and gives it back when done, so after the first
//! calls (which size the pool) no kernel call allocates: a session's run stays
//! allocation-free.
//!
//! A vector goes back to the pool at the longest length it was ever initialised
//! to (its high-water mark), not at its last loan's length: a later
//! [`take_overwritten`] of up to that length then fills nothing. (Before, a small
//! loan left a large vector short, and the next pointwise call that took it
//! refilled the difference. Callgrind, x86-64 AVX2 path, g = 3 at 224x224,
//! `memset` instructions per inference: 0.5x 0.160M -> 0.037M of 15.4M, 2x
//! 3.89M -> 0.25M of 162.0M; perf on AVX-512, 2x: `memset` 0.58% -> 0.05% of
//! the time.)

use std::cell::RefCell;
use std::ops::{Deref, DerefMut};
use std::thread::LocalKey;

/// Element types with a per-thread pool (plain values: copying and dropping them
/// never touches memory, which the high-water mark relies on).
pub trait Pooled: Copy + 'static {
    /// The calling thread's pool of spare vectors of this type.
    fn pool() -> &'static LocalKey<RefCell<Vec<Vec<Self>>>>;
}

macro_rules! pooled {
    ($($name:ident: $t:ty),*) => {
        thread_local! {
            $(static $name: RefCell<Vec<Vec<$t>>> = const { RefCell::new(Vec::new()) };)*
        }
        $(impl Pooled for $t {
            fn pool() -> &'static LocalKey<RefCell<Vec<Vec<Self>>>> {
                &$name
            }
        })*
    };
}

pooled!(F32: f32, BOOL: bool, USIZE: usize, PTR: *const f32);

/// A vector on loan from the thread's pool; returned to it on drop.
pub struct Scratch<T: Pooled> {
    v: Vec<T>,
    /// The buffer the vector had when lent, and how many of its elements were
    /// initialised then or by this loan.
    buf: *const T,
    high: usize,
}

impl<T: Pooled> Scratch<T> {
    /// Lends `v`, whose elements `0 .. high` of its buffer are initialised.
    fn lend(v: Vec<T>, high: usize) -> Self {
        let high = high.max(v.len());
        Scratch {
            buf: v.as_ptr(),
            v,
            high,
        }
    }
}

/// A vector of `len` copies of `fill`, reusing the pooled vector whose capacity
/// fits best (allocating only if none is large enough).
pub fn take<T: Pooled>(len: usize, fill: T) -> Scratch<T> {
    let mut v = best_fit(len);
    let high = v.len();
    v.clear();
    v.resize(len, fill);
    Scratch::lend(v, high)
}

/// A vector of `len` elements for a caller that writes every element before it
/// reads it: the pooled vector is reused as it is (stale values from earlier
/// loans), and only the part past its high-water mark is filled with `fill`.
/// Saves the fill pass of [`take`] on large working buffers.
pub fn take_overwritten<T: Pooled>(len: usize, fill: T) -> Scratch<T> {
    let mut v = best_fit(len);
    let high = v.len();
    v.truncate(len);
    v.resize(len, fill);
    Scratch::lend(v, high)
}

/// The pooled vector whose capacity fits `len` best (the largest one if none is
/// large enough, an empty one if the pool is empty or gone).
fn best_fit<T: Pooled>(len: usize) -> Vec<T> {
    T::pool()
        .try_with(|p| {
            let mut p = p.borrow_mut();
            let fit = (0..p.len())
                .filter(|&i| p[i].capacity() >= len)
                .min_by_key(|&i| p[i].capacity())
                .or_else(|| (0..p.len()).max_by_key(|&i| p[i].capacity()));
            fit.map(|i| p.swap_remove(i))
        })
        .ok()
        .flatten()
        .unwrap_or_default()
}

impl<T: Pooled> Drop for Scratch<T> {
    fn drop(&mut self) {
        let mut v = std::mem::take(&mut self.v);
        if v.as_ptr() == self.buf && v.len() < self.high && self.high <= v.capacity() {
            // SAFETY: the vector still has the buffer it was lent with, whose
            // elements 0 .. high were initialised (by earlier loans or this one):
            // shortening a vector of `Copy` elements leaves their bytes in place,
            // and nothing else writes a vector's spare capacity.
            unsafe { v.set_len(self.high) };
        }
        // During thread teardown the pool may be gone: then the vector just drops.
        let _ = T::pool().try_with(|p| {
            if let Ok(mut p) = p.try_borrow_mut() {
                p.push(v);
            }
        });
    }
}

impl<T: Pooled> Deref for Scratch<T> {
    type Target = Vec<T>;
    fn deref(&self) -> &Vec<T> {
        &self.v
    }
}

impl<T: Pooled> DerefMut for Scratch<T> {
    fn deref_mut(&mut self) -> &mut Vec<T> {
        &mut self.v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_are_reused() {
        let p = {
            let a = take(100, 1.0f32);
            assert_eq!(a.len(), 100);
            assert!(a.iter().all(|&v| v == 1.0));
            a.as_ptr()
        };
        let b = take(50, 0.0f32);
        assert_eq!(b.as_ptr(), p, "the pooled vector is reused");
        assert!(b.iter().all(|&v| v == 0.0));
        let c = take(10, 2.0f32);
        assert_ne!(c.as_ptr(), b.as_ptr());
    }

    #[test]
    fn overwritten_loans_keep_stale_values_and_fill_only_growth() {
        let p = {
            let mut a = take(8, 3.0f32);
            a[0] = 7.0;
            a.as_ptr()
        };
        {
            let b = take_overwritten(4, 0.0f32);
            assert_eq!(b.as_ptr(), p, "the pooled vector is reused");
            assert_eq!(
                &b[..],
                &[7.0, 3.0, 3.0, 3.0],
                "no fill pass over reused values"
            );
        }
        let c = take_overwritten(12, -1.0f32);
        assert_eq!(c.len(), 12);
        assert_eq!(
            &c[..],
            &[7.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, -1.0, -1.0, -1.0, -1.0],
            "the values up to the high-water mark (8) are reused, the growth filled"
        );
    }

    #[test]
    fn a_short_loan_does_not_make_the_next_long_one_refill() {
        let p = {
            let mut a = take(64, 5.0f32);
            a[63] = 9.0;
            a.as_ptr()
        };
        // A small zero-filled loan of the same vector...
        {
            let b = take(2, 0.0f32);
            assert_eq!(b.as_ptr(), p);
            assert_eq!(&b[..], &[0.0, 0.0]);
        }
        // ...leaves it at its high-water mark: an overwritten loan of 64 finds the
        // stale values instead of a fill.
        {
            let c = take_overwritten(64, -1.0f32);
            assert_eq!(c.as_ptr(), p);
            assert_eq!(c[63], 9.0, "no refill up to the high-water mark");
            assert_eq!(&c[..2], &[0.0, 0.0]);
        }
        // A loan whose vector was replaced (another buffer) goes back at its own
        // length: the new buffer's high-water mark is unknown.
        let q = {
            let mut d = take_overwritten(64, 0.0f32);
            assert_eq!(d.as_ptr(), p);
            let mut other = Vec::with_capacity(300);
            other.extend_from_slice(&[0.0, 0.0, 5.0]);
            other.extend(std::iter::repeat_n(1.0f32, 200));
            other.truncate(10);
            *d = other;
            d.as_ptr()
        };
        assert_ne!(q, p);
        let e = take_overwritten(150, -2.0f32);
        assert_eq!(e.as_ptr(), q);
        assert_eq!(
            &e[..10],
            &[0.0, 0.0, 5.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
        );
        assert!(
            e[10..].iter().all(|&v| v == -2.0),
            "past its length the new buffer is filled"
        );
    }
}
