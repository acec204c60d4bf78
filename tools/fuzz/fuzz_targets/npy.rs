//! The `.npy` reader on arbitrary bytes. What parses has as many values as its
//! shape says, and writing it back gives a file that parses to the same shape and
//! the same bits.

#![no_main]

use libfuzzer_sys::fuzz_target;
use shufflenet::npy;

fuzz_target!(|data: &[u8]| {
    let Ok(a) = npy::parse(data) else {
        return;
    };
    assert_eq!(
        Some(a.data.len()),
        a.shape.iter().try_fold(1usize, |p, &d| p.checked_mul(d))
    );
    let b = npy::parse(&npy::to_bytes(&a.shape, &a.data)).expect("a written array parses");
    assert_eq!(a.shape, b.shape);
    let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&a.data), bits(&b.data));
});
