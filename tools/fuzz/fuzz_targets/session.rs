//! Sessions of a small built-in model (ShuffleNet 0.25x, g = 3) with arbitrary
//! height, width, thread count (pools above 16 threads folded to 2..=16, see
//! below), execution mode (streamed bands, whole tensors, one-row bands,
//! whole-network row pipeline), input and output lengths and input values (NaN
//! and infinities included).
//!
//! Properties: no panic and no abort; a bad thread count, an empty or unworkable
//! size, or a size whose arena would exceed the (lowered) limit is a
//! `SessionError` before anything large is allocated; a session's arena plus its
//! warm-up image respect the limit; for sizes up to 4096 pixels (larger ones are
//! only bound, to keep inputs fast under the instrumentation), a wrong input length
//! or a short output buffer is an error; a run with the right lengths succeeds,
//! writes exactly `output_len` values, and a second run gives the same bits; the
//! NHWC twin of the model, given the transposed input, gives the same bits as the
//! NCHW model.

#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use shufflenet::exec::SessionError;
use shufflenet::graph::Layout;
use shufflenet::model::Model;
use shufflenet::session::{Session, SessionOptions};
use shufflenet::{family, plan, Error};
use std::sync::{Arc, OnceLock};

/// Sizes at and past every edge: empty, one, very wide, the 32- and 64-bit limits,
/// and values whose products with the channel counts overflow.
const HUGE: [usize; 14] = [
    0,
    1,
    2,
    100_000,
    1 << 16,
    (1 << 31) - 1,
    1 << 32,
    (1 << 32) + 1,
    3_037_000_500, // about sqrt(2^63)
    usize::MAX / 1000,
    usize::MAX / 3 + 1,
    usize::MAX / 2,
    usize::MAX - 1,
    usize::MAX,
];

const LIMIT: usize = shufflenet_fuzz::FUZZ_ARENA_BYTES;

/// Largest worker pool the target creates (see the fold in the target).
const MAX_POOL: usize = 16;

/// Largest input (in pixels) a session is run at: 64 x 64, or 1 x 4096.
const RUN_PIXELS: usize = 4096;

#[derive(Arbitrary, Debug)]
enum Dim {
    Small(u8),
    Medium(u16),
    Huge(u8),
}

impl Dim {
    fn get(&self) -> usize {
        match *self {
            Dim::Small(v) => (v % 72) as usize,
            Dim::Medium(v) => v as usize,
            Dim::Huge(i) => HUGE[i as usize % HUGE.len()],
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Threads {
    Usual(u8),
    Any(usize),
}

#[derive(Arbitrary, Debug)]
enum Len {
    Exact,
    Delta(i8),
    Any(u16),
}

impl Len {
    fn get(&self, exact: usize) -> usize {
        match *self {
            Len::Exact => exact,
            Len::Delta(d) => exact.saturating_add_signed(d as isize),
            Len::Any(n) => n as usize,
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Input {
    h: Dim,
    w: Dim,
    threads: Threads,
    input_len: Len,
    output_len: Len,
    /// Execution mode (see `shufflenet_fuzz::options`).
    mode: u8,
    values: Vec<f32>,
}

/// The NCHW model and its NHWC twin, built once per process.
fn models() -> &'static (Arc<Model>, Arc<Model>) {
    static MODELS: OnceLock<(Arc<Model>, Arc<Model>)> = OnceLock::new();
    MODELS.get_or_init(|| {
        let graph = family::build(3, 0.25, family::DEFAULT_SEED).expect("family builds");
        let mut lowered = plan::lower(&graph).expect("family lowers");
        let nchw = Arc::new(Model::from_lowered(&lowered).expect("loads"));
        lowered.program.input.layout = Layout::Nhwc;
        let nhwc = Arc::new(Model::from_lowered(&lowered).expect("loads"));
        (nchw, nhwc)
    })
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|f| f.to_bits()).collect()
}

fuzz_target!(|input: Input| {
    let (nchw, nhwc) = models();
    let (h, w) = (input.h.get(), input.w.get());
    let threads = match input.threads {
        Threads::Usual(t) => t as usize,
        Threads::Any(t) => t,
    };
    // Valid counts above MAX_POOL are folded into 2..=MAX_POOL: a pool of 255
    // threads on this 2-core machine, under ASan and coverage, took over 30 s for
    // one 8x128 input (natively: 0.3 s to create, 20 ms per run), which libFuzzer
    // reports as a timeout. Counts up to 256 are tested natively (hostile_sizes.rs);
    // invalid counts (0, 257, ..., usize::MAX) still reach `Session::new` here.
    let threads = if (MAX_POOL + 1..=256).contains(&threads) {
        2 + threads % (MAX_POOL - 1)
    } else {
        threads
    };
    let opts = SessionOptions {
        threads,
        // Bit 2 of the mode: with several threads, one pipeline segment each.
        pipeline_segments: input.mode & 4 != 0,
        ..shufflenet_fuzz::options(input.mode)
    };
    let mut s = match Session::new(nchw.clone(), h, w, opts) {
        Ok(s) => s,
        Err(Error::Session(SessionError::Threads(t))) => {
            assert!(!(1..=256).contains(&threads) && t == threads);
            return;
        }
        Err(Error::Session(SessionError::Size { .. })) => return,
        Err(Error::Session(SessionError::ArenaTooLarge { needed, limit, .. })) => {
            assert!(needed > limit as u64 && limit == LIMIT as u64);
            return;
        }
        Err(e) => panic!("{h}x{w}: unexpected error {e}"),
    };
    assert!((1..=256).contains(&threads) && h > 0 && w > 0);
    assert!(
        (s.plan().layout.peak + s.input_len()) * 4 <= LIMIT,
        "arena above the limit"
    );
    assert_eq!(s.input_len(), 3 * h * w);
    assert_eq!(s.output_len(), family::CLASSES);
    if h * w > RUN_PIXELS {
        // Binding (above) is what large sizes test; running them under the fuzzer's
        // instrumentation would take seconds per input.
        return;
    }

    let n_in = input.input_len.get(s.input_len());
    let n_out = input.output_len.get(s.output_len());
    let x: Vec<f32> = if input.values.is_empty() {
        vec![0.0; n_in]
    } else {
        input.values.iter().copied().cycle().take(n_in).collect()
    };
    const SENTINEL: f32 = -12345.5;
    let mut y = vec![SENTINEL; n_out];
    let r = s.run(&x, &mut y);
    if n_in != s.input_len() {
        assert!(
            matches!(r, Err(Error::Session(SessionError::InputLength { .. }))),
            "{r:?}"
        );
        return;
    }
    if n_out < s.output_len() {
        assert!(
            matches!(r, Err(Error::Session(SessionError::OutputCapacity { .. }))),
            "{r:?}"
        );
        return;
    }
    r.expect("a run with the right lengths succeeds");
    assert!(y[s.output_len()..]
        .iter()
        .all(|&v| v.to_bits() == SENTINEL.to_bits()));
    let first = bits(&y[..s.output_len()]);
    s.run(&x, &mut y).expect("second run");
    assert_eq!(first, bits(&y[..s.output_len()]), "two runs differ");

    // The NHWC twin on the transposed input: the same planar values, the same bits.
    let mut t = Session::new(nhwc.clone(), h, w, opts).expect("the twin binds the same size");
    let hw = h * w;
    let mut xt = vec![0.0; x.len()];
    for c in 0..3 {
        for p in 0..hw {
            xt[p * 3 + c] = x[c * hw + p];
        }
    }
    let mut yt = vec![0.0; t.output_len()];
    t.run(&xt, &mut yt).expect("twin runs");
    assert_eq!(first, bits(&yt), "NHWC and NCHW disagree");
});
