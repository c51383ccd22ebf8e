//! Bad input, faults and limits (this suite: model files and Caffe imports; beside it
//! `robustness_images.rs`, `robustness_gpu.rs` for shifts and device limits, `robustness_cli.rs`;
//! their helpers in `tests/bad_input/`): every class of malformed file, image and parameter a user can
//! hand the library or the CLI gets a typed error with a message that says what and why (or a
//! defined result), in bounded memory, without a panic.
//!
//! Classes covered elsewhere (not repeated here):
//! - safetensors model with a missing, extra, mis-shaped or NaN tensor, wrong label count:
//!   `tests/cpu/model_file.rs::bad_tensors_are_named`; config fields out of range:
//!   `configs_that_cannot_build_name_the_field`; file without our metadata:
//!   `corrupt_files_are_errors`.
//! - caffemodel truncated, random bytes, empty: `tests/cpu/caffe.rs::truncated_file_is_a_format_error`,
//!   `random_bytes_are_rejected`; absurd (2^40) and overflowing dims:
//!   `huge_dimension_is_rejected_without_allocating`, `overflowing_shape_is_rejected`; negative
//!   dims, wrong value count, NaN/Inf weights, legacy V1 files: the tests beside them.
//! - kernel shape errors: `tests/gpu/gpu_vs_cpu.rs::kernels_reject_wrong_shapes`,
//!   `tests/gpu/gpu_layers.rs::{cpu,gpu}_layers_return_shape_errors`.

use crate::bad_input;
use crate::common;
use activeshift::Error;
use activeshift::caffe::{CaffeBlob, CaffeLayer};
use activeshift::model::{Model, import_caffe};
use bad_input::*;
use common::tmpdir;

// --- safetensors -----------------------------------------------------------------------------

#[test]
fn safetensors_with_absurd_dimensions_are_refused_before_allocating() {
    // 2^40 elements declared, 4 bytes present.
    let bytes = safetensors_bytes(
        r#"{"stem.weight":{"dtype":"F32","shape":[1099511627776],"data_offsets":[0,4]}}"#,
        &[0; 4],
    );
    let msg = format_err(Model::from_safetensors(&bytes), "safetensors");
    assert_eq!(
        msg,
        "tensor `stem.weight`: shape [1099511627776] needs 1099511627776 elements of F32, \
         4398046511104 bytes, but its data_offsets [0, 4] hold 4 bytes"
    );
    // A product that overflows 64 bits, and one that overflows 128.
    let bytes = safetensors_bytes(
        r#"{"w":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,4]}}"#,
        &[0; 4],
    );
    let msg = format_err(Model::from_safetensors(&bytes), "safetensors");
    assert!(
        msg.starts_with(
            "tensor `w`: shape [4294967296, 4294967296, 16] needs 295147905179352825856 elements"
        ),
        "{msg}"
    );
    let d = u64::MAX;
    let bytes = safetensors_bytes(
        &format!(r#"{{"w":{{"dtype":"F32","shape":[{d},{d},{d}],"data_offsets":[0,4]}}}}"#),
        &[0; 4],
    );
    let msg = format_err(Model::from_safetensors(&bytes), "safetensors");
    assert!(
        msg.contains("tensor `w`") && msg.contains("needs more elements than can be counted"),
        "{msg}"
    );
    // Data offsets past the end of the file.
    let bytes = safetensors_bytes(
        r#"{"w":{"dtype":"F32","shape":[1000000],"data_offsets":[0,4000000]}}"#,
        &[0; 8],
    );
    let msg = format_err(Model::from_safetensors(&bytes), "safetensors");
    assert!(
        msg.contains("data ends at byte 4000000 but the file holds 8 bytes"),
        "{msg}"
    );
}

#[test]
fn safetensors_truncated_or_with_a_huge_header_length_are_refused() {
    let model = Model::synthetic(&tiny_config(), 1).unwrap();
    let bytes = model.to_safetensors().unwrap();
    let msg = format_err(Model::from_safetensors(&bytes[..5]), "safetensors");
    assert!(msg.contains("holds 5 bytes, too few"), "{msg}");
    let msg = format_err(Model::from_safetensors(&bytes[..100]), "safetensors");
    assert!(msg.contains("only 92 bytes follow it"), "{msg}");
    let msg = format_err(
        Model::from_safetensors(&bytes[..bytes.len() - 3]),
        "safetensors",
    );
    assert!(msg.contains("truncated file"), "{msg}");
    // A header length of 2^63: refused without reading or allocating that much.
    let mut huge = bytes.clone();
    huge[..8].copy_from_slice(&(1u64 << 63).to_le_bytes());
    let msg = format_err(Model::from_safetensors(&huge), "safetensors");
    assert!(msg.contains("at most 16777216 are accepted"), "{msg}");
    // Corrupt JSON in the header.
    let mut corrupt = bytes.clone();
    corrupt[10] = b'}';
    let msg = format_err(Model::from_safetensors(&corrupt), "safetensors");
    assert!(!msg.is_empty());
}

#[test]
fn model_files_are_refused_from_their_header_before_their_data_is_read() {
    let dir = tmpdir("header-first");
    let bytes = Model::synthetic(&tiny_config(), 1)
        .unwrap()
        .to_safetensors()
        .unwrap();
    // A valid model's header followed by nearly 1 GiB (sparse: no disk, no time) where its few
    // KB of data should be: refused from the header alone ("the header describes": the words
    // of that check; a parse of the whole file words it "the tensors' data ends").
    let padded = dir.join("padded.safetensors");
    std::fs::write(&padded, &bytes).unwrap();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&padded)
        .unwrap();
    f.set_len((1 << 30) - 16).unwrap();
    drop(f);
    let msg = format_err(Model::load(&padded), "safetensors");
    assert!(
        msg.contains("the header describes tensor data ending at byte"),
        "{msg}"
    );
    assert!(msg.contains("extra bytes at the end"), "{msg}");
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap());
    assert!(msg.contains(&format!(
        "holds {} bytes",
        (1u64 << 30) - 16 - 8 - header_len
    )));
    // Random bytes whose first 8 claim a header longer than the file: refused from the length.
    let garbage = dir.join("garbage.safetensors");
    let mut g = vec![0u8; 4096];
    g[..8].copy_from_slice(&5000u64.to_le_bytes());
    std::fs::write(&garbage, &g).unwrap();
    let msg = format_err(Model::load(&garbage), "safetensors");
    assert!(
        msg.contains("says 5000 bytes, but only 4088 bytes follow it"),
        "{msg}"
    );
    // Files shorter than the length field, or than their header: the same messages as a parse.
    for cut in [0, 5, 100] {
        let path = dir.join(format!("cut{cut}.safetensors"));
        std::fs::write(&path, &bytes[..cut]).unwrap();
        let from_file = format_err(Model::load(&path), "safetensors");
        let parsed = format_err(Model::from_safetensors(&bytes[..cut]), "safetensors");
        assert!(from_file.ends_with(&parsed), "{from_file} / {parsed}");
    }
    // Three bytes of data short: the header says so.
    let short = dir.join("short.safetensors");
    std::fs::write(&short, &bytes[..bytes.len() - 3]).unwrap();
    let msg = format_err(Model::load(&short), "safetensors");
    assert!(msg.contains("the header describes"), "{msg}");
    // A whole file still loads.
    let ok = dir.join("ok.safetensors");
    std::fs::write(&ok, &bytes).unwrap();
    Model::load(&ok).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn nan_weights_in_a_file_are_refused() {
    // Model::new's check (tests/cpu/model_file.rs) also guards files.
    let mut model = Model::synthetic(&tiny_config(), 1).unwrap();
    model.params.get_mut("blocks.2.shift").unwrap().data[1] = f32::INFINITY;
    let bytes = model.to_safetensors().unwrap();
    let msg = format_err(Model::from_safetensors(&bytes), "model");
    assert_eq!(
        msg,
        "tensor `blocks.2.shift`: element 1 is inf (weights must be finite)"
    );
}

#[test]
fn configs_of_absurd_size_are_refused_quickly() {
    use serde_json::json;
    type Edit = Box<dyn Fn(&mut serde_json::Value)>;
    let cases: [(&str, Edit); 6] = [
        (
            "field `input_size[0]`: must be in 1..=8192, found 65536",
            Box::new(|c| {
                c["input_size"] = json!([65536, 65536]);
                c["preprocess"]["crop"] = json!([65536, 65536]);
            }),
        ),
        (
            "field `stages`: must hold 1..=64 stages, found 100000",
            Box::new(|c| {
                let stage = c["stages"][0].clone();
                c["stages"] = json!(vec![stage; 100_000]);
            }),
        ),
        (
            "field `stages[].blocks`: 131072 blocks in all; at most 1024 are supported",
            Box::new(|c| {
                c["stages"] = json!([
                    {"blocks": 65536, "width": 4, "stride": 1},
                    {"blocks": 65536, "width": 4, "stride": 1},
                ]);
            }),
        ),
        (
            "parameters; at most 268435456 are supported",
            Box::new(|c| {
                c["stages"] = json!([{"blocks": 4, "width": 65536, "stride": 1}]);
            }),
        ),
        (
            "activation values; at most 268435456 are supported",
            Box::new(|c| {
                c["input_size"] = json!([8192, 8192]);
                c["preprocess"]["crop"] = json!([8192, 8192]);
                c["stem_width"] = json!(64);
            }),
        ),
        (
            "field `preprocess.resize_short`",
            Box::new(|c| c["preprocess"]["resize_short"] = json!(1usize << 40)),
        ),
    ];
    for (needle, edit) in cases {
        let start = std::time::Instant::now();
        let msg = format_err(
            Model::from_safetensors(&file_with_config(edit)),
            "model config",
        );
        assert!(msg.contains(needle), "`{msg}` lacks `{needle}`");
        assert!(
            start.elapsed().as_secs() < 5,
            "{needle}: took {:?}",
            start.elapsed()
        );
    }
}

#[test]
fn model_files_too_large_or_not_files_are_refused_without_reading_them() {
    let dir = tmpdir("load");
    let big = dir.join("big.safetensors");
    // A sparse file one byte over the limit: refused from its size, never read.
    let f = std::fs::File::create(&big).unwrap();
    f.set_len(activeshift::model::MAX_MODEL_FILE_BYTES + 1)
        .unwrap();
    let msg = format_err(Model::load(&big), "safetensors");
    assert_eq!(
        msg,
        format!(
            "{}: the file is 1073741825 bytes; at most 1073741824 bytes are accepted",
            big.display()
        )
    );
    match Model::load(&dir) {
        Err(Error::Io { path, source }) => {
            assert_eq!(path, dir.display().to_string());
            assert!(source.to_string().contains("directory"), "{source}");
        }
        other => panic!("expected an I/O error, got {other:?}"),
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

// --- Caffe import ----------------------------------------------------------------------------

fn layer(name: &str, blobs: &[&[usize]]) -> CaffeLayer {
    CaffeLayer {
        name: name.into(),
        kind: "Convolution".into(),
        blobs: blobs
            .iter()
            .map(|s| CaffeBlob {
                shape: s.to_vec(),
                data: vec![0.5; s.iter().product()],
            })
            .collect(),
    }
}

#[test]
fn caffe_files_that_are_not_as_resnet_name_what_is_missing() {
    // A well-formed caffemodel of another network.
    let msg = format_err(import_caffe(&[layer("data", &[])], vec![]), "caffemodel");
    assert_eq!(msg, "layer `conv0` is missing");
    let msg = format_err(
        import_caffe(&[layer("conv0", &[&[16, 3, 3, 3]])], vec![]),
        "caffemodel",
    );
    assert!(
        msg.contains("expected the stem of AS-ResNet-w32/w50/w68") && msg.contains("[16, 3, 3, 3]"),
        "{msg}"
    );
    let msg = format_err(
        import_caffe(&[layer("conv0", &[&[32, 3, 3, 3]])], vec![]),
        "caffemodel",
    );
    assert_eq!(msg, "layer `scale0_0` is missing");
    let msg = format_err(
        import_caffe(
            &[
                layer("conv0", &[&[32, 3, 3, 3]]),
                layer("scale0_0", &[&[32]]),
            ],
            vec![],
        ),
        "caffemodel",
    );
    assert_eq!(msg, "layer `scale0_0` has 1 blobs, blob 1 is needed");
}

#[test]
fn caffe_file_errors_name_the_file() {
    let dir = tmpdir("caffe");
    let path = dir.join("not-a-net.caffemodel");
    std::fs::write(&path, b"\xff\xff\xff\xff garbage").unwrap();
    let msg = format_err(activeshift::caffe::read_caffemodel(&path), "caffemodel");
    assert!(
        msg.starts_with(&format!(
            "{}: not a decodable Caffe NetParameter",
            path.display()
        )),
        "{msg}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
