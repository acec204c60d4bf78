//! Writes the committed seed corpus of the fuzz targets into `tools/fuzz/seeds/`:
//! `cargo run --manifest-path tools/fuzz/Cargo.toml --example gen_seeds`.
//!
//! - `model_file/`: small model files (a miniature ShuffleNet with every fused step
//!   kind of the family, the tiny ONNX model below, a one-step program), each once
//!   as is (mode byte 0) and once in the fix-up-the-checksum mode (mode byte 1);
//! - `onnx_import/`: a miniature ShuffleNet in ONNX (NCHW, opset 13), an NHWC
//!   tf2onnx-style model, and the single-operator fixtures of the engine's tests;
//! - `npy/`: `.npy` arrays in format versions 1, 2 and 3, a scalar and an empty one;
//! - `session/`: a few byte strings (the target decodes them with `arbitrary`).

use kernels::PoolKind;
use prost::Message;
use shufflenet::graph::{
    BatchNorm, Conv, Fc, GraphBuilder, InputSpec, Layout, Op, Pads, PoolSpec, Preprocess,
};
use shufflenet::onnx::proto::{
    attribute_type, data_type, AttributeProto, Dimension, DimensionValue, GraphProto, ModelProto,
    NodeProto, OperatorSetIdProto, TensorProto, TensorShapeProto, TypeProto, TypeProtoTensor,
    ValueInfoProto,
};
use shufflenet::program::{BufferDecl, LoweredModel, Program, Step, TensorData, View};
use shufflenet::{model_file, npy, onnx, plan};
use std::fs;
use std::path::{Path, PathBuf};

fn vals(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s % 1000) as f32 / 1000.0 - 0.5
        })
        .collect()
}

// ------------------------------------------------------------------ engine graph

fn conv(cin: usize, cout: usize, groups: usize, k: usize, stride: usize, seed: u32) -> Op {
    Op::Conv(Conv {
        cin,
        cout,
        groups,
        kh: k,
        kw: k,
        stride: (stride, stride),
        pads: Pads::uniform(k / 2),
        weight: vals(cout * cin / groups * k * k, seed),
        bias: None,
    })
}

fn bn(c: usize, seed: u32) -> Op {
    Op::BatchNorm(BatchNorm {
        gamma: vals(c, seed).iter().map(|v| v + 1.0).collect(),
        beta: vals(c, seed + 1),
        mean: vals(c, seed + 2),
        var: vals(c, seed + 3).iter().map(|v| v + 1.0).collect(),
        eps: 1e-5,
    })
}

fn pool(kind: PoolKind) -> Op {
    Op::Pool(PoolSpec {
        kind,
        kh: 3,
        kw: 3,
        stride: (2, 2),
        pads: Pads::uniform(1),
        ceil_mode: false,
    })
}

/// A miniature ShuffleNet (g = 3): stem, max pool, a stride-2 unit (concat), a
/// stride-1 unit (residual), global pool and classifier. Lowered, it uses the
/// conv, pool, pointwise (with shuffle table and in-place residual), depthwise
/// (both strides), zero-copy concat and gap_fc steps.
fn mini_shufflenet() -> LoweredModel {
    let mut b = GraphBuilder::new(
        "mini ShuffleNet (fuzz seed)",
        InputSpec {
            channels: 3,
            layout: Layout::Nchw,
            default_size: Some((16, 16)),
            preprocess: Some(Preprocess {
                mean: vec![123.675, 116.28, 103.53],
                scale: vec![0.017, 0.0175, 0.0174],
            }),
        },
    );
    let x = b.input();
    let x = b.push("conv1", conv(3, 6, 1, 3, 2, 1), &[x], 6);
    let x = b.push("bn1", bn(6, 10), &[x], 6);
    let x = b.push("relu1", Op::Relu, &[x], 6);
    let x = b.push("maxpool", pool(PoolKind::Max), &[x], 6);
    // Stride-2 unit.
    let y = b.push("s2.g1", conv(6, 6, 3, 1, 1, 2), &[x], 6);
    let y = b.push("s2.bn1", bn(6, 20), &[y], 6);
    let y = b.push("s2.relu", Op::Relu, &[y], 6);
    let y = b.push("s2.shuffle", Op::ChannelShuffle { groups: 3 }, &[y], 6);
    let y = b.push("s2.dw", conv(6, 6, 6, 3, 2, 3), &[y], 6);
    let y = b.push("s2.bn2", bn(6, 30), &[y], 6);
    let y = b.push("s2.g2", conv(6, 6, 3, 1, 1, 4), &[y], 6);
    let y = b.push("s2.bn3", bn(6, 40), &[y], 6);
    let avg = PoolKind::Avg {
        count_include_pad: true,
    };
    let s = b.push("s2.avg", pool(avg), &[x], 6);
    let x = b.push("s2.concat", Op::Concat, &[s, y], 12);
    let x = b.push("s2.out", Op::Relu, &[x], 12);
    // Stride-1 unit.
    let y = b.push("s1.g1", conv(12, 6, 3, 1, 1, 5), &[x], 6);
    let y = b.push("s1.bn1", bn(6, 50), &[y], 6);
    let y = b.push("s1.relu", Op::Relu, &[y], 6);
    let y = b.push("s1.shuffle", Op::ChannelShuffle { groups: 3 }, &[y], 6);
    let y = b.push("s1.dw", conv(6, 6, 6, 3, 1, 6), &[y], 6);
    let y = b.push("s1.bn2", bn(6, 60), &[y], 6);
    let y = b.push("s1.g2", conv(6, 12, 3, 1, 1, 7), &[y], 12);
    let y = b.push("s1.bn3", bn(12, 70), &[y], 12);
    let x = b.push("s1.add", Op::Add, &[x, y], 12);
    let x = b.push("s1.out", Op::Relu, &[x], 12);
    let x = b.push("gap", Op::GlobalAvgPool, &[x], 12);
    let x = b.push(
        "fc",
        Op::Fc(Fc {
            inputs: 12,
            outputs: 5,
            weight: vals(60, 8),
            bias: vals(5, 9),
        }),
        &[x],
        5,
    );
    let x = b.push("softmax", Op::Softmax, &[x], 5);
    let graph = b.finish(x, "probs").expect("valid graph");
    plan::lower(&graph).expect("lowers")
}

/// One permute step, NHWC input, no options.
fn one_step() -> LoweredModel {
    let v = |buffer, channels| View {
        buffer,
        offset: 0,
        channels,
    };
    LoweredModel {
        program: Program {
            description: String::new(),
            input: InputSpec {
                channels: 2,
                layout: Layout::Nhwc,
                default_size: None,
                preprocess: None,
            },
            output_name: "y".into(),
            buffers: vec![BufferDecl { channels: 2 }, BufferDecl { channels: 2 }],
            steps: vec![Step::Permute {
                table: 0,
                input: v(0, 2),
                output: v(1, 2),
            }],
            output: v(1, 2),
        },
        tensors: vec![TensorData::U32(vec![1, 0])],
    }
}

// ------------------------------------------------------------------ ONNX

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

fn node(op: &str, ins: &[&str], out: &str, attrs: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        name: Some(format!("{op}_{out}")),
        op_type: Some(op.into()),
        input: ins.iter().map(|s| s.to_string()).collect(),
        output: vec![out.to_string()],
        attribute: attrs,
        ..Default::default()
    }
}

fn floats(name: &str, dims: &[i64], seed: u32, offset: f32) -> TensorProto {
    let n = dims.iter().product::<i64>() as usize;
    let v: Vec<f32> = vals(n, seed).iter().map(|x| x + offset).collect();
    TensorProto {
        name: Some(name.into()),
        dims: dims.to_vec(),
        data_type: Some(data_type::FLOAT),
        raw_data: Some(v.iter().flat_map(|x| x.to_le_bytes()).collect()),
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

fn value_info(name: &str, dims: &[i64]) -> ValueInfoProto {
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

fn model(nodes: Vec<NodeProto>, inits: Vec<TensorProto>, input: &[i64], out: &[i64]) -> Vec<u8> {
    ModelProto {
        ir_version: Some(8),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(13),
        }],
        producer_name: Some("gen_seeds".into()),
        graph: Some(GraphProto {
            name: Some("seed".into()),
            node: nodes,
            initializer: inits,
            input: vec![value_info("x", input)],
            output: vec![value_info("y", out)],
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec()
}

fn bn_node(x: &str, p: &str, out: &str) -> NodeProto {
    let names = [
        p.to_string() + ".g",
        p.to_string() + ".b",
        p.to_string() + ".m",
        p.to_string() + ".v",
    ];
    let ins: Vec<&str> = std::iter::once(x)
        .chain(names.iter().map(|s| s.as_str()))
        .collect();
    node("BatchNormalization", &ins, out, vec![])
}

fn bn_inits(p: &str, c: i64, seed: u32) -> Vec<TensorProto> {
    vec![
        floats(&format!("{p}.g"), &[c], seed, 1.0),
        floats(&format!("{p}.b"), &[c], seed + 1, 0.0),
        floats(&format!("{p}.m"), &[c], seed + 2, 0.0),
        floats(&format!("{p}.v"), &[c], seed + 3, 1.0),
    ]
}

/// The same miniature ShuffleNet as [`mini_shufflenet`], as PyTorch would export
/// it: BatchNormalization nodes, Reshape-Transpose-Reshape shuffles, Gemm, Softmax.
fn onnx_mini_shufflenet() -> Vec<u8> {
    let conv = |x: &str, w: &str, out: &str, group: i64, k: i64, stride: i64| {
        let p = k / 2;
        node(
            "Conv",
            &[x, w],
            out,
            vec![
                attr_ints("kernel_shape", &[k, k]),
                attr_ints("strides", &[stride, stride]),
                attr_ints("pads", &[p, p, p, p]),
                attr_int("group", group),
            ],
        )
    };
    let pool = |op: &str, x: &str, out: &str| {
        node(
            op,
            &[x],
            out,
            vec![
                attr_ints("kernel_shape", &[3, 3]),
                attr_ints("strides", &[2, 2]),
                attr_ints("pads", &[1, 1, 1, 1]),
            ],
        )
    };
    let nodes = vec![
        conv("x", "w1", "c1", 1, 3, 2),
        bn_node("c1", "bn1", "b1"),
        node("Relu", &["b1"], "r1", vec![]),
        pool("MaxPool", "r1", "p"),
        conv("p", "a.w1", "a1", 3, 1, 1),
        bn_node("a1", "a.bn1", "a2"),
        node("Relu", &["a2"], "a3", vec![]),
        node("Reshape", &["a3", "split2"], "a4", vec![]),
        node(
            "Transpose",
            &["a4"],
            "a5",
            vec![attr_ints("perm", &[0, 2, 1, 3, 4])],
        ),
        node("Reshape", &["a5", "merge2"], "a6", vec![]),
        conv("a6", "a.dw", "a7", 6, 3, 2),
        bn_node("a7", "a.bn2", "a8"),
        conv("a8", "a.w2", "a9", 3, 1, 1),
        bn_node("a9", "a.bn3", "a10"),
        pool("AveragePool", "p", "s"),
        node("Concat", &["s", "a10"], "cat", vec![attr_int("axis", 1)]),
        node("Relu", &["cat"], "u1", vec![]),
        conv("u1", "b.w1", "b1_", 3, 1, 1),
        bn_node("b1_", "b.bn1", "b2"),
        node("Relu", &["b2"], "b3", vec![]),
        node("Reshape", &["b3", "split1"], "b4", vec![]),
        node(
            "Transpose",
            &["b4"],
            "b5",
            vec![attr_ints("perm", &[0, 2, 1, 3, 4])],
        ),
        node("Reshape", &["b5", "merge1"], "b6", vec![]),
        conv("b6", "b.dw", "b7", 6, 3, 1),
        bn_node("b7", "b.bn2", "b8"),
        conv("b8", "b.w2", "b9", 3, 1, 1),
        bn_node("b9", "b.bn3", "b10"),
        node("Add", &["u1", "b10"], "sum", vec![]),
        node("Relu", &["sum"], "u2", vec![]),
        node("GlobalAveragePool", &["u2"], "gap", vec![]),
        node("Flatten", &["gap"], "flat", vec![attr_int("axis", 1)]),
        node(
            "Gemm",
            &["flat", "fc.w", "fc.b"],
            "logits",
            vec![attr_int("transB", 1)],
        ),
        node("Softmax", &["logits"], "y", vec![attr_int("axis", 1)]),
    ];
    let mut inits = vec![
        floats("w1", &[6, 3, 3, 3], 1, 0.0),
        floats("a.w1", &[6, 2, 1, 1], 2, 0.0),
        floats("a.dw", &[6, 1, 3, 3], 3, 0.0),
        floats("a.w2", &[6, 2, 1, 1], 4, 0.0),
        floats("b.w1", &[6, 4, 1, 1], 5, 0.0),
        floats("b.dw", &[6, 1, 3, 3], 6, 0.0),
        floats("b.w2", &[12, 2, 1, 1], 7, 0.0),
        floats("fc.w", &[5, 12], 8, 0.0),
        floats("fc.b", &[5], 9, 0.0),
        int64s("split2", &[1, 3, 2, 4, 4]),
        int64s("merge2", &[1, -1, 4, 4]),
        int64s("split1", &[1, 3, 2, 2, 2]),
        int64s("merge1", &[1, 6, 2, 2]),
    ];
    for (p, c, s) in [
        ("bn1", 6, 10),
        ("a.bn1", 6, 20),
        ("a.bn2", 6, 30),
        ("a.bn3", 6, 40),
        ("b.bn1", 6, 50),
        ("b.bn2", 6, 60),
        ("b.bn3", 12, 70),
    ] {
        inits.extend(bn_inits(p, c, s));
    }
    model(nodes, inits, &[1, 3, 16, 16], &[1, 5])
}

/// A tf2onnx-style NHWC model: Transpose of the input, Conv, Relu, ReduceMean over
/// H and W, MatMul and a bias Add.
fn onnx_nhwc() -> Vec<u8> {
    let nodes = vec![
        node(
            "Transpose",
            &["x"],
            "t",
            vec![attr_ints("perm", &[0, 3, 1, 2])],
        ),
        node(
            "Conv",
            &["t", "w", "b"],
            "c",
            vec![
                attr_ints("kernel_shape", &[3, 3]),
                attr_ints("pads", &[1, 1, 1, 1]),
            ],
        ),
        node("Relu", &["c"], "r", vec![]),
        node(
            "ReduceMean",
            &["r"],
            "m",
            vec![attr_ints("axes", &[2, 3]), attr_int("keepdims", 0)],
        ),
        node("MatMul", &["m", "fw"], "mm", vec![]),
        node("Add", &["mm", "fb"], "y", vec![]),
    ];
    let inits = vec![
        floats("w", &[4, 3, 3, 3], 1, 0.0),
        floats("b", &[4], 2, 0.0),
        floats("fw", &[4, 5], 3, 0.0),
        floats("fb", &[5], 4, 0.0),
    ];
    model(nodes, inits, &[1, 8, 8, 3], &[1, 5])
}

// ------------------------------------------------------------------ npy

fn npy_with(version: u8, header: &str, body: &[u8]) -> Vec<u8> {
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

// ------------------------------------------------------------------ main

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    fs::create_dir_all(dir).expect("mkdir");
    fs::write(dir.join(name), bytes).expect("write seed");
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let seeds = root.join("seeds");
    let _ = fs::remove_dir_all(&seeds);

    let onnx_mini = onnx_mini_shufflenet();
    let onnx_nhwc = onnx_nhwc();
    for (name, bytes) in [
        ("mini_shufflenet.onnx", &onnx_mini),
        ("nhwc.onnx", &onnx_nhwc),
    ] {
        let graph = onnx::import(bytes, name).unwrap_or_else(|e| panic!("{name}: {e}"));
        plan::lower(&graph).unwrap_or_else(|e| panic!("{name}: {e}"));
        write(&seeds.join("onnx_import"), name, bytes);
    }
    let fixtures = root.join("../../engine/tests/fixtures/onnx");
    let mut ops: Vec<PathBuf> = fs::read_dir(&fixtures)
        .expect("fixtures")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            let n = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            n.starts_with("op_") && n.ends_with(".onnx")
        })
        .collect();
    ops.sort();
    for p in ops {
        let name = p.file_name().expect("name").to_string_lossy().into_owned();
        write(
            &seeds.join("onnx_import"),
            &name,
            &fs::read(&p).expect("read fixture"),
        );
    }

    let from_onnx =
        plan::lower(&onnx::import(&onnx_nhwc, "nhwc.onnx").expect("imports")).expect("lowers");
    for (name, m) in [
        ("mini_shufflenet", mini_shufflenet()),
        ("nhwc_from_onnx", from_onnx),
        ("one_step", one_step()),
    ] {
        let file = model_file::to_bytes(&m).expect("encodes");
        for mode in [0u8, 1] {
            let mut seed = vec![mode];
            seed.extend_from_slice(&file);
            write(
                &seeds.join("model_file"),
                &format!("{name}.{mode}.snm"),
                &seed,
            );
        }
    }

    let npy_dir = seeds.join("npy");
    let data: Vec<f32> = vals(12, 1);
    write(&npy_dir, "v1_2x3x2.npy", &npy::to_bytes(&[2, 3, 2], &data));
    write(
        &npy_dir,
        "v1_logits.npy",
        &npy::to_bytes(&[1, 5], &data[..5]),
    );
    let body: Vec<u8> = data[..4].iter().flat_map(|v| v.to_le_bytes()).collect();
    let h = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }\n";
    write(&npy_dir, "v2.npy", &npy_with(2, h, &body));
    write(&npy_dir, "v3.npy", &npy_with(3, h, &body));
    let scalar = "{'descr': '<f4', 'fortran_order': False, 'shape': (), }\n";
    write(&npy_dir, "scalar.npy", &npy_with(1, scalar, &body[..4]));
    let empty = "{'descr': '<f4', 'fortran_order': False, 'shape': (0, 3), }\n";
    write(&npy_dir, "empty.npy", &npy_with(1, empty, &[]));

    let session = seeds.join("session");
    write(&session, "zeros", &[0; 32]);
    write(
        &session,
        "small_sizes",
        &[0, 17, 0, 23, 0, 1, 0, 0, 0, 0, 0, 0],
    );
    let mut nan = vec![0, 9, 0, 9, 0, 1, 0, 0, 0, 8];
    nan.extend_from_slice(&f32::NAN.to_le_bytes());
    nan.extend_from_slice(&f32::INFINITY.to_le_bytes());
    write(&session, "nan_inf", &nan);
    write(
        &session,
        "huge",
        &[2, 13, 2, 7, 1, 255, 255, 255, 255, 255, 255, 255, 255],
    );
    println!("seeds written to {}", seeds.display());
}
