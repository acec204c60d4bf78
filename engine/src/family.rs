//! The ShuffleNet v1 family of the paper (Zhang et al., Table 1), built in code with
//! deterministic synthetic weights.
//!
//! Channel rules (the same for every model):
//! - Stage output channels at scale `s` are `round(s * c1x / (4g)) * 4g` (at least
//!   `4g`), where `c1x` is the paper's 1x figure. A multiple of `4g` makes the
//!   bottleneck (`out / 4`) divide by `g`. This reproduces the paper at 1x and the
//!   authors' released 0.5x, 1.5x and 2x models for g=3 and g=8.
//! - conv1 has `ceil(24 * s)` channels rounded up to a multiple of `g` (so the
//!   stride-2 branch of stage 2, `out - conv1`, divides by `g`), except at 1.5x,
//!   which keeps 24 as the released models do. This gives 12 at 0.5x g=3, 16 at
//!   0.5x g=8, 24 at 1x and 1.5x, 48 at 2x.
//! - The first 1x1 conv of stage 2 is not grouped; every unit with `g > 1` shuffles
//!   after the first 1x1 conv's ReLU, as in the paper.

use crate::graph::{
    BatchNorm, Conv, Fc, Graph, GraphBuilder, GraphError, InputSpec, Layout, Op, Pads, PoolSpec,
    Preprocess, ValueId,
};
use crate::reference;
use crate::rng::Rng;
use crate::Error;
use kernels::PoolKind;

/// Group counts of the family.
pub const GROUPS: [usize; 5] = [1, 2, 3, 4, 8];
/// Scales of the family.
pub const SCALES: [f32; 5] = [0.25, 0.5, 1.0, 1.5, 2.0];
/// Units per stage after the stride-2 unit.
pub const REPEATS: [usize; 3] = [3, 7, 3];
/// Classes of the classifier.
pub const CLASSES: usize = 1000;
/// Seed of the built-in synthetic weights.
pub const DEFAULT_SEED: u64 = 0x5_4u64 << 32 | 0x1f1e;

/// Channel plan of one member of the family.
#[derive(Clone, Debug, PartialEq)]
pub struct Arch {
    /// Groups of the 1x1 convs.
    pub groups: usize,
    /// Width multiplier.
    pub scale: f32,
    /// conv1 output channels.
    pub conv1: usize,
    /// Output channels of stages 2, 3, 4.
    pub stages: [usize; 3],
}

fn stage_out_1x(groups: usize) -> Option<[usize; 3]> {
    Some(match groups {
        1 => [144, 288, 576],
        2 => [200, 400, 800],
        3 => [240, 480, 960],
        4 => [272, 544, 1088],
        8 => [384, 768, 1536],
        _ => return None,
    })
}

impl Arch {
    /// The channel plan for `groups` in {1, 2, 3, 4, 8} and `scale` in
    /// {0.25, 0.5, 1, 1.5, 2}.
    pub fn new(groups: usize, scale: f32) -> Result<Arch, Error> {
        let base = stage_out_1x(groups).ok_or_else(|| {
            Error::Argument(format!("groups must be one of {GROUPS:?}, got {groups}"))
        })?;
        if !SCALES.contains(&scale) {
            return Err(Error::Argument(format!(
                "scale must be one of {SCALES:?}, got {scale}"
            )));
        }
        let unit = 4 * groups;
        let round =
            |c: usize| ((scale * c as f32 / unit as f32 + 0.5).floor() as usize).max(1) * unit;
        let conv1 = if scale == 1.5 {
            24
        } else {
            ((24.0 * scale).ceil() as usize).div_ceil(groups) * groups
        };
        Ok(Arch {
            groups,
            scale,
            conv1,
            stages: base.map(round),
        })
    }

    /// Name as used in the paper, e.g. "ShuffleNet 1x (g = 3)".
    pub fn name(&self) -> String {
        format!("ShuffleNet v1 {}x (g = {})", self.scale, self.groups)
    }
}

/// Builds a member of the family with synthetic weights from `seed`, its BatchNorm
/// statistics calibrated on a random input so activations stay near unit scale.
pub fn build(groups: usize, scale: f32, seed: u64) -> Result<Graph, Error> {
    let arch = Arch::new(groups, scale)?;
    let mut g = Builder {
        b: GraphBuilder::new(
            arch.name(),
            InputSpec {
                channels: 3,
                layout: Layout::Nchw,
                default_size: Some((224, 224)),
                preprocess: Some(Preprocess {
                    mean: vec![123.675, 116.28, 103.53],
                    scale: vec![1.0 / 58.395, 1.0 / 57.12, 1.0 / 57.375],
                }),
            },
        ),
        rng: Rng::new(seed),
    };
    let x = g.b.input();
    let x = g.conv_bn("conv1", x, arch.conv1, 3, 2, 1, true)?;
    let mut x = g.b.push(
        "maxpool",
        Op::Pool(PoolSpec {
            kind: PoolKind::Max,
            kh: 3,
            kw: 3,
            stride: (2, 2),
            pads: Pads::uniform(1),
            ceil_mode: false,
        }),
        &[x],
        arch.conv1,
    );
    for (s, (&cout, &repeats)) in arch.stages.iter().zip(&REPEATS).enumerate() {
        let stage = s + 2;
        x = g.unit_stride2(&format!("stage{stage}.0"), x, cout, arch.groups, s == 0)?;
        for u in 1..=repeats {
            x = g.unit_stride1(&format!("stage{stage}.{u}"), x, arch.groups)?;
        }
    }
    let c = g.b.channels(x);
    let x = g.b.push("globalpool", Op::GlobalAvgPool, &[x], c);
    let bound = (1.0 / c as f32).sqrt();
    let fc = Fc {
        inputs: c,
        outputs: CLASSES,
        weight: g.rng.fill(c * CLASSES, -bound, bound),
        bias: g.rng.fill(CLASSES, -0.01, 0.01),
    };
    let x = g.b.push("fc", Op::Fc(fc), &[x], CLASSES);
    let mut graph = g.b.finish(x, "logits")?;
    reference::calibrate_batchnorm(&mut graph, 64, 64, seed ^ 0xC0FFEE)?;
    Ok(graph)
}

struct Builder {
    b: GraphBuilder,
    rng: Rng,
}

impl Builder {
    /// Conv (no bias) + BatchNorm (+ ReLU); BN statistics are placeholders until
    /// calibration.
    #[allow(clippy::too_many_arguments)]
    fn conv_bn(
        &mut self,
        name: &str,
        x: ValueId,
        cout: usize,
        k: usize,
        stride: usize,
        groups: usize,
        relu: bool,
    ) -> Result<ValueId, GraphError> {
        let cin = self.b.channels(x);
        if !cin.is_multiple_of(groups) || !cout.is_multiple_of(groups) {
            return Err(GraphError::Node {
                node: name.into(),
                what: format!("{cin} -> {cout} channels do not divide by {groups} groups"),
            });
        }
        let fan_in = cin / groups * k * k;
        let bound = (6.0 / fan_in as f32).sqrt();
        let conv = Conv {
            cin,
            cout,
            groups,
            kh: k,
            kw: k,
            stride: (stride, stride),
            pads: Pads::uniform(k / 2),
            weight: self.rng.fill(cout * fan_in, -bound, bound),
            bias: None,
        };
        let y = self
            .b
            .push(format!("{name}.conv"), Op::Conv(conv), &[x], cout);
        let bn = BatchNorm {
            gamma: self.rng.fill(cout, 0.7, 1.3),
            beta: self.rng.fill(cout, -0.1, 0.3),
            mean: vec![0.0; cout],
            var: vec![1.0; cout],
            eps: 1e-5,
        };
        let y = self
            .b
            .push(format!("{name}.bn"), Op::BatchNorm(bn), &[y], cout);
        Ok(if relu {
            self.b.push(format!("{name}.relu"), Op::Relu, &[y], cout)
        } else {
            y
        })
    }

    /// GConv1 -> BN -> ReLU -> shuffle -> DW 3x3 -> BN -> GConv2 -> BN, producing
    /// `branch_out` channels.
    #[allow(clippy::too_many_arguments)]
    fn branch(
        &mut self,
        name: &str,
        x: ValueId,
        bottleneck: usize,
        branch_out: usize,
        stride: usize,
        groups: usize,
        first_groups: usize,
    ) -> Result<ValueId, GraphError> {
        let y = self.conv_bn(
            &format!("{name}.gconv1"),
            x,
            bottleneck,
            1,
            1,
            first_groups,
            true,
        )?;
        let y = if groups > 1 {
            self.b.push(
                format!("{name}.shuffle"),
                Op::ChannelShuffle { groups },
                &[y],
                bottleneck,
            )
        } else {
            y
        };
        let y = self.conv_bn(
            &format!("{name}.dwconv"),
            y,
            bottleneck,
            3,
            stride,
            bottleneck,
            false,
        )?;
        self.conv_bn(
            &format!("{name}.gconv2"),
            y,
            branch_out,
            1,
            1,
            groups,
            false,
        )
    }

    fn unit_stride1(
        &mut self,
        name: &str,
        x: ValueId,
        groups: usize,
    ) -> Result<ValueId, GraphError> {
        let c = self.b.channels(x);
        let y = self.branch(name, x, c / 4, c, 1, groups, groups)?;
        let y = self.b.push(format!("{name}.add"), Op::Add, &[x, y], c);
        Ok(self.b.push(format!("{name}.relu"), Op::Relu, &[y], c))
    }

    fn unit_stride2(
        &mut self,
        name: &str,
        x: ValueId,
        cout: usize,
        groups: usize,
        first: bool,
    ) -> Result<ValueId, GraphError> {
        let cin = self.b.channels(x);
        let first_groups = if first { 1 } else { groups };
        let y = self.branch(name, x, cout / 4, cout - cin, 2, groups, first_groups)?;
        let pool = PoolSpec {
            kind: PoolKind::Avg {
                count_include_pad: true,
            },
            kh: 3,
            kw: 3,
            stride: (2, 2),
            pads: Pads::uniform(1),
            ceil_mode: false,
        };
        let s = self
            .b
            .push(format!("{name}.avgpool"), Op::Pool(pool), &[x], cin);
        let cat = self
            .b
            .push(format!("{name}.concat"), Op::Concat, &[s, y], cout);
        Ok(self.b.push(format!("{name}.relu"), Op::Relu, &[cat], cout))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_x_channels_match_table_1() {
        for (g, want) in [
            (1, [144, 288, 576]),
            (2, [200, 400, 800]),
            (3, [240, 480, 960]),
            (4, [272, 544, 1088]),
            (8, [384, 768, 1536]),
        ] {
            let a = Arch::new(g, 1.0).unwrap();
            assert_eq!(a.stages, want, "g={g}");
            assert_eq!(a.conv1, 24);
        }
    }

    #[test]
    fn released_models_channels() {
        let cases = [
            (3, 0.5, 12, [120, 240, 480]),
            (3, 1.5, 24, [360, 720, 1440]),
            (3, 2.0, 48, [480, 960, 1920]),
            (8, 0.5, 16, [192, 384, 768]),
            (8, 1.5, 24, [576, 1152, 2304]),
            (8, 2.0, 48, [768, 1536, 3072]),
        ];
        for (g, s, conv1, stages) in cases {
            let a = Arch::new(g, s).unwrap();
            assert_eq!((a.conv1, a.stages), (conv1, stages), "g={g} s={s}");
        }
    }

    #[test]
    fn every_member_divides_by_its_groups() {
        for g in GROUPS {
            for s in SCALES {
                let a = Arch::new(g, s).unwrap();
                assert_eq!(a.conv1 % g, 0);
                for c in a.stages {
                    assert_eq!(c % (4 * g), 0, "g={g} s={s}");
                }
            }
        }
    }

    #[test]
    fn refuses_unknown_members() {
        assert!(Arch::new(5, 1.0).is_err());
        assert!(Arch::new(3, 0.75).is_err());
    }

    #[test]
    fn synthetic_weights_are_deterministic() {
        let a = build(3, 0.25, 7).unwrap();
        let b = build(3, 0.25, 7).unwrap();
        let c = build(3, 0.25, 8).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}
