//! Error messages for malformed safetensors files that name the tensor and the numbers at fault
//! (the `safetensors` crate's own messages say only what kind of check failed).

use crate::error::Error;
use safetensors::SafeTensorError;

/// The header length field and the header cap of the safetensors format.
const N_LEN: usize = 8;
const MAX_HEADER: u64 = 100_000_000;

/// Bytes per element of a safetensors dtype name (sub-byte types count as their bits / 8).
fn dtype_bits(name: &str) -> Option<u128> {
    Some(match name {
        "BOOL" | "U8" | "I8" | "F8_E5M2" | "F8_E4M3" | "F8_E8M0" => 8,
        "F4" => 4,
        "F6_E2M3" | "F6_E3M2" => 6,
        "I16" | "U16" | "F16" | "BF16" => 16,
        "I32" | "U32" | "F32" => 32,
        "I64" | "U64" | "F64" | "C64" => 64,
        _ => return None,
    })
}

/// Turn an error of `safetensors` on `bytes` into an [`Error::Format`] that says which tensor or
/// field is wrong, with the sizes involved.
pub(crate) fn safetensors_error(bytes: &[u8], e: SafeTensorError) -> Error {
    let header_len = bytes
        .get(..N_LEN)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_le_bytes);
    let msg = match (&e, header_len) {
        (SafeTensorError::HeaderTooSmall, _) => format!(
            "the file holds {} bytes, too few for the 8-byte header length (truncated or empty \
             file?)",
            bytes.len()
        ),
        (SafeTensorError::HeaderTooLarge, Some(n)) => format!(
            "the header length field says {n} bytes; at most {MAX_HEADER} are allowed (not a \
             safetensors file?)"
        ),
        (SafeTensorError::InvalidHeaderLength, Some(n)) => format!(
            "the header length field says {n} bytes, but only {} bytes follow it (truncated \
             file, or not a safetensors file?)",
            bytes.len().saturating_sub(N_LEN)
        ),
        (
            SafeTensorError::TensorInvalidInfo
            | SafeTensorError::ValidationOverflow
            | SafeTensorError::MisalignedSlice
            | SafeTensorError::InvalidOffset(_)
            | SafeTensorError::MetadataIncompleteBuffer,
            Some(n),
        ) => explain_tensors(bytes, n).unwrap_or_else(|| e.to_string()),
        _ => e.to_string(),
    };
    Error::Format {
        format: "safetensors",
        msg,
    }
}

/// Find the first tensor whose declared shape, dtype and data offsets disagree, or the data
/// length that disagrees with the file length.
fn explain_tensors(bytes: &[u8], header_len: u64) -> Option<String> {
    let start = N_LEN;
    let end = start.checked_add(usize::try_from(header_len).ok()?)?;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(bytes.get(start..end)?).ok()?;
    let data_len = (bytes.len() - end) as u128;
    let mut tensors: Vec<(u128, u128, &str, &serde_json::Value)> = Vec::new();
    for (name, info) in &header {
        if name == "__metadata__" {
            continue;
        }
        let offsets = info.get("data_offsets")?.as_array()?;
        let [s, e] = offsets.as_slice() else {
            return Some(format!(
                "tensor `{name}`: data_offsets must be [start, end]"
            ));
        };
        tensors.push((u128::from(s.as_u64()?), u128::from(e.as_u64()?), name, info));
    }
    tensors.sort_by_key(|t| (t.0, t.1));
    let mut expected_start = 0u128;
    for (s, e, name, info) in &tensors {
        let (s, e) = (*s, *e);
        if s != expected_start || e < s {
            return Some(format!(
                "tensor `{name}`: data_offsets [{s}, {e}] do not continue where the previous \
                 tensor ends ({expected_start}): overlapping, out of order or with gaps"
            ));
        }
        expected_start = e;
        let dtype = info.get("dtype")?.as_str()?;
        let shape: Vec<u64> = info
            .get("shape")?
            .as_array()?
            .iter()
            .map(serde_json::Value::as_u64)
            .collect::<Option<_>>()?;
        let bits = dtype_bits(dtype)?;
        let elements = shape
            .iter()
            .try_fold(1u128, |a, &d| a.checked_mul(u128::from(d)));
        let needed = elements.and_then(|n| n.checked_mul(bits)).map(|b| b / 8);
        if needed != Some(e - s) {
            let needed = match (elements, needed) {
                (Some(n), Some(b)) => format!("{n} elements of {dtype}, {b} bytes"),
                _ => "more elements than can be counted".to_string(),
            };
            return Some(format!(
                "tensor `{name}`: shape {shape:?} needs {needed}, but its data_offsets [{s}, {e}] \
                 hold {} bytes",
                e - s
            ));
        }
    }
    if expected_start != data_len {
        return Some(format!(
            "the tensors' data ends at byte {expected_start} but the file holds {data_len} bytes \
             after the header (truncated file, or extra bytes at the end)"
        ));
    }
    None
}
