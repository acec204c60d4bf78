//! Hostile files: model files, ONNX files and `.npy` files whose counts, lengths and
//! dimensions claim far more than the bytes hold. Each is a clear error, and loading
//! it never allocates more than a small multiple of the file's size (the claim is
//! checked against the bytes before anything is reserved for it).

use prost::Message;
use shufflenet::graph::{InputSpec, Layout};
use shufflenet::model::Model;
use shufflenet::model_file::{self, format, FileError};
use shufflenet::npy::{self, NpyError};
use shufflenet::onnx::proto::{
    attribute_type, data_type, AttributeProto, Dimension, DimensionValue, GraphProto, ModelProto,
    NodeProto, OperatorSetIdProto, TensorProto, TensorShapeProto, TypeProto, TypeProtoTensor,
    ValueInfoProto,
};
use shufflenet::onnx::{self, OnnxError};
use shufflenet::program::{BufferDecl, LoweredModel, Program, Step, TensorData, View};

#[path = "hostile_alloc.rs"]
mod hostile_alloc;
use hostile_alloc::largest_allocation;

/// Bytes a loader may allocate at once for a file of `len` bytes: its aligned copy
/// and tables proportional to it (a decoded step takes about 6 times its 16 encoded
/// bytes), never anything sized by a claim inside it.
fn budget(len: usize) -> usize {
    8 * len + (64 << 10)
}

// ------------------------------------------------------------------ model files

fn view(buffer: u32, channels: u32) -> View {
    View {
        buffer,
        offset: 0,
        channels,
    }
}

/// A one-step program (a plane permutation) and its file.
fn small_model() -> LoweredModel {
    LoweredModel {
        program: Program {
            description: String::new(),
            input: InputSpec {
                channels: 2,
                layout: Layout::Nchw,
                default_size: None,
                preprocess: None,
            },
            output_name: "y".into(),
            buffers: vec![BufferDecl { channels: 2 }, BufferDecl { channels: 2 }],
            steps: vec![Step::Permute {
                table: 0,
                input: view(0, 2),
                output: view(1, 2),
            }],
            output: view(1, 2),
        },
        tensors: vec![TensorData::U32(vec![1, 0])],
    }
}

/// Word offsets in the program section of [`small_model`]'s file: description
/// (empty: its length), output name ("y": length and one padded word), input
/// (channels, layout, size flag, height, width, preprocessing flag), buffer count,
/// two buffers, step count, then the permute step.
mod word {
    pub const DESCRIPTION_LEN: usize = 0;
    pub const OUTPUT_NAME_LEN: usize = 1;
    pub const INPUT_CHANNELS: usize = 3;
    pub const PREPROCESS_FLAG: usize = 8;
    pub const BUFFER_COUNT: usize = 9;
    pub const BUFFER1_CHANNELS: usize = 11;
    pub const STEP_COUNT: usize = 12;
}

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// `small_model`'s file with `edit` applied (given the file and the byte offsets of
/// the program section and the tensor table), resealed so the checksum passes.
fn edited(edit: impl FnOnce(&mut Vec<u8>, usize, usize)) -> Vec<u8> {
    let mut bytes = model_file::to_bytes(&small_model()).unwrap();
    let c = model_file::inspect(&bytes).unwrap();
    edit(
        &mut bytes,
        c.program.offset as usize,
        c.tensor_table.offset as usize,
    );
    let len = bytes.len() as u64;
    put_u64(&mut bytes, format::FILE_LEN_OFFSET, len);
    format::reseal(&mut bytes);
    bytes
}

fn load_within_budget(bytes: &[u8]) -> Result<Model, FileError> {
    let (r, largest) = largest_allocation(|| Model::from_bytes(bytes));
    assert!(
        largest <= budget(bytes.len()),
        "loading {} bytes allocated {largest} bytes at once",
        bytes.len()
    );
    r
}

#[test]
fn the_unedited_file_loads() {
    let bytes = edited(|_, _, _| {});
    let m = load_within_budget(&bytes).unwrap();
    assert_eq!(m.program().steps.len(), 1);
}

#[test]
fn huge_counts_in_the_program_are_refused_without_allocating() {
    let w = |p: usize, i: usize| p + 4 * i;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "description length",
            edited(|b, p, _| put_u32(b, w(p, word::DESCRIPTION_LEN), u32::MAX)),
        ),
        (
            "output name length",
            edited(|b, p, _| put_u32(b, w(p, word::OUTPUT_NAME_LEN), u32::MAX)),
        ),
        (
            "buffer count",
            edited(|b, p, _| put_u32(b, w(p, word::BUFFER_COUNT), u32::MAX)),
        ),
        (
            "step count",
            edited(|b, p, _| put_u32(b, w(p, word::STEP_COUNT), u32::MAX)),
        ),
        (
            "preprocessing length",
            edited(|b, p, _| {
                put_u32(b, w(p, word::PREPROCESS_FLAG), 1);
                put_u32(b, w(p, word::PREPROCESS_FLAG + 1), u32::MAX);
            }),
        ),
        (
            "input channels",
            edited(|b, p, _| put_u32(b, w(p, word::INPUT_CHANNELS), u32::MAX)),
        ),
        (
            "buffer channels",
            edited(|b, p, _| put_u32(b, w(p, word::BUFFER1_CHANNELS), u32::MAX)),
        ),
        ("tensor count", edited(|b, _, t| put_u32(b, t, u32::MAX))),
        (
            "tensor element count",
            edited(|b, _, t| put_u64(b, t + format::TENSOR_TABLE_HEAD + 16, u64::MAX)),
        ),
        (
            "tensor element count (no overflow)",
            edited(|b, _, t| put_u64(b, t + format::TENSOR_TABLE_HEAD + 16, 1 << 40)),
        ),
        (
            "tensor offset",
            edited(|b, _, t| put_u64(b, t + format::TENSOR_TABLE_HEAD + 8, u64::MAX - 63)),
        ),
        ("file length", {
            let mut b = edited(|_, _, _| {});
            put_u64(&mut b, format::FILE_LEN_OFFSET, u64::MAX);
            b
        }),
    ];
    for (what, bytes) in cases {
        match load_within_budget(&bytes) {
            Ok(_) => panic!("{what}: loaded"),
            Err(e) => assert!(!e.to_string().is_empty(), "{what}"),
        }
    }
}

#[test]
fn total_channels_over_the_format_limit_are_refused_while_decoding() {
    let bytes = edited(|b, p, _| {
        put_u32(b, p + 4 * word::BUFFER1_CHANNELS, u32::MAX / 2);
    });
    match load_within_budget(&bytes) {
        Err(FileError::BadEncoding { what, .. }) => assert!(what.contains("channels"), "{what}"),
        other => panic!("{other:?}"),
    }
}

// ------------------------------------------------------------------ ONNX

fn dims_info(name: &str, dims: &[i64]) -> ValueInfoProto {
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            tensor_type: Some(TypeProtoTensor {
                elem_type: Some(data_type::FLOAT),
                shape: Some(TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|&d| Dimension {
                            value: Some(DimensionValue::DimValue(d)),
                        })
                        .collect(),
                }),
            }),
        }),
    }
}

fn conv_model(input: &[i64], weight: TensorProto) -> ModelProto {
    ModelProto {
        ir_version: Some(8),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(13),
        }],
        graph: Some(GraphProto {
            node: vec![NodeProto {
                op_type: Some("Conv".into()),
                input: vec!["x".into(), "w".into()],
                output: vec!["y".into()],
                attribute: vec![AttributeProto {
                    name: Some("kernel_shape".into()),
                    r#type: Some(attribute_type::INTS),
                    ints: vec![1, 1],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            initializer: vec![weight],
            input: vec![dims_info("x", input)],
            output: vec![dims_info("y", &[1, 4, 8, 8])],
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn weight(dims: &[i64], raw: Vec<u8>) -> TensorProto {
    TensorProto {
        name: Some("w".into()),
        dims: dims.to_vec(),
        data_type: Some(data_type::FLOAT),
        raw_data: Some(raw),
        ..Default::default()
    }
}

fn import_within_budget(bytes: &[u8]) -> Result<shufflenet::graph::Graph, OnnxError> {
    let (r, largest) = largest_allocation(|| onnx::import(bytes, "hostile.onnx"));
    assert!(
        largest <= budget(bytes.len()),
        "importing {} bytes allocated {largest} bytes at once",
        bytes.len()
    );
    r
}

#[test]
fn the_reasonable_onnx_model_imports() {
    let ok = conv_model(&[1, 3, 8, 8], weight(&[4, 3, 1, 1], vec![0; 48]));
    import_within_budget(&ok.encode_to_vec()).unwrap();
}

#[test]
fn onnx_tensors_claiming_huge_shapes_are_refused_without_allocating() {
    let cases = [
        (
            "2^40 elements, no data",
            weight(&[1 << 40, 3, 1, 1], vec![]),
        ),
        (
            "2^40 elements, 48 bytes",
            weight(&[1 << 40, 3, 1, 1], vec![0; 48]),
        ),
        (
            "overflowing dims",
            weight(&[i64::MAX, i64::MAX, 1, 1], vec![0; 48]),
        ),
        ("negative dims", weight(&[-4, -3, 1, 1], vec![0; 48])),
        ("data for 11.75 floats", weight(&[4, 3, 1, 1], vec![0; 47])),
    ];
    for (what, w) in cases {
        let bytes = conv_model(&[1, 3, 8, 8], w).encode_to_vec();
        let e = import_within_budget(&bytes).expect_err(what);
        assert!(
            matches!(e, OnnxError::Tensor { .. } | OnnxError::Node { .. }),
            "{what}: {e}"
        );
    }
    // Typed fields: 2^40 floats claimed, 3 present.
    let mut typed = weight(&[1 << 40, 1, 1, 1], vec![]);
    typed.raw_data = None;
    typed.float_data = vec![1.0; 3];
    let e = import_within_budget(&conv_model(&[1, 3, 8, 8], typed).encode_to_vec()).unwrap_err();
    assert!(matches!(e, OnnxError::Tensor { .. }), "{e}");
}

#[test]
fn onnx_inputs_claiming_huge_sizes_are_refused() {
    let w = || weight(&[4, 3, 1, 1], vec![0; 48]);
    for input in [
        [1, 1 << 40, 8, 8],
        [1, 3, 1 << 40, 1 << 40],
        [1, 3, i64::MAX, 8],
        [1 << 20, 3, 8, 8],
    ] {
        let bytes = conv_model(&input, w()).encode_to_vec();
        assert!(import_within_budget(&bytes).is_err(), "{input:?}");
    }
    // A negative dimension is not a size: it is taken as symbolic (as -1 often
    // means "dynamic"), so the model has no default size.
    let bytes = conv_model(&[1, 3, -8, 8], w()).encode_to_vec();
    assert_eq!(
        import_within_budget(&bytes).unwrap().input.default_size,
        None
    );
}

#[test]
fn protobuf_lengths_past_the_end_are_decode_errors() {
    // Field 7 (the graph), length-delimited, claiming 2^31 - 1 bytes; then a raw_data
    // field deep inside claiming 2^31 - 1 bytes with 3 present.
    let mut claim_graph = vec![0x3a];
    claim_graph.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x07]);
    claim_graph.extend_from_slice(&[0; 16]);
    let e = import_within_budget(&claim_graph).unwrap_err();
    assert!(matches!(e, OnnxError::Decode(_)), "{e}");

    let good = conv_model(&[1, 3, 8, 8], weight(&[4, 3, 1, 1], vec![0xAB; 48])).encode_to_vec();
    // The raw_data field: tag 9 (wire type 2) = 0x4a, then its length 48 = 0x30.
    let at = good
        .windows(2)
        .position(|p| p == [0x4a, 0x30])
        .expect("raw_data field");
    let mut bad = good[..at + 1].to_vec();
    bad.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x07, 1, 2, 3]);
    let e = import_within_budget(&bad).unwrap_err();
    assert!(matches!(e, OnnxError::Decode(_)), "{e}");
}

/// Found by the `onnx_import` fuzz target: a MaxPool with an 8x89 window imported
/// (the graph had no window limit) and then failed the lowered program's validation
/// (windows up to 16), reported as a planner bug. The graph now has the program's
/// limits, so the importer refuses it, naming the node.
const FUZZ_MAXPOOL_8X89: [u8; 214] = [
    8, 10, 18, 4, 104, 97, 110, 100, 58, 197, 1, 10, 111, 10, 5, 105, 109, 97, 103, 101, 18, 6,
    108, 111, 103, 105, 116, 115, 26, 7, 109, 97, 112, 112, 111, 111, 108, 34, 7, 77, 97, 120, 80,
    111, 111, 108, 42, 16, 10, 9, 99, 101, 105, 108, 95, 109, 111, 100, 101, 24, 1, 160, 1, 2, 42,
    21, 10, 12, 107, 101, 114, 110, 101, 108, 95, 115, 104, 97, 112, 101, 64, 8, 64, 89, 160, 1, 7,
    106, 17, 10, 4, 112, 97, 100, 115, 64, 0, 64, 1, 64, 1, 64, 0, 160, 1, 7, 42, 16, 10, 7, 115,
    116, 114, 105, 100, 101, 115, 64, 2, 64, 3, 160, 1, 7, 18, 15, 111, 112, 95, 109, 97, 120, 112,
    111, 111, 108, 95, 99, 101, 105, 108, 90, 31, 10, 5, 105, 109, 97, 103, 101, 18, 22, 10, 20, 8,
    1, 18, 16, 10, 2, 8, 1, 10, 2, 8, 2, 10, 2, 8, 8, 10, 2, 40, 11, 98, 32, 10, 6, 108, 111, 103,
    105, 116, 115, 18, 22, 10, 20, 8, 1, 18, 16, 10, 2, 8, 1, 10, 2, 8, 2, 10, 2, 8, 4, 10, 2, 8,
    4, 66, 4, 10, 0, 16, 10,
];

#[test]
fn fuzz_crash_maxpool_window_above_the_limit_is_an_import_error() {
    match import_within_budget(&FUZZ_MAXPOOL_8X89) {
        Err(OnnxError::Graph(shufflenet::graph::GraphError::Node { what, .. })) => {
            assert!(what.contains("8x89"), "{what}")
        }
        other => panic!("{other:?}"),
    }
}

// ------------------------------------------------------------------ npy

fn npy_v(version: u8, header: &str, body: &[u8]) -> Vec<u8> {
    let mut out = b"\x93NUMPY".to_vec();
    out.extend_from_slice(&[version, 0]);
    if version == 1 {
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    }
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(body);
    out
}

fn parse_within_budget(bytes: &[u8]) -> Result<npy::Array, NpyError> {
    let (r, largest) = largest_allocation(|| npy::parse(bytes));
    assert!(
        largest <= budget(bytes.len()),
        "{largest} bytes for {}",
        bytes.len()
    );
    r
}

#[test]
fn npy_shapes_claiming_more_than_the_file_holds_are_refused() {
    let body = [0u8; 16];
    for shape in [
        "(1099511627776,)",
        "(4294967296, 4294967296)",
        "(18446744073709551615,)",
        "(5,)",
        "(-1,)",
        "(2, 2, 2)",
    ] {
        let h = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
        let e = parse_within_budget(&npy_v(1, &h, &body)).expect_err(shape);
        assert!(matches!(e, NpyError::Format(_)), "{shape}: {e}");
    }
    // A version-2 header claiming 4 GiB of header in a short file.
    let mut v2 = npy_v(2, "{}", &body);
    v2[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(parse_within_budget(&v2), Err(NpyError::Format(_))));
}

#[test]
fn npy_arrays_with_thousands_of_dimensions_round_trip() {
    // Version 1.0 stores the header length in 16 bits: a header over 64 KiB (here
    // 30000 dimensions) must be written as version 2.0, not with a truncated length.
    for dims in [1, 16, 20_000, 30_000] {
        let mut shape = vec![1usize; dims];
        shape[0] = 2;
        let bytes = npy::to_bytes(&shape, &[1.5, -2.5]);
        assert_eq!((bytes.len() - 8) % 64, 0, "the data starts 64-byte aligned");
        let a = parse_within_budget(&bytes).unwrap_or_else(|e| panic!("{dims} dims: {e}"));
        assert_eq!(a.shape, shape);
        assert_eq!(a.data, [1.5, -2.5]);
    }
}
