//! The reference executor: runs the plain, unfused graph with straightforward loops
//! over NCHW tensors. It shares no code with the kernels, so it can serve as their
//! oracle. Written for clarity; it allocates freely and is slow.

use crate::graph::{BatchNorm, Conv, Fc, Graph, GraphError, Layout, Op, PoolSpec, Shape};
use crate::rng::Rng;
use crate::Error;
use kernels::PoolKind;

/// A dense `[C, H, W]` tensor (batch 1).
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    /// Shape.
    pub shape: Shape,
    /// `C * H * W` values, channel-major.
    pub data: Vec<f32>,
}

impl Tensor {
    /// A zero tensor.
    pub fn zeros(c: usize, h: usize, w: usize) -> Tensor {
        Tensor {
            shape: Shape { c, h, w },
            data: vec![0.0; c * h * w],
        }
    }

    /// Wraps data of shape `c x h x w`; errors if the length differs.
    pub fn from_vec(c: usize, h: usize, w: usize, data: Vec<f32>) -> Result<Tensor, Error> {
        if Some(data.len()) != c.checked_mul(h).and_then(|x| x.checked_mul(w)) {
            return Err(Error::Argument(format!(
                "{} values do not make a {c}x{h}x{w} tensor",
                data.len()
            )));
        }
        Ok(Tensor {
            shape: Shape { c, h, w },
            data,
        })
    }

    /// Element at `(c, y, x)`.
    pub fn at(&self, c: usize, y: usize, x: usize) -> f32 {
        self.data[(c * self.shape.h + y) * self.shape.w + x]
    }

    /// Element at signed `(y, x)` of channel `c`, or `None` outside the plane.
    fn get(&self, c: usize, y: isize, x: isize) -> Option<f32> {
        if y < 0 || x < 0 || y >= self.shape.h as isize || x >= self.shape.w as isize {
            return None;
        }
        Some(self.at(c, y as usize, x as usize))
    }
}

/// Convolution (dense, grouped or depthwise) with zero padding.
pub fn conv(x: &Tensor, p: &Conv, out: Shape) -> Tensor {
    let mut y = Tensor::zeros(out.c, out.h, out.w);
    let cin_g = p.cin / p.groups;
    let cout_g = p.cout / p.groups;
    for oc in 0..p.cout {
        let group = oc / cout_g;
        for oy in 0..out.h {
            for ox in 0..out.w {
                let mut acc = p.bias.as_ref().map_or(0.0, |b| b[oc]);
                for i in 0..cin_g {
                    let ic = group * cin_g + i;
                    for ky in 0..p.kh {
                        for kx in 0..p.kw {
                            let iy = (oy * p.stride.0 + ky) as isize - p.pads.top as isize;
                            let ix = (ox * p.stride.1 + kx) as isize - p.pads.left as isize;
                            if let Some(v) = x.get(ic, iy, ix) {
                                acc += p.weight[((oc * cin_g + i) * p.kh + ky) * p.kw + kx] * v;
                            }
                        }
                    }
                }
                y.data[(oc * out.h + oy) * out.w + ox] = acc;
            }
        }
    }
    y
}

/// Inference batch normalisation.
pub fn batch_norm(x: &Tensor, p: &BatchNorm) -> Tensor {
    let mut y = x.clone();
    let hw = x.shape.h * x.shape.w;
    for c in 0..x.shape.c {
        let inv = 1.0 / (p.var[c] + p.eps).sqrt();
        for v in &mut y.data[c * hw..(c + 1) * hw] {
            *v = (*v - p.mean[c]) * inv * p.gamma[c] + p.beta[c];
        }
    }
    y
}

/// `max(x, 0)`, NaN propagating (as [`kernels::scalar::relu`]).
pub fn relu(x: &Tensor) -> Tensor {
    let mut y = x.clone();
    for v in &mut y.data {
        *v = kernels::scalar::relu(*v);
    }
    y
}

/// Channel shuffle exactly as the paper's reshape `[g, n]`, transpose, flatten.
pub fn channel_shuffle(x: &Tensor, groups: usize) -> Tensor {
    let n = x.shape.c / groups;
    let hw = x.shape.h * x.shape.w;
    let mut y = x.clone();
    // Reshaped as [groups][n], element (a, b) moves to position (b, a) of [n][groups].
    for a in 0..groups {
        for b in 0..n {
            let from = a * n + b;
            let to = b * groups + a;
            y.data[to * hw..(to + 1) * hw].copy_from_slice(&x.data[from * hw..(from + 1) * hw]);
        }
    }
    y
}

/// Max or average pooling.
pub fn pool(x: &Tensor, p: &PoolSpec, out: Shape) -> Tensor {
    let mut y = Tensor::zeros(out.c, out.h, out.w);
    let padded_h = (x.shape.h + p.pads.bottom) as isize;
    let padded_w = (x.shape.w + p.pads.right) as isize;
    for c in 0..out.c {
        for oy in 0..out.h {
            for ox in 0..out.w {
                let mut vals = Vec::new();
                let mut window_in_padded = 0usize;
                for ky in 0..p.kh {
                    for kx in 0..p.kw {
                        let iy = (oy * p.stride.0 + ky) as isize - p.pads.top as isize;
                        let ix = (ox * p.stride.1 + kx) as isize - p.pads.left as isize;
                        if iy < padded_h && ix < padded_w {
                            window_in_padded += 1;
                        }
                        if let Some(v) = x.get(c, iy, ix) {
                            vals.push(v);
                        }
                    }
                }
                let v = match p.kind {
                    PoolKind::Max => vals.iter().copied().fold(f32::NEG_INFINITY, |m, v| {
                        if v.is_nan() || m.is_nan() {
                            f32::NAN
                        } else {
                            m.max(v)
                        }
                    }),
                    PoolKind::Avg { count_include_pad } => {
                        let n = if count_include_pad {
                            window_in_padded
                        } else {
                            vals.len()
                        };
                        if n == 0 {
                            0.0
                        } else {
                            vals.iter().sum::<f32>() / n as f32
                        }
                    }
                };
                y.data[(c * out.h + oy) * out.w + ox] = v;
            }
        }
    }
    y
}

/// Element-wise sum.
pub fn add(a: &Tensor, b: &Tensor) -> Tensor {
    let mut y = a.clone();
    for (v, w) in y.data.iter_mut().zip(&b.data) {
        *v += w;
    }
    y
}

/// Concatenation along channels.
pub fn concat(xs: &[&Tensor]) -> Tensor {
    let s = xs[0].shape;
    let c = xs.iter().map(|t| t.shape.c).sum();
    let mut data = Vec::with_capacity(c * s.h * s.w);
    for t in xs {
        data.extend_from_slice(&t.data);
    }
    Tensor {
        shape: Shape { c, ..s },
        data,
    }
}

/// Mean of every plane.
pub fn global_avg_pool(x: &Tensor) -> Tensor {
    let hw = x.shape.h * x.shape.w;
    let data = (0..x.shape.c)
        .map(|c| x.data[c * hw..(c + 1) * hw].iter().sum::<f32>() / hw as f32)
        .collect();
    Tensor {
        shape: Shape {
            c: x.shape.c,
            h: 1,
            w: 1,
        },
        data,
    }
}

/// Fully connected layer on a `[C, 1, 1]` tensor.
pub fn fc(x: &Tensor, p: &Fc) -> Tensor {
    let data = (0..p.outputs)
        .map(|o| {
            p.bias[o]
                + (0..p.inputs)
                    .map(|i| p.weight[o * p.inputs + i] * x.data[i])
                    .sum::<f32>()
        })
        .collect();
    Tensor {
        shape: Shape {
            c: p.outputs,
            h: 1,
            w: 1,
        },
        data,
    }
}

/// Softmax over the channels of a `[C, 1, 1]` tensor.
pub fn softmax(x: &Tensor) -> Tensor {
    let max = x.data.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = x.data.iter().map(|v| (v - max).exp()).collect();
    let sum: f32 = exps.iter().sum();
    Tensor {
        shape: x.shape,
        data: exps.into_iter().map(|e| e / sum).collect(),
    }
}

/// Converts a user buffer in `layout` to a planar tensor.
pub fn to_planar(
    layout: Layout,
    c: usize,
    h: usize,
    w: usize,
    data: &[f32],
) -> Result<Tensor, Error> {
    let t = Tensor::from_vec(c, h, w, data.to_vec())?;
    Ok(match layout {
        Layout::Nchw => t,
        Layout::Nhwc => {
            let mut y = Tensor::zeros(c, h, w);
            for (i, v) in data.iter().enumerate() {
                let (pix, ch) = (i / c, i % c);
                y.data[ch * h * w + pix] = *v;
            }
            y
        }
    })
}

/// Runs one node on its input tensors.
fn run_node(op: &Op, ins: &[&Tensor], out: Shape) -> Tensor {
    match op {
        Op::Conv(p) => conv(ins[0], p, out),
        Op::BatchNorm(p) => batch_norm(ins[0], p),
        Op::Relu => relu(ins[0]),
        Op::ChannelShuffle { groups } => channel_shuffle(ins[0], *groups),
        Op::Pool(p) => pool(ins[0], p, out),
        Op::Add => add(ins[0], ins[1]),
        Op::Concat => concat(ins),
        Op::GlobalAvgPool => global_avg_pool(ins[0]),
        Op::Fc(p) => fc(ins[0], p),
        Op::Softmax => softmax(ins[0]),
    }
}

/// The tensors of `inputs`, all of which must have been computed.
fn gather<'a>(
    values: &'a [Option<Tensor>],
    inputs: &[usize],
) -> Result<Vec<&'a Tensor>, GraphError> {
    inputs
        .iter()
        .map(|&i| {
            values[i]
                .as_ref()
                .ok_or_else(|| GraphError::Structure("unordered".into()))
        })
        .collect()
}

/// Runs the whole graph and returns every value (index = value id).
fn run_values(graph: &Graph, input: Tensor) -> Result<Vec<Option<Tensor>>, Error> {
    graph.validate()?;
    let shapes = graph.shapes(input.shape.h, input.shape.w)?;
    if input.shape != shapes[0] {
        return Err(Error::Argument(format!(
            "input is {}, the graph expects {} channels",
            input.shape, shapes[0].c
        )));
    }
    let mut values: Vec<Option<Tensor>> = vec![None; graph.values.len()];
    values[0] = Some(input);
    for node in &graph.nodes {
        let y = run_node(
            &node.op,
            &gather(&values, &node.inputs)?,
            shapes[node.output],
        );
        values[node.output] = Some(y);
    }
    Ok(values)
}

/// Runs the graph on `input` (in the graph's input layout, `h x w`) and returns the
/// output tensor.
pub fn run(graph: &Graph, h: usize, w: usize, input: &[f32]) -> Result<Tensor, Error> {
    let x = to_planar(graph.input.layout, graph.input.channels, h, w, input)?;
    let mut values = run_values(graph, x)?;
    values[graph.output]
        .take()
        .ok_or_else(|| GraphError::Structure("output never produced".into()).into())
}

/// Sets the running mean and variance of every BatchNorm to the statistics of its
/// input on a random `h x w` image, so synthetic networks keep activations near
/// unit scale (as trained ones do).
pub fn calibrate_batchnorm(graph: &mut Graph, h: usize, w: usize, seed: u64) -> Result<(), Error> {
    let mut rng = Rng::new(seed);
    let c = graph.input.channels;
    let input = Tensor::from_vec(c, h, w, rng.fill(c * h * w, -1.7, 1.7))?;
    // Each BN's statistics depend on the calibrated BNs before it, so calibrate one
    // BatchNorm per pass, in order.
    let bn_nodes: Vec<usize> = (0..graph.nodes.len())
        .filter(|&n| matches!(graph.nodes[n].op, Op::BatchNorm(_)))
        .collect();
    let shapes = graph.shapes(h, w)?;
    let mut values: Vec<Option<Tensor>> = vec![None; graph.values.len()];
    values[0] = Some(input);
    let mut next_bn = bn_nodes.iter().peekable();
    for n in 0..graph.nodes.len() {
        let node = graph.nodes[n].clone();
        if next_bn.peek() == Some(&&n) {
            next_bn.next();
            let x = gather(&values, &node.inputs[..1])?[0];
            let hw = (x.shape.h * x.shape.w) as f64;
            if let Op::BatchNorm(bn) = &mut graph.nodes[n].op {
                for ch in 0..x.shape.c {
                    let plane = &x.data[ch * hw as usize..(ch + 1) * hw as usize];
                    let mean = plane.iter().map(|&v| v as f64).sum::<f64>() / hw;
                    let var = plane
                        .iter()
                        .map(|&v| (v as f64 - mean).powi(2))
                        .sum::<f64>()
                        / hw;
                    bn.mean[ch] = mean as f32;
                    bn.var[ch] = (var as f32).max(1e-2);
                }
            }
        }
        let y = run_node(
            &graph.nodes[n].op,
            &gather(&values, &node.inputs)?,
            shapes[node.output],
        );
        values[node.output] = Some(y);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{window_out, Pads};

    fn t(c: usize, h: usize, w: usize, data: &[f32]) -> Tensor {
        Tensor::from_vec(c, h, w, data.to_vec()).unwrap()
    }

    fn seq(c: usize, h: usize, w: usize) -> Tensor {
        t(
            c,
            h,
            w,
            &(0..c * h * w).map(|v| v as f32).collect::<Vec<_>>(),
        )
    }

    fn shape(c: usize, h: usize, w: usize) -> Shape {
        Shape { c, h, w }
    }

    fn conv3x3_ones(stride: usize) -> Conv {
        Conv {
            cin: 1,
            cout: 1,
            groups: 1,
            kh: 3,
            kw: 3,
            stride: (stride, stride),
            pads: Pads::uniform(1),
            weight: vec![1.0; 9],
            bias: None,
        }
    }

    #[test]
    fn conv_sums_the_padded_window() {
        // 1..9 in a 3x3 plane; a 3x3 box filter with zero padding.
        let x = t(1, 3, 3, &[1., 2., 3., 4., 5., 6., 7., 8., 9.]);
        let y = conv(&x, &conv3x3_ones(1), shape(1, 3, 3));
        assert_eq!(y.data, vec![12., 21., 16., 27., 45., 33., 24., 39., 28.]);
        let y = conv(&x, &conv3x3_ones(2), shape(1, 2, 2));
        assert_eq!(y.data, vec![12., 16., 24., 28.]);
    }

    #[test]
    fn grouped_conv_keeps_groups_apart() {
        let p = Conv {
            cin: 2,
            cout: 4,
            groups: 2,
            kh: 1,
            kw: 1,
            stride: (1, 1),
            pads: Pads::default(),
            weight: vec![2., -1., 3., 0.5],
            bias: Some(vec![0., 1., 0., 0.]),
        };
        let x = t(2, 1, 2, &[1., 2., 10., 20.]);
        let y = conv(&x, &p, shape(4, 1, 2));
        // outputs 0,1 read channel 0; outputs 2,3 read channel 1.
        assert_eq!(y.data, vec![2., 4., 0., -1., 30., 60., 5., 10.]);
    }

    #[test]
    fn batch_norm_normalises() {
        let p = BatchNorm {
            gamma: vec![2.0],
            beta: vec![0.5],
            mean: vec![1.0],
            var: vec![3.0],
            eps: 1.0,
        };
        // (3 - 1) / sqrt(3 + 1) * 2 + 0.5 = 2.5; (-1 - 1) / 2 * 2 + 0.5 = -1.5.
        assert_eq!(
            batch_norm(&t(1, 1, 2, &[3., -1.]), &p).data,
            vec![2.5, -1.5]
        );
    }

    #[test]
    fn relu_clamps() {
        assert_eq!(relu(&t(3, 1, 1, &[-1., 0., 2.])).data, vec![0., 0., 2.]);
    }

    #[test]
    fn shuffle_interleaves_groups() {
        let x = seq(6, 1, 1);
        assert_eq!(channel_shuffle(&x, 2).data, vec![0., 3., 1., 4., 2., 5.]);
        assert_eq!(channel_shuffle(&x, 3).data, vec![0., 2., 4., 1., 3., 5.]);
        // The inverse of a shuffle with g groups is a shuffle with C/g groups.
        assert_eq!(channel_shuffle(&channel_shuffle(&x, 2), 3).data, x.data);
    }

    fn pool3x3s2(kind: PoolKind) -> PoolSpec {
        PoolSpec {
            kind,
            kh: 3,
            kw: 3,
            stride: (2, 2),
            pads: Pads::uniform(1),
            ceil_mode: false,
        }
    }

    #[test]
    fn max_pool_ignores_padding() {
        let x = seq(1, 4, 4);
        let y = pool(&x, &pool3x3s2(PoolKind::Max), shape(1, 2, 2));
        assert_eq!(y.data, vec![5., 7., 13., 15.]);
        let neg = t(1, 1, 1, &[-3.0]);
        let y = pool(&neg, &pool3x3s2(PoolKind::Max), shape(1, 1, 1));
        assert_eq!(y.data, vec![-3.0]);
    }

    #[test]
    fn avg_pool_divisor_follows_count_include_pad() {
        let x = seq(1, 4, 4);
        let inc = pool(
            &x,
            &pool3x3s2(PoolKind::Avg {
                count_include_pad: true,
            }),
            shape(1, 2, 2),
        );
        // Top-left window holds 0, 1, 4, 5 and five padding zeros.
        assert_eq!(inc.data[0], 10.0 / 9.0);
        assert_eq!(inc.data[3], 90.0 / 9.0);
        let exc = pool(
            &x,
            &pool3x3s2(PoolKind::Avg {
                count_include_pad: false,
            }),
            shape(1, 2, 2),
        );
        assert_eq!(exc.data[0], 10.0 / 4.0);
        // Right column window: columns 1..3 of rows -1..1: 1+2+3+5+6+7 over 6 or 9.
        assert_eq!(exc.data[1], 24.0 / 6.0);
        assert_eq!(inc.data[1], 24.0 / 9.0);
    }

    #[test]
    fn ceil_mode_adds_a_partial_window() {
        assert_eq!(window_out(5, 2, 2, 0, 0, false), Some(2));
        assert_eq!(window_out(5, 2, 2, 0, 0, true), Some(3));
        assert_eq!(window_out(4, 3, 2, 1, 1, true), Some(3));
        // A window may not start in the trailing padding: the third would start at
        // padded position 4, past the 3 inputs and the leading pad.
        assert_eq!(window_out(3, 2, 2, 1, 1, true), Some(2));
        assert_eq!(window_out(2, 3, 1, 0, 0, false), None);
        let p = PoolSpec {
            kind: PoolKind::Avg {
                count_include_pad: true,
            },
            kh: 2,
            kw: 2,
            stride: (2, 2),
            pads: Pads::default(),
            ceil_mode: true,
        };
        let y = pool(&seq(1, 3, 3), &p, shape(1, 2, 2));
        // Windows: {0,1,3,4}, {2,5}, {6,7}, {8}: the part past the input is not counted.
        assert_eq!(y.data, vec![2.0, 3.5, 6.5, 8.0]);
    }

    #[test]
    fn add_concat_pool_fc_softmax() {
        let a = t(1, 1, 2, &[1., 2.]);
        let b = t(1, 1, 2, &[10., 20.]);
        assert_eq!(add(&a, &b).data, vec![11., 22.]);
        let c = concat(&[&a, &b]);
        assert_eq!(
            (c.shape, c.data.clone()),
            (shape(2, 1, 2), vec![1., 2., 10., 20.])
        );
        let g = global_avg_pool(&c);
        assert_eq!((g.shape, g.data.clone()), (shape(2, 1, 1), vec![1.5, 15.]));
        let f = fc(
            &g,
            &Fc {
                inputs: 2,
                outputs: 3,
                weight: vec![1., 0., 0., 1., 2., -0.1],
                bias: vec![0., 1., 0.5],
            },
        );
        assert_eq!(f.data, vec![1.5, 16., 2.0]);
        let s = softmax(&t(2, 1, 1, &[0., 2f32.ln()]));
        assert!((s.data[0] - 1.0 / 3.0).abs() < 1e-6 && (s.data[1] - 2.0 / 3.0).abs() < 1e-6);
    }

    #[test]
    fn nhwc_input_becomes_planar() {
        let x = to_planar(Layout::Nhwc, 3, 1, 2, &[1., 2., 3., 4., 5., 6.]).unwrap();
        assert_eq!(x.data, vec![1., 4., 2., 5., 3., 6.]);
        assert!(to_planar(Layout::Nchw, 3, 1, 2, &[1.0; 5]).is_err());
    }
}
