//! The C API: opaque model and session handles, integer status codes and a
//! per-thread last error message. `engine/include/shufflenet.h` declares exactly the
//! functions of this module (`engine/tests/capi_header.rs` fails on any drift).
//!
//! Contract at the boundary:
//! - every exported function validates its pointers (NULL, alignment) and lengths
//!   and returns a status code rather than crashing;
//! - every exported function runs its body under `catch_unwind`: an internal panic
//!   (an engine bug) becomes [`SnStatus::ErrInternal`] and never unwinds into C.
//!   This needs `panic = "unwind"`, which the workspace's release profile sets; an
//!   application that builds the library with `panic = "abort"` gets an abort instead;
//! - the only global state is the calling thread's last error message.
//!
//! Thread rules: a model handle may be used by sessions on many threads at once; a
//! session is used by one thread at a time. Sessions hold a reference count on the
//! model, so freeing the model handle while sessions exist is safe.
//!
//! The raw-pointer reads this needs are confined to this module (`ptr.rs` and the
//! handle conversions), each with its `SAFETY:` argument.

mod guard;
mod model;
mod ptr;
mod session;
mod status;

pub use guard::{sn_last_error, sn_status_message, sn_version};
pub use model::{
    sn_model_default_size, sn_model_description, sn_model_free, sn_model_from_memory,
    sn_model_input_channels, sn_model_input_layout, sn_model_open, sn_model_preprocess, SnModel,
};
pub use session::{
    sn_session_create, sn_session_free, sn_session_input_len, sn_session_output_len,
    sn_session_output_shape, sn_session_run, SnSession,
};
pub use status::{SnLayout, SnStatus};
