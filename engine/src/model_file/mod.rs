//! The model file, version 1: a lowered program and its tensors in one file that is
//! mapped and used in place. The layout is documented in [`format`](mod@format).
//!
//! - Writing: [`to_bytes`] builds the file in memory; [`write()`] writes it to a
//!   temporary file in the destination's directory, syncs it and renames it into
//!   place, so a failed write never leaves a partial file behind.
//! - Reading: [`crate::model::Model::open`] (a read-only map) and
//!   [`crate::model::Model::from_bytes`] (an aligned copy) check the header, checksum,
//!   section table, tensor table and every field of the program, then validate the
//!   program against the tensors. Loading copies and converts no weights: the loaded
//!   model hands out `&[f32]` / `&[u32]` views of the file.
//! - [`inspect`] runs the container checks alone and reports where everything is.

mod checksum;
mod container;
mod decode;
mod encode;
mod error;
pub mod format;
pub(crate) mod storage;

pub use container::{inspect, Container, Section, TensorEntry};
pub use encode::to_bytes;
pub use error::FileError;

pub(crate) use decode::program as decode_program;

use crate::program::{LoweredModel, Program, ProgramError, TensorSource};
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

// Tensors are stored little-endian and used in place as `&[f32]` / `&[u32]`.
#[cfg(target_endian = "big")]
compile_error!("the model file's tensors are little-endian and used in place; big-endian targets are not supported");

/// Everything a loadable model must satisfy beyond its encoding: the program's own
/// validation, plus the input description's consistency.
pub(crate) fn check_model(
    program: &Program,
    tensors: &(impl TensorSource + ?Sized),
) -> Result<(), FileError> {
    program.validate(tensors)?;
    let structure = |s: String| FileError::InvalidProgram(ProgramError::Structure(s));
    let input = &program.input;
    if let Some((h, w)) = input.default_size {
        if h == 0 || w == 0 {
            return Err(structure(format!("default input size {h}x{w} is empty")));
        }
    }
    if let Some(p) = &input.preprocess {
        if p.mean.len() != input.channels || p.scale.len() != input.channels {
            return Err(structure(format!(
                "preprocessing has {} means and {} scales for {} input channels",
                p.mean.len(),
                p.scale.len(),
                input.channels
            )));
        }
        if p.mean.iter().chain(&p.scale).any(|v| !v.is_finite()) {
            return Err(structure("preprocessing values must be finite".into()));
        }
    }
    Ok(())
}

/// Writes `model` to `path`: to a temporary file next to it first, synced to disk, then
/// renamed over `path`. On any error the temporary file is removed and `path` is left
/// as it was. Maps of a previous file at `path` stay valid (they keep the old file).
pub fn write(model: &LoweredModel, path: impl AsRef<Path>) -> Result<(), FileError> {
    let bytes = to_bytes(model)?;
    write_atomic(path.as_ref(), &bytes)
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), FileError> {
    let io = |op, p: &Path| {
        let path = p.to_path_buf();
        move |source| FileError::Io { op, path, source }
    };
    let name = path.file_name().ok_or_else(|| {
        io("cannot write", path)(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the path does not name a file",
        ))
    })?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let mut tmp_name = OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(
        ".{}.{}.tmp",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let tmp = dir.join(tmp_name);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(io("cannot create", &tmp))?;
    let result = file
        .write_all(bytes)
        .map_err(io("cannot write", &tmp))
        .and_then(|()| file.sync_all().map_err(io("cannot sync", &tmp)))
        .and_then(|()| {
            drop(file);
            fs::rename(&tmp, path).map_err(io("cannot rename into", path))
        });
    if result.is_err() {
        // The error being reported matters more than a failure to clean up.
        let _ = fs::remove_file(&tmp);
    }
    result?;
    // Make the rename itself durable. Best effort: some systems cannot sync a directory.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}
