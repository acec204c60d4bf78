//! ShuffleNet v1 inference engine.
//!
//! Layers, each in its own module:
//! - [`graph`]: the plain network (family builder and ONNX importer produce it);
//! - [`family`]: the ShuffleNet v1 family of the paper with synthetic weights;
//! - [`complexity`]: multiply-adds and parameters per op;
//! - [`reference`](mod@reference): the scalar executor of the unfused graph, the oracle;
//! - [`plan`]: the passes lowering a graph into the fused op list ([`program`]);
//! - [`arena`] and [`exec`]: binding a program to an input size and running it;
//! - [`model_file`]: the model file format (write, inspect);
//! - [`model`]: a loaded, validated model whose weights are read in place;
//! - [`session`]: a model bound to an input size, with its arena;
//! - [`onnx`]: the ONNX importer (ONNX file -> [`graph::Graph`]);
//! - [`capi`]: the C API over models and sessions (`engine/include/shufflenet.h`).

pub mod arena;
mod arena_memory;
pub mod capi;
pub mod complexity;
mod error;
pub mod exec;
pub mod family;
pub mod graph;
#[cfg(all(target_os = "linux", not(miri)))]
mod huge_pages;
pub mod model;
pub mod model_file;
pub mod npy;
pub mod onnx;
pub mod plan;
pub mod program;
pub mod reference;
mod rng;
pub mod session;

pub use error::Error;
