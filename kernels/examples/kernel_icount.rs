//! Executed-instruction harness: runs every dispatched kernel (NEON on aarch64) once
//! on each stage shape of ShuffleNet v1 1x g=3 at 224x224, each call inside an icount
//! marker window (`close(-1234567001)` .. `close(-1234567002)`), then turns the
//! plugin's windows into instructions per call and useful FLOPs per instruction.
//!
//! ```text
//! cargo build --release --example kernel_icount --target aarch64-unknown-linux-musl
//! qemu-aarch64 -cpu cortex-a72 -plugin /tmp/icount/libicount.so,out=/tmp/kic.json \
//!     target/aarch64-unknown-linux-musl/release/examples/kernel_icount
//! qemu-aarch64 -cpu cortex-a72 \
//!     target/aarch64-unknown-linux-musl/release/examples/kernel_icount --report /tmp/kic.json
//! ```
//! `--only SUBSTRING [REPEATS]` runs only the cases whose name contains SUBSTRING,
//! each REPEATS times (for the plugin's `hist=` mnemonic histogram of one kernel:
//! with enough repeats the kernel dominates the process's counts).

use kernels::{dispatch, *};

/// Marks an icount window boundary: `close(code)` fails with EBADF and the plugin
/// snapshots its counters.
fn marker(code: i64) {
    #[cfg(all(target_arch = "aarch64", target_os = "linux"))]
    // SAFETY: the close syscall (number 57 on aarch64 Linux) on a negative fd only
    // returns EBADF; it touches no memory.
    unsafe {
        core::arch::asm!("svc #0", in("x8") 57u64, inlateout("x0") code => _, options(nostack));
    }
    #[cfg(not(all(target_arch = "aarch64", target_os = "linux")))]
    let _ = code;
}

struct Rng(u64);

impl Rng {
    fn f32(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
    fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.f32()).collect()
    }
}

/// A measured call, ready to run.
type Call = Box<dyn FnMut()>;

/// One measured call.
struct Case {
    name: String,
    /// Model multiply-adds of the call (0 for pools: no multiply-adds).
    macs: u64,
    /// Output elements of the call.
    outputs: u64,
    /// How often the call runs per inference of 1x g=3 at 224x224.
    per_inference: u64,
    /// Builds the call's buffers (seeded) and returns the call.
    build: Box<dyn FnOnce(&mut Rng) -> Call>,
}

fn shuffle_table(c: usize, groups: usize) -> Vec<u32> {
    let n = c / groups;
    (0..c)
        .map(|i| ((i % groups) * n + i / groups) as u32)
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn pointwise_case(
    name: &str,
    groups: usize,
    k: usize,
    m: usize,
    px: usize,
    accumulate: bool,
    per_inference: u64,
) -> Case {
    let cin = groups * k;
    // The second 1x1 conv of a unit reads the shuffled planes through its table.
    let in_rows = if name.contains("gconv2") {
        shuffle_table(cin, groups)
    } else {
        (0..cin as u32).collect()
    };
    let panels = groups * m.div_ceil(MR);
    Case {
        name: name.into(),
        macs: (groups * m * k * px) as u64,
        outputs: (groups * m * px) as u64,
        per_inference,
        build: Box::new(move |rng: &mut Rng| {
            let weights = pack_pointwise(groups, m, k, &rng.vec(groups * m * k));
            let bias = rng.vec(groups * m);
            let input = rng.vec(cin * px);
            let mut output = rng.vec(groups * m * px);
            Box::new(move || {
                let p = Pointwise {
                    groups,
                    k,
                    m,
                    weights: &weights,
                    bias: &bias,
                    in_rows: &in_rows,
                    epilogue: Epilogue {
                        accumulate,
                        relu: true,
                    },
                };
                let call = PointwiseCall {
                    input: PixelSpan {
                        stride: px,
                        start: 0,
                    },
                    output: PixelSpan {
                        stride: px,
                        start: 0,
                    },
                    count: px,
                    panels: 0..panels,
                };
                marker(-1234567001);
                let r = dispatch::pointwise(&p, &input, &mut output, &call);
                marker(-1234567002);
                r.expect("pointwise");
            })
        }),
    }
}

fn geom(hw: usize, stride: usize) -> PlaneGeom {
    let o = (hw + 2 - 3) / stride + 1;
    PlaneGeom {
        in_h: hw,
        in_w: hw,
        in_stride: hw * hw,
        out_h: o,
        out_w: o,
        out_stride: o * o,
        pad_top: 1,
        pad_left: 1,
    }
}

fn dw_case(name: &str, ch: usize, hw: usize, stride: usize, n: u64) -> Case {
    let g = geom(hw, stride);
    Case {
        name: name.into(),
        macs: (ch * g.out_h * g.out_w * 9) as u64,
        outputs: (ch * g.out_h * g.out_w) as u64,
        per_inference: n,
        build: Box::new(move |rng: &mut Rng| {
            let input = rng.vec(ch * hw * hw);
            let mut output = vec![0.0; ch * g.out_stride];
            let weights = rng.vec(ch * 9);
            let bias = rng.vec(ch);
            Box::new(move || {
                let p = Depthwise3x3 {
                    stride,
                    weights: &weights,
                    bias: &bias,
                    relu: false,
                };
                marker(-1234567001);
                let r = dispatch::dwconv3x3(&p, &g, &input, &mut output, 0..ch);
                marker(-1234567002);
                r.expect("dwconv3x3");
            })
        }),
    }
}

fn pool_case(name: &str, kind: PoolKind, ch: usize, hw: usize, n: u64) -> Case {
    let g = geom(hw, 2);
    Case {
        name: name.into(),
        macs: 0,
        outputs: (ch * g.out_h * g.out_w) as u64,
        per_inference: n,
        build: Box::new(move |rng: &mut Rng| {
            let input = rng.vec(ch * hw * hw);
            let mut output = vec![0.0; ch * g.out_stride];
            Box::new(move || {
                let p = Pool {
                    kind,
                    kh: 3,
                    kw: 3,
                    stride_h: 2,
                    stride_w: 2,
                    pad_bottom: 1,
                    pad_right: 1,
                };
                marker(-1234567001);
                let r = dispatch::pool(&p, &g, &input, &mut output, 0..ch);
                marker(-1234567002);
                r.expect("pool");
            })
        }),
    }
}

fn stem_case(cout: usize) -> Case {
    let g = geom(224, 2);
    Case {
        name: format!("conv1 3->{cout} 3x3s2 224->112"),
        macs: (cout * 27 * g.out_h * g.out_w) as u64,
        outputs: (cout * g.out_h * g.out_w) as u64,
        per_inference: 1,
        build: Box::new(move |rng: &mut Rng| {
            let input = rng.vec(3 * 224 * 224);
            let mut output = vec![0.0; cout * g.out_stride];
            let weights = rng.vec(cout * 27);
            let bias = rng.vec(cout);
            Box::new(move || {
                let p = Conv2d {
                    cin: 3,
                    cout,
                    groups: 1,
                    kh: 3,
                    kw: 3,
                    stride_h: 2,
                    stride_w: 2,
                    weights: &weights,
                    bias: &bias,
                    relu: true,
                };
                marker(-1234567001);
                let r = dispatch::conv2d(&p, &g, &input, &mut output, 0..cout);
                marker(-1234567002);
                r.expect("conv2d");
            })
        }),
    }
}

fn gap_fc_case() -> Case {
    let (ch, hw, outs) = (960, 49, 1000);
    Case {
        name: "gap+fc 960x7x7 -> 1000".into(),
        macs: (ch * outs + ch * hw) as u64,
        outputs: outs as u64,
        per_inference: 1,
        build: Box::new(move |rng: &mut Rng| {
            let input = rng.vec(ch * hw);
            let weights = rng.vec(ch * outs);
            let bias = rng.vec(outs);
            let mut pooled = vec![0.0; ch];
            let mut out = vec![0.0; outs];
            Box::new(move || {
                let fc = Fc {
                    inputs: ch,
                    outputs: outs,
                    weights: &weights,
                    bias: &bias,
                };
                let planes = Planes {
                    channels: ch,
                    hw,
                    stride: hw,
                };
                marker(-1234567001);
                let r = dispatch::gap_fc(&fc, &planes, &input, &mut pooled, &mut out);
                marker(-1234567002);
                r.expect("gap_fc");
            })
        }),
    }
}

fn cases() -> Vec<Case> {
    let max = PoolKind::Max;
    let avg = PoolKind::Avg {
        count_include_pad: true,
    };
    vec![
        stem_case(24),
        pool_case("maxpool 24ch 112->56", max, 24, 112, 1),
        pointwise_case("s2u0 gconv1 g1 k24 m60 3136px", 1, 24, 60, 3136, false, 1),
        dw_case("s2u0 dw s2 60ch 56->28", 60, 56, 2, 1),
        pointwise_case("s2u0 gconv2 g3 k20 m72 784px", 3, 20, 72, 784, false, 1),
        pool_case("s2u0 avgpool 24ch 56->28", avg, 24, 56, 1),
        pointwise_case("s2 gconv1 g3 k80 m20 784px", 3, 80, 20, 784, false, 3),
        dw_case("s2 dw s1 60ch 28x28", 60, 28, 1, 3),
        pointwise_case("s2 gconv2 g3 k20 m80 784px +res", 3, 20, 80, 784, true, 3),
        pointwise_case("s3u0 gconv1 g3 k80 m40 784px", 3, 80, 40, 784, false, 1),
        dw_case("s3u0 dw s2 120ch 28->14", 120, 28, 2, 1),
        pointwise_case("s3u0 gconv2 g3 k40 m80 196px", 3, 40, 80, 196, false, 1),
        pool_case("s3u0 avgpool 240ch 28->14", avg, 240, 28, 1),
        pointwise_case("s3 gconv1 g3 k160 m40 196px", 3, 160, 40, 196, false, 7),
        dw_case("s3 dw s1 120ch 14x14", 120, 14, 1, 7),
        pointwise_case("s3 gconv2 g3 k40 m160 196px +res", 3, 40, 160, 196, true, 7),
        pointwise_case("s4u0 gconv1 g3 k160 m80 196px", 3, 160, 80, 196, false, 1),
        dw_case("s4u0 dw s2 240ch 14->7", 240, 14, 2, 1),
        pointwise_case("s4u0 gconv2 g3 k80 m160 49px", 3, 80, 160, 49, false, 1),
        pool_case("s4u0 avgpool 480ch 14->7", avg, 480, 14, 1),
        pointwise_case("s4 gconv1 g3 k320 m80 49px", 3, 320, 80, 49, false, 3),
        dw_case("s4 dw s1 240ch 7x7", 240, 7, 1, 3),
        pointwise_case("s4 gconv2 g3 k80 m320 49px +res", 3, 80, 320, 49, true, 3),
        gap_fc_case(),
    ]
}

/// Parses the plugin's `ICOUNT {json}` line: field names and window rows.
fn parse_icount(text: &str) -> Option<(Vec<String>, Vec<Vec<u64>>)> {
    let fields_at = text.find("\"fields\":[")? + "\"fields\":[".len();
    let fields_end = fields_at + text[fields_at..].find(']')?;
    let fields = text[fields_at..fields_end]
        .split(',')
        .map(|s| s.trim().trim_matches('"').to_string())
        .collect();
    let win_at = text.find("\"windows\":[")? + "\"windows\":[".len();
    let mut windows = Vec::new();
    for row in text[win_at..].split('[').skip(1) {
        let body = &row[..row.find(']')?];
        windows.push(
            body.split(',')
                .map(|v| v.trim().parse().ok())
                .collect::<Option<_>>()?,
        );
    }
    Some((fields, windows))
}

fn report(path: &str) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let (fields, windows) = parse_icount(&text).expect("no ICOUNT windows in the file");
    let col = |name: &str| fields.iter().position(|f| f == name).expect(name);
    let (total, lanes) = (col("total"), col("fma_lanes"));
    let cases = cases();
    assert_eq!(cases.len(), windows.len(), "one window per case expected");
    println!(
        "| kernel call | instructions | MACs | FLOPs/instr | fma lanes/MACs | instr/output | per inference |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let (mut sum_i, mut sum_m) = (0u64, 0u64);
    let mut classes: Vec<(&str, u64, u64)> = Vec::new();
    for (c, w) in cases.iter().zip(&windows) {
        let i = w[total];
        let flops = if c.macs > 0 {
            format!("{:.2}", 2.0 * c.macs as f64 / i as f64)
        } else {
            "-".into()
        };
        let eff = if c.macs > 0 {
            format!("{:.3}", w[lanes] as f64 / c.macs as f64)
        } else {
            "-".into()
        };
        println!(
            "| {} | {} | {} | {} | {} | {:.2} | x{} |",
            c.name,
            i,
            c.macs,
            flops,
            eff,
            i as f64 / c.outputs as f64,
            c.per_inference
        );
        sum_i += i * c.per_inference;
        sum_m += c.macs * c.per_inference;
        let class = kernel_class(&c.name);
        let at = classes
            .iter()
            .position(|(n, _, _)| *n == class)
            .unwrap_or_else(|| {
                classes.push((class, 0, 0));
                classes.len() - 1
            });
        classes[at].1 += i * c.per_inference;
        classes[at].2 += c.macs * c.per_inference;
    }
    println!("\n| kernel class, per inference | instructions | MACs | FLOPs/instr |");
    println!("|---|---:|---:|---:|");
    for (class, i, m) in &classes {
        let flops = if *m > 0 {
            format!("{:.2}", 2.0 * *m as f64 / *i as f64)
        } else {
            "-".into()
        };
        println!("| {class} | {i} | {m} | {flops} |");
    }
    println!(
        "\nKernel calls of one inference (1x g=3, 224x224): {:.2}M instructions, {:.1}M MACs, {:.2} FLOPs/instr",
        sum_i as f64 / 1e6,
        sum_m as f64 / 1e6,
        2.0 * sum_m as f64 / sum_i as f64
    );
}

/// The kernel a case name measures.
fn kernel_class(name: &str) -> &'static str {
    if name.contains("gconv") {
        "pointwise"
    } else if name.contains("dw s1") {
        "depthwise s1"
    } else if name.contains("dw s2") {
        "depthwise s2"
    } else if name.contains("pool") {
        "pools"
    } else if name.starts_with("conv1") {
        "stem conv"
    } else {
        "gap+fc"
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    match args.first().map(String::as_str) {
        Some("--report") => report(args.get(1).expect("--report FILE")),
        Some("--only") => {
            let pat = args.get(1).expect("--only SUBSTRING [REPEATS]");
            let reps: usize = args.get(2).map_or(1, |r| r.parse().expect("REPEATS"));
            for c in cases()
                .into_iter()
                .filter(|c| c.name.contains(pat.as_str()))
            {
                let mut run = (c.build)(&mut rng);
                for _ in 0..reps {
                    run();
                }
            }
        }
        _ => {
            for c in cases() {
                (c.build)(&mut rng)();
            }
        }
    }
}
