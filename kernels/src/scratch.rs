//! Per-thread scratch vectors for kernels that need working memory. A kernel takes
//! a vector from its thread's pool and gives it back when done, so after the first
//! calls (which size the pool) no kernel call allocates: a session's run stays
//! allocation-free.

use std::cell::RefCell;
use std::ops::{Deref, DerefMut};
use std::thread::LocalKey;

/// Element types with a per-thread pool.
pub trait Pooled: Clone + 'static {
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
}

/// A vector of `len` copies of `fill`, reusing the pooled vector whose capacity
/// fits best (allocating only if none is large enough).
pub fn take<T: Pooled>(len: usize, fill: T) -> Scratch<T> {
    let mut v = best_fit(len);
    v.clear();
    v.resize(len, fill);
    Scratch { v }
}

/// A vector of `len` elements for a caller that writes every element before it
/// reads it: the pooled vector is reused as it is (stale values from its last
/// loan), and only the part it grows by is filled with `fill`. Saves the fill
/// pass of [`take`] on large working buffers.
pub fn take_overwritten<T: Pooled>(len: usize, fill: T) -> Scratch<T> {
    let mut v = best_fit(len);
    v.truncate(len);
    v.resize(len, fill);
    Scratch { v }
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
        let v = std::mem::take(&mut self.v);
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
        assert_eq!(&c[4..], &[-1.0; 8], "the grown part is filled");
    }
}
