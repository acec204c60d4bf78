//! Residual offset chain: a chain of in-place residual units stores each unit's
//! output shifted by a per-channel constant, so the residual convs need neither a
//! bias nor an add.
//!
//! A residual unit computes `x' = relu(x + W h + b)`. If `x` is stored as
//! `s = x - c` (a per-channel offset `c`), then with `c' = c + b`
//! `s' = x' - c' = max(s + W h, -c')`: the conv starts from the stored residual,
//! adds no bias, and clamps at the per-channel floor `-c'` instead of zero (the
//! kernels' ReLU floor; on NEON a zero-bias in-place residual starts its sums from
//! the output, which saves the bias load and the add: about 28 of 339
//! instructions per 8x12 tile of 0.5x's K = 10 residual convs). A pointwise conv
//! reading an offset value folds the offset into its bias, `W (s + c) + b =
//! W s + (W c + b)`, as [`super::dw_bias`] does. A value read by anything else
//! (a pool, a concat, the graph output) is stored exactly: the unit producing it
//! adds `c + b` as its bias and clamps at zero. In ShuffleNet every stride-1 unit
//! but a stage's last stores an offset; the last one's output also feeds the next
//! stage's average pool.
//!
//! Exact up to float rounding: the offsets are summed in f64, and only the
//! order of the additions changes.

use super::dw_bias::carried_bias;
use super::fused::{Fused, Kind};
use crate::graph::ValueId;

/// Runs the pass.
pub fn run(f: &mut Fused) {
    let mut offsets: Vec<Option<Vec<f64>>> = vec![None; f.channels.len()];
    for n in 0..f.nodes.len() {
        let node = &f.nodes[n];
        let Kind::Pointwise {
            groups,
            weight,
            in_rows,
            floor: None,
            ..
        } = &node.kind
        else {
            continue;
        };
        let input = node.inputs[0];
        let extra = match &offsets[input] {
            Some(c) => match carried_bias(*groups, weight, in_rows, c) {
                Some(e) => e,
                // Shapes that do not fit: `may_carry` never lets this happen.
                None => continue,
            },
            None => vec![0.0; f.channels[node.output]],
        };
        let residual = node.residual.filter(|_| node.relu);
        let out = node.output;
        let carry = residual.is_some() && may_carry(f, out);
        let c_in = residual.and_then(|r| offsets[r].clone());
        let Kind::Pointwise { bias, floor, .. } = &mut f.nodes[n].kind else {
            continue;
        };
        // The bias with the input's offset folded in, plus the residual's.
        let mut b: Vec<f64> = bias
            .iter()
            .zip(&extra)
            .map(|(&b, e)| b as f64 + e)
            .collect();
        if let Some(c) = &c_in {
            for (b, c) in b.iter_mut().zip(c) {
                *b += c;
            }
        }
        if carry {
            *floor = Some(b.iter().map(|&c| -c as f32).collect());
            bias.fill(0.0);
            offsets[out] = Some(b);
        } else {
            for (dst, b) in bias.iter_mut().zip(&b) {
                *dst = *b as f32;
            }
        }
    }
}

/// True when every reader of `v` can take it stored with an offset: a pointwise
/// conv reading it as its input (the offset folds into its bias), or an in-place
/// residual conv with a ReLU and no floor yet, accumulating onto it (the chain
/// goes on). Never the graph output.
fn may_carry(f: &Fused, v: ValueId) -> bool {
    let readers = f.readers(v);
    v != f.graph.output
        && !readers.is_empty()
        && readers.iter().all(|&r| {
            let node = &f.nodes[r];
            let Kind::Pointwise {
                groups,
                weight,
                in_rows,
                floor: None,
                ..
            } = &node.kind
            else {
                return false;
            };
            let reads_input = node.inputs == [v];
            let accumulates = node.residual == Some(v);
            let zero = vec![0.0; f.channels[v]];
            match (reads_input, accumulates) {
                (true, false) => carried_bias(*groups, weight, in_rows, &zero).is_some(),
                (false, true) => node.relu,
                _ => false,
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::family;
    use crate::plan::{dw_bias, fold_bn, gap_fc, relu, residual, shuffle};

    fn lowered_passes() -> Fused {
        let g = family::build(8, 0.25, 3).unwrap();
        let mut f = Fused::from_graph(&g).unwrap();
        fold_bn::run(&mut f);
        relu::run(&mut f);
        residual::run(&mut f);
        shuffle::run(&mut f);
        gap_fc::run(&mut f);
        dw_bias::run(&mut f);
        f
    }

    fn pointwise(f: &Fused, n: usize) -> (&Vec<f32>, &Option<Vec<f32>>) {
        match &f.nodes[n].kind {
            Kind::Pointwise { bias, floor, .. } => (bias, floor),
            k => panic!("node {n} is {k:?}"),
        }
    }

    /// Every stride-1 unit but a stage's last (10 of 13) loses its bias and gets a
    /// floor; the chain's offsets match the biases they replace, and each first
    /// conv reading an offset value grows its bias by `W c`.
    #[test]
    fn every_stride1_unit_but_a_stages_last_carries_an_offset() {
        let before = lowered_passes();
        let mut after = before.clone();
        run(&mut after);
        let res: Vec<usize> = (0..before.nodes.len())
            .filter(|&n| before.nodes[n].residual.is_some())
            .collect();
        assert_eq!(res.len(), 13);
        let carried: Vec<usize> = res
            .iter()
            .copied()
            .filter(|&n| pointwise(&after, n).1.is_some())
            .collect();
        assert_eq!(carried.len(), 10);
        // The offset each residual conv's output carries, replayed from the biases
        // before the pass: c' = c + b (b with the input's offset folded in, which
        // is zero for a residual conv reading a depthwise conv).
        let mut offset: Vec<Option<Vec<f64>>> = vec![None; before.channels.len()];
        for &n in &res {
            let node = &before.nodes[n];
            let (b, _) = pointwise(&before, n);
            let c_in = offset[node.residual.unwrap()].clone();
            let c: Vec<f64> = b
                .iter()
                .enumerate()
                .map(|(j, &b)| b as f64 + c_in.as_ref().map_or(0.0, |c| c[j]))
                .collect();
            let (b_after, floor) = pointwise(&after, n);
            match floor {
                Some(floor) => {
                    assert!(b_after.iter().all(|&b| b == 0.0), "node {n}");
                    for (fl, c) in floor.iter().zip(&c) {
                        assert!((*fl as f64 + c).abs() <= 1e-6 * (1.0 + c.abs()), "node {n}");
                    }
                    offset[node.output] = Some(c);
                }
                None => {
                    for (b, c) in b_after.iter().zip(&c) {
                        assert!((*b as f64 - c).abs() <= 1e-6 * (1.0 + c.abs()), "node {n}");
                    }
                    assert!(c_in.is_some(), "a stage's last unit continues a chain");
                }
            }
        }
        // The first conv of each unit reading an offset value: bias + W c.
        let mut folded = 0;
        for (n, node) in before.nodes.iter().enumerate() {
            let Some(c) = node.inputs.first().and_then(|&v| offset[v].as_ref()) else {
                continue;
            };
            let Kind::Pointwise {
                groups,
                weight,
                in_rows,
                bias,
                ..
            } = &node.kind
            else {
                continue;
            };
            if node.residual.is_some() {
                continue;
            }
            let w_c = carried_bias(*groups, weight, in_rows, c).unwrap();
            let (b_after, floor) = pointwise(&after, n);
            assert!(floor.is_none());
            for ((b, a), e) in bias.iter().zip(b_after).zip(&w_c) {
                let want = *b as f64 + e;
                assert!(
                    (*a as f64 - want).abs() <= 1e-5 * (1.0 + want.abs()),
                    "node {n}"
                );
            }
            folded += 1;
        }
        assert_eq!(folded, 10);
    }

    /// A value with a reader that cannot fold the offset (here an extra ReLU node)
    /// is stored exactly: its unit keeps a bias and the zero clamp.
    #[test]
    fn a_value_read_by_another_op_is_stored_exactly() {
        let mut f = lowered_passes();
        let n = (0..f.nodes.len())
            .find(|&n| f.nodes[n].residual.is_some())
            .unwrap();
        let out = f.nodes[n].output;
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
        assert!(pointwise(&f, n).1.is_none());
        let carried = (0..f.nodes.len())
            .filter(|&n| matches!(&f.nodes[n].kind, Kind::Pointwise { floor: Some(_), .. }))
            .count();
        assert_eq!(carried, 9);
    }
}
