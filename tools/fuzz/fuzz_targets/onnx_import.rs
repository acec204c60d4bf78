//! The ONNX importer on arbitrary bytes; what imports is lowered, written as a
//! model file, loaded, and run at a few small sizes.
//!
//! Properties: no panic anywhere; an imported graph is valid; lowering a valid
//! graph never produces an invalid program (`PlanError::Invalid` is a planner
//! bug); a lowered model always encodes and loads; the fused program accepts
//! exactly the input sizes the graph's own shape inference accepts.

#![no_main]

use libfuzzer_sys::fuzz_target;
use shufflenet::exec::SessionError;
use shufflenet::model::Model;
use shufflenet::plan::{self, PlanError};
use shufflenet::session::Session;
use shufflenet::{onnx, Error};
use shufflenet_fuzz::{exercise, options};
use std::sync::Arc;

fuzz_target!(|data: &[u8]| {
    let Ok(graph) = onnx::import(data, "fuzz.onnx") else {
        return;
    };
    graph.validate().expect("an imported graph is valid");
    let lowered = match plan::lower(&graph) {
        Ok(l) => l,
        Err(PlanError::Invalid(e)) => panic!("planner produced an invalid program: {e}"),
        Err(PlanError::Graph(_)) => return,
    };
    let model = Arc::new(Model::from_lowered(&lowered).expect("a lowered model loads"));
    for (h, w) in [(1, 1), (3, 7), (16, 16)] {
        let opts = options(0);
        let graph_ok = graph.shapes(h, w).is_ok();
        match Session::new(model.clone(), h, w, opts) {
            Ok(_) => assert!(
                graph_ok,
                "the fused program runs at {h}x{w}, the graph does not"
            ),
            Err(Error::Session(SessionError::Size { .. })) => {
                assert!(
                    !graph_ok,
                    "the graph runs at {h}x{w}, the fused program does not"
                )
            }
            Err(Error::Session(SessionError::ArenaTooLarge { .. })) => {}
            Err(e) => panic!("session {h}x{w}: unexpected error {e}"),
        }
    }
    exercise(model);
});
