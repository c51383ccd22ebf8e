//! Turning images into network inputs, as a [`Preprocess`] says (a network's description
//! carries one). This layer knows images and tensors, not networks.

use crate::error::{Error, Result};
use image::{DynamicImage, ImageDecoder, imageops::FilterType};
use serde::{Deserialize, Serialize};

/// Channel order the network expects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColorOrder {
    /// Red, green, blue.
    Rgb,
    /// Blue, green, red (the authors' Caffe models).
    Bgr,
    /// One luminance channel.
    Gray,
}

impl ColorOrder {
    /// Number of input channels.
    pub fn channels(self) -> usize {
        match self {
            ColorOrder::Rgb | ColorOrder::Bgr => 3,
            ColorOrder::Gray => 1,
        }
    }
}

/// How an image becomes the network's input tensor. Pixel values are taken in `0..=255`, then
/// `x = (v - mean[c]) * scale[c]` in the network's channel order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Preprocess {
    /// Resize so the shorter side has this many pixels (bilinear), keeping the aspect ratio;
    /// `None` resizes straight to the crop size.
    pub resize_short: Option<usize>,
    /// Centre crop `[height, width]` (equal to the network's input size).
    pub crop: [usize; 2],
    /// Channel order.
    pub color: ColorOrder,
    /// Per-channel mean, subtracted first (network channel order, 0..255 scale).
    pub mean: Vec<f32>,
    /// Per-channel multiplier, applied after the mean.
    pub scale: Vec<f32>,
}

/// Largest image side accepted when decoding (larger images are refused, not decoded).
pub const MAX_IMAGE_SIDE: u32 = 16384;
/// Most memory the decoder may allocate (a 16-bit RGBA image of 8192 x 8192 fits; a
/// 16384 x 16384 RGB one does not).
pub const MAX_DECODE_BYTES: u64 = 512 << 20;
/// Largest image file [`read_image_file`] reads.
pub const MAX_IMAGE_FILE_BYTES: u64 = 256 << 20;
/// An axis that resizing would make longer than this (and longer than the crop plus a margin)
/// is resized only around its centre, where the crop is taken (see [`preprocess`]).
pub const MAX_RESIZED_SIDE: u32 = 4096;

fn image_err(msg: impl Into<String>) -> Error {
    Error::Format {
        format: "image",
        msg: msg.into(),
    }
}

/// Read an image file, refusing files over [`MAX_IMAGE_FILE_BYTES`] (and reading no more than
/// that from pipes and devices).
pub fn read_image_file(path: &std::path::Path) -> Result<Vec<u8>> {
    crate::error::read_file_limited(path, MAX_IMAGE_FILE_BYTES, "image")
}

/// One-line error for a decoder error, naming the limits when one was hit.
fn decode_err(e: image::ImageError) -> Error {
    // One line: some decoders end their messages with a newline.
    let msg = e
        .to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    match e {
        image::ImageError::Limits(_) => image_err(format!(
            "{msg} (at most {MAX_IMAGE_SIDE} x {MAX_IMAGE_SIDE} pixels and {} MiB decoded)",
            MAX_DECODE_BYTES >> 20
        )),
        _ => image_err(msg),
    }
}

/// The frame header of a JPEG: `(progressive, width, height, components)`, from its first
/// start-of-frame marker; `None` when there is none before the first scan (the decoder then
/// reports the error).
fn jpeg_frame(bytes: &[u8]) -> Option<(bool, u32, u32, u32)> {
    if bytes.get(..2)? != [0xFF, 0xD8] {
        return None;
    }
    let mut i = 2;
    loop {
        if *bytes.get(i)? != 0xFF {
            return None;
        }
        let marker = *bytes.get(i + 1)?;
        match marker {
            // Fill bytes, and markers without a length.
            0xFF => i += 1,
            0x01 | 0xD0..=0xD7 => i += 2,
            // Start of scan or end of image before any frame header.
            0xDA | 0xD9 => return None,
            _ => {
                let len = usize::from(u16::from_be_bytes([*bytes.get(i + 2)?, *bytes.get(i + 3)?]));
                // SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC).
                if (0xC0..=0xCF).contains(&marker) && ![0xC4, 0xC8, 0xCC].contains(&marker) {
                    let f = bytes.get(i + 4..i + 10)?;
                    let height = u32::from(u16::from_be_bytes([f[1], f[2]]));
                    let width = u32::from(u16::from_be_bytes([f[3], f[4]]));
                    let progressive = matches!(marker, 0xC2 | 0xC6 | 0xCA | 0xCE);
                    return Some((progressive, width, height, u32::from(f[5])));
                }
                i += 2 + len;
            }
        }
    }
}

/// The JPEG decoder does not count its own working memory against the budget: a progressive
/// JPEG keeps every coefficient of the image (2 bytes per pixel per component) besides the
/// output (up to 4 bytes per pixel), so the decode of a 2.8 MB progressive CMYK file of
/// 16383 x 10922 pixels needed 1.85 GiB. Estimated from the frame header and refused before
/// decoding when over [`MAX_DECODE_BYTES`].
fn check_jpeg_memory(bytes: &[u8]) -> Result<()> {
    let Some((progressive, w, h, components)) = jpeg_frame(bytes) else {
        return Ok(());
    };
    let pixels = u64::from(w) * u64::from(h);
    let per_pixel = 4 + if progressive {
        2 * u64::from(components)
    } else {
        0
    };
    let need = pixels * per_pixel;
    if need > MAX_DECODE_BYTES {
        return Err(image_err(format!(
            "decoding this {}JPEG of {w} x {h} pixels and {components} components needs about \
             {} MiB; at most {} MiB are allowed",
            if progressive { "progressive " } else { "" },
            need >> 20,
            MAX_DECODE_BYTES >> 20
        )));
    }
    Ok(())
}

/// Decode an image file (JPEG, PNG, GIF, BMP, WebP) from memory, with bounded size and memory:
/// images wider or taller than [`MAX_IMAGE_SIDE`], or needing more than [`MAX_DECODE_BYTES`],
/// are refused before their pixels are decoded, and so are images of width or height 0. Any
/// pixel type is accepted (grayscale, RGB, with alpha, 8 or 16 bits, float); see
/// [`preprocess`] for how each is used. The EXIF orientation is applied (a phone photo stored
/// sideways comes out upright); the memory budget counts the decoder's own working memory for
/// progressive JPEGs and the copy a 90-degree rotation makes.
pub fn decode_image(bytes: &[u8]) -> Result<DynamicImage> {
    if bytes.is_empty() {
        return Err(image_err("the file is empty"));
    }
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
    if reader.format() == Some(image::ImageFormat::Jpeg) {
        check_jpeg_memory(bytes)?;
    }
    reader.limits(limits.clone());
    let mut decoder = reader.into_decoder().map_err(decode_err)?;
    // EXIF orientation (JPEG, WebP, PNG's eXIf): the pixels are turned upright as a viewer
    // shows them. A rotation by 90 degrees makes a copy, which counts against the budget.
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    use image::metadata::Orientation::{Rotate90, Rotate90FlipH, Rotate270, Rotate270FlipH};
    let copies = if matches!(
        orientation,
        Rotate90 | Rotate270 | Rotate90FlipH | Rotate270FlipH
    ) {
        2
    } else {
        1
    };
    // What `ImageReader::decode` does, with the copy counted: the output buffer is reserved
    // from the budget, the decoder gets the rest.
    limits
        .reserve(decoder.total_bytes().saturating_mul(copies))
        .map_err(decode_err)?;
    decoder.set_limits(limits).map_err(decode_err)?;
    let mut img = DynamicImage::from_decoder(decoder).map_err(decode_err)?;
    img.apply_orientation(orientation);
    // Some decoders accept a header of width or height 0 (found by fuzzing: a GIF with a
    // 1280 x 0 screen).
    if img.width() == 0 || img.height() == 0 {
        return Err(image_err(format!(
            "the image has no pixels ({} x {})",
            img.width(),
            img.height()
        )));
    }
    Ok(img)
}

/// The part of one axis that is resized: `(source offset, source length, resized length)`.
/// An axis of `src` pixels is to become `resized` pixels long, of which the centre `crop` are
/// kept. When `resized` is over [`MAX_RESIZED_SIDE`] (and over the crop plus a margin), only
/// the source pixels around the centre are resized, at the same scale, which bounds memory
/// for extreme aspect ratios (e.g. 1 x 16384) at the price of a sub-pixel change in alignment.
fn axis_window(src: u32, resized: u32, crop: u32) -> (u32, u32, u32) {
    const MARGIN: u32 = 32;
    let keep = MAX_RESIZED_SIDE.max(crop.saturating_add(2 * MARGIN));
    if resized <= keep {
        return (0, src, resized);
    }
    let (src64, resized64) = (u64::from(src), u64::from(resized));
    let len = (u64::from(keep) * src64)
        .div_ceil(resized64)
        .clamp(1, src64);
    let out = ((len * resized64 + src64 / 2) / src64).max(u64::from(crop));
    // `len <= src` and `out <= keep + 1`, so both fit in u32.
    let (len, out) = (len as u32, out as u32);
    ((src - len) / 2, len, out)
}

/// Resize, centre-crop, reorder channels and normalize: returns the `[C, H, W]` input (C from
/// the colour order, `[H, W]` = `p.crop`).
///
/// Every pixel type has a defined result: 16-bit and float images are converted to 8 bits
/// (`v16 / 257`, rounded), alpha is ignored (the colour channels are used as stored, not
/// composited), a grayscale image feeds all three channels of a colour model and a colour
/// image is converted to luma for a grayscale model. A 1 x 1 image gives a constant input.
/// Axes that the resize would make very long are resized around their centre only
/// ([`MAX_RESIZED_SIDE`]), so memory stays bounded whatever the aspect ratio.
pub fn preprocess(img: &DynamicImage, p: &Preprocess) -> Result<Vec<f32>> {
    let (w, h) = (img.width(), img.height());
    if w == 0 || h == 0 {
        return Err(image_err("image has no pixels"));
    }
    let channels = p.color.channels();
    if p.mean.len() != channels || p.scale.len() != channels || p.crop.contains(&0) {
        return Err(Error::invalid(
            "preprocess",
            format!(
                "{:?} needs {channels} means and scales and a non-empty crop, found {} means, {} \
                 scales, crop {:?}",
                p.color,
                p.mean.len(),
                p.scale.len(),
                p.crop
            ),
        ));
    }
    let gray = p.color == ColorOrder::Gray;
    let crop = resize_crop(img, p.resize_short, p.crop, gray)?;
    let (ch, cw) = (crop.height(), crop.width());
    let plane = (cw as usize) * (ch as usize);
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

/// The resize and centre crop of [`preprocess`], shared with the image-folder loader (so
/// training sees images exactly as inference does): the image is resized (Triangle filter,
/// i.e. bilinear) so that its shorter side is `resize_short` pixels (the aspect ratio kept;
/// each side at least the crop's), or straight to the crop size when `resize_short` is `None`,
/// converted to 8-bit luma (`gray`) or 8-bit RGB first, and the centre `crop = [height, width]`
/// taken. The result is an `ImageLuma8` or an `ImageRgb8` of exactly the crop size. Alpha is
/// dropped (the colour channels are used as stored), 16-bit and float images are converted to
/// 8 bits; axes the resize would make very long are resized around their centre only.
pub(crate) fn resize_crop(
    img: &DynamicImage,
    resize_short: Option<usize>,
    crop: [usize; 2],
    gray: bool,
) -> Result<DynamicImage> {
    let (w, h) = (img.width(), img.height());
    if w == 0 || h == 0 || crop.contains(&0) {
        return Err(image_err("image or crop has no pixels"));
    }
    let [ch, cw] = crop;
    let (ch, cw) = (
        u32::try_from(ch).map_err(|_| image_err("crop height too large"))?,
        u32::try_from(cw).map_err(|_| image_err("crop width too large"))?,
    );
    // Size after resizing.
    let (rw, rh) = match resize_short {
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
    let clamp = |v: u64, c: u32| u32::try_from(v.max(u64::from(c))).unwrap_or(u32::MAX);
    let (rw, rh) = (clamp(rw, cw), clamp(rh, ch));
    let (sx, sw, rw) = axis_window(w, rw, cw);
    let (sy, sh, rh) = axis_window(h, rh, ch);
    let windowed;
    let src = if (sx, sy, sw, sh) == (0, 0, w, h) {
        img
    } else {
        windowed = img.crop_imm(sx, sy, sw, sh);
        &windowed
    };
    let resized = if gray {
        let luma = match src.as_luma8() {
            Some(l) => std::borrow::Cow::Borrowed(l),
            None => std::borrow::Cow::Owned(src.to_luma8()),
        };
        DynamicImage::ImageLuma8(image::imageops::resize(
            luma.as_ref(),
            rw,
            rh,
            FilterType::Triangle,
        ))
    } else {
        let rgb = match src.as_rgb8() {
            Some(c) => std::borrow::Cow::Borrowed(c),
            None => std::borrow::Cow::Owned(src.to_rgb8()),
        };
        DynamicImage::ImageRgb8(image::imageops::resize(
            rgb.as_ref(),
            rw,
            rh,
            FilterType::Triangle,
        ))
    };
    let (x0, y0) = ((rw - cw) / 2, (rh - ch) / 2);
    Ok(resized.crop_imm(x0, y0, cw, ch))
}
