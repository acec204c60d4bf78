//! Residual fusion: `y = x + conv(z)` (with its ReLU) becomes the pointwise conv's
//! epilogue, storing over `x` in place. Legal when the conv's result is read only by
//! the add and `x` is not read after the conv runs.

use super::fused::{Fused, Kind};

/// Runs the pass.
pub fn run(f: &mut Fused) {
    let mut n = 0;
    while n < f.nodes.len() {
        if f.nodes[n].kind != Kind::Add {
            n += 1;
            continue;
        }
        let (a, b) = (f.nodes[n].inputs[0], f.nodes[n].inputs[1]);
        let fused = [(a, b), (b, a)].into_iter().find_map(|(res, other)| {
            let p = f.producer(other)?;
            let pn = &f.nodes[p];
            let ok = res != other
                && matches!(pn.kind, Kind::Pointwise { .. })
                && !pn.relu
                && pn.residual.is_none()
                && f.single_use(other)
                && res != f.graph.output
                // Every other reader of the residual runs before the conv overwrites it.
                && f.readers(res).iter().all(|&r| r == n || r < p);
            ok.then_some((p, res))
        });
        match fused {
            Some((p, res)) => {
                let add = f.nodes.remove(n);
                let pn = &mut f.nodes[p];
                pn.residual = Some(res);
                pn.relu = add.relu;
                pn.output = add.output;
            }
            None => n += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::family;
    use crate::plan::{fold_bn, fused::Fused, relu};

    #[test]
    fn every_stride1_unit_runs_in_place() {
        let g = family::build(8, 0.25, 3).unwrap();
        let mut f = Fused::from_graph(&g).unwrap();
        fold_bn::run(&mut f);
        relu::run(&mut f);
        run(&mut f);
        assert!(f.nodes.iter().all(|n| n.kind != Kind::Add));
        let in_place = f.nodes.iter().filter(|n| n.residual.is_some()).count();
        assert_eq!(in_place, 13);
        assert!(f
            .nodes
            .iter()
            .filter(|n| n.residual.is_some())
            .all(|n| n.relu));
    }
}
