//! Complexity accounting: multiply-adds (the paper's "FLOPs") and parameters per
//! node and in total, for any input size.
//!
//! Multiply-adds count convolutions and fully connected layers, as the paper does;
//! pooling, BatchNorm, ReLU and additions are not counted. Parameters count conv
//! weights and biases, BatchNorm scale and shift (2 per channel, as frameworks
//! report them) and the classifier.

use crate::graph::{Graph, Op, Shape};
use crate::Error;

/// Cost of one node.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeCost {
    /// Node name.
    pub name: String,
    /// Operator kind.
    pub kind: &'static str,
    /// Output shape.
    pub output: Shape,
    /// Multiply-adds.
    pub macs: u64,
    /// Learned parameters.
    pub params: u64,
}

/// Cost of a whole graph at one input size.
#[derive(Clone, Debug, PartialEq)]
pub struct Complexity {
    /// Per node, in execution order.
    pub nodes: Vec<NodeCost>,
    /// Total multiply-adds.
    pub macs: u64,
    /// Total parameters.
    pub params: u64,
}

impl Complexity {
    /// Multiply-adds in millions (the paper's "MFLOPs").
    pub fn mflops(&self) -> f64 {
        self.macs as f64 / 1e6
    }
}

/// Counts multiply-adds and parameters of `graph` at input size `h x w`.
pub fn analyze(graph: &Graph, h: usize, w: usize) -> Result<Complexity, Error> {
    let shapes = graph.shapes(h, w)?;
    let nodes: Vec<NodeCost> = graph
        .nodes
        .iter()
        .map(|node| {
            let out = shapes[node.output];
            let pixels = (out.h * out.w) as u64;
            let (macs, params) = match &node.op {
                Op::Conv(c) => {
                    let per_out = (c.cin / c.groups * c.kh * c.kw) as u64;
                    (
                        c.cout as u64 * per_out * pixels,
                        c.weight.len() as u64 + c.bias.as_ref().map_or(0, |b| b.len() as u64),
                    )
                }
                Op::Fc(f) => {
                    let m = (f.inputs * f.outputs) as u64;
                    (m, m + f.outputs as u64)
                }
                Op::BatchNorm(b) => (0, 2 * b.gamma.len() as u64),
                _ => (0, 0),
            };
            NodeCost {
                name: node.name.clone(),
                kind: node.op.kind(),
                output: out,
                macs,
                params,
            }
        })
        .collect();
    Ok(Complexity {
        macs: nodes.iter().map(|n| n.macs).sum(),
        params: nodes.iter().map(|n| n.params).sum(),
        nodes,
    })
}

/// Multiply-adds of one step of a lowered program bound to an input size, counted
/// as for the graph (convolutions and fully connected layers only).
pub fn step_macs(step: &crate::program::Step, shape: &crate::exec::StepShape) -> u64 {
    use crate::program::Step;
    let out_px = (shape.output.0 * shape.output.1) as u64;
    match *step {
        Step::Pointwise { groups, k, m, .. } => groups as u64 * m as u64 * k as u64 * out_px,
        Step::Depthwise { output, .. } => 9 * output.channels as u64 * out_px,
        Step::Conv {
            groups,
            kh,
            kw,
            input,
            output,
            ..
        } => {
            output.channels as u64
                * (input.channels / groups.max(1)) as u64
                * (kh * kw) as u64
                * out_px
        }
        Step::GapFc { input, output, .. } | Step::Fc { input, output, .. } => {
            input.channels as u64 * output.channels as u64
        }
        _ => 0,
    }
}

/// Learned parameters of a lowered program: every f32 tensor a conv or classifier
/// step uses, excluding the zero rows that pad weight panels (BatchNorm is folded,
/// so it adds nothing).
pub fn program_params(program: &crate::program::Program) -> u64 {
    use crate::program::Step;
    program
        .steps
        .iter()
        .map(|s| match *s {
            Step::Pointwise { groups, k, m, .. } => (groups * m) as u64 * (k as u64 + 1),
            Step::Affine { input, .. } => 2 * input.channels as u64,
            _ => s
                .tensors()
                .iter()
                .filter(|(_, d, _)| *d == crate::program::DType::F32)
                .map(|(_, _, n)| *n as u64)
                .sum(),
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::family;

    fn mflops(g: usize, s: f32) -> f64 {
        let graph = family::build(g, s, 1).unwrap();
        analyze(&graph, 224, 224).unwrap().mflops()
    }

    fn within(got: f64, want: f64, tol: f64) -> bool {
        (got - want).abs() <= tol * want
    }

    #[test]
    fn one_x_matches_table_1() {
        // Paper, Table 1, "Complexity" row for 1x at 224x224.
        for (g, want) in [(1, 143.0), (2, 140.0), (3, 137.0), (4, 133.0), (8, 137.0)] {
            let got = mflops(g, 1.0);
            assert!(within(got, want, 0.05), "g={g}: {got:.1} vs {want}");
            assert!(within(got, 140.0, 0.05), "g={g}: {got:.1} vs about 140");
        }
    }

    #[test]
    fn released_g3_models() {
        assert!(within(mflops(3, 0.5), 38.0, 0.05), "{}", mflops(3, 0.5));
        assert!(within(mflops(3, 2.0), 524.0, 0.05), "{}", mflops(3, 2.0));
    }

    #[test]
    fn lowered_program_has_the_graph_macs() {
        let graph = family::build(3, 0.5, 1).unwrap();
        let lowered = crate::plan::lower(&graph).unwrap();
        let plan =
            crate::exec::ExecPlan::new(&lowered.program, 224, 224, &Default::default()).unwrap();
        let macs: u64 = lowered
            .program
            .steps
            .iter()
            .zip(&plan.shapes)
            .map(|(s, sh)| step_macs(s, sh))
            .sum();
        assert_eq!(macs, analyze(&graph, 224, 224).unwrap().macs);
        // Folding drops BatchNorm's two parameters per channel, adds conv biases.
        let params = program_params(&lowered.program);
        assert!(params < analyze(&graph, 224, 224).unwrap().params);
    }

    #[test]
    fn macs_scale_with_pixels() {
        let graph = family::build(3, 0.25, 1).unwrap();
        let a = analyze(&graph, 64, 64).unwrap();
        let b = analyze(&graph, 128, 128).unwrap();
        let fc = 1000 * graph.values[graph.nodes[graph.nodes.len() - 2].output].channels as u64;
        assert_eq!((b.macs - fc), 4 * (a.macs - fc));
        assert_eq!(a.params, b.params);
    }
}
