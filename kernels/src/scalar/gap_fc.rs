//! Scalar twins of global average pooling, the fully connected layer, and the two
//! fused in one pass.

use crate::{Fc, KernelError, Planes};

/// `out[c] = mean of plane c`.
pub fn global_avg_pool(planes: &Planes, input: &[f32], out: &mut [f32]) -> Result<(), KernelError> {
    planes.check("global_avg_pool", input)?;
    if out.len() < planes.channels {
        return Err(KernelError::Shape {
            kernel: "global_avg_pool",
            what: "output shorter than the channel count".into(),
        });
    }
    for (c, o) in out.iter_mut().take(planes.channels).enumerate() {
        let plane = &input[c * planes.stride..][..planes.hw];
        *o = plane.iter().sum::<f32>() / planes.hw as f32;
    }
    Ok(())
}

/// `out = W x + b`.
pub fn fc(p: &Fc, x: &[f32], out: &mut [f32]) -> Result<(), KernelError> {
    p.check(out)?;
    if x.len() < p.inputs {
        return Err(KernelError::Shape {
            kernel: "fc",
            what: "input shorter than the feature count".into(),
        });
    }
    for (o, y) in out.iter_mut().take(p.outputs).enumerate() {
        let row = &p.weights[o * p.inputs..][..p.inputs];
        *y = p.bias[o] + row.iter().zip(x).map(|(w, v)| w * v).sum::<f32>();
    }
    Ok(())
}

/// Global average pool then FC; `pooled` is scratch of at least `planes.channels`.
pub fn gap_fc(
    p: &Fc,
    planes: &Planes,
    input: &[f32],
    pooled: &mut [f32],
    out: &mut [f32],
) -> Result<(), KernelError> {
    if p.inputs != planes.channels {
        return Err(KernelError::Shape {
            kernel: "gap_fc",
            what: "FC inputs differ from the pooled channels".into(),
        });
    }
    global_avg_pool(planes, input, pooled)?;
    fc(p, pooled, out)
}
