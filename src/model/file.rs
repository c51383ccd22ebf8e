//! Models in memory and on disk: weights + config + labels in one safetensors file.

use super::config::ArchConfig;
use super::params::ParamId;
use crate::error::{Error, Result};
use safetensors::tensor::{Dtype, SafeTensors};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Largest model file [`Model::load`] reads (a model of 256M parameters).
pub const MAX_MODEL_FILE_BYTES: u64 = 1 << 30;

/// Value of the `format` metadata key of activeshift model files.
pub const FORMAT: &str = "activeshift-model-v1";

/// A host-side f32 tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct HostTensor {
    /// Shape, row-major.
    pub dims: Vec<usize>,
    /// `dims.iter().product()` values.
    pub data: Vec<f32>,
}

impl HostTensor {
    /// A tensor from its shape and data (checked to agree).
    pub fn new(dims: Vec<usize>, data: Vec<f32>) -> Result<Self> {
        let len = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        if len != Some(data.len()) {
            return Err(Error::Format {
                format: "tensor",
                msg: format!("shape {dims:?} does not hold {} values", data.len()),
            });
        }
        Ok(Self { dims, data })
    }
}

/// A complete model: architecture, class labels and every learnable tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    /// The architecture (and preprocessing).
    pub config: ArchConfig,
    /// One label per class.
    pub labels: Vec<String>,
    /// Parameters by name, exactly those of [`ArchConfig::param_shapes`].
    pub params: BTreeMap<String, HostTensor>,
}

fn model_err(msg: String) -> Error {
    Error::Format {
        format: "model",
        msg,
    }
}

impl Model {
    /// Assemble a model, checking that the config builds, that every tensor the config needs is
    /// present with the right shape and finite values, that there is no extra tensor, and that
    /// there is one label per class (an empty list gets `class 0`, `class 1`, ...).
    pub fn new(
        config: ArchConfig,
        mut labels: Vec<String>,
        params: BTreeMap<String, HostTensor>,
    ) -> Result<Self> {
        config.validate()?;
        let expected = config.param_shapes();
        for (name, dims) in &expected {
            let t = params
                .get(name)
                .ok_or_else(|| model_err(format!("tensor `{name}` {dims:?} is missing")))?;
            if &t.dims != dims {
                return Err(model_err(format!(
                    "tensor `{name}`: expected shape {dims:?}, found {:?}",
                    t.dims
                )));
            }
            if let Some(i) = t.data.iter().position(|v| !v.is_finite()) {
                return Err(model_err(format!(
                    "tensor `{name}`: element {i} is {} (weights must be finite)",
                    t.data[i]
                )));
            }
        }
        if let Some(extra) = params
            .keys()
            .find(|k| !expected.iter().any(|(n, _)| n == *k))
        {
            return Err(model_err(format!(
                "tensor `{extra}` is not part of architecture `{}`",
                config.name
            )));
        }
        if labels.is_empty() {
            labels = (0..config.classes).map(|i| format!("class {i}")).collect();
        }
        if labels.len() != config.classes {
            return Err(model_err(format!(
                "{} labels for {} classes",
                labels.len(),
                config.classes
            )));
        }
        Ok(Self {
            config,
            labels,
            params,
        })
    }

    /// A parameter tensor.
    pub fn param(&self, id: ParamId) -> Result<&HostTensor> {
        let name = id.name();
        self.params
            .get(&name)
            .ok_or_else(|| model_err(format!("tensor `{name}` is missing")))
    }

    /// Parse an activeshift safetensors model file.
    pub fn from_safetensors(bytes: &[u8]) -> Result<Self> {
        let (params, meta) = decode_tensors(bytes)?;
        let get = |key: &str| {
            meta.get(key).ok_or_else(|| {
                model_err(format!(
                    "metadata key `{key}` is missing (not an activeshift model file?)"
                ))
            })
        };
        let format = get("format")?;
        if format != FORMAT {
            return Err(model_err(format!(
                "metadata `format` is `{format}`, expected `{FORMAT}`"
            )));
        }
        let config: ArchConfig = serde_json::from_str(get("config")?)
            .map_err(|e| model_err(format!("metadata `config`: {e}")))?;
        let labels: Vec<String> = serde_json::from_str(get("labels")?)
            .map_err(|e| model_err(format!("metadata `labels`: {e}")))?;
        Self::new(config, labels, params)
    }

    /// Serialize to the safetensors model format (weights, plus `format`, `config` and `labels`
    /// metadata).
    pub fn to_safetensors(&self) -> Result<Vec<u8>> {
        let json = |v: serde_json::Result<String>| {
            v.map_err(|e| model_err(format!("cannot encode metadata: {e}")))
        };
        let meta = BTreeMap::from([
            ("format".to_string(), FORMAT.to_string()),
            (
                "config".to_string(),
                json(serde_json::to_string(&self.config))?,
            ),
            (
                "labels".to_string(),
                json(serde_json::to_string(&self.labels))?,
            ),
        ]);
        encode_tensors(&self.params, meta)
    }

    /// Load a model file (at most [`MAX_MODEL_FILE_BYTES`]).
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        read_safetensors_file(path, MAX_MODEL_FILE_BYTES)
            .and_then(|bytes| Self::from_safetensors(&bytes))
            .map_err(|e| match e {
                Error::Format { format, msg } => Error::Format {
                    format,
                    msg: format!("{}: {msg}", path.display()),
                },
                e => e,
            })
    }

    /// Write the model file atomically (a temporary file in the same directory, then a rename),
    /// so a crash never leaves a half-written model. Refuses to replace an existing file unless
    /// `overwrite` is set.
    pub fn save(&self, path: &Path, overwrite: bool) -> Result<()> {
        write_atomic(path, &self.to_safetensors()?, overwrite)
    }
}

/// Encode f32 tensors and string metadata as safetensors, byte-reproducibly: the header's
/// keys (tensors and metadata) are written in sorted order and the tensors' data in name order,
/// so the same tensors and metadata always give the same bytes.
pub(crate) fn encode_tensors(
    tensors: &BTreeMap<String, HostTensor>,
    meta: BTreeMap<String, String>,
) -> Result<Vec<u8>> {
    #[derive(serde::Serialize)]
    struct Entry<'a> {
        dtype: &'static str,
        shape: &'a [usize],
        data_offsets: [usize; 2],
    }
    #[derive(serde::Serialize)]
    #[serde(untagged)]
    enum Value<'a> {
        Meta(&'a BTreeMap<String, String>),
        Tensor(Entry<'a>),
    }
    if tensors.contains_key("__metadata__") {
        return Err(model_err("a tensor may not be named `__metadata__`".into()));
    }
    let mut header: BTreeMap<&str, Value> = BTreeMap::new();
    if !meta.is_empty() {
        header.insert("__metadata__", Value::Meta(&meta));
    }
    let mut offset = 0usize;
    for (name, t) in tensors {
        let len = t
            .dims
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .filter(|&n| n == t.data.len())
            .ok_or_else(|| {
                model_err(format!(
                    "tensor `{name}`: shape {:?} does not hold {} values",
                    t.dims,
                    t.data.len()
                ))
            })?;
        let end = offset + 4 * len;
        header.insert(
            name,
            Value::Tensor(Entry {
                dtype: "F32",
                shape: &t.dims,
                data_offsets: [offset, end],
            }),
        );
        offset = end;
    }
    let mut json = serde_json::to_vec(&header)
        .map_err(|e| model_err(format!("cannot encode the header: {e}")))?;
    // The data starts 8-byte aligned, as the safetensors format recommends.
    while (json.len() % 8) != 0 {
        json.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + json.len() + offset);
    out.extend_from_slice(&(json.len() as u64).to_le_bytes());
    out.extend_from_slice(&json);
    for t in tensors.values() {
        for v in &t.data {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    Ok(out)
}

/// Largest safetensors header (the JSON after the 8-byte length) that is parsed: 16 MiB, room
/// for [`MAX_TENSORS`] tensors and a thousand labels many times over.
pub const MAX_HEADER_BYTES: u64 = 16 << 20;

/// Most tensors a model or checkpoint file may list (a network of the most blocks a config
/// allows has about 10,000, a checkpoint of it about 25,000).
pub const MAX_TENSORS: usize = 1 << 16;

/// Read a safetensors file of at most `max` bytes, its header first: a file whose header is
/// too long, runs past the end of the file, or describes tensor data that does not end where
/// the file does is refused before its data is read.
fn read_safetensors_file(path: &Path, max: u64) -> Result<Vec<u8>> {
    let st_err = |msg: String| Error::Format {
        format: "safetensors",
        msg,
    };
    crate::error::read_file_checked(path, max, "safetensors", |bytes, file_len| {
        let Some(len) = bytes.get(..8) else {
            return Ok(Some(8));
        };
        let len = u64::from_le_bytes(len.try_into().unwrap_or_default());
        if len > MAX_HEADER_BYTES {
            return Err(st_err(format!(
                "the header is {len} bytes long; at most {MAX_HEADER_BYTES} are accepted"
            )));
        }
        let end = 8 + len;
        if end > file_len {
            return Err(st_err(format!(
                "the header length field says {len} bytes, but only {} bytes follow it \
                 (truncated file, or not a safetensors file?)",
                file_len - 8
            )));
        }
        let Some(header) = bytes.get(8..end as usize) else {
            return Ok(Some(end as usize));
        };
        check_header(bytes)?;
        // Malformed JSON is left to the parser, which says more about it.
        if let Ok(serde_json::Value::Object(entries)) = serde_json::from_slice(header) {
            let data = entries
                .iter()
                .filter(|(name, _)| *name != "__metadata__")
                .filter_map(|(_, e)| e.get("data_offsets")?.get(1)?.as_u64())
                .max()
                .unwrap_or(0);
            if end.checked_add(data) != Some(file_len) {
                return Err(st_err(format!(
                    "the header describes tensor data ending at byte {data}, but the file \
                     holds {} bytes after the header (truncated file, or extra bytes at the \
                     end)",
                    file_len - end
                )));
            }
        }
        Ok(None)
    })
}

/// Check a safetensors header before the `safetensors` crate parses it: its length within
/// [`MAX_HEADER_BYTES`], at most [`MAX_TENSORS`] entries, and no name listed twice (a JSON
/// object with a repeated key would silently keep one of the entries). Malformed JSON is left
/// to the crate, which says more about it.
fn check_header(bytes: &[u8]) -> Result<()> {
    use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
    let st_err = |msg: String| Error::Format {
        format: "safetensors",
        msg,
    };
    let Some(len) = bytes.get(..8) else {
        return Ok(());
    };
    let len = u64::from_le_bytes(len.try_into().unwrap_or_default());
    if len > MAX_HEADER_BYTES {
        return Err(st_err(format!(
            "the header is {len} bytes long; at most {MAX_HEADER_BYTES} are accepted"
        )));
    }
    let Some(header) = bytes.get(8..8 + len as usize) else {
        return Ok(());
    };
    struct Keys;
    impl<'de> Visitor<'de> for Keys {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let mut seen = std::collections::HashSet::new();
            while let Some(key) = map.next_key::<String>()? {
                map.next_value::<IgnoredAny>()?;
                if seen.len() > MAX_TENSORS {
                    return Err(de::Error::custom(format_args!(
                        "more than {MAX_TENSORS} tensors"
                    )));
                }
                if let Some(key) = seen.replace(key) {
                    return Err(de::Error::custom(format_args!("`{key}` is listed twice")));
                }
            }
            Ok(())
        }
    }
    let mut de = serde_json::Deserializer::from_slice(header);
    match (&mut de).deserialize_map(Keys) {
        Err(e) if e.classify() == serde_json::error::Category::Data => {
            Err(st_err(format!("header: {e}")))
        }
        _ => Ok(()),
    }
}

/// Decode safetensors bytes into f32 tensors and the metadata map.
pub(crate) fn decode_tensors(
    bytes: &[u8],
) -> Result<(BTreeMap<String, HostTensor>, HashMap<String, String>)> {
    check_header(bytes)?;
    let st_err = |e: safetensors::SafeTensorError| Error::Format {
        format: "safetensors",
        msg: e.to_string(),
    };
    let st = SafeTensors::deserialize(bytes)
        .map_err(|e| super::diagnose::safetensors_error(bytes, e))?;
    let (_, meta) = SafeTensors::read_metadata(bytes).map_err(st_err)?;
    let meta = meta.metadata().clone().unwrap_or_default();
    let mut tensors = BTreeMap::new();
    for (name, view) in st.iter() {
        if view.dtype() != Dtype::F32 {
            return Err(model_err(format!(
                "tensor `{name}`: dtype {:?}, expected F32",
                view.dtype()
            )));
        }
        let data: Vec<f32> = bytemuck::pod_collect_to_vec(view.data());
        tensors.insert(
            name.to_string(),
            HostTensor::new(view.shape().to_vec(), data)?,
        );
    }
    Ok((tensors, meta))
}

/// Write `bytes` to `path` atomically: every file the project writes goes through here.
///
/// The bytes go to a new temporary file in `path`'s folder, with a short unique name, created
/// exclusively (`O_CREAT | O_EXCL`: an existing file or symlink of that name is never opened or
/// followed), flushed to disk (`fsync`), then renamed onto `path`, and the folder is synced.
/// Readers of `path` see the old file or the new one, never a mix, also with several writers
/// at once (each has its own temporary file; the last rename wins). A symlink at `path` is
/// replaced, not written through.
///
/// Without `overwrite` an existing `path` (any kind of entry, a dangling symlink too) is never
/// replaced: the rule is checked at the rename itself (`renameat2(RENAME_NOREPLACE)`, or a hard
/// link where the file system lacks it), so a file created at `path` while the bytes were being
/// written is kept and the write fails with [`std::io::ErrorKind::AlreadyExists`]. On failure
/// the temporary file is removed.
pub fn write_atomic(path: &Path, bytes: &[u8], overwrite: bool) -> Result<()> {
    let io = |source| Error::Io {
        path: path.display().to_string(),
        source,
    };
    let exists = || {
        io(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            "file exists (pass --force to replace it)",
        ))
    };
    // Fail before writing anything when the answer is already known (checked again at the
    // rename).
    if !overwrite && std::fs::symlink_metadata(path).is_ok() {
        return Err(exists());
    }
    if path.file_name().is_none() {
        return Err(io(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a file name",
        )));
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut builder = tempfile::Builder::new();
    // A short name whatever the target's length (a 255-byte file name works).
    builder.prefix(".activeshift-").suffix(".tmp");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // What `File::create` gives (0666 less the umask), not tempfile's private 0600.
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    let mut tmp = builder.tempfile_in(dir).map_err(io)?;
    {
        use std::io::Write;
        tmp.write_all(bytes).map_err(io)?;
        tmp.as_file().sync_all().map_err(io)?;
    }
    let persisted = if overwrite {
        tmp.persist(path)
    } else {
        tmp.persist_noclobber(path)
    };
    // On error the temporary file is dropped, which deletes it.
    persisted.map_err(|e| {
        if e.error.kind() == std::io::ErrorKind::AlreadyExists {
            exists()
        } else {
            io(e.error)
        }
    })?;
    // The rename is durable once the folder is synced (not possible everywhere: best effort).
    #[cfg(unix)]
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Write tensors with metadata `format` and a JSON `state` atomically, replacing `path`.
pub fn write_tensors_atomic(
    path: &Path,
    tensors: &BTreeMap<String, HostTensor>,
    format: &str,
    state: &str,
) -> Result<()> {
    let meta = BTreeMap::from([
        ("format".to_string(), format.to_string()),
        ("state".to_string(), state.to_string()),
    ]);
    write_atomic(path, &encode_tensors(tensors, meta)?, true)
}

/// Read a file written by [`write_tensors_atomic`] with the given `format`: tensors and state.
pub fn read_tensors(path: &Path, format: &str) -> Result<(BTreeMap<String, HostTensor>, String)> {
    // A checkpoint holds the parameters and as much optimiser state again.
    let bytes = read_safetensors_file(path, 2 * MAX_MODEL_FILE_BYTES)?;
    parse_tensors(&bytes, format, &path.display().to_string())
}

/// [`read_tensors`] of bytes in memory; `shown` names them in messages.
pub(crate) fn parse_tensors(
    bytes: &[u8],
    format: &str,
    shown: &str,
) -> Result<(BTreeMap<String, HostTensor>, String)> {
    let (tensors, meta) = decode_tensors(bytes)?;
    if meta.get("format").map(String::as_str) != Some(format) {
        return Err(model_err(format!(
            "{shown}: metadata `format` is {:?}, expected `{format}`",
            meta.get("format")
        )));
    }
    let state = meta
        .get("state")
        .cloned()
        .ok_or_else(|| model_err(format!("{shown}: metadata `state` is missing")))?;
    Ok((tensors, state))
}

/// Largest labels file [`read_labels_file`] reads (16 MiB).
pub const MAX_LABELS_FILE_BYTES: u64 = 16 << 20;

/// Read a labels file (UTF-8, one label per line; at most [`MAX_LABELS_FILE_BYTES`], a regular
/// file): [`read_labels`] of its text.
pub fn read_labels_file(path: &Path) -> Result<Vec<String>> {
    let bytes = crate::error::read_file_limited(path, MAX_LABELS_FILE_BYTES, "labels file")?;
    let text = String::from_utf8(bytes).map_err(|e| Error::Format {
        format: "labels file",
        msg: format!("{}: not UTF-8 text ({e})", path.display()),
    })?;
    Ok(read_labels(&text))
}

/// Read class labels, one per line (blank lines at the end ignored).
pub fn read_labels(text: &str) -> Vec<String> {
    let mut labels: Vec<String> = text.lines().map(|l| l.trim().to_string()).collect();
    while labels.last().is_some_and(|l| l.is_empty()) {
        labels.pop();
    }
    labels
}
