//! What can be wrong with a model file, or with writing one.

use crate::program::ProgramError;
use std::path::PathBuf;

/// A model file that cannot be read or written. Every check of the loader has its own
/// variant, so a test (or a user) can tell exactly which check failed.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The operating system refused a read, write, rename or map.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done ("cannot open", "cannot map", ...).
        op: &'static str,
        /// The file involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file is shorter than its header says (or than a header).
    #[error("truncated model file: {actual} bytes, expected {expected}")]
    Truncated {
        /// Length the header declares (or the header's length).
        expected: u64,
        /// Length found.
        actual: u64,
    },
    /// The file is longer than its header says.
    #[error("model file has trailing bytes: {actual} bytes, expected {expected}")]
    TrailingBytes {
        /// Length the header declares.
        expected: u64,
        /// Length found.
        actual: u64,
    },
    /// The file does not start with the model file magic.
    #[error("not a shufflenet model file (magic {found:02x?})")]
    BadMagic {
        /// The first eight bytes.
        found: [u8; 8],
    },
    /// The file is of a format version this build cannot read.
    #[error(
        "model file version {found} is not supported (this build reads versions 1 to {supported})"
    )]
    UnsupportedVersion {
        /// Version in the file.
        found: u32,
        /// Version this build reads.
        supported: u32,
    },
    /// The header sets flags this version does not define.
    #[error("model file sets unknown flags {flags:#x}")]
    UnsupportedFlags {
        /// The flags word.
        flags: u32,
    },
    /// The contents do not match the stored checksum: the file is corrupted.
    #[error("model file checksum mismatch: stored {stored:#018x}, computed {computed:#018x}")]
    ChecksumMismatch {
        /// Checksum in the header.
        stored: u64,
        /// Checksum of the contents.
        computed: u64,
    },
    /// The section table is malformed (count, kind, duplicates, missing sections).
    #[error("bad section table: {what}")]
    BadSectionTable {
        /// What is wrong.
        what: String,
    },
    /// A section lies (partly) outside the file or over the header and section table.
    #[error("{section} section (offset {offset}, {length} bytes) is outside the {file_len}-byte file or overlaps its header")]
    SectionOutOfRange {
        /// Section kind name.
        section: &'static str,
        /// Declared offset.
        offset: u64,
        /// Declared length.
        length: u64,
        /// File length.
        file_len: u64,
    },
    /// Two sections overlap.
    #[error("{first} and {second} sections overlap")]
    SectionOverlap {
        /// One section kind name.
        first: &'static str,
        /// The other.
        second: &'static str,
    },
    /// A section or tensor is not on a 64-byte boundary.
    #[error("{what} at offset {offset} is not {align}-byte aligned")]
    Misaligned {
        /// What is misaligned.
        what: String,
        /// Its offset.
        offset: u64,
        /// Required alignment.
        align: u64,
    },
    /// A tensor lies (partly) outside the tensor-data section.
    #[error("tensor {id} (offset {offset}, {count} elements) lies outside the {data_len}-byte tensor data")]
    TensorOutOfRange {
        /// Tensor id.
        id: u32,
        /// Offset in the tensor-data section.
        offset: u64,
        /// Element count.
        count: u64,
        /// Length of the tensor-data section.
        data_len: u64,
    },
    /// A tensor has an element type code this version does not define.
    #[error("tensor {id} has unknown element type {code}")]
    UnknownDType {
        /// Tensor id.
        id: u32,
        /// The code.
        code: u32,
    },
    /// A field of a table or of the program encoding has an impossible value.
    #[error("bad encoding at byte {offset}: {what}")]
    BadEncoding {
        /// Offset of the field in the file.
        offset: u64,
        /// What is wrong.
        what: String,
    },
    /// The decoded program is inconsistent (views, tensors, index tables, ...).
    #[error("invalid program in model file: {0}")]
    InvalidProgram(#[from] ProgramError),
    /// A value of the model does not fit the file format (when writing).
    #[error("cannot encode the model: {what}")]
    Unencodable {
        /// What does not fit.
        what: String,
    },
}
