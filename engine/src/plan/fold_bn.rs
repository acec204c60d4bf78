//! Folds a per-channel affine (an inference BatchNorm) into the convolution that
//! produces its input: `w'[o] = w[o] * s[o]`, `b'[o] = b[o] * s[o] + t[o]`.

use super::fused::{Fused, Kind};

/// Scales rows of `weight` (each `weight.len() / scale.len()` long) and the bias.
fn fold(weight: &mut [f32], bias: &mut [f32], scale: &[f32], shift: &[f32]) {
    let row = weight.len() / scale.len();
    for (o, (&s, &t)) in scale.iter().zip(shift).enumerate() {
        for w in &mut weight[o * row..(o + 1) * row] {
            *w *= s;
        }
        bias[o] = bias[o] * s + t;
    }
}

/// Runs the pass: every affine whose input comes from a conv (with no ReLU or
/// residual yet) read only by that affine disappears into the conv.
pub fn run(f: &mut Fused) {
    let mut n = 0;
    while n < f.nodes.len() {
        let Kind::Affine { scale, shift } = &f.nodes[n].kind else {
            n += 1;
            continue;
        };
        let v = f.nodes[n].inputs[0];
        let producer = f.producer(v).filter(|&p| {
            let pn = &f.nodes[p];
            f.single_use(v) && !pn.relu && pn.residual.is_none()
        });
        let Some(p) = producer else {
            n += 1;
            continue;
        };
        let (scale, shift) = (scale.clone(), shift.clone());
        let folded = match &mut f.nodes[p].kind {
            Kind::Pointwise { weight, bias, .. } | Kind::Depthwise { weight, bias, .. } => {
                fold(weight, bias, &scale, &shift);
                true
            }
            Kind::Conv(c) => {
                let bias = c.bias.get_or_insert_with(|| vec![0.0; c.cout]);
                fold(&mut c.weight, bias, &scale, &shift);
                true
            }
            _ => false,
        };
        if folded {
            f.nodes[p].output = f.nodes[n].output;
            f.nodes.remove(n);
        } else {
            n += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{BatchNorm, Conv, GraphBuilder, InputSpec, Layout, Op, Pads};
    use crate::reference;

    fn conv_bn_graph(second_reader: bool) -> crate::graph::Graph {
        let mut b = GraphBuilder::new(
            "t",
            InputSpec {
                channels: 2,
                layout: Layout::Nchw,
                default_size: None,
                preprocess: None,
            },
        );
        let conv = Conv {
            cin: 2,
            cout: 3,
            groups: 1,
            kh: 1,
            kw: 1,
            stride: (1, 1),
            pads: Pads::default(),
            weight: vec![1.0, 2.0, -1.0, 0.5, 0.25, 3.0],
            bias: Some(vec![0.1, 0.2, 0.3]),
        };
        let y = b.push("conv", Op::Conv(conv), &[0], 3);
        let bn = BatchNorm {
            gamma: vec![2.0, 1.0, 0.5],
            beta: vec![0.0, 1.0, -1.0],
            mean: vec![1.0, 0.0, 2.0],
            var: vec![3.0, 0.25, 1.0],
            eps: 1.0,
        };
        let z = b.push("bn", Op::BatchNorm(bn), &[y], 3);
        let out = if second_reader {
            b.push("add", Op::Add, &[y, z], 3)
        } else {
            z
        };
        b.finish(out, "out").unwrap()
    }

    #[test]
    fn folds_conv_then_batchnorm() {
        let g = conv_bn_graph(false);
        let mut f = Fused::from_graph(&g).unwrap();
        run(&mut f);
        assert_eq!(f.nodes.len(), 1);
        let Kind::Pointwise { weight, bias, .. } = &f.nodes[0].kind else {
            panic!("not pointwise");
        };
        // channel 0: scale 2/sqrt(4) = 1, shift 0 - 1 * 1 = -1.
        assert_eq!(&weight[..2], &[1.0, 2.0]);
        assert!((bias[0] - (0.1 - 1.0)).abs() < 1e-6);
        // channel 1: scale 1/sqrt(1.25), shift 1.
        let s = 1.0 / 1.25f32.sqrt();
        assert!((weight[2] + s).abs() < 1e-6 && (bias[1] - (0.2 * s + 1.0)).abs() < 1e-6);
        let x = [0.5, -1.0, 2.0, 0.0, 1.0, 1.0, -2.0, 3.0];
        let want = reference::run(&g, 2, 2, &x).unwrap();
        let lowered = crate::plan::emit::run(&f).unwrap();
        let got = crate::exec::run_lowered(&lowered, 2, 2, &x).unwrap();
        for (a, b) in got.iter().zip(&want.data) {
            assert!((a - b).abs() < 1e-5);
        }
    }

    #[test]
    fn keeps_batchnorm_when_the_conv_output_is_read_elsewhere() {
        let mut f = Fused::from_graph(&conv_bn_graph(true)).unwrap();
        run(&mut f);
        assert!(f
            .nodes
            .iter()
            .any(|n| matches!(n.kind, Kind::Affine { .. })));
    }
}
