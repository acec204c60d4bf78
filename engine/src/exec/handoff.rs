//! Row chunks handed from one pipeline segment to the next.
//!
//! A multi-threaded session cuts the row pipeline into segments, one per thread.
//! Between two segments sits a [`Handoff`]: [`SLOTS`] chunk buffers (slices of the
//! arena) that move between the producer and the consumer. The producer takes a
//! free buffer, copies the rows it just computed into it and pushes it; the
//! consumer pops the buffers in order, copies the rows into its own window and
//! gives the buffer back. Ownership of each slice moves with it, so no memory is
//! ever shared between threads; nothing allocates.
//!
//! Waiting spins briefly (the other side usually answers within microseconds),
//! then sleeps on a condition variable with a short timeout. Every wait also
//! watches a shared abort flag, raised when any segment fails, so an error on one
//! thread never leaves another waiting forever.

use super::SessionError;
use crate::Error;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Chunk buffers per handoff: how far a producer may run ahead of its consumer.
pub const SLOTS: usize = 4;

/// Lock-and-check rounds before a waiter starts sleeping.
const SPINS: usize = 2000;

/// Longest single sleep of a waiter (it then re-checks the abort flag).
const NAP: Duration = Duration::from_micros(500);

/// The error a waiter returns when another segment failed.
pub fn aborted() -> Error {
    SessionError::SegmentFailed.into()
}

/// Whether `e` is the error a waiter returns after an abort (not a cause).
pub fn is_abort(e: &Error) -> bool {
    matches!(e, Error::Session(SessionError::SegmentFailed))
}

/// Buffers in flight between two segments.
#[derive(Default)]
struct State<'a> {
    free: [Option<&'a mut [f32]>; SLOTS],
    /// Pushed chunks in order: (first row, buffer), a ring from `head`.
    full: [Option<(usize, &'a mut [f32])>; SLOTS],
    head: usize,
    len: usize,
}

/// The meeting point of a producer segment and its consumer.
#[derive(Default)]
pub struct Handoff<'a> {
    state: Mutex<State<'a>>,
    changed: Condvar,
}

impl<'a> Handoff<'a> {
    fn lock(&self) -> MutexGuard<'_, State<'a>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a chunk buffer to the free ones (at most [`SLOTS`]).
    pub fn add_buffer(&self, buf: &'a mut [f32]) -> Result<(), Error> {
        let mut s = self.lock();
        let slot = s
            .free
            .iter_mut()
            .find(|f| f.is_none())
            .ok_or_else(|| Error::Argument("too many handoff buffers".into()))?;
        *slot = Some(buf);
        Ok(())
    }

    /// Wakes every waiter (after an abort).
    pub fn wake(&self) {
        let _s = self.lock();
        self.changed.notify_all();
    }

    /// Waits until `take` finds something, the abort flag rises (error), or
    /// `patience` has passed (`None`).
    fn wait<R>(
        &self,
        abort: &AtomicBool,
        patience: Option<Duration>,
        mut take: impl FnMut(&mut State<'a>) -> Option<R>,
    ) -> Result<Option<R>, Error> {
        let start = Instant::now();
        let mut rounds = 0;
        let mut s = self.lock();
        loop {
            if let Some(r) = take(&mut s) {
                self.changed.notify_all();
                return Ok(Some(r));
            }
            if abort.load(Ordering::Acquire) {
                return Err(aborted());
            }
            if patience.is_some_and(|p| start.elapsed() >= p) {
                return Ok(None);
            }
            if rounds < SPINS {
                rounds += 1;
                drop(s);
                std::hint::spin_loop();
                s = self.lock();
            } else {
                s = self
                    .changed
                    .wait_timeout(s, NAP)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
        }
    }

    /// A free chunk buffer, waiting for the consumer to give one back.
    pub fn take_free(&self, abort: &AtomicBool) -> Result<&'a mut [f32], Error> {
        self.wait(abort, None, |s| s.free.iter_mut().find_map(Option::take))?
            .ok_or_else(aborted)
    }

    /// Passes a filled buffer holding rows from `first_row` on to the consumer.
    pub fn push(&self, first_row: usize, buf: &'a mut [f32]) -> Result<(), Error> {
        let mut s = self.lock();
        if s.len == SLOTS {
            return Err(Error::Argument("handoff overfull".into()));
        }
        let i = (s.head + s.len) % SLOTS;
        s.full[i] = Some((first_row, buf));
        s.len += 1;
        self.changed.notify_all();
        Ok(())
    }

    /// The oldest pushed chunk, waiting at most `patience` (forever: `None`).
    pub fn pop(
        &self,
        abort: &AtomicBool,
        patience: Option<Duration>,
    ) -> Result<Option<(usize, &'a mut [f32])>, Error> {
        self.wait(abort, patience, |s| {
            if s.len == 0 {
                return None;
            }
            let chunk = s.full[s.head].take();
            s.head = (s.head + 1) % SLOTS;
            s.len -= 1;
            chunk
        })
    }

    /// Returns a consumed buffer to the free ones.
    pub fn give_back(&self, buf: &'a mut [f32]) -> Result<(), Error> {
        self.add_buffer(buf)?;
        self.changed.notify_all();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_arrive_in_order_across_threads() {
        let mut store = [0.0f32; 4 * SLOTS];
        let h = Handoff::default();
        for b in store.chunks_exact_mut(4) {
            h.add_buffer(b).unwrap();
        }
        let abort = AtomicBool::new(false);
        let n = 50;
        let (sent, got) = rayon::join(
            || -> Result<usize, Error> {
                for r in 0..n {
                    let b = h.take_free(&abort)?;
                    b.fill(r as f32);
                    h.push(r, b)?;
                }
                Ok(n)
            },
            || -> Result<Vec<usize>, Error> {
                let mut rows = Vec::new();
                while rows.len() < n {
                    let (r, b) = h.pop(&abort, None)?.ok_or_else(aborted)?;
                    assert!(b.iter().all(|&v| v == r as f32));
                    rows.push(r);
                    h.give_back(b)?;
                }
                Ok(rows)
            },
        );
        assert_eq!(sent.unwrap(), n);
        assert_eq!(got.unwrap(), (0..n).collect::<Vec<_>>());
    }

    #[test]
    fn an_abort_releases_a_waiter() {
        let h = Handoff::default();
        let abort = AtomicBool::new(false);
        let (waited, ()) = rayon::join(
            || h.pop(&abort, None),
            || {
                abort.store(true, Ordering::Release);
                h.wake();
            },
        );
        assert!(matches!(waited, Err(e) if is_abort(&e)));
        // Patience runs out without an abort.
        let calm = AtomicBool::new(false);
        assert!(matches!(
            h.pop(&calm, Some(Duration::from_millis(1))),
            Ok(None)
        ));
        assert!(h.take_free(&abort).is_err(), "no buffers and aborted");
    }
}
