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

    /// A folder of images (`activeshift::image_folder`) cannot be used as a dataset: its layout
    /// is wrong (no classes, one class, an empty class folder, a held-out class unknown to the
    /// training classes) or too many of its images could not be decoded.
    #[error("image folder {dir}: {msg}")]
    ImageFolder {
        /// The folder, as given.
        dir: String,
        /// What is wrong, naming the folders or files concerned.
        msg: String,
    },
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

/// Refuse anything but a regular file: a FIFO would block `open` (and a read) forever, a
/// device such as `/dev/zero` never ends, a directory cannot be read.
fn check_regular(path: &std::path::Path, meta: &std::fs::Metadata) -> Result<()> {
    let ft = meta.file_type();
    if ft.is_file() {
        return Ok(());
    }
    let what = if ft.is_dir() {
        "a directory"
    } else {
        #[cfg(unix)]
        {
            use std::os::unix::fs::FileTypeExt;
            if ft.is_fifo() {
                "a FIFO (named pipe)"
            } else if ft.is_char_device() || ft.is_block_device() {
                "a device"
            } else if ft.is_socket() {
                "a socket"
            } else {
                "not a regular file"
            }
        }
        #[cfg(not(unix))]
        {
            "not a regular file"
        }
    };
    Err(Error::Io {
        path: path.display().to_string(),
        source: std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("is {what}; only regular files are read"),
        ),
    })
}

/// Read a whole file, refusing one larger than `max` bytes with an [`Error::Format`] of
/// `format` (its message does not name the path; I/O errors do).
///
/// Only regular files are read: the type is checked from the path's metadata before the file
/// is opened (a FIFO would block in `open`), the file is opened non-blocking where the platform
/// allows (so one swapped in after the check cannot block either) and its type checked again
/// on the open handle. The size is checked from metadata, and at most `max + 1` bytes are read
/// whatever the metadata said (a file that grows while it is read).
pub fn read_file_limited(
    path: &std::path::Path,
    max: u64,
    format: &'static str,
) -> Result<Vec<u8>> {
    read_file_checked(path, max, format, |_, _| Ok(None))
}

/// Open a regular file for reading, with its metadata, as [`read_file_limited`] does: the type
/// is checked from the path's metadata (following symlinks) before the file is opened, the file
/// is opened non-blocking where the platform allows and its type checked again on the handle.
/// Anything else (a FIFO, a device, a socket, a directory) is an [`Error::Io`] that says what it
/// is, and is never opened in a way that could block.
pub(crate) fn open_regular(path: &std::path::Path) -> Result<(std::fs::File, std::fs::Metadata)> {
    let io = |source| Error::Io {
        path: path.display().to_string(),
        source,
    };
    // Follows symlinks: a link to a regular file is read, a link to a FIFO is refused here.
    check_regular(path, &std::fs::metadata(path).map_err(io)?)?;
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // Non-blocking has no effect on a regular file's reads; it only keeps `open` of a FIFO
        // swapped in after the check above from waiting for a writer.
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options.open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    check_regular(path, &meta)?;
    Ok((file, meta))
}

/// [`read_file_limited`], which shows the file's first bytes and its length to `check` before
/// the rest is read: `check` refuses the file, asks for the first `n` bytes (`Some(n)`: it is
/// called again with them, or with fewer at the end of the file), or lets it be read (`None`).
pub(crate) fn read_file_checked(
    path: &std::path::Path,
    max: u64,
    format: &'static str,
    mut check: impl FnMut(&[u8], u64) -> Result<Option<usize>>,
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
    let (file, meta) = open_regular(path)?;
    if meta.len() > max {
        return Err(too_large(meta.len().to_string()));
    }
    let mut file = file.take(max + 1);
    let mut bytes = Vec::new();
    while let Some(wanted) = check(&bytes, meta.len())? {
        let have = bytes.len();
        if wanted <= have {
            break;
        }
        (&mut file)
            .take((wanted - have) as u64)
            .read_to_end(&mut bytes)
            .map_err(io)?;
        if bytes.len() < wanted {
            // The end of the file: whoever parses it says what is missing.
            break;
        }
    }
    bytes.reserve(
        usize::try_from(meta.len())
            .unwrap_or(0)
            .saturating_sub(bytes.len()),
    );
    file.read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > max {
        return Err(too_large(format!("more than {max}")));
    }
    Ok(bytes)
}
