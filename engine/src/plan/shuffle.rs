//! Makes channel permutations (shuffles) free. A permutation `y[i] = x[T[i]]` is
//! absorbed by each consumer of `y` that can read `x` directly:
//! - a pointwise conv reads its K rows through an index table: entry `t` becomes
//!   `T[t]`;
//! - a fully connected layer (or GAP+FC) permutes its weight columns;
//! - a per-channel op (depthwise conv, affine, pool, ReLU) runs on `x`'s planes with
//!   its parameters permuted, and the permutation moves to its output, where the
//!   next consumer absorbs it in turn.
//!
//! Consecutive permutations compose, identities vanish. Only a permutation whose
//! consumer can do none of this (a concat, an add, a direct conv, the graph output)
//! stays as an explicit copy.

use super::fused::{Fused, Kind, Node};

fn is_identity(t: &[u32]) -> bool {
    t.iter().enumerate().all(|(i, &v)| i as u32 == v)
}

/// Runs the pass.
pub fn run(f: &mut Fused) {
    let mut n = 0;
    while n < f.nodes.len() {
        let Kind::Permute { table } = &f.nodes[n].kind else {
            n += 1;
            continue;
        };
        let table = table.clone();
        let (x, y) = (f.nodes[n].inputs[0], f.nodes[n].output);
        // A permutation of a permutation reads the original directly.
        if let Some(p) = f.producer(x) {
            if let Kind::Permute { table: inner } = &f.nodes[p].kind {
                let composed: Vec<u32> = table.iter().map(|&t| inner[t as usize]).collect();
                let src = f.nodes[p].inputs[0];
                f.nodes[n].kind = Kind::Permute { table: composed };
                f.nodes[n].inputs[0] = src;
                continue;
            }
        }
        if is_identity(&table) && y != f.graph.output {
            f.nodes.remove(n);
            f.replace_uses(y, x);
            continue;
        }
        let mut inserted = 0;
        for r in f.readers(y) {
            let r = r + inserted;
            if f.nodes[r].residual == Some(y) {
                continue;
            }
            let node = &mut f.nodes[r];
            let pushed_through = match &mut node.kind {
                Kind::Pointwise { in_rows, .. } => {
                    for t in in_rows.iter_mut() {
                        *t = table[*t as usize];
                    }
                    false
                }
                Kind::Fc { weight, .. } | Kind::GapFc { weight, .. } => {
                    let c = table.len();
                    let mut w = vec![0.0; weight.len()];
                    for (o, row) in weight.chunks_exact(c).enumerate() {
                        for (i, &t) in table.iter().enumerate() {
                            w[o * c + t as usize] = row[i];
                        }
                    }
                    *weight = w;
                    false
                }
                k if k.per_channel() && node.inputs.len() == 1 => {
                    k.permute_channels(&table);
                    true
                }
                _ => continue,
            };
            node.inputs[0] = x;
            if pushed_through {
                // The op now produces its output in permuted order: re-permute after it.
                let z = node.output;
                let name = format!("{}.permuted", node.name);
                let z2 = f.new_value(f.channels[z]);
                f.nodes[r].output = z2;
                f.nodes.insert(
                    r + 1,
                    Node {
                        name,
                        kind: Kind::Permute {
                            table: table.clone(),
                        },
                        inputs: vec![z2],
                        output: z,
                        relu: false,
                        residual: None,
                    },
                );
                inserted += 1;
            }
        }
        if f.readers(y).is_empty() && y != f.graph.output {
            f.nodes.remove(n);
        } else {
            n += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::family;
    use crate::plan::{fold_bn, fused::Fused, relu, residual};

    #[test]
    fn shufflenet_plans_no_permutation() {
        for g in [2, 3, 8] {
            let graph = family::build(g, 0.25, 5).unwrap();
            let mut f = Fused::from_graph(&graph).unwrap();
            let before = f
                .nodes
                .iter()
                .filter(|n| matches!(n.kind, Kind::Permute { .. }))
                .count();
            assert_eq!(before, 16);
            fold_bn::run(&mut f);
            relu::run(&mut f);
            residual::run(&mut f);
            run(&mut f);
            assert!(
                f.nodes
                    .iter()
                    .all(|n| !matches!(n.kind, Kind::Permute { .. })),
                "g={g}"
            );
        }
    }
}
