//! Executed-instruction harness: runs every dispatched kernel (NEON on aarch64) once
//! on each stage shape of ShuffleNet v1 g=3 at 224x224 (`--scale 0.5|1|2`, default 1),
//! each call inside an icount
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
//! (pass the same `--scale S` to the run and to `--report`).
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
    /// How often the call runs per inference of the model at 224x224.
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
    // A residual conv of the planner's offset chain: zero bias, per-channel floors.
    let offset = name.ends_with("+res offset");
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
            let mut bias = rng.vec(groups * m);
            let floor = rng.vec(groups * m);
            if offset {
                bias.fill(0.0);
            }
            let input = rng.vec(cin * px);
            let mut output = rng.vec(groups * m * px);
            Box::new(move || {
                let p = Pointwise {
                    floor: offset.then_some(&floor[..]),
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
            // Zero, as the planner leaves every ShuffleNet depthwise bias (it
            // moves into the next pointwise conv).
            let bias = vec![0.0; ch];
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
                    relu: false,
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
                let p = Conv2d::dense_3x3(3, cout, 2, &weights, &bias, true);
                marker(-1234567001);
                let r = dispatch::conv2d(&p, &g, &input, &mut output, 0..cout);
                marker(-1234567002);
                r.expect("conv2d");
            })
        }),
    }
}

fn gap_fc_case(ch: usize) -> Case {
    let (hw, outs) = (49, 1000);
    Case {
        name: format!("gap+fc {ch}x7x7 -> {outs}"),
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

/// Output channels of conv1 and of stages 2-4 of ShuffleNet v1 g=3 at `scale`
/// (0.5, 1 or 2).
fn widths(scale: &str) -> [usize; 4] {
    match scale {
        "0.5" => [12, 120, 240, 480],
        "2" => [48, 480, 960, 1920],
        _ => [24, 240, 480, 960],
    }
}

/// Stage shapes of ShuffleNet v1 `scale` x g=3 at 224x224: the stem and its max pool,
/// then per stage the first (stride-2) unit and one of the stride-1 units (run
/// `units - 1` times per inference), then GAP+FC.
fn cases(scale: &str) -> Vec<Case> {
    let max = PoolKind::Max;
    let avg = PoolKind::Avg {
        count_include_pad: true,
    };
    let [c1, c2, c3, c4] = widths(scale);
    let mut v = vec![
        stem_case(c1),
        pool_case(&format!("maxpool {c1}ch 112->56"), max, c1, 112, 1),
    ];
    // (stage, input channels, output channels, input size, units)
    for (s, cin, cout, hw, units) in [(2, c1, c2, 56, 4), (3, c2, c3, 28, 8), (4, c3, c4, 14, 4)] {
        let (mid, o) = (cout / 4, hw / 2);
        let g1 = if s == 2 { 1 } else { 3 };
        let (px, opx) = (hw * hw, o * o);
        v.push(pointwise_case(
            &format!("s{s}u0 gconv1 g{g1} k{} m{} {px}px", cin / g1, mid / g1),
            g1,
            cin / g1,
            mid / g1,
            px,
            false,
            1,
        ));
        v.push(dw_case(
            &format!("s{s}u0 dw s2 {mid}ch {hw}->{o}"),
            mid,
            hw,
            2,
            1,
        ));
        v.push(pointwise_case(
            &format!(
                "s{s}u0 gconv2 g3 k{} m{} {opx}px",
                mid / 3,
                (cout - cin) / 3
            ),
            3,
            mid / 3,
            (cout - cin) / 3,
            opx,
            false,
            1,
        ));
        v.push(pool_case(
            &format!("s{s}u0 avgpool {cin}ch {hw}->{o}"),
            avg,
            cin,
            hw,
            1,
        ));
        let n = units - 1;
        v.push(pointwise_case(
            &format!("s{s} gconv1 g3 k{} m{} {opx}px", cout / 3, mid / 3),
            3,
            cout / 3,
            mid / 3,
            opx,
            false,
            n,
        ));
        v.push(dw_case(
            &format!("s{s} dw s1 {mid}ch {o}x{o}"),
            mid,
            o,
            1,
            n,
        ));
        // All but the stage's last unit carry an offset (`engine/src/plan/offset.rs`).
        for (what, count) in [("+res offset", n - 1), ("+res", 1)] {
            v.push(pointwise_case(
                &format!("s{s} gconv2 g3 k{} m{} {opx}px {what}", mid / 3, cout / 3),
                3,
                mid / 3,
                cout / 3,
                opx,
                true,
                count,
            ));
        }
    }
    v.push(gap_fc_case(c4));
    v
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

fn report(path: &str, scale: &str) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let (fields, windows) = parse_icount(&text).expect("no ICOUNT windows in the file");
    let col = |name: &str| fields.iter().position(|f| f == name).expect(name);
    // Multiply-add lanes issued: FMAs, plus the `fmul`s that start the outputs of
    // zero-bias depthwise filters.
    let (total, lanes, mul_lanes) = (col("total"), col("fma_lanes"), col("fmul_lanes"));
    let cases = cases(scale);
    assert_eq!(cases.len(), windows.len(), "one window per case expected");
    println!(
        "| kernel call | instructions | MACs | FLOPs/instr | fma+fmul lanes/MACs | instr/output | per inference |"
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
            format!("{:.3}", (w[lanes] + w[mul_lanes]) as f64 / c.macs as f64)
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
        "\nKernel calls of one inference ({scale}x g=3, 224x224): {:.2}M instructions, {:.1}M MACs, {:.2} FLOPs/instr",
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
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    // `--scale S` (0.5, 1 or 2) anywhere: which model's stage shapes to run.
    let scale = match args.iter().position(|a| a == "--scale") {
        Some(i) => {
            let s = args.get(i + 1).expect("--scale 0.5|1|2").clone();
            assert!(["0.5", "1", "2"].contains(&s.as_str()), "--scale 0.5|1|2");
            args.drain(i..i + 2);
            s
        }
        None => "1".to_string(),
    };
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    match args.first().map(String::as_str) {
        Some("--report") => report(args.get(1).expect("--report FILE"), &scale),
        Some("--only") => {
            let pat = args.get(1).expect("--only SUBSTRING [REPEATS]");
            let reps: usize = args.get(2).map_or(1, |r| r.parse().expect("REPEATS"));
            for c in cases(&scale)
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
            for c in cases(&scale) {
                (c.build)(&mut rng)();
            }
        }
    }
}
