//! Reader for Caffe `.caffemodel` weight files, such as the authors' published AS-ResNet models.
//!
//! A `.caffemodel` is a binary protobuf `NetParameter` (see Caffe's `caffe.proto`). Only the parts
//! that carry weights are read: each layer's `name`, `type` and `blobs`, and for each blob its
//! shape (`shape.dim`, or the legacy `num`/`channels`/`height`/`width`) and values (`data`, or
//! `double_data` converted to `f32`). Everything else (the layer's bottoms, tops and per-type
//! parameters) is skipped.
//!
//! The file is decoded in stages (net, then each layer, then each blob), so that an error names
//! the layer and blob it was found in. Every blob is checked: its shape must be non-negative, its
//! element count must fit in memory and equal the number of stored values, and every value must
//! be finite. Nothing is allocated from a declared shape: a blob that claims 2^40 elements is
//! rejected by comparing with the values actually present.
//!
//! Files that use the legacy V1 `layers` field (written by Caffe before 2015) are rejected with a
//! message saying how to upgrade them; the authors' Active-Shift models use the current `layer`
//! field.
//!
//! ```no_run
//! # fn demo() -> activeshift::Result<()> {
//! let layers = activeshift::caffe::read_caffemodel("AS-ResNet-w32.caffemodel".as_ref())?;
//! for layer in &layers {
//!     let shapes: Vec<_> = layer.blobs.iter().map(|b| b.shape.clone()).collect();
//!     println!("{} {} {:?}", layer.name, layer.kind, shapes);
//! }
//! # Ok(()) }
//! ```

use std::fmt;
use std::path::Path;

use prost::Message as _;
use prost::bytes::Bytes;

use crate::{Error, Result};

/// Caffe's limit on the number of axes of a blob (`kMaxBlobAxes`).
const MAX_AXES: usize = 32;

/// One parameter blob of a layer: an n-dimensional `f32` array in row-major (C) order.
#[derive(Debug, Clone, PartialEq)]
pub struct CaffeBlob {
    /// The blob's dimensions, outermost first (for a convolution weight: `[out, in, kh, kw]`).
    /// Blobs stored with the legacy 4-D fields have shape `[num, channels, height, width]`.
    pub shape: Vec<usize>,
    /// The values; `data.len()` equals the product of `shape` (1 for an empty shape).
    pub data: Vec<f32>,
}

/// One layer of a Caffe net, with its learned parameter blobs.
#[derive(Debug, Clone, PartialEq)]
pub struct CaffeLayer {
    /// The layer's name (`conv0`, `shift0_0/2`, ...); empty if the file gives none.
    pub name: String,
    /// The layer's type string as stored (`Convolution`, `BatchNorm`, `Scale`, `SpatialShift`,
    /// `InnerProduct`, ...); empty if the file gives none.
    pub kind: String,
    /// The layer's parameter blobs in file order (empty for layers without parameters).
    pub blobs: Vec<CaffeBlob>,
}

/// `NetParameter`, with each layer kept as undecoded bytes so that layers are decoded (and
/// their errors reported) one at a time.
#[derive(Clone, PartialEq, prost::Message)]
struct NetParameter {
    /// `repeated LayerParameter layer = 100`.
    #[prost(bytes = "bytes", repeated, tag = "100")]
    layer: Vec<Bytes>,
    /// `repeated V1LayerParameter layers = 2` (legacy, deprecated in 2015).
    #[prost(bytes = "bytes", repeated, tag = "2")]
    layers: Vec<Bytes>,
}

/// The fields of `LayerParameter` that are read; blobs are kept as bytes.
#[derive(Clone, PartialEq, prost::Message)]
struct LayerParameter {
    #[prost(string, optional, tag = "1")]
    name: Option<String>,
    #[prost(string, optional, tag = "2")]
    r#type: Option<String>,
    #[prost(bytes = "bytes", repeated, tag = "7")]
    blobs: Vec<Bytes>,
}

/// The name of a legacy `V1LayerParameter`, for the error message that rejects it.
#[derive(Clone, PartialEq, prost::Message)]
struct V1LayerParameter {
    #[prost(string, optional, tag = "4")]
    name: Option<String>,
}

/// `BlobShape`.
#[derive(Clone, PartialEq, prost::Message)]
struct BlobShape {
    #[prost(int64, repeated, tag = "1")]
    dim: Vec<i64>,
}

/// The fields of `BlobProto` that are read (`diff` and `double_diff` are skipped).
#[derive(Clone, PartialEq, prost::Message)]
struct BlobProto {
    #[prost(message, optional, tag = "7")]
    shape: Option<BlobShape>,
    #[prost(float, repeated, tag = "5")]
    data: Vec<f32>,
    #[prost(double, repeated, tag = "8")]
    double_data: Vec<f64>,
    #[prost(int32, optional, tag = "1")]
    num: Option<i32>,
    #[prost(int32, optional, tag = "2")]
    channels: Option<i32>,
    #[prost(int32, optional, tag = "3")]
    height: Option<i32>,
    #[prost(int32, optional, tag = "4")]
    width: Option<i32>,
}

/// Where in the file something was found, for error messages.
struct At<'a> {
    layer: usize,
    name: &'a str,
    kind: &'a str,
    blob: Option<usize>,
}

impl fmt::Display for At<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "layer {} `{}`", self.layer, self.name)?;
        if !self.kind.is_empty() {
            write!(f, " ({})", self.kind)?;
        }
        if let Some(blob) = self.blob {
            write!(f, " blob {blob}")?;
        }
        Ok(())
    }
}

fn format_error(msg: String) -> Error {
    Error::Format {
        format: "caffemodel",
        msg,
    }
}

/// Largest `.caffemodel` file [`read_caffemodel`] reads.
pub const MAX_CAFFEMODEL_BYTES: u64 = 1 << 30;

/// Read and parse a `.caffemodel` file; see [`parse_caffemodel`].
///
/// # Errors
/// [`Error::Io`] if the file cannot be read, [`Error::Format`] if it is larger than
/// [`MAX_CAFFEMODEL_BYTES`], and the errors of [`parse_caffemodel`], their messages prefixed
/// with the path.
pub fn read_caffemodel(path: &Path) -> Result<Vec<CaffeLayer>> {
    read_caffemodel_bytes(path)
        .and_then(|bytes| parse_caffemodel(&bytes))
        .map_err(|e| match e {
            Error::Format { format, msg } => Error::Format {
                format,
                msg: format!("{}: {msg}", path.display()),
            },
            e => e,
        })
}

/// The bytes of the file at `path`, read as [`read_caffemodel`] reads them (a regular file of at
/// most the size a `.caffemodel` may have), for a caller that also needs them whole (a checksum).
///
/// # Errors
/// [`Error::Io`] when the file cannot be read, is no regular file or is too large.
pub fn read_caffemodel_bytes(path: &Path) -> Result<Vec<u8>> {
    crate::error::read_file_limited(path, MAX_CAFFEMODEL_BYTES, "caffemodel")
}

/// Parse the bytes of a `.caffemodel` (a binary Caffe `NetParameter`) into its layers, in file
/// order, each with its name, type and validated parameter blobs.
///
/// # Errors
/// [`Error::Format`] (with `format` = `"caffemodel"`) if the bytes are not a decodable
/// `NetParameter` (truncated or corrupt input), hold no layers, use the legacy V1 `layers` field,
/// or if a blob has a negative dimension, more than 32 axes, an element count that overflows or
/// differs from the number of stored values, both `data` and `double_data`, or a NaN or
/// infinite value. Messages name the layer (index, name and type) and the blob index.
pub fn parse_caffemodel(bytes: &[u8]) -> Result<Vec<CaffeLayer>> {
    let net = NetParameter::decode(Bytes::copy_from_slice(bytes)).map_err(|e| {
        format_error(format!(
            "not a decodable Caffe NetParameter protobuf (truncated or corrupt file?): {e}"
        ))
    })?;

    if let Some(first) = net.layers.first() {
        let first_name = V1LayerParameter::decode(first.clone())
            .ok()
            .and_then(|l| l.name)
            .unwrap_or_default();
        return Err(format_error(format!(
            "the file uses the legacy V1 `layers` field (field 2: {} layers, the first `{}`{}); \
             expected the current `layer` field (field 100). Upgrade it with Caffe's \
             `upgrade_net_proto_binary` tool",
            net.layers.len(),
            first_name,
            if net.layer.is_empty() {
                String::new()
            } else {
                format!(", besides {} current layers", net.layer.len())
            }
        )));
    }
    if net.layer.is_empty() {
        return Err(format_error(
            "the file holds no layers: expected a Caffe NetParameter with `layer` entries \
             (field 100)"
                .to_string(),
        ));
    }

    net.layer
        .into_iter()
        .enumerate()
        .map(|(index, raw)| parse_layer(index, raw))
        .collect()
}

fn parse_layer(index: usize, raw: Bytes) -> Result<CaffeLayer> {
    let layer = LayerParameter::decode(raw).map_err(|e| {
        format_error(format!(
            "layer {index}: not a decodable LayerParameter (truncated or corrupt?): {e}"
        ))
    })?;
    let name = layer.name.unwrap_or_default();
    let kind = layer.r#type.unwrap_or_default();
    let blobs = layer
        .blobs
        .into_iter()
        .enumerate()
        .map(|(b, raw)| {
            let at = At {
                layer: index,
                name: &name,
                kind: &kind,
                blob: Some(b),
            };
            parse_blob(&at, raw)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(CaffeLayer { name, kind, blobs })
}

fn parse_blob(at: &At<'_>, raw: Bytes) -> Result<CaffeBlob> {
    let blob = BlobProto::decode(raw).map_err(|e| {
        format_error(format!(
            "{at}: not a decodable BlobProto (truncated or corrupt?): {e}"
        ))
    })?;

    let shape = blob_shape(at, &blob)?;
    let count = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| {
            format_error(format!(
                "{at}: shape {shape:?} has more elements than can be addressed (the product \
                 overflows); expected at most {} elements",
                usize::MAX
            ))
        })?;

    let data = match (blob.data.is_empty(), blob.double_data.is_empty()) {
        (false, false) => {
            return Err(format_error(format!(
                "{at}: stores both `data` ({} floats) and `double_data` ({} doubles); \
                 expected only one",
                blob.data.len(),
                blob.double_data.len()
            )));
        }
        (true, false) => {
            check_count(at, &shape, count, blob.double_data.len(), "double_data")?;
            blob.double_data
                .iter()
                .enumerate()
                .map(|(i, &v)| {
                    let f = v as f32;
                    if f.is_finite() {
                        Ok(f)
                    } else {
                        Err(non_finite(at, i, count, v))
                    }
                })
                .collect::<Result<Vec<f32>>>()?
        }
        _ => {
            check_count(at, &shape, count, blob.data.len(), "data")?;
            if let Some((i, &v)) = blob.data.iter().enumerate().find(|(_, v)| !v.is_finite()) {
                return Err(non_finite(at, i, count, f64::from(v)));
            }
            blob.data
        }
    };
    Ok(CaffeBlob { shape, data })
}

/// The blob's shape: `shape.dim` if present, else the legacy 4-D fields (missing ones are 0, as
/// in `caffe.proto`).
fn blob_shape(at: &At<'_>, blob: &BlobProto) -> Result<Vec<usize>> {
    let legacy = [blob.num, blob.channels, blob.height, blob.width];
    let (dims, field): (Vec<i64>, &str) = match &blob.shape {
        Some(shape) => (shape.dim.clone(), "shape.dim"),
        None if legacy.iter().any(Option::is_some) => (
            legacy.iter().map(|d| i64::from(d.unwrap_or(0))).collect(),
            "num/channels/height/width",
        ),
        None => {
            return Err(format_error(format!(
                "{at}: has no shape: expected `shape` (field 7) or the legacy \
                 num/channels/height/width fields"
            )));
        }
    };
    if dims.len() > MAX_AXES {
        return Err(format_error(format!(
            "{at}: shape has {} axes; expected at most {MAX_AXES}",
            dims.len()
        )));
    }
    dims.iter()
        .enumerate()
        .map(|(axis, &d)| {
            usize::try_from(d).map_err(|_| {
                format_error(format!(
                    "{at}: {field} {dims:?}: axis {axis} is {d}; expected a non-negative size \
                     that fits in memory"
                ))
            })
        })
        .collect()
}

fn check_count(
    at: &At<'_>,
    shape: &[usize],
    expected: usize,
    found: usize,
    field: &str,
) -> Result<()> {
    if expected == found {
        Ok(())
    } else {
        Err(format_error(format!(
            "{at}: shape {shape:?} expects {expected} values, found {found} in `{field}`"
        )))
    }
}

fn non_finite(at: &At<'_>, index: usize, count: usize, value: f64) -> Error {
    let what = if value.is_finite() {
        format!("{value:e}, outside the f32 range")
    } else {
        value.to_string()
    };
    format_error(format!(
        "{at}: value {index} of {count} is {what}; expected finite weights"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> At<'static> {
        At {
            layer: 3,
            name: "conv1",
            kind: "Convolution",
            blob: Some(1),
        }
    }

    #[test]
    fn at_names_layer_and_blob() {
        assert_eq!(at().to_string(), "layer 3 `conv1` (Convolution) blob 1");
    }

    #[test]
    fn legacy_shape_is_used_without_shape() {
        let blob = BlobProto {
            num: Some(2),
            channels: Some(3),
            ..Default::default()
        };
        assert_eq!(blob_shape(&at(), &blob).ok(), Some(vec![2, 3, 0, 0]));
    }

    #[test]
    fn double_out_of_f32_range_is_rejected() {
        let raw = BlobProto {
            shape: Some(BlobShape { dim: vec![2] }),
            double_data: vec![1.0, 1e300],
            ..Default::default()
        }
        .encode_to_vec();
        let err = parse_blob(&at(), Bytes::from(raw))
            .err()
            .map(|e| e.to_string());
        let err = err.unwrap_or_default();
        assert!(
            err.contains("value 1 of 2") && err.contains("f32 range"),
            "{err}"
        );
    }
}
