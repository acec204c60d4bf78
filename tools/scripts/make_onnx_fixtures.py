#!/usr/bin/env python3
"""Writes the ONNX import fixtures: small ShuffleNet v1 models with random weights.

Each model is built with onnx.helper in the layout a real exporter produces:

* ``pt_*``: PyTorch (torchvision-like code): Conv+BatchNormalization+Relu, channel
  shuffle as Reshape [1, g, C/g, H, W] -> Transpose [0, 2, 1, 3, 4] -> Reshape
  [1, -1, H, W] after the first 1x1 conv's ReLU, AveragePool count_include_pad=1
  on the stride-2 shortcut, GlobalAveragePool + Flatten + Gemm transB=1.
* ``authors_*``: the ShuffleNet authors' released PyTorch code: shuffle as
  Reshape [1, C/g, g, H, W] (the inverse permutation) after the depthwise conv's
  BN, ReLU on the branch only in stride-2 units, global pool as AveragePool with
  the final map's size as window, Reshape [-1, C], Gemm without bias.
* ``tf_*``: tf2onnx from Keras: NHWC input + Transpose [0, 3, 1, 2], Pad + VALID
  Conv and SAME_UPPER convs/pools (asymmetric pads at stride 2), Clip(0, inf) as
  ReLU, AveragePool count_include_pad=0, the shuffle done on NHWC views between
  Transposes, ReduceMean, MatMul + Add, Softmax.
* ``op_*``: single Conv/MaxPool/AveragePool nodes on odd sizes: asymmetric
  pads, SAME_UPPER/SAME_LOWER, ceil_mode with and without count_include_pad; the
  graph output is the NCHW map itself.
* ``mix_*``: everything else the importer must handle: nodes out of order,
  unused initializers, a symbolic batch, shapes computed with
  Shape/Gather/Unsqueeze/Concat, a shuffle with merged spatial axes, SAME_LOWER,
  ceil_mode, Pad before AveragePool and MaxPool, Gemm transB=0 with alpha/beta,
  Identity, Dropout, preprocessing metadata.

For every model NAME it writes NAME.onnx, NAME.input.npy and NAME.logits.npy (the
onnxruntime output for that input). BatchNorm statistics are calibrated on the
input with onnxruntime so activations stay near unit scale.

Usage: python3 tools/scripts/make_onnx_fixtures.py [OUT_DIR]
(default OUT_DIR: engine/tests/fixtures/onnx). Needs numpy, onnx, onnxruntime:
    pip install onnx onnxruntime numpy
"""

import math
import os
import random
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

STAGE_OUT_1X = {1: [144, 288, 576], 2: [200, 400, 800], 3: [240, 480, 960],
                4: [272, 544, 1088], 8: [384, 768, 1536]}


def arch(groups, scale):
    """The channel plan of engine/src/family.rs."""
    unit = 4 * groups
    stages = [max(1, int(math.floor(scale * c / unit + 0.5))) * unit
              for c in STAGE_OUT_1X[groups]]
    conv1 = 24 if scale == 1.5 else -(-math.ceil(24 * scale) // groups) * groups
    return conv1, stages


def window(n, k, s, p0, p1, ceil=False):
    span = n + p0 + p1 - k
    out = (-(-span // s) if ceil else span // s) + 1
    if ceil and (out - 1) * s >= n + p0:
        out -= 1
    return out


def same(n, k, s, upper=True):
    out = -(-n // s)
    total = max((out - 1) * s + k - n, 0)
    small = total // 2
    return (small, total - small) if upper else (total - small, small)


class Builder:
    def __init__(self, rng, float_data=False):
        self.rng = rng
        self.float_data = float_data
        self.nodes = []
        self.arrays = {}
        self.count = 0
        self.bn_inputs = []

    def initializers(self):
        out = []
        for name, arr in self.arrays.items():
            if not self.float_data:
                out.append(numpy_helper.from_array(arr, name))
            elif arr.dtype == np.float32:
                out.append(helper.make_tensor(name, TensorProto.FLOAT, arr.shape,
                                              arr.flatten().tolist()))
            else:
                out.append(helper.make_tensor(name, TensorProto.INT64, arr.shape,
                                              arr.flatten().tolist()))
        return out

    def name(self, base):
        self.count += 1
        return f"{base}_{self.count}"

    def init(self, base, arr):
        name = self.name(base)
        arr = np.asarray(arr)
        assert arr.dtype in (np.float32, np.int64), arr.dtype
        self.arrays[name] = arr
        return name

    def pad(self, x, pads, opset, axes=None):
        """A zero Pad; `pads` are for `axes` (default: all four axes)."""
        if axes is not None and opset < 18:
            n = len(axes)
            full = [0] * 8
            for j, a in enumerate(axes):
                full[a], full[a + 4] = pads[j], pads[j + n]
            pads, axes = full, None
        if opset < 11:
            return self.node("Pad", [x], pads=pads, mode="constant", value=0.0)
        ins = [x, self.ints("pads", pads)]
        if axes is not None:
            ins += ["", self.ints("axes", axes)]
        return self.node("Pad", ins, mode="constant")

    def ints(self, base, vals):
        return self.init(base, np.array(vals, dtype=np.int64))

    def node(self, op, inputs, outputs=1, base=None, **attrs):
        base = base or op
        nm = self.name(base)
        outs = [f"{nm}_out{i}" if i else f"{nm}_out" for i in range(outputs)]
        self.nodes.append(helper.make_node(op, inputs, outs, name=nm, **attrs))
        return outs[0] if outputs == 1 else outs

    # Layers -------------------------------------------------------------

    def conv(self, x, cin, cout, k, stride, group, pads=None, auto_pad=None, bias=False):
        fan_in = cin // group * k * k
        bound = math.sqrt(6.0 / fan_in)
        w = self.init("W", self.rng.uniform(-bound, bound, (cout, cin // group, k, k)).astype(np.float32))
        ins = [x, w]
        if bias:
            ins.append(self.init("B", self.rng.uniform(-0.1, 0.1, cout).astype(np.float32)))
        attrs = dict(kernel_shape=[k, k], strides=[stride, stride], group=group)
        if auto_pad:
            attrs["auto_pad"] = auto_pad
        else:
            attrs["pads"] = pads if pads is not None else [k // 2] * 4
            attrs["dilations"] = [1, 1]
        return self.node("Conv", ins, **attrs)

    def bn(self, x, c):
        p = [self.rng.uniform(0.7, 1.3, c), self.rng.uniform(-0.1, 0.3, c),
             np.zeros(c), np.ones(c)]
        names = [self.init(n, v.astype(np.float32)) for n, v in zip(["gamma", "beta", "mean", "var"], p)]
        self.bn_inputs.append((x, names[2], names[3]))
        return self.node("BatchNormalization", [x] + names, epsilon=1e-5)

    def relu(self, x, style, opset):
        if style != "tf":
            return self.node("Relu", [x])
        # tf2onnx: Clip(0, inf) (a ReLU6-free clip).
        if opset < 11:
            return self.node("Clip", [x], min=0.0, max=float("inf"))
        lo = self.init("clip_min", np.array(0.0, dtype=np.float32))
        if self.count % 2:
            hi = self.init("clip_max", np.array(np.inf, dtype=np.float32))
            return self.node("Clip", [x, lo, hi])
        return self.node("Clip", [x, lo])


def shuffle(b, x, c, h, w, g, style):
    """A channel shuffle in the exporter's layout."""
    if style == "pt":
        y = b.node("Reshape", [x, b.ints("shape", [1, g, c // g, h, w])])
        y = b.node("Transpose", [y], perm=[0, 2, 1, 3, 4])
        return b.node("Reshape", [y, b.ints("shape", [1, -1, h, w])])
    if style == "authors":
        y = b.node("Reshape", [x, b.ints("shape", [1, c // g, g, h, w])])
        y = b.node("Transpose", [y], perm=[0, 2, 1, 3, 4])
        return b.node("Reshape", [y, b.ints("shape", [1, c, h, w])])
    if style == "tf":
        y = b.node("Transpose", [x], perm=[0, 2, 3, 1])
        y = b.node("Reshape", [y, b.ints("shape", [-1, h, w, g, c // g])])
        y = b.node("Transpose", [y], perm=[0, 1, 2, 4, 3])
        y = b.node("Reshape", [y, b.ints("shape", [-1, h, w, c])])
        return b.node("Transpose", [y], perm=[0, 3, 1, 2])
    # mix: shapes computed from Shape like a dynamic-axes export, merged H*W.
    shp = b.node("Shape", [x])
    n = b.node("Gather", [shp, b.init("idx", np.array(0, dtype=np.int64))], axis=0)
    n = b.node("Unsqueeze", [n, b.ints("axes", [0])])
    tgt = b.node("Concat", [n, b.ints("dims", [g, c // g, h * w])], axis=0)
    y = b.node("Reshape", [x, tgt])
    y = b.node("Transpose", [y], perm=[0, 2, 1, 3])
    back = b.node("Concat", [n, b.ints("dims", [-1, h, w])], axis=0)
    return b.node("Reshape", [y, back])


def avgpool_shortcut(b, x, h, w, style):
    if style == "tf":
        y = b.node("AveragePool", [x], kernel_shape=[3, 3], strides=[2, 2],
                   auto_pad="SAME_UPPER", count_include_pad=0)
        ph, pw = same(h, 3, 2), same(w, 3, 2)
        return y, window(h, 3, 2, *ph), window(w, 3, 2, *pw)
    if style == "mix":
        # Pad + AveragePool(count_include_pad=0) == count_include_pad=1.
        p = b.pad(x, [1, 1, 1, 1], 21, axes=[2, 3])
        y = b.node("AveragePool", [p], kernel_shape=[3, 3], strides=[2, 2])
        return y, window(h, 3, 2, 1, 1), window(w, 3, 2, 1, 1)
    y = b.node("AveragePool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
               count_include_pad=1)
    return y, window(h, 3, 2, 1, 1), window(w, 3, 2, 1, 1)


def dwconv(b, x, c, h, w, stride, style):
    if style == "tf":
        y = b.conv(x, c, c, 3, stride, c, auto_pad="SAME_UPPER")
        ph, pw = same(h, 3, stride), same(w, 3, stride)
        return y, window(h, 3, stride, *ph), window(w, 3, stride, *pw)
    if style == "mix" and stride == 2:
        y = b.conv(x, c, c, 3, stride, c, auto_pad="SAME_LOWER")
        ph, pw = same(h, 3, stride, False), same(w, 3, stride, False)
        return y, window(h, 3, stride, *ph), window(w, 3, stride, *pw)
    y = b.conv(x, c, c, 3, stride, c)
    return y, window(h, 3, stride, 1, 1), window(w, 3, stride, 1, 1)


def unit(b, x, cin, cout, h, w, stride, g, first_g, style, opset):
    mid = cout // 4
    branch_out = cout - cin if stride == 2 else cout
    y = b.relu(b.bn(b.conv(x, cin, mid, 1, 1, first_g, pads=[0, 0, 0, 0]), mid), style, opset)
    if g > 1 and style != "authors":
        y = shuffle(b, y, mid, h, w, g, style)
    y, oh, ow = dwconv(b, y, mid, h, w, stride, style)
    y = b.bn(y, mid)
    if g > 1 and style == "authors":
        y = shuffle(b, y, mid, oh, ow, g, style)
    y = b.bn(b.conv(y, mid, branch_out, 1, 1, g, pads=[0, 0, 0, 0]), branch_out)
    if stride == 1:
        return b.relu(b.node("Add", [x, y]), style, opset), oh, ow
    s, sh, sw = avgpool_shortcut(b, x, h, w, style)
    assert (sh, sw) == (oh, ow), (sh, sw, oh, ow)
    if style == "authors":
        return b.node("Concat", [s, b.relu(y, style, opset)], axis=1), oh, ow
    return b.relu(b.node("Concat", [s, y], axis=1), style, opset), oh, ow


def build(spec):
    style, g, scale, (H, W), opset = spec["style"], spec["groups"], spec["scale"], spec["size"], spec["opset"]
    repeats = spec.get("repeats", [3, 7, 3])
    classes = spec.get("classes", 100)
    rng = np.random.default_rng(spec["seed"])
    b = Builder(rng, spec.get("float_data", False))
    conv1, stages = arch(g, scale)
    nhwc = style == "tf"
    x = "image"
    if nhwc:
        x = b.node("Transpose", [x], perm=[0, 3, 1, 2])
    # conv1
    if style == "tf":
        x = b.pad(x, [0, 0, 1, 1, 0, 0, 1, 1], opset)
        x = b.conv(x, 3, conv1, 3, 2, 1, pads=[0, 0, 0, 0], bias=True)
    else:
        x = b.conv(x, 3, conv1, 3, 2, 1)
    h, w = window(H, 3, 2, 1, 1), window(W, 3, 2, 1, 1)
    x = b.relu(b.bn(x, conv1), style, opset)
    # maxpool
    if style == "tf" and opset >= 18:
        x = b.pad(x, [1, 1, 1, 1], opset, axes=[2, 3])
        x = b.node("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2])
        h, w = window(h, 3, 2, 1, 1), window(w, 3, 2, 1, 1)
    elif style == "tf":
        x = b.node("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER")
        ph, pw = same(h, 3, 2), same(w, 3, 2)
        h, w = window(h, 3, 2, *ph), window(w, 3, 2, *pw)
    elif style == "mix":
        x = b.node("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)
        h, w = window(h, 3, 2, 0, 0, True), window(w, 3, 2, 0, 0, True)
    else:
        x = b.node("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
        h, w = window(h, 3, 2, 1, 1), window(w, 3, 2, 1, 1)
    c = conv1
    for si, (cout, rep) in enumerate(zip(stages, repeats)):
        x, h, w = unit(b, x, c, cout, h, w, 2, g, 1 if si == 0 else g, style, opset)
        c = cout
        for _ in range(rep):
            x, h, w = unit(b, x, c, c, h, w, 1, g, g, style, opset)
    # head
    fc_w = rng.uniform(-1 / math.sqrt(c), 1 / math.sqrt(c), (classes, c)).astype(np.float32)
    fc_b = rng.uniform(-0.01, 0.01, classes).astype(np.float32)
    if style == "pt":
        x = b.node("GlobalAveragePool", [x])
        x = b.node("Flatten", [x], axis=1)
        if spec.get("dropout"):
            x = b.node("Dropout", [x]) if opset >= 12 else b.node("Dropout", [x], ratio=0.2)
        x = b.node("Gemm", [x, b.init("fc_w", fc_w), b.init("fc_b", fc_b)], transB=1)
    elif style == "authors":
        x = b.node("AveragePool", [x], kernel_shape=[h, w])
        x = b.node("Reshape", [x, b.ints("shape", [-1, c])])
        x = b.node("Gemm", [x, b.init("fc_w", fc_w)], transB=1)
    elif style == "tf":
        if opset >= 18:
            x = b.node("Transpose", [x], perm=[0, 2, 3, 1])
            x = b.node("ReduceMean", [x, b.ints("axes", [1, 2])], keepdims=0)
        else:
            x = b.node("ReduceMean", [x], axes=[2, 3], keepdims=0)
        x = b.node("MatMul", [x, b.init("fc_w", fc_w.T.copy())])
        x = b.node("Add", [x, b.init("fc_b", fc_b)])
        x = b.node("Softmax", [x], axis=-1)
    else:
        x = b.node("ReduceMean", [x, b.ints("axes", [2, 3])] if opset >= 18 else [x],
                   **({} if opset >= 18 else {"axes": [2, 3]}), keepdims=1)
        x = b.node("Squeeze", [x, b.ints("axes", [2, 3])] if opset >= 13 else [x],
                   **({} if opset >= 13 else {"axes": [2, 3]}))
        x = b.node("Identity", [x])
        x = b.node("Gemm", [x, b.init("fc_w", fc_w.T.copy()), b.init("fc_b", fc_b)],
                   transB=0, alpha=0.5, beta=2.0)
        x = b.node("Dropout", [x])
        x = b.node("Softmax", [x], axis=1)
        # An initializer nobody reads.
        b.init("unused", rng.standard_normal(7).astype(np.float32))
    return b, x, nhwc, c


def finish_model(b, spec, nhwc, shuffled=True):
    H, W = spec["size"]
    batch = "N" if spec["style"] == "mix" else 1
    shape = [batch, H, W, 3] if nhwc else [batch, 3, H, W]
    inp = helper.make_tensor_value_info("image", TensorProto.FLOAT, shape)
    classes = spec.get("classes", 100)
    outp = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, classes])
    nodes = list(b.nodes)
    # The last node writes the graph output "logits".
    nodes[-1].output[0] = "logits"
    if spec["style"] == "mix" and shuffled:
        random.Random(spec["seed"]).shuffle(nodes)
    graph = helper.make_graph(nodes, spec["name"], [inp], [outp], initializer=b.initializers())
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", spec["opset"])],
                              producer_name=spec["producer"])
    model.ir_version = min(model.ir_version, 10)
    if spec.get("metadata"):
        for k, v in spec["metadata"].items():
            e = model.metadata_props.add()
            e.key, e.value = k, v
    return model


def run(model, x, extra=()):
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for name in extra:
        m.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return sess.run(None, {"image": x})


def calibrate(b, spec, nhwc, x):
    """Sets each BatchNorm's statistics to those of its input on `x`, one BN at a
    time in order (each BN's input depends on the BNs before it)."""
    for k, (name, mean_n, var_n) in enumerate(b.bn_inputs):
        model = finish_model(b, spec, nhwc)
        t = run(model, x, [name])[1]
        axes = (0, 2, 3) if t.ndim == 4 else (0,)
        b.arrays[mean_n] = t.mean(axis=axes).astype(np.float32)
        b.arrays[var_n] = (t.var(axis=axes) + 1.0).astype(np.float32)


SPECS = [
    dict(name="pt_g3_w025_64x64_op13", style="pt", groups=3, scale=0.25, size=(64, 64),
         opset=13, seed=1, producer="pytorch"),
    dict(name="pt_g8_w05_96x128_op9", style="pt", groups=8, scale=0.5, size=(96, 128),
         opset=9, seed=2, producer="pytorch", repeats=[1, 1, 1], classes=10),
    dict(name="pt_g1_w025_96x128_op18_floatdata", style="pt", groups=1, scale=0.25,
         size=(96, 128), opset=18, seed=3, producer="pytorch", float_data=True, dropout=True,
         repeats=[1, 3, 1]),
    dict(name="authors_g3_w05_64x64_op11", style="authors", groups=3, scale=0.5, size=(64, 64),
         opset=11, seed=4, producer="pytorch", repeats=[1, 1, 1], classes=10),
    dict(name="authors_g8_w025_96x128_op21", style="authors", groups=8, scale=0.25,
         size=(96, 128), opset=21, seed=5, producer="pytorch", repeats=[2, 3, 2]),
    dict(name="tf_g3_w025_96x128_op13_nhwc", style="tf", groups=3, scale=0.25, size=(96, 128),
         opset=13, seed=6, producer="tf2onnx"),
    dict(name="tf_g8_w05_64x64_op18_nhwc", style="tf", groups=8, scale=0.5, size=(64, 64),
         opset=18, seed=7, producer="tf2onnx", repeats=[1, 1, 1], classes=10),
    dict(name="mix_g2_w025_64x64_op21", style="mix", groups=2, scale=0.25, size=(64, 64),
         opset=21, seed=8, producer="hand", repeats=[1, 2, 1],
         metadata={"shufflenet.mean": "123.675,116.28,103.53",
                   "shufflenet.scale": "0.017125,0.017507,0.017429"}),
]


# Single-op models for the window edge cases (output: the NCHW map itself).
OP_SPECS = [
    dict(name="op_avgpool_ceil_cip1", shape=(1, 4, 9, 10), opset=19,
         node=("AveragePool", dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 0, 0, 2],
                                   ceil_mode=1, count_include_pad=1))),
    dict(name="op_avgpool_ceil_cip0", shape=(1, 4, 9, 10), opset=19,
         node=("AveragePool", dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 0, 0, 2],
                                   ceil_mode=1, count_include_pad=0))),
    dict(name="op_avgpool_same_upper_cip0", shape=(1, 3, 7, 8), opset=11,
         node=("AveragePool", dict(kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER"))),
    dict(name="op_maxpool_same_lower", shape=(1, 3, 7, 8), opset=12,
         node=("MaxPool", dict(kernel_shape=[3, 2], strides=[2, 2], auto_pad="SAME_LOWER"))),
    dict(name="op_maxpool_ceil", shape=(1, 2, 8, 11), opset=10,
         node=("MaxPool", dict(kernel_shape=[3, 3], strides=[2, 3], pads=[0, 1, 1, 0],
                               ceil_mode=1))),
    dict(name="op_conv_group_asym_bias", shape=(1, 4, 9, 7), opset=11,
         node=("Conv", dict(kernel_shape=[3, 2], strides=[2, 1], pads=[0, 1, 2, 0], group=2)),
         weight=(6, 2, 3, 2), bias=True),
    dict(name="op_conv_same_upper_s2", shape=(1, 3, 8, 9), opset=9,
         node=("Conv", dict(kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER")),
         weight=(5, 3, 3, 3), bias=False),
]


def build_op(spec):
    rng = np.random.default_rng(sum(map(ord, spec["name"])))
    op, attrs = spec["node"]
    inits, ins = [], ["image"]
    if "weight" in spec:
        w = rng.uniform(-0.5, 0.5, spec["weight"]).astype(np.float32)
        inits.append(numpy_helper.from_array(w, "W"))
        ins.append("W")
        if spec["bias"]:
            inits.append(numpy_helper.from_array(
                rng.uniform(-0.5, 0.5, spec["weight"][0]).astype(np.float32), "B"))
            ins.append("B")
    node = helper.make_node(op, ins, ["logits"], name=op.lower(), **attrs)
    graph = helper.make_graph(
        [node], spec["name"],
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, list(spec["shape"]))],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, None)], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", spec["opset"])],
                              producer_name="hand")
    model.ir_version = min(model.ir_version, 10)
    x = rng.standard_normal(spec["shape"]).astype(np.float32)
    return model, x


def main():
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "engine", "tests", "fixtures", "onnx")
    os.makedirs(out_dir, exist_ok=True)
    total = 0
    for spec in SPECS:
        b, _, nhwc, _ = build(spec)
        H, W = spec["size"]
        rng = np.random.default_rng(1000 + spec["seed"])
        x = rng.standard_normal((1, H, W, 3) if nhwc else (1, 3, H, W)).astype(np.float32)
        calibrate(b, spec, nhwc, x)
        # The checker wants sorted nodes; the mix model's are shuffled afterwards.
        onnx.checker.check_model(finish_model(b, spec, nhwc, False), full_check=True)
        model = finish_model(b, spec, nhwc)
        (logits,) = run(model, x)
        base = os.path.join(out_dir, spec["name"])
        onnx.save(model, base + ".onnx")
        np.save(base + ".input.npy", x)
        np.save(base + ".logits.npy", logits.astype(np.float32))
        size = sum(os.path.getsize(base + e) for e in (".onnx", ".input.npy", ".logits.npy"))
        total += size
        print(f"{spec['name']}: {len(model.graph.node)} nodes, logits {logits.shape}, "
              f"max |logit| {np.abs(logits).max():.4g}, {size / 1024:.0f} KiB")
    for spec in OP_SPECS:
        model, x = build_op(spec)
        (y,) = run(model, x)
        out_type = model.graph.output[0].type.tensor_type
        for d in y.shape:
            out_type.shape.dim.add().dim_value = d
        # No full_check: onnx's shape inference keeps a ceil_mode window that starts
        # in the end padding, which onnxruntime (like PyTorch and the engine) drops.
        onnx.checker.check_model(model)
        base = os.path.join(out_dir, spec["name"])
        onnx.save(model, base + ".onnx")
        np.save(base + ".input.npy", x)
        np.save(base + ".logits.npy", y.astype(np.float32))
        total += sum(os.path.getsize(base + e) for e in (".onnx", ".input.npy", ".logits.npy"))
        print(f"{spec['name']}: {x.shape} -> {y.shape}")
    print(f"total {total / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
