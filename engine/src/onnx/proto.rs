//! The subset of `onnx.proto` (ONNX IR, proto2 syntax) that the importer reads,
//! written by hand as prost messages so that no `protoc` is needed at build time.
//!
//! Field numbers match `onnx.proto` exactly. Fields that are not declared here
//! (doc strings, sub-graphs of control-flow attributes, training info, functions,
//! quantization annotations, ...) are skipped by the decoder as unknown fields, so a
//! file that uses them still decodes; the importer then refuses the node that needs
//! them by its op type. Tests also use these types to build and encode models.

/// `ModelProto`: the top-level container of an ONNX file.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ModelProto {
    /// IR version of the file format.
    #[prost(int64, optional, tag = "1")]
    pub ir_version: Option<i64>,
    /// Operator sets the model uses (one per domain).
    #[prost(message, repeated, tag = "8")]
    pub opset_import: Vec<OperatorSetIdProto>,
    /// Name of the tool that wrote the file ("pytorch", "tf2onnx", ...).
    #[prost(string, optional, tag = "2")]
    pub producer_name: Option<String>,
    /// Version of that tool.
    #[prost(string, optional, tag = "3")]
    pub producer_version: Option<String>,
    /// The network.
    #[prost(message, optional, tag = "7")]
    pub graph: Option<GraphProto>,
    /// Free-form key/value metadata (the importer reads `shufflenet.*` keys).
    #[prost(message, repeated, tag = "14")]
    pub metadata_props: Vec<StringStringEntryProto>,
}

/// `OperatorSetIdProto`: a domain and its opset version.
#[derive(Clone, PartialEq, prost::Message)]
pub struct OperatorSetIdProto {
    /// Domain; empty or "ai.onnx" is the default operator set.
    #[prost(string, optional, tag = "1")]
    pub domain: Option<String>,
    /// Opset version.
    #[prost(int64, optional, tag = "2")]
    pub version: Option<i64>,
}

/// `StringStringEntryProto`: one metadata entry.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StringStringEntryProto {
    /// Key.
    #[prost(string, optional, tag = "1")]
    pub key: Option<String>,
    /// Value.
    #[prost(string, optional, tag = "2")]
    pub value: Option<String>,
}

/// `GraphProto`: nodes, initializers, inputs and outputs.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GraphProto {
    /// Nodes (ONNX requires topological order; the importer sorts them anyway).
    #[prost(message, repeated, tag = "1")]
    pub node: Vec<NodeProto>,
    /// Graph name.
    #[prost(string, optional, tag = "2")]
    pub name: Option<String>,
    /// Constant tensors (weights).
    #[prost(message, repeated, tag = "5")]
    pub initializer: Vec<TensorProto>,
    /// Sparse constant tensors (refused when present).
    #[prost(message, repeated, tag = "15")]
    pub sparse_initializer: Vec<SparseTensorProto>,
    /// Graph inputs (before IR 4 this also lists the initializers).
    #[prost(message, repeated, tag = "11")]
    pub input: Vec<ValueInfoProto>,
    /// Graph outputs.
    #[prost(message, repeated, tag = "12")]
    pub output: Vec<ValueInfoProto>,
}

/// `SparseTensorProto`, declared only to detect sparse initializers.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SparseTensorProto {
    /// Dense shape.
    #[prost(int64, repeated, packed = "false", tag = "3")]
    pub dims: Vec<i64>,
}

/// `NodeProto`: one operator application.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NodeProto {
    /// Input value names; an empty name is an omitted optional input.
    #[prost(string, repeated, tag = "1")]
    pub input: Vec<String>,
    /// Output value names; an empty name is an omitted optional output.
    #[prost(string, repeated, tag = "2")]
    pub output: Vec<String>,
    /// Node name (may be empty).
    #[prost(string, optional, tag = "3")]
    pub name: Option<String>,
    /// Operator type ("Conv", "Relu", ...).
    #[prost(string, optional, tag = "4")]
    pub op_type: Option<String>,
    /// Operator domain; empty or "ai.onnx" is the default set.
    #[prost(string, optional, tag = "7")]
    pub domain: Option<String>,
    /// Attributes.
    #[prost(message, repeated, tag = "5")]
    pub attribute: Vec<AttributeProto>,
}

/// `AttributeProto.AttributeType` values the importer distinguishes.
pub mod attribute_type {
    /// Not set (files older than IR 2 leave it out).
    pub const UNDEFINED: i32 = 0;
    /// `f`.
    pub const FLOAT: i32 = 1;
    /// `i`.
    pub const INT: i32 = 2;
    /// `s`.
    pub const STRING: i32 = 3;
    /// `t`.
    pub const TENSOR: i32 = 4;
    /// `g` (a sub-graph; not declared here).
    pub const GRAPH: i32 = 5;
    /// `floats`.
    pub const FLOATS: i32 = 6;
    /// `ints`.
    pub const INTS: i32 = 7;
    /// `strings` (not declared here).
    pub const STRINGS: i32 = 8;
}

/// `AttributeProto`: a named attribute of a node.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AttributeProto {
    /// Attribute name.
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    /// Set inside functions only: refers to an attribute of the calling node.
    #[prost(string, optional, tag = "21")]
    pub ref_attr_name: Option<String>,
    /// Which of the value fields is used (see [`attribute_type`]).
    #[prost(int32, optional, tag = "20")]
    pub r#type: Option<i32>,
    /// Float value.
    #[prost(float, optional, tag = "2")]
    pub f: Option<f32>,
    /// Integer value.
    #[prost(int64, optional, tag = "3")]
    pub i: Option<i64>,
    /// String value (UTF-8 bytes).
    #[prost(bytes = "vec", optional, tag = "4")]
    pub s: Option<Vec<u8>>,
    /// Tensor value.
    #[prost(message, optional, tag = "5")]
    pub t: Option<TensorProto>,
    /// Float list.
    #[prost(float, repeated, packed = "false", tag = "7")]
    pub floats: Vec<f32>,
    /// Integer list.
    #[prost(int64, repeated, packed = "false", tag = "8")]
    pub ints: Vec<i64>,
}

/// `TensorProto.DataType` values the importer reads.
pub mod data_type {
    /// 32-bit float.
    pub const FLOAT: i32 = 1;
    /// 32-bit signed integer.
    pub const INT32: i32 = 6;
    /// 64-bit signed integer.
    pub const INT64: i32 = 7;
    /// 64-bit float.
    pub const DOUBLE: i32 = 11;
}

/// `TensorProto.Segment` (declared only to refuse segmented tensors).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Segment {
    /// First element.
    #[prost(int64, optional, tag = "1")]
    pub begin: Option<i64>,
    /// One past the last element.
    #[prost(int64, optional, tag = "2")]
    pub end: Option<i64>,
}

/// `TensorProto`: a constant tensor.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorProto {
    /// Shape.
    #[prost(int64, repeated, packed = "false", tag = "1")]
    pub dims: Vec<i64>,
    /// Element type (see [`data_type`]).
    #[prost(int32, optional, tag = "2")]
    pub data_type: Option<i32>,
    /// Segment of a larger tensor (refused).
    #[prost(message, optional, tag = "3")]
    pub segment: Option<Segment>,
    /// FLOAT elements (when not in `raw_data`).
    #[prost(float, repeated, tag = "4")]
    pub float_data: Vec<f32>,
    /// INT32 (and narrower) elements.
    #[prost(int32, repeated, tag = "5")]
    pub int32_data: Vec<i32>,
    /// INT64 elements.
    #[prost(int64, repeated, tag = "7")]
    pub int64_data: Vec<i64>,
    /// Tensor name.
    #[prost(string, optional, tag = "8")]
    pub name: Option<String>,
    /// Elements as little-endian bytes.
    #[prost(bytes = "vec", optional, tag = "9")]
    pub raw_data: Option<Vec<u8>>,
    /// DOUBLE elements.
    #[prost(double, repeated, tag = "10")]
    pub double_data: Vec<f64>,
    /// Location of external data (refused).
    #[prost(message, repeated, tag = "13")]
    pub external_data: Vec<StringStringEntryProto>,
    /// 0 = inside the file, 1 = external (refused).
    #[prost(int32, optional, tag = "14")]
    pub data_location: Option<i32>,
}

/// `ValueInfoProto`: name and type of a graph input or output.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ValueInfoProto {
    /// Value name.
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    /// Type.
    #[prost(message, optional, tag = "2")]
    pub r#type: Option<TypeProto>,
}

/// `TypeProto`: only its `tensor_type` member is declared; other members of the
/// oneof (sequences, maps, ...) decode as an absent `tensor_type`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TypeProto {
    /// Tensor type.
    #[prost(message, optional, tag = "1")]
    pub tensor_type: Option<TypeProtoTensor>,
}

/// `TypeProto.Tensor`: element type and shape.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TypeProtoTensor {
    /// Element type (see [`data_type`]).
    #[prost(int32, optional, tag = "1")]
    pub elem_type: Option<i32>,
    /// Shape, if known.
    #[prost(message, optional, tag = "2")]
    pub shape: Option<TensorShapeProto>,
}

/// `TensorShapeProto`: a list of dimensions.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorShapeProto {
    /// Dimensions.
    #[prost(message, repeated, tag = "1")]
    pub dim: Vec<Dimension>,
}

/// `TensorShapeProto.Dimension`: a number or a symbolic name.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Dimension {
    /// The value.
    #[prost(oneof = "DimensionValue", tags = "1, 2")]
    pub value: Option<DimensionValue>,
}

/// The `value` oneof of [`Dimension`].
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum DimensionValue {
    /// A fixed size.
    #[prost(int64, tag = "1")]
    DimValue(i64),
    /// A symbolic size ("batch", "height", ...).
    #[prost(string, tag = "2")]
    DimParam(String),
}
