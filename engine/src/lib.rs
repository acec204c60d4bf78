//! ShuffleNet v1 inference engine.
//!
//! Layers, each in its own module:
//! - [`graph`]: the plain network (family builder and ONNX importer produce it);
//! - [`family`]: the ShuffleNet v1 family of the paper with synthetic weights;
//! - [`complexity`]: multiply-adds and parameters per op;
//! - [`reference`]: the scalar executor of the unfused graph, the oracle;
//! - [`onnx`]: the ONNX importer (ONNX file -> [`graph::Graph`]).

pub mod complexity;
mod error;
pub mod family;
pub mod graph;
pub mod onnx;
pub mod reference;
mod rng;

pub use error::Error;
