//! A node being imported: its name for messages and typed access to its
//! attributes.

use super::error::OnnxError;
use super::proto::{attribute_type as at, AttributeProto, NodeProto, TensorProto};

/// A node of the file with what the op handlers need.
pub(crate) struct NodeCtx<'a> {
    /// The node.
    pub proto: &'a NodeProto,
    /// Display name (the node's name, or its index and first output).
    pub name: String,
    /// Op type.
    pub op: &'a str,
    /// Opset of the default domain.
    pub opset: i64,
}

impl NodeCtx<'_> {
    /// An error about this node.
    pub fn err(&self, what: impl Into<String>) -> OnnxError {
        OnnxError::Node {
            node: self.name.clone(),
            op: self.op.to_string(),
            what: what.into(),
        }
    }

    /// Refuses attributes outside `allowed` (an attribute the importer does not
    /// know could change the meaning of the op).
    pub fn only_attrs(&self, allowed: &[&str]) -> Result<(), OnnxError> {
        for a in &self.proto.attribute {
            let name = a.name.as_deref().unwrap_or("");
            if a.ref_attr_name.as_deref().is_some_and(|r| !r.is_empty()) {
                return Err(self.err(format!(
                    "attribute '{name}' refers to a function attribute, which is not supported"
                )));
            }
            if !allowed.contains(&name) {
                return Err(self.err(format!("attribute '{name}' is not supported")));
            }
        }
        Ok(())
    }

    fn attr(&self, name: &str) -> Option<&AttributeProto> {
        self.proto
            .attribute
            .iter()
            .find(|a| a.name.as_deref() == Some(name))
    }

    /// The attribute's type, inferred from its value fields when not set.
    fn kind(a: &AttributeProto) -> i32 {
        match a.r#type {
            Some(t) if t != at::UNDEFINED => t,
            _ => {
                if a.f.is_some() {
                    at::FLOAT
                } else if a.i.is_some() {
                    at::INT
                } else if a.s.is_some() {
                    at::STRING
                } else if a.t.is_some() {
                    at::TENSOR
                } else if !a.floats.is_empty() {
                    at::FLOATS
                } else if !a.ints.is_empty() {
                    at::INTS
                } else {
                    at::UNDEFINED
                }
            }
        }
    }

    fn typed(&self, name: &str, want: i32) -> Result<Option<&AttributeProto>, OnnxError> {
        let Some(a) = self.attr(name) else {
            return Ok(None);
        };
        let k = Self::kind(a);
        // An empty list leaves nothing to infer its type from.
        if k == want || (k == at::UNDEFINED && (want == at::INTS || want == at::FLOATS)) {
            Ok(Some(a))
        } else {
            Err(self.err(format!(
                "attribute '{name}' has type {k}, expected type {want}"
            )))
        }
    }

    /// An INT attribute, or `default`.
    pub fn int(&self, name: &str, default: i64) -> Result<i64, OnnxError> {
        Ok(self
            .typed(name, at::INT)?
            .map_or(default, |a| a.i.unwrap_or(0)))
    }

    /// A FLOAT attribute, or `default`.
    pub fn float(&self, name: &str, default: f32) -> Result<f32, OnnxError> {
        Ok(self
            .typed(name, at::FLOAT)?
            .map_or(default, |a| a.f.unwrap_or(0.0)))
    }

    /// An INTS attribute, if present.
    pub fn ints(&self, name: &str) -> Result<Option<Vec<i64>>, OnnxError> {
        Ok(self.typed(name, at::INTS)?.map(|a| a.ints.clone()))
    }

    /// A FLOATS attribute, if present.
    pub fn floats(&self, name: &str) -> Result<Option<Vec<f32>>, OnnxError> {
        Ok(self.typed(name, at::FLOATS)?.map(|a| a.floats.clone()))
    }

    /// A STRING attribute, if present.
    pub fn string(&self, name: &str) -> Result<Option<String>, OnnxError> {
        match self.typed(name, at::STRING)? {
            None => Ok(None),
            Some(a) => String::from_utf8(a.s.clone().unwrap_or_default())
                .map(Some)
                .map_err(|_| self.err(format!("attribute '{name}' is not UTF-8"))),
        }
    }

    /// A TENSOR attribute, if present.
    pub fn tensor(&self, name: &str) -> Result<Option<TensorProto>, OnnxError> {
        match self.typed(name, at::TENSOR)? {
            None => Ok(None),
            Some(a) => {
                a.t.clone()
                    .map(Some)
                    .ok_or_else(|| self.err(format!("attribute '{name}' holds no tensor")))
            }
        }
    }

    /// Whether the attribute is present.
    pub fn has(&self, name: &str) -> bool {
        self.attr(name).is_some()
    }
}
