//! Where a loaded model's bytes live: a read-only map of the file, an owned copy
//! whose start is 64-byte aligned, or (Linux, from 2 MiB) a copy in a read-only
//! anonymous map advised for transparent huge pages. Either way the start of the
//! bytes is at least 64-byte aligned, so the format's 64-byte aligned tensors can
//! be cast in place.

use super::FileError;
use memmap2::Mmap;
use std::fs::File;
use std::path::Path;

/// 64 bytes with 64-byte alignment: the unit of an owned buffer.
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C, align(64))]
pub(crate) struct Chunk([u8; 64]);

/// A model file's bytes.
pub(crate) enum Storage {
    /// The file, mapped read-only.
    Mapped(Mmap),
    /// A copy in aligned memory: `len` bytes at the start of `chunks`.
    Owned {
        /// The aligned buffer.
        chunks: Vec<Chunk>,
        /// Number of bytes used.
        len: usize,
    },
    /// A copy (of the file, or of the bytes given) in an anonymous read-only map
    /// that the kernel was asked to back with transparent huge pages: every
    /// inference streams all the weights (2x g = 3: 21.6 MB, about 5300 pages of
    /// 4 KiB, far more than the TLB maps), and a page cache map of a file gets no
    /// huge pages on most file systems.
    #[cfg(all(target_os = "linux", not(miri)))]
    Huge(Mmap),
}

/// `len` bytes filled by `fill` in an anonymous map advised for huge pages
/// (`huge_pages::anonymous`), then made read-only; `None` below 2 MiB or
/// if no map can be made.
#[cfg(all(target_os = "linux", not(miri)))]
fn huge_copy(
    len: usize,
    fill: impl FnOnce(&mut [u8]) -> std::io::Result<()>,
) -> Option<std::io::Result<Mmap>> {
    let mut map = crate::huge_pages::anonymous(len)?;
    Some(fill(&mut map).and_then(|()| map.make_read_only()))
}

impl Storage {
    /// Copies `bytes` into a new 64-byte aligned buffer.
    pub(crate) fn copy_of(bytes: &[u8]) -> Storage {
        #[cfg(all(target_os = "linux", not(miri)))]
        if let Some(Ok(map)) = huge_copy(bytes.len(), |b| {
            b.copy_from_slice(bytes);
            Ok(())
        }) {
            return Storage::Huge(map);
        }
        let mut chunks = vec![Chunk([0; 64]); bytes.len().div_ceil(64)];
        bytemuck::cast_slice_mut::<Chunk, u8>(&mut chunks)[..bytes.len()].copy_from_slice(bytes);
        Storage::Owned {
            chunks,
            len: bytes.len(),
        }
    }

    /// Maps the file at `path` read-only.
    ///
    /// The file must not be modified (written, truncated) while a model maps it: the
    /// map would change (or fault) under the loaded, validated model. Writers of this
    /// crate never modify a file in place; they write a new file and rename it over the
    /// old one, which leaves existing maps of the old file intact.
    pub(crate) fn map(path: &Path) -> Result<Storage, FileError> {
        let io = |op| {
            move |source| FileError::Io {
                op,
                path: path.to_path_buf(),
                source,
            }
        };
        let file = File::open(path).map_err(io("cannot open"))?;
        let len = file.metadata().map_err(io("cannot stat"))?.len();
        if len < super::format::HEADER_LEN as u64 {
            // Mapping an empty file fails on some systems; report what is wrong instead.
            return Err(FileError::Truncated {
                expected: super::format::HEADER_LEN as u64,
                actual: len,
            });
        }
        #[cfg(all(target_os = "linux", not(miri)))]
        if let Some(read) = usize::try_from(len)
            .ok()
            .and_then(|n| huge_copy(n, |b| std::io::Read::read_exact(&mut &file, b)))
        {
            return read.map(Storage::Huge).map_err(io("cannot read"));
        }
        // SAFETY: `Mmap::map` is unsafe because the mapped file may be changed by
        // another process (or this one) while mapped, which would break the
        // immutability of the `&[u8]` we hand out and could invalidate checks already
        // made. The rule, documented on `Model::open`, is that a model file must not be
        // modified while it is mapped; this crate's writer only ever replaces files by
        // rename, which does not touch existing maps. The map is read-only and private
        // to this `Storage`, which keeps it alive as long as any borrow of its bytes.
        let map = unsafe { Mmap::map(&file) }.map_err(io("cannot map"))?;
        Ok(Storage::Mapped(map))
    }

    /// The bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        match self {
            Storage::Mapped(m) => m,
            // `len <= chunks.len() * 64` by construction in `copy_of`.
            Storage::Owned { chunks, len } => &bytemuck::cast_slice(chunks)[..*len],
            #[cfg(all(target_os = "linux", not(miri)))]
            Storage::Huge(m) => m,
        }
    }

    /// Whether the bytes are a map of the file.
    pub(crate) fn is_mapped(&self) -> bool {
        matches!(self, Storage::Mapped(_))
    }
}
