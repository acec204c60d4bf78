#!/usr/bin/env python3
"""Times the engine against onnxruntime on the same ONNX files: full-width
ShuffleNet v1 g=3 at 0.5x, 1x and 2x, at 224x224, 480x640 and 720x1280.

The models are built by make_onnx_fixtures.py's builder in the PyTorch export
layout (Conv + BatchNormalization + Relu, Reshape/Transpose/Reshape shuffle,
AveragePool shortcut, GlobalAveragePool + Flatten + Gemm, 1000 classes), with
random weights, one file per model and resolution (the shuffle's Reshape holds
the map size). They go to a temporary directory (or --out DIR), never into the
repository.

Each file is converted once with `shufflenet convert`, checked (the engine's
logits against onnxruntime's on one input), then timed:

* the engine with `shufflenet bench FILE --resolutions HxW --runs R --json`
  (one thread; each call prints the median and the minimum of its R runs);
* onnxruntime with one intra-op thread, one inter-op thread, sequential
  execution, ORT_ENABLE_ALL graph optimisations, input and output bound once
  (io_binding), R runs per batch.

Batches alternate: per round, for each model, one engine batch and one
onnxruntime batch (the order flips every round), so both see the same machine
load. Reported per model and resolution: the median over rounds of the batch
medians (and the minimum over all runs) for both, the ratio engine/onnxruntime,
GFLOP/s (2 FLOPs per multiply-add, the engine's count for both), the
instruction set, and per resolution E = GFLOP/s(0.5x) / GFLOP/s(2x) for both.

Usage:
    pip install onnx onnxruntime numpy
    cargo build --release -p tools
    python3 tools/scripts/compare_onnxruntime.py [--rounds 10] [--runs 10]
        [--resolutions 224x224,480x640,720x1280] [--scales 0.5,1,2]
        [--out DIR] [--json FILE] [--bin target/release/shufflenet]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnx
import onnxruntime as ort

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
import make_onnx_fixtures as fx  # noqa: E402


def build_model(scale, h, w):
    """Full ShuffleNet v1 g=3 at `scale` for an h x w NCHW input, PyTorch layout.
    The same seed per scale, so every resolution gets the same weights."""
    spec = dict(name=f"shufflenet_g3_{scale}x_{h}x{w}", style="pt", groups=3, scale=scale,
                size=(h, w), opset=13, seed=7000 + int(scale * 10), producer="pytorch",
                classes=1000)
    b, _, nhwc, _ = fx.build(spec)
    return fx.finish_model(b, spec, nhwc)


def ort_session(path):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


class OrtBench:
    """An onnxruntime session with its input and output bound once."""

    def __init__(self, path, x):
        self.sess = ort_session(path)
        self.x = ort.OrtValue.ortvalue_from_numpy(x)
        out = self.sess.get_outputs()[0]
        self.y = ort.OrtValue.ortvalue_from_numpy(np.zeros((1, 1000), np.float32))
        self.binding = self.sess.io_binding()
        self.binding.bind_ortvalue_input(self.sess.get_inputs()[0].name, self.x)
        self.binding.bind_ortvalue_output(out.name, self.y)

    def batch(self, runs, warmup):
        """Times `runs` runs after `warmup` untimed ones; milliseconds."""
        times = []
        for i in range(warmup + runs):
            t = time.perf_counter()
            self.sess.run_with_iobinding(self.binding)
            dt = (time.perf_counter() - t) * 1e3
            if i >= warmup:
                times.append(dt)
        return times


def engine_batch(binary, model, h, w, runs, warmup):
    """One `shufflenet bench` call: (median ms, min ms, MFLOPs (multiply-adds), isa)."""
    cmd = [binary, "bench", model, "--resolutions", f"{h}x{w}", "--runs", str(runs),
           "--warmup", str(warmup), "--threads", "1", "--json"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    rec = json.loads(out.strip().splitlines()[-1])
    return rec["median_ms"], rec["min_ms"], rec["mflops"], rec["isa"]


def check_logits(binary, model, onnx_path, x, workdir):
    """Max |engine - onnxruntime| over the logits, relative to max |onnxruntime|."""
    xin = os.path.join(workdir, "check_input.npy")
    yout = os.path.join(workdir, "check_output.npy")
    np.save(xin, x)
    subprocess.run([binary, "run", model, "--input", xin, "--output", yout], check=True,
                   capture_output=True, text=True)
    ours = np.load(yout).reshape(-1)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    ref = ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])
    theirs = ref.run(None, {"image": x})[0].reshape(-1)
    if not np.all(np.isfinite(theirs)):
        raise SystemExit(f"{onnx_path}: onnxruntime's logits are not finite")
    return float(np.abs(ours - theirs).max() / max(np.abs(theirs).max(), 1e-30))


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--resolutions", default="224x224,480x640,720x1280")
    ap.add_argument("--scales", default="0.5,1,2")
    ap.add_argument("--rounds", type=int, default=10, help="interleaved rounds")
    ap.add_argument("--runs", type=int, default=10, help="timed runs per batch")
    ap.add_argument("--warmup", type=int, default=2, help="untimed runs per batch")
    ap.add_argument("--out", help="directory for the models (default: a temporary one)")
    ap.add_argument("--json", help="also write the results to this file")
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    ap.add_argument("--bin", default=os.path.join(target, "release", "shufflenet"))
    a = ap.parse_args()
    resolutions = [tuple(int(v) for v in r.split("x")) for r in a.resolutions.split(",")]
    scales = [float(s) for s in a.scales.split(",")]
    if not os.path.exists(a.bin):
        raise SystemExit(f"{a.bin} missing: cargo build --release -p tools")
    tmp = None
    if a.out:
        os.makedirs(a.out, exist_ok=True)
        workdir = a.out
    else:
        tmp = tempfile.TemporaryDirectory(prefix="shufflenet-vs-ort-")
        workdir = tmp.name

    print(f"{cpu_name()}, onnxruntime {ort.__version__}, one thread, "
          f"{a.rounds} rounds x {a.runs} runs per batch", flush=True)
    results = []
    for (h, w) in resolutions:
        rng = np.random.default_rng(h * 10000 + w)
        x = rng.standard_normal((1, 3, h, w)).astype(np.float32)
        entries = []
        for scale in scales:
            base = os.path.join(workdir, f"shufflenet_g3_{scale:g}x_{h}x{w}")
            onnx_path, model = base + ".onnx", base + ".snet"
            onnx.save(build_model(scale, h, w), onnx_path)
            subprocess.run([a.bin, "convert", onnx_path, "-o", model], check=True,
                           capture_output=True, text=True)
            err = check_logits(a.bin, model, onnx_path, x, workdir)
            entries.append(dict(scale=scale, onnx=onnx_path, model=model, ort=OrtBench(onnx_path, x),
                                eng_med=[], eng_min=[], ort_med=[], ort_min=[], rel_err=err))
        for r in range(a.rounds):
            for e in entries:
                def eng():
                    med, mn, mflops, isa = engine_batch(a.bin, e["model"], h, w, a.runs, a.warmup)
                    e["eng_med"].append(med)
                    e["eng_min"].append(mn)
                    e["mflops"], e["isa"] = mflops, isa

                def ortb():
                    t = e["ort"].batch(a.runs, a.warmup)
                    e["ort_med"].append(statistics.median(t))
                    e["ort_min"].append(min(t))
                for f in ([eng, ortb] if r % 2 == 0 else [ortb, eng]):
                    f()
            print(f"\r{h}x{w}: round {r + 1}/{a.rounds}", end="", file=sys.stderr, flush=True)
        print("\r" + " " * 40 + "\r", end="", file=sys.stderr, flush=True)
        for e in entries:
            e["ort"] = None
            res = dict(resolution=f"{h}x{w}", scale=e["scale"], mflops=e["mflops"], isa=e["isa"],
                       engine_ms=statistics.median(e["eng_med"]), engine_min_ms=min(e["eng_min"]),
                       ort_ms=statistics.median(e["ort_med"]), ort_min_ms=min(e["ort_min"]),
                       rel_err=e["rel_err"])
            res["ratio"] = res["engine_ms"] / res["ort_ms"]
            res["ratio_min"] = res["engine_min_ms"] / res["ort_min_ms"]
            res["engine_gflops"] = 2 * res["mflops"] / res["engine_ms"]
            res["ort_gflops"] = 2 * res["mflops"] / res["ort_ms"]
            results.append(res)
        for f in (os.remove,):
            for e in entries:
                f(e["onnx"])
                f(e["model"])

    hdr = (f"{'resolution':>10} {'scale':>5} {'MFLOPs':>8} {'engine ms':>9} {'ORT ms':>8} "
           f"{'ratio':>6} {'eng GF/s':>8} {'ORT GF/s':>8} {'min ratio':>9}  isa       rel.err")
    print(hdr)
    for res in results:
        print(f"{res['resolution']:>10} {res['scale']:>4g}x {res['mflops']:>8.1f} "
              f"{res['engine_ms']:>9.3f} {res['ort_ms']:>8.3f} {res['ratio']:>6.2f} "
              f"{res['engine_gflops']:>8.2f} {res['ort_gflops']:>8.2f} {res['ratio_min']:>9.2f}  "
              f"{res['isa']:<9} {res['rel_err']:.1e}")
    effs = []
    for (h, w) in resolutions:
        rs = {r["scale"]: r for r in results if r["resolution"] == f"{h}x{w}"}
        if 0.5 in rs and 2.0 in rs:
            e_eng = rs[0.5]["engine_gflops"] / rs[2.0]["engine_gflops"]
            e_ort = rs[0.5]["ort_gflops"] / rs[2.0]["ort_gflops"]
            effs.append(dict(resolution=f"{h}x{w}", engine=e_eng, ort=e_ort))
            print(f"{h}x{w}: E = GFLOP/s(0.5x) / GFLOP/s(2x): engine {e_eng:.2f}, "
                  f"onnxruntime {e_ort:.2f}")
    print("ratio: engine median / onnxruntime median (min ratio: of the fastest runs); "
          "GFLOP/s: 2 x multiply-adds / median")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(dict(cpu=cpu_name(), onnxruntime=ort.__version__, rounds=a.rounds,
                           runs=a.runs, results=results, efficiency=effs), f, indent=1)
    if tmp:
        tmp.cleanup()


if __name__ == "__main__":
    main()
