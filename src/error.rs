//! The library's error type.

use thiserror::Error;

/// Everything that can go wrong in `activeshift`, with messages that say what was expected and
/// what was found.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// No GPU adapter could be found (or none matched `WGPU_ADAPTER_NAME`).
    #[error("no GPU adapter: {0}")]
    NoAdapter(String),

    /// The adapter lacks a limit or capability the kernels need.
    #[error("adapter `{adapter}` cannot run activeshift: {reason}")]
    UnsupportedAdapter {
        /// Name of the adapter that was rejected.
        adapter: String,
        /// What it lacks.
        reason: String,
    },

    /// Creating the logical device failed.
    #[error("could not create a device: {0}")]
    RequestDevice(String),

    /// A tensor or parameter has the wrong shape for an operation.
    #[error("{op}: {what}: expected {expected}, found {found}")]
    Shape {
        /// The operation or kernel that checked the shape.
        op: &'static str,
        /// Which argument was wrong.
        what: String,
        /// What the operation needs.
        expected: String,
        /// What it was given.
        found: String,
    },

    /// An argument is out of its valid range (e.g. stride 0).
    #[error("{op}: invalid argument: {msg}")]
    InvalidArgument {
        /// The operation that rejected the argument.
        op: &'static str,
        /// Why.
        msg: String,
    },

    /// A request exceeds a limit of the device (buffer size, dispatch size).
    #[error("{op}: {what} needs {needed}, but the device allows at most {limit}")]
    DeviceLimit {
        /// The operation that hit the limit.
        op: &'static str,
        /// Which limit.
        what: &'static str,
        /// What was needed.
        needed: u64,
        /// What the device allows.
        limit: u64,
    },

    /// Reading a buffer back from the GPU failed (device lost, mapping error).
    #[error("reading back from the GPU failed: {0}")]
    Readback(String),

    /// A file (model, weights, image) is malformed or does not hold what was expected.
    #[error("invalid {format}: {msg}")]
    Format {
        /// What kind of file (`caffemodel`, `safetensors`, `image`, ...).
        format: &'static str,
        /// What is wrong, naming the layer, tensor or field.
        msg: String,
    },

    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },

    /// The GPU device was lost or reported an error while running kernels.
    #[error("GPU device error: {0}")]
    Device(String),
}

/// Shorthand for `Result<T, activeshift::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Build a [`Error::Shape`] error.
    pub(crate) fn shape(
        op: &'static str,
        what: impl Into<String>,
        expected: impl std::fmt::Display,
        found: impl std::fmt::Display,
    ) -> Self {
        Error::Shape {
            op,
            what: what.into(),
            expected: expected.to_string(),
            found: found.to_string(),
        }
    }

    /// Build an [`Error::InvalidArgument`] error.
    pub fn invalid(op: &'static str, msg: impl Into<String>) -> Self {
        Error::InvalidArgument {
            op,
            msg: msg.into(),
        }
    }
}

/// Read a whole file, refusing one larger than `max` bytes with an [`Error::Format`] of
/// `format` (its message does not name the path; I/O errors do). Never reads more than `max + 1` bytes, also from pipes and devices (`/dev/zero`).
pub(crate) fn read_file_limited(
    path: &std::path::Path,
    max: u64,
    format: &'static str,
) -> Result<Vec<u8>> {
    use std::io::Read;
    let io = |source| Error::Io {
        path: path.display().to_string(),
        source,
    };
    let too_large = |size: String| Error::Format {
        format,
        msg: format!("the file is {size} bytes; at most {max} bytes are accepted"),
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if meta.is_dir() {
        return Err(io(std::io::Error::new(
            std::io::ErrorKind::IsADirectory,
            "is a directory, not a file",
        )));
    }
    if meta.len() > max {
        return Err(too_large(meta.len().to_string()));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(max + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > max {
        return Err(too_large(format!("more than {max}")));
    }
    Ok(bytes)
}
