//! Constant tensors: decoding `TensorProto` (raw little-endian data or the typed
//! fields) with every length checked against the dims.

use super::error::OnnxError;
use super::proto::{data_type, TensorProto};

/// Elements of a constant: floats (weights) or integers (shapes, axes, pads).
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Data {
    /// FLOAT and DOUBLE tensors.
    F32(Vec<f32>),
    /// INT64 and INT32 tensors.
    I64(Vec<i64>),
}

/// A constant tensor with a fully known shape.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Const {
    /// Shape (empty for a scalar).
    pub dims: Vec<usize>,
    /// `product(dims)` elements, row-major.
    pub data: Data,
}

/// Product of `dims`, `None` on overflow.
pub(crate) fn numel(dims: &[usize]) -> Option<usize> {
    dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

fn type_name(t: i32) -> String {
    let name = match t {
        0 => "UNDEFINED",
        1 => "FLOAT",
        2 => "UINT8",
        3 => "INT8",
        4 => "UINT16",
        5 => "INT16",
        6 => "INT32",
        7 => "INT64",
        8 => "STRING",
        9 => "BOOL",
        10 => "FLOAT16",
        11 => "DOUBLE",
        12 => "UINT32",
        13 => "UINT64",
        16 => "BFLOAT16",
        _ => return format!("data type {t}"),
    };
    name.to_string()
}

/// Name of an ONNX element type for messages.
pub(crate) fn data_type_name(t: i32) -> String {
    type_name(t)
}

impl Const {
    /// A 1-D integer constant.
    pub fn ints(v: Vec<i64>) -> Const {
        Const {
            dims: vec![v.len()],
            data: Data::I64(v),
        }
    }

    /// A scalar float constant.
    pub fn scalar_f32(v: f32) -> Const {
        Const {
            dims: vec![],
            data: Data::F32(vec![v]),
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match &self.data {
            Data::F32(v) => v.len(),
            Data::I64(v) => v.len(),
        }
    }

    /// The elements as floats, if this is a float tensor.
    pub fn f32s(&self) -> Option<&[f32]> {
        match &self.data {
            Data::F32(v) => Some(v),
            Data::I64(_) => None,
        }
    }

    /// The elements as integers, if this is an integer tensor.
    pub fn i64s(&self) -> Option<&[i64]> {
        match &self.data {
            Data::I64(v) => Some(v),
            Data::F32(_) => None,
        }
    }

    /// The single element as a float (integers converted), if there is exactly one.
    pub fn scalar(&self) -> Option<f32> {
        if self.len() != 1 {
            return None;
        }
        match &self.data {
            Data::F32(v) => v.first().copied(),
            Data::I64(v) => v.first().map(|&x| x as f32),
        }
    }

    /// Decodes a `TensorProto`, taking its buffers. `fallback_name` names it in
    /// errors when the proto has no name (attribute tensors).
    pub fn from_proto(t: TensorProto, fallback_name: &str) -> Result<Const, OnnxError> {
        let name = t
            .name
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| fallback_name.to_string());
        let err = |what: String| OnnxError::Tensor {
            tensor: name.clone(),
            what,
        };
        if t.data_location == Some(1) || !t.external_data.is_empty() {
            return Err(OnnxError::ExternalData {
                tensor: name.clone(),
            });
        }
        if t.segment.is_some() {
            return Err(err("segmented tensors are not supported".into()));
        }
        let dims = t
            .dims
            .iter()
            .map(|&d| {
                usize::try_from(d).map_err(|_| err(format!("negative dimension in {:?}", t.dims)))
            })
            .collect::<Result<Vec<usize>, _>>()?;
        let n = numel(&dims).ok_or_else(|| err(format!("dims {dims:?} overflow")))?;
        let dt = t.data_type.unwrap_or(0);
        let raw = t.raw_data.unwrap_or_default();
        let has_raw = !raw.is_empty();
        let check = |have: usize, what: &str| -> Result<(), OnnxError> {
            if have != n {
                Err(err(format!(
                    "{what} holds {have} element(s) but dims {dims:?} need {n}"
                )))
            } else {
                Ok(())
            }
        };
        let raw_elems = |size: usize| -> Result<(), OnnxError> {
            if !raw.len().is_multiple_of(size) || raw.len() / size != n {
                Err(err(format!(
                    "raw_data has {} bytes but dims {dims:?} of {} need {} bytes",
                    raw.len(),
                    type_name(dt),
                    n.saturating_mul(size)
                )))
            } else {
                Ok(())
            }
        };
        let data = match dt {
            data_type::FLOAT => {
                if has_raw {
                    raw_elems(4)?;
                    Data::F32(
                        raw.chunks_exact(4)
                            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                            .collect(),
                    )
                } else {
                    check(t.float_data.len(), "float_data")?;
                    Data::F32(t.float_data)
                }
            }
            data_type::DOUBLE => {
                if has_raw {
                    raw_elems(8)?;
                    Data::F32(
                        raw.chunks_exact(8)
                            .map(|c| {
                                f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]])
                                    as f32
                            })
                            .collect(),
                    )
                } else {
                    check(t.double_data.len(), "double_data")?;
                    Data::F32(t.double_data.iter().map(|&v| v as f32).collect())
                }
            }
            data_type::INT64 => {
                if has_raw {
                    raw_elems(8)?;
                    Data::I64(
                        raw.chunks_exact(8)
                            .map(|c| {
                                i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]])
                            })
                            .collect(),
                    )
                } else {
                    check(t.int64_data.len(), "int64_data")?;
                    Data::I64(t.int64_data)
                }
            }
            data_type::INT32 => {
                if has_raw {
                    raw_elems(4)?;
                    Data::I64(
                        raw.chunks_exact(4)
                            .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64)
                            .collect(),
                    )
                } else {
                    check(t.int32_data.len(), "int32_data")?;
                    Data::I64(t.int32_data.iter().map(|&v| v as i64).collect())
                }
            }
            other => {
                return Err(err(format!(
                    "element type {} is not supported (FLOAT, DOUBLE, INT64 and INT32 are)",
                    type_name(other)
                )))
            }
        };
        Ok(Const { dims, data })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proto(dims: Vec<i64>, dt: i32) -> TensorProto {
        TensorProto {
            dims,
            data_type: Some(dt),
            name: Some("t".into()),
            ..Default::default()
        }
    }

    #[test]
    fn raw_and_typed_floats_agree() {
        let mut a = proto(vec![2, 2], data_type::FLOAT);
        a.raw_data = Some(
            [1.0f32, -2.0, 3.5, 0.25]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
        );
        let mut b = proto(vec![2, 2], data_type::FLOAT);
        b.float_data = vec![1.0, -2.0, 3.5, 0.25];
        let a = Const::from_proto(a, "x").unwrap();
        let b = Const::from_proto(b, "x").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.dims, vec![2, 2]);
    }

    #[test]
    fn int32_and_int64_become_i64() {
        let mut a = proto(vec![3], data_type::INT32);
        a.int32_data = vec![1, -1, 7];
        let mut b = proto(vec![3], data_type::INT64);
        b.raw_data = Some([1i64, -1, 7].iter().flat_map(|v| v.to_le_bytes()).collect());
        assert_eq!(
            Const::from_proto(a, "x").unwrap().i64s(),
            Some(&[1i64, -1, 7][..])
        );
        assert_eq!(
            Const::from_proto(b, "x").unwrap().i64s(),
            Some(&[1i64, -1, 7][..])
        );
    }

    #[test]
    fn length_mismatches_are_errors() {
        let mut a = proto(vec![2, 3], data_type::FLOAT);
        a.raw_data = Some(vec![0; 20]);
        let e = Const::from_proto(a, "x").unwrap_err().to_string();
        assert!(
            e.contains("raw_data has 20 bytes") && e.contains("24 bytes"),
            "{e}"
        );
        let mut b = proto(vec![2, 3], data_type::FLOAT);
        b.float_data = vec![0.0; 5];
        let e = Const::from_proto(b, "x").unwrap_err().to_string();
        assert!(e.contains("float_data holds 5"), "{e}");
        let c = proto(vec![-1], data_type::FLOAT);
        assert!(Const::from_proto(c, "x").is_err());
        let d = proto(vec![i64::MAX, i64::MAX], data_type::FLOAT);
        assert!(Const::from_proto(d, "x")
            .unwrap_err()
            .to_string()
            .contains("overflow"));
        let mut e = proto(vec![1], 10);
        e.raw_data = Some(vec![0, 0]);
        assert!(Const::from_proto(e, "x")
            .unwrap_err()
            .to_string()
            .contains("FLOAT16"));
    }

    #[test]
    fn external_data_is_refused() {
        let mut a = proto(vec![1], data_type::FLOAT);
        a.data_location = Some(1);
        assert!(matches!(
            Const::from_proto(a, "x"),
            Err(OnnxError::ExternalData { .. })
        ));
    }
}
