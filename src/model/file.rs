//! Models in memory and on disk: weights + config + labels in one safetensors file.

use super::config::ArchConfig;
use super::params::ParamId;
use crate::error::{Error, Result};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
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
        let meta = HashMap::from([
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
    pub fn load(path: &Path) -> Result<Self> {
        crate::error::read_file_limited(path, MAX_MODEL_FILE_BYTES, "safetensors")
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

/// Encode f32 tensors and string metadata as safetensors.
pub(crate) fn encode_tensors(
    tensors: &BTreeMap<String, HostTensor>,
    meta: HashMap<String, String>,
) -> Result<Vec<u8>> {
    let bytes: Vec<(&String, Vec<u8>)> = tensors
        .iter()
        .map(|(k, t)| (k, bytemuck::cast_slice(&t.data).to_vec()))
        .collect();
    let mut views = Vec::with_capacity(bytes.len());
    for ((name, data), t) in bytes.iter().zip(tensors.values()) {
        let view = TensorView::new(Dtype::F32, t.dims.clone(), data)
            .map_err(|e| model_err(format!("tensor `{name}`: {e}")))?;
        views.push((name.as_str(), view));
    }
    safetensors::serialize(views, Some(meta)).map_err(|e| Error::Format {
        format: "safetensors",
        msg: e.to_string(),
    })
}

/// Decode safetensors bytes into f32 tensors and the metadata map.
pub(crate) fn decode_tensors(
    bytes: &[u8],
) -> Result<(BTreeMap<String, HostTensor>, HashMap<String, String>)> {
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

/// Write `bytes` to `path` through a temporary file in the same directory and a rename, so the
/// file is never seen half-written. Refuses to replace an existing file unless `overwrite`.
pub fn write_atomic(path: &Path, bytes: &[u8], overwrite: bool) -> Result<()> {
    let io = |source| Error::Io {
        path: path.display().to_string(),
        source,
    };
    if !overwrite && path.exists() {
        return Err(io(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            "file exists (pass overwrite / --force to replace it)",
        )));
    }
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "model".into());
    // A fixed name: a write killed half-way leaves a file the next write replaces.
    let tmp = path.with_file_name(format!(".{file_name}.tmp"));
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io(e)
    })
}

/// Write tensors with metadata `format` and a JSON `state` atomically, replacing `path`.
pub fn write_tensors_atomic(
    path: &Path,
    tensors: &BTreeMap<String, HostTensor>,
    format: &str,
    state: &str,
) -> Result<()> {
    let meta = HashMap::from([
        ("format".to_string(), format.to_string()),
        ("state".to_string(), state.to_string()),
    ]);
    write_atomic(path, &encode_tensors(tensors, meta)?, true)
}

/// Read a file written by [`write_tensors_atomic`] with the given `format`: tensors and state.
pub fn read_tensors(path: &Path, format: &str) -> Result<(BTreeMap<String, HostTensor>, String)> {
    // A checkpoint holds the parameters and as much optimiser state again.
    let bytes = crate::error::read_file_limited(path, 2 * MAX_MODEL_FILE_BYTES, "safetensors")?;
    let (tensors, meta) = decode_tensors(&bytes)?;
    if meta.get("format").map(String::as_str) != Some(format) {
        return Err(model_err(format!(
            "{}: metadata `format` is {:?}, expected `{format}`",
            path.display(),
            meta.get("format")
        )));
    }
    let state = meta
        .get("state")
        .cloned()
        .ok_or_else(|| model_err(format!("{}: metadata `state` is missing", path.display())))?;
    Ok((tensors, state))
}

/// Read class labels, one per line (blank lines at the end ignored).
pub fn read_labels(text: &str) -> Vec<String> {
    let mut labels: Vec<String> = text.lines().map(|l| l.trim().to_string()).collect();
    while labels.last().is_some_and(|l| l.is_empty()) {
        labels.pop();
    }
    labels
}
