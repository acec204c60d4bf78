//! Scalar twin of the pointwise (grouped 1x1) GEMM with a K-row index table.

use crate::{KernelError, Pointwise, PointwiseCall, MR};

/// Computes the panels and pixels of `call`; see [`Pointwise`] for the math.
pub fn pointwise(
    p: &Pointwise,
    input: &[f32],
    output: &mut [f32],
    call: &PointwiseCall,
) -> Result<(), KernelError> {
    p.check(input, output, call)?;
    let c0 = p.channels_of(&call.panels).start;
    let ppg = p.panels_per_group();
    for panel in call.panels.clone() {
        let g = panel / ppg;
        let w = &p.weights[panel * p.k * MR..][..p.k * MR];
        let rows = &p.in_rows[g * p.k..][..p.k];
        for r in 0..p.rows_in_panel(panel) {
            let c = p.channel_of(panel, r);
            for i in 0..call.count {
                let mut acc = 0.0f32;
                for (kk, &row) in rows.iter().enumerate() {
                    let x = input[row as usize * call.input.stride + call.input.start + i];
                    acc += w[kk * MR + r] * x;
                }
                acc += p.bias[c];
                let o = &mut output[(c - c0) * call.output.stride + call.output.start + i];
                if p.epilogue.accumulate {
                    acc += *o;
                }
                if p.epilogue.relu {
                    acc = super::relu_at(acc, p.floor_of(c));
                }
                *o = acc;
            }
        }
    }
    Ok(())
}
