//! Minimal `.npy` reading and writing for float32 arrays (the CLI's input and
//! output format). Reads format versions 1.0, 2.0 and 3.0, little-endian `<f4`,
//! C order; anything else is a clear error. Never panics on malformed bytes.

use std::path::Path;

/// Why a `.npy` file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum NpyError {
    /// Not a `.npy` file, or a malformed header.
    #[error("not a valid .npy file: {0}")]
    Format(String),
    /// A valid file this reader does not support.
    #[error("unsupported .npy array: {0}")]
    Unsupported(String),
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
}

/// A float32 array with its shape.
#[derive(Clone, Debug, PartialEq)]
pub struct Array {
    /// Dimensions.
    pub shape: Vec<usize>,
    /// Values in C order.
    pub data: Vec<f32>,
}

const MAGIC: &[u8] = b"\x93NUMPY";

fn fmt_err(s: impl Into<String>) -> NpyError {
    NpyError::Format(s.into())
}

/// Value of `'key':` in a Python dict literal header, up to the next top-level comma.
fn field<'a>(header: &'a str, key: &str) -> Result<&'a str, NpyError> {
    let pat = format!("'{key}':");
    let start = header
        .find(&pat)
        .ok_or_else(|| fmt_err(format!("header has no '{key}'")))?
        + pat.len();
    let rest = header[start..].trim_start();
    let end = if rest.starts_with('(') {
        rest.find(')').map(|i| i + 1)
    } else {
        rest.find([',', '}'])
    }
    .ok_or_else(|| fmt_err(format!("unterminated '{key}'")))?;
    Ok(rest[..end].trim())
}

/// Parses `.npy` bytes.
pub fn parse(bytes: &[u8]) -> Result<Array, NpyError> {
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(fmt_err("missing magic"));
    }
    let (len, start): (usize, usize) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(NpyError::Unsupported(format!("format version {v}"))),
    };
    let end = start
        .checked_add(len)
        .filter(|&e| e <= bytes.len())
        .ok_or_else(|| fmt_err("header longer than the file"))?;
    let header =
        std::str::from_utf8(&bytes[start..end]).map_err(|_| fmt_err("header is not text"))?;
    let descr = field(header, "descr")?.trim_matches(['\'', '"']);
    if descr != "<f4" && descr != "|f4" {
        return Err(NpyError::Unsupported(format!(
            "dtype {descr} (only float32 '<f4')"
        )));
    }
    if field(header, "fortran_order")? != "False" {
        return Err(NpyError::Unsupported("Fortran order".into()));
    }
    let dims = field(header, "shape")?;
    let dims = dims
        .strip_prefix('(')
        .and_then(|d| d.strip_suffix(')'))
        .ok_or_else(|| fmt_err("shape is not a tuple"))?;
    let shape: Vec<usize> = dims
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| {
            d.parse()
                .map_err(|_| fmt_err(format!("bad dimension '{d}'")))
        })
        .collect::<Result<_, _>>()?;
    let count = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| fmt_err("shape overflows"))?;
    let body = &bytes[end..];
    if Some(body.len()) != count.checked_mul(4) {
        return Err(fmt_err(format!(
            "shape {shape:?} needs {count} floats, the file holds {} bytes",
            body.len()
        )));
    }
    let data = body
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Ok(Array { shape, data })
}

/// Reads a `.npy` file.
pub fn read(path: &Path) -> Result<Array, NpyError> {
    let bytes = std::fs::read(path).map_err(|source| NpyError::Io {
        path: path.display().to_string(),
        source,
    })?;
    parse(&bytes)
}

/// Encodes a float32 array as `.npy` version 1.0 bytes (version 2.0 when the header
/// is too long for version 1.0's 16-bit length: a shape of thousands of dimensions).
pub fn to_bytes(shape: &[usize], data: &[f32]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let tuple = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {tuple}, }}");
    // Pad so the data starts on a 64-byte boundary, header ends in a newline.
    let padded = |prefix: usize| (prefix + header.len() + 1).next_multiple_of(64) - prefix;
    let (version, prefix) = if padded(10) <= usize::from(u16::MAX) {
        (1, 10)
    } else {
        (2, 12)
    };
    let len = padded(prefix);
    while header.len() + 1 < len {
        header.push(' ');
    }
    header.push('\n');
    let mut out = Vec::with_capacity(prefix + header.len() + data.len() * 4);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[version, 0]);
    if version == 1 {
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    }
    out.extend_from_slice(header.as_bytes());
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// Writes a float32 array to a `.npy` file.
pub fn write(path: &Path, shape: &[usize], data: &[f32]) -> Result<(), NpyError> {
    std::fs::write(path, to_bytes(shape, data)).map_err(|source| NpyError::Io {
        path: path.display().to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let bytes = to_bytes(
            &[1, 3, 2, 2],
            &(0..12).map(|v| v as f32).collect::<Vec<_>>(),
        );
        // The 12 floats start on a 64-byte boundary.
        assert_eq!((bytes.len() - 48) % 64, 0);
        let a = parse(&bytes).unwrap();
        assert_eq!(a.shape, vec![1, 3, 2, 2]);
        assert_eq!(a.data[11], 11.0);
        assert_eq!(parse(&to_bytes(&[5], &[1.0; 5])).unwrap().shape, vec![5]);
    }

    #[test]
    fn reads_numpy_written_header() {
        // As numpy 1.x writes it.
        let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2), }";
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        let padded = format!("{header:<117}\n");
        bytes.extend_from_slice(&(padded.len() as u16).to_le_bytes());
        bytes.extend_from_slice(padded.as_bytes());
        bytes.extend_from_slice(&1.5f32.to_le_bytes());
        bytes.extend_from_slice(&(-2f32).to_le_bytes());
        assert_eq!(parse(&bytes).unwrap().data, vec![1.5, -2.0]);
    }

    fn with_header(header: &str, body: &[u8]) -> Vec<u8> {
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(body);
        bytes
    }

    #[test]
    fn rejects_bad_files() {
        let good = to_bytes(&[2, 2], &[1.0; 4]);
        assert!(matches!(parse(b"hello"), Err(NpyError::Format(_))));
        assert!(matches!(
            parse(&good[..good.len() - 1]),
            Err(NpyError::Format(_))
        ));
        let body = [0u8; 16];
        let f64s = with_header(
            "{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }",
            &body,
        );
        assert!(matches!(parse(&f64s), Err(NpyError::Unsupported(_))));
        let fortran = with_header(
            "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }",
            &body,
        );
        assert!(matches!(parse(&fortran), Err(NpyError::Unsupported(_))));
        let huge = with_header(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999, 99999999999), }",
            &body,
        );
        assert!(matches!(parse(&huge), Err(NpyError::Format(_))));
        let no_shape = with_header("{'descr': '<f4', 'fortran_order': False, }", &body);
        assert!(matches!(parse(&no_shape), Err(NpyError::Format(_))));
        let ok = with_header(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }",
            &body,
        );
        assert!(parse(&ok).is_ok());
        for cut in 0..good.len() {
            assert!(parse(&good[..cut]).is_err());
        }
    }
}
