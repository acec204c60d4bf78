//! Writing: the program encoding and the whole file as bytes.

use super::format::{self, dtype, section, tag, MAX_KERNEL};
use super::FileError;
use crate::graph::{Layout, Pads, PoolSpec};
use crate::program::{LoweredModel, Program, Step, TensorData, View, MAX_CHANNELS};
use kernels::PoolKind;

/// A growing sequence of little-endian u32 words.
#[derive(Default)]
struct Words(Vec<u8>);

fn unencodable(what: String) -> FileError {
    FileError::Unencodable { what }
}

impl Words {
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    fn size(&mut self, v: usize, what: &str) -> Result<(), FileError> {
        let v = u32::try_from(v).map_err(|_| unencodable(format!("{what} {v} exceeds u32")))?;
        self.u32(v);
        Ok(())
    }

    /// A field the decoder bounds by `max`; refusing it here keeps every written file
    /// loadable.
    fn bounded(&mut self, v: u32, max: u32, what: &str) -> Result<(), FileError> {
        if v > max {
            return Err(unencodable(format!("{what} {v} exceeds {max}")));
        }
        self.u32(v);
        Ok(())
    }

    fn flag(&mut self, b: bool) {
        self.u32(u32::from(b));
    }

    fn f32s(&mut self, v: &[f32]) {
        for x in v {
            self.u32(x.to_bits());
        }
    }

    fn string(&mut self, s: &str, what: &str) -> Result<(), FileError> {
        self.size(s.len(), what)?;
        self.0.extend_from_slice(s.as_bytes());
        self.0.resize(self.0.len().next_multiple_of(4), 0);
        Ok(())
    }

    fn view(&mut self, v: View) {
        self.u32(v.buffer);
        self.u32(v.offset);
        self.u32(v.channels);
    }

    fn pads(&mut self, p: Pads) -> Result<(), FileError> {
        for v in [p.top, p.left, p.bottom, p.right] {
            self.size(v, "padding")?;
        }
        Ok(())
    }

    fn stride(&mut self, s: (usize, usize)) -> Result<(), FileError> {
        self.size(s.0, "stride")?;
        self.size(s.1, "stride")
    }

    fn kernel(&mut self, kh: usize, kw: usize) -> Result<(), FileError> {
        for v in [kh, kw] {
            let v = u32::try_from(v).unwrap_or(u32::MAX);
            self.bounded(v, MAX_KERNEL, "kernel size")?;
        }
        Ok(())
    }

    fn pool(&mut self, s: &PoolSpec) -> Result<(), FileError> {
        self.u32(match s.kind {
            PoolKind::Max => 0,
            PoolKind::Avg {
                count_include_pad: false,
            } => 1,
            PoolKind::Avg {
                count_include_pad: true,
            } => 2,
        });
        self.kernel(s.kh, s.kw)?;
        self.stride(s.stride)?;
        self.pads(s.pads)?;
        self.flag(s.ceil_mode);
        Ok(())
    }

    fn step(&mut self, step: &Step) -> Result<(), FileError> {
        match *step {
            Step::Pointwise {
                groups,
                k,
                m,
                weights,
                bias,
                in_rows,
                relu,
                floor,
                accumulate,
                input,
                output,
            } => {
                self.u32(match floor {
                    Some(_) => tag::POINTWISE_FLOOR,
                    None => tag::POINTWISE,
                });
                self.bounded(groups, MAX_CHANNELS, "pointwise groups")?;
                self.bounded(k, MAX_CHANNELS, "pointwise k")?;
                self.bounded(m, MAX_CHANNELS, "pointwise m")?;
                for t in [weights, bias, in_rows] {
                    self.u32(t);
                }
                self.flag(relu);
                self.flag(accumulate);
                if let Some(f) = floor {
                    self.u32(f);
                }
                self.view(input);
                self.view(output);
            }
            Step::Depthwise {
                stride,
                pads,
                weights,
                bias,
                relu,
                input,
                output,
            } => {
                self.u32(tag::DEPTHWISE);
                self.u32(stride);
                self.pads(pads)?;
                self.u32(weights);
                self.u32(bias);
                self.flag(relu);
                self.view(input);
                self.view(output);
            }
            Step::Conv {
                groups,
                kh,
                kw,
                stride,
                pads,
                weights,
                bias,
                relu,
                input,
                output,
            } => {
                self.u32(tag::CONV);
                self.u32(groups);
                self.kernel(kh as usize, kw as usize)?;
                self.u32(stride.0);
                self.u32(stride.1);
                self.pads(pads)?;
                self.u32(weights);
                self.u32(bias);
                self.flag(relu);
                self.view(input);
                self.view(output);
            }
            Step::Pool {
                ref spec,
                input,
                output,
            } => {
                self.u32(tag::POOL);
                self.pool(spec)?;
                self.view(input);
                self.view(output);
            }
            Step::GapFc {
                weights,
                bias,
                input,
                output,
            } => {
                self.u32(tag::GAP_FC);
                self.u32(weights);
                self.u32(bias);
                self.view(input);
                self.view(output);
            }
            Step::GlobalAvgPool { input, output } => {
                self.u32(tag::GLOBAL_AVG_POOL);
                self.view(input);
                self.view(output);
            }
            Step::Fc {
                weights,
                bias,
                input,
                output,
            } => {
                self.u32(tag::FC);
                self.u32(weights);
                self.u32(bias);
                self.view(input);
                self.view(output);
            }
            Step::Add { a, b, relu, output } => {
                self.u32(tag::ADD);
                self.view(a);
                self.view(b);
                self.flag(relu);
                self.view(output);
            }
            Step::Affine {
                scale,
                shift,
                relu,
                input,
                output,
            } => {
                self.u32(tag::AFFINE);
                self.u32(scale);
                self.u32(shift);
                self.flag(relu);
                self.view(input);
                self.view(output);
            }
            Step::Relu { view } => {
                self.u32(tag::RELU);
                self.view(view);
            }
            Step::Permute {
                table,
                input,
                output,
            } => {
                self.u32(tag::PERMUTE);
                self.u32(table);
                self.view(input);
                self.view(output);
            }
            Step::Softmax { view } => {
                self.u32(tag::SOFTMAX);
                self.view(view);
            }
        }
        Ok(())
    }
}

/// Encodes a program as the program section (format in [`super::format`]).
pub(crate) fn program(p: &Program) -> Result<Vec<u8>, FileError> {
    let mut w = Words::default();
    w.string(&p.description, "description length")?;
    w.string(&p.output_name, "output name length")?;
    let input = &p.input;
    w.size(input.channels, "input channels")?;
    w.u32(match input.layout {
        Layout::Nchw => 0,
        Layout::Nhwc => 1,
    });
    let (h, w_) = input.default_size.unwrap_or((0, 0));
    w.flag(input.default_size.is_some());
    w.size(h, "default height")?;
    w.size(w_, "default width")?;
    w.flag(input.preprocess.is_some());
    if let Some(pre) = &input.preprocess {
        if pre.mean.len() != pre.scale.len() {
            return Err(unencodable(
                "preprocessing mean and scale differ in length".into(),
            ));
        }
        w.size(pre.mean.len(), "preprocessing length")?;
        w.f32s(&pre.mean);
        w.f32s(&pre.scale);
    }
    w.size(p.buffers.len(), "buffer count")?;
    let total: u64 = p.buffers.iter().map(|b| u64::from(b.channels)).sum();
    if total > format::MAX_TOTAL_CHANNELS {
        return Err(unencodable(format!(
            "buffers hold {total} channels in total, more than {}",
            format::MAX_TOTAL_CHANNELS
        )));
    }
    for b in &p.buffers {
        w.u32(b.channels);
    }
    w.size(p.steps.len(), "step count")?;
    for s in &p.steps {
        w.step(s)?;
    }
    w.view(p.output);
    Ok(w.0)
}

fn put_u32(out: &mut [u8], at: usize, v: u32) {
    out[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_u64(out: &mut [u8], at: usize, v: u64) {
    out[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

fn align(n: usize) -> Result<usize, FileError> {
    let too_big = || unencodable("the model does not fit in memory".into());
    let a = format::align_up(n as u64).ok_or_else(too_big)?;
    usize::try_from(a).map_err(|_| too_big())
}

/// The complete file for `model`. The model is validated as loading validates it, so a
/// file that could not be loaded is never produced.
pub fn to_bytes(model: &LoweredModel) -> Result<Vec<u8>, FileError> {
    // Encoding first applies the decoder's bounds, which keep the validation's size
    // arithmetic in range.
    let program = program(&model.program)?;
    super::check_model(&model.program, model.tensors.as_slice())?;
    let count = u32::try_from(model.tensors.len())
        .map_err(|_| unencodable(format!("{} tensors exceed u32", model.tensors.len())))?;

    // Tensor offsets inside the data section.
    let mut offsets = Vec::with_capacity(model.tensors.len());
    let mut data_len = 0usize;
    for t in &model.tensors {
        offsets.push(data_len);
        let bytes = t
            .len()
            .checked_mul(4)
            .ok_or_else(|| unencodable("a tensor does not fit in memory".into()))?;
        data_len = align(data_len.saturating_add(bytes))?;
    }
    let table_len = format::TENSOR_TABLE_HEAD + format::TENSOR_ENTRY_LEN * model.tensors.len();

    let sections_start = align(
        format::SECTION_TABLE_OFFSET + format::SECTION_TABLE_HEAD + 3 * format::SECTION_ENTRY_LEN,
    )?;
    let program_at = sections_start;
    let table_at = align(program_at + program.len())?;
    let data_at = align(table_at + table_len)?;
    let file_len = data_at
        .checked_add(data_len)
        .ok_or_else(|| unencodable("the model does not fit in memory".into()))?;

    let mut out = vec![0u8; file_len];
    out[..8].copy_from_slice(&format::MAGIC);
    put_u32(&mut out, format::VERSION_OFFSET, format::VERSION);
    put_u32(&mut out, format::FLAGS_OFFSET, 0);
    put_u64(&mut out, format::FILE_LEN_OFFSET, file_len as u64);

    let mut at = format::SECTION_TABLE_OFFSET;
    put_u32(&mut out, at, 3);
    at += format::SECTION_TABLE_HEAD;
    for (kind, offset, len) in [
        (section::PROGRAM, program_at, program.len()),
        (section::TENSOR_TABLE, table_at, table_len),
        (section::TENSOR_DATA, data_at, data_len),
    ] {
        put_u32(&mut out, at, kind);
        put_u64(&mut out, at + 8, offset as u64);
        put_u64(&mut out, at + 16, len as u64);
        at += format::SECTION_ENTRY_LEN;
    }

    out[program_at..program_at + program.len()].copy_from_slice(&program);

    put_u32(&mut out, table_at, count);
    for (i, (t, &offset)) in model.tensors.iter().zip(&offsets).enumerate() {
        let e = table_at + format::TENSOR_TABLE_HEAD + i * format::TENSOR_ENTRY_LEN;
        let code = match t {
            TensorData::F32(_) => dtype::F32,
            TensorData::U32(_) => dtype::U32,
        };
        put_u32(&mut out, e, code);
        put_u64(&mut out, e + 8, offset as u64);
        put_u64(&mut out, e + 16, t.len() as u64);
        let bytes: &[u8] = match t {
            TensorData::F32(v) => bytemuck::cast_slice(v),
            TensorData::U32(v) => bytemuck::cast_slice(v),
        };
        let start = data_at + offset;
        out[start..start + bytes.len()].copy_from_slice(bytes);
    }
    format::reseal(&mut out);
    Ok(out)
}
