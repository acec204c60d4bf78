//! The model-file loader (`Model::from_bytes`) on arbitrary bytes.
//!
//! The first byte picks a mode: with bit 0 clear the rest is loaded as is (so the
//! header and checksum checks are fuzzed); with bit 0 set the file length and the
//! checksum in the header are fixed up first, so mutations reach the section
//! table, the tensor table, the program decoder and the program validation. A model
//! that loads is then re-encoded and run at a few small sizes (see `exercise`).

#![no_main]

use libfuzzer_sys::fuzz_target;
use shufflenet::model::Model;
use shufflenet::model_file::format;
use shufflenet_fuzz::exercise;
use std::sync::Arc;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut bytes = rest.to_vec();
    if mode & 1 == 1 && bytes.len() >= format::HEADER_LEN {
        let len = bytes.len() as u64;
        bytes[format::FILE_LEN_OFFSET..format::FILE_LEN_OFFSET + 8]
            .copy_from_slice(&len.to_le_bytes());
        format::reseal(&mut bytes);
    }
    if let Ok(model) = Model::from_bytes(&bytes) {
        exercise(Arc::new(model));
    }
});
