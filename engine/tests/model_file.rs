//! The model file: round trips of hand-built programs (every step kind, both tensor
//! types, every input option), loading from a path (mapped) and from an unaligned
//! slice, atomic writes, and the corrupted-file suite: each corruption must give its
//! own error, and random damage must give an error, never a panic.

use kernels::PoolKind;
use shufflenet::graph::{InputSpec, Layout, Pads, PoolSpec, Preprocess};
use shufflenet::model::Model;
use shufflenet::model_file::{self, format, FileError};
use shufflenet::program::{
    BufferDecl, LoweredModel, Program, ProgramError, Step, TensorData, TensorId, View,
};
use std::path::{Path, PathBuf};

mod common;

// ---------------------------------------------------------------- fixtures

use common::Rng;

fn view(buffer: u32, offset: u32, channels: u32) -> View {
    View {
        buffer,
        offset,
        channels,
    }
}

/// Collects tensors and hands out their ids.
struct Tensors(Vec<TensorData>, Rng);

impl Tensors {
    fn f32(&mut self, n: usize) -> TensorId {
        let v = self.1.f32s(n);
        self.0.push(TensorData::F32(v));
        (self.0.len() - 1) as TensorId
    }
    fn u32(&mut self, v: Vec<u32>) -> TensorId {
        self.0.push(TensorData::U32(v));
        (self.0.len() - 1) as TensorId
    }
}

/// Index of the first pointwise step of [`every_step`] (its in_rows table is
/// [`IN_ROWS`]).
const POINTWISE_STEP: usize = 4;
/// Tensor id of that step's index table.
const IN_ROWS: TensorId = 6;

/// A valid program using every step kind (every pool kind, both depthwise strides, a
/// zero-copy concat, in-place residual, add and relu), f32 and u32 tensors, NHWC input
/// with a default size and preprocessing.
fn every_step() -> LoweredModel {
    let mut t = Tensors(Vec::new(), Rng(0x1234_5678_9ABC_DEF1));
    let conv_w = t.f32(8 * 3 * 9);
    let conv_b = t.f32(8);
    let dw_w = t.f32(8 * 9);
    let dw_b = t.f32(8);
    let pw_w = t.f32(2 * 4 * kernels::MR);
    let pw_b = t.f32(8);
    let in_rows = t.u32(vec![0, 2, 4, 6, 1, 3, 5, 7]);
    assert_eq!(in_rows, IN_ROWS);
    let aff_s = t.f32(16);
    let aff_t = t.f32(16);
    let perm = t.u32((0..16).rev().collect());
    let dw2_w = t.f32(16 * 9);
    let dw2_b = t.f32(16);
    let fc_w = t.f32(16 * 10);
    let fc_b = t.f32(10);
    let gfc_w = t.f32(16 * 10);
    let gfc_b = t.f32(10);
    // Special values must survive bit for bit.
    if let TensorData::F32(v) = &mut t.0[conv_b as usize] {
        v[..4].copy_from_slice(&[-0.0, f32::MIN_POSITIVE / 4.0, f32::MAX, f32::NEG_INFINITY]);
    }
    // An empty tensor is allowed (nothing references it).
    t.0.push(TensorData::F32(Vec::new()));

    let pool = |kind, ceil_mode| PoolSpec {
        kind,
        kh: 3,
        kw: 2,
        stride: (2, 1),
        pads: Pads {
            top: 1,
            left: 0,
            bottom: 2,
            right: 1,
        },
        ceil_mode,
    };
    let steps = vec![
        Step::Conv {
            groups: 1,
            kh: 3,
            kw: 3,
            stride: (2, 2),
            pads: Pads::uniform(1),
            weights: conv_w,
            bias: conv_b,
            relu: true,
            input: view(0, 0, 3),
            output: view(1, 0, 8),
        },
        Step::Pool {
            spec: pool(PoolKind::Max, false),
            input: view(1, 0, 8),
            output: view(2, 0, 8),
        },
        Step::Depthwise {
            stride: 1,
            pads: Pads::uniform(1),
            weights: dw_w,
            bias: dw_b,
            relu: false,
            input: view(2, 0, 8),
            output: view(3, 0, 8),
        },
        Step::Relu {
            view: view(3, 0, 8),
        },
        // Concat: writes the second half of buffer 2.
        Step::Pointwise {
            groups: 2,
            k: 4,
            m: 4,
            weights: pw_w,
            bias: pw_b,
            in_rows,
            relu: false,
            floor: None,
            accumulate: false,
            input: view(3, 0, 8),
            output: view(2, 8, 8),
        },
        Step::Pointwise {
            groups: 2,
            k: 4,
            m: 4,
            weights: pw_w,
            bias: pw_b,
            in_rows,
            relu: true,
            floor: Some(pw_b),
            accumulate: true,
            input: view(3, 0, 8),
            output: view(2, 8, 8),
        },
        Step::Add {
            a: view(2, 0, 8),
            b: view(2, 8, 8),
            relu: true,
            output: view(2, 0, 8),
        },
        Step::Affine {
            scale: aff_s,
            shift: aff_t,
            relu: false,
            input: view(2, 0, 16),
            output: view(4, 0, 16),
        },
        Step::Permute {
            table: perm,
            input: view(4, 0, 16),
            output: view(5, 0, 16),
        },
        Step::Depthwise {
            stride: 2,
            pads: Pads {
                top: 0,
                left: 1,
                bottom: 2,
                right: 1,
            },
            weights: dw2_w,
            bias: dw2_b,
            relu: true,
            input: view(5, 0, 16),
            output: view(6, 0, 16),
        },
        Step::Pool {
            spec: pool(
                PoolKind::Avg {
                    count_include_pad: false,
                },
                false,
            ),
            input: view(6, 0, 16),
            output: view(7, 0, 16),
        },
        Step::Pool {
            spec: pool(
                PoolKind::Avg {
                    count_include_pad: true,
                },
                true,
            ),
            input: view(7, 0, 16),
            output: view(8, 0, 16),
        },
        Step::GlobalAvgPool {
            input: view(8, 0, 16),
            output: view(9, 0, 16),
        },
        Step::Fc {
            weights: fc_w,
            bias: fc_b,
            input: view(9, 0, 16),
            output: view(10, 0, 10),
        },
        Step::GapFc {
            weights: gfc_w,
            bias: gfc_b,
            input: view(8, 0, 16),
            output: view(11, 0, 10),
        },
        Step::Add {
            a: view(10, 0, 10),
            b: view(11, 0, 10),
            relu: false,
            output: view(12, 0, 10),
        },
        Step::Softmax {
            view: view(12, 0, 10),
        },
    ];
    let buffers = [3, 8, 16, 8, 16, 16, 16, 16, 16, 16, 10, 10, 10]
        .map(|channels| BufferDecl { channels })
        .to_vec();
    let model = LoweredModel {
        program: Program {
            description: "every step — ünïcödé".into(),
            input: InputSpec {
                channels: 3,
                layout: Layout::Nhwc,
                default_size: Some((32, 48)),
                preprocess: Some(Preprocess {
                    mean: vec![123.675, 116.28, 103.53],
                    scale: vec![1.0 / 58.395, 1.0 / 57.12, 1.0 / 57.375],
                }),
            },
            output_name: "probs".into(),
            buffers,
            steps,
            output: view(12, 0, 10),
        },
        tensors: t.0,
    };
    model
        .program
        .validate(model.tensors.as_slice())
        .expect("fixture is valid");
    model
}

/// The smallest program: NCHW, no default size, no preprocessing, one step.
fn minimal() -> LoweredModel {
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
                input: view(0, 0, 2),
                output: view(1, 0, 2),
            }],
            output: view(1, 0, 2),
        },
        tensors: vec![TensorData::U32(vec![1, 0])],
    }
}

fn bytes_of(m: &LoweredModel) -> Vec<u8> {
    model_file::to_bytes(m).expect("encodes")
}

fn load(bytes: &[u8]) -> Result<Model, FileError> {
    Model::from_bytes(bytes)
}

fn get_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn get_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// File offset of section table entry `i`.
fn entry(i: usize) -> usize {
    format::SECTION_TABLE_OFFSET + format::SECTION_TABLE_HEAD + i * format::SECTION_ENTRY_LEN
}

/// File offset of tensor table entry `id`.
fn tensor_entry(bytes: &[u8], id: usize) -> usize {
    let c = model_file::inspect(bytes).unwrap();
    c.tensor_table.offset as usize + format::TENSOR_TABLE_HEAD + id * format::TENSOR_ENTRY_LEN
}

/// File offset of the first step's tag, computed from the documented encoding.
fn first_step(bytes: &[u8], p: &Program) -> usize {
    let c = model_file::inspect(bytes).unwrap();
    let pre = p
        .input
        .preprocess
        .as_ref()
        .map_or(0, |p| 4 + 8 * p.mean.len());
    c.program.offset as usize
        + 4
        + p.description.len().next_multiple_of(4)
        + 4
        + p.output_name.len().next_multiple_of(4)
        + 6 * 4
        + pre
        + 4
        + 4 * p.buffers.len()
        + 4
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let d = std::env::temp_dir().join(format!("snm-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }
    fn entries(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The model holds exactly the program and tensors of `m`, bit for bit.
fn assert_same(model: &Model, m: &LoweredModel) {
    assert_eq!(model.program(), &m.program);
    assert_eq!(model.tensor_count(), m.tensors.len());
    for (id, t) in m.tensors.iter().enumerate() {
        let id = id as TensorId;
        match t {
            TensorData::F32(v) => {
                let got = model.f32s(id).expect("f32 tensor");
                let bits = |s: &[f32]| s.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(got), bits(v), "tensor {id}");
                assert!(model.u32s(id).is_none(), "tensor {id} is not u32");
                assert_eq!(got.as_ptr() as usize % 64, 0, "tensor {id} aligned");
            }
            TensorData::U32(v) => {
                assert_eq!(model.u32s(id).expect("u32 tensor"), &v[..], "tensor {id}");
                assert!(model.f32s(id).is_none(), "tensor {id} is not f32");
            }
        }
    }
    assert!(model.f32s(m.tensors.len() as TensorId).is_none());
    assert!(model.u32s(u32::MAX).is_none());
    let weights: usize = m.tensors.iter().map(|t| t.len() * 4).sum();
    assert_eq!(model.weight_bytes(), weights);
}

// ---------------------------------------------------------------- round trips

#[test]
fn round_trip_every_step_kind() {
    let m = every_step();
    let kinds: std::collections::HashSet<_> =
        m.program.steps.iter().map(std::mem::discriminant).collect();
    assert_eq!(kinds.len(), 12, "the fixture covers all 12 step kinds");
    let kernels: std::collections::HashSet<_> = m.program.steps.iter().map(Step::kernel).collect();
    assert_eq!(kernels.len(), 15, "and every kernel variant: {kernels:?}");
    let model = Model::from_lowered(&m).unwrap();
    assert_same(&model, &m);
    assert!(!model.is_mapped());
    assert_eq!(model.file_bytes(), bytes_of(&m).len());
    assert_eq!(model.to_lowered().program, m.program);
}

#[test]
fn round_trip_minimal_nchw_without_options() {
    let m = minimal();
    let model = Model::from_lowered(&m).unwrap();
    assert_same(&model, &m);
    assert_eq!(model.program().input.default_size, None);
    assert_eq!(model.program().input.preprocess, None);
    assert_eq!(model.program().input.layout, Layout::Nchw);
}

#[test]
fn encoding_is_deterministic_and_reencodes_identically() {
    let m = every_step();
    let a = bytes_of(&m);
    assert_eq!(a, bytes_of(&m));
    let back = load(&a).unwrap().to_lowered();
    assert_eq!(bytes_of(&back), a);
}

#[test]
fn layout_matches_the_documented_format() {
    let m = every_step();
    let b = bytes_of(&m);
    assert_eq!(&b[..8], &format::MAGIC);
    assert_eq!(&b[..8], b"\x89SNM\r\n\x1a\n");
    assert_eq!(get_u32(&b, 8), 2, "version");
    assert_eq!(get_u32(&b, 12), 0, "flags");
    assert_eq!(get_u64(&b, 16), b.len() as u64, "file length");
    assert_eq!(get_u64(&b, 24), format::checksum(&b[64..]), "checksum");
    assert!(b[32..64].iter().all(|&x| x == 0), "reserved");
    assert_eq!(get_u32(&b, 64), 3, "three sections");
    let mut kinds = Vec::new();
    for i in 0..3 {
        let e = entry(i);
        kinds.push(get_u32(&b, e));
        let offset = get_u64(&b, e + 8);
        assert_eq!(offset % 64, 0, "section {i} aligned");
        assert!(offset + get_u64(&b, e + 16) <= b.len() as u64);
    }
    kinds.sort();
    assert_eq!(
        kinds,
        [
            format::section::PROGRAM,
            format::section::TENSOR_TABLE,
            format::section::TENSOR_DATA
        ]
    );
    let c = model_file::inspect(&b).unwrap();
    assert_eq!(c.tensors.len(), m.tensors.len());
    for (e, t) in c.tensors.iter().zip(&m.tensors) {
        assert_eq!(e.file_offset % 64, 0);
        assert_eq!(e.count as usize, t.len());
        assert_eq!(e.dtype, t.dtype());
    }
    // The first step is the conv: its tag is where the documented encoding puts it.
    assert_eq!(get_u32(&b, first_step(&b, &m.program)), format::tag::CONV);
    // The output view closes the program section.
    let end = (c.program.offset + c.program.length) as usize;
    assert_eq!(
        [
            get_u32(&b, end - 12),
            get_u32(&b, end - 8),
            get_u32(&b, end - 4)
        ],
        [12, 0, 10]
    );
}

#[test]
fn model_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Model>();
    let model = std::sync::Arc::new(Model::from_lowered(&minimal()).unwrap());
    let m2 = model.clone();
    let n = std::thread::spawn(move || m2.u32s(0).unwrap().to_vec())
        .join()
        .unwrap();
    assert_eq!(n, vec![1, 0]);
}

#[test]
fn large_files_and_copies_are_held_in_huge_page_memory_on_linux() {
    // 1x g = 3: about 7 MB of weights, past the 2 MiB from which Linux builds
    // read the file into memory advised for huge pages instead of mapping it.
    let m = shufflenet::plan::lower(&shufflenet::family::build(3, 1.0, 1).unwrap()).unwrap();
    let dir = TempDir::new("huge");
    let path = dir.0.join("m.snm");
    model_file::write(&m, &path).unwrap();
    let len = std::fs::metadata(&path).unwrap().len();
    assert!(len >= 2 << 20, "{len} bytes");
    let opened = Model::open(&path).unwrap();
    assert_eq!(opened.is_mapped(), !cfg!(target_os = "linux"));
    assert_same(&opened, &m);
    assert_eq!(opened.file_bytes() as u64, len);
    let bytes = std::fs::read(&path).unwrap();
    let copied = Model::from_bytes(&bytes).unwrap();
    assert!(!copied.is_mapped());
    assert_same(&copied, &m);
    // A damaged large file is refused the same way as a mapped one.
    let mut bad = bytes.clone();
    let at = bad.len() / 2;
    bad[at] ^= 0x40;
    std::fs::write(&path, &bad).unwrap();
    assert!(matches!(
        Model::open(&path),
        Err(FileError::ChecksumMismatch { .. })
    ));
}

#[test]
fn open_maps_the_file_and_reads_weights_in_place() {
    let dir = TempDir::new("open");
    let path = dir.0.join("m.snm");
    let m = every_step();
    model_file::write(&m, &path).unwrap();
    let model = Model::open(&path).unwrap();
    assert!(model.is_mapped());
    assert_same(&model, &m);
    assert_eq!(
        model.file_bytes() as u64,
        std::fs::metadata(&path).unwrap().len()
    );
    assert_eq!(
        dir.entries(),
        vec!["m.snm".to_string()],
        "no temporary left"
    );
}

#[test]
fn from_bytes_accepts_an_unaligned_slice() {
    let m = every_step();
    let b = bytes_of(&m);
    for shift in [1usize, 3, 4, 17, 63] {
        let mut v = vec![0xAAu8; b.len() + 64];
        v[shift..shift + b.len()].copy_from_slice(&b);
        let model = load(&v[shift..shift + b.len()]).unwrap();
        assert_same(&model, &m);
    }
}

#[test]
fn open_reports_missing_files_and_directories() {
    let dir = TempDir::new("missing");
    let err = Model::open(dir.0.join("nope.snm")).unwrap_err();
    assert!(
        matches!(&err, FileError::Io { op: "cannot open", path, .. } if path.ends_with("nope.snm")),
        "{err}"
    );
    assert!(matches!(
        Model::open(&dir.0).unwrap_err(),
        FileError::Io { .. } | FileError::Truncated { .. }
    ));
}

// ---------------------------------------------------------------- writing

#[test]
fn write_into_a_missing_directory_fails_and_leaves_nothing() {
    let dir = TempDir::new("nodir");
    let missing = dir.0.join("no").join("such");
    let err = model_file::write(&minimal(), missing.join("m.snm")).unwrap_err();
    assert!(
        matches!(
            err,
            FileError::Io {
                op: "cannot create",
                ..
            }
        ),
        "{err}"
    );
    assert!(!missing.exists());
    assert!(dir.entries().is_empty());
}

#[test]
fn write_over_a_directory_fails_and_cleans_up() {
    let dir = TempDir::new("overdir");
    std::fs::create_dir(dir.0.join("m.snm")).unwrap();
    let err = model_file::write(&minimal(), dir.0.join("m.snm")).unwrap_err();
    assert!(
        matches!(
            err,
            FileError::Io {
                op: "cannot rename into",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        dir.entries(),
        vec!["m.snm".to_string()],
        "temporary removed"
    );
    assert!(dir.0.join("m.snm").is_dir());
}

#[test]
fn write_replaces_an_existing_file_atomically() {
    let dir = TempDir::new("replace");
    let path = dir.0.join("m.snm");
    let a = minimal();
    let b = every_step();
    model_file::write(&a, &path).unwrap();
    let old = Model::open(&path).unwrap();
    model_file::write(&b, &path).unwrap();
    // The map of the old file is untouched by the replacement.
    assert_same(&old, &a);
    assert_same(&Model::open(&path).unwrap(), &b);
    assert_eq!(std::fs::read(&path).unwrap(), bytes_of(&b));
    assert_eq!(dir.entries(), vec!["m.snm".to_string()]);
}

#[test]
fn write_to_a_bare_file_name_uses_the_current_directory() {
    // Tests run in the package directory; a bare name has an empty parent.
    struct Remove(PathBuf);
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    let name = PathBuf::from(format!("snm-test-{}-bare.snm", std::process::id()));
    let _guard = Remove(name.clone());
    assert_eq!(name.parent(), Some(Path::new("")));
    model_file::write(&minimal(), &name).unwrap();
    assert_same(&Model::open(&name).unwrap(), &minimal());
    let leftovers = std::fs::read_dir(".")
        .unwrap()
        .filter(|e| {
            let n = e.as_ref().unwrap().file_name();
            let n = n.to_string_lossy();
            n.contains("bare.snm") && n.ends_with(".tmp")
        })
        .count();
    assert_eq!(leftovers, 0);
}

#[test]
fn writing_an_invalid_program_fails_before_touching_the_disk() {
    let dir = TempDir::new("invalid");
    let mut m = minimal();
    m.tensors[0] = TensorData::U32(vec![1, 2]); // index 2 past 2 input channels
    let err = model_file::write(&m, dir.0.join("m.snm")).unwrap_err();
    assert!(matches!(err, FileError::InvalidProgram(_)), "{err}");
    assert!(dir.entries().is_empty());

    let mut m = minimal();
    m.program.input.preprocess = Some(Preprocess {
        mean: vec![0.0; 3],
        scale: vec![1.0; 3],
    });
    assert!(matches!(
        model_file::to_bytes(&m).unwrap_err(),
        FileError::InvalidProgram(ProgramError::Structure(_))
    ));
    let mut m = minimal();
    m.program.input.default_size = Some((0, 4));
    assert!(matches!(
        model_file::to_bytes(&m).unwrap_err(),
        FileError::InvalidProgram(ProgramError::Structure(_))
    ));
}

// ---------------------------------------------------------------- corrupted files

#[test]
fn truncation_at_every_boundary_is_truncated() {
    let b = bytes_of(&every_step());
    let c = model_file::inspect(&b).unwrap();
    let mut cuts = vec![0, 1, 7, 8, 12, 16, 24, 32, 63, 64, 72, entry(1), entry(3)];
    for s in [c.program, c.tensor_table, c.tensor_data] {
        let (o, l) = (s.offset as usize, s.length as usize);
        cuts.extend([o, o + 1, o + 4, o + l / 2, o + l - 1, o + l]);
    }
    for t in &c.tensors {
        cuts.push(t.file_offset as usize + 4);
    }
    cuts.push(b.len() - 1);
    cuts.retain(|&n| n < b.len());
    assert!(cuts.len() > 30);
    for n in cuts {
        let expected = if n < 64 { 64 } else { b.len() as u64 };
        match load(&b[..n]) {
            Err(FileError::Truncated {
                expected: e,
                actual,
            }) => {
                assert_eq!((e, actual), (expected, n as u64), "cut at {n}")
            }
            other => panic!("cut at {n}: {other:?}"),
        }
    }
}

#[test]
fn truncated_files_on_disk_are_truncated() {
    let dir = TempDir::new("trunc");
    let b = bytes_of(&every_step());
    let c = model_file::inspect(&b).unwrap();
    for n in [0, 10, 64, c.tensor_data.offset as usize, b.len() - 1] {
        let path = dir.0.join(format!("cut{n}.snm"));
        std::fs::write(&path, &b[..n]).unwrap();
        let err = Model::open(&path).unwrap_err();
        assert!(
            matches!(err, FileError::Truncated { actual, .. } if actual == n as u64),
            "{err}"
        );
    }
}

#[test]
fn trailing_bytes_are_rejected() {
    let mut b = bytes_of(&minimal());
    let n = b.len() as u64;
    b.extend_from_slice(&[0; 64]);
    assert!(matches!(
        load(&b).unwrap_err(),
        FileError::TrailingBytes { expected, actual } if expected == n && actual == n + 64
    ));
}

#[test]
fn flipped_checksum_is_a_mismatch() {
    let b = bytes_of(&every_step());
    let stored = get_u64(&b, format::CHECKSUM_OFFSET);
    let mut x = b.clone();
    x[format::CHECKSUM_OFFSET + 3] ^= 0x10;
    match load(&x).unwrap_err() {
        FileError::ChecksumMismatch {
            stored: s,
            computed,
        } => {
            assert_eq!(computed, stored);
            assert_eq!(s, stored ^ (0x10 << 24));
        }
        e => panic!("{e:?}"),
    }
    // A flipped bit in a weight is caught by the checksum too.
    let c = model_file::inspect(&b).unwrap();
    let mut x = b.clone();
    x[c.tensors[0].file_offset as usize + 5] ^= 1;
    assert!(matches!(
        load(&x).unwrap_err(),
        FileError::ChecksumMismatch { .. }
    ));
}

#[test]
fn wrong_magic() {
    let mut b = bytes_of(&minimal());
    b[1] = b'X';
    match load(&b).unwrap_err() {
        FileError::BadMagic { found } => assert_eq!(&found, b"\x89XNM\r\n\x1a\n"),
        e => panic!("{e:?}"),
    }
    // A text-mode transfer (CRLF -> LF) changes the magic.
    let b = bytes_of(&minimal());
    let mangled: Vec<u8> = [&b[..4], &b[5..]].concat();
    assert!(matches!(
        load(&mangled).unwrap_err(),
        FileError::BadMagic { .. }
    ));
}

#[test]
fn wrong_version_and_flags() {
    let mut b = bytes_of(&minimal());
    for v in [0, 3] {
        put_u32(&mut b, format::VERSION_OFFSET, v);
        assert!(matches!(
            load(&b).unwrap_err(),
            FileError::UnsupportedVersion { found, supported: 2 } if found == v
        ));
    }
    // Version 1 files (no ReLU floors) still load.
    put_u32(&mut b, format::VERSION_OFFSET, 1);
    assert!(load(&b).is_ok());
    let mut b = bytes_of(&minimal());
    put_u32(&mut b, format::FLAGS_OFFSET, 4);
    assert!(matches!(
        load(&b).unwrap_err(),
        FileError::UnsupportedFlags { flags: 4 }
    ));
    let mut b = bytes_of(&minimal());
    b[40] = 1;
    assert!(matches!(
        load(&b).unwrap_err(),
        FileError::BadEncoding { offset: 40, .. }
    ));
}

/// Applies `f` to a fresh copy of `m`'s file, recomputes the checksum (so the deeper
/// check is reached) and loads it.
fn tampered(m: &LoweredModel, f: impl FnOnce(&mut Vec<u8>)) -> FileError {
    let mut b = bytes_of(m);
    f(&mut b);
    format::reseal(&mut b);
    load(&b).expect_err("tampered file must not load")
}

#[test]
fn section_offsets_out_of_range() {
    let m = every_step();
    let len = bytes_of(&m).len() as u64;
    // Entry 2 is the tensor data (the writer's order: program, table, data).
    for (offset, length) in [
        (len, 1),
        (len - 64, 128),
        (len + 64, 4),
        (0, 64),  // over the header
        (64, 64), // over the section table
        (u64::MAX - 63, 128),
    ] {
        let err = tampered(&m, |b| {
            put_u64(b, entry(2) + 8, offset);
            put_u64(b, entry(2) + 16, length);
        });
        match err {
            FileError::SectionOutOfRange {
                section,
                offset: o,
                length: l,
                file_len,
            } => {
                assert_eq!(
                    (section, o, l, file_len),
                    ("tensor data", offset, length, len)
                );
            }
            e => panic!("offset {offset}: {e:?}"),
        }
    }
    // A length running past the end.
    let err = tampered(&m, |b| {
        let l = get_u64(b, entry(0) + 16);
        put_u64(b, entry(0) + 16, l + len);
    });
    assert!(
        matches!(
            err,
            FileError::SectionOutOfRange {
                section: "program",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn misaligned_offsets() {
    let m = every_step();
    let err = tampered(&m, |b| {
        let o = get_u64(b, entry(1) + 8);
        put_u64(b, entry(1) + 8, o + 8);
    });
    assert!(
        matches!(&err, FileError::Misaligned { what, align: 64, .. } if what == "tensor table section"),
        "{err}"
    );
    let err = tampered(&m, |b| {
        let e = tensor_entry(b, 3);
        let o = get_u64(b, e + 8);
        put_u64(b, e + 8, o + 4);
    });
    assert!(
        matches!(&err, FileError::Misaligned { what, align: 64, .. } if what == "tensor 3"),
        "{err}"
    );
}

#[test]
fn overlapping_duplicate_missing_and_unknown_sections() {
    let m = every_step();
    let err = tampered(&m, |b| {
        let p = get_u64(b, entry(0) + 8);
        put_u64(b, entry(1) + 8, p);
        put_u64(b, entry(1) + 16, 8);
    });
    match err {
        FileError::SectionOverlap { first, second } => {
            let mut pair = [first, second];
            pair.sort();
            assert_eq!(pair, ["program", "tensor table"]);
        }
        e => panic!("{e:?}"),
    }
    let err = tampered(&m, |b| put_u32(b, entry(2), format::section::PROGRAM));
    assert!(
        matches!(&err, FileError::BadSectionTable { what } if what.contains("twice")),
        "{err}"
    );
    let err = tampered(&m, |b| put_u32(b, entry(1), 9));
    assert!(
        matches!(&err, FileError::BadSectionTable { what } if what.contains("unknown kind 9")),
        "{err}"
    );
    let err = tampered(&m, |b| put_u32(b, format::SECTION_TABLE_OFFSET, 2));
    assert!(
        matches!(&err, FileError::BadSectionTable { what } if what.contains("tensor data section is missing")),
        "{err}"
    );
    for n in [0, 17, u32::MAX] {
        let err = tampered(&m, |b| put_u32(b, format::SECTION_TABLE_OFFSET, n));
        assert!(
            matches!(&err, FileError::BadSectionTable { what } if what.contains("sections")),
            "{err}"
        );
    }
    let err = tampered(&m, |b| put_u32(b, entry(0) + 4, 1));
    assert!(matches!(err, FileError::BadEncoding { .. }), "{err}");
}

#[test]
fn tensor_offsets_out_of_range() {
    let m = every_step();
    let b = bytes_of(&m);
    let data_len = model_file::inspect(&b).unwrap().tensor_data.length;
    for (offset, count) in [
        (data_len, 1),
        (data_len + 64, 0),
        (0, data_len / 4 + 1),
        (64, u64::MAX / 2),
        (u64::MAX - 63, 1),
    ] {
        let err = tampered(&m, |b| {
            let e = tensor_entry(b, 5);
            put_u64(b, e + 8, offset);
            put_u64(b, e + 16, count);
        });
        match err {
            FileError::TensorOutOfRange {
                id: 5,
                offset: o,
                count: c,
                data_len: d,
            } => assert_eq!((o, c, d), (offset, count, data_len)),
            e => panic!("{offset}+{count}: {e:?}"),
        }
    }
}

#[test]
fn tensor_table_errors() {
    let m = every_step();
    let err = tampered(&m, |b| {
        let e = tensor_entry(b, 2);
        put_u32(b, e, 7);
    });
    assert!(
        matches!(err, FileError::UnknownDType { id: 2, code: 7 }),
        "{err}"
    );
    for count in [0u32, 5, u32::MAX] {
        let err = tampered(&m, |b| {
            let at = model_file::inspect(b).unwrap().tensor_table.offset as usize;
            put_u32(b, at, count);
        });
        assert!(
            matches!(&err, FileError::BadEncoding { what, .. } if what.contains("tensor count")),
            "{err}"
        );
    }
    // A tensor whose size no longer matches its step: caught by program validation.
    let err = tampered(&m, |b| {
        let e = tensor_entry(b, 0);
        put_u64(b, e + 16, 8);
    });
    assert!(
        matches!(&err, FileError::InvalidProgram(ProgramError::Step { step: 0, what, .. }) if what.contains("expected 216")),
        "{err}"
    );
    // A u32 table declared f32: the step expects a u32 tensor.
    let err = tampered(&m, |b| {
        let e = tensor_entry(b, IN_ROWS as usize);
        put_u32(b, e, format::dtype::F32);
    });
    assert!(matches!(err, FileError::InvalidProgram(_)), "{err}");
}

#[test]
fn bad_step_tag() {
    let m = every_step();
    let b = bytes_of(&m);
    let at = first_step(&b, &m.program);
    for t in [0u32, 14, 0xFFFF_FFFF] {
        let err = tampered(&m, |b| put_u32(b, at, t));
        match err {
            FileError::BadEncoding { offset, what } => {
                assert_eq!(offset, at as u64);
                assert!(what.contains(&format!("unknown step tag {t}")), "{what}");
            }
            e => panic!("{e:?}"),
        }
    }
    // Another valid tag makes the following fields misread: still an error, no panic.
    for t in 1..=12u32 {
        if t != format::tag::CONV {
            assert!(load(&{
                let mut x = b.clone();
                put_u32(&mut x, at, t);
                format::reseal(&mut x);
                x
            })
            .is_err());
        }
    }
}

#[test]
fn bad_field_encodings() {
    let m = every_step();
    let b = bytes_of(&m);
    let conv = first_step(&b, &m.program);
    // Conv fields: tag, groups, kh, kw, sh, sw, 4 pads, weights, bias, relu, input, output.
    let relu = conv + 12 * 4;
    let err = tampered(&m, |b| put_u32(b, relu, 2));
    assert!(
        matches!(&err, FileError::BadEncoding { offset, what } if *offset == relu as u64 && what.contains("relu is 2")),
        "{err}"
    );
    let err = tampered(&m, |b| put_u32(b, conv + 8, format::MAX_KERNEL + 1));
    assert!(
        matches!(&err, FileError::BadEncoding { what, .. } if what.contains("kernel size")),
        "{err}"
    );
    // The step count: more steps than the section can hold.
    let count_at = conv - 4;
    let err = tampered(&m, |b| put_u32(b, count_at, 1 << 30));
    assert!(
        matches!(&err, FileError::BadEncoding { what, .. } if what.contains("step count")),
        "{err}"
    );
    // One step fewer: the section has bytes left over.
    let err = tampered(&m, |b| {
        put_u32(b, count_at, m.program.steps.len() as u32 - 1)
    });
    assert!(matches!(err, FileError::BadEncoding { .. }), "{err}");
    // A program section longer than its encoding.
    let err = tampered(&m, |b| {
        let l = get_u64(b, entry(0) + 16);
        put_u64(b, entry(0) + 16, l + 4);
    });
    assert!(
        matches!(&err, FileError::BadEncoding { what, .. } if what.contains("after the program")),
        "{err}"
    );
    // Description length past the section; non-UTF-8 description.
    let p = model_file::inspect(&b).unwrap().program.offset as usize;
    let err = tampered(&m, |b| put_u32(b, p, 1 << 20));
    assert!(
        matches!(&err, FileError::BadEncoding { what, .. } if what.contains("description")),
        "{err}"
    );
    let err = tampered(&m, |b| b[p + 4] = 0xFF);
    assert!(
        matches!(&err, FileError::BadEncoding { what, .. } if what.contains("UTF-8")),
        "{err}"
    );
    // Input layout 2 does not exist.
    let desc = 4 + m.program.description.len().next_multiple_of(4);
    let name = 4 + m.program.output_name.len().next_multiple_of(4);
    let layout = p + desc + name + 4;
    assert_eq!(get_u32(&b, layout), 1, "NHWC");
    let err = tampered(&m, |b| put_u32(b, layout, 2));
    assert!(
        matches!(&err, FileError::BadEncoding { what, .. } if what.contains("layout")),
        "{err}"
    );
    // Buffers too large in total for validation to be cheap.
    let buffers = conv - 4 - 4 * m.program.buffers.len();
    let err = tampered(&m, |b| {
        for i in 0..m.program.buffers.len() {
            put_u32(b, buffers + 4 * i, 1 << 21);
        }
    });
    assert!(
        matches!(&err, FileError::BadEncoding { what, .. } if what.contains("in total")),
        "{err}"
    );
}

#[test]
fn view_past_its_buffer_is_an_invalid_program() {
    let m = every_step();
    let b = bytes_of(&m);
    let conv = first_step(&b, &m.program);
    let output_offset = conv + 17 * 4; // output view: buffer, offset, channels
    assert_eq!(get_u32(&b, output_offset - 4), 1, "output buffer");
    let err = tampered(&m, |b| put_u32(b, output_offset, 5));
    match err {
        FileError::InvalidProgram(ProgramError::Step { step, kernel, what }) => {
            assert_eq!((step, kernel), (0, "conv2d"));
            assert!(what.contains("outside its buffer"), "{what}");
        }
        e => panic!("{e:?}"),
    }
    // The program's output view, at the end of the section.
    let err = tampered(&m, |b| {
        let c = model_file::inspect(b).unwrap();
        let end = (c.program.offset + c.program.length) as usize;
        put_u32(b, end - 4, 11);
    });
    assert!(
        matches!(&err, FileError::InvalidProgram(ProgramError::Structure(w)) if w.contains("outside")),
        "{err}"
    );
    // A view of a buffer that does not exist.
    let err = tampered(&m, |b| put_u32(b, output_offset - 4, 99));
    assert!(
        matches!(
            err,
            FileError::InvalidProgram(ProgramError::Step { step: 0, .. })
        ),
        "{err}"
    );
}

#[test]
fn in_rows_index_past_the_input_channels() {
    let m = every_step();
    let err = tampered(&m, |b| {
        let c = model_file::inspect(b).unwrap();
        let at = c.tensors[IN_ROWS as usize].file_offset as usize + 4 * 3;
        put_u32(b, at, 8);
    });
    match err {
        FileError::InvalidProgram(ProgramError::Step { step, kernel, what }) => {
            assert_eq!((step, kernel), (POINTWISE_STEP, "pointwise"));
            assert!(what.contains("index 8 past the 8 input channels"), "{what}");
        }
        e => panic!("{e:?}"),
    }
}

#[test]
fn preprocessing_inconsistent_with_the_input() {
    let m = every_step();
    let b = bytes_of(&m);
    let p = model_file::inspect(&b).unwrap().program.offset as usize;
    let desc = 4 + m.program.description.len().next_multiple_of(4);
    let name = 4 + m.program.output_name.len().next_multiple_of(4);
    let input = p + desc + name;
    let mean0 = input + 7 * 4;
    let err = tampered(&m, |b| put_u32(b, mean0, f32::NAN.to_bits()));
    assert!(
        matches!(&err, FileError::InvalidProgram(ProgramError::Structure(w)) if w.contains("finite")),
        "{err}"
    );
    // Default size flag cleared but a size stored.
    let err = tampered(&m, |b| put_u32(b, input + 2 * 4, 0));
    assert!(
        matches!(&err, FileError::BadEncoding { what, .. } if what.contains("size")),
        "{err}"
    );
}

// ---------------------------------------------------------------- random damage

#[test]
fn random_damage_is_an_error_never_a_panic() {
    let m = every_step();
    let b = bytes_of(&m);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    // Random byte changes without resealing: always an error.
    for _ in 0..500 {
        let mut x = b.clone();
        for _ in 0..1 + rng.below(4) {
            let i = rng.below(x.len());
            x[i] ^= 1 + rng.below(255) as u8;
        }
        assert!(load(&x).is_err());
    }
    // Random truncations: always an error.
    for _ in 0..200 {
        let n = rng.below(b.len());
        assert!(load(&b[..n]).is_err(), "cut at {n}");
    }
    // Random garbage, with and without a valid header: always an error.
    for i in 0..300 {
        let n = rng.below(4096);
        let mut x: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
        if i % 2 == 0 && n >= 64 {
            x[..8].copy_from_slice(&format::MAGIC);
            x[8..12].copy_from_slice(&1u32.to_le_bytes());
            x[12..64].fill(0);
            x[16..24].copy_from_slice(&(n as u64).to_le_bytes());
            format::reseal(&mut x);
        }
        assert!(load(&x).is_err());
    }
}

#[test]
fn resealed_random_damage_never_panics() {
    // Damage the tables and the program (then reseal, so the checksum passes and the
    // decoder and validation see the damage). Some damage is harmless (a padding byte,
    // a relu flag), so only the absence of panics, and consistency when it loads, is
    // asserted; most cases must fail.
    let m = every_step();
    let b = bytes_of(&m);
    let c = model_file::inspect(&b).unwrap();
    let structured = c.tensor_data.offset as usize;
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    let mut failed = 0;
    let trials = 3000;
    for i in 0..trials {
        let mut x = b.clone();
        for _ in 0..1 + rng.below(3) {
            let at = 64 + rng.below(structured - 64) / 4 * 4;
            let v = match i % 3 {
                0 => rng.next() as u32,
                1 => rng.below(20) as u32,
                _ => get_u32(&x, at) ^ (1 << rng.below(32)),
            };
            put_u32(&mut x, at, v);
        }
        format::reseal(&mut x);
        match load(&x) {
            Err(_) => failed += 1,
            Ok(model) => {
                // Whatever loaded passed the full validation.
                let lowered = model.to_lowered();
                assert!(lowered.program.validate(lowered.tensors.as_slice()).is_ok());
            }
        }
    }
    assert!(failed > trials * 3 / 4, "{failed} of {trials} failed");
}
