//! Rows of every plane of a planar buffer: what one thread may write when threads
//! split a kernel's output by rows instead of by channels.
//!
//! In a planar buffer the rows `lo..hi` of all planes are not one slice, so two
//! threads writing different rows of the same planes cannot each hold a
//! `&mut [f32]`. A [`PlaneRows`] is an exclusive borrow of a window of floats
//! `lo..hi` inside every plane (`stride` floats apart) of one buffer; splitting
//! one at a row boundary ([`PlaneRows::split_at`]) gives two with disjoint
//! windows, which can go to different threads. Kernels write through it only
//! after checking that every run they write lies inside the window.

use crate::KernelError;
use std::marker::PhantomData;
use std::ops::Range;

/// Floats `window` of every plane of a buffer, borrowed exclusively.
#[derive(Debug)]
pub struct PlaneRows<'a> {
    ptr: *mut f32,
    len: usize,
    stride: usize,
    window: Range<usize>,
    buf: PhantomData<&'a mut [f32]>,
}

// SAFETY: a `PlaneRows` is an exclusive borrow of the floats in its window of
// each plane (no other `PlaneRows` of the same buffer overlaps them, and the
// buffer itself stays borrowed for 'a), so moving it to another thread is as
// safe as moving a `&mut [f32]`.
unsafe impl Send for PlaneRows<'_> {}

impl<'a> PlaneRows<'a> {
    /// All of `buf` as planes `stride` floats apart (the last may be shorter).
    pub fn new(buf: &'a mut [f32], stride: usize) -> Result<PlaneRows<'a>, KernelError> {
        if stride == 0 {
            return Err(shape("plane rows", "plane stride must be positive"));
        }
        Ok(PlaneRows {
            ptr: buf.as_mut_ptr(),
            len: buf.len(),
            stride,
            window: 0..stride,
            buf: PhantomData,
        })
    }

    /// Cuts the window at float `at` of each plane: the first part keeps
    /// `lo..at`, the second `at..hi`.
    pub fn split_at(self, at: usize) -> Result<(PlaneRows<'a>, PlaneRows<'a>), KernelError> {
        if !(self.window.start..=self.window.end).contains(&at) {
            return Err(shape("plane rows", "split outside the window"));
        }
        let part = |window| PlaneRows {
            window,
            buf: PhantomData,
            ..self
        };
        Ok((part(self.window.start..at), part(at..self.window.end)))
    }

    /// The floats of each plane this part covers.
    pub fn window(&self) -> Range<usize> {
        self.window.clone()
    }

    /// Floats from one plane to the next.
    pub fn stride(&self) -> usize {
        self.stride
    }

    /// Floats of the whole buffer.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the buffer is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// This part of plane `c` (cut at the buffer's end), if the plane exists.
    pub fn plane(&mut self, c: usize) -> Option<&mut [f32]> {
        let start = c.checked_mul(self.stride)?.checked_add(self.window.start)?;
        if start >= self.len {
            return None;
        }
        let end = (start + self.window.len()).min(self.len);
        // SAFETY: `start..end` is inside the buffer and inside this part's
        // window of plane `c`, which no other part overlaps; the `&mut self`
        // borrow keeps this part from handing it out twice at once.
        Some(unsafe { std::slice::from_raw_parts_mut(self.ptr.add(start), end - start) })
    }

    /// Checks that floats `start .. start + count` of planes `0..planes` lie
    /// inside the window and the buffer, for a kernel named `kernel`.
    pub(crate) fn check_runs(
        &self,
        kernel: &'static str,
        start: usize,
        count: usize,
        planes: usize,
    ) -> Result<(), KernelError> {
        let outside = || shape(kernel, "run outside its plane rows");
        if count == 0 || planes == 0 {
            return Ok(());
        }
        let end = start.checked_add(count).ok_or_else(outside)?;
        let last = (planes - 1)
            .checked_mul(self.stride)
            .and_then(|o| o.checked_add(end))
            .ok_or_else(outside)?;
        if start < self.window.start || end > self.window.end || last > self.len {
            return Err(outside());
        }
        Ok(())
    }

    /// The buffer's first float, for a kernel that has checked its runs with
    /// `check_runs`.
    pub(crate) fn as_mut_ptr(&mut self) -> *mut f32 {
        self.ptr
    }

    /// These rows as a kernel's input, for a kernel that has checked its runs
    /// with `check_runs`.
    pub(crate) fn as_input(&self) -> InputPlanes {
        InputPlanes {
            ptr: self.ptr,
            len: self.len,
            row_end: self.window.end,
        }
    }
}

/// Input planes a kernel reads from: a whole slice, or the rows of a
/// [`PlaneRows`] (whose floats past the window other threads may be writing).
#[derive(Clone, Copy, Debug)]
pub(crate) struct InputPlanes {
    /// The buffer's first float.
    pub ptr: *const f32,
    /// Floats of the buffer.
    // (Only NEON's pointwise tail reads past its runs and needs these bounds.)
    #[cfg_attr(not(target_arch = "aarch64"), allow(dead_code))]
    pub len: usize,
    /// End of the floats of each plane that may be read: a kernel reading past
    /// its runs (a vector's spare lanes) stays below it.
    #[cfg_attr(not(target_arch = "aarch64"), allow(dead_code))]
    pub row_end: usize,
}

impl InputPlanes {
    /// All of `input`: every float may be read.
    pub(crate) fn of(input: &[f32]) -> InputPlanes {
        InputPlanes {
            ptr: input.as_ptr(),
            len: input.len(),
            row_end: usize::MAX,
        }
    }
}

fn shape(kernel: &'static str, what: &str) -> KernelError {
    KernelError::Shape {
        kernel,
        what: what.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_cover_their_rows_of_every_plane_once() {
        let mut buf: Vec<f32> = vec![0.0; 3 * 10 - 4];
        let all = PlaneRows::new(&mut buf, 10).unwrap();
        let (mut top, rest) = all.split_at(4).unwrap();
        let (mut mid, mut bottom) = rest.split_at(7).unwrap();
        assert!(top.window() == (0..4) && mid.window() == (4..7));
        assert!(bottom.window() == (7..10));
        std::thread::scope(|s| {
            for (part, v) in [(&mut top, 1.0), (&mut mid, 2.0), (&mut bottom, 3.0)] {
                s.spawn(move || {
                    for c in 0..3 {
                        // (The bottom part's third plane is past the end.)
                        if let Some(p) = part.plane(c) {
                            p.fill(v);
                        }
                    }
                    assert!(part.plane(3).is_none());
                });
            }
        });
        let want: Vec<f32> = (0..26)
            .map(|i| match i % 10 {
                0..4 => 1.0,
                4..7 => 2.0,
                _ => 3.0,
            })
            .collect();
        assert_eq!(buf, want);
    }

    #[test]
    fn runs_outside_the_window_or_buffer_are_refused() {
        let mut buf = vec![0.0f32; 25];
        let (top, bottom) = PlaneRows::new(&mut buf, 10).unwrap().split_at(5).unwrap();
        assert!(top.check_runs("t", 0, 5, 3).is_ok());
        assert!(top.check_runs("t", 1, 5, 1).is_err());
        assert!(bottom.check_runs("t", 4, 2, 1).is_err());
        assert!(bottom.check_runs("t", 5, 5, 2).is_ok());
        assert!(
            bottom.check_runs("t", 5, 5, 3).is_err(),
            "third plane ends at 25"
        );
        assert!(bottom.check_runs("t", 5, 0, 9).is_ok());
        assert!(bottom.split_at(3).is_err());
        assert!(PlaneRows::new(&mut buf, 0).is_err());
    }
}
