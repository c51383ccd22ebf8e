//! Bad input, faults and limits: every class of malformed file, image and parameter a user can
//! hand the library or the CLI gets a typed error with a message that says what and why (or a
//! defined result), in bounded memory, without a panic.
//!
//! Classes covered elsewhere (not repeated here):
//! - safetensors model with a missing, extra, mis-shaped or NaN tensor, wrong label count:
//!   `tests/model_file.rs::bad_tensors_are_named`; config fields out of range:
//!   `configs_that_cannot_build_name_the_field`; file without our metadata:
//!   `corrupt_files_are_errors`.
//! - caffemodel truncated, random bytes, empty: `tests/caffe.rs::truncated_file_is_a_format_error`,
//!   `random_bytes_are_rejected`; absurd (2^40) and overflowing dims:
//!   `huge_dimension_is_rejected_without_allocating`, `overflowing_shape_is_rejected`; negative
//!   dims, wrong value count, NaN/Inf weights, legacy V1 files: the tests beside them.
//! - kernel shape errors: `tests/gpu_vs_cpu.rs::kernels_reject_wrong_shapes`,
//!   `tests/gpu_layers.rs::{cpu,gpu}_layers_return_shape_errors`.

mod common;
use common::tmpdir;

use activeshift::caffe::{CaffeBlob, CaffeLayer};
use activeshift::model::{ArchConfig, GpuModel, Model, StageConfig, import_caffe};
use activeshift::preprocess::{decode_image, preprocess};
use activeshift::{Error, GpuContext, GpuTensor, Shape4, cpu};
use image::{DynamicImage, ImageBuffer, ImageFormat, Luma, Rgb, Rgba};
use std::path::Path;
use std::process::Command;

// --- helpers ---------------------------------------------------------------------------------

fn format_err<T: std::fmt::Debug>(r: activeshift::Result<T>, format: &str) -> String {
    match r {
        Err(Error::Format { format: f, msg }) => {
            assert_eq!(f, format, "wrong format in `{msg}`");
            msg
        }
        other => panic!("expected an invalid {format} error, got {other:?}"),
    }
}

/// A tiny network: 1 channel 8x8 input, widths 4, 3 classes.
fn tiny_config() -> ArchConfig {
    ArchConfig::asnet20(4, 1, 1, 8, 3)
}

/// A safetensors file from a JSON header and data bytes.
fn safetensors_bytes(header: &str, data: &[u8]) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

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
fn nan_weights_in_a_file_are_refused() {
    // Model::new's check (tests/model_file.rs) also guards files.
    let mut model = Model::synthetic(&tiny_config(), 1).unwrap();
    model.params.get_mut("blocks.2.shift").unwrap().data[1] = f32::INFINITY;
    let bytes = model.to_safetensors().unwrap();
    let msg = format_err(Model::from_safetensors(&bytes), "model");
    assert_eq!(
        msg,
        "tensor `blocks.2.shift`: element 1 is inf (weights must be finite)"
    );
}

/// The config of a model file, replaced by `edit`.
fn file_with_config(edit: impl Fn(&mut serde_json::Value)) -> Vec<u8> {
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

// --- images ----------------------------------------------------------------------------------

fn encode(img: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, format).unwrap();
    out.into_inner()
}

/// A smooth colour image.
fn photo(w: u32, h: u32) -> image::RgbImage {
    ImageBuffer::from_fn(w, h, |x, y| {
        let (fx, fy) = (x as f32 / w as f32, y as f32 / h as f32);
        Rgb([
            (255.0 * fx) as u8,
            (255.0 * fy) as u8,
            (128.0 + 100.0 * (6.0 * fx + 4.0 * fy).sin()) as u8,
        ])
    })
}

fn crc32(bytes: &[u8]) -> u32 {
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
fn png_claiming(w: u32, h: u32) -> Vec<u8> {
    let mut png = encode(&DynamicImage::ImageRgb8(photo(1, 1)), ImageFormat::Png);
    png[16..20].copy_from_slice(&w.to_be_bytes());
    png[20..24].copy_from_slice(&h.to_be_bytes());
    let crc = crc32(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    png
}

fn imagenet() -> activeshift::model::Preprocess {
    ArchConfig::builtin("as-resnet-w32").unwrap().preprocess
}

#[test]
fn images_that_do_not_decode_are_format_errors() {
    let msg = format_err(decode_image(b""), "image");
    assert_eq!(msg, "the file is empty");
    let msg = format_err(decode_image(b"this is not an image at all"), "image");
    assert_eq!(
        msg,
        "not an image in a supported format (JPEG, PNG, GIF, BMP, WebP)"
    );
    let png = encode(&DynamicImage::ImageRgb8(photo(64, 64)), ImageFormat::Png);
    let msg = format_err(decode_image(&png[..png.len() / 2]), "image");
    assert!(!msg.is_empty());
    // A PNG whose pixel data is corrupt (the zlib stream is flipped) but the header is fine.
    let mut bad = png.clone();
    let n = bad.len();
    for b in &mut bad[60..n - 20] {
        *b ^= 0x5a;
    }
    format_err(decode_image(&bad), "image");
    // Found by `cargo fuzz` (image target): a GIF whose screen is 1280 x 0 pixels decoded
    // "successfully" into an image without pixels. Kept in tests/data/regressions/image/.
    let gif = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/regressions/image/gif-1280x0-screen.gif"),
    )
    .unwrap();
    let msg = format_err(decode_image(&gif), "image");
    assert_eq!(msg, "the image has no pixels (1280 x 0)");
    // Truncated JPEG and GIF headers.
    let jpeg = encode(&DynamicImage::ImageRgb8(photo(64, 64)), ImageFormat::Jpeg);
    format_err(decode_image(&jpeg[..20]), "image");
    let gif = encode(&DynamicImage::ImageRgb8(photo(8, 8)), ImageFormat::Gif);
    format_err(decode_image(&gif[..10]), "image");
}

#[test]
fn images_of_20000_pixels_a_side_are_refused_before_decoding() {
    let start = std::time::Instant::now();
    let msg = format_err(decode_image(&png_claiming(20000, 20000)), "image");
    assert!(
        msg.contains("at most 16384 x 16384 pixels and 512 MiB decoded"),
        "{msg}"
    );
    // Within the side limit but over the memory limit (16384^2 RGB is 768 MiB).
    let msg = format_err(decode_image(&png_claiming(16384, 16384)), "image");
    assert!(msg.contains("512 MiB decoded"), "{msg}");
    // The same through BMP, whose header has no checksum.
    let mut bmp = encode(&DynamicImage::ImageRgb8(photo(1, 1)), ImageFormat::Bmp);
    bmp[18..22].copy_from_slice(&20000i32.to_le_bytes());
    bmp[22..26].copy_from_slice(&20000i32.to_le_bytes());
    let msg = format_err(decode_image(&bmp), "image");
    assert!(msg.contains("at most 16384 x 16384"), "{msg}");
    assert!(start.elapsed().as_secs() < 5, "took {:?}", start.elapsed());
}

#[test]
fn a_one_pixel_image_gives_a_constant_input() {
    let img = decode_image(&encode(
        &DynamicImage::ImageRgb8(ImageBuffer::from_pixel(1, 1, Rgb([10, 100, 200]))),
        ImageFormat::Png,
    ))
    .unwrap();
    let p = imagenet();
    let x = preprocess(&img, &p).unwrap();
    assert_eq!(x.len(), 3 * 224 * 224);
    // BGR order, (v - mean) * scale.
    for (c, v) in [200.0f32, 100.0, 10.0].into_iter().enumerate() {
        let want = (v - p.mean[c]) * p.scale[c];
        let plane = &x[c * 224 * 224..][..224 * 224];
        assert!(plane.iter().all(|&y| y == want), "channel {c}");
    }
}

#[test]
fn grayscale_rgba_and_16_bit_images_have_defined_inputs() {
    let p = imagenet();
    let rgb = photo(40, 30);
    let want = preprocess(&DynamicImage::ImageRgb8(rgb.clone()), &p).unwrap();
    let through = |img: DynamicImage, format| {
        let decoded = decode_image(&encode(&img, format)).unwrap();
        preprocess(&decoded, &p).unwrap()
    };
    // RGBA: alpha is ignored, whatever it is.
    let rgba: image::RgbaImage = ImageBuffer::from_fn(40, 30, |x, y| {
        let [r, g, b] = rgb.get_pixel(x, y).0;
        Rgba([r, g, b, (x * 6) as u8])
    });
    assert_eq!(
        through(DynamicImage::ImageRgba8(rgba), ImageFormat::Png),
        want
    );
    // 16 bits per channel: v16 = 257 * v8 gives exactly the 8-bit input.
    let rgb16: ImageBuffer<Rgb<u16>, Vec<u16>> = ImageBuffer::from_fn(40, 30, |x, y| {
        let [r, g, b] = rgb.get_pixel(x, y).0;
        Rgb([257 * u16::from(r), 257 * u16::from(g), 257 * u16::from(b)])
    });
    assert_eq!(
        through(DynamicImage::ImageRgb16(rgb16), ImageFormat::Png),
        want
    );
    // Grayscale (8 and 16 bits) feeds the three channels alike: equal to the grey RGB image.
    let gray: image::GrayImage =
        ImageBuffer::from_fn(40, 30, |x, y| Luma([rgb.get_pixel(x, y).0[0]]));
    let gray_rgb: image::RgbImage =
        ImageBuffer::from_fn(40, 30, |x, y| Rgb([gray.get_pixel(x, y).0[0]; 3]));
    let want_gray = preprocess(&DynamicImage::ImageRgb8(gray_rgb), &p).unwrap();
    assert_eq!(
        through(DynamicImage::ImageLuma8(gray.clone()), ImageFormat::Png),
        want_gray
    );
    let gray16: ImageBuffer<Luma<u16>, Vec<u16>> = ImageBuffer::from_fn(40, 30, |x, y| {
        Luma([257 * u16::from(gray.get_pixel(x, y).0[0])])
    });
    assert_eq!(
        through(DynamicImage::ImageLuma16(gray16), ImageFormat::Png),
        want_gray
    );
    // A colour image for a grayscale model: its luma.
    let fm = ArchConfig::asnet20(16, 1, 1, 28, 10).preprocess;
    let luma = DynamicImage::ImageRgb8(rgb.clone()).to_luma8();
    assert_eq!(
        preprocess(&DynamicImage::ImageRgb8(rgb), &fm).unwrap(),
        preprocess(&DynamicImage::ImageLuma8(luma), &fm).unwrap()
    );
}

#[test]
fn extreme_aspect_ratios_are_resized_in_bounded_memory() {
    let p = imagenet();
    // 1 x 16384: a full resize to short side 256 would be 256 x 4194304 pixels (3 GiB).
    let thin = decode_image(&encode(
        &DynamicImage::ImageRgb8(photo(1, 16384)),
        ImageFormat::Png,
    ))
    .unwrap();
    let start = std::time::Instant::now();
    let x = preprocess(&thin, &p).unwrap();
    assert_eq!(x.len(), 3 * 224 * 224);
    assert!(x.iter().all(|v| v.is_finite()));
    assert!(start.elapsed().as_secs() < 5, "took {:?}", start.elapsed());

    // Where a full resize is still affordable, the windowed result matches it closely: a
    // 16 x 4096 image becomes 256 x 65536 before the crop.
    let img = photo(16, 4096);
    let x = preprocess(&DynamicImage::ImageRgb8(img.clone()), &p).unwrap();
    let full = image::imageops::resize(&img, 256, 65536, image::imageops::FilterType::Triangle);
    let crop = image::imageops::crop_imm(&full, 16, (65536 - 224) / 2, 224, 224).to_image();
    let mut worst = 0.0f32;
    for (i, px) in crop.pixels().enumerate() {
        for (c, src) in [2, 1, 0].into_iter().enumerate() {
            let want = (f32::from(px[src]) - p.mean[c]) * p.scale[c];
            worst = worst.max((x[c * 224 * 224 + i] - want).abs());
        }
    }
    // Within two grey levels.
    assert!(
        worst <= 2.0 * p.scale[0] + 1e-6,
        "largest difference {worst}"
    );
}

#[test]
fn preprocess_refuses_inconsistent_settings() {
    let mut p = imagenet();
    p.mean.pop();
    let img = DynamicImage::ImageRgb8(photo(4, 4));
    match preprocess(&img, &p) {
        Err(Error::InvalidArgument { op, msg }) => {
            assert_eq!(op, "preprocess");
            assert!(msg.contains("needs 3 means and scales"), "{msg}");
        }
        other => panic!("expected an invalid-argument error, got {other:?}"),
    }
}

// --- shifts that are NaN, infinite or huge ---------------------------------------------------

/// Shifts per channel `(xpos, ypos)`: each non-finite or huge value, and ordinary ones.
fn wild_shifts() -> Vec<(f32, f32)> {
    vec![
        (0.5, 0.25),
        (f32::NAN, 0.5),
        (0.5, f32::NAN),
        (f32::from_bits(0xffc0_0000), -1.5), // negative quiet NaN
        (1.25, f32::from_bits(0x7f80_0001)), // signalling NaN
        (f32::INFINITY, 0.0),
        (0.0, f32::NEG_INFINITY),
        (1e30, -0.5),
        (-0.5, -1e30),
        (3.0e9, 2.0e9),
        (-1.75, 2.5),
    ]
}

/// The definition: a NaN channel reads nothing; other shifts are clamped to +-2^20.
fn defined_shift(v: f32) -> f32 {
    let lim = cpu::SHIFT_LIMIT as f32;
    v.clamp(-lim, lim)
}

#[test]
fn nan_infinite_and_huge_shifts_have_a_defined_result_on_cpu_and_gpu() {
    let ctx = common::gpu("nan_infinite_and_huge_shifts_have_a_defined_result_on_cpu_and_gpu");
    let wild = wild_shifts();
    let c = wild.len();
    for stride in [1, 2] {
        let xs = Shape4::new(2, c, 7, 9);
        let x: Vec<f32> = (0..xs.len()).map(|i| ((i as f32) * 0.61).sin()).collect();
        let os = xs.strided(c, stride);
        let dout: Vec<f32> = (0..os.len()).map(|i| ((i as f32) * 0.37).cos()).collect();
        let shift: Vec<f32> = wild
            .iter()
            .map(|s| s.0)
            .chain(wild.iter().map(|s| s.1))
            .collect();
        let nan_channel = |ch: usize| wild[ch].0.is_nan() || wild[ch].1.is_nan();
        // The reference: NaN channels replaced by zero output; others with clamped shifts.
        let clamped: Vec<f32> = shift
            .iter()
            .map(|&v| if v.is_nan() { 0.0 } else { defined_shift(v) })
            .collect();
        let mut want = cpu::asl_forward(&x, xs, &clamped, stride).unwrap();
        let mut want_dx = cpu::asl_backward_input(&dout, xs, &clamped, stride).unwrap();
        let mut want_g = cpu::asl_backward_shift(&x, xs, &dout, &clamped, stride).unwrap();
        for ch in (0..c).filter(|&ch| nan_channel(ch)) {
            for n in 0..xs.n {
                want[(n * c + ch) * os.plane()..][..os.plane()].fill(0.0);
                want_dx[(n * c + ch) * xs.plane()..][..xs.plane()].fill(0.0);
            }
            want_g[ch] = 0.0;
            want_g[c + ch] = 0.0;
        }
        // Channels 5..=9 are shifted beyond the image: zero output and gradients too.
        for ch in 5..=9 {
            for n in 0..xs.n {
                assert!(
                    want[(n * c + ch) * os.plane()..][..os.plane()]
                        .iter()
                        .all(|&v| v == 0.0)
                );
            }
            assert_eq!((want_g[ch], want_g[c + ch]), (0.0, 0.0), "channel {ch}");
        }
        let got = cpu::asl_forward(&x, xs, &shift, stride).unwrap();
        let got_dx = cpu::asl_backward_input(&dout, xs, &shift, stride).unwrap();
        let got_g = cpu::asl_backward_shift(&x, xs, &dout, &shift, stride).unwrap();
        assert_eq!(got, want, "cpu forward, stride {stride}");
        assert_eq!(got_dx, want_dx, "cpu input gradient, stride {stride}");
        assert_eq!(got_g, want_g, "cpu shift gradient, stride {stride}");

        let Some(ctx) = ctx else { continue };
        let gpu = common::Gpu(ctx);
        use common::Impl;
        let g = gpu.forward(&x, xs, &shift, stride);
        let gdx = gpu.backward_input(&dout, xs, &shift, stride);
        let gg = gpu.backward_shift(&x, xs, &dout, &shift, stride);
        for (what, a, b) in [
            ("forward", &g, &want),
            ("input gradient", &gdx, &want_dx),
            ("shift gradient", &gg, &want_g),
        ] {
            assert!(
                a.iter().all(|v| v.is_finite()),
                "gpu {what}: non-finite output"
            );
            let err = common::rel_err(a, b);
            assert!(
                err <= 1e-5,
                "gpu {what}, stride {stride}: relative error {err}"
            );
        }
        // Exact zeros where the definition says zero.
        for ch in (0..c).filter(|&ch| nan_channel(ch) || (5..=9).contains(&ch)) {
            for n in 0..xs.n {
                assert!(
                    g[(n * c + ch) * os.plane()..][..os.plane()]
                        .iter()
                        .all(|&v| v == 0.0)
                );
                assert!(
                    gdx[(n * c + ch) * xs.plane()..][..xs.plane()]
                        .iter()
                        .all(|&v| v == 0.0)
                );
            }
            assert_eq!(
                (gg[ch], gg[c + ch]),
                (0.0, 0.0),
                "gpu gradient of channel {ch}"
            );
        }
    }
}

/// On a row wider than 2^20 pixels the clamp is visible: +-Inf and +-1e30 read at exactly
/// +-2^20 pixels, while a NaN channel still reads nothing (a NaN clamped to -2^20 would read
/// pixels here).
#[test]
fn shifts_are_clamped_to_2_pow_20_and_nan_reads_nothing_on_a_very_wide_row() {
    let lim = cpu::SHIFT_LIMIT as usize;
    let w = lim + 100;
    let xs = Shape4::new(1, 4, 1, w);
    let x: Vec<f32> = (0..xs.len()).map(|i| 1.0 + (i % 97) as f32).collect();
    let shift = [f32::NAN, f32::INFINITY, -1e30, 5e9, 0.0, 0.0, 0.0, 0.0];
    let want: Vec<f32> = (0..xs.len())
        .map(|i| {
            let (c, j) = (i / w, i % w);
            let src = match c {
                0 => None,
                1 | 3 => j.checked_add(lim).filter(|&k| k < w),
                _ => j.checked_sub(lim),
            };
            src.map_or(0.0, |k| x[c * w + k])
        })
        .collect();
    assert!(want[w..w + 100].iter().all(|&v| v != 0.0));
    assert!(want[2 * w + lim..3 * w].iter().all(|&v| v != 0.0));
    // The first differing element, if any (the vectors are too long to print).
    let first_diff = |got: &[f32]| {
        got.iter()
            .zip(&want)
            .position(|(a, b)| a.to_bits() != b.to_bits())
            .map(|i| (i / w, i % w, got[i], want[i]))
    };
    let cpu_out = cpu::asl_forward(&x, xs, &shift, 1).unwrap();
    assert_eq!(
        first_diff(&cpu_out),
        None,
        "cpu: (channel, column, got, want)"
    );
    if let Some(ctx) =
        common::gpu("shifts_are_clamped_to_2_pow_20_and_nan_reads_nothing_on_a_very_wide_row")
    {
        use common::Impl;
        let gpu_out = common::Gpu(ctx).forward(&x, xs, &shift, 1);
        assert_eq!(
            first_diff(&gpu_out),
            None,
            "gpu: (channel, column, got, want)"
        );
    }
}

#[test]
fn kernel_shapes_whose_element_count_overflows_are_refused() {
    let huge = Shape4::new(1 << 40, 1 << 40, 1 << 40, 1);
    let err = cpu::asl_forward(&[0.0f32], huge, &[0.0; 2], 1).unwrap_err();
    assert!(
        err.to_string()
            .contains("expected a shape whose element count fits in memory"),
        "{err}"
    );
    let err = cpu::affine(&[0.0f32], huge, &[1.0], &[0.0], false).unwrap_err();
    assert!(err.to_string().contains("fits in memory"), "{err}");
}

// --- device limits and faults ----------------------------------------------------------------

#[test]
fn an_activation_larger_than_a_storage_binding_is_refused_clearly() {
    let Some(ctx) = common::gpu("an_activation_larger_than_a_storage_binding_is_refused_clearly")
    else {
        return;
    };
    let limit = ctx.device().limits().max_storage_buffer_binding_size;
    // A 4096-channel stem whose output for one image is just over the limit.
    let side = ((limit / (4096 * 4)) as f64).sqrt() as usize + 1;
    let mut config = ArchConfig::asnet20(4096, 1, 3, side, 2);
    config.expansion = 1;
    config.stages = vec![StageConfig {
        blocks: 1,
        width: 4,
        stride: 1,
    }];
    let model = Model::synthetic(&config, 3).unwrap();
    let mut net = GpuModel::new(ctx, &model).unwrap();
    let input = vec![0.5f32; 3 * side * side];
    let err = pollster::block_on(net.forward(&input)).unwrap_err();
    let needed = (4096 * side * side * 4) as u64;
    match &err {
        Error::DeviceLimit {
            op,
            needed: n,
            limit: l,
            ..
        } => assert_eq!((*op, *n, *l), ("GpuModel", needed, limit)),
        other => panic!("expected a device-limit error, got {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        format!(
            "GpuModel: bytes for the largest activation of one image (one storage buffer \
             binding) needs {needed}, but the device allows at most {limit}"
        )
    );
}

#[test]
fn batches_over_the_limit_are_split_into_submissions() {
    let Some(ctx) = common::gpu("batches_over_the_limit_are_split_into_submissions") else {
        return;
    };
    let model = Model::synthetic(&tiny_config(), 5).unwrap();
    let input: Vec<f32> = (0..5 * 64).map(|i| ((i as f32) * 0.3).sin()).collect();
    let whole = pollster::block_on(GpuModel::new(ctx, &model).unwrap().forward(&input)).unwrap();
    let mut net = GpuModel::new(ctx, &model).unwrap();
    net.set_batch_limit(2);
    assert_eq!(net.max_batch().unwrap(), 2);
    let split = pollster::block_on(net.forward(&input)).unwrap();
    assert_eq!(split.batch(), 5);
    let err = common::rel_err(&split.logits, &whole.logits);
    assert!(err <= 1e-6, "split batch differs: {err}");
    let cpu = model.forward_cpu(&input).unwrap();
    assert!(common::rel_err(&split.probs, &cpu.probs) <= 1e-4);
    // `record` does not split: it refuses.
    let buf = GpuTensor::zeros(ctx, &[5, 1, 8, 8]).unwrap();
    let mut enc = ctx.device().create_command_encoder(&Default::default());
    let err = net.record(&mut enc, buf.buffer(), 5, None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "GpuModel::record: images per recorded batch (record smaller batches) needs 5, but the \
         device allows at most 2"
    );
}

#[test]
fn device_loss_is_an_error_not_a_hang_or_a_panic() {
    if common::gpu("device_loss_is_an_error_not_a_hang_or_a_panic").is_none() {
        return;
    }
    let ctx = pollster::block_on(GpuContext::new()).unwrap();
    let model = Model::synthetic(&tiny_config(), 9).unwrap();
    let mut net = GpuModel::new(&ctx, &model).unwrap();
    let input = vec![0.25f32; 64];
    pollster::block_on(net.forward(&input)).unwrap();
    ctx.device().destroy();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let first = pollster::block_on(net.forward(&input)).map(|_| ());
        let again = pollster::block_on(net.forward(&input)).map(|_| ());
        let _ = tx.send((first, again));
    });
    let (first, again) = rx
        .recv_timeout(std::time::Duration::from_secs(120))
        .expect("forward did not return within 2 minutes of the device being destroyed");
    for r in [first, again] {
        match r {
            Err(Error::Device(msg)) => assert!(msg.contains("lost"), "{msg}"),
            Err(Error::Readback(msg)) => assert!(!msg.is_empty()),
            other => panic!("expected a device error, got {other:?}"),
        }
    }
    let err = ctx.submit(|_| Ok(())).unwrap_err();
    assert!(
        err.to_string().starts_with("GPU device error: device lost"),
        "{err}"
    );
}

#[test]
fn wgpu_errors_on_an_owned_device_become_errors_not_panics() {
    if common::gpu("wgpu_errors_on_an_owned_device_become_errors_not_panics").is_none() {
        return;
    }
    // A buffer destroyed before the submission that uses it: wgpu's default handler would
    // panic.
    let ctx = pollster::block_on(GpuContext::new()).unwrap();
    let x = GpuTensor::zeros(&ctx, &[1, 2, 4, 4]).unwrap();
    x.buffer().destroy();
    let shift = GpuTensor::zeros(&ctx, &[2, 2]).unwrap();
    let out = GpuTensor::zeros(&ctx, &[1, 2, 4, 4]).unwrap();
    let err = ctx
        .submit(|enc| {
            ctx.kernels()
                .asl_forward()
                .prepare(&ctx, &x, &shift, 1, &out)
                .map(|d| d.record(enc))
        })
        .unwrap_err();
    match &err {
        Error::Device(msg) => assert!(msg.contains("destroyed"), "{msg}"),
        other => panic!("expected a device error, got {other:?}"),
    }
    // The error is reported once; the context stays usable.
    let ok = GpuTensor::from_slice(&ctx, &[2], &[1.0, 2.0]).unwrap();
    assert_eq!(ok.read_blocking(&ctx).unwrap(), [1.0, 2.0]);
}

#[test]
fn host_buffers_are_checked_before_they_are_bound() {
    let Some(ctx) = common::gpu("host_buffers_are_checked_before_they_are_bound") else {
        return;
    };
    let buffer = |size, usage| {
        ctx.device().create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size,
            usage,
            mapped_at_creation: false,
        })
    };
    let err =
        GpuTensor::from_buffer(ctx, buffer(64, wgpu::BufferUsages::COPY_DST), &[4, 4]).unwrap_err();
    assert!(
        err.to_string()
            .contains("needs STORAGE usage to be bound by kernels"),
        "{err}"
    );
    let err =
        GpuTensor::from_buffer(ctx, buffer(60, wgpu::BufferUsages::STORAGE), &[4, 4]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "tensor from buffer: buffer size: expected at least 64 bytes for shape [4, 4], found 60 bytes"
    );
    // A storage-only buffer cannot be read back: an error, not a wgpu validation panic.
    let t = GpuTensor::from_buffer(ctx, buffer(64, wgpu::BufferUsages::STORAGE), &[4, 4]).unwrap();
    let err = t.read_blocking(ctx).unwrap_err();
    assert!(err.to_string().contains("needs COPY_SRC usage"), "{err}");

    let model = Model::synthetic(&tiny_config(), 2).unwrap();
    let mut net = GpuModel::new(ctx, &model).unwrap();
    let mut enc = ctx.device().create_command_encoder(&Default::default());
    let input = buffer(2 * 64 * 4, wgpu::BufferUsages::STORAGE);
    let err = net.record(&mut enc, &input, 0, None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "GpuModel::record: invalid argument: batch must be at least 1 image"
    );
    let err = net.record(&mut enc, &input, 3, None).unwrap_err();
    assert!(
        err.to_string()
            .contains("at least 768 bytes for shape [3, 1, 8, 8]"),
        "{err}"
    );
    let small_out = buffer(8, wgpu::BufferUsages::COPY_DST);
    let err = net
        .record(&mut enc, &input, 2, Some(&small_out))
        .unwrap_err();
    assert!(
        err.to_string().contains(
            "output buffer: expected at least 48 bytes (logits and probabilities of 2 images)"
        ),
        "{err}"
    );
    let wrong_use = buffer(48, wgpu::BufferUsages::STORAGE);
    let err = net
        .record(&mut enc, &input, 2, Some(&wrong_use))
        .unwrap_err();
    assert!(err.to_string().contains("needs COPY_DST usage"), "{err}");
}

// --- the CLI ---------------------------------------------------------------------------------

fn cli(args: &[&std::ffi::OsStr]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_activeshift"))
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
fn cli_fails(args: &[&std::ffi::OsStr]) -> String {
    let (code, _, err) = cli(args);
    assert_eq!(code, Some(1), "exit code for {args:?}: {err}");
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "{err}"
    );
    assert!(err.lines().all(|l| l.starts_with("error: ")), "{err}");
    err
}

#[test]
fn the_cli_reports_every_bad_input_in_one_line_without_panicking() {
    let dir = tmpdir("cli");
    let model_path = dir.join("tiny.safetensors");
    Model::synthetic(&tiny_config(), 4)
        .unwrap()
        .save(&model_path, true)
        .unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    let good = write(
        "good.png",
        &encode(&DynamicImage::ImageRgb8(photo(12, 9)), ImageFormat::Png),
    );
    let o = |p: &Path| p.as_os_str().to_owned();
    let s = |v: &str| std::ffi::OsString::from(v);

    // Bad images: one line each, the good image still classified, exit status 1.
    let huge = write("huge.png", &png_claiming(20000, 20000));
    let corrupt = write("corrupt.jpg", b"\xff\xd8\xff\xe0 not really a jpeg");
    let missing = dir.join("missing.png");
    let args = [
        s("classify"),
        s("--backend"),
        s("cpu"),
        s("--model"),
        o(&model_path),
        o(&good),
        o(&huge),
        o(&corrupt),
        o(&missing),
    ];
    let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    let (code, out, err) = cli(&args);
    assert_eq!(code, Some(1), "{err}");
    assert!(out.contains("good.png (asnet20-4x1 on cpu)"), "{out}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 4, "{err}");
    assert!(
        lines[0].starts_with(&format!("error: {}: invalid image: ", huge.display()))
            && lines[0].contains("16384 x 16384"),
        "{err}"
    );
    assert!(
        lines[1].starts_with(&format!("error: {}: invalid image: ", corrupt.display())),
        "{err}"
    );
    assert!(
        lines[2].starts_with(&format!("error: {}: ", missing.display()))
            && lines[2].contains("No such file"),
        "{err}"
    );
    assert_eq!(
        lines[3],
        "error: classify: invalid argument: 3 of 4 images could not be classified"
    );
    assert!(!err.contains("panicked"), "{err}");

    // Bad model files: one line naming the file and the problem.
    let absurd = write(
        "absurd.safetensors",
        &safetensors_bytes(
            r#"{"w":{"dtype":"F32","shape":[1099511627776],"data_offsets":[0,4]}}"#,
            &[0; 4],
        ),
    );
    let err = cli_fails(&[&s("classify"), &s("--model"), &o(&absurd), &o(&good)]);
    assert_eq!(
        err.trim_end(),
        format!(
            "error: invalid safetensors: {}: tensor `w`: shape [1099511627776] needs \
             1099511627776 elements of F32, 4398046511104 bytes, but its data_offsets [0, 4] \
             hold 4 bytes",
            absurd.display()
        )
    );
    let config = write(
        "config.safetensors",
        &file_with_config(|c| c["stages"][0]["stride"] = serde_json::json!(0)),
    );
    let err = cli_fails(&[&s("info"), &s("--model"), &o(&config)]);
    assert_eq!(
        err.trim_end(),
        format!(
            "error: invalid model config: {}: field `stages[0].stride`: must be in 1..=65536, \
             found 0",
            config.display()
        )
    );
    let err = cli_fails(&[&s("classify"), &s("--model"), &o(&dir), &o(&good)]);
    assert!(err.contains("directory"), "{err}");
    let err = cli_fails(&[&s("import-caffe"), &o(&good), &s("-o"), &o(&dir.join("x"))]);
    assert!(
        err.starts_with(&format!("error: invalid caffemodel: {}: ", good.display())),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

// --- fuzzing regressions ---------------------------------------------------------------------

/// Replay every input kept in `tests/data/regressions/<target>/` (crashes and slow inputs found
/// by `cargo fuzz`, see `fuzz/README.md`) through what the fuzz target runs: each must return,
/// with a result or an error.
#[test]
fn fuzz_regressions_do_not_crash() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/regressions");
    let mut replayed = 0;
    for target in ["safetensors_model", "caffemodel", "image", "checkpoint"] {
        // A target without regressions has no folder.
        let Ok(entries) = std::fs::read_dir(root.join(target)) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            match target {
                "safetensors_model" => {
                    if let Ok(m) = Model::from_safetensors(&data) {
                        let again = Model::from_safetensors(&m.to_safetensors().unwrap()).unwrap();
                        assert_eq!(again, m, "{}", path.display());
                    }
                }
                "caffemodel" => {
                    if let Ok(layers) = activeshift::caffe::parse_caffemodel(&data) {
                        let _ = import_caffe(&layers, Vec::new());
                    }
                }
                "checkpoint" => {
                    use activeshift::train::Trainer;
                    if let Ok(t) = Trainer::from_checkpoint_bytes(&data) {
                        let again =
                            Trainer::from_checkpoint_bytes(&t.checkpoint_bytes().unwrap()).unwrap();
                        assert_eq!(again, t, "{}", path.display());
                        // A checkpoint that loads exports its model (the fuzz target's contract).
                        t.export()
                            .unwrap_or_else(|e| panic!("{}: export: {e}", path.display()));
                    }
                }
                _ => {
                    if let Ok(img) = decode_image(&data) {
                        for p in [imagenet(), tiny_config().preprocess] {
                            let x = preprocess(&img, &p).unwrap();
                            assert_eq!(x.len(), p.color.channels() * p.crop[0] * p.crop[1]);
                        }
                    }
                }
            }
            replayed += 1;
        }
    }
    eprintln!("replayed {replayed} fuzz regression inputs");
    // At least the committed GIF regression: a moved or emptied folder fails here instead of
    // replaying nothing.
    assert!(
        replayed >= 1,
        "no fuzz regression inputs found under {}",
        root.display()
    );
}

// --- fuzz seeds ------------------------------------------------------------------------------

/// Protobuf encoding, just enough for caffemodel seeds.
mod pb {
    pub fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    pub fn bytes(out: &mut Vec<u8>, field: u64, data: &[u8]) {
        varint(out, field << 3 | 2);
        varint(out, data.len() as u64);
        out.extend_from_slice(data);
    }
    pub fn int(out: &mut Vec<u8>, field: u64, v: u64) {
        varint(out, field << 3);
        varint(out, v);
    }
    /// A BlobProto with `shape.dim` and packed f32 `data` (or legacy 4-d fields and packed
    /// `double_data`).
    pub fn blob(dims: &[i64], legacy: bool, values: &[f32]) -> Vec<u8> {
        let mut b = Vec::new();
        if legacy {
            for (f, d) in dims.iter().enumerate() {
                int(&mut b, f as u64 + 1, *d as u64);
            }
            let data: Vec<u8> = values
                .iter()
                .flat_map(|v| f64::from(*v).to_le_bytes())
                .collect();
            bytes(&mut b, 8, &data);
        } else {
            let mut shape = Vec::new();
            let mut packed = Vec::new();
            for d in dims {
                varint(&mut packed, *d as u64);
            }
            bytes(&mut shape, 1, &packed);
            bytes(&mut b, 7, &shape);
            let data: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            bytes(&mut b, 5, &data);
        }
        b
    }
    pub fn layer(name: &str, kind: &str, blobs: &[Vec<u8>]) -> Vec<u8> {
        let mut l = Vec::new();
        bytes(&mut l, 1, name.as_bytes());
        bytes(&mut l, 2, kind.as_bytes());
        for b in blobs {
            bytes(&mut l, 7, b);
        }
        l
    }
    pub fn net(layers: &[Vec<u8>]) -> Vec<u8> {
        let mut n = Vec::new();
        bytes(&mut n, 1, b"seed");
        for l in layers {
            bytes(&mut n, 100, l);
        }
        n
    }
}

/// Writes the seed corpora of the fuzz targets into `fuzz/seeds/` (run with `--ignored`).
#[test]
#[ignore = "writes fuzz/seeds; run by hand"]
fn write_fuzz_seeds() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    let put = |target: &str, name: &str, bytes: &[u8]| {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
    };
    // Safetensors: a tiny but complete model, and a file without our metadata.
    let tiny = Model::synthetic(&ArchConfig::asnet20(1, 1, 1, 4, 2), 1).unwrap();
    put(
        "safetensors_model",
        "tiny-model.safetensors",
        &tiny.to_safetensors().unwrap(),
    );
    put(
        "safetensors_model",
        "plain.safetensors",
        &safetensors_bytes(
            r#"{"w":{"dtype":"F32","shape":[2,1],"data_offsets":[0,8]}}"#,
            &[0, 0, 128, 63, 0, 0, 0, 64],
        ),
    );
    // Caffe: a small net in each blob encoding, and the first layers of AS-ResNet-w32.
    let vals = |n: usize| -> Vec<f32> { (0..n).map(|i| (i as f32 * 0.37).sin()).collect() };
    put(
        "caffemodel",
        "small-net.caffemodel",
        &pb::net(&[
            pb::layer("data", "Input", &[]),
            pb::layer(
                "conv",
                "Convolution",
                &[pb::blob(&[2, 1, 1, 1], false, &vals(2))],
            ),
            pb::layer("old", "Scale", &[pb::blob(&[1, 1, 1, 3], true, &vals(3))]),
        ]),
    );
    let c = 32;
    put(
        "caffemodel",
        "as-resnet-w32-head.caffemodel",
        &pb::net(&[
            pb::layer(
                "conv0",
                "Convolution",
                &[pb::blob(&[c, 3, 3, 3], false, &vals(864))],
            ),
            pb::layer(
                "scale0_0",
                "Scale",
                &[
                    pb::blob(&[c], false, &vals(32)),
                    pb::blob(&[c], false, &vals(32)),
                ],
            ),
            pb::layer(
                "conv0_0/1",
                "Convolution",
                &[pb::blob(&[c, c, 1, 1], false, &vals(1024))],
            ),
            pb::layer(
                "scale0_0/1",
                "Scale",
                &[
                    pb::blob(&[c], false, &vals(32)),
                    pb::blob(&[c], false, &vals(32)),
                ],
            ),
            pb::layer(
                "shift0_0/2",
                "SpatialShift",
                &[
                    pb::blob(&[c], false, &vals(32)),
                    pb::blob(&[c], false, &vals(32)),
                ],
            ),
            pb::layer(
                "conv0_0/3",
                "Convolution",
                &[pb::blob(&[c, c, 1, 1], false, &vals(1024))],
            ),
        ]),
    );
    // Images: every format and several pixel types, a few pixels each.
    let rgb = DynamicImage::ImageRgb8(photo(5, 3));
    for (name, img, format) in [
        ("rgb.png", rgb.clone(), ImageFormat::Png),
        (
            "rgba.png",
            DynamicImage::ImageRgba8(rgb.to_rgba8()),
            ImageFormat::Png,
        ),
        (
            "gray16.png",
            DynamicImage::ImageLuma16(rgb.to_luma16()),
            ImageFormat::Png,
        ),
        ("rgb.jpg", rgb.clone(), ImageFormat::Jpeg),
        (
            "gray.jpg",
            DynamicImage::ImageLuma8(rgb.to_luma8()),
            ImageFormat::Jpeg,
        ),
        ("rgb.gif", rgb.clone(), ImageFormat::Gif),
        ("rgb.bmp", rgb.clone(), ImageFormat::Bmp),
        (
            "rgba.webp",
            DynamicImage::ImageRgba8(rgb.to_rgba8()),
            ImageFormat::WebP,
        ),
    ] {
        put("image", name, &encode(&img, format));
    }
    // Checkpoint: a tiny run's, fresh.
    let t = activeshift::train::Trainer::new(
        ArchConfig::asnet20(1, 1, 1, 4, 2),
        vec![],
        Default::default(),
    )
    .unwrap();
    put("checkpoint", "tiny.ckpt", &t.checkpoint_bytes().unwrap());
}

/// Files far larger than any model, checkpoint or dataset cache (a 2 GiB + 1 byte sparse file,
/// standing in for a wrong path or a device) are refused by size before they are read.
#[test]
fn oversized_checkpoints_and_dataset_caches_are_refused_before_reading() {
    let dir = tmpdir("oversized");
    let path = dir.join("huge.bin");
    let file = std::fs::File::create(&path).unwrap();
    file.set_len((2u64 << 30) + 1).unwrap();
    drop(file);
    let err = activeshift::train::Trainer::load_checkpoint(&path).unwrap_err();
    assert!(
        err.to_string()
            .contains("at most 2147483648 bytes are accepted"),
        "{err}"
    );
    let err = activeshift::data::FashionMnist::load_cache(&path).unwrap_err();
    assert!(
        err.to_string()
            .contains("at most 1073741824 bytes are accepted"),
        "{err}"
    );
    // A directory in place of the file is an I/O error, not a panic.
    let err = activeshift::data::FashionMnist::load_cache(&dir).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Finite statistics that fold into an infinite model (the fuzz finding kept in
/// `tests/data/regressions/checkpoint/`) are refused when the checkpoint is read, with the
/// reason, instead of failing when the run writes its model.
#[test]
fn checkpoints_whose_batchnorm_folds_to_infinity_are_refused() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/regressions/checkpoint/bn-folds-to-infinity.ckpt");
    let data = std::fs::read(&path).unwrap();
    let err = activeshift::train::Trainer::from_checkpoint_bytes(&data)
        .unwrap_err()
        .to_string();
    assert!(err.contains("do not fold into a model"), "{err}");
    assert!(err.contains("head.bias"), "{err}");
}
