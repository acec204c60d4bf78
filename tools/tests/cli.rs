//! The `shufflenet` program end to end: synth, info, plan, run and bench, their
//! JSON outputs, and clear errors on bad input.

use shufflenet::npy;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

/// The program, run directly, or through qemu when this test itself runs under qemu
/// (an aarch64 test binary cannot exec an aarch64 program without binfmt support).
fn bin() -> Command {
    let exe = env!("CARGO_BIN_EXE_shufflenet");
    let direct = Command::new(exe).arg("help").output();
    if matches!(&direct, Err(e) if e.raw_os_error() == Some(8)) {
        let mut c = Command::new("qemu-aarch64");
        c.args(["-cpu", "cortex-a72", exe]);
        c
    } else {
        Command::new(exe)
    }
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("shufflenet-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn ok(args: &[&str]) -> String {
    ok_both(args).0
}

/// The stdout and stderr of a run that must succeed.
fn ok_both(args: &[&str]) -> (String, String) {
    let out: Output = bin().args(args).output().unwrap();
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "{args:?}: {err}");
    (String::from_utf8(out.stdout).unwrap(), err)
}

fn synth(g: &str, s: &str) -> String {
    let path = tmp(&format!("g{g}s{s}.snm"));
    ok(&[
        "synth",
        "--groups",
        g,
        "--scale",
        s,
        "-o",
        path.to_str().unwrap(),
    ]);
    path.to_str().unwrap().to_string()
}

#[test]
fn synth_info_plan_json() {
    let m = synth("3", "0.5");
    let info = ok(&["info", &m, "--json"]);
    assert!(
        info.contains("\"mflops\": ") && info.contains("\"params\": "),
        "{info}"
    );
    let mflops: f64 = info
        .split("\"mflops\": ")
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!((mflops - 38.0).abs() < 0.05 * 38.0, "{mflops}");
    let plan = ok(&["plan", &m, "--resolution", "96x128", "--json"]);
    for key in [
        "\"ops\": [",
        "\"kernel\": ",
        "\"peak_bytes\": ",
        "\"lower_bound_bytes\": ",
        "\"naive_bytes\": ",
    ] {
        assert!(plan.contains(key), "{key} missing in {plan}");
    }
    assert!(!plan.contains("\"kernel\": \"permute\""));
}

/// `peak_bytes` of a `plan --json` output.
fn peak_bytes(plan: &str) -> u64 {
    plan.split("\"peak_bytes\": ")
        .nth(1)
        .and_then(|r| r.split([',', '}']).next())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no peak_bytes in {plan}"))
}

#[test]
fn plan_pipeline_threshold_decides_the_arena() {
    let m = synth("3", "1");
    let plan = |kib: &str| {
        peak_bytes(&ok(&[
            "plan",
            &m,
            "--resolution",
            "480x640",
            "--json",
            "--pipeline-kib",
            kib,
        ]))
    };
    // 1x at 480x640: the largest tensor is 4.6 MB, so 0 and 2048 KiB pipeline it
    // (a few rows per tensor), 1 GiB does not (whole streamed tensors).
    let (always, arm, never) = (plan("0"), plan("2048"), plan("1048576"));
    assert_eq!(always, arm);
    assert!(arm < never, "pipeline {arm} bytes, whole tensors {never}");
    let out = bin()
        .args(["plan", &m, "--pipeline-kib", "-1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--pipeline-kib"));
}

#[test]
fn run_writes_logits_and_matches_itself() {
    let m = synth("8", "0.25");
    let input = tmp("x.npy");
    let data: Vec<f32> = (0..3 * 40 * 56).map(|i| (i % 13) as f32 / 13.0).collect();
    npy::write(&input, &[1, 3, 40, 56], &data).unwrap();
    let out = tmp("y.npy");
    let printed = ok(&[
        "run",
        &m,
        "--input",
        input.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ]);
    assert!(printed.starts_with("top-5: "), "{printed}");
    let y = npy::read(&out).unwrap();
    assert_eq!(y.shape, vec![1, 1000]);
    assert!(y.data.iter().all(|v| v.is_finite()));
    // The top class printed is the largest logit written.
    let best = (0..1000)
        .max_by(|&a, &b| y.data[a].total_cmp(&y.data[b]))
        .unwrap();
    assert!(
        printed.starts_with(&format!("top-5: {best} (")),
        "{printed} vs {best}"
    );
}

#[test]
fn bench_json_lines() {
    let m = synth("2", "0.25");
    let out = ok(&[
        "bench",
        &m,
        "--resolutions",
        "64x64,32x48",
        "--runs",
        "2",
        "--warmup",
        "1",
        "--json",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    for (line, res) in lines.iter().zip(["64x64", "32x48"]) {
        assert!(
            line.contains(&format!("\"resolution\": \"{res}\"")),
            "{line}"
        );
        for key in [
            "\"mflops\": ",
            "\"median_ms\": ",
            "\"min_ms\": ",
            "\"runs\": 2",
        ] {
            assert!(line.contains(key), "{key} missing in {line}");
        }
    }
}

#[test]
fn errors_are_clear() {
    let fail = |args: &[&str]| {
        let out = bin().args(args).output().unwrap();
        assert!(!out.status.success(), "{args:?} succeeded");
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    assert!(fail(&["frobnicate"]).contains("unknown command"));
    assert!(fail(&["synth", "--groups", "5", "-o", "/tmp/x"]).contains("groups must be one of"));
    assert!(fail(&["info", "/nonexistent/model.snm"]).contains("/nonexistent/model.snm"));
    let junk = tmp("junk.snm");
    std::fs::write(
        &junk,
        b"not a model at all, just some bytes........................................",
    )
    .unwrap();
    assert!(fail(&["info", junk.to_str().unwrap()]).contains("magic"));
    let m = synth("1", "0.25");
    let bad = tmp("bad.npy");
    npy::write(&bad, &[1, 4, 8, 8], &[0.0; 256]).unwrap();
    assert!(fail(&["run", &m, "--input", bad.to_str().unwrap()]).contains("does not fit"));
    assert!(fail(&["bench", &m, "--resolutions", "0x5"]).contains("positive"));
    // A thread count outside 1..=256 is a usage error (exit 2) before any work:
    // no bench header, no plan, no model read.
    let input = bad.to_str().unwrap();
    let cases: [&[&str]; 4] = [
        &["bench", &m, "--threads", "0"],
        &["bench", &m, "--threads", "257"],
        &["plan", &m, "--threads", "0"],
        &[
            "run",
            "/nonexistent/model.snm",
            "--input",
            input,
            "--threads",
            "0",
        ],
    ];
    for args in cases {
        let out = bin().args(args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains("--threads must be between 1 and 256"),
            "{args:?}: {err}"
        );
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn convert_and_run_onnx_match_onnxruntime() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../engine/tests/fixtures/onnx");
    for name in ["pt_g3_w025_64x64_op13", "tf_g3_w025_96x128_op13_nhwc"] {
        let onnx = dir.join(format!("{name}.onnx"));
        let input = dir.join(format!("{name}.input.npy"));
        let want = npy::read(&dir.join(format!("{name}.logits.npy"))).unwrap();
        let converted = tmp(&format!("{name}.snm"));
        let msg = ok(&[
            "convert",
            onnx.to_str().unwrap(),
            "-o",
            converted.to_str().unwrap(),
        ]);
        assert!(msg.contains("fused ops"), "{msg}");
        // Both the converted file and the .onnx directly.
        for model in [converted.to_str().unwrap(), onnx.to_str().unwrap()] {
            let out = tmp(&format!("{name}.out.npy"));
            ok(&[
                "run",
                model,
                "--input",
                input.to_str().unwrap(),
                "--output",
                out.to_str().unwrap(),
            ]);
            let got = npy::read(&out).unwrap();
            let max_ref = want.data.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let err = got
                .data
                .iter()
                .zip(&want.data)
                .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(err <= 1e-4 * max_ref + 1e-5, "{name} via {model}: {err}");
        }
    }
}

#[test]
fn bench_compare_reports_ratios() {
    let out = ok(&[
        "bench",
        "--compare",
        "--resolutions",
        "32x32",
        "--runs",
        "1",
        "--warmup",
        "0",
        "--json",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    for (line, scale) in lines.iter().zip(["0.5", "1", "2"]) {
        assert!(line.contains(&format!("\"scale\": {scale}")), "{line}");
        assert!(line.contains("\"efficiency_ratio\": "), "{line}");
        // One timed run per model: one round with all three, whose paired E is the
        // E of the medians (each model's only run), up to rounding.
        assert_eq!(numbers_of(line, "paired_rounds"), [1.0], "{line}");
        let (e, paired) = (
            numbers_of(line, "efficiency_ratio")[0],
            numbers_of(line, "efficiency_ratio_paired")[0],
        );
        assert!(e > 0.0 && (paired - e).abs() <= 1e-9 * e, "{line}");
        // ... and both quartiles of that one round are it, too.
        let q = array_of(line, "efficiency_ratio_paired_quartiles").unwrap_or_default();
        assert_eq!(q.len(), 2, "{line}");
        assert!(
            q.iter().all(|x| (x - paired).abs() <= 1e-9 * paired),
            "{line}"
        );
    }
    assert!(lines[1].contains("\"flop_ratio\": 3."), "{}", lines[1]);
}

#[test]
fn bench_compare_profile_gives_each_models_class_shares() {
    let (out, err) = ok_both(&[
        "bench",
        "--compare",
        "--profile",
        "--resolutions",
        "32x32",
        "--runs",
        "5",
        "--warmup",
        "0",
        "--json",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    // The three models' lines, then the shares.
    assert_eq!(lines.len(), 4, "{out}");
    let shares = lines[3];
    assert!(shares.contains("\"resolution\": \"32x32\""), "{shares}");
    assert_eq!(numbers_of(shares, "profile_rounds"), [5.0], "{shares}");
    assert_eq!(numbers_of(shares, "profile_runs"), [1.0], "{shares}");
    let classes = [
        "pointwise_units",
        "stem",
        "depthwise_pools",
        "classifier",
        "pipeline",
    ];
    let arrays: Vec<Vec<f64>> = classes.iter().filter_map(|k| array_of(shares, k)).collect();
    // Every model has pointwise convs, a stem and a classifier; no row pipeline at
    // 32x32 (its tensors are far below the pipeline's threshold).
    for k in ["pointwise_units", "stem", "classifier"] {
        let v = array_of(shares, k).unwrap_or_else(|| panic!("{k}: {shares}"));
        assert_eq!(v.len(), 3, "{k}: {shares}");
        assert!(v.iter().all(|&x| x > 0.0 && x < 1.0), "{k}: {shares}");
    }
    assert!(array_of(shares, "pipeline").is_none(), "{shares}");
    // Medians per class, so about one per model, not exactly.
    for m in 0..3 {
        let sum: f64 = arrays.iter().map(|v| v[m]).sum();
        assert!((0.75..1.25).contains(&sum), "model {m}: {sum}: {shares}");
    }
    // stderr is a pipe here, not a terminal: progress comes as whole lines (if the
    // run is long enough to report at all), never as carriage-return updates.
    assert!(!err.contains('\r'), "{err:?}");
    for line in err.lines() {
        assert!(
            line.starts_with("32x32")
                && (line.contains(": round ") || line.contains(" profile: run ")),
            "{err:?}"
        );
    }
}

/// The numbers of the array value of `key` in a JSON line, if it has one.
fn array_of(line: &str, key: &str) -> Option<Vec<f64>> {
    let pat = format!("\"{key}\": [");
    let at = line.find(&pat)? + pat.len();
    let body = &line[at..at + line[at..].find(']')?];
    Some(
        body.split(',')
            .filter_map(|x| x.trim().parse().ok())
            .collect(),
    )
}

/// The `"key": "value"` string values of `key` in a JSON line, in order.
fn strings_of<'a>(line: &'a str, key: &str) -> Vec<&'a str> {
    let pat = format!("\"{key}\": \"");
    line.match_indices(&pat)
        .filter_map(|(i, _)| line[i + pat.len()..].split('"').next())
        .collect()
}

/// The numeric values of `key` in a JSON line, in order.
fn numbers_of(line: &str, key: &str) -> Vec<f64> {
    let pat = format!("\"{key}\": ");
    line.match_indices(&pat)
        .filter_map(|(i, _)| {
            let rest = &line[i + pat.len()..];
            let end = rest.find([',', '}']).unwrap_or(rest.len());
            rest[..end].trim().parse().ok()
        })
        .collect()
}

#[test]
fn bench_profile_times_every_stage() {
    let m = synth("3", "0.5");
    let steps = ok(&["plan", &m, "--resolution", "64x64", "--json"])
        .matches("\"index\": ")
        .count();
    assert!(steps > 10);
    // Streamed chains (small bands: fewer stages than steps), then the row
    // pipeline as one stage.
    let cases: [(&[&str], bool); 2] = [
        (&["--no-pipeline", "--band-kib", "4"], false),
        (&["--pipeline-kib", "0"], true),
    ];
    for (extra, pipeline) in cases {
        let mut args = vec![
            "bench",
            &m,
            "--resolutions",
            "64x64",
            "--runs",
            "3",
            "--warmup",
            "0",
            "--json",
            "--profile",
        ];
        args.extend_from_slice(extra);
        let out = ok(&args);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{out}");
        let (bench, profile) = (lines[0], lines[1]);
        // The stages cover every step once, in order.
        let ranges = strings_of(profile, "steps");
        if pipeline {
            assert_eq!(ranges.len(), 1, "{extra:?}: {profile}");
        } else {
            assert!((10..steps).contains(&ranges.len()), "{extra:?}: {profile}");
        }
        let mut next = 0;
        for r in &ranges {
            let (a, b) = r.split_once('-').unwrap();
            let (a, b): (usize, usize) = (a.parse().unwrap(), b.parse().unwrap());
            assert_eq!(a, next, "{extra:?}: stage {r} after step {next}");
            assert!(b >= a);
            next = b + 1;
        }
        assert_eq!(
            next, steps,
            "{extra:?}: stages end at step {next} of {steps}"
        );
        // Every stage took time; the stage MFLOPs add up to the model's.
        let stages = profile.split("\"by_kernel\"").next().unwrap();
        let us = numbers_of(stages, "median_us");
        assert_eq!(us.len(), ranges.len());
        assert!(us.iter().all(|&t| t > 0.0), "{us:?}");
        let total: f64 = numbers_of(stages, "mflops").iter().sum();
        let model = numbers_of(bench, "mflops")[0];
        assert!((total - model).abs() < 1e-6 * model, "{total} vs {model}");
    }
    let both = bin()
        .args(["bench", &m, "--scaling", "--threads", "2", "--profile"])
        .output()
        .unwrap();
    assert_eq!(both.status.code(), Some(2));
}

#[test]
fn bench_scaling_compares_thread_counts() {
    let m = synth("3", "0.5");
    let out = ok(&[
        "bench",
        &m,
        "--scaling",
        "--threads",
        "2",
        "--resolutions",
        "32x32,64x48",
        "--runs",
        "9",
        "--warmup",
        "0",
        "--json",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    for (line, res) in lines.iter().zip(["32x32", "64x48"]) {
        assert!(
            line.contains(&format!("\"resolution\": \"{res}\"")),
            "{line}"
        );
        for key in [
            "\"median_ms_1\": ",
            "\"median_ms_n\": ",
            "\"speedup\": ",
            "\"paired_speedup\": ",
            "\"median_ms_side_by_side\": ",
            "\"paired_share_of_ceiling\": ",
            "\"threads\": 2",
        ] {
            assert!(line.contains(key), "{key} missing in {line}");
        }
        // Two one-thread sessions side by side: each as slow as one alone at
        // best, so at most 2x one's throughput (with a margin for timer noise on
        // runs this short), and more than nothing.
        let c = numbers_of(line, "paired_ceiling")[0];
        let cq = array_of(line, "paired_ceiling_quartiles").unwrap_or_default();
        assert!(
            cq.len() == 2 && 0.0 < cq[0] && cq[0] <= c && c <= cq[1] && c < 3.0,
            "{line}"
        );
        assert!(
            numbers_of(line, "paired_share_of_ceiling")[0] > 0.0,
            "{line}"
        );
        // Three rounds of three timed runs: the paired speedup lies between its
        // quartiles over those rounds.
        let p = numbers_of(line, "paired_speedup")[0];
        let q = array_of(line, "paired_speedup_quartiles").unwrap_or_default();
        assert!(
            q.len() == 2 && 0.0 < q[0] && q[0] <= p && p <= q[1],
            "{line}"
        );
    }
    let one = bin()
        .args(["bench", &m, "--scaling", "--threads", "1"])
        .output()
        .unwrap();
    assert_eq!(one.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&one.stderr).contains("--threads N, N >= 2"));
}

#[test]
fn a_closed_pipe_ends_the_output_quietly() {
    // As `shufflenet plan | head -0`: the reader is gone before the first line.
    let mut child = bin()
        .args(["plan", "--resolution", "224x224"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && err.is_empty(),
        "{:?}: {err}",
        out.status
    );
}
