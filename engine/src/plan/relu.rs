//! ReLU fusion: a ReLU disappears into the epilogue of the kernel producing its
//! input, is dropped where its input is provably non-negative, and is pushed
//! through a concat into the concat's producers.

use super::fused::{Fused, Kind};
use crate::graph::ValueId;

/// True when `v` is provably `>= 0` (or NaN) everywhere: it is the output of a ReLU
/// or of an operation that preserves non-negativity of non-negative inputs.
pub fn non_negative(f: &Fused, v: ValueId) -> bool {
    let Some(p) = f.producer(v) else {
        return false;
    };
    let n = &f.nodes[p];
    if n.relu || n.kind == Kind::Relu {
        return true;
    }
    match n.kind {
        Kind::Pool(_) | Kind::GlobalAvgPool | Kind::Permute { .. } | Kind::Concat => {
            n.inputs.iter().all(|&i| non_negative(f, i))
        }
        _ => false,
    }
}

/// Sets the ReLU flag on the producer of `v` if it can take it and `v` is read only
/// by the node being removed.
fn fuse_into_producer(f: &mut Fused, v: ValueId) -> bool {
    match f.producer(v) {
        Some(p) if f.single_use(v) && f.nodes[p].kind.takes_relu() => {
            f.nodes[p].relu = true;
            true
        }
        _ => false,
    }
}

/// Runs the pass.
pub fn run(f: &mut Fused) {
    let mut n = 0;
    while n < f.nodes.len() {
        if f.nodes[n].kind != Kind::Relu {
            n += 1;
            continue;
        }
        let (v, out) = (f.nodes[n].inputs[0], f.nodes[n].output);
        let removable = if non_negative(f, v) || fuse_into_producer(f, v) {
            true
        } else if let Some(c) = f
            .producer(v)
            .filter(|&c| f.nodes[c].kind == Kind::Concat && f.single_use(v))
        {
            // relu(concat(a, b)) = concat(relu(a), relu(b)): fuse into every producer,
            // if each part is non-negative already or can take the ReLU.
            let parts = f.nodes[c].inputs.clone();
            let ok = parts.iter().all(|&a| {
                non_negative(f, a)
                    || f.producer(a)
                        .is_some_and(|p| f.single_use(a) && f.nodes[p].kind.takes_relu())
            });
            if ok {
                for a in parts {
                    if !non_negative(f, a) {
                        fuse_into_producer(f, a);
                    }
                }
            }
            ok
        } else {
            false
        };
        if removable {
            f.nodes.remove(n);
            f.replace_uses(out, v);
        } else {
            n += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::family;
    use crate::plan::{fold_bn, fused::Fused};

    #[test]
    fn shufflenet_keeps_no_standalone_relu() {
        let g = family::build(3, 0.25, 3).unwrap();
        let mut f = Fused::from_graph(&g).unwrap();
        fold_bn::run(&mut f);
        run(&mut f);
        assert!(f.nodes.iter().all(|n| n.kind != Kind::Relu));
        // conv1, every GConv1, every branch GConv2 of a stride-2 unit and every add.
        let relus = f.nodes.iter().filter(|n| n.relu).count();
        assert_eq!(relus, 1 + 16 + 3 + 13);
    }
}
