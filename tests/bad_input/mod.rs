//! Helpers of the bad-input suites (`robustness_*.rs`): hostile files, images and CLI runs.
#![allow(dead_code)]

use activeshift::Error;
use activeshift::model::{ArchConfig, Model};
use image::{DynamicImage, ImageBuffer, ImageFormat, Rgb};

pub fn format_err<T: std::fmt::Debug>(r: activeshift::Result<T>, format: &str) -> String {
    match r {
        Err(Error::Format { format: f, msg }) => {
            assert_eq!(f, format, "wrong format in `{msg}`");
            msg
        }
        other => panic!("expected an invalid {format} error, got {other:?}"),
    }
}

/// A tiny network: 1 channel 8x8 input, widths 4, 3 classes.
pub fn tiny_config() -> ArchConfig {
    ArchConfig::asnet20(4, 1, 1, 8, 3)
}

/// A safetensors file from a JSON header and data bytes.
pub fn safetensors_bytes(header: &str, data: &[u8]) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

/// The config of a model file, replaced by `edit`.
pub fn file_with_config(edit: impl Fn(&mut serde_json::Value)) -> Vec<u8> {
    let model = Model::synthetic(&tiny_config(), 1).unwrap();
    let mut config = serde_json::to_value(&model.config).unwrap();
    edit(&mut config);
    let header = serde_json::json!({
        "__metadata__": {
            "format": activeshift::model::FORMAT,
            "config": config.to_string(),
            "labels": "[]",
        }
    });
    safetensors_bytes(&header.to_string(), &[])
}

pub fn encode(img: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, format).unwrap();
    out.into_inner()
}

/// A smooth colour image.
pub fn photo(w: u32, h: u32) -> image::RgbImage {
    ImageBuffer::from_fn(w, h, |x, y| {
        let (fx, fy) = (x as f32 / w as f32, y as f32 / h as f32);
        Rgb([
            (255.0 * fx) as u8,
            (255.0 * fy) as u8,
            (128.0 + 100.0 * (6.0 * fx + 4.0 * fy).sin()) as u8,
        ])
    })
}

pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A valid PNG header (with a correct CRC) declaring `w` x `h` pixels, followed by the data of a
/// 1x1 image.
pub fn png_claiming(w: u32, h: u32) -> Vec<u8> {
    let mut png = encode(&DynamicImage::ImageRgb8(photo(1, 1)), ImageFormat::Png);
    png[16..20].copy_from_slice(&w.to_be_bytes());
    png[20..24].copy_from_slice(&h.to_be_bytes());
    let crc = crc32(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    png
}

pub fn imagenet() -> activeshift::model::Preprocess {
    ArchConfig::builtin("as-resnet-w32").unwrap().preprocess
}

pub fn cli(args: &[&std::ffi::OsStr]) -> (Option<i32>, String, String) {
    let out = crate::common::bin()
        .args(args)
        .output()
        .expect("run activeshift");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Run the CLI and expect a failure whose stderr lines are all `error: ...`, one per problem,
/// with no panic trace; returns stderr.
pub fn cli_fails(args: &[&std::ffi::OsStr]) -> String {
    let (code, _, err) = cli(args);
    assert_eq!(code, Some(1), "exit code for {args:?}: {err}");
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "{err}"
    );
    assert!(err.lines().all(|l| l.starts_with("error: ")), "{err}");
    err
}
