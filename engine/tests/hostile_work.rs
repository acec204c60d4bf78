//! Hostile sizes of the work itself: validating, planning and binding take time
//! quadratic in a program's steps and buffers and in a graph's nodes, so a small
//! hostile file could stall the app (before the bounds, a 2 MB model file took
//! about 20 s to bind to a session, a 1.4 MB ONNX file about a minute to lower).
//! Programs, graphs and ONNX graphs are bounded; at the bound they load quickly;
//! validation does not allocate per declared channel.

use prost::Message;
use shufflenet::graph::{
    Graph, GraphBuilder, GraphError, InputSpec, Layout, Op, Pads, PoolSpec, MAX_GRAPH_SIZE,
    MAX_STRIDE,
};
use shufflenet::model::Model;
use shufflenet::model_file::{self, format, FileError};
use shufflenet::onnx::proto::{
    data_type, Dimension, DimensionValue, GraphProto, ModelProto, NodeProto, OperatorSetIdProto,
    TensorShapeProto, TypeProto, TypeProtoTensor, ValueInfoProto,
};
use shufflenet::onnx::{self, OnnxError, MAX_NODES};
use shufflenet::plan::{self, PlanError};
use shufflenet::program::{
    BufferDecl, LoweredModel, Program, ProgramError, Step, TensorData, View, MAX_BUFFERS,
    MAX_CHANNELS, MAX_STEPS,
};
use shufflenet::session::{Session, SessionOptions};
use std::sync::Arc;

#[path = "hostile_alloc.rs"]
mod hostile_alloc;
use hostile_alloc::largest_allocation;

fn view(buffer: u32, channels: u32) -> View {
    View {
        buffer,
        offset: 0,
        channels,
    }
}

fn input(channels: usize) -> InputSpec {
    InputSpec {
        channels,
        layout: Layout::Nchw,
        default_size: None,
        preprocess: None,
    }
}

/// A permutation into buffer 1 followed by `relus - 1` in-place ReLUs on it:
/// `relus` steps over two one-channel buffers.
fn relu_chain(relus: usize) -> LoweredModel {
    let mut steps = vec![Step::Permute {
        table: 0,
        input: view(0, 1),
        output: view(1, 1),
    }];
    steps.extend((1..relus).map(|_| Step::Relu { view: view(1, 1) }));
    LoweredModel {
        program: Program {
            description: String::new(),
            input: input(1),
            output_name: "y".into(),
            buffers: vec![BufferDecl { channels: 1 }; 2],
            steps,
            output: view(1, 1),
        },
        tensors: vec![TensorData::U32(vec![0])],
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// Byte offsets, inside the program section of a [`relu_chain`] file, of the buffer
/// count and the step count: after the empty description (one word), the output
/// name "y" (two words) and the input (six words); the two buffers follow the count.
const BUFFER_COUNT: usize = 36;
const STEP_COUNT: usize = BUFFER_COUNT + 12;

/// A file the encoder would refuse to write: `file` with `extra` (a multiple of 64
/// bytes) inserted into its program section at `at` (relative to the section),
/// `count_at` (relative to the section) increased by `added`, and the section table,
/// file length and checksum fixed up.
fn spliced(file: &[u8], at: usize, extra: &[u8], count_at: usize, added: u32) -> Vec<u8> {
    assert_eq!(extra.len() % 64, 0, "keep the later sections aligned");
    let c = model_file::inspect(file).unwrap();
    let p = c.program.offset as usize;
    let mut out = file[..p + at].to_vec();
    out.extend_from_slice(extra);
    out.extend_from_slice(&file[p + at..]);
    let grow = extra.len() as u64;
    let n = u32_at(&out, format::SECTION_TABLE_OFFSET) as usize;
    for i in 0..n {
        let e = format::SECTION_TABLE_OFFSET
            + format::SECTION_TABLE_HEAD
            + i * format::SECTION_ENTRY_LEN;
        let (offset, length) = (u64_at(&out, e + 8), u64_at(&out, e + 16));
        if offset == c.program.offset {
            put_u64(&mut out, e + 16, length + grow);
        } else if offset > c.program.offset {
            put_u64(&mut out, e + 8, offset + grow);
        }
    }
    let count = u32_at(&out, p + count_at);
    put_u32(&mut out, p + count_at, count + added);
    let len = out.len() as u64;
    put_u64(&mut out, format::FILE_LEN_OFFSET, len);
    format::reseal(&mut out);
    out
}

/// Encoded ReLU steps on buffer 1: tag, then the view.
fn relu_steps(n: usize) -> Vec<u8> {
    (0..n)
        .flat_map(|_| [format::tag::RELU, 1, 0, 1])
        .flat_map(u32::to_le_bytes)
        .collect()
}

#[test]
fn a_program_at_the_step_bound_loads_and_binds() {
    let bytes = model_file::to_bytes(&relu_chain(MAX_STEPS)).unwrap();
    let model = Arc::new(Model::from_bytes(&bytes).unwrap());
    assert_eq!(model.program().steps.len(), MAX_STEPS);
    let mut s = Session::new(model, 2, 3, SessionOptions::default()).unwrap();
    let mut y = vec![0.0; 6];
    s.run(&[-1.0, 2.0, 3.0, -0.0, 5.0, -6.0], &mut y).unwrap();
    assert_eq!(y, [0.0, 2.0, 3.0, 0.0, 5.0, 0.0]);
}

#[test]
fn a_program_past_the_step_bound_is_refused() {
    let m = relu_chain(MAX_STEPS + 4);
    assert!(matches!(
        m.program.validate(m.tensors.as_slice()),
        Err(ProgramError::Structure(_))
    ));
    assert!(model_file::to_bytes(&m).is_err(), "the encoder writes it");
    // The same program, written by hand: four more ReLU steps (64 bytes) before the
    // output view at the end of the program section.
    let file = model_file::to_bytes(&relu_chain(MAX_STEPS)).unwrap();
    let c = model_file::inspect(&file).unwrap();
    let end = c.program.length as usize - 12;
    let bytes = spliced(&file, end, &relu_steps(4), STEP_COUNT, 4);
    match Model::from_bytes(&bytes) {
        Err(FileError::BadEncoding { what, .. }) => {
            assert!(what.contains(&format!("{} steps", MAX_STEPS + 4)), "{what}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_program_past_the_buffer_bound_is_refused() {
    // MAX_BUFFERS more one-channel buffers (4 bytes each) after the two declared.
    let file = model_file::to_bytes(&relu_chain(2)).unwrap();
    let extra: Vec<u8> = (0..MAX_BUFFERS).flat_map(|_| 1u32.to_le_bytes()).collect();
    let bytes = spliced(&file, STEP_COUNT, &extra, BUFFER_COUNT, MAX_BUFFERS as u32);
    match Model::from_bytes(&bytes) {
        Err(FileError::BadEncoding { what, .. }) => {
            assert!(
                what.contains(&format!("{} buffers", MAX_BUFFERS + 2)),
                "{what}"
            )
        }
        other => panic!("{other:?}"),
    }
    // Within the bound the same splice loads: the buffers are legal, just unused.
    let extra: Vec<u8> = (0..16).flat_map(|_| 1u32.to_le_bytes()).collect();
    let bytes = spliced(&file, STEP_COUNT, &extra, BUFFER_COUNT, 16);
    assert_eq!(
        Model::from_bytes(&bytes).unwrap().program().buffers.len(),
        18
    );
}

/// The largest buffer the format allows, read and rewritten by every step: a pool
/// from the input (2^20 channels) into buffer 1, then ReLUs over all of buffer 1.
fn wide_chain(relus: usize) -> LoweredModel {
    let c = MAX_CHANNELS;
    let mut steps = vec![Step::Pool {
        spec: PoolSpec {
            kind: kernels::PoolKind::Max,
            kh: 1,
            kw: 1,
            stride: (1, 1),
            pads: Pads::default(),
            ceil_mode: false,
        },
        input: view(0, c),
        output: view(1, c),
    }];
    steps.extend((0..relus).map(|_| Step::Relu { view: view(1, c) }));
    LoweredModel {
        program: Program {
            description: String::new(),
            input: input(c as usize),
            output_name: "y".into(),
            buffers: vec![BufferDecl { channels: c }; 2],
            steps,
            output: view(1, c),
        },
        tensors: Vec::new(),
    }
}

#[test]
fn validation_does_not_allocate_per_channel() {
    // 4095 steps each covering 2^20 channels: validation used to walk (and keep) a
    // flag per channel, 2^32 flag reads for this 65 KB file.
    let bytes = model_file::to_bytes(&wide_chain(MAX_STEPS - 1)).unwrap();
    let (model, largest) = largest_allocation(|| Model::from_bytes(&bytes));
    let model = model.unwrap();
    assert_eq!(model.program().steps.len(), MAX_STEPS);
    assert!(
        largest <= 8 * bytes.len() + (64 << 10),
        "loading {} bytes allocated {largest} at once",
        bytes.len()
    );
    // Binding it still respects the arena limit: 2 x 2^20 floats at 1x1 fit in
    // 16 MiB, not in 4 MiB.
    let model = Arc::new(model);
    let opts = |max_arena_bytes| SessionOptions {
        max_arena_bytes,
        ..SessionOptions::default()
    };
    assert!(Session::new(model.clone(), 1, 1, opts(16 << 20)).is_ok());
    assert!(Session::new(model, 1, 1, opts(4 << 20)).is_err());
}

/// `n` ReLU nodes in a chain.
fn relu_graph(n: usize) -> Result<Graph, GraphError> {
    let mut b = GraphBuilder::new("chain", input(2));
    let mut x = b.input();
    for i in 0..n {
        x = b.push(format!("relu{i}"), Op::Relu, &[x], 2);
    }
    b.finish(x, "y")
}

#[test]
fn graphs_past_the_size_bound_are_refused() {
    // Each ReLU node counts itself and its input.
    let at_bound = relu_graph(MAX_GRAPH_SIZE / 2).unwrap();
    let lowered = plan::lower(&at_bound).unwrap();
    assert!(lowered.program.steps.len() <= MAX_STEPS);
    match relu_graph(MAX_GRAPH_SIZE / 2 + 1) {
        Err(GraphError::Structure(what)) => assert!(what.contains("nodes"), "{what}"),
        other => panic!("{other:?}"),
    }
    // The planner validates the graph it is given: a graph built by hand past the
    // bound is refused there too.
    let mut big = at_bound.clone();
    let last = big.nodes.last().unwrap().clone();
    big.values.push(big.values[last.output].clone());
    big.nodes.push(shufflenet::graph::Node {
        name: "one more".into(),
        op: Op::Relu,
        inputs: vec![last.output],
        output: big.values.len() - 1,
    });
    big.output = big.values.len() - 1;
    assert!(matches!(
        plan::lower(&big),
        Err(PlanError::Graph(GraphError::Structure(_)))
    ));
}

fn relu_onnx(n: usize) -> Vec<u8> {
    let info = |name: &str| ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            tensor_type: Some(TypeProtoTensor {
                elem_type: Some(data_type::FLOAT),
                shape: Some(TensorShapeProto {
                    dim: [1, 2, 4, 4]
                        .iter()
                        .map(|&d| Dimension {
                            value: Some(DimensionValue::DimValue(d)),
                        })
                        .collect(),
                }),
            }),
        }),
    };
    let name = |i: usize| {
        if i == 0 {
            "x".to_string()
        } else if i == n {
            "y".to_string()
        } else {
            format!("v{i}")
        }
    };
    ModelProto {
        ir_version: Some(8),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(13),
        }],
        graph: Some(GraphProto {
            node: (0..n)
                .map(|i| NodeProto {
                    op_type: Some("Relu".into()),
                    input: vec![name(i)],
                    output: vec![name(i + 1)],
                    ..Default::default()
                })
                .collect(),
            input: vec![info("x")],
            output: vec![info("y")],
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec()
}

#[test]
fn onnx_graphs_past_the_bounds_are_refused() {
    let g = onnx::import(&relu_onnx(MAX_GRAPH_SIZE / 2), "chain.onnx").unwrap();
    assert_eq!(g.nodes.len(), MAX_GRAPH_SIZE / 2);
    plan::lower(&g).unwrap();
    match onnx::import(&relu_onnx(MAX_GRAPH_SIZE / 2 + 1), "chain.onnx") {
        Err(OnnxError::Graph(GraphError::Structure(what))) => {
            assert!(what.contains("nodes"), "{what}")
        }
        other => panic!("{other:?}"),
    }
    // Past the node bound the file is refused before any node is looked at.
    match onnx::import(&relu_onnx(MAX_NODES + 1), "chain.onnx") {
        Err(OnnxError::Model(what)) => {
            assert!(what.contains(&format!("{} nodes", MAX_NODES + 1)), "{what}")
        }
        other => panic!("{other:?}"),
    }
}

fn one_input_graph(channels: usize) -> GraphBuilder {
    GraphBuilder::new("limits", input(channels))
}

fn conv_graph(k: usize, stride: usize) -> Result<Graph, GraphError> {
    let mut b = one_input_graph(1);
    let x = b.input();
    let conv = shufflenet::graph::Conv {
        cin: 1,
        cout: 1,
        groups: 1,
        kh: k,
        kw: 1,
        stride: (stride, 1),
        pads: Pads::default(),
        weight: vec![0.5; k],
        bias: None,
    };
    let x = b.push("conv", Op::Conv(conv), &[x], 1);
    b.finish(x, "y")
}

fn pool_graph(k: usize, stride: usize) -> Result<Graph, GraphError> {
    let mut b = one_input_graph(1);
    let x = b.input();
    let pool = PoolSpec {
        kind: kernels::PoolKind::Max,
        kh: 1,
        kw: k,
        stride: (1, stride),
        pads: Pads::default(),
        ceil_mode: false,
    };
    let x = b.push("pool", Op::Pool(pool), &[x], 1);
    b.finish(x, "y")
}

/// Graphs accept exactly what their lowered programs and model files can hold:
/// before, a window above 16 passed the graph and failed the program (reported as a
/// planner bug), and a stride above 2^32 was cut to 32 bits when lowered (a stride
/// of 2^32 + 1 ran as stride 1: wrong shapes, silently).
#[test]
fn graphs_have_the_programs_limits() {
    for (k, stride) in [(16, 1), (1, MAX_STRIDE), (3, 2)] {
        for g in [conv_graph(k, stride), pool_graph(k, stride)] {
            let g = g.unwrap_or_else(|e| panic!("k{k} s{stride}: {e}"));
            Model::from_lowered(&plan::lower(&g).unwrap()).unwrap();
        }
    }
    let past_u32 = usize::try_from((1u64 << 32) + 1).unwrap_or(usize::MAX);
    for (k, stride) in [(17, 1), (1, MAX_STRIDE + 1), (1, past_u32)] {
        for g in [conv_graph(k, stride), pool_graph(k, stride)] {
            assert!(
                matches!(g, Err(GraphError::Node { .. })),
                "k{k} s{stride}: {g:?}"
            );
        }
    }
}

#[test]
fn graph_channel_counts_are_bounded() {
    // A concat of the input 17 times: 17 x 2^16 channels, over 2^20.
    let mut b = one_input_graph(1 << 16);
    let x = b.input();
    let y = b.push("concat", Op::Concat, &[x; 17], 17 << 16);
    assert!(matches!(b.finish(y, "y"), Err(GraphError::Structure(_))));
    let mut b = one_input_graph(1 << 16);
    let x = b.input();
    let y = b.push("concat", Op::Concat, &[x; 16], 16 << 16);
    let g = b.finish(y, "y").unwrap();
    Model::from_lowered(&plan::lower(&g).unwrap()).unwrap();
    // In total: values and node inputs of 2^20 channels each, eight fit.
    for (relus, fits) in [(3, true), (4, false)] {
        let mut b = one_input_graph(1 << 20);
        let mut x = b.input();
        for i in 0..relus {
            x = b.push(format!("relu{i}"), Op::Relu, &[x], 1 << 20);
        }
        match b.finish(x, "y") {
            Ok(g) => {
                assert!(fits);
                Model::from_lowered(&plan::lower(&g).unwrap()).unwrap();
            }
            Err(e) => assert!(!fits && matches!(e, GraphError::Structure(_)), "{e}"),
        }
    }
}
