//! Image-folder datasets: a folder of class folders of images (`DIR/<class>/*.jpg`, the layout
//! of torchvision's `ImageFolder` and Keras' `image_dataset_from_directory`), decoded and
//! resized once into compact 8-bit images with class indices, with an optional cache on disk
//! so that later runs decode only new or changed files.
//!
//! Two layouts are recognised ([`scan`]):
//!
//! - `DIR/<class>/...`: every visible sub-folder of `DIR` is a class, named by the folder;
//!   classes are sorted by name (byte order) and numbered from 0. A held-out set is drawn from
//!   each class with [`stratified_split`].
//! - `DIR/train/<class>/...` beside `DIR/val/<class>/...` (or `DIR/test/...` when there is no
//!   `val`): the classes are `train`'s, and `val` (or `test`) is the held-out set as it is. Its
//!   class folders must be among `train`'s. A `DIR` whose only visible folder is `train` is
//!   read the same way, with the held-out set drawn from `train`.
//!
//! Inside a class folder, images are found at any depth. Names starting with `.` (files and
//! folders) are skipped, and so is every file whose extension is not one of
//! [`IMAGE_EXTENSIONS`] (any case): `.DS_Store`, `Thumbs.db`, `notes.txt` are passed over
//! without a word. Symbolic links are followed only to regular files; a link to a folder is not
//! followed (so there are no loops), and FIFOs, sockets and devices are never opened. Nothing
//! in `DIR` is written.
//!
//! Each image is decoded as [`crate::preprocess::decode_image`] decodes images for inference
//! (same formats, same size and memory limits, EXIF orientation applied), resized so that its
//! shorter side is `max(height, width)` and centre-cropped to `height x width`, exactly the
//! resize and crop that a model whose `Preprocess` has `resize_short: Some(max(height, width))`
//! and `crop: [height, width]` applies at inference ([`FolderOptions::resize_short`]). Images
//! are converted to 8-bit luma (1 channel) or 8-bit RGB (3 channels); an alpha channel is
//! dropped and the colour channels are kept as stored (not composited over black or white),
//! which is again what inference does. 16-bit images become 8-bit (`v / 257`, rounded).
//!
//! Decoding runs in parallel (rayon); each worker holds one full-size image at a time and keeps
//! only its resized copy.

use crate::error::{Error, Result, open_regular};
use crate::preprocess::{decode_image, read_image_file, resize_crop};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rayon::prelude::*;
use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// File extensions read as images (compared without regard to case). Every other file is
/// skipped silently.
pub const IMAGE_EXTENSIONS: [&str; 6] = ["jpg", "jpeg", "png", "webp", "bmp", "gif"];

/// Largest `height` or `width` [`load`] accepts.
pub const MAX_TARGET_SIDE: usize = 4096;

/// Largest cache file read (64 GiB); a larger one is ignored and rebuilt.
pub const MAX_CACHE_BYTES: u64 = 64 << 30;

/// How many failed files an error message names.
const NAMED_FAILURES: usize = 5;

/// Bumped whenever decoding, resizing or cropping changes, so that older caches are rebuilt.
const CONVENTION: u32 = 1;
const CACHE_MAGIC: &[u8; 8] = b"ASIMGFC2";
/// Longest path (in bytes) and failure message stored in a cache entry.
const MAX_CACHE_STRING: u32 = 1 << 16;

/// Decoded images at one size, `[channels, height, width]` 8-bit each, with class indices.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ImageSet {
    /// Channels per image: 1 (luma) or 3 (RGB).
    pub channels: usize,
    /// Height of every image.
    pub height: usize,
    /// Width of every image.
    pub width: usize,
    /// `len * channels * height * width` values, image after image, each channel plane after
    /// plane, rows top to bottom.
    pub pixels: Vec<u8>,
    /// One class index per image (into [`FolderData::classes`]).
    pub labels: Vec<u32>,
    /// The file each image came from, as found under the folder (not resolved through links).
    pub paths: Vec<PathBuf>,
}

impl From<ImageSet> for crate::data::Dataset {
    /// The images as a training dataset (the paths are dropped).
    fn from(set: ImageSet) -> Self {
        crate::data::Dataset {
            shape: [set.channels, set.height, set.width],
            pixels: set.pixels,
            labels: set.labels,
        }
    }
}

impl ImageSet {
    fn empty(opts: &FolderOptions) -> Self {
        ImageSet {
            channels: opts.channels,
            height: opts.height,
            width: opts.width,
            ..ImageSet::default()
        }
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Values per image: `channels * height * width`.
    pub fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// Image `i`'s `[channels, height, width]` values. Panics when `i >= len()`.
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.image_len();
        &self.pixels[i * n..][..n]
    }
}

/// What [`load`] made of a folder.
#[derive(Clone, Debug, PartialEq)]
pub struct FolderData {
    /// Class names (the folder names), sorted by name; a label is an index into this list.
    pub classes: Vec<String>,
    /// The training images.
    pub train: ImageSet,
    /// The held-out images: the `val` (or `test`) folder, or those drawn by
    /// [`stratified_split`].
    pub val: ImageSet,
    /// Files with an image extension that were not used, with the reason: images that could
    /// not be decoded, links that lead nowhere, FIFOs and other special files. Sorted by path.
    pub skipped: Vec<(PathBuf, String)>,
    /// Files whose result came from the cache (decoded images and remembered failures).
    pub cached: usize,
    /// Files decoded in this call.
    pub decoded: usize,
    /// The cache file used, when [`FolderOptions::cache_dir`] was set.
    pub cache_file: Option<PathBuf>,
    /// Why the cache could not be used or saved, when it could not (a corrupt cache that was
    /// rebuilt, a cache folder that cannot be written). The load itself succeeded.
    pub cache_warning: Option<String>,
}

/// How [`load`] reads a folder.
#[derive(Clone, Debug, PartialEq)]
pub struct FolderOptions {
    /// Height of the images produced (1 to [`MAX_TARGET_SIDE`]).
    pub height: usize,
    /// Width of the images produced (1 to [`MAX_TARGET_SIDE`]).
    pub width: usize,
    /// 1 (grayscale, luma) or 3 (RGB).
    pub channels: usize,
    /// The shorter side each image is resized to (aspect kept) before the centre crop, as a
    /// model's `Preprocess::resize_short` says it: [`FolderOptions::new`] takes
    /// `max(height, width)` (the crop loses as little as possible); fine-tuning a model takes
    /// its own (256 before w32's 224 crop); `None` resizes straight to `height x width`.
    pub resize_short: Option<usize>,
    /// Share of each class held out when the folder has no `val`/`test` folder, in `[0, 1)`.
    /// Default 0.1.
    pub val_fraction: f64,
    /// Seed of the held-out draw: the same files and seed give the same split on every run.
    pub seed: u64,
    /// Folder for the cache of decoded images; `None` decodes every image on every call. It is
    /// created when missing, and may not lie inside the image folder.
    pub cache_dir: Option<PathBuf>,
    /// Largest share of image files that may fail to decode before [`load`] gives up, in
    /// `[0, 1]`. Default 0.1.
    pub max_failed_fraction: f64,
}

impl Default for FolderOptions {
    /// 64 x 64 RGB, 10% held out, seed 0, no cache, at most 10% failures.
    fn default() -> Self {
        FolderOptions {
            height: 64,
            width: 64,
            channels: 3,
            resize_short: Some(64),
            val_fraction: 0.1,
            seed: 0,
            cache_dir: None,
            max_failed_fraction: 0.1,
        }
    }
}

impl FolderOptions {
    /// Options for images of `height x width` with `channels` channels, resized so that the
    /// shorter side is `max(height, width)` before the centre crop, the rest default. A model's
    /// `Preprocess` with the same `resize_short` and `crop: [height, width]` resizes images at
    /// inference as [`load`] does for training.
    pub fn new(height: usize, width: usize, channels: usize) -> Self {
        FolderOptions {
            height,
            width,
            channels,
            resize_short: Some(height.max(width)),
            ..FolderOptions::default()
        }
    }

    /// Options that read images as `config`'s network takes them (its input size, channels and
    /// resize), the rest default: for fine-tuning a trained model, or continuing a run.
    pub fn for_network(config: &crate::model::ArchConfig) -> Self {
        let [height, width] = config.input_size;
        FolderOptions {
            resize_short: config.preprocess.resize_short,
            ..FolderOptions::new(height, width, config.in_channels)
        }
    }

    fn check(&self) -> Result<()> {
        let bad = |msg: String| Err(Error::invalid("image folder options", msg));
        if !(1..=MAX_TARGET_SIDE).contains(&self.height)
            || !(1..=MAX_TARGET_SIDE).contains(&self.width)
        {
            return bad(format!(
                "height and width must be 1 to {MAX_TARGET_SIDE}, found {} x {}",
                self.height, self.width
            ));
        }
        if let Some(short) = self.resize_short
            && !(1..=MAX_TARGET_SIDE).contains(&short)
        {
            return bad(format!(
                "resize_short must be 1 to {MAX_TARGET_SIDE}, found {short}"
            ));
        }
        if self.channels != 1 && self.channels != 3 {
            return bad(format!("channels must be 1 or 3, found {}", self.channels));
        }
        check_fraction(self.val_fraction)?;
        if !(0.0..=1.0).contains(&self.max_failed_fraction) {
            return bad(format!(
                "max_failed_fraction must be in [0, 1], found {}",
                self.max_failed_fraction
            ));
        }
        Ok(())
    }
}

fn check_fraction(val_fraction: f64) -> Result<()> {
    if !(0.0..1.0).contains(&val_fraction) {
        return Err(Error::invalid(
            "image folder options",
            format!("val_fraction must be in [0, 1), found {val_fraction}"),
        ));
    }
    Ok(())
}

/// Where [`load`] stands: `done` of `total` files handled, `cached` of them from the cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Files handled so far (decoded, failed or taken from the cache).
    pub done: usize,
    /// Files to handle.
    pub total: usize,
    /// Files taken from the cache (counted in `done`).
    pub cached: usize,
}

/// One image file found by [`scan`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScannedFile {
    /// The file, under the folder that was scanned.
    pub path: PathBuf,
    /// Its class index (into [`FolderScan::classes`]).
    pub label: u32,
}

/// The files of an image folder, found by [`scan`] without opening any of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FolderScan {
    /// Class names, sorted by name (byte order).
    pub classes: Vec<String>,
    /// The folder the classes were read from: the folder itself or its `train` folder.
    pub train_root: PathBuf,
    /// The training files (all files when there is no held-out folder), by class, then path.
    pub train: Vec<ScannedFile>,
    /// The held-out folder (`val` or `test`), when the folder has one.
    pub val_root: Option<PathBuf>,
    /// The held-out folder's files, by class, then path.
    pub val: Vec<ScannedFile>,
    /// Image-named entries that are not regular files or links to them, with the reason.
    pub skipped: Vec<(PathBuf, String)>,
}

fn folder_err(dir: &Path, msg: impl Into<String>) -> Error {
    Error::ImageFolder {
        dir: dir.display().to_string(),
        msg: msg.into(),
    }
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.display().to_string(),
        source,
    }
}

fn is_hidden(name: &OsStr) -> bool {
    name.as_encoded_bytes().first() == Some(&b'.')
}

fn has_image_extension(path: &Path) -> bool {
    path.extension()
        .and_then(OsStr::to_str)
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| e.eq_ignore_ascii_case(x)))
}

/// Visible entries of `dir`: `(name, path, is a real folder)`.
fn entries(dir: &Path) -> Result<Vec<(std::ffi::OsString, PathBuf, bool)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let name = entry.file_name();
        if is_hidden(&name) {
            continue;
        }
        let is_dir = entry.file_type().map_err(io_err(&entry.path()))?.is_dir();
        out.push((name, entry.path(), is_dir));
    }
    Ok(out)
}

/// The class folders of `root`: visible real folders, sorted by name.
fn class_folders(top: &Path, root: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    for (name, path, is_dir) in entries(root)? {
        if !is_dir {
            continue;
        }
        let Some(name) = name.to_str() else {
            return Err(folder_err(
                top,
                format!(
                    "the class folder name {} is not valid UTF-8",
                    path.display()
                ),
            ));
        };
        out.push((name.to_string(), path));
    }
    out.sort();
    Ok(out)
}

/// The image files under `dir` at any depth, sorted; special files with image names go to
/// `skipped`.
fn image_files(dir: &Path, skipped: &mut Vec<(PathBuf, String)>) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut folders = vec![dir.to_path_buf()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).map_err(io_err(&folder))? {
            let entry = entry.map_err(io_err(&folder))?;
            if is_hidden(&entry.file_name()) {
                continue;
            }
            let path = entry.path();
            // `DirEntry::file_type` does not follow links.
            let ft = entry.file_type().map_err(io_err(&path))?;
            if ft.is_dir() {
                folders.push(path);
            } else if !has_image_extension(&path) {
                // Not an image by name: `.DS_Store`, `Thumbs.db`, notes, ...
            } else if ft.is_file() {
                out.push(path);
            } else if ft.is_symlink() {
                match std::fs::metadata(&path) {
                    Ok(m) if m.is_file() => out.push(path),
                    // A link to a folder is never followed.
                    Ok(m) if m.is_dir() => {}
                    Ok(_) => skipped.push((path, "links to something not a regular file".into())),
                    Err(e) => skipped.push((path, format!("a link that cannot be followed: {e}"))),
                }
            } else {
                skipped.push((
                    path,
                    "not a regular file (a FIFO, socket or device); not opened".into(),
                ));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The image files under `dir` at any depth, sorted, found as [`scan`] finds a class folder's
/// files: names starting with `.` and files without an image extension are passed over, links
/// are followed only to regular files. Image-named entries that are not used (links that lead
/// nowhere or to a special file, FIFOs, sockets, devices) are added to `skipped` with the
/// reason. Nothing is opened but folders.
pub fn images_under(dir: &Path, skipped: &mut Vec<(PathBuf, String)>) -> Result<Vec<PathBuf>> {
    image_files(dir, skipped)
}

/// Find the classes and image files of `dir` (see the [module docs](self) for the layouts),
/// opening no image. Errors, before anything is decoded: `dir` is not a folder, has no class
/// folders or only one, a class folder holds no image, a held-out class is not a training
/// class, a class folder's name is not UTF-8.
pub fn scan(dir: &Path) -> Result<FolderScan> {
    let meta = std::fs::metadata(dir).map_err(io_err(dir))?;
    if !meta.is_dir() {
        return Err(folder_err(dir, "is not a folder"));
    }
    let top = entries(dir)?;
    if top.is_empty() {
        return Err(folder_err(
            dir,
            "is empty; expected one folder of images per class (DIR/<class>/<images>)",
        ));
    }
    let folder_named = |n: &str| top.iter().any(|(name, _, d)| *d && name == n);
    let train = dir.join("train");
    let split_layout = folder_named("train")
        && class_folders(dir, &train).is_ok_and(|c| !c.is_empty())
        && (folder_named("val") || folder_named("test") || top.iter().filter(|e| e.2).count() == 1);
    let (train_root, val_root) = if split_layout {
        let val = ["val", "test"]
            .into_iter()
            .find(|n| folder_named(n))
            .map(|n| dir.join(n));
        (train, val)
    } else {
        (dir.to_path_buf(), None)
    };
    let mut skipped = Vec::new();
    let folders = class_folders(dir, &train_root)?;
    match folders.len() {
        0 => {
            let loose = entries(&train_root)?
                .iter()
                .filter(|(_, p, d)| !d && has_image_extension(p))
                .count();
            let hint = if loose > 0 {
                format!(
                    " ({loose} images lie directly in {}: move each into a folder named by its \
                     class)",
                    train_root.display()
                )
            } else {
                String::new()
            };
            return Err(folder_err(
                dir,
                format!(
                    "has no class folders; expected {}/<class>/<images>{hint}",
                    train_root.display()
                ),
            ));
        }
        1 => {
            return Err(folder_err(
                dir,
                format!(
                    "has only one class folder ({}); at least two classes are needed",
                    folders[0].0
                ),
            ));
        }
        _ => {}
    }
    let mut empty = Vec::new();
    let mut list = |folders: &[(String, PathBuf)],
                    label_of: &dyn Fn(&str) -> u32,
                    empty: &mut Vec<String>|
     -> Result<Vec<ScannedFile>> {
        let mut files = Vec::new();
        for (name, path) in folders {
            let found = image_files(path, &mut skipped)?;
            if found.is_empty() {
                empty.push(path.display().to_string());
            }
            let label = label_of(name);
            files.extend(found.into_iter().map(|path| ScannedFile { path, label }));
        }
        Ok(files)
    };
    let classes: Vec<String> = folders.iter().map(|(n, _)| n.clone()).collect();
    let label_of = |name: &str| classes.iter().position(|c| c == name).unwrap_or(0) as u32;
    let train_files = list(&folders, &label_of, &mut empty)?;
    let mut val_files = Vec::new();
    if let Some(val_root) = &val_root {
        let val_folders = class_folders(dir, val_root)?;
        if val_folders.is_empty() {
            return Err(folder_err(
                dir,
                format!(
                    "the held-out folder {} has no class folders",
                    val_root.display()
                ),
            ));
        }
        let unknown: Vec<&str> = val_folders
            .iter()
            .filter(|(n, _)| !classes.contains(n))
            .map(|(n, _)| n.as_str())
            .collect();
        if !unknown.is_empty() {
            return Err(folder_err(
                dir,
                format!(
                    "the held-out folder {} has classes that {} does not have: {}",
                    val_root.display(),
                    train_root.display(),
                    unknown.join(", ")
                ),
            ));
        }
        val_files = list(&val_folders, &label_of, &mut empty)?;
    }
    if !empty.is_empty() {
        return Err(folder_err(
            dir,
            format!(
                "class folders without images ({}): {}",
                IMAGE_EXTENSIONS.join(", "),
                empty.join(", ")
            ),
        ));
    }
    skipped.sort();
    Ok(FolderScan {
        classes,
        train_root,
        train: train_files,
        val_root,
        val: val_files,
        skipped,
    })
}

/// Split images into training and held-out sets, class by class: of a class's `n` images,
/// `round(n * val_fraction)` are held out, at least one when `n >= 2` and `val_fraction > 0`,
/// and never all (a class with one image keeps it for training). Which ones is drawn with a
/// random generator seeded from `seed` and the class, so the same labels in the same order and
/// the same seed give the same split on every run and every platform (within one version of
/// the `rand` crate). Give the images in a fixed order (such as [`scan`]'s, sorted by path).
///
/// Returns the indices into `labels` of the training and of the held-out images, each in
/// increasing order. `val_fraction` must be in `[0, 1)`.
pub fn stratified_split(
    labels: &[u32],
    val_fraction: f64,
    seed: u64,
) -> Result<(Vec<usize>, Vec<usize>)> {
    check_fraction(val_fraction)?;
    let mut by_class: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for (i, &l) in labels.iter().enumerate() {
        by_class.entry(l).or_default().push(i);
    }
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for (label, mut idx) in by_class {
        let n = idx.len();
        let held = if n < 2 || val_fraction == 0.0 {
            0
        } else {
            ((n as f64 * val_fraction).round() as usize).clamp(1, n - 1)
        };
        let class_seed = seed ^ (u64::from(label) + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        idx.shuffle(&mut StdRng::seed_from_u64(class_seed));
        val.extend_from_slice(&idx[..held]);
        train.extend_from_slice(&idx[held..]);
    }
    train.sort_unstable();
    val.sort_unstable();
    Ok((train, val))
}

/// Decode an image file's bytes and resize, crop and convert it as [`load`] does with `opts`:
/// the `[channels, height, width]` 8-bit values.
pub fn decode_resized(bytes: &[u8], opts: &FolderOptions) -> Result<Vec<u8>> {
    opts.check()?;
    let (height, width, channels) = (opts.height, opts.width, opts.channels);
    let img = decode_image(bytes)?;
    let out = resize_crop(&img, opts.resize_short, [height, width], channels == 1)?;
    drop(img);
    Ok(match out {
        image::DynamicImage::ImageLuma8(g) => g.into_raw(),
        other => {
            let rgb = other.to_rgb8();
            let plane = height * width;
            let mut chw = vec![0u8; 3 * plane];
            for (i, px) in rgb.pixels().enumerate() {
                for c in 0..3 {
                    chw[c * plane + i] = px[c];
                }
            }
            chw
        }
    })
}

/// A short, stable 64-bit hash (FNV-1a): cache file names and the cache's checksum must not
/// change between builds, which std's hasher does not promise.
#[derive(Clone, Copy)]
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn update(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

/// The cache file [`load`] uses for `dir` with `opts` in `cache_dir`: named by a hash of the
/// folder's canonical path, the image size and channels.
pub fn cache_file(cache_dir: &Path, dir: &Path, opts: &FolderOptions) -> Result<PathBuf> {
    let canonical = dir.canonicalize().map_err(io_err(dir))?;
    let mut h = Fnv::new();
    h.update(canonical.as_os_str().as_encoded_bytes());
    for v in [
        opts.height,
        opts.width,
        opts.channels,
        opts.resize_short.unwrap_or(0),
        CONVENTION as usize,
    ] {
        h.update(&(v as u64).to_le_bytes());
    }
    Ok(cache_dir.join(format!("activeshift-images-{:016x}.cache", h.0)))
}

/// What identifies a file's content for the cache: its canonical path, size and modification
/// time.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    path: Vec<u8>,
    size: u64,
    mtime_s: i64,
    mtime_ns: u32,
}

impl Key {
    fn of(path: &Path) -> Option<Key> {
        let canonical = path.canonicalize().ok()?;
        let meta = std::fs::metadata(&canonical).ok()?;
        let (mtime_s, mtime_ns) = match meta.modified().ok()?.duration_since(std::time::UNIX_EPOCH)
        {
            Ok(d) => (i64::try_from(d.as_secs()).ok()?, d.subsec_nanos()),
            Err(e) => (
                -i64::try_from(e.duration().as_secs()).ok()?,
                e.duration().subsec_nanos(),
            ),
        };
        Some(Key {
            path: canonical.into_os_string().into_encoded_bytes(),
            size: meta.len(),
            mtime_s,
            mtime_ns,
        })
    }
}

/// A file's result: its pixels, or why it could not be decoded.
type Outcome = std::result::Result<Vec<u8>, String>;

struct HashingReader<R> {
    inner: R,
    hash: Fnv,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

struct HashingWriter<W> {
    inner: W,
    hash: Fnv,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn header(opts: &FolderOptions, count: u64) -> Vec<u8> {
    let mut h = CACHE_MAGIC.to_vec();
    for v in [
        CONVENTION,
        opts.height as u32,
        opts.width as u32,
        opts.channels as u32,
        opts.resize_short.unwrap_or(0) as u32,
    ] {
        h.extend_from_slice(&v.to_le_bytes());
    }
    h.extend_from_slice(&count.to_le_bytes());
    h
}

/// Read the cache entries whose key is in `wanted`. `Ok(None)`: no cache file.
/// Returns the entries found and how many entries the file held.
#[allow(clippy::type_complexity)]
fn read_cache(
    path: &Path,
    opts: &FolderOptions,
    wanted: &HashMap<&Key, ()>,
) -> std::result::Result<Option<(HashMap<Key, Outcome>, u64)>, String> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        _ => {}
    }
    let (file, meta) = open_regular(path).map_err(|e| e.to_string())?;
    if meta.len() > MAX_CACHE_BYTES {
        return Err(format!(
            "it is {} bytes, over the {MAX_CACHE_BYTES} accepted",
            meta.len()
        ));
    }
    let mut r = HashingReader {
        inner: std::io::BufReader::new(file.take(MAX_CACHE_BYTES + 1)),
        hash: Fnv::new(),
    };
    let short = |e: std::io::Error| format!("it is cut short or unreadable ({e})");
    let want = header(opts, 0);
    let at = want.len() - 8;
    let mut fixed = vec![0u8; want.len()];
    r.read_exact(&mut fixed).map_err(short)?;
    let count = u64::from_le_bytes(fixed[at..].try_into().unwrap_or_default());
    if fixed[..at] != want[..at] {
        return Err("it is not a cache of this image size and version".into());
    }
    let pixels = opts.channels * opts.height * opts.width;
    let mut found = HashMap::new();
    let u32_at = |r: &mut HashingReader<_>| -> std::result::Result<u32, String> {
        let mut b = [0u8; 4];
        r.read_exact(&mut b).map_err(short)?;
        Ok(u32::from_le_bytes(b))
    };
    let mut buf = vec![0u8; pixels];
    for _ in 0..count {
        let key_len = u32_at(&mut r)?;
        if key_len > MAX_CACHE_STRING {
            return Err(format!("an entry's path length is {key_len}"));
        }
        let mut key_bytes = vec![0u8; key_len as usize];
        r.read_exact(&mut key_bytes).map_err(short)?;
        let mut rest = [0u8; 8 + 8 + 4 + 1];
        r.read_exact(&mut rest).map_err(short)?;
        let key = Key {
            path: key_bytes,
            size: u64::from_le_bytes(rest[0..8].try_into().unwrap_or_default()),
            mtime_s: i64::from_le_bytes(rest[8..16].try_into().unwrap_or_default()),
            mtime_ns: u32::from_le_bytes(rest[16..20].try_into().unwrap_or_default()),
        };
        let outcome = match rest[20] {
            0 => {
                r.read_exact(&mut buf).map_err(short)?;
                Ok(buf.clone())
            }
            1 => {
                let len = u32_at(&mut r)?;
                if len > MAX_CACHE_STRING {
                    return Err(format!("an entry's message length is {len}"));
                }
                let mut msg = vec![0u8; len as usize];
                r.read_exact(&mut msg).map_err(short)?;
                Err(String::from_utf8_lossy(&msg).into_owned())
            }
            k => return Err(format!("an entry has the unknown kind {k}")),
        };
        if wanted.contains_key(&key) {
            found.insert(key, outcome);
        }
    }
    let computed = r.hash.0;
    let mut sum = [0u8; 8];
    r.inner.read_exact(&mut sum).map_err(short)?;
    if u64::from_le_bytes(sum) != computed {
        return Err("its checksum does not match its content".into());
    }
    let mut extra = [0u8; 1];
    if r.inner.read(&mut extra).map_err(short)? != 0 {
        return Err("it has data after its end".into());
    }
    Ok(Some((found, count)))
}

/// Write the cache atomically: a temporary file in the cache folder, renamed over the cache.
fn write_cache(
    path: &Path,
    opts: &FolderOptions,
    entries: &[(&Key, &Outcome)],
) -> std::result::Result<(), String> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".activeshift-images-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    let werr = |e: std::io::Error| format!("{}: {e}", tmp_path_display(path));
    {
        let mut w = HashingWriter {
            inner: std::io::BufWriter::new(tmp.as_file_mut()),
            hash: Fnv::new(),
        };
        w.write_all(&header(opts, entries.len() as u64))
            .map_err(werr)?;
        for (key, outcome) in entries {
            w.write_all(&(key.path.len() as u32).to_le_bytes())
                .map_err(werr)?;
            w.write_all(&key.path).map_err(werr)?;
            w.write_all(&key.size.to_le_bytes()).map_err(werr)?;
            w.write_all(&key.mtime_s.to_le_bytes()).map_err(werr)?;
            w.write_all(&key.mtime_ns.to_le_bytes()).map_err(werr)?;
            match outcome {
                Ok(px) => {
                    w.write_all(&[0]).map_err(werr)?;
                    w.write_all(px).map_err(werr)?;
                }
                Err(msg) => {
                    let msg = &msg.as_bytes()[..msg.len().min(MAX_CACHE_STRING as usize)];
                    w.write_all(&[1]).map_err(werr)?;
                    w.write_all(&(msg.len() as u32).to_le_bytes())
                        .map_err(werr)?;
                    w.write_all(msg).map_err(werr)?;
                }
            }
        }
        let sum = w.hash.0;
        w.inner.write_all(&sum.to_le_bytes()).map_err(werr)?;
        w.inner.flush().map_err(werr)?;
    }
    tmp.persist(path)
        .map_err(|e| format!("{}: {}", path.display(), e.error))?;
    Ok(())
}

fn tmp_path_display(path: &Path) -> String {
    format!("writing the cache {}", path.display())
}

/// `path` made absolute through its longest existing ancestor (which is canonicalized), for
/// comparing a folder that may not exist yet with another.
fn resolved(path: &Path) -> PathBuf {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut rest = Vec::new();
    let mut cur = abs.as_path();
    loop {
        if let Ok(c) = cur.canonicalize() {
            let mut out = c;
            for part in rest.iter().rev() {
                out.push(part);
            }
            return out;
        }
        match (cur.parent(), cur.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                cur = parent;
            }
            _ => return abs,
        }
    }
}

/// Load an image folder (see the [module docs](self)): scan it ([`scan`]), decode, resize and
/// crop every image in parallel (taking what it can from the cache in `opts.cache_dir`), and
/// split off the held-out set (the `val`/`test` folder, else [`stratified_split`]).
///
/// `progress` is called from the decoding threads, one call at a time, with `done` increasing.
///
/// Errors: bad options; [`scan`]'s errors, before anything is decoded; a cache folder inside
/// `dir`; more than `opts.max_failed_fraction` of the image files failing to decode (the error
/// names how many and the first few); a training class left without a single decodable image.
/// Files that fail to decode (within that share) are listed in [`FolderData::skipped`]. A
/// cache that cannot be read or written only gives [`FolderData::cache_warning`].
pub fn load(
    dir: &Path,
    opts: &FolderOptions,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<FolderData> {
    opts.check()?;
    let scanned = scan(dir)?;
    let cache_path = match &opts.cache_dir {
        Some(cache_dir) => {
            let canonical = dir.canonicalize().map_err(io_err(dir))?;
            if resolved(cache_dir).starts_with(&canonical) {
                return Err(folder_err(
                    dir,
                    format!(
                        "the cache folder {} lies inside the image folder; nothing is written \
                         there, choose another",
                        cache_dir.display()
                    ),
                ));
            }
            Some(cache_file(cache_dir, dir, opts)?)
        }
        None => None,
    };
    let n_train = scanned.train.len();
    let files: Vec<&ScannedFile> = scanned.train.iter().chain(&scanned.val).collect();
    let total = files.len();
    let keys: Vec<Option<Key>> = if cache_path.is_some() {
        files.par_iter().map(|f| Key::of(&f.path)).collect()
    } else {
        vec![None; total]
    };

    // What the cache holds.
    let mut cache_warning = None;
    let mut from_cache: HashMap<Key, Outcome> = HashMap::new();
    let mut entries_in_file = None;
    if let Some(path) = &cache_path {
        let wanted: HashMap<&Key, ()> = keys.iter().flatten().map(|k| (k, ())).collect();
        match read_cache(path, opts, &wanted) {
            Ok(Some((found, count))) => {
                from_cache = found;
                entries_in_file = Some(count);
            }
            Ok(None) => {}
            Err(why) => {
                cache_warning = Some(format!(
                    "the cache {} was not used and is rebuilt: {why}",
                    path.display()
                ));
            }
        }
    }
    let mut outcomes: Vec<Option<Outcome>> = keys
        .iter()
        .map(|k| k.as_ref().and_then(|k| from_cache.get(k).cloned()))
        .collect();
    drop(from_cache);
    let cached = outcomes.iter().filter(|o| o.is_some()).count();

    // Decode the rest in parallel, one full-size image per worker at a time.
    let gate = Mutex::new(());
    let done = AtomicUsize::new(cached);
    let report = || {
        let _one_at_a_time = gate.lock().unwrap_or_else(|e| e.into_inner());
        let done = done.fetch_add(1, Ordering::Relaxed) + 1;
        progress(Progress {
            done,
            total,
            cached,
        });
    };
    progress(Progress {
        done: cached,
        total,
        cached,
    });
    let todo: Vec<usize> = (0..total).filter(|&i| outcomes[i].is_none()).collect();
    // A failure to read the file (permissions, I/O) may pass without the file changing, so
    // only what the file's bytes decide (its pixels, or that they do not decode) is cached.
    let mut cacheable = vec![true; total];
    let decoded_now: Vec<(usize, Outcome, bool)> = todo
        .par_iter()
        .map(|&i| {
            let (outcome, keep) = match read_image_file(&files[i].path) {
                Ok(bytes) => (
                    decode_resized(&bytes, opts).map_err(|e| e.to_string()),
                    true,
                ),
                Err(e @ Error::Format { .. }) => (Err(e.to_string()), true),
                Err(e) => (Err(e.to_string()), false),
            };
            report();
            (i, outcome, keep)
        })
        .collect();
    let decoded = decoded_now.len();
    for (i, outcome, keep) in decoded_now {
        outcomes[i] = Some(outcome);
        cacheable[i] = keep;
    }

    // Save the cache when it changed: new results, or entries of files no longer there.
    if let Some(path) = &cache_path {
        let unique: HashMap<&Key, &Outcome> = keys
            .iter()
            .zip(&outcomes)
            .zip(&cacheable)
            .filter_map(|((k, o), &keep)| Some((k.as_ref().filter(|_| keep)?, o.as_ref()?)))
            .collect();
        if decoded > 0 || entries_in_file != Some(unique.len() as u64) {
            let mut list: Vec<(&Key, &Outcome)> = unique.into_iter().collect();
            list.sort_by(|a, b| a.0.path.cmp(&b.0.path));
            if let Err(why) = write_cache(path, opts, &list) {
                let note = format!("the cache could not be saved: {why}");
                cache_warning = Some(match cache_warning {
                    Some(w) => format!("{w}; {note}"),
                    None => note,
                });
            }
        }
    }

    // Failures.
    let mut skipped = scanned.skipped.clone();
    let failed: Vec<(PathBuf, String)> = files
        .iter()
        .zip(&outcomes)
        .filter_map(|(f, o)| match o {
            Some(Err(why)) => Some((f.path.clone(), why.clone())),
            _ => None,
        })
        .collect();
    if failed.len() as f64 > opts.max_failed_fraction * total as f64 {
        let named: Vec<String> = failed
            .iter()
            .take(NAMED_FAILURES)
            .map(|(p, why)| format!("{}: {why}", p.display()))
            .collect();
        return Err(folder_err(
            dir,
            format!(
                "{} of {total} image files could not be decoded, more than the {}% allowed; \
                 the first: {}",
                failed.len(),
                opts.max_failed_fraction * 100.0,
                named.join("; ")
            ),
        ));
    }
    skipped.extend(failed);
    skipped.sort();

    // Every training class needs an image.
    let mut per_class = vec![0usize; scanned.classes.len()];
    for (f, o) in files.iter().zip(&outcomes).take(n_train) {
        if matches!(o, Some(Ok(_))) {
            per_class[f.label as usize] += 1;
        }
    }
    let lost: Vec<&str> = per_class
        .iter()
        .zip(&scanned.classes)
        .filter(|(n, _)| **n == 0)
        .map(|(_, c)| c.as_str())
        .collect();
    if !lost.is_empty() {
        return Err(folder_err(
            dir,
            format!(
                "no image of these classes could be decoded: {}",
                lost.join(", ")
            ),
        ));
    }

    // The sets.
    let image_len = opts.channels * opts.height * opts.width;
    let good = |range: std::ops::Range<usize>| -> Vec<usize> {
        range
            .filter(|&i| matches!(outcomes[i], Some(Ok(_))))
            .collect()
    };
    let train_good = good(0..n_train);
    let (train_idx, val_idx) = if scanned.val_root.is_some() {
        (train_good, good(n_train..total))
    } else {
        let labels: Vec<u32> = train_good.iter().map(|&i| files[i].label).collect();
        let (t, v) = stratified_split(&labels, opts.val_fraction, opts.seed)?;
        (
            t.into_iter().map(|j| train_good[j]).collect(),
            v.into_iter().map(|j| train_good[j]).collect(),
        )
    };
    let mut build = |idx: &[usize]| -> Result<ImageSet> {
        let mut set = ImageSet::empty(opts);
        let bytes = idx
            .len()
            .checked_mul(image_len)
            .ok_or_else(|| folder_err(dir, "the decoded images would not fit in memory"))?;
        set.pixels
            .try_reserve_exact(bytes)
            .map_err(|e| folder_err(dir, format!("holding the decoded images: {e}")))?;
        for &i in idx {
            if let Some(Ok(px)) = outcomes[i].take() {
                set.pixels.extend_from_slice(&px);
                set.labels.push(files[i].label);
                set.paths.push(files[i].path.clone());
            }
        }
        Ok(set)
    };
    let train = build(&train_idx)?;
    let val = build(&val_idx)?;
    Ok(FolderData {
        classes: scanned.classes,
        train,
        val,
        skipped,
        cached,
        decoded,
        cache_file: cache_path,
        cache_warning,
    })
}

/// A square input size for a new network, from the sizes of the folder's training images: the
/// median of their shorter sides, clamped to 28..=224 and rounded to the nearest multiple of 4
/// (halves up), as
/// `(height, width)`. Only the images' headers are read (of at most 1000 files, spread evenly
/// over the sorted list). Errors: [`scan`]'s, or no image whose header could be read.
pub fn suggest_size(dir: &Path) -> Result<(usize, usize)> {
    let mut shorts: Vec<u32> = sample_headers(dir, |d| {
        let (w, h) = d.dimensions();
        (w > 0 && h > 0).then_some(w.min(h))
    })?;
    shorts.sort_unstable();
    let median = shorts[shorts.len() / 2] as usize;
    let side = (median.clamp(28, 224) + 2) / 4 * 4;
    let side = side.clamp(28, 224);
    Ok((side, side))
}

/// The input channels for a new network on the folder: 1 when every sampled training image is
/// stored as grayscale (with or without alpha, 8 or 16 bits), else 3. Reads headers only, of
/// the same sample as [`suggest_size`]; the same errors.
pub fn suggest_channels(dir: &Path) -> Result<usize> {
    let gray = sample_headers(dir, |d| {
        use image::ColorType::{L8, L16, La8, La16};
        Some(matches!(d.color_type(), L8 | L16 | La8 | La16))
    })?;
    Ok(if gray.iter().all(|&g| g) { 1 } else { 3 })
}

/// `what` of the decoder of each of at most 1000 training images of `dir` (spread evenly over
/// the sorted list), header only; images whose header cannot be read, or for which `what`
/// gives `None`, are left out. Errors: [`scan`]'s, or no answer at all.
fn sample_headers<T: Send>(
    dir: &Path,
    what: impl Fn(&dyn image::ImageDecoder) -> Option<T> + Sync,
) -> Result<Vec<T>> {
    const SAMPLE: usize = 1000;
    let scanned = scan(dir)?;
    let files = &scanned.train;
    let step = files.len().div_ceil(SAMPLE).max(1);
    let answers: Vec<T> = files
        .iter()
        .step_by(step)
        .collect::<Vec<_>>()
        .par_iter()
        .filter_map(|f| {
            let (file, _) = open_regular(&f.path).ok()?;
            let reader = std::io::BufReader::new(file);
            let decoder = image::ImageReader::new(reader)
                .with_guessed_format()
                .ok()?
                .into_decoder()
                .ok()?;
            what(&decoder)
        })
        .collect();
    if answers.is_empty() {
        return Err(folder_err(dir, "no image header could be read"));
    }
    Ok(answers)
}
