//! Fuses a global average pool with the fully connected layer that reads it.

use super::fused::{Fused, Kind};

/// Runs the pass.
pub fn run(f: &mut Fused) {
    let mut n = 0;
    while n < f.nodes.len() {
        let v = f.nodes[n].output;
        let fc = (f.nodes[n].kind == Kind::GlobalAvgPool && f.single_use(v))
            .then(|| f.readers(v)[0])
            .filter(|&r| matches!(f.nodes[r].kind, Kind::Fc { .. }));
        let Some(r) = fc else {
            n += 1;
            continue;
        };
        let input = f.nodes[n].inputs[0];
        if let Kind::Fc { weight, bias } = &f.nodes[r].kind {
            let kind = Kind::GapFc {
                weight: weight.clone(),
                bias: bias.clone(),
            };
            f.nodes[r].kind = kind;
            f.nodes[r].inputs = vec![input];
            f.nodes.remove(n);
        }
    }
}
