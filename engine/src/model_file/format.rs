//! The model file format, version 1. All integers are little-endian; every section
//! starts on a 64-byte boundary of the file, and so does every tensor.
//!
//! ```text
//! offset  size  field
//! ------  ----  ---------------------------------------------------------------
//! Header (64 bytes)
//!      0     8  magic: 89 53 4E 4D 0D 0A 1A 0A ("\x89SNM\r\n\x1a\n"; the high
//!               byte and the line endings catch 7-bit and text-mode transfers)
//!      8     4  format version (u32) = 1
//!     12     4  flags (u32); no flag is defined in version 1, so it must be 0
//!     16     8  file length in bytes (u64), header included
//!     24     8  checksum (u64): XXH64, seed 0, of bytes [64, file length)
//!     32    32  reserved, zero
//! Section table (at 64)
//!     64     4  section count n (u32), 1..=16
//!     68     4  reserved, zero
//!     72  24*n  entries: kind (u32), reserved (u32, zero), offset (u64, from the
//!               start of the file, a multiple of 64), length (u64, bytes)
//! Sections: in range, 64-byte aligned, after the section table, not overlapping;
//! each of the three kinds exactly once:
//!   kind 1  program:      the op list, encoded below
//!   kind 2  tensor table: count (u32), reserved (u32, zero), then per tensor
//!                         (24 bytes): dtype (u32: 1 = f32, 2 = u32), reserved (u32,
//!                         zero), offset (u64, bytes from the start of the tensor-data
//!                         section, a multiple of 64), element count (u64)
//!   kind 3  tensor data:  the tensors' elements, each tensor inside the section and
//!                         64-byte aligned (tensors may share bytes: they are read only)
//! ```
//!
//! The program section is a sequence of u32 words (f32 as its bits, bool as 0 or 1,
//! strings as a byte length, UTF-8 bytes and zero padding to 4 bytes), in this order:
//!
//! ```text
//! description (string), output name (string)
//! input: channels, layout (0 = NCHW, 1 = NHWC),
//!        has default size (bool), height, width (both 0 without a default size),
//!        has preprocessing (bool) [, n, n x mean (f32), n x scale (f32)]
//! buffers: count, then count x channels
//! steps: count, then per step a tag and its fields (a view is buffer, offset, channels;
//!        pads are top, left, bottom, right):
//!    1 pointwise   groups k m weights bias in_rows relu accumulate input output
//!   13 pointwise with ReLU floors (version 2 on): as 1, with the floor tensor after
//!                  accumulate
//!    2 depthwise   stride pads weights bias relu input output
//!    3 conv        groups kh kw stride_h stride_w pads weights bias relu input output
//!    4 pool        kind (0 max, 1 avg excluding pads, 2 avg including pads) kh kw
//!                  stride_h stride_w pads ceil_mode input output
//!    5 gap_fc      weights bias input output
//!    6 global_avg_pool  input output
//!    7 fc          weights bias input output
//!    8 add         a b relu output
//!    9 affine      scale shift relu input output
//!   10 relu        view
//!   11 permute     table input output
//!   12 softmax     view
//! output view
//! ```
//!
//! The section's length is exactly the encoding's length. Loading checks every field
//! the encoding can get wrong (tags, booleans, enums, reserved words, counts against the
//! bytes left, UTF-8, at most [`MAX_BUFFERS`](crate::program::MAX_BUFFERS) buffers and
//! [`MAX_STEPS`](crate::program::MAX_STEPS) steps, and the bounds below that keep the
//! later arithmetic in range),
//! then [`crate::program::Program::validate`] checks the program's meaning.
//!
//! Checksum speed (XXH64, [`checksum`], checked against published XXH64 vectors, so
//! `xxhsum` of the bytes after the header reproduces it): 9-11 GB/s on the x86 build
//! host (a 30 MB file: checksum 2.6 ms, `Model::open` from the page cache 2.7 ms);
//! llvm-mca estimates the loop at 1.6 bytes/cycle on Cortex-A55 and 2.5 on Cortex-A76.
//!

pub use super::checksum::checksum;

/// The eight bytes every model file starts with.
pub const MAGIC: [u8; 8] = *b"\x89SNM\r\n\x1a\n";
/// The format version this build writes (2 added step tag 13, the pointwise
/// ReLU floors).
pub const VERSION: u32 = 2;
/// The oldest format version this build reads (version 1 files have no tag 13,
/// and are otherwise the same).
pub const MIN_VERSION: u32 = 1;
/// Alignment of sections and tensors, in bytes.
pub const ALIGN: u64 = 64;
/// Length of the fixed header.
pub const HEADER_LEN: usize = 64;
/// Byte offset of the version field.
pub const VERSION_OFFSET: usize = 8;
/// Byte offset of the flags field.
pub const FLAGS_OFFSET: usize = 12;
/// Byte offset of the file length field.
pub const FILE_LEN_OFFSET: usize = 16;
/// Byte offset of the checksum field.
pub const CHECKSUM_OFFSET: usize = 24;
/// Byte offset of the section table (its count word).
pub const SECTION_TABLE_OFFSET: usize = 64;
/// Length of the section table's count and reserved words.
pub const SECTION_TABLE_HEAD: usize = 8;
/// Length of one section table entry.
pub const SECTION_ENTRY_LEN: usize = 24;
/// Most sections a file may declare.
pub const MAX_SECTIONS: u32 = 16;
/// Length of the tensor table's count and reserved words.
pub const TENSOR_TABLE_HEAD: usize = 8;
/// Length of one tensor table entry.
pub const TENSOR_ENTRY_LEN: usize = 24;

/// Largest kernel height or width the decoder accepts (the program validation allows
/// far less; this bound only keeps its size arithmetic far from overflow).
pub const MAX_KERNEL: u32 = 1 << 10;
/// Largest total channel count over all buffers (bounds the validation's memory).
pub const MAX_TOTAL_CHANNELS: u64 = 1 << 24;

/// Section kind codes.
pub mod section {
    /// The encoded program.
    pub const PROGRAM: u32 = 1;
    /// The tensor table.
    pub const TENSOR_TABLE: u32 = 2;
    /// The tensors' data.
    pub const TENSOR_DATA: u32 = 3;

    /// A section kind's name, for error messages.
    pub fn name(kind: u32) -> &'static str {
        match kind {
            PROGRAM => "program",
            TENSOR_TABLE => "tensor table",
            TENSOR_DATA => "tensor data",
            _ => "unknown",
        }
    }
}

/// Tensor element type codes.
pub mod dtype {
    /// 32-bit float.
    pub const F32: u32 = 1;
    /// 32-bit unsigned integer.
    pub const U32: u32 = 2;
}

/// Step tags of the program encoding.
pub mod tag {
    /// [`crate::program::Step::Pointwise`].
    pub const POINTWISE: u32 = 1;
    /// [`crate::program::Step::Depthwise`].
    pub const DEPTHWISE: u32 = 2;
    /// [`crate::program::Step::Conv`].
    pub const CONV: u32 = 3;
    /// [`crate::program::Step::Pool`].
    pub const POOL: u32 = 4;
    /// [`crate::program::Step::GapFc`].
    pub const GAP_FC: u32 = 5;
    /// [`crate::program::Step::GlobalAvgPool`].
    pub const GLOBAL_AVG_POOL: u32 = 6;
    /// [`crate::program::Step::Fc`].
    pub const FC: u32 = 7;
    /// [`crate::program::Step::Add`].
    pub const ADD: u32 = 8;
    /// [`crate::program::Step::Affine`].
    pub const AFFINE: u32 = 9;
    /// [`crate::program::Step::Relu`].
    pub const RELU: u32 = 10;
    /// [`crate::program::Step::Permute`].
    pub const PERMUTE: u32 = 11;
    /// [`crate::program::Step::Softmax`].
    pub const SOFTMAX: u32 = 12;
    /// [`crate::program::Step::Pointwise`] with ReLU floors.
    pub const POINTWISE_FLOOR: u32 = 13;
}

/// Rounds `n` up to a multiple of [`ALIGN`] (`None` on overflow).
pub fn align_up(n: u64) -> Option<u64> {
    n.checked_add(ALIGN - 1).map(|v| v & !(ALIGN - 1))
}

/// Recomputes the checksum of a complete file in place (for tools and tests that edit
/// a file). Does nothing to a buffer shorter than the header.
pub fn reseal(file: &mut [u8]) {
    if file.len() < HEADER_LEN {
        return;
    }
    let sum = checksum(&file[HEADER_LEN..]);
    file[CHECKSUM_OFFSET..CHECKSUM_OFFSET + 8].copy_from_slice(&sum.to_le_bytes());
}
