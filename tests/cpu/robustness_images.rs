//! Bad input, faults and limits (images): see `robustness_files.rs` for the suite's
//! scope and the classes tested elsewhere.

use crate::bad_input;
use activeshift::Error;
use activeshift::model::ArchConfig;
use activeshift::preprocess::{decode_image, preprocess};
use bad_input::*;
use image::{DynamicImage, ImageBuffer, ImageFormat, Luma, Rgb, Rgba};
use std::path::Path;

// --- images ----------------------------------------------------------------------------------

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
