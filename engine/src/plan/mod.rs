//! The planner: lowers a [`Graph`] into the fused op list a session runs. One small
//! pass per idea, each tested on its own, in this order:
//! 1. [`fused::Fused::from_graph`]: classify nodes into kernels (pointwise,
//!    depthwise, direct conv, ...), BatchNorm as a per-channel affine, a channel
//!    shuffle as a plane permutation;
//! 2. [`fold_bn`]: fold an affine into the conv that produces its input;
//! 3. [`relu`]: fuse ReLU into the producer's epilogue, drop it where the input is
//!    provably non-negative, push it through a concat into its producers;
//! 4. [`residual`]: fuse `relu(x + conv(y))` into the conv's epilogue, in place on x;
//! 5. [`shuffle`]: make permutations free: absorb them into a pointwise conv's
//!    index table or a classifier's columns, pushing them through per-channel ops
//!    (whose parameters are permuted instead); only a permutation no consumer can
//!    absorb stays, as an explicit copy;
//! 6. [`gap_fc`]: fuse global average pooling with the classifier;
//! 7. [`dw_bias`]: hand a depthwise conv's bias to the pointwise conv reading it;
//! 8. [`offset`]: chain in-place residual units through per-channel offsets, so
//!    their convs add no bias and clamp at a per-channel floor;
//! 9. [`emit`]: place values in buffers (zero-copy concat, in-place residuals and
//!    ReLU), pack weights, and produce the validated [`LoweredModel`].

pub mod dw_bias;
pub mod emit;
pub mod fold_bn;
pub mod fused;
pub mod gap_fc;
pub mod offset;
pub mod relu;
pub mod residual;
pub mod shuffle;

use crate::graph::{Graph, GraphError};
use crate::program::{LoweredModel, ProgramError};

/// Why a graph could not be lowered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The graph itself is invalid.
    #[error(transparent)]
    Graph(#[from] GraphError),
    /// The lowered program failed its own validation (a planner bug).
    #[error("planner produced an invalid program: {0}")]
    Invalid(#[from] ProgramError),
}

/// A pass over the fused network, by name.
type Pass = (&'static str, fn(&mut fused::Fused));

/// The passes over the fused network, in order (then [`emit`]).
const PASSES: [Pass; 7] = [
    ("fold_bn", fold_bn::run),
    ("relu", relu::run),
    ("residual", residual::run),
    ("shuffle", shuffle::run),
    ("gap_fc", gap_fc::run),
    ("dw_bias", dw_bias::run),
    ("offset", offset::run),
];

/// Lowers `graph` through every pass.
pub fn lower(graph: &Graph) -> Result<LoweredModel, PlanError> {
    let mut f = fused::Fused::from_graph(graph)?;
    for (_, pass) in PASSES {
        pass(&mut f);
    }
    emit::run(&f)
}

/// What the passes' tests share.
#[cfg(test)]
pub(crate) mod test_support {
    use super::{fused, PASSES};

    /// ShuffleNet g = 3 at scale 0.25 (8 classes) through the passes before the
    /// one named `pass`: what a pass's tests start from.
    pub(crate) fn fused_before(pass: &str) -> Result<fused::Fused, Box<dyn std::error::Error>> {
        let g = crate::family::build(8, 0.25, 3)?;
        let mut f = fused::Fused::from_graph(&g)?;
        for (_, run) in PASSES.iter().take_while(|(name, _)| *name != pass) {
            run(&mut f);
        }
        Ok(f)
    }
}
