//! The instruction-set levels of the portable path and the glue between `pulp` and
//! the kernels.
//!
//! Every kernel is written once, generic over [`SimdExt`] (pulp's [`Simd`] plus the
//! one operation pulp's portable API lacks: an order-preserving even/odd split).
//! [`Level::run`] enters pulp's `vectorize`, which compiles the generic code inside
//! a `#[target_feature]` function for AVX2+FMA or AVX-512; for that to work every
//! function on a kernel's hot path is `#[inline(always)]`.

use pulp::{Simd, WithSimd};

/// pulp's [`Simd`] plus the operations the kernels need that pulp's portable API
/// does not offer.
pub(crate) trait SimdExt: Simd {
    /// Splits `2 * LANES` consecutive floats (`lo` then `hi`) into the even-indexed
    /// and the odd-indexed ones, each in ascending order. (pulp's
    /// `deinterleave_shfl_f32s` returns a permuted order on AVX2.)
    fn split_even_odd(self, lo: Self::f32s, hi: Self::f32s) -> (Self::f32s, Self::f32s);

    /// The even-indexed and the odd-indexed floats of `lo` then `hi`, in the
    /// level's "split order": a fixed permutation of ascending order, the same for
    /// every call, cheaper than [`Self::split_even_odd`] on AVX2. Results computed
    /// lane-wise from split-order vectors go back to ascending order with
    /// [`Self::unsplit_order`].
    fn split_even_odd_fast(self, lo: Self::f32s, hi: Self::f32s) -> (Self::f32s, Self::f32s) {
        self.split_even_odd(lo, hi)
    }

    /// Puts a vector in split order into ascending order. The permutation is an
    /// involution: applied to a vector in ascending order it gives split order.
    fn unsplit_order(self, v: Self::f32s) -> Self::f32s {
        v
    }

    /// ReLU that keeps NaN, like [`crate::scalar::relu`]: negative lanes become 0,
    /// the rest (NaN included) pass; `-0.0` may stay `-0.0` (equal to 0). The
    /// default is a compare and a select; x86 has it in one `max` whose second
    /// operand wins when either is NaN or both are zero.
    fn relu(self, a: Self::f32s) -> Self::f32s {
        self.relu_at(a, self.splat_f32s(0.0))
    }

    /// [`Self::relu`] with its clamp at `floor` (per lane), like
    /// [`crate::scalar::relu_at`]: lanes at or below `floor` become `floor`, the
    /// rest (NaN included) pass.
    fn relu_at(self, a: Self::f32s, floor: Self::f32s) -> Self::f32s {
        self.select_f32s(self.less_than_or_equal_f32s(a, floor), floor, a)
    }

    /// Lane `i` of the result is lane `idx[i]` of the `2 * LANES` floats `lo` then
    /// `hi` (every `idx[i] < 2 * LANES`).
    fn permute2(self, lo: Self::f32s, hi: Self::f32s, idx: Self::u32s) -> Self::f32s;

    /// Loads the first `n <= LANES` floats at `p`; the other lanes are zero and
    /// their memory is not read (no fault past `p + n`).
    ///
    /// # Safety
    /// `p .. p + n` must be readable.
    #[inline(always)]
    unsafe fn load_prefix(self, p: *const f32, n: usize) -> Self::f32s {
        // SAFETY: the caller's contract.
        unsafe { self.load_masked(p, self.prefix(n)) }
    }

    /// The first `n` lanes (at most `LANES`) as the level's mask for
    /// [`Self::load_masked`] and [`Self::store_masked`], so a loop that loads or
    /// stores the same prefix many times builds it once (AVX-512: a `k` mask;
    /// AVX2: a lane mask and the count; scalar: the count).
    type Prefix: Copy;

    /// See [`Self::Prefix`].
    fn prefix(self, n: usize) -> Self::Prefix;

    /// [`Self::load_prefix`] of the prefix `m`.
    ///
    /// # Safety
    /// The floats of `m` at `p` must be readable.
    unsafe fn load_masked(self, p: *const f32, m: Self::Prefix) -> Self::f32s;

    /// Whether [`Self::store_masked`] is one masked store (AVX-512), cheap enough to
    /// store every partial row with; otherwise it goes through a stack tile (AVX2's
    /// masked store, `vmaskmovps`, is slow on AMD).
    const MASKED_STORE: bool = false;

    /// Stores the lanes of the prefix `m` of `v` at `p`; the memory past them is
    /// not touched.
    ///
    /// # Safety
    /// The floats of `m` at `p` must be writable.
    unsafe fn store_masked(self, p: *mut f32, v: Self::f32s, m: Self::Prefix);

    /// The level whose vectors are one pointwise weight panel ([`crate::MR`]
    /// floats) where this one's are wider (AVX-512 runs AVX2 code too), else
    /// this level: the pointwise kernel's matrix-vector tail runs with it.
    type Panel: SimdExt;

    /// See [`Self::Panel`].
    fn panel(self) -> Self::Panel;
}

impl SimdExt for pulp::Scalar {
    #[inline(always)]
    fn split_even_odd(self, lo: f32, hi: f32) -> (f32, f32) {
        (lo, hi)
    }

    #[inline(always)]
    fn permute2(self, lo: f32, hi: f32, idx: u32) -> f32 {
        if idx == 0 {
            lo
        } else {
            hi
        }
    }

    type Prefix = usize;

    type Panel = Self;

    #[inline(always)]
    fn panel(self) -> Self {
        self
    }

    #[inline(always)]
    fn prefix(self, n: usize) -> usize {
        n.min(1)
    }

    #[inline(always)]
    unsafe fn load_masked(self, p: *const f32, n: usize) -> f32 {
        if n == 0 {
            0.0
        } else {
            // SAFETY: n >= 1 floats at p are readable (the caller's contract).
            unsafe { *p }
        }
    }

    #[inline(always)]
    unsafe fn store_masked(self, p: *mut f32, v: f32, n: usize) {
        if n > 0 {
            // SAFETY: n >= 1 floats at p are writable (the caller's contract).
            unsafe { *p = v };
        }
    }
}

#[cfg(target_arch = "x86_64")]
impl SimdExt for pulp::x86::V3 {
    #[inline(always)]
    fn split_even_odd(self, lo: Self::f32s, hi: Self::f32s) -> (Self::f32s, Self::f32s) {
        use core::arch::x86_64::{__m256, __m256d};
        let (lo, hi): (__m256, __m256) = (pulp::cast(lo), pulp::cast(hi));
        // Per 128-bit lane: [l0 l2 h0 h2 | l4 l6 h4 h6] and the odd counterpart;
        // a 64-bit cross-lane permute then puts the pairs in order.
        let even = self.avx._mm256_shuffle_ps::<0b10_00_10_00>(lo, hi);
        let odd = self.avx._mm256_shuffle_ps::<0b11_01_11_01>(lo, hi);
        let even: __m256d = pulp::cast(even);
        let odd: __m256d = pulp::cast(odd);
        let even = self.avx2._mm256_permute4x64_pd::<0b11_01_10_00>(even);
        let odd = self.avx2._mm256_permute4x64_pd::<0b11_01_10_00>(odd);
        (pulp::cast(even), pulp::cast(odd))
    }

    #[inline(always)]
    fn split_even_odd_fast(self, lo: Self::f32s, hi: Self::f32s) -> (Self::f32s, Self::f32s) {
        use core::arch::x86_64::__m256;
        let (lo, hi): (__m256, __m256) = (pulp::cast(lo), pulp::cast(hi));
        // Per 128-bit lane only: elements 0 2 8 10 | 4 6 12 14 of the 16 (and the
        // odd ones likewise): ascending order with the middle 64-bit pairs swapped.
        let even = self.avx._mm256_shuffle_ps::<0b10_00_10_00>(lo, hi);
        let odd = self.avx._mm256_shuffle_ps::<0b11_01_11_01>(lo, hi);
        (pulp::cast(even), pulp::cast(odd))
    }

    #[inline(always)]
    fn unsplit_order(self, v: Self::f32s) -> Self::f32s {
        use core::arch::x86_64::__m256d;
        let v: __m256d = pulp::cast(v);
        pulp::cast(self.avx2._mm256_permute4x64_pd::<0b11_01_10_00>(v))
    }

    #[inline(always)]
    fn relu(self, a: Self::f32s) -> Self::f32s {
        self.relu_at(a, self.splat_f32s(0.0))
    }

    #[inline(always)]
    fn relu_at(self, a: Self::f32s, floor: Self::f32s) -> Self::f32s {
        use core::arch::x86_64::__m256;
        let (floor, a): (__m256, __m256) = (pulp::cast(floor), pulp::cast(a));
        // vmaxps returns its second operand (a) when either is NaN.
        pulp::cast(self.avx._mm256_max_ps(floor, a))
    }

    #[inline(always)]
    fn permute2(self, lo: Self::f32s, hi: Self::f32s, idx: Self::u32s) -> Self::f32s {
        use core::arch::x86_64::{__m256, __m256i};
        let (lo, hi, idx): (__m256, __m256, __m256i) =
            (pulp::cast(lo), pulp::cast(hi), pulp::cast(idx));
        // Both sources permuted by the index's low three bits, then the one that
        // bit 3 names (moved to the sign bit, which `blendv` reads).
        let a = self.avx2._mm256_permutevar8x32_ps(lo, idx);
        let b = self.avx2._mm256_permutevar8x32_ps(hi, idx);
        let from_hi: __m256 = pulp::cast(self.avx2._mm256_slli_epi32::<28>(idx));
        pulp::cast(self.avx._mm256_blendv_ps(a, b, from_hi))
    }

    type Prefix = (Self::u32s, usize);

    type Panel = Self;

    #[inline(always)]
    fn panel(self) -> Self {
        self
    }

    #[inline(always)]
    fn prefix(self, n: usize) -> (Self::u32s, usize) {
        use core::arch::x86_64::__m256i;
        let n = n.min(8);
        let iota: __m256i = pulp::cast([0i32, 1, 2, 3, 4, 5, 6, 7]);
        let mask = self
            .avx2
            ._mm256_cmpgt_epi32(pulp::cast(self.splat_u32s(n as u32)), iota);
        (pulp::cast(mask), n)
    }

    #[inline(always)]
    unsafe fn load_masked(self, p: *const f32, (mask, _): (Self::u32s, usize)) -> Self::f32s {
        // SAFETY: `vmaskmovps` reads only the lanes of the mask, readable by the
        // caller's contract; masked-off lanes do not fault.
        pulp::cast(unsafe { self.avx._mm256_maskload_ps(p, pulp::cast(mask)) })
    }

    #[inline(always)]
    unsafe fn store_masked(self, p: *mut f32, v: Self::f32s, (_, n): (Self::u32s, usize)) {
        // SAFETY: the caller's contract; n <= 8 lanes.
        unsafe { store_first::<Self>(p, v, n) }
    }
}

#[cfg(all(target_arch = "x86_64", feature = "avx512"))]
impl SimdExt for pulp::x86::V4 {
    #[inline(always)]
    fn split_even_odd(self, lo: Self::f32s, hi: Self::f32s) -> (Self::f32s, Self::f32s) {
        use core::arch::x86_64::{__m512, __m512i};
        let (lo, hi): (__m512, __m512) = (pulp::cast(lo), pulp::cast(hi));
        let even_idx: __m512i =
            pulp::cast([0u32, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30]);
        let odd_idx: __m512i =
            pulp::cast([1u32, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31]);
        let even = self.avx512f._mm512_permutex2var_ps(lo, even_idx, hi);
        let odd = self.avx512f._mm512_permutex2var_ps(lo, odd_idx, hi);
        (pulp::cast(even), pulp::cast(odd))
    }

    #[inline(always)]
    fn relu(self, a: Self::f32s) -> Self::f32s {
        self.relu_at(a, self.splat_f32s(0.0))
    }

    #[inline(always)]
    fn relu_at(self, a: Self::f32s, floor: Self::f32s) -> Self::f32s {
        use core::arch::x86_64::__m512;
        let (floor, a): (__m512, __m512) = (pulp::cast(floor), pulp::cast(a));
        // vmaxps returns its second operand (a) when either is NaN.
        pulp::cast(self.avx512f._mm512_max_ps(floor, a))
    }

    #[inline(always)]
    fn permute2(self, lo: Self::f32s, hi: Self::f32s, idx: Self::u32s) -> Self::f32s {
        use core::arch::x86_64::{__m512, __m512i};
        let (lo, hi, idx): (__m512, __m512, __m512i) =
            (pulp::cast(lo), pulp::cast(hi), pulp::cast(idx));
        pulp::cast(self.avx512f._mm512_permutex2var_ps(lo, idx, hi))
    }

    type Prefix = u16;

    type Panel = pulp::x86::V3;

    #[inline(always)]
    fn panel(self) -> pulp::x86::V3 {
        *self
    }

    #[inline(always)]
    fn prefix(self, n: usize) -> u16 {
        ((1u32 << n.min(16)) - 1) as u16
    }

    #[inline(always)]
    unsafe fn load_masked(self, p: *const f32, k: u16) -> Self::f32s {
        // SAFETY: the masked load reads only the lanes of k, readable by the
        // caller's contract; masked-off lanes do not fault.
        pulp::cast(unsafe { self.avx512f._mm512_maskz_loadu_ps(k, p) })
    }

    const MASKED_STORE: bool = true;

    #[inline(always)]
    unsafe fn store_masked(self, p: *mut f32, v: Self::f32s, k: u16) {
        // SAFETY: the masked store writes only the lanes of k, writable by the
        // caller's contract.
        unsafe { self.avx512f._mm512_mask_storeu_ps(p, k, pulp::cast(v)) }
    }
}

/// A vector of `LANES` u32s from the first entries of `t` (a permute's indices).
#[inline(always)]
pub(crate) fn u32_table<S: SimdExt>(t: &[u32; 16]) -> S::u32s {
    // SAFETY: `t` holds 16 >= LANES u32s; `u32s` is plain data.
    unsafe { t.as_ptr().cast::<S::u32s>().read_unaligned() }
}

/// The [`SimdExt::permute2`] indices that move `(prev, cur)` up one lane:
/// `prev[LANES - 1], cur[0], .., cur[LANES - 2]` (a row's left neighbours, the
/// previous vector's last lane carried in).
#[inline(always)]
pub(crate) fn up_one_lane<S: SimdExt>() -> S::u32s {
    let l = S::F32_LANES;
    let mut t = [0u32; 16];
    for (i, v) in t.iter_mut().enumerate().take(l) {
        *v = (l + i - 1) as u32;
    }
    u32_table::<S>(&t)
}

/// `new` where the mask `m` is all-ones, `old` where it is zero (bitwise).
#[inline(always)]
pub(crate) fn blend<S: SimdExt>(simd: S, old: S::f32s, new: S::f32s, m: S::f32s) -> S::f32s {
    let (o, n, m) = (
        simd.transmute_u32s_f32s(old),
        simd.transmute_u32s_f32s(new),
        simd.transmute_u32s_f32s(m),
    );
    simd.transmute_f32s_u32s(simd.xor_u32s(o, simd.and_u32s(simd.xor_u32s(o, n), m)))
}

/// Whether this CPU is Intel's (CPUID vendor "GenuineIntel"; read once). Kernels
/// whose software prefetches measured slower on an Intel core than its own L2
/// streamer leave them out there. Under Miri, which cannot run CPUID: false.
pub(crate) fn intel_cpu() -> bool {
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    {
        static INTEL: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *INTEL.get_or_init(|| {
            // (`__cpuid` is a safe function from Rust 1.94 on; the crate builds
            // from 1.89.)
            #[allow(unused_unsafe)]
            // SAFETY: CPUID leaf 0 (the vendor string) exists on every x86-64 CPU.
            let r = unsafe { core::arch::x86_64::__cpuid(0) };
            [r.ebx, r.edx, r.ecx] == [*b"Genu", *b"ineI", *b"ntel"].map(u32::from_le_bytes)
        })
    }
    #[cfg(not(all(target_arch = "x86_64", not(miri))))]
    false
}

/// Prefetches the cache line of `data[at]` into L2 (nothing when `at` is past
/// `data`, or on targets without a prefetch hint).
#[inline(always)]
pub(crate) fn prefetch_l2(data: &[f32], at: usize) {
    #[cfg(target_arch = "x86_64")]
    if let Some(v) = data.get(at) {
        // SAFETY: a prefetch never faults; the address is inside `data` anyway.
        unsafe {
            core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T1 }>(
                (v as *const f32).cast(),
            )
        };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (data, at);
}

/// Unaligned vector load.
///
/// # Safety
/// `p .. p + S::F32_LANES` must be readable.
#[inline(always)]
pub(crate) unsafe fn load<S: Simd>(p: *const f32) -> S::f32s {
    // SAFETY: the caller guarantees the range is readable; `f32s` is plain data.
    unsafe { p.cast::<S::f32s>().read_unaligned() }
}

/// Unaligned vector store.
///
/// # Safety
/// `p .. p + S::F32_LANES` must be writable.
#[inline(always)]
pub(crate) unsafe fn store<S: Simd>(p: *mut f32, v: S::f32s) {
    // SAFETY: the caller guarantees the range is writable; `f32s` is plain data.
    unsafe { p.cast::<S::f32s>().write_unaligned(v) }
}

/// Stores the first `n` lanes of `v` (`n <= S::F32_LANES`).
///
/// # Safety
/// `p .. p + n` must be writable.
#[inline(always)]
pub(crate) unsafe fn store_first<S: Simd>(p: *mut f32, v: S::f32s, n: usize) {
    let mut tmp = [0.0f32; MAX_LANES];
    // SAFETY: `tmp` holds MAX_LANES >= F32_LANES floats.
    unsafe { store::<S>(tmp.as_mut_ptr(), v) };
    // SAFETY: n <= F32_LANES <= MAX_LANES; the caller guarantees the destination.
    unsafe { copy_small(tmp.as_ptr(), p, n) };
}

/// Copies `n < 32` floats with fixed-size moves (no `memcpy` call: a call inside a
/// kernel's loop nest makes LLVM spill every vector register live across it).
///
/// # Safety
/// `src .. src + n` readable, `dst .. dst + n` writable, not overlapping.
#[inline(always)]
pub(crate) unsafe fn copy_small(src: *const f32, dst: *mut f32, n: usize) {
    let mut at = 0;
    for size in [16, 8, 4, 2, 1] {
        if n & size != 0 {
            // SAFETY: at + size <= n (the bits of n are disjoint).
            unsafe {
                match size {
                    16 => core::ptr::copy_nonoverlapping(src.add(at), dst.add(at), 16),
                    8 => core::ptr::copy_nonoverlapping(src.add(at), dst.add(at), 8),
                    4 => core::ptr::copy_nonoverlapping(src.add(at), dst.add(at), 4),
                    2 => core::ptr::copy_nonoverlapping(src.add(at), dst.add(at), 2),
                    _ => core::ptr::copy_nonoverlapping(src.add(at), dst.add(at), 1),
                }
            }
            at += size;
        }
    }
}

/// Fills `dst` with `v` using vector stores (no `memset` call, see [`copy_small`]).
#[inline(always)]
pub(crate) fn fill<S: Simd>(simd: S, dst: &mut [f32], v: f32) {
    let l = S::F32_LANES;
    let vv = simd.splat_f32s(v);
    let mut chunks = dst.chunks_exact_mut(l);
    for c in &mut chunks {
        // SAFETY: `c` holds l floats.
        unsafe { store::<S>(c.as_mut_ptr(), vv) };
    }
    let rest = chunks.into_remainder();
    for x in rest {
        *x = v;
    }
}

/// Output rows at least this wide run the depthwise conv and the pools with
/// AVX-512; narrower ones with AVX2 ([`Level::for_rows`]). Measured on an AMD EPYC
/// Zen 4 (probe, best of N, AVX-512 against AVX2, us): depthwise s2 output width
/// 160: 585 / 1164, 80: 247 / 300, 40: 141 / 145, 28: 43 / 37, 14: 18.8 / 13.0;
/// depthwise s1 width 160: 289 / 272, 7: 10.3 / 8.5; average pool s2 width 80:
/// 746 / 1268, 40: 387 / 312, 7: 37.1 / 24.8; max pool s2 width 56: 73.6 / 63.6.
const ROW_WIDE_FROM: usize = 64;

/// The widest vector of any level, in floats (AVX-512).
pub(crate) const MAX_LANES: usize = 16;

/// A kernel body, generic over the instruction set.
pub(crate) trait Kernel {
    /// What the kernel returns.
    type Output;
    /// Runs the kernel with `simd`. Implementations are `#[inline(always)]`.
    fn run<S: SimdExt>(self, simd: S) -> Self::Output;
}

/// Adapts a [`Kernel`] to pulp's [`WithSimd`], carrying the concrete level so the
/// kernel sees [`SimdExt`].
struct Adapt<K, T>(K, T);

impl<K: Kernel, T: SimdExt> WithSimd for Adapt<K, T> {
    type Output = K::Output;
    #[inline(always)]
    fn with_simd<S: Simd>(self, _: S) -> K::Output {
        self.0.run(self.1)
    }
}

#[derive(Clone, Copy, Debug)]
enum Inner {
    Scalar,
    #[cfg(target_arch = "x86_64")]
    V3(pulp::x86::V3),
    #[cfg(all(target_arch = "x86_64", feature = "avx512"))]
    V4(pulp::x86::V4),
}

/// An instruction-set level the portable kernels can run with. A value can only be
/// built for a level this CPU supports.
#[derive(Clone, Copy, Debug)]
pub struct Level(Inner);

impl Level {
    /// pulp's scalar fallback (one float per "vector"); always available.
    pub fn scalar() -> Self {
        Level(Inner::Scalar)
    }

    /// AVX2 + FMA (pulp's `V3`, 8 floats per vector), if this CPU has it.
    pub fn avx2_fma() -> Option<Self> {
        #[cfg(target_arch = "x86_64")]
        if let Some(s) = pulp::x86::V3::try_new() {
            return Some(Level(Inner::V3(s)));
        }
        None
    }

    /// AVX-512 (pulp's `V4`, 16 floats per vector), if this CPU has it and the crate
    /// was built with the `avx512` feature.
    pub fn avx512() -> Option<Self> {
        #[cfg(all(target_arch = "x86_64", feature = "avx512"))]
        if let Some(s) = pulp::x86::V4::try_new() {
            return Some(Level(Inner::V4(s)));
        }
        None
    }

    /// The best level this CPU supports.
    pub fn best() -> Self {
        Self::avx512()
            .or_else(Self::avx2_fma)
            .unwrap_or_else(Self::scalar)
    }

    /// The level for a kernel whose vectors run along output rows of `width`
    /// floats (the depthwise conv, the pools): the best one for rows of at least
    /// 64 floats (`ROW_WIDE_FROM`) or a whole number of its vectors, else AVX2+FMA
    /// where the CPU has it. On a short row a 16-lane level's partial last vector
    /// costs a whole one.
    pub fn for_rows(width: usize) -> Self {
        let best = Self::best();
        if width >= ROW_WIDE_FROM || width.is_multiple_of(best.lanes()) {
            return best;
        }
        Self::avx2_fma().unwrap_or(best)
    }

    /// Floats per vector.
    pub fn lanes(self) -> usize {
        match self.0 {
            Inner::Scalar => 1,
            #[cfg(target_arch = "x86_64")]
            Inner::V3(_) => 8,
            #[cfg(all(target_arch = "x86_64", feature = "avx512"))]
            Inner::V4(_) => 16,
        }
    }

    /// Every level this CPU supports, best first.
    pub fn available() -> Vec<Self> {
        [Self::avx512(), Self::avx2_fma(), Some(Self::scalar())]
            .into_iter()
            .flatten()
            .collect()
    }

    /// Name of the instruction set: "avx512", "avx2+fma" or "scalar".
    pub fn name(self) -> &'static str {
        match self.0 {
            Inner::Scalar => "scalar",
            #[cfg(target_arch = "x86_64")]
            Inner::V3(_) => "avx2+fma",
            #[cfg(all(target_arch = "x86_64", feature = "avx512"))]
            Inner::V4(_) => "avx512",
        }
    }

    /// Runs `k` compiled for this level.
    #[inline]
    pub(crate) fn run<K: Kernel>(self, k: K) -> K::Output {
        match self.0 {
            Inner::Scalar => {
                let s = pulp::Scalar::new();
                Simd::vectorize(s, Adapt(k, s))
            }
            #[cfg(target_arch = "x86_64")]
            Inner::V3(s) => Simd::vectorize(s, Adapt(k, s)),
            #[cfg(all(target_arch = "x86_64", feature = "avx512"))]
            Inner::V4(s) => Simd::vectorize(s, Adapt(k, s)),
        }
    }
}
