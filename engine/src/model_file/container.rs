//! Reading the container: header, checksum, section table and tensor table. Every
//! offset and length is checked here, with checked arithmetic, before any use.

use super::format::{self, section, ALIGN, HEADER_LEN};
use super::FileError;
use crate::program::DType;

/// A section of a file: `length` bytes at `offset` from the start of the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Section {
    /// Offset from the start of the file (a multiple of 64).
    pub offset: u64,
    /// Length in bytes.
    pub length: u64,
}

/// One entry of the tensor table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TensorEntry {
    /// Element type.
    pub dtype: DType,
    /// Offset of the first element from the start of the file (a multiple of 64).
    pub file_offset: u64,
    /// Number of 4-byte elements.
    pub count: u64,
}

/// The checked layout of a model file: where its sections and tensors are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Container {
    /// File length.
    pub file_len: u64,
    /// The program section.
    pub program: Section,
    /// The tensor table section.
    pub tensor_table: Section,
    /// The tensor-data section.
    pub tensor_data: Section,
    /// The tensor table, indexed by tensor id.
    pub tensors: Vec<TensorEntry>,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(w)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

fn bad(offset: usize, what: &str) -> FileError {
    FileError::BadEncoding {
        offset: offset as u64,
        what: what.into(),
    }
}

fn table_error(what: String) -> FileError {
    FileError::BadSectionTable { what }
}

/// Checks the header, checksum, section table and tensor table of a complete file in
/// memory and returns where everything is. Does not decode the program.
pub fn inspect(bytes: &[u8]) -> Result<Container, FileError> {
    let actual = bytes.len() as u64;
    if bytes.len() < HEADER_LEN {
        return Err(FileError::Truncated {
            expected: HEADER_LEN as u64,
            actual,
        });
    }
    let mut magic = [0u8; 8];
    magic.copy_from_slice(&bytes[..8]);
    if magic != format::MAGIC {
        return Err(FileError::BadMagic { found: magic });
    }
    let version = u32_at(bytes, format::VERSION_OFFSET);
    if !(format::MIN_VERSION..=format::VERSION).contains(&version) {
        return Err(FileError::UnsupportedVersion {
            found: version,
            supported: format::VERSION,
        });
    }
    let flags = u32_at(bytes, format::FLAGS_OFFSET);
    if flags != 0 {
        return Err(FileError::UnsupportedFlags { flags });
    }
    let expected = u64_at(bytes, format::FILE_LEN_OFFSET);
    if actual < expected {
        return Err(FileError::Truncated { expected, actual });
    }
    if actual > expected {
        return Err(FileError::TrailingBytes { expected, actual });
    }
    if let Some(i) = (32..HEADER_LEN).find(|&i| bytes[i] != 0) {
        return Err(bad(i, "reserved header bytes are not zero"));
    }
    let stored = u64_at(bytes, format::CHECKSUM_OFFSET);
    let computed = format::checksum(&bytes[HEADER_LEN..]);
    if stored != computed {
        return Err(FileError::ChecksumMismatch { stored, computed });
    }

    // Section table.
    let head = format::SECTION_TABLE_OFFSET;
    if bytes.len() < head + format::SECTION_TABLE_HEAD {
        return Err(table_error("the file ends inside the section table".into()));
    }
    let n = u32_at(bytes, head);
    if n == 0 || n > format::MAX_SECTIONS {
        return Err(table_error(format!(
            "{n} sections (1 to {} allowed)",
            format::MAX_SECTIONS
        )));
    }
    if u32_at(bytes, head + 4) != 0 {
        return Err(bad(head + 4, "reserved section table word is not zero"));
    }
    // n <= 16, so this cannot overflow.
    let table_end = head + format::SECTION_TABLE_HEAD + n as usize * format::SECTION_ENTRY_LEN;
    if bytes.len() < table_end {
        return Err(table_error("the file ends inside the section table".into()));
    }
    let mut found: [Option<Section>; 3] = [None; 3];
    let mut placed: Vec<(u64, u64, u32)> = Vec::with_capacity(n as usize);
    for i in 0..n as usize {
        let e = head + format::SECTION_TABLE_HEAD + i * format::SECTION_ENTRY_LEN;
        let kind = u32_at(bytes, e);
        if u32_at(bytes, e + 4) != 0 {
            return Err(bad(e + 4, "reserved section entry word is not zero"));
        }
        let (offset, length) = (u64_at(bytes, e + 8), u64_at(bytes, e + 16));
        let slot = match kind {
            section::PROGRAM => 0,
            section::TENSOR_TABLE => 1,
            section::TENSOR_DATA => 2,
            _ => return Err(table_error(format!("entry {i} has unknown kind {kind}"))),
        };
        let name = section::name(kind);
        if found[slot].is_some() {
            return Err(table_error(format!("the {name} section appears twice")));
        }
        let end = offset.checked_add(length);
        if offset < table_end as u64 || end.is_none_or(|end| end > actual) {
            return Err(FileError::SectionOutOfRange {
                section: name,
                offset,
                length,
                file_len: actual,
            });
        }
        if offset % ALIGN != 0 {
            return Err(FileError::Misaligned {
                what: format!("{name} section"),
                offset,
                align: ALIGN,
            });
        }
        found[slot] = Some(Section { offset, length });
        placed.push((offset, offset + length, kind));
    }
    placed.sort_unstable();
    for pair in placed.windows(2) {
        if pair[1].0 < pair[0].1 {
            return Err(FileError::SectionOverlap {
                first: section::name(pair[0].2),
                second: section::name(pair[1].2),
            });
        }
    }
    let [Some(program), Some(tensor_table), Some(tensor_data)] = found else {
        let missing = (0..3)
            .find(|&s| found[s].is_none())
            .map_or("", |s| section::name(s as u32 + 1));
        return Err(table_error(format!("the {missing} section is missing")));
    };
    let tensors = tensor_table_entries(bytes, tensor_table, tensor_data)?;
    Ok(Container {
        file_len: actual,
        program,
        tensor_table,
        tensor_data,
        tensors,
    })
}

/// Reads and checks the tensor table (`table` and `data` are in range of `bytes`).
fn tensor_table_entries(
    bytes: &[u8],
    table: Section,
    data: Section,
) -> Result<Vec<TensorEntry>, FileError> {
    // Both sections lie inside `bytes`, so their offsets and lengths fit in usize.
    let at = table.offset as usize;
    let len = table.length as usize;
    if len < format::TENSOR_TABLE_HEAD {
        return Err(bad(at, "the tensor table is shorter than its header"));
    }
    let count = u32_at(bytes, at) as usize;
    if u32_at(bytes, at + 4) != 0 {
        return Err(bad(at + 4, "reserved tensor table word is not zero"));
    }
    // Compare without multiplying the untrusted count first.
    let room = (len - format::TENSOR_TABLE_HEAD) / format::TENSOR_ENTRY_LEN;
    if count > room || format::TENSOR_TABLE_HEAD + count * format::TENSOR_ENTRY_LEN != len {
        return Err(bad(
            at,
            &format!("tensor count {count} does not match the {len}-byte tensor table"),
        ));
    }
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let e = at + format::TENSOR_TABLE_HEAD + i * format::TENSOR_ENTRY_LEN;
        let id = i as u32; // count came from a u32
        let code = u32_at(bytes, e);
        let dtype = match code {
            format::dtype::F32 => DType::F32,
            format::dtype::U32 => DType::U32,
            _ => return Err(FileError::UnknownDType { id, code }),
        };
        if u32_at(bytes, e + 4) != 0 {
            return Err(bad(e + 4, "reserved tensor entry word is not zero"));
        }
        let (offset, count) = (u64_at(bytes, e + 8), u64_at(bytes, e + 16));
        let end = count.checked_mul(4).and_then(|n| offset.checked_add(n));
        if end.is_none_or(|end| end > data.length) {
            return Err(FileError::TensorOutOfRange {
                id,
                offset,
                count,
                data_len: data.length,
            });
        }
        if offset % ALIGN != 0 {
            return Err(FileError::Misaligned {
                what: format!("tensor {id}"),
                offset,
                align: ALIGN,
            });
        }
        out.push(TensorEntry {
            dtype,
            file_offset: data.offset + offset,
            count,
        });
    }
    Ok(out)
}
