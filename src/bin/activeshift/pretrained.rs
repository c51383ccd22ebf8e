//! Pretrained models by name (`--model as-resnet-w32`): the authors' Caffe weights downloaded
//! once from their repository, checked against a SHA-256 fixed here, converted and kept in the
//! user's cache directory.

use activeshift::{Error, Model, Result};
use std::path::PathBuf;
use std::time::Duration;

/// The authors' repository at the commit that added the ImageNet models (a fixed commit, so
/// the checksums below stay valid). `ACTIVESHIFT_PRETRAINED_URL` replaces it (a mirror, or a
/// local server in the tests).
const DEFAULT_BASE: &str = "https://raw.githubusercontent.com/jyh2986/Active-Shift/119a51ef6f1b1a0bea9860e41dd707b784ff1b19";

/// Largest download accepted (the w32 file is 3.7 MB).
const MAX_DOWNLOAD_BYTES: u64 = 64 << 20;

/// A model the authors publish.
pub struct Pretrained {
    /// The name given to `--model`.
    pub name: &'static str,
    /// Path of the `.caffemodel` in the authors' repository.
    pub path: &'static str,
    /// SHA-256 of that file, when it has been checked here.
    pub sha256: Option<&'static str>,
}

/// The authors' ImageNet models. Only w32's file could be checked here; w50 and w68 sit in the
/// same folder of their repository, but without a checksum activeshift does not download them.
pub const PRETRAINED: [Pretrained; 3] = [
    Pretrained {
        name: "as-resnet-w32",
        path: "models/ASL_Model/ImageNet/test_model/w32/AS-ResNet-w32_iter_450360.caffemodel",
        sha256: Some("bcbb070aefb1f528cf0e0cb1dc471afe880014821a66cd620bfb932ca996d976"),
    },
    Pretrained {
        name: "as-resnet-w50",
        path: "models/ASL_Model/ImageNet/test_model/w50/AS-ResNet-w50_iter_450360.caffemodel",
        sha256: None,
    },
    Pretrained {
        name: "as-resnet-w68",
        path: "models/ASL_Model/ImageNet/test_model/w68/AS-ResNet-w68_iter_450360.caffemodel",
        sha256: None,
    },
];

/// The pretrained model called `name`, if there is one.
pub fn find(name: &str) -> Option<&'static Pretrained> {
    PRETRAINED.iter().find(|p| p.name == name)
}

fn base_url() -> String {
    std::env::var("ACTIVESHIFT_PRETRAINED_URL")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| DEFAULT_BASE.to_string())
        .trim_end_matches('/')
        .to_string()
}

/// Where converted models are kept: the program's cache directory
/// ([`crate::pipeline_cache::cache_dir`]).
pub fn cache_dir() -> Result<PathBuf> {
    crate::pipeline_cache::cache_dir().ok_or_else(|| {
        Error::invalid(
            "pretrained",
            "no cache directory on this system: set ACTIVESHIFT_CACHE_DIR",
        )
    })
}

/// An error that reads `error: NAME: MSG`.
fn err(name: &str, msg: impl std::fmt::Display) -> Error {
    Error::Io {
        path: name.to_string(),
        source: std::io::Error::other(msg.to_string()),
    }
}

/// The model `p`: from the cache, else downloaded, verified, converted and cached.
pub fn load(p: &Pretrained) -> Result<Model> {
    let url = format!("{}/{}", base_url(), p.path);
    let Some(sha256) = p.sha256 else {
        return Err(err(
            p.name,
            format!(
                "no checksum is known for this file, so activeshift does not download it; \
                 fetch {url} yourself and run `activeshift import-caffe FILE -o {}.safetensors`",
                p.name
            ),
        ));
    };
    let cached = cache_dir()?.join(format!("{}.safetensors", p.name));
    if cached.is_file() {
        return Model::load(&cached).map_err(|e| {
            err(
                p.name,
                format!("the cached copy is unreadable ({e}); delete it to download it again"),
            )
        });
    }
    eprintln!("downloading {} from {url}", p.name);
    let bytes = download(p.name, &url)?;
    let found = sha256_hex(&bytes);
    if found != sha256 {
        return Err(err(
            p.name,
            format!(
                "{url}: SHA-256 is {found}, expected {sha256} (a different or damaged file; \
                 nothing was written)"
            ),
        ));
    }
    let layers = activeshift::caffe::parse_caffemodel(&bytes)?;
    let model = activeshift::model::import_caffe(&layers, activeshift::model::imagenet::labels())?;
    if let Some(dir) = cached.parent() {
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            path: dir.display().to_string(),
            source,
        })?;
    }
    match model.save(&cached, false) {
        Ok(()) => eprintln!("converted and cached as {}", cached.display()),
        // Another process cached it first: theirs is the same model.
        Err(_) if cached.is_file() => {}
        Err(e) => return Err(e),
    }
    Ok(model)
}

fn download(name: &str, url: &str) -> Result<Vec<u8>> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(15)))
        .timeout_global(Some(Duration::from_secs(300)))
        .build()
        .into();
    let mut response = agent.get(url).call().map_err(|e| {
        err(
            name,
            format!(
                "cannot download {url}: {e} (offline? download the .caffemodel by other means \
                 and run `activeshift import-caffe FILE -o {name}.safetensors`)"
            ),
        )
    })?;
    response
        .body_mut()
        .with_config()
        .limit(MAX_DOWNLOAD_BYTES)
        .read_to_vec()
        .map_err(|e| err(name, format!("downloading {url}: {e}")))
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
