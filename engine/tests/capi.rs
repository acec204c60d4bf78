//! The C API called the way C calls it: raw pointers, NULLs, wrong lengths and
//! sizes. Every error path returns its status code and a useful message; the
//! success paths agree with the Rust API.

use shufflenet::capi::*;
use shufflenet::model::Model;
use shufflenet::session::{Session, SessionOptions};
use shufflenet::{family, graph::Layout, model_file, plan};
use std::ffi::{c_void, CStr, CString};
use std::path::PathBuf;
use std::ptr::{null, null_mut};
use std::sync::{Arc, OnceLock};

/// The bytes of a small family member's model file (built once).
fn model_bytes() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| {
        let graph = family::build(1, 0.25, 5).unwrap();
        model_file::to_bytes(&plan::lower(&graph).unwrap()).unwrap()
    })
}

/// A temporary file, removed when dropped.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A temporary file holding `bytes`.
fn temp_file(name: &str, bytes: &[u8]) -> TempFile {
    let p = std::env::temp_dir().join(format!("shufflenet-capi-{}-{name}", std::process::id()));
    std::fs::write(&p, bytes).unwrap();
    TempFile(p)
}

fn c_path(p: &std::path::Path) -> CString {
    CString::new(p.to_str().unwrap()).unwrap()
}

fn last_error() -> String {
    // SAFETY: `sn_last_error` returns a NUL-terminated string that stays valid until
    // the next failing call on this thread; it is copied at once.
    unsafe { CStr::from_ptr(sn_last_error()) }
        .to_string_lossy()
        .into_owned()
}

/// Asserts `status` is `want` and the last error mentions `needle`.
#[track_caller]
fn assert_fails(status: SnStatus, want: SnStatus, needle: &str) {
    assert_eq!(status, want, "last error: {}", last_error());
    let e = last_error();
    assert!(e.contains(needle), "{want:?}: {e:?} lacks {needle:?}");
}

/// A model handle loaded from memory.
fn open_memory(bytes: &[u8]) -> *mut SnModel {
    let mut m = null_mut();
    // SAFETY: `bytes` is readable for its length; `m` is a writable pointer.
    let st = unsafe { sn_model_from_memory(bytes.as_ptr().cast(), bytes.len(), &mut m) };
    assert_eq!(st, SnStatus::Ok, "{}", last_error());
    assert!(!m.is_null());
    m
}

/// A session on `model`.
fn create(model: *const SnModel, h: usize, w: usize) -> *mut SnSession {
    let mut s = null_mut();
    // SAFETY: `model` is a live handle; `s` is a writable pointer.
    let st = unsafe { sn_session_create(model, h, w, 1, &mut s) };
    assert_eq!(st, SnStatus::Ok, "{}", last_error());
    s
}

/// Runs `session` on `x`, returning the output.
fn run(session: *mut SnSession, x: &[f32]) -> Vec<f32> {
    let mut n = 0usize;
    // SAFETY: `session` is a live handle; `n` is writable.
    let st = unsafe { sn_session_output_len(session, &mut n) };
    assert_eq!(st, SnStatus::Ok);
    let mut out = vec![f32::NAN; n];
    // SAFETY: `x` and `out` are valid, disjoint buffers of the lengths passed.
    let st = unsafe { sn_session_run(session, x.as_ptr(), x.len(), out.as_mut_ptr(), n) };
    assert_eq!(st, SnStatus::Ok, "{}", last_error());
    out
}

fn input(len: usize) -> Vec<f32> {
    (0..len)
        .map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0)
        .collect()
}

fn free_model(mut m: *mut SnModel) {
    // SAFETY: `m` is a live handle or NULL, used by no other thread.
    unsafe { sn_model_free(&mut m) };
    assert!(m.is_null());
}

fn free_session(mut s: *mut SnSession) {
    // SAFETY: `s` is a live handle or NULL, used by no other thread.
    unsafe { sn_session_free(&mut s) };
    assert!(s.is_null());
}

#[test]
fn path_and_memory_models_run_like_the_rust_api() {
    let file = temp_file("ok.snm", model_bytes());
    let cpath = c_path(&file.0);
    let mut from_path = null_mut();
    // SAFETY: `cpath` is NUL-terminated; `from_path` is writable.
    let st = unsafe { sn_model_open(cpath.as_ptr(), &mut from_path) };
    assert_eq!(st, SnStatus::Ok, "{}", last_error());
    let from_mem = open_memory(model_bytes());

    let (mut layout, mut c, mut h, mut w, mut n) = (SnLayout::Nhwc, 0, 0, 0, 0);
    let (mut mean, mut scale) = ([0f32; 4], [0f32; 4]);
    // SAFETY: live handle and writable out-parameters (arrays of 4 floats).
    let desc = unsafe {
        assert_eq!(sn_model_input_layout(from_path, &mut layout), SnStatus::Ok);
        assert_eq!(sn_model_input_channels(from_path, &mut c), SnStatus::Ok);
        assert_eq!(
            sn_model_default_size(from_path, &mut h, &mut w),
            SnStatus::Ok
        );
        let st = sn_model_preprocess(from_path, mean.as_mut_ptr(), scale.as_mut_ptr(), 4, &mut n);
        assert_eq!(st, SnStatus::Ok);
        CStr::from_ptr(sn_model_description(from_path))
            .to_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!((layout, c, h, w, n), (SnLayout::Nchw, 3, 224, 224, 3));
    assert_eq!(mean[..3], [123.675, 116.28, 103.53]);
    assert_eq!(scale[0], 1.0 / 58.395);
    assert_eq!(desc, "ShuffleNet v1 0.25x (g = 1)");

    let (hh, ww) = (64, 48);
    let (s1, s2) = (create(from_path, hh, ww), create(from_mem, hh, ww));
    let (mut len, mut oc, mut oh, mut ow) = (0, 0, 0, 0);
    // SAFETY: live handle and writable out-parameters.
    unsafe {
        assert_eq!(sn_session_input_len(s1, &mut len), SnStatus::Ok);
        let st = sn_session_output_shape(s1, &mut oc, &mut oh, &mut ow);
        assert_eq!(st, SnStatus::Ok);
    }
    assert_eq!(len, 3 * hh * ww);
    assert_eq!((oc, oh, ow), (1000, 1, 1));

    let x = input(len);
    let (y1, y2) = (run(s1, &x), run(s2, &x));
    let model = Arc::new(Model::from_bytes(model_bytes()).unwrap());
    let mut rust = Session::new(model, hh, ww, SessionOptions::default()).unwrap();
    let mut want = vec![0.0; rust.output_len()];
    rust.run(&x, &mut want).unwrap();
    assert_eq!(y1, want);
    assert_eq!(y2, want);
    assert!(want.iter().any(|&v| v != want[0]), "degenerate output");

    // Freeing the models first is safe: the sessions hold the model.
    free_model(from_path);
    free_model(from_mem);
    assert_eq!(run(s1, &x), want);
    free_session(s1);
    free_session(s2);
}

#[test]
fn nhwc_model_without_preprocessing_reports_so() {
    let graph = family::build(1, 0.25, 5).unwrap();
    let mut lowered = plan::lower(&graph).unwrap();
    lowered.program.input.layout = Layout::Nhwc;
    lowered.program.input.preprocess = None;
    lowered.program.input.default_size = None;
    let m = open_memory(&model_file::to_bytes(&lowered).unwrap());
    let (mut layout, mut h, mut w, mut n) = (SnLayout::Nchw, 9, 9, 9);
    let (mut mean, mut scale) = ([7f32; 3], [7f32; 3]);
    // SAFETY: live handle and writable out-parameters (arrays of 3 floats).
    unsafe {
        assert_eq!(sn_model_input_layout(m, &mut layout), SnStatus::Ok);
        assert_eq!(sn_model_default_size(m, &mut h, &mut w), SnStatus::Ok);
        let st = sn_model_preprocess(m, mean.as_mut_ptr(), scale.as_mut_ptr(), 3, &mut n);
        assert_eq!(st, SnStatus::Ok);
    }
    assert_eq!((layout, h, w, n), (SnLayout::Nhwc, 0, 0, 0));
    assert_eq!((mean, scale), ([7.0; 3], [7.0; 3]), "arrays untouched");
    free_model(m);
}

#[test]
fn opening_bad_models_fails_cleanly() {
    let sentinel = std::ptr::NonNull::<SnModel>::dangling().as_ptr();
    let mut m = sentinel;
    // SAFETY: every pointer is NULL or valid; NULLs are what is being tested.
    unsafe {
        assert_fails(
            sn_model_open(null(), &mut m),
            SnStatus::ErrNullPointer,
            "path",
        );
        assert!(m.is_null(), "out_model is cleared on failure");
        let p = c_path(&std::env::temp_dir().join("shufflenet-capi-no-such-file.snm"));
        m = sentinel;
        assert_fails(
            sn_model_open(p.as_ptr(), &mut m),
            SnStatus::ErrIo,
            "no-such-file",
        );
        assert!(m.is_null());
        assert_fails(
            sn_model_open(p.as_ptr(), null_mut()),
            SnStatus::ErrNullPointer,
            "out_model",
        );
        let empty = CString::new("").unwrap();
        assert_eq!(sn_model_open(empty.as_ptr(), &mut m), SnStatus::ErrIo);

        let mut corrupt = model_bytes().to_vec();
        let mid = corrupt.len() / 2;
        corrupt[mid] ^= 0x40;
        let file = temp_file("corrupt.snm", &corrupt);
        let p = c_path(&file.0);
        assert_fails(
            sn_model_open(p.as_ptr(), &mut m),
            SnStatus::ErrModel,
            "checksum",
        );
        let st = sn_model_from_memory(corrupt.as_ptr().cast(), corrupt.len(), &mut m);
        assert_fails(st, SnStatus::ErrModel, "checksum");
        let garbage =
            [b"not a model file, but long enough to have a header. ".as_slice(); 3].concat();
        let file = temp_file("garbage.snm", &garbage);
        let p = c_path(&file.0);
        assert_fails(
            sn_model_open(p.as_ptr(), &mut m),
            SnStatus::ErrModel,
            "not a shufflenet model",
        );
        let half = &model_bytes()[..model_bytes().len() / 2];
        let st = sn_model_from_memory(half.as_ptr().cast(), half.len(), &mut m);
        assert_fails(st, SnStatus::ErrModel, "truncated");

        m = sentinel;
        let st = sn_model_from_memory(null(), 100, &mut m);
        assert_fails(st, SnStatus::ErrNullPointer, "data");
        assert!(m.is_null());
        assert_fails(
            sn_model_from_memory(null(), 0, &mut m),
            SnStatus::ErrNullPointer,
            "data",
        );
        let st = sn_model_from_memory(garbage.as_ptr().cast(), 0, &mut m);
        assert_fails(st, SnStatus::ErrInvalidArgument, "empty");
        let st = sn_model_from_memory(garbage.as_ptr().cast::<c_void>(), usize::MAX, &mut m);
        assert_fails(st, SnStatus::ErrInvalidArgument, "larger than any buffer");
        let st = sn_model_from_memory(garbage.as_ptr().cast(), garbage.len(), null_mut());
        assert_fails(st, SnStatus::ErrNullPointer, "out_model");
    }
    assert!(m.is_null());
}

#[test]
fn null_handles_and_out_parameters_are_errors() {
    let m = open_memory(model_bytes());
    let s = create(m, 64, 64);
    let (mut layout, mut n, mut h, mut w) = (SnLayout::Nchw, 0usize, 0usize, 0usize);
    let mut f = [0f32; 3];
    let mut out = vec![0f32; 1000];
    let x = input(3 * 64 * 64);
    let nul = SnStatus::ErrNullPointer;
    // SAFETY: every pointer is NULL or valid; NULLs are what is being tested.
    unsafe {
        assert_fails(sn_model_input_layout(null(), &mut layout), nul, "model");
        assert_fails(sn_model_input_layout(m, null_mut()), nul, "out_layout");
        assert_fails(sn_model_input_channels(null(), &mut n), nul, "model");
        assert_fails(sn_model_input_channels(m, null_mut()), nul, "out_channels");
        assert_fails(sn_model_default_size(null(), &mut h, &mut w), nul, "model");
        assert_fails(
            sn_model_default_size(m, null_mut(), &mut w),
            nul,
            "out_height",
        );
        assert_fails(
            sn_model_default_size(m, &mut h, null_mut()),
            nul,
            "out_width",
        );
        let fp = f.as_mut_ptr();
        assert_fails(sn_model_preprocess(null(), fp, fp, 3, &mut n), nul, "model");
        assert_fails(
            sn_model_preprocess(m, null_mut(), fp, 3, &mut n),
            nul,
            "mean",
        );
        assert_fails(
            sn_model_preprocess(m, fp, null_mut(), 3, &mut n),
            nul,
            "scale",
        );
        assert_fails(
            sn_model_preprocess(m, fp, fp, 3, null_mut()),
            nul,
            "out_count",
        );
        assert!(sn_model_description(null()).is_null());

        let mut sess = null_mut();
        assert_fails(
            sn_session_create(null(), 64, 64, 1, &mut sess),
            nul,
            "model",
        );
        assert_fails(
            sn_session_create(m, 64, 64, 1, null_mut()),
            nul,
            "out_session",
        );
        let (xp, op) = (x.as_ptr(), out.as_mut_ptr());
        assert_fails(
            sn_session_run(null_mut(), xp, x.len(), op, 1000),
            nul,
            "session",
        );
        assert_fails(sn_session_run(s, null(), x.len(), op, 1000), nul, "input");
        assert_fails(
            sn_session_run(s, xp, x.len(), null_mut(), 1000),
            nul,
            "output",
        );
        assert_fails(sn_session_input_len(null(), &mut n), nul, "session");
        assert_fails(sn_session_input_len(s, null_mut()), nul, "out_len");
        assert_fails(sn_session_output_len(null(), &mut n), nul, "session");
        assert_fails(sn_session_output_len(s, null_mut()), nul, "out_len");
        assert_fails(
            sn_session_output_shape(null(), &mut n, &mut h, &mut w),
            nul,
            "session",
        );
        let st = sn_session_output_shape(s, null_mut(), &mut h, &mut w);
        assert_fails(st, nul, "out_channels");
        let st = sn_session_output_shape(s, &mut n, null_mut(), &mut w);
        assert_fails(st, nul, "out_height");
        let st = sn_session_output_shape(s, &mut n, &mut h, null_mut());
        assert_fails(st, nul, "out_width");

        // Free functions: NULL and a pointer to NULL are no-ops.
        sn_model_free(null_mut());
        sn_session_free(null_mut());
        let (mut nm, mut ns) = (null_mut(), null_mut());
        sn_model_free(&mut nm);
        sn_session_free(&mut ns);
    }
    // The session is unharmed by all of that.
    assert!(run(s, &x).iter().all(|v| v.is_finite()));
    free_session(s);
    free_model(m);
}

#[test]
fn bad_sizes_and_thread_counts_are_errors() {
    let m = open_memory(model_bytes());
    let mut s = std::ptr::NonNull::<SnSession>::dangling().as_ptr();
    // SAFETY: `m` is a live handle and `s` writable.
    unsafe {
        assert_fails(
            sn_session_create(m, 0, 64, 1, &mut s),
            SnStatus::ErrSize,
            "0x64",
        );
        assert!(s.is_null(), "out_session is cleared on failure");
        assert_fails(
            sn_session_create(m, 64, 0, 1, &mut s),
            SnStatus::ErrSize,
            "positive",
        );
        let st = sn_session_create(m, 100_000, 100_000, 1, &mut s);
        assert_fails(st, SnStatus::ErrArenaLimit, "limit");
        let st = sn_session_create(m, usize::MAX, usize::MAX, 1, &mut s);
        assert!(
            matches!(st, SnStatus::ErrSize | SnStatus::ErrArenaLimit),
            "{st:?}: {}",
            last_error()
        );
        let st = sn_session_create(m, 64, 64, 0, &mut s);
        assert_fails(st, SnStatus::ErrInvalidArgument, "thread count");
        let st = sn_session_create(m, 64, 64, 257, &mut s);
        assert_fails(st, SnStatus::ErrInvalidArgument, "257");
    }
    assert!(s.is_null());
    free_model(m);
}

#[test]
fn bad_run_buffers_are_errors() {
    let m = open_memory(model_bytes());
    let s = create(m, 64, 32);
    let len = 3 * 64 * 32;
    let x = input(len + 1);
    let mut out = vec![0f32; 1001];
    let (xp, op) = (x.as_ptr(), out.as_mut_ptr());
    // SAFETY: the buffers are valid for the lengths passed (except where a length is
    // deliberately wrong, which the library must reject before reading).
    unsafe {
        let st = sn_session_run(s, xp, len - 1, op, 1000);
        assert_fails(st, SnStatus::ErrInputLength, &format!("expected {len}"));
        let st = sn_session_run(s, xp, len + 1, op, 1000);
        assert_fails(st, SnStatus::ErrInputLength, &format!("{} values", len + 1));
        assert_fails(
            sn_session_run(s, xp, 0, op, 1000),
            SnStatus::ErrInputLength,
            "0 values",
        );
        let st = sn_session_run(s, xp, len, op, 999);
        assert_fails(st, SnStatus::ErrOutputCapacity, "999");
        assert_fails(
            sn_session_run(s, xp, len, op, 0),
            SnStatus::ErrOutputCapacity,
            "1000",
        );
        let st = sn_session_run(s, xp.cast::<u8>().add(1).cast(), len, op, 1000);
        assert_fails(st, SnStatus::ErrInvalidArgument, "aligned");
        let st = sn_session_run(s, xp, len, op.cast::<u8>().add(2).cast(), 1000);
        assert_fails(st, SnStatus::ErrInvalidArgument, "aligned");
        let st = sn_session_run(s, xp, usize::MAX, op, 1000);
        assert_fails(st, SnStatus::ErrInvalidArgument, "larger than any buffer");
        // Overlapping input and output.
        let mut both = input(len + 1000);
        let bp = both.as_mut_ptr();
        let st = sn_session_run(s, bp, len, bp.add(len - 1), 1000);
        assert_fails(st, SnStatus::ErrInvalidArgument, "overlap");
        // Adjacent is fine.
        assert_eq!(sn_session_run(s, bp, len, bp.add(len), 1000), SnStatus::Ok);
        // A larger output buffer is fine; only the front is written.
        out[1000] = 42.0;
        assert_eq!(sn_session_run(s, xp, len, op, 1001), SnStatus::Ok);
    }
    assert_eq!(out[1000], 42.0);
    assert_eq!(out[..1000], run(s, &x[..len])[..]);
    free_session(s);
    free_model(m);
}

#[test]
fn preprocess_capacity_and_double_free() {
    let mut m = open_memory(model_bytes());
    let mut n = 0usize;
    let mut f = [5f32; 2];
    // SAFETY: `f` holds 2 floats, the capacity passed; `n` is writable.
    let st = unsafe { sn_model_preprocess(m, f.as_mut_ptr(), f.as_mut_ptr(), 2, &mut n) };
    assert_fails(st, SnStatus::ErrOutputCapacity, "3 channels");
    assert_eq!((n, f), (3, [5.0; 2]));
    // Freeing twice through the same variable frees once: the first call sets it to
    // NULL and the second is a no-op.
    // SAFETY: `m` is a live handle used by no other thread (then NULL).
    unsafe {
        sn_model_free(&mut m);
        assert!(m.is_null());
        sn_model_free(&mut m);
    }
    let m = open_memory(model_bytes());
    let mut s = create(m, 64, 64);
    free_model(m);
    // SAFETY: `s` is a live handle used by no other thread (then NULL).
    unsafe {
        sn_session_free(&mut s);
        assert!(s.is_null());
        sn_session_free(&mut s);
    }
}

#[test]
fn last_error_is_per_thread_and_kept_by_successes() {
    let m = open_memory(model_bytes());
    let mut c = 0usize;
    // SAFETY: NULL handle is the error under test; `c` is writable.
    let st = unsafe { sn_model_input_channels(null(), &mut c) };
    assert_eq!(st, SnStatus::ErrNullPointer);
    assert_eq!(last_error(), "model is NULL");
    // SAFETY: live handle, writable out-parameter.
    assert_eq!(unsafe { sn_model_input_channels(m, &mut c) }, SnStatus::Ok);
    assert_eq!(
        last_error(),
        "model is NULL",
        "a success keeps the last error"
    );
    let other = std::thread::spawn(last_error).join().unwrap();
    assert_eq!(other, "", "a fresh thread has no error");
    free_model(m);

    let text = |p: *const std::ffi::c_char| {
        // SAFETY: the library returns static NUL-terminated strings.
        unsafe { CStr::from_ptr(p) }.to_str().unwrap().to_owned()
    };
    assert_eq!(text(sn_status_message(0)), "success");
    assert_eq!(
        text(sn_status_message(SnStatus::ErrArenaLimit as i32)),
        "the input size needs more memory than the limit"
    );
    for code in 1..=9 {
        let msg = text(sn_status_message(code));
        assert!(!msg.is_empty() && msg != "unknown status", "{code}");
    }
    assert_eq!(text(sn_status_message(10)), "unknown status");
    assert_eq!(text(sn_status_message(-1)), "unknown status");
    assert_eq!(text(sn_version()), env!("CARGO_PKG_VERSION"));
}

/// A model handle shared by threads, as the header allows.
#[derive(Clone, Copy)]
struct Shared(*const SnModel);
// SAFETY: the C API documents model handles as usable from many threads at once
// (queries and session creation only read the model, which is Send + Sync).
unsafe impl Send for Shared {}

#[test]
fn one_model_many_threads_with_their_own_sessions() {
    let m = open_memory(model_bytes());
    let x = input(3 * 40 * 56);
    let want = {
        let s = create(m, 40, 56);
        let y = run(s, &x);
        free_session(s);
        y
    };
    let shared = Shared(m);
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let x = x.clone();
            std::thread::spawn(move || {
                let shared = shared;
                let s = create(shared.0, 40, 56);
                let ys: Vec<Vec<f32>> = (0..2).map(|_| run(s, &x)).collect();
                free_session(s);
                ys
            })
        })
        .collect();
    for t in threads {
        for y in t.join().unwrap() {
            assert_eq!(y, want);
        }
    }
    free_model(m);
}

#[test]
fn handles_are_sendable() {
    fn send<T: Send>() {}
    send::<SnSession>();
    send::<SnModel>();
}
