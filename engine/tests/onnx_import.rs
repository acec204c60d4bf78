//! ONNX import: every fixture (tools/scripts/make_onnx_fixtures.py) runs through
//! the reference executor and matches onnxruntime's logits; malformed files give
//! their own clear errors and never panic.

use kernels::PoolKind;
use prost::Message;
use shufflenet::graph::{Graph, Layout, Op};
use shufflenet::onnx::proto::{
    attribute_type, data_type, AttributeProto, Dimension, DimensionValue, GraphProto, ModelProto,
    NodeProto, OperatorSetIdProto, StringStringEntryProto, TensorProto, TensorShapeProto,
    TypeProto, TypeProtoTensor, ValueInfoProto,
};
use shufflenet::onnx::{self, OnnxError};
use shufflenet::reference;
use std::path::PathBuf;

// ---------------------------------------------------------------------------
// A minimal .npy reader (little-endian float32, C order).

fn read_npy(path: &PathBuf) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        &bytes[..6],
        b"\x93NUMPY",
        "{}: not an npy file",
        path.display()
    );
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        _ => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
    };
    let header = std::str::from_utf8(&bytes[start..start + header_len]).unwrap();
    assert!(header.contains("'descr': '<f4'"), "{header}");
    assert!(header.contains("'fortran_order': False"), "{header}");
    let shape_text = header
        .split("'shape': (")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .unwrap();
    let shape: Vec<usize> = shape_text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    let data: Vec<f32> = bytes[start + header_len..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(data.len(), shape.iter().product::<usize>(), "{header}");
    (shape, data)
}

// ---------------------------------------------------------------------------
// Fixtures against onnxruntime.

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/onnx")
        .join(name)
}

/// Groups of every channel shuffle, in order.
fn shuffles(g: &Graph) -> Vec<usize> {
    g.nodes
        .iter()
        .filter_map(|n| match n.op {
            Op::ChannelShuffle { groups } => Some(groups),
            _ => None,
        })
        .collect()
}

/// Imports a fixture, runs it, compares with onnxruntime; returns the graph.
fn run_fixture(name: &str) -> Graph {
    let g = onnx::import_file(&fixture(&format!("{name}.onnx")))
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let (shape, x) = read_npy(&fixture(&format!("{name}.input.npy")));
    let (want_shape, want) = read_npy(&fixture(&format!("{name}.logits.npy")));
    let (c, h, w) = match g.input.layout {
        Layout::Nchw => (shape[1], shape[2], shape[3]),
        Layout::Nhwc => (shape[3], shape[1], shape[2]),
    };
    assert_eq!(g.input.default_size, Some((h, w)), "{name}");
    assert_eq!(g.input.channels, c);
    assert_eq!(g.output_name, "logits");
    let y = reference::run(&g, h, w, &x).unwrap_or_else(|e| panic!("{name}: {e}"));
    let got_shape = [y.shape.c, y.shape.h, y.shape.w];
    match want_shape[..] {
        [1, k] => assert_eq!(got_shape, [k, 1, 1], "{name}: output shape"),
        [1, k, oh, ow] => assert_eq!(got_shape, [k, oh, ow], "{name}: output shape"),
        _ => panic!("{name}: unexpected reference shape {want_shape:?}"),
    }
    let max_ref = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let max_diff = y
        .data
        .iter()
        .zip(&want)
        .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    let bound = 1e-4 * max_ref + 1e-5;
    eprintln!("{name}: max |ours - onnxruntime| {max_diff:.3e}, bound {bound:.3e}");
    assert!(
        max_diff <= bound,
        "{name}: max |ours - onnxruntime| = {max_diff:e} > {bound:e} (max |logit| {max_ref})"
    );
    assert!(max_ref > 0.0, "{name}: degenerate reference output");

    // The fused plan, through the model file and a session, matches onnxruntime
    // within the same bound and the reference executor within 1e-5 relative.
    let lowered = shufflenet::plan::lower(&g).unwrap_or_else(|e| panic!("{name}: {e}"));
    if !g.nodes.iter().any(|n| matches!(n.op, Op::Concat)) && shuffles(&g).len() > 1 {
        let copies = lowered
            .program
            .steps
            .iter()
            .filter(|s| matches!(s, shufflenet::program::Step::Permute { .. }))
            .count();
        assert_eq!(copies, 0, "{name}: a shuffle was not folded");
    }
    let model = std::sync::Arc::new(shufflenet::model::Model::from_lowered(&lowered).unwrap());
    let mut session = shufflenet::session::Session::new(model, h, w, Default::default())
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut fused = vec![0.0; session.output_len()];
    session
        .run(&x, &mut fused)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(fused.len(), want.len(), "{name}: fused output length");
    let diff = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()))
    };
    let fused_ort = diff(&fused, &want);
    eprintln!("{name}: fused: max |ours - onnxruntime| {fused_ort:.3e}");
    assert!(
        fused_ort <= bound,
        "{name}: fused plan differs from onnxruntime by {fused_ort:e}"
    );
    let fused_ref = diff(&fused, &y.data);
    let max_y = y.data.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    assert!(
        fused_ref <= 1e-5 * max_y + 1e-6,
        "{name}: fused plan differs from the reference by {fused_ref:e}"
    );
    g
}

#[test]
fn pytorch_g3_025x_64x64_opset13() {
    let g = run_fixture("pt_g3_w025_64x64_op13");
    assert_eq!(g.input.layout, Layout::Nchw);
    // Every unit of 3 + 7 + 3 (+ 3 stride-2) shuffles with g = 3 groups.
    assert_eq!(shuffles(&g), vec![3; 16]);
}

#[test]
fn pytorch_g8_05x_96x128_opset9() {
    let g = run_fixture("pt_g8_w05_96x128_op9");
    assert_eq!(shuffles(&g), vec![8; 6]);
}

#[test]
fn pytorch_g1_025x_96x128_opset18_float_data() {
    let g = run_fixture("pt_g1_w025_96x128_op18_floatdata");
    assert!(shuffles(&g).is_empty());
}

#[test]
fn authors_g3_05x_64x64_opset11() {
    let g = run_fixture("authors_g3_w05_64x64_op11");
    // [N, C/g, g, H, W] is the inverse shuffle: C/g groups. Bottlenecks at 0.5x
    // g=3 are 30, 60 and 120 channels.
    assert_eq!(shuffles(&g), vec![10, 10, 20, 20, 40, 40]);
    // AveragePool over the whole final map became a global pool.
    assert!(g.nodes.iter().any(|n| n.op == Op::GlobalAvgPool));
}

#[test]
fn authors_g8_025x_96x128_opset21() {
    let g = run_fixture("authors_g8_w025_96x128_op21");
    // Bottlenecks at 0.25x g=8: 24, 48, 96 channels -> 3, 6, 12 groups.
    let want: Vec<usize> = [(3, 3), (6, 4), (12, 3)]
        .iter()
        .flat_map(|&(g, n)| std::iter::repeat_n(g, n))
        .collect();
    assert_eq!(shuffles(&g), want);
}

#[test]
fn tf2onnx_g3_025x_96x128_opset13_nhwc() {
    let g = run_fixture("tf_g3_w025_96x128_op13_nhwc");
    assert_eq!(g.input.layout, Layout::Nhwc);
    assert_eq!(shuffles(&g), vec![3; 16]);
    // MatMul + Add became one Fc with its bias; no bias node is left.
    assert_eq!(
        g.nodes.iter().filter(|n| matches!(n.op, Op::Fc(_))).count(),
        1
    );
    assert!(!g
        .nodes
        .iter()
        .any(|n| matches!(&n.op, Op::BatchNorm(b) if b.eps == 0.0)));
    assert!(matches!(g.nodes.last().map(|n| &n.op), Some(Op::Softmax)));
}

#[test]
fn tf2onnx_g8_05x_64x64_opset18_nhwc() {
    let g = run_fixture("tf_g8_w05_64x64_op18_nhwc");
    assert_eq!(g.input.layout, Layout::Nhwc);
    assert_eq!(shuffles(&g), vec![8; 6]);
}

#[test]
fn mixed_ops_shuffled_nodes_opset21() {
    let g = run_fixture("mix_g2_w025_64x64_op21");
    assert_eq!(shuffles(&g), vec![2; 7]);
    let p = g.input.preprocess.as_ref().expect("metadata preprocessing");
    assert_eq!(p.mean, vec![123.675, 116.28, 103.53]);
    assert_eq!(p.scale, vec![0.017125, 0.017507, 0.017429]);
}

/// Pool and conv windows on odd sizes: asymmetric pads, SAME_UPPER/SAME_LOWER,
/// ceil_mode (a last window starting in the end padding is dropped, as
/// onnxruntime and PyTorch do), count_include_pad 0 and 1.
#[test]
fn window_edge_cases() {
    let pool = |g: &Graph| match &g.nodes[..] {
        [n] => match &n.op {
            Op::Pool(p) => *p,
            op => panic!("{op:?}"),
        },
        nodes => panic!("{nodes:?}"),
    };
    let p = pool(&run_fixture("op_avgpool_ceil_cip1"));
    assert!(
        p.ceil_mode
            && p.kind
                == PoolKind::Avg {
                    count_include_pad: true
                }
    );
    let p = pool(&run_fixture("op_avgpool_ceil_cip0"));
    assert!(
        p.kind
            == PoolKind::Avg {
                count_include_pad: false
            }
    );
    // SAME_UPPER at stride 2 on 7x8: one pixel at the bottom on 7, right on 8.
    let p = pool(&run_fixture("op_avgpool_same_upper_cip0"));
    assert_eq!(
        (p.pads.top, p.pads.left, p.pads.bottom, p.pads.right),
        (1, 0, 1, 1)
    );
    let p = pool(&run_fixture("op_maxpool_same_lower"));
    assert_eq!(
        (p.pads.top, p.pads.left, p.pads.bottom, p.pads.right),
        (1, 0, 1, 0)
    );
    run_fixture("op_maxpool_ceil");
    run_fixture("op_conv_group_asym_bias");
    run_fixture("op_conv_same_upper_s2");
}

#[test]
fn fixtures_stay_small() {
    let dir = fixture("");
    let total: u64 = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(total < 5 << 20, "fixtures take {total} bytes");
}

// ---------------------------------------------------------------------------
// Models built here, for the error paths.

fn attr_ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(attribute_type::INTS),
        ints: v.to_vec(),
        ..Default::default()
    }
}

fn attr_int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(attribute_type::INT),
        i: Some(v),
        ..Default::default()
    }
}

fn attr_float(name: &str, v: f32) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(attribute_type::FLOAT),
        f: Some(v),
        ..Default::default()
    }
}

fn attr_str(name: &str, v: &str) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(attribute_type::STRING),
        s: Some(v.as_bytes().to_vec()),
        ..Default::default()
    }
}

fn node(
    name: &str,
    op: &str,
    ins: &[&str],
    outs: &[&str],
    attrs: Vec<AttributeProto>,
) -> NodeProto {
    NodeProto {
        name: Some(name.into()),
        op_type: Some(op.into()),
        input: ins.iter().map(|s| s.to_string()).collect(),
        output: outs.iter().map(|s| s.to_string()).collect(),
        attribute: attrs,
        ..Default::default()
    }
}

fn floats(name: &str, dims: &[i64], seed: u32) -> TensorProto {
    let n: i64 = dims.iter().product();
    let mut s = seed.wrapping_mul(2654435761).wrapping_add(1);
    let vals: Vec<f32> = (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s % 1000) as f32 / 1000.0 - 0.5
        })
        .collect();
    TensorProto {
        name: Some(name.into()),
        dims: dims.to_vec(),
        data_type: Some(data_type::FLOAT),
        raw_data: Some(vals.iter().flat_map(|v| v.to_le_bytes()).collect()),
        ..Default::default()
    }
}

fn int64s(name: &str, v: &[i64]) -> TensorProto {
    TensorProto {
        name: Some(name.into()),
        dims: vec![v.len() as i64],
        data_type: Some(data_type::INT64),
        int64_data: v.to_vec(),
        ..Default::default()
    }
}

fn value_info(name: &str, dims: &[Option<i64>]) -> ValueInfoProto {
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            tensor_type: Some(TypeProtoTensor {
                elem_type: Some(data_type::FLOAT),
                shape: Some(TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|d| Dimension {
                            value: Some(match d {
                                Some(v) => DimensionValue::DimValue(*v),
                                None => DimensionValue::DimParam("n".into()),
                            }),
                        })
                        .collect(),
                }),
            }),
        }),
    }
}

/// input [1, 3, 8, 8] -> Conv 3x3 (6) -> Relu -> shuffle (g = 3) -> GAP -> Flatten
/// -> Gemm (4 classes).
fn tiny() -> ModelProto {
    let nodes = vec![
        node(
            "conv",
            "Conv",
            &["x", "W", "B"],
            &["c"],
            vec![
                attr_ints("pads", &[1, 1, 1, 1]),
                attr_ints("kernel_shape", &[3, 3]),
            ],
        ),
        node("relu", "Relu", &["c"], &["r"], vec![]),
        node("split", "Reshape", &["r", "s5"], &["s"], vec![]),
        node(
            "swap",
            "Transpose",
            &["s"],
            &["t"],
            vec![attr_ints("perm", &[0, 2, 1, 3, 4])],
        ),
        node("merge", "Reshape", &["t", "s4"], &["m"], vec![]),
        node("gap", "GlobalAveragePool", &["m"], &["g"], vec![]),
        node("flat", "Flatten", &["g"], &["f"], vec![attr_int("axis", 1)]),
        node(
            "fc",
            "Gemm",
            &["f", "FW", "FB"],
            &["y"],
            vec![attr_int("transB", 1)],
        ),
    ];
    ModelProto {
        ir_version: Some(8),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(13),
        }],
        producer_name: Some("test".into()),
        graph: Some(GraphProto {
            name: Some("tiny".into()),
            node: nodes,
            initializer: vec![
                floats("W", &[6, 3, 3, 3], 1),
                floats("B", &[6], 2),
                int64s("s5", &[1, 3, 2, 8, 8]),
                int64s("s4", &[1, -1, 8, 8]),
                floats("FW", &[4, 6], 3),
                floats("FB", &[4], 4),
            ],
            input: vec![value_info("x", &[Some(1), Some(3), Some(8), Some(8)])],
            output: vec![value_info("y", &[Some(1), Some(4)])],
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn graph_of(m: &mut ModelProto) -> &mut GraphProto {
    m.graph.as_mut().unwrap()
}

fn node_of<'a>(m: &'a mut ModelProto, name: &str) -> &'a mut NodeProto {
    graph_of(m)
        .node
        .iter_mut()
        .find(|n| n.name.as_deref() == Some(name))
        .unwrap()
}

fn init_of<'a>(m: &'a mut ModelProto, name: &str) -> &'a mut TensorProto {
    graph_of(m)
        .initializer
        .iter_mut()
        .find(|t| t.name.as_deref() == Some(name))
        .unwrap()
}

fn import(m: &ModelProto) -> Result<Graph, OnnxError> {
    onnx::import(&m.encode_to_vec(), "test.onnx")
}

fn err(m: &ModelProto) -> OnnxError {
    match import(m) {
        Ok(_) => panic!("import succeeded"),
        Err(e) => e,
    }
}

#[test]
fn tiny_model_imports_and_runs() {
    let g = import(&tiny()).unwrap();
    assert_eq!(shuffles(&g), vec![3]);
    assert_eq!(g.input.default_size, Some((8, 8)));
    assert_eq!(g.output_name, "y");
    let kinds: Vec<&str> = g.nodes.iter().map(|n| n.op.kind()).collect();
    assert_eq!(
        kinds,
        ["Conv", "Relu", "ChannelShuffle", "GlobalAvgPool", "Fc"]
    );
    let y = reference::run(&g, 8, 8, &vec![0.5; 3 * 64]).unwrap();
    assert_eq!(y.data.len(), 4);
}

#[test]
fn truncated_protobuf_is_a_decode_error() {
    let bytes = tiny().encode_to_vec();
    // Half-way through: inside the weights.
    let e = onnx::import(&bytes[..bytes.len() / 2], "t").unwrap_err();
    assert!(matches!(e, OnnxError::Decode(_)), "{e}");
    assert!(e.to_string().contains("not a valid ONNX file"), "{e}");
    // Every proper prefix fails (most as decode errors; those cut at a field
    // boundary lack the opsets or the graph), none panics.
    for n in 0..bytes.len() {
        assert!(
            onnx::import(&bytes[..n], "t").is_err(),
            "prefix of {n} bytes"
        );
    }
}

#[test]
fn raw_data_length_disagreeing_with_dims() {
    let mut m = tiny();
    init_of(&mut m, "W")
        .raw_data
        .as_mut()
        .unwrap()
        .truncate(6 * 27 * 4 - 4);
    let e = err(&m);
    assert!(
        matches!(&e, OnnxError::Tensor { tensor, .. } if tensor == "W"),
        "{e}"
    );
    assert!(
        e.to_string()
            .contains("raw_data has 644 bytes but dims [6, 3, 3, 3] of FLOAT need 648"),
        "{e}"
    );
    let mut m = tiny();
    let b = init_of(&mut m, "B");
    b.raw_data = None;
    b.float_data = vec![0.0; 5];
    let e = err(&m);
    assert!(
        e.to_string()
            .contains("float_data holds 5 element(s) but dims [6] need 6"),
        "{e}"
    );
}

#[test]
fn conv_weight_disagreeing_with_group() {
    let mut m = tiny();
    node_of(&mut m, "conv").attribute.push(attr_int("group", 3));
    let e = err(&m);
    assert!(
        matches!(&e, OnnxError::Node { node, op, .. } if node == "conv" && op == "Conv"),
        "{e}"
    );
    assert_eq!(
        e.to_string(),
        "node 'conv' (Conv): weight of shape [6, 3, 3, 3] with group 3 needs 9 input channels, but the input has 3"
    );
}

#[test]
fn shuffle_reshape_that_does_not_divide() {
    let mut m = tiny();
    *init_of(&mut m, "s5") = int64s("s5", &[1, 4, -1, 8, 8]);
    let e = err(&m);
    assert!(
        matches!(&e, OnnxError::Node { node, op, .. } if node == "split" && op == "Reshape"),
        "{e}"
    );
    assert!(
        e.to_string()
            .contains("6 channels do not split into 4 groups"),
        "{e}"
    );
}

#[test]
fn cycle_is_reported_with_its_nodes() {
    let mut m = tiny();
    // relu now reads merge's output: relu -> split -> swap -> merge -> relu.
    node_of(&mut m, "relu").input[0] = "m".into();
    match err(&m) {
        OnnxError::Cycle { nodes } => assert_eq!(nodes, ["relu", "split", "swap", "merge"]),
        e => panic!("{e}"),
    }
}

#[test]
fn missing_initializer_names_node_and_input() {
    let mut m = tiny();
    graph_of(&mut m)
        .initializer
        .retain(|t| t.name.as_deref() != Some("W"));
    let e = err(&m);
    assert_eq!(
        e.to_string(),
        "node 'conv' (Conv): input 'W' is not produced by any node, initializer or graph input"
    );
}

#[test]
fn unsupported_op_names_node_and_op() {
    let mut m = tiny();
    node_of(&mut m, "relu").op_type = Some("LeakyRelu".into());
    let e = err(&m);
    assert!(matches!(e, OnnxError::UnsupportedOp { .. }));
    assert_eq!(
        e.to_string(),
        "node 'relu' (LeakyRelu): operator 'LeakyRelu' of domain 'ai.onnx' is not supported"
    );
    let mut m = tiny();
    node_of(&mut m, "relu").domain = Some("com.microsoft".into());
    assert!(err(&m).to_string().contains("domain 'com.microsoft'"));
}

#[test]
fn opset_out_of_range() {
    for v in [0, 8, 22] {
        let mut m = tiny();
        m.opset_import[0].version = Some(v);
        let e = err(&m);
        assert!(
            matches!(e, OnnxError::Opset { version, .. } if version == v),
            "{e}"
        );
        assert!(e.to_string().contains("supported: ai.onnx 9..=21"), "{e}");
    }
    let mut m = tiny();
    m.opset_import.clear();
    assert!(matches!(err(&m), OnnxError::Opset { version: 0, .. }));
}

#[test]
fn unsupported_attributes_are_named() {
    let mut m = tiny();
    node_of(&mut m, "conv")
        .attribute
        .push(attr_ints("dilations", &[2, 2]));
    assert_eq!(
        err(&m).to_string(),
        "node 'conv' (Conv): dilations [2, 2] not supported"
    );
    let mut m = tiny();
    node_of(&mut m, "conv")
        .attribute
        .push(attr_str("weird", "x"));
    assert_eq!(
        err(&m).to_string(),
        "node 'conv' (Conv): attribute 'weird' is not supported"
    );
}

#[test]
fn external_data_is_refused() {
    let mut m = tiny();
    let w = init_of(&mut m, "W");
    w.raw_data = None;
    w.data_location = Some(1);
    w.external_data = vec![StringStringEntryProto {
        key: Some("location".into()),
        value: Some("weights.bin".into()),
    }];
    assert!(matches!(err(&m), OnnxError::ExternalData { tensor } if tensor == "W"));
}

#[test]
fn random_bytes_and_bit_flips_never_panic() {
    let mut s = 0x9E3779B97F4A7C15u64;
    let mut next = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    for len in [1usize, 2, 7, 64, 1000, 5000] {
        for _ in 0..20 {
            let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            assert!(onnx::import(&bytes, "random").is_err());
        }
    }
    let good = tiny().encode_to_vec();
    let mut failures = 0;
    for _ in 0..2000 {
        let mut b = good.clone();
        let bit = (next() as usize) % (b.len() * 8);
        b[bit / 8] ^= 1 << (bit % 8);
        // A flip inside a weight still imports; anything else must be an error.
        match onnx::import(&b, "flipped") {
            Ok(g) => g.validate().unwrap(),
            Err(_) => failures += 1,
        }
    }
    assert!(
        failures > 100,
        "only {failures} of 2000 bit flips were refused"
    );
}

#[test]
fn clip_with_finite_max_is_refused_and_clip_zero_is_relu() {
    let mut m = tiny();
    let r = node_of(&mut m, "relu");
    r.op_type = Some("Clip".into());
    r.input = vec!["c".into(), "lo".into(), "hi".into()];
    graph_of(&mut m).initializer.push(TensorProto {
        name: Some("lo".into()),
        data_type: Some(data_type::FLOAT),
        float_data: vec![0.0],
        ..Default::default()
    });
    graph_of(&mut m).initializer.push(TensorProto {
        name: Some("hi".into()),
        data_type: Some(data_type::FLOAT),
        float_data: vec![6.0],
        ..Default::default()
    });
    let e = err(&m);
    assert!(
        e.to_string()
            .starts_with("node 'relu' (Clip): max 6 not supported"),
        "{e}"
    );
    node_of(&mut m, "relu").input.truncate(2);
    let g = import(&m).unwrap();
    assert!(g.nodes.iter().any(|n| n.op == Op::Relu));
}

#[test]
fn pad_folding_rules() {
    // Pad -> MaxPool on a Relu output folds; on a Conv output it cannot.
    let build = |src: &str| {
        let mut m = tiny();
        let g = graph_of(&mut m);
        g.node.insert(
            2,
            node(
                "pad",
                "Pad",
                &[src, "pads"],
                &["p"],
                vec![attr_str("mode", "constant")],
            ),
        );
        g.node.insert(
            3,
            node(
                "pool",
                "MaxPool",
                &["p"],
                &["q"],
                vec![
                    attr_ints("kernel_shape", &[3, 3]),
                    attr_ints("strides", &[1, 1]),
                ],
            ),
        );
        g.node[4].input[0] = "q".into();
        g.initializer
            .push(int64s("pads", &[0, 0, 1, 1, 0, 0, 1, 1]));
        m
    };
    let g = import(&build("r")).unwrap();
    let pool = g.nodes.iter().find(|n| n.name == "pool").unwrap();
    match &pool.op {
        Op::Pool(p) => assert_eq!(p.pads, shufflenet::graph::Pads::uniform(1)),
        op => panic!("{op:?}"),
    }
    let e = err(&build("c"));
    assert!(e.to_string().contains("non-negative"), "{e}");
    let mut m = build("r");
    node_of(&mut m, "pad").attribute = vec![attr_str("mode", "reflect")];
    assert!(err(&m).to_string().contains("mode 'reflect' not supported"));
}

#[test]
fn symbolic_input_size_traces_at_224() {
    let mut m = tiny();
    graph_of(&mut m).input[0] = value_info("x", &[None, Some(3), None, None]);
    *init_of(&mut m, "s5") = int64s("s5", &[0, 3, 2, -1, 224]);
    *init_of(&mut m, "s4") = int64s("s4", &[0, 6, 224, 224]);
    let g = import(&m).unwrap();
    assert_eq!(g.input.default_size, None);
    assert_eq!(shuffles(&g), vec![3]);
    // The engine graph runs at any size.
    reference::run(&g, 5, 7, &vec![0.1; 3 * 35]).unwrap();
}

#[test]
fn graph_level_errors() {
    let mut m = tiny();
    let out2 = value_info("c", &[]);
    graph_of(&mut m).output.push(out2);
    assert!(err(&m).to_string().contains("2 outputs"));

    let mut m = tiny();
    graph_of(&mut m).input[0] = value_info("x", &[Some(4), Some(3), Some(8), Some(8)]);
    assert!(err(&m).to_string().contains("batch size 4"));

    let mut m = tiny();
    m.graph = None;
    assert!(err(&m).to_string().contains("no graph"));

    let mut m = tiny();
    m.metadata_props.push(StringStringEntryProto {
        key: Some(onnx::META_MEAN.into()),
        value: Some("1,2".into()),
    });
    assert!(matches!(err(&m), OnnxError::Metadata { .. }));

    let mut m = tiny();
    node_of(&mut m, "conv")
        .attribute
        .push(attr_float("group", 1.0));
    assert!(err(&m).to_string().contains("attribute 'group' has type"));
}

#[test]
fn nodes_out_of_order_and_shared_values() {
    let mut m = tiny();
    graph_of(&mut m).node.reverse();
    let a = import(&m).unwrap();
    let b = import(&tiny()).unwrap();
    assert_eq!(a.nodes, b.nodes);
    // A value read twice: Add(relu, relu).
    let mut m = tiny();
    let g = graph_of(&mut m);
    g.node
        .insert(2, node("twice", "Add", &["r", "r"], &["rr"], vec![]));
    g.node[3].input[0] = "rr".into();
    let g = import(&m).unwrap();
    let add = g.nodes.iter().find(|n| n.name == "twice").unwrap();
    assert_eq!(add.inputs[0], add.inputs[1]);
}

#[test]
fn dropout_mask_output_is_refused_when_read() {
    let mut m = tiny();
    let g = graph_of(&mut m);
    g.node
        .insert(7, node("drop", "Dropout", &["f"], &["d", "mask"], vec![]));
    g.node[8].input[0] = "d".into();
    import(&m).unwrap();
    let g = graph_of(&mut m);
    g.node
        .push(node("use", "Add", &["d", "mask"], &["z"], vec![]));
    g.output[0].name = Some("z".into());
    let e = err(&m);
    assert!(e.to_string().contains("output #1 ('mask')"), "{e}");
}

#[test]
fn reshape_shape_computed_from_shape_slice_concat() {
    // merge's target: Concat([1, -1], Shape(r)[2:4]) = [1, -1, 8, 8].
    let mut m = tiny();
    let g = graph_of(&mut m);
    g.initializer.retain(|t| t.name.as_deref() != Some("s4"));
    g.initializer.push(int64s("head", &[1, -1]));
    g.initializer.push(int64s("from", &[2]));
    g.initializer.push(int64s("to", &[i64::MAX]));
    g.node.extend([
        node("shape", "Shape", &["r"], &["sh"], vec![]),
        node("tail", "Slice", &["sh", "from", "to"], &["hw"], vec![]),
        node(
            "cat",
            "Concat",
            &["head", "hw"],
            &["s4"],
            vec![attr_int("axis", 0)],
        ),
    ]);
    let a = import(&m).unwrap();
    assert_eq!(a.nodes, import(&tiny()).unwrap().nodes);
    // A Slice of a computed tensor is refused, naming the node.
    node_of(&mut m, "tail").input[0] = "r".into();
    let e = err(&m);
    assert!(
        e.to_string()
            .starts_with("node 'tail' (Slice): slicing a computed tensor"),
        "{e}"
    );
}

#[test]
fn corrupted_fixture_never_panics() {
    let good = std::fs::read(fixture("mix_g2_w025_64x64_op21.onnx")).unwrap();
    let mut s = 0x2545F4914F6CDD1Du64;
    let mut next = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s as usize
    };
    let mut refused = 0;
    for i in 0..300 {
        let mut b = good.clone();
        match i % 3 {
            0 => {
                let bit = next() % (b.len() * 8);
                b[bit / 8] ^= 1 << (bit % 8);
            }
            1 => {
                let at = next() % b.len();
                b[at] = next() as u8;
            }
            _ => b.truncate(next() % b.len()),
        }
        match onnx::import(&b, "corrupted") {
            Ok(g) => g.validate().unwrap(),
            Err(_) => refused += 1,
        }
    }
    // Truncations always fail; flips inside weights may import.
    assert!(refused >= 100, "{refused}");
}
