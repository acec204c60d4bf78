//! Depthwise bias folding: a depthwise conv without ReLU whose only reader is a
//! pointwise conv hands its bias on, `W (h + b) + c = W h + (W b + c)`, and keeps
//! a zero bias. Its padding pads its input, so every output carries the bias
//! exactly once and the fold is exact (up to rounding). A zero-bias depthwise
//! conv starts each output from its first product instead of a copy of the bias:
//! the NEON kernels save one instruction per output vector.

use super::fused::{Fused, Kind};

/// Runs the pass.
pub fn run(f: &mut Fused) {
    for d in 0..f.nodes.len() {
        let node = &f.nodes[d];
        let Kind::Depthwise { bias, .. } = &node.kind else {
            continue;
        };
        let out = node.output;
        if node.relu || node.residual.is_some() || !f.single_use(out) {
            continue;
        }
        let p = f.readers(out)[0];
        let reader = &f.nodes[p];
        let Kind::Pointwise {
            groups,
            weight,
            in_rows,
            ..
        } = &reader.kind
        else {
            continue;
        };
        if reader.inputs.first() != Some(&out) || reader.residual == Some(out) {
            continue;
        }
        let Some(extra) = carried_bias(*groups, weight, in_rows, bias) else {
            continue;
        };
        if let Kind::Pointwise { bias: pb, .. } = &mut f.nodes[p].kind {
            for (b, e) in pb.iter_mut().zip(&extra) {
                *b = (*b as f64 + e) as f32;
            }
        }
        if let Kind::Depthwise { bias, .. } = &mut f.nodes[d].kind {
            bias.fill(0.0);
        }
    }
}

/// `W b` for the pointwise conv (`[cout][k]` weights, K row `j` of group `g`
/// reading plane `in_rows[g k + j]`) over the depthwise bias `b`; `None` when the
/// shapes do not fit together (left unfolded).
pub(super) fn carried_bias<B: Copy + Into<f64>>(
    groups: usize,
    weight: &[f32],
    in_rows: &[u32],
    b: &[B],
) -> Option<Vec<f64>> {
    if groups == 0 || !in_rows.len().is_multiple_of(groups) {
        return None;
    }
    let k = in_rows.len() / groups;
    if k == 0 || !weight.len().is_multiple_of(k) {
        return None;
    }
    let cout = weight.len() / k;
    if !cout.is_multiple_of(groups) {
        return None;
    }
    let per_group = cout / groups;
    (0..cout)
        .map(|o| {
            let rows = in_rows.get(o / per_group * k..)?.get(..k)?;
            let w = weight.get(o * k..)?.get(..k)?;
            rows.iter().zip(w).try_fold(0f64, |s, (&r, &w)| {
                Some(s + w as f64 * (*b.get(r as usize)?).into())
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::fused::Fused;

    fn lowered_passes() -> Fused {
        crate::plan::test_support::fused_before("dw_bias").unwrap()
    }

    fn dw_biases(f: &Fused) -> Vec<&Vec<f32>> {
        f.nodes
            .iter()
            .filter_map(|n| match &n.kind {
                Kind::Depthwise { bias, .. } => Some(bias),
                _ => None,
            })
            .collect()
    }

    /// Every ShuffleNet depthwise conv feeds one pointwise conv: all biases move,
    /// and each pointwise bias grows by exactly `W b` through its index table.
    #[test]
    fn every_depthwise_bias_moves_into_its_pointwise_reader() {
        let before = lowered_passes();
        assert!(dw_biases(&before)
            .iter()
            .all(|b| b.iter().any(|&x| x != 0.0)));
        let mut after = before.clone();
        run(&mut after);
        let biases = dw_biases(&after);
        assert_eq!(biases.len(), 16);
        assert!(biases.iter().all(|b| b.iter().all(|&x| x == 0.0)));
        let mut checked = 0;
        for (d, n) in before.nodes.iter().enumerate() {
            let Kind::Depthwise { bias: db, .. } = &n.kind else {
                continue;
            };
            let p = before.readers(n.output)[0];
            let (
                Kind::Pointwise {
                    groups,
                    weight,
                    in_rows,
                    bias: old,
                    ..
                },
                Kind::Pointwise { bias: new, .. },
            ) = (&before.nodes[p].kind, &after.nodes[p].kind)
            else {
                panic!("node {d}'s reader is not a pointwise conv");
            };
            let k = in_rows.len() / groups;
            let per_group = old.len() / groups;
            for o in 0..old.len() {
                let g = o / per_group;
                let want: f32 = old[o]
                    + (0..k)
                        .map(|j| weight[o * k + j] * db[in_rows[g * k + j] as usize])
                        .sum::<f32>();
                assert!((new[o] - want).abs() <= 1e-5 * (1.0 + want.abs()), "{o}");
            }
            checked += 1;
        }
        assert_eq!(checked, 16);
    }

    /// A depthwise conv with a ReLU, or read by more than one node, keeps its bias.
    #[test]
    fn relu_or_shared_depthwise_keeps_its_bias() {
        let mut f = lowered_passes();
        let d = f
            .nodes
            .iter()
            .position(|n| matches!(n.kind, Kind::Depthwise { .. }))
            .unwrap();
        f.nodes[d].relu = true;
        let d2 = f
            .nodes
            .iter()
            .rposition(|n| matches!(n.kind, Kind::Depthwise { .. }))
            .unwrap();
        let extra_reader = f.nodes[d2].clone();
        let out = f.nodes[d2].output;
        let v = f.new_value(f.channels[out]);
        f.nodes.push(crate::plan::fused::Node {
            name: "extra".into(),
            kind: Kind::Relu,
            inputs: vec![out],
            output: v,
            relu: false,
            residual: None,
        });
        run(&mut f);
        assert_eq!(f.nodes[d2].kind, extra_reader.kind);
        let Kind::Depthwise { bias, .. } = &f.nodes[d].kind else {
            unreachable!()
        };
        assert!(bias.iter().any(|&x| x != 0.0));
        let folded = dw_biases(&f)
            .iter()
            .filter(|b| b.iter().all(|&x| x == 0.0))
            .count();
        assert_eq!(folded, 14);
    }
}
