//! A loaded model: a validated program and its tensors, read in place from a mapped
//! model file (or from an aligned copy of one). See [`crate::model_file`] for the
//! format.

use crate::model_file::storage::Storage;
use crate::model_file::{self, FileError};
use crate::program::{DType, LoweredModel, Program, TensorData, TensorId, TensorSource};
use std::fmt;
use std::path::Path;

/// Where a tensor is in the model's bytes (checked at load).
#[derive(Clone, Copy, Debug)]
struct Slot {
    dtype: DType,
    /// Byte offset from the start of the file.
    start: usize,
    /// Element count.
    len: usize,
}

/// A model file, loaded and validated: its program has passed
/// [`Program::validate`] against its tensors, and its tensors are views of the file.
/// Cheap to share between threads (`Send + Sync`); sessions borrow it.
pub struct Model {
    storage: Storage,
    program: Program,
    tensors: Vec<Slot>,
    weight_bytes: usize,
}

impl Model {
    /// Maps the model file at `path` read-only and validates it. The weights are not
    /// read or copied beyond the checksum pass: accessors return views of the map.
    /// On Linux a file of 2 MiB or more is read once into memory advised for
    /// transparent huge pages instead (fewer TLB misses as every inference streams
    /// the weights; see the README's model file section) and the views are of that.
    ///
    /// The file must not be modified (written to or truncated) while the returned
    /// model is alive; replacing it by rename, as [`model_file::write`] does, is safe.
    pub fn open(path: impl AsRef<Path>) -> Result<Model, FileError> {
        Model::load(Storage::map(path.as_ref())?)
    }

    /// Loads a model file held in memory (for apps that embed the model): copies
    /// `bytes` (which need no particular alignment) into a 64-byte aligned buffer
    /// (on Linux from 2 MiB: one advised for huge pages, as [`Model::open`] reads a
    /// large file) and validates it exactly as [`Model::open`] does.
    pub fn from_bytes(bytes: &[u8]) -> Result<Model, FileError> {
        Model::load(Storage::copy_of(bytes))
    }

    /// Encodes `model` as a file in memory and loads that: the same checks and code
    /// path as a model read from disk.
    pub fn from_lowered(model: &LoweredModel) -> Result<Model, FileError> {
        Model::from_bytes(&model_file::to_bytes(model)?)
    }

    fn load(storage: Storage) -> Result<Model, FileError> {
        let bytes = storage.bytes();
        let layout = model_file::inspect(bytes)?;
        // `inspect` checked that every section and tensor lies inside `bytes`, so the
        // offsets and lengths below fit in usize and the slices are in range.
        let p = layout.program;
        let program = model_file::decode_program(
            &bytes[p.offset as usize..(p.offset + p.length) as usize],
            p.offset,
        )?;
        let mut tensors = Vec::with_capacity(layout.tensors.len());
        let mut weight_bytes = 0usize;
        for (id, e) in layout.tensors.iter().enumerate() {
            let (start, len) = (e.file_offset as usize, e.count as usize);
            let data = &bytes[start..start + len * 4];
            if bytemuck::try_cast_slice::<u8, u32>(data).is_err() {
                return Err(FileError::Misaligned {
                    what: format!("tensor {id} in memory"),
                    offset: start as u64,
                    align: 4,
                });
            }
            weight_bytes += data.len();
            tensors.push(Slot {
                dtype: e.dtype,
                start,
                len,
            });
        }
        let model = Model {
            storage,
            program,
            tensors,
            weight_bytes,
        };
        model_file::check_model(&model.program, &model)?;
        Ok(model)
    }

    /// The validated program.
    pub fn program(&self) -> &Program {
        &self.program
    }

    fn data(&self, id: TensorId, dtype: DType) -> Option<&[u8]> {
        let s = self.tensors.get(id as usize)?;
        if s.dtype != dtype {
            return None;
        }
        self.storage.bytes().get(s.start..s.start + s.len * 4)
    }

    /// The f32 tensor `id`, in place in the file; `None` if it does not exist or is
    /// not f32.
    pub fn f32s(&self, id: TensorId) -> Option<&[f32]> {
        bytemuck::try_cast_slice(self.data(id, DType::F32)?).ok()
    }

    /// The u32 tensor `id`, in place in the file; `None` if it does not exist or is
    /// not u32.
    pub fn u32s(&self, id: TensorId) -> Option<&[u32]> {
        bytemuck::try_cast_slice(self.data(id, DType::U32)?).ok()
    }

    /// Number of tensors in the tensor table.
    pub fn tensor_count(&self) -> usize {
        self.tensors.len()
    }

    /// Size of the model file in bytes.
    pub fn file_bytes(&self) -> usize {
        self.storage.bytes().len()
    }

    /// Total size of the tensors in bytes (each tensor counted once, alignment padding
    /// excluded).
    pub fn weight_bytes(&self) -> usize {
        self.weight_bytes
    }

    /// Whether the model reads a mapped file (from [`Model::open`]) rather than a copy
    /// (from [`Model::from_bytes`], or a large file read on Linux).
    pub fn is_mapped(&self) -> bool {
        self.storage.is_mapped()
    }

    /// A copy of the program and tensors, as the planner would produce them.
    pub fn to_lowered(&self) -> LoweredModel {
        let tensors = (0..self.tensors.len() as TensorId)
            .map(|id| match (self.f32s(id), self.u32s(id)) {
                (Some(v), _) => TensorData::F32(v.to_vec()),
                (_, Some(v)) => TensorData::U32(v.to_vec()),
                // Every slot is f32 or u32 and was checked castable at load.
                (None, None) => TensorData::F32(Vec::new()),
            })
            .collect();
        LoweredModel {
            program: self.program.clone(),
            tensors,
        }
    }
}

impl TensorSource for Model {
    fn info(&self, id: TensorId) -> Option<(DType, usize)> {
        self.tensors.get(id as usize).map(|s| (s.dtype, s.len))
    }

    fn u32s(&self, id: TensorId) -> Option<&[u32]> {
        Model::u32s(self, id)
    }

    fn f32s(&self, id: TensorId) -> Option<&[f32]> {
        Model::f32s(self, id)
    }
}

impl fmt::Debug for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Model")
            .field("description", &self.program.description)
            .field("steps", &self.program.steps.len())
            .field("tensors", &self.tensors.len())
            .field("file_bytes", &self.file_bytes())
            .field("mapped", &self.is_mapped())
            .finish()
    }
}
