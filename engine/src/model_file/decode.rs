//! Decoding the program section: a bounds-checked little-endian reader and the
//! inverse of `encode`. Any byte sequence gives a program or an error, never a panic:
//! every read is checked, and every count is compared with the bytes left before
//! anything is allocated for it.

use super::format::{self, tag, MAX_KERNEL};
use super::FileError;
use crate::graph::{InputSpec, Layout, Pads, PoolSpec, Preprocess};
use crate::program::{BufferDecl, Program, Step, View, MAX_BUFFERS, MAX_CHANNELS, MAX_STEPS};
use kernels::PoolKind;

/// Smallest encoded step (a tag and one view), to bound the step count.
const MIN_STEP_BYTES: usize = 16;

/// A cursor over a section's bytes; errors carry the absolute file offset.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// File offset of `bytes[0]`.
    base: u64,
}

impl<'a> Reader<'a> {
    fn error_at(&self, pos: usize, what: String) -> FileError {
        FileError::BadEncoding {
            offset: self.base + pos as u64,
            what,
        }
    }

    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], FileError> {
        if n > self.remaining() {
            return Err(self.error_at(self.pos, format!("{what}: the section ends")));
        }
        let bytes: &'a [u8] = self.bytes;
        let s = &bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn u32(&mut self, what: &str) -> Result<u32, FileError> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A u32 that must be at most `max`.
    fn bounded(&mut self, max: u32, what: &str) -> Result<u32, FileError> {
        let at = self.pos;
        let v = self.u32(what)?;
        if v > max {
            return Err(self.error_at(at, format!("{what} {v} exceeds {max}")));
        }
        Ok(v)
    }

    fn usize(&mut self, what: &str) -> Result<usize, FileError> {
        // u32 always fits in usize on the 32- and 64-bit targets the engine supports.
        Ok(self.u32(what)? as usize)
    }

    fn flag(&mut self, what: &str) -> Result<bool, FileError> {
        let at = self.pos;
        match self.u32(what)? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(self.error_at(at, format!("{what} is {v}, not 0 or 1"))),
        }
    }

    /// A count of items of `item_bytes` each that follow; at most what the section holds.
    fn count(&mut self, item_bytes: usize, what: &str) -> Result<usize, FileError> {
        let at = self.pos;
        let n = self.usize(what)?;
        if n > self.remaining() / item_bytes {
            return Err(self.error_at(
                at,
                format!(
                    "{what} {n} is more than the section's remaining {} bytes hold",
                    self.remaining()
                ),
            ));
        }
        Ok(n)
    }

    fn f32s(&mut self, n: usize, what: &str) -> Result<Vec<f32>, FileError> {
        // `n` came from `count`, so the bytes are there.
        let b = self.take(n * 4, what)?;
        Ok(b.chunks_exact(4)
            .map(|c| f32::from_bits(u32::from_le_bytes([c[0], c[1], c[2], c[3]])))
            .collect())
    }

    fn string(&mut self, what: &str) -> Result<String, FileError> {
        let n = self.count(1, what)?;
        let at = self.pos;
        let bytes = self.take(n, what)?;
        let s = std::str::from_utf8(bytes)
            .map_err(|e| self.error_at(at, format!("{what} is not UTF-8: {e}")))?
            .to_owned();
        let pad_at = self.pos;
        let pad = self.take(n.next_multiple_of(4) - n, what)?;
        if pad.iter().any(|&b| b != 0) {
            return Err(self.error_at(pad_at, format!("{what} padding is not zero")));
        }
        Ok(s)
    }

    fn view(&mut self) -> Result<View, FileError> {
        Ok(View {
            buffer: self.u32("view buffer")?,
            offset: self.u32("view offset")?,
            channels: self.u32("view channels")?,
        })
    }

    fn pads(&mut self) -> Result<Pads, FileError> {
        Ok(Pads {
            top: self.usize("padding")?,
            left: self.usize("padding")?,
            bottom: self.usize("padding")?,
            right: self.usize("padding")?,
        })
    }

    fn pool(&mut self) -> Result<PoolSpec, FileError> {
        let at = self.pos;
        let kind = match self.u32("pool kind")? {
            0 => PoolKind::Max,
            1 => PoolKind::Avg {
                count_include_pad: false,
            },
            2 => PoolKind::Avg {
                count_include_pad: true,
            },
            v => return Err(self.error_at(at, format!("unknown pool kind {v}"))),
        };
        Ok(PoolSpec {
            kind,
            kh: self.bounded(MAX_KERNEL, "kernel size")? as usize,
            kw: self.bounded(MAX_KERNEL, "kernel size")? as usize,
            stride: (self.usize("stride")?, self.usize("stride")?),
            pads: self.pads()?,
            ceil_mode: self.flag("ceil mode")?,
        })
    }

    fn step(&mut self) -> Result<Step, FileError> {
        let at = self.pos;
        Ok(match self.u32("step tag")? {
            t @ (tag::POINTWISE | tag::POINTWISE_FLOOR) => Step::Pointwise {
                groups: self.bounded(MAX_CHANNELS, "pointwise groups")?,
                k: self.bounded(MAX_CHANNELS, "pointwise k")?,
                m: self.bounded(MAX_CHANNELS, "pointwise m")?,
                weights: self.u32("tensor id")?,
                bias: self.u32("tensor id")?,
                in_rows: self.u32("tensor id")?,
                relu: self.flag("relu")?,
                accumulate: self.flag("accumulate")?,
                floor: match t {
                    tag::POINTWISE_FLOOR => Some(self.u32("tensor id")?),
                    _ => None,
                },
                input: self.view()?,
                output: self.view()?,
            },
            tag::DEPTHWISE => Step::Depthwise {
                stride: self.u32("stride")?,
                pads: self.pads()?,
                weights: self.u32("tensor id")?,
                bias: self.u32("tensor id")?,
                relu: self.flag("relu")?,
                input: self.view()?,
                output: self.view()?,
            },
            tag::CONV => Step::Conv {
                groups: self.u32("conv groups")?,
                kh: self.bounded(MAX_KERNEL, "kernel size")?,
                kw: self.bounded(MAX_KERNEL, "kernel size")?,
                stride: (self.u32("stride")?, self.u32("stride")?),
                pads: self.pads()?,
                weights: self.u32("tensor id")?,
                bias: self.u32("tensor id")?,
                relu: self.flag("relu")?,
                input: self.view()?,
                output: self.view()?,
            },
            tag::POOL => Step::Pool {
                spec: self.pool()?,
                input: self.view()?,
                output: self.view()?,
            },
            tag::GAP_FC => Step::GapFc {
                weights: self.u32("tensor id")?,
                bias: self.u32("tensor id")?,
                input: self.view()?,
                output: self.view()?,
            },
            tag::GLOBAL_AVG_POOL => Step::GlobalAvgPool {
                input: self.view()?,
                output: self.view()?,
            },
            tag::FC => Step::Fc {
                weights: self.u32("tensor id")?,
                bias: self.u32("tensor id")?,
                input: self.view()?,
                output: self.view()?,
            },
            tag::ADD => Step::Add {
                a: self.view()?,
                b: self.view()?,
                relu: self.flag("relu")?,
                output: self.view()?,
            },
            tag::AFFINE => Step::Affine {
                scale: self.u32("tensor id")?,
                shift: self.u32("tensor id")?,
                relu: self.flag("relu")?,
                input: self.view()?,
                output: self.view()?,
            },
            tag::RELU => Step::Relu { view: self.view()? },
            tag::PERMUTE => Step::Permute {
                table: self.u32("tensor id")?,
                input: self.view()?,
                output: self.view()?,
            },
            tag::SOFTMAX => Step::Softmax { view: self.view()? },
            t => return Err(self.error_at(at, format!("unknown step tag {t}"))),
        })
    }

    fn input(&mut self) -> Result<InputSpec, FileError> {
        let channels = self.usize("input channels")?;
        let at = self.pos;
        let layout = match self.u32("input layout")? {
            0 => Layout::Nchw,
            1 => Layout::Nhwc,
            v => return Err(self.error_at(at, format!("unknown input layout {v}"))),
        };
        let has_size = self.flag("default size flag")?;
        let at = self.pos;
        let size = (self.usize("default height")?, self.usize("default width")?);
        let default_size = match (has_size, size) {
            (true, _) => Some(size),
            (false, (0, 0)) => None,
            (false, _) => {
                return Err(self.error_at(at, "a size is stored without its flag".into()));
            }
        };
        let preprocess = if self.flag("preprocessing flag")? {
            let n = self.count(8, "preprocessing length")?;
            Some(Preprocess {
                mean: self.f32s(n, "preprocessing mean")?,
                scale: self.f32s(n, "preprocessing scale")?,
            })
        } else {
            None
        };
        Ok(InputSpec {
            channels,
            layout,
            default_size,
            preprocess,
        })
    }
}

/// Decodes the program section `bytes`, which starts at file offset `base`.
pub(crate) fn program(bytes: &[u8], base: u64) -> Result<Program, FileError> {
    let mut r = Reader {
        bytes,
        pos: 0,
        base,
    };
    let description = r.string("description")?;
    let output_name = r.string("output name")?;
    let input = r.input()?;
    let at = r.pos;
    let n = r.count(4, "buffer count")?;
    if n > MAX_BUFFERS {
        return Err(r.error_at(at, format!("{n} buffers, more than {MAX_BUFFERS}")));
    }
    let mut buffers = Vec::with_capacity(n);
    let mut total = 0u64;
    for _ in 0..n {
        let channels = r.u32("buffer channels")?;
        total = total.saturating_add(u64::from(channels));
        buffers.push(BufferDecl { channels });
    }
    if total > format::MAX_TOTAL_CHANNELS {
        return Err(r.error_at(
            at,
            format!(
                "buffers hold {total} channels in total, more than {}",
                format::MAX_TOTAL_CHANNELS
            ),
        ));
    }
    let at = r.pos;
    let n = r.count(MIN_STEP_BYTES, "step count")?;
    if n > MAX_STEPS {
        return Err(r.error_at(at, format!("{n} steps, more than {MAX_STEPS}")));
    }
    let mut steps = Vec::with_capacity(n);
    for _ in 0..n {
        steps.push(r.step()?);
    }
    let output = r.view()?;
    if r.remaining() != 0 {
        return Err(r.error_at(r.pos, format!("{} bytes after the program", r.remaining())));
    }
    Ok(Program {
        description,
        input,
        output_name,
        buffers,
        steps,
        output,
    })
}
