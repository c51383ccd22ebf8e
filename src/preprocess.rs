//! Turning images into network inputs, as the model's [`Preprocess`] says.

use crate::error::{Error, Result};
use crate::model::{ColorOrder, Preprocess};
use image::{DynamicImage, imageops::FilterType};

/// Largest image side accepted when decoding (larger images are refused, not decoded).
pub const MAX_IMAGE_SIDE: u32 = 16384;
/// Most memory the decoder may allocate.
pub const MAX_DECODE_BYTES: u64 = 1 << 30;

fn image_err(msg: impl Into<String>) -> Error {
    Error::Format {
        format: "image",
        msg: msg.into(),
    }
}

/// Decode an image file (JPEG, PNG, GIF, BMP, WebP) from memory, with bounded size and memory.
pub fn decode_image(bytes: &[u8]) -> Result<DynamicImage> {
    let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| image_err(e.to_string()))?;
    if reader.format().is_none() {
        return Err(image_err(
            "not an image in a supported format (JPEG, PNG, GIF, BMP, WebP)",
        ));
    }
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    reader.decode().map_err(|e| image_err(e.to_string()))
}

/// Resize, centre-crop, reorder channels and normalize: returns the `[C, H, W]` input (C from
/// the colour order, `[H, W]` = `p.crop`).
pub fn preprocess(img: &DynamicImage, p: &Preprocess) -> Result<Vec<f32>> {
    let (w, h) = (img.width(), img.height());
    if w == 0 || h == 0 {
        return Err(image_err("image has no pixels"));
    }
    let [ch, cw] = p.crop;
    let (ch, cw) = (ch as u32, cw as u32);
    // Size after resizing.
    let (rw, rh) = match p.resize_short {
        Some(short) => {
            let short = short as u64;
            let (w64, h64) = (u64::from(w), u64::from(h));
            let scaled = |long: u64, s: u64| ((long * short + s / 2) / s).max(1);
            if w <= h {
                (short, scaled(h64, w64))
            } else {
                (scaled(w64, h64), short)
            }
        }
        None => (u64::from(cw), u64::from(ch)),
    };
    let (rw, rh) = (rw.max(u64::from(cw)) as u32, rh.max(u64::from(ch)) as u32);
    let gray = p.color == ColorOrder::Gray;
    let resized = if gray {
        DynamicImage::ImageLuma8(image::imageops::resize(
            &img.to_luma8(),
            rw,
            rh,
            FilterType::Triangle,
        ))
    } else {
        DynamicImage::ImageRgb8(image::imageops::resize(
            &img.to_rgb8(),
            rw,
            rh,
            FilterType::Triangle,
        ))
    };
    let (x0, y0) = ((rw - cw) / 2, (rh - ch) / 2);
    let crop = resized.crop_imm(x0, y0, cw, ch);
    let plane = (cw * ch) as usize;
    let channels = p.color.channels();
    let mut out = vec![0.0f32; channels * plane];
    match p.color {
        ColorOrder::Gray => {
            for (i, px) in crop.to_luma8().pixels().enumerate() {
                out[i] = (f32::from(px[0]) - p.mean[0]) * p.scale[0];
            }
        }
        ColorOrder::Rgb | ColorOrder::Bgr => {
            let order: [usize; 3] = if p.color == ColorOrder::Bgr {
                [2, 1, 0]
            } else {
                [0, 1, 2]
            };
            for (i, px) in crop.to_rgb8().pixels().enumerate() {
                for (c, &src) in order.iter().enumerate() {
                    out[c * plane + i] = (f32::from(px[src]) - p.mean[c]) * p.scale[c];
                }
            }
        }
    }
    Ok(out)
}
