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
//! A stage's chain starts at zero only because its first value is a concat of a
//! pooled shortcut and a branch conv; the stage's last unit then pays the bias
//! and the add. Where the branch conv (a pointwise conv with a ReLU, read only by
//! the concat) can store its channels with an offset, the chain runs backwards
//! on them instead (`Chain`): the branch stores `s = relu(y) - c0` with
//! `c0 = -(b_1 + .. + b_n)`, the sum of the chain's residual biases (bias
//! `b + (b_1 + .. + b_n)`, floor `b_1 + .. + b_n`), so the offsets reach zero at
//! the last unit: it stores those channels exactly with no bias (its floor is
//! zero, its zero-bias panels start from the output). The pooled channels keep
//! the forward chain and the last unit's bias.
//!
//! Exact up to float rounding: the offsets are summed in f64, and only the
//! order of the additions changes.

use super::dw_bias::carried_bias;
use super::fused::{Fused, Kind};
use crate::graph::ValueId;

/// A chain of residual units that starts at a concat with a branch conv that can
/// take an offset, planned before the forward pass.
struct Chain {
    /// The branch convs: node, first channel of its output in the concat, and the
    /// offset its output stores (`-(b_1 + .. + b_n)` per channel).
    starts: Vec<(usize, Vec<f64>)>,
    /// The chain's last residual conv.
    last: usize,
    /// Channels of the chain's values whose offsets run backwards to zero.
    backward: Vec<bool>,
}

/// The chain starting at concat node `cat`, if it has a stage end to move: every
/// reader of the concat's value and of each unit's output but the last can take
/// an offset, the last's cannot, and some concat input is a branch conv that can.
fn chain_at(f: &Fused, cat: usize) -> Option<Chain> {
    let v0 = f.nodes[cat].output;
    if !may_carry(f, v0) {
        return None;
    }
    // The residual convs accumulating onto v0, then onto each one's output.
    let mut units = Vec::new();
    let mut v = v0;
    loop {
        let r = f.readers(v).into_iter().find(|&r| {
            let node = &f.nodes[r];
            node.residual == Some(v)
                && node.relu
                && matches!(node.kind, Kind::Pointwise { floor: None, .. })
                // Its input must not carry an offset of its own (only pointwise
                // convs and concats store offsets).
                && f.producer(node.inputs[0]).is_some_and(|p| {
                    !matches!(f.nodes[p].kind, Kind::Pointwise { .. } | Kind::Concat)
                })
        })?;
        units.push(r);
        v = f.nodes[r].output;
        if !may_carry(f, v) {
            break;
        }
    }
    let last = *units.last()?;
    // Per channel of v0: the sum of the chain's residual biases.
    let mut sum = vec![0.0f64; f.channels[v0]];
    for &r in &units {
        let Kind::Pointwise { bias, .. } = &f.nodes[r].kind else {
            return None;
        };
        for (s, &b) in sum.iter_mut().zip(bias) {
            *s += b as f64;
        }
    }
    let mut starts = Vec::new();
    let mut backward = vec![false; sum.len()];
    let mut first = 0;
    for &input in &f.nodes[cat].inputs {
        let ch = f.channels[input];
        let branch = f.producer(input).filter(|&p| {
            let node = &f.nodes[p];
            node.relu
                && node.residual.is_none()
                && matches!(node.kind, Kind::Pointwise { floor: None, .. })
                && input != f.graph.output
                && f.readers(input) == [cat]
        });
        if let (Some(p), Some(s)) = (branch, sum.get(first..first + ch)) {
            starts.push((p, s.iter().map(|&s| -s).collect()));
            backward[first..first + ch].fill(true);
        }
        first += ch;
    }
    (!starts.is_empty() && first == sum.len()).then_some(Chain {
        starts,
        last,
        backward,
    })
}

/// Runs the pass.
pub fn run(f: &mut Fused) {
    let chains: Vec<Chain> = (0..f.nodes.len())
        .filter(|&n| f.nodes[n].kind == Kind::Concat)
        .filter_map(|n| chain_at(f, n))
        .collect();
    let mut offsets: Vec<Option<Vec<f64>>> = vec![None; f.channels.len()];
    for n in 0..f.nodes.len() {
        let node = &f.nodes[n];
        if node.kind == Kind::Concat {
            // A concat of offset values carries their offsets (zero elsewhere).
            if node.inputs.iter().any(|&i| offsets[i].is_some()) {
                let c: Vec<f64> = node
                    .inputs
                    .iter()
                    .flat_map(|&i| offsets[i].clone().unwrap_or(vec![0.0; f.channels[i]]))
                    .collect();
                offsets[node.output] = Some(c);
            }
            continue;
        }
        let start = chains
            .iter()
            .find_map(|ch| ch.starts.iter().find(|s| s.0 == n))
            .map(|s| s.1.clone());
        let end = chains.iter().find(|ch| ch.last == n).map(|ch| &ch.backward);
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
        if let Some(c0) = start {
            // A chain's branch conv: stores relu(y) - c0 = max(y - c0, -c0).
            for ((dst, b), c) in bias.iter_mut().zip(&b).zip(&c0) {
                *dst = (b - c) as f32;
            }
            *floor = Some(c0.iter().map(|&c| -c as f32).collect());
            offsets[out] = Some(c0);
        } else if carry {
            *floor = Some(b.iter().map(|&c| -c as f32).collect());
            bias.fill(0.0);
            offsets[out] = Some(b);
        } else {
            for (dst, b) in bias.iter_mut().zip(&b) {
                *dst = *b as f32;
            }
            if let Some(backward) = end {
                // The backward offsets reach zero here: those channels store
                // exactly with no bias (the f64 sums leave only rounding).
                for (dst, &back) in bias.iter_mut().zip(backward) {
                    if back {
                        *dst = 0.0;
                    }
                }
                *floor = Some(vec![0.0; b.len()]);
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

    fn lowered_passes() -> Fused {
        crate::plan::test_support::fused_before("offset").unwrap()
    }

    fn pointwise(f: &Fused, n: usize) -> (&Vec<f32>, &Option<Vec<f32>>) {
        match &f.nodes[n].kind {
            Kind::Pointwise { bias, floor, .. } => (bias, floor),
            k => panic!("node {n} is {k:?}"),
        }
    }

    /// Close to `want` up to the f32 rounding of a sum in f64.
    fn close(got: f32, want: f64) -> bool {
        (got as f64 - want).abs() <= 1e-5 * (1.0 + want.abs())
    }

    /// Each stage's chain runs backwards on its branch channels: the branch conv
    /// stores its output minus `-S` (`S` the sum of the stage's residual biases:
    /// bias `b + S`, floor `S`); every residual conv but the last loses its bias and
    /// clamps at `-c` (the offsets replayed from the biases: `c' = c + b`, starting
    /// at zero on the pooled channels and `-S` on the branch ones); the last one
    /// reaches zero on the branch channels (no bias, floor zero) and keeps
    /// `c + b` on the pooled ones. Every first conv reading an offset value grows
    /// its bias by `W c`.
    #[test]
    fn each_stage_runs_its_chain_backwards_on_the_branch_channels() {
        let before = lowered_passes();
        let mut after = before.clone();
        run(&mut after);
        let mut offset: Vec<Option<Vec<f64>>> = vec![None; before.channels.len()];
        let mut stages = 0;
        for cat in 0..before.nodes.len() {
            if before.nodes[cat].kind != Kind::Concat {
                continue;
            }
            stages += 1;
            // The residual convs of the stage, in order.
            let mut units = Vec::new();
            let mut v = before.nodes[cat].output;
            while let Some(r) =
                (0..before.nodes.len()).find(|&r| before.nodes[r].residual == Some(v))
            {
                units.push(r);
                v = before.nodes[r].output;
            }
            let ch = before.channels[v];
            let mut sum = vec![0.0f64; ch];
            for &r in &units {
                for (s, &b) in sum.iter_mut().zip(pointwise(&before, r).0) {
                    *s += b as f64;
                }
            }
            // The branch conv (the concat's second input) and the pooled channels.
            let [pooled, branch] = before.nodes[cat].inputs[..] else {
                panic!("concat of two");
            };
            let np = before.channels[pooled];
            let p = before.producer(branch).unwrap();
            let (b0, _) = pointwise(&before, p);
            let (b1, floor) = pointwise(&after, p);
            let floor = floor.as_ref().expect("the branch conv stores an offset");
            for j in 0..b0.len() {
                assert!(
                    close(b1[j], b0[j] as f64 + sum[np + j]),
                    "branch {p} ch {j}"
                );
                assert!(close(floor[j], sum[np + j]), "branch {p} ch {j}");
            }
            let mut c: Vec<f64> = (0..ch)
                .map(|j| if j < np { 0.0 } else { -sum[j] })
                .collect();
            offset[before.nodes[cat].output] = Some(c.clone());
            for (i, &r) in units.iter().enumerate() {
                let (b, _) = pointwise(&before, r);
                let next: Vec<f64> = c.iter().zip(b).map(|(c, &b)| c + b as f64).collect();
                let (b_after, floor) = pointwise(&after, r);
                let floor = floor.as_ref().expect("every residual conv has a floor");
                if i + 1 < units.len() {
                    assert!(b_after.iter().all(|&b| b == 0.0), "unit {r}");
                    for (fl, c) in floor.iter().zip(&next) {
                        assert!(close(*fl, -c), "unit {r}");
                    }
                    offset[before.nodes[r].output] = Some(next.clone());
                } else {
                    assert!(floor.iter().all(|&f| f == 0.0), "last unit {r}");
                    for j in 0..ch {
                        if j < np {
                            assert!(close(b_after[j], next[j]), "last unit {r} ch {j}");
                        } else {
                            assert_eq!(b_after[j], 0.0, "last unit {r} ch {j}");
                            assert!(next[j].abs() <= 1e-5 * (1.0 + sum[j].abs()));
                        }
                    }
                }
                c = next;
            }
        }
        assert_eq!(stages, 3);
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
                assert!(close(*a, *b as f64 + e), "node {n}");
            }
            folded += 1;
        }
        assert_eq!(folded, 13);
    }

    /// A value with a reader that cannot fold the offset (here an extra ReLU node)
    /// is stored exactly: its unit ends its stage's chain (floor zero).
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
        // Its stage's chain ends there (floor zero: stored exactly)...
        let floor = pointwise(&f, n).1.as_ref().unwrap();
        assert!(floor.iter().all(|&f| f == 0.0));
        // ...and the next unit starts a forward one from zero (stores an offset).
        let next = (0..f.nodes.len())
            .find(|&r| f.nodes[r].residual == Some(out))
            .unwrap();
        let (bias, floor) = pointwise(&f, next);
        assert!(bias.iter().all(|&b| b == 0.0));
        assert!(floor.as_ref().unwrap().iter().any(|&f| f != 0.0));
    }
}
