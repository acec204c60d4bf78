//! Status codes and input layouts as C sees them, and the mapping of engine errors
//! to status codes.

use crate::exec::SessionError;
use crate::graph::Layout;
use crate::model_file::FileError;
use crate::Error;
use std::ffi::CStr;

/// The result of a C API call (`sn_status` in the header). Values are stable.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[must_use]
pub enum SnStatus {
    /// Success.
    Ok = 0,
    /// A required pointer argument (handle, buffer or out-parameter) is NULL.
    ErrNullPointer = 1,
    /// An argument is out of range: thread count, empty or misaligned buffer,
    /// overlapping input and output, unusable path.
    ErrInvalidArgument = 2,
    /// The model file cannot be opened or mapped.
    ErrIo = 3,
    /// The bytes are not a valid model (corrupt, truncated, wrong version).
    ErrModel = 4,
    /// The input height and width do not fit the network (zero, too small,
    /// overflowing).
    ErrSize = 5,
    /// The input size needs more working memory than the session limit (1 GiB).
    ErrArenaLimit = 6,
    /// The input buffer does not hold exactly the element count the session needs.
    ErrInputLength = 7,
    /// The output buffer (or array) is too small.
    ErrOutputCapacity = 8,
    /// An engine bug (including a caught panic); the message says what.
    ErrInternal = 9,
}

impl SnStatus {
    /// A static description.
    pub(crate) fn message(self) -> &'static CStr {
        match self {
            SnStatus::Ok => c"success",
            SnStatus::ErrNullPointer => c"a required pointer argument is NULL",
            SnStatus::ErrInvalidArgument => c"an argument is out of range",
            SnStatus::ErrIo => c"the model file cannot be opened or mapped",
            SnStatus::ErrModel => c"the bytes are not a valid model",
            SnStatus::ErrSize => c"the input size does not fit the network",
            SnStatus::ErrArenaLimit => c"the input size needs more memory than the limit",
            SnStatus::ErrInputLength => c"the input buffer has the wrong element count",
            SnStatus::ErrOutputCapacity => c"the output buffer is too small",
            SnStatus::ErrInternal => c"internal error (engine bug)",
        }
    }

    /// The status with this code, if there is one.
    pub(crate) fn from_code(code: i32) -> Option<SnStatus> {
        const ALL: [SnStatus; 10] = [
            SnStatus::Ok,
            SnStatus::ErrNullPointer,
            SnStatus::ErrInvalidArgument,
            SnStatus::ErrIo,
            SnStatus::ErrModel,
            SnStatus::ErrSize,
            SnStatus::ErrArenaLimit,
            SnStatus::ErrInputLength,
            SnStatus::ErrOutputCapacity,
            SnStatus::ErrInternal,
        ];
        ALL.into_iter().find(|s| *s as i32 == code)
    }
}

/// Memory layout of a model's input (`sn_layout` in the header).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SnLayout {
    /// Planar: all of channel 0, then channel 1, ... (`[1, C, H, W]`).
    Nchw = 0,
    /// Interleaved: the C values of each pixel together (`[1, H, W, C]`).
    Nhwc = 1,
}

impl From<Layout> for SnLayout {
    fn from(l: Layout) -> Self {
        match l {
            Layout::Nchw => SnLayout::Nchw,
            Layout::Nhwc => SnLayout::Nhwc,
        }
    }
}

/// A failed call: its status and the message stored as the thread's last error.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) status: SnStatus,
    pub(crate) message: String,
}

impl Failure {
    /// A failure with `status` and `message`.
    pub(crate) fn new(status: SnStatus, message: impl Into<String>) -> Self {
        Failure {
            status,
            message: message.into(),
        }
    }

    /// A NULL `what` argument.
    pub(crate) fn null(what: &str) -> Self {
        Failure::new(SnStatus::ErrNullPointer, format!("{what} is NULL"))
    }
}

impl From<FileError> for Failure {
    fn from(e: FileError) -> Self {
        let status = match e {
            FileError::Io { .. } => SnStatus::ErrIo,
            _ => SnStatus::ErrModel,
        };
        Failure::new(status, e.to_string())
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        let status = match &e {
            Error::File(FileError::Io { .. }) => SnStatus::ErrIo,
            Error::File(_) | Error::Plan(_) | Error::Onnx(_) => SnStatus::ErrModel,
            Error::Session(s) => match s {
                SessionError::Size { .. } => SnStatus::ErrSize,
                SessionError::ArenaTooLarge { .. } => SnStatus::ErrArenaLimit,
                SessionError::InputLength { .. } => SnStatus::ErrInputLength,
                SessionError::OutputCapacity { .. } => SnStatus::ErrOutputCapacity,
                SessionError::Threads(_) => SnStatus::ErrInvalidArgument,
                SessionError::ThreadPool(_) | SessionError::SegmentFailed => SnStatus::ErrInternal,
            },
            Error::Graph(crate::graph::GraphError::Size { .. }) => SnStatus::ErrSize,
            Error::Argument(_) => SnStatus::ErrInvalidArgument,
            Error::Graph(_) | Error::Kernel(_) => SnStatus::ErrInternal,
        };
        Failure::new(status, e.to_string())
    }
}
