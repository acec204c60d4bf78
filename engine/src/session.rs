//! A session binds a model to one input size and owns the arena: creating it runs
//! the arena scheduler; running it allocates nothing.
//!
//! Thread rules: a [`Model`] is `Send + Sync` and may be shared (through an `Arc`)
//! by sessions on many threads; a `Session` is `Send` and used by one thread at a
//! time (`run` takes `&mut self`).

use crate::exec::{self, ExecPlan, SessionError, DEFAULT_MAX_ARENA_BYTES};
use crate::model::Model;
use crate::program::Program;
use crate::Error;
use std::sync::Arc;

/// How a session is created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionOptions {
    /// Worker threads (1 = run on the caller's thread).
    pub threads: usize,
    /// Refuse input sizes whose arena would exceed this many bytes.
    pub max_arena_bytes: usize,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            threads: 1,
            max_arena_bytes: DEFAULT_MAX_ARENA_BYTES,
        }
    }
}

/// A model bound to an input size, with its arena.
pub struct Session {
    model: Arc<Model>,
    plan: ExecPlan,
    arena: Vec<f32>,
    options: SessionOptions,
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
        if !(1..=256).contains(&options.threads) {
            return Err(SessionError::Threads(options.threads).into());
        }
        let plan = ExecPlan::new(model.program(), height, width, options.max_arena_bytes)?;
        let mut arena = Vec::new();
        arena
            .try_reserve_exact(plan.layout.peak)
            .map_err(|_| SessionError::ArenaTooLarge {
                h: height,
                w: width,
                needed: plan.layout.peak as u64 * 4,
                limit: options.max_arena_bytes as u64,
            })?;
        arena.resize(plan.layout.peak, 0.0);
        Ok(Session {
            model,
            plan,
            arena,
            options,
        })
    }

    /// Runs one inference: `input` holds `C * H * W` values in the model's input
    /// layout; the result (e.g. 1000 logits) is written to the front of `output`.
    pub fn run(&mut self, input: &[f32], output: &mut [f32]) -> Result<(), Error> {
        exec::execute(
            &self.plan,
            self.model.program(),
            &*self.model,
            &mut self.arena,
            input,
            output,
        )
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
