//! A session binds a model to one input size and owns the arena: creating it runs
//! the arena scheduler; running it allocates nothing.
//!
//! Thread rules: a [`Model`] is `Send + Sync` and may be shared (through an `Arc`)
//! by sessions on many threads; a `Session` is `Send` and used by one thread at a
//! time (`run` takes `&mut self`).

use crate::arena_memory::ArenaMemory;
use crate::exec::{
    self, ExecOptions, ExecPlan, SessionError, StageTimes, DEFAULT_BAND_BYTES,
    DEFAULT_MAX_ARENA_BYTES, DEFAULT_PIPELINE_MIN_BYTES, SPLIT_IN_PLACE_MIN_BYTES,
};
use crate::model::Model;
use crate::program::Program;
use crate::Error;
use std::sync::{Arc, Condvar, Mutex, PoisonError};

/// How a session is created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionOptions {
    /// Worker threads (1 = run on the caller's thread). The workers split each
    /// kernel call by their measured relative speeds (up to 16 workers; more
    /// split evenly). During a run they spin between calls rather than sleep
    /// (giving up after half a millisecond without work), so a call's parts start
    /// at once, and the worker that split a call spins until its other parts
    /// end: a session of N threads uses N cores while it runs.
    pub threads: usize,
    /// Refuse input sizes whose arena plus one input image (the session warms
    /// its kernels up on a zero image at creation) would exceed this many bytes.
    pub max_arena_bytes: usize,
    /// Stream units and the stem band by band through cache-sized buffers.
    pub stream: bool,
    /// Cache budget of one streamed chain's band buffers, in bytes.
    pub band_bytes: usize,
    /// Run the whole network as a row pipeline when a tensor has at least this
    /// many bytes, or when the plan without it would exceed `max_arena_bytes`
    /// (`usize::MAX`: never). Default: 2 MiB on ARM; on x86-64 1 GiB, in practice
    /// only over the arena limit (the pipeline measured slower there, see
    /// [`DEFAULT_PIPELINE_MIN_BYTES`]).
    /// With several threads and no `pipeline_segments`, from
    /// [`THREADED_PIPELINE_FACTOR`](crate::exec::THREADED_PIPELINE_FACTOR) times
    /// this (x86-64: 4: whole tensors scale better over threads, at the cost of a
    /// larger arena).
    pub pipeline_min_bytes: usize,
    /// With several threads, cut the row pipeline into one segment per thread
    /// (handing rows from one to the next a few dozen times per inference)
    /// instead of splitting every kernel call over the threads (a fork and join
    /// per call). Which is faster depends on the CPU: see the thread measurements
    /// in `tools/PERFORMANCE.md`. Results are the same either way.
    pub pipeline_segments: bool,
    /// With several threads: the smallest input tensor, in bytes, of a stride-1
    /// unit that all threads run at once, each on its own rows (default
    /// [`SPLIT_IN_PLACE_MIN_BYTES`]);
    /// smaller ones run on whole tensors. Results are the same either way.
    pub split_in_place_min_bytes: usize,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            threads: 1,
            max_arena_bytes: DEFAULT_MAX_ARENA_BYTES,
            stream: true,
            band_bytes: DEFAULT_BAND_BYTES,
            pipeline_min_bytes: DEFAULT_PIPELINE_MIN_BYTES,
            pipeline_segments: false,
            split_in_place_min_bytes: SPLIT_IN_PLACE_MIN_BYTES,
        }
    }
}

/// A model bound to an input size, with its arena.
pub struct Session {
    model: Arc<Model>,
    plan: ExecPlan,
    arena: ArenaMemory,
    options: SessionOptions,
    /// Worker threads, created once with the session (`None` for one thread).
    pool: Option<rayon::ThreadPool>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("h", &self.plan.h)
            .field("w", &self.plan.w)
            .field("arena_bytes", &(self.arena.len() * 4))
            .field("options", &self.options)
            .finish()
    }
}

/// Most threads a session runs on (one arena per thread is allocated up front).
pub const MAX_THREADS: usize = 256;

impl Session {
    /// Binds `model` to an `height x width` input: infers every shape, lays out the
    /// arena (refusing sizes above `options.max_arena_bytes` before allocating), and
    /// allocates it.
    pub fn new(
        model: Arc<Model>,
        height: usize,
        width: usize,
        options: SessionOptions,
    ) -> Result<Session, Error> {
        if !(1..=MAX_THREADS).contains(&options.threads) {
            return Err(SessionError::Threads(options.threads).into());
        }
        let exec_options = ExecOptions {
            max_arena_bytes: options.max_arena_bytes,
            stream: options.stream,
            band_bytes: options.band_bytes,
            pipeline_min_bytes: options.pipeline_min_bytes,
            segments: if options.pipeline_segments {
                options.threads
            } else {
                1
            },
            split_in_place_min_bytes: options.split_in_place_min_bytes,
            threads: options.threads,
        };
        let plan = ExecPlan::new(model.program(), height, width, &exec_options)?;
        let arena =
            ArenaMemory::zeroed(plan.layout.peak).ok_or_else(|| too_large(&plan, &options))?;
        let pool = if options.threads > 1 {
            let pool = exec::parallel::pool(options.threads)
                .map_err(|e| SessionError::ThreadPool(e.to_string()))?;
            Some(pool)
        } else {
            None
        };
        let mut session = Session {
            model,
            plan,
            arena,
            options,
            pool,
        };
        session.warm_up()?;
        Ok(session)
    }

    /// Runs the network twice on every thread that will run kernels, so the
    /// kernels' per-thread scratch pools reach their final size now and `run`
    /// allocates nothing. (A single-threaded session moved to another thread
    /// sizes that thread's pools on its first run.)
    ///
    /// Worker threads warm up on arenas taken from a shared stock: the session's
    /// own arena plus as many more as fit under `max_arena_bytes` next to it and
    /// the zero image (at most one per worker). A worker that finds the stock empty
    /// waits for an arena to come back, so warming up stays within the limit
    /// whatever the thread count (it used to allocate one arena per worker at
    /// once: 257 arenas for 256 threads).
    fn warm_up(&mut self) -> Result<(), Error> {
        let (peak, input_len, out_len) =
            (self.plan.layout.peak, self.input_len(), self.output_len());
        let Session {
            plan,
            model,
            arena,
            options,
            pool,
        } = self;
        let zeros = zeroed(input_len).ok_or_else(|| too_large(plan, options))?;
        let model = &**model;
        let plan = &*plan;
        let warm = |arena: &mut [f32]| -> Result<(), Error> {
            let mut out = vec![0.0; out_len];
            for _ in 0..2 {
                exec::execute(
                    plan,
                    model.program(),
                    model,
                    arena,
                    &zeros,
                    &mut out,
                    1,
                    None,
                )?;
            }
            Ok(())
        };
        let Some(pool) = pool else {
            return warm(arena.floats());
        };
        let used = plan.memory_bytes();
        let spare = (options.max_arena_bytes as u64).saturating_sub(used);
        let extra = (spare / (peak as u64 * 4).max(1))
            .min(pool.current_num_threads().saturating_sub(1) as u64);
        let mut extra_arenas = Vec::new();
        for _ in 0..extra {
            match zeroed(peak) {
                Some(a) => extra_arenas.push(a),
                // Fewer arenas only means more waiting.
                None => break,
            }
        }
        let mut arenas: Vec<&mut [f32]> = extra_arenas.iter_mut().map(|a| &mut a[..]).collect();
        arenas.push(arena.floats());
        let stock = ArenaStock {
            arenas: Mutex::new(arenas),
            returned: Condvar::new(),
        };
        pool.broadcast(|_| {
            let mut lease = stock.take();
            warm(lease.arena())
        })
        .into_iter()
        .collect()
    }

    /// Runs one inference: `input` holds `C * H * W` values in the model's input
    /// layout; the result (e.g. 1000 logits) is written to the front of `output`.
    pub fn run(&mut self, input: &[f32], output: &mut [f32]) -> Result<(), Error> {
        self.run_with(input, output, None)
    }

    /// [`Session::run`], also recording each stage's wall time into `times` (see
    /// [`exec::execute`]; stage `i` runs the steps `plan().stages[i].steps()`):
    /// a per-layer profile, as `shufflenet bench --profile` prints. Timing costs
    /// two clock reads per stage.
    pub fn run_profiled(
        &mut self,
        input: &[f32],
        output: &mut [f32],
        times: &mut StageTimes,
    ) -> Result<(), Error> {
        self.run_with(input, output, Some(times))
    }

    /// One inference in the session's pool (if it has one).
    fn run_with(
        &mut self,
        input: &[f32],
        output: &mut [f32],
        times: Option<&mut StageTimes>,
    ) -> Result<(), Error> {
        let (plan, model, arena) = (&self.plan, &*self.model, self.arena.floats());
        let threads = self.options.threads;
        let run = move || {
            let program = model.program();
            exec::execute(plan, program, model, arena, input, output, threads, times)
        };
        match &self.pool {
            Some(pool) => pool.install(|| exec::awake::with_workers_awake(threads, run)),
            None => run(),
        }
    }

    /// Values one run writes to the output.
    pub fn output_len(&self) -> usize {
        self.plan.output_len(self.model.program())
    }

    /// Values one run reads from the input.
    pub fn input_len(&self) -> usize {
        self.model.program().input.channels * self.plan.h * self.plan.w
    }

    /// The shapes and arena layout of this input size.
    pub fn plan(&self) -> &ExecPlan {
        &self.plan
    }

    /// The model's program.
    pub fn program(&self) -> &Program {
        self.model.program()
    }

    /// The model.
    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    /// Options the session was created with.
    pub fn options(&self) -> SessionOptions {
        self.options
    }
}

/// Arenas shared by the worker threads warming up (see `Session::warm_up`).
struct ArenaStock<'a> {
    arenas: Mutex<Vec<&'a mut [f32]>>,
    returned: Condvar,
}

impl<'a> ArenaStock<'a> {
    /// Takes an arena, waiting until one is free. (A poisoned lock only means a
    /// warm-up run panicked on another thread: the stock itself is still sound.)
    fn take(&self) -> Lease<'_, 'a> {
        let mut arenas = self.arenas.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(arena) = arenas.pop() {
                return Lease {
                    stock: self,
                    arena: Some(arena),
                };
            }
            arenas = self
                .returned
                .wait(arenas)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// An arena taken from an [`ArenaStock`], given back when dropped (even by a
/// panic, so that no other thread waits forever).
struct Lease<'s, 'a> {
    stock: &'s ArenaStock<'a>,
    arena: Option<&'a mut [f32]>,
}

impl Lease<'_, '_> {
    fn arena(&mut self) -> &mut [f32] {
        self.arena.as_deref_mut().unwrap_or_default()
    }
}

impl Drop for Lease<'_, '_> {
    fn drop(&mut self) {
        if let Some(arena) = self.arena.take() {
            self.stock
                .arenas
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(arena);
            self.stock.returned.notify_one();
        }
    }
}

/// The error for an allocation of the arena or the warm-up image that failed
/// (the plan already checked the two against the limit).
fn too_large(plan: &ExecPlan, options: &SessionOptions) -> SessionError {
    SessionError::ArenaTooLarge {
        h: plan.h,
        w: plan.w,
        needed: plan.memory_bytes(),
        limit: options.max_arena_bytes as u64,
    }
}

/// `len` zeros, or `None` when the allocator cannot provide them.
fn zeroed(len: usize) -> Option<Vec<f32>> {
    let mut v = Vec::new();
    v.try_reserve_exact(len).ok()?;
    v.resize(len, 0.0);
    Some(v)
}
