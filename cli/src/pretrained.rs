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

/// How the user starts this program, for commands printed in messages: `cargo run --release --`
/// when cargo started it (cargo sets `CARGO` for what it runs), else the name or path it was
/// started by (`activeshift` when installed on the PATH).
pub fn program() -> String {
    if std::env::var_os("CARGO").is_some() {
        return "cargo run --release --".to_string();
    }
    std::env::args_os()
        .next()
        .map(|a| a.to_string_lossy().into_owned())
        .filter(|a| !a.is_empty() && !a.contains(char::is_whitespace))
        .unwrap_or_else(|| "activeshift".to_string())
}

/// The file name of `p` in the authors' repository.
fn file_name(p: &Pretrained) -> &'static str {
    p.path.rsplit('/').next().unwrap_or(p.path)
}

/// What to do without a network: the command that installs a file fetched by other means.
fn offline_hint(p: &Pretrained) -> String {
    format!(
        "download {} by other means and run `{} import-caffe FILE --install`",
        file_name(p),
        program()
    )
}

/// Where the converted model `p` is kept.
fn cached_path(p: &Pretrained) -> Result<PathBuf> {
    Ok(cache_dir()?.join(format!("{}.safetensors", p.name)))
}

/// The model `p`: from the cache, else downloaded, verified, converted and cached.
pub fn load(p: &Pretrained) -> Result<Model> {
    let url = format!("{}/{}", base_url(), p.path);
    let Some(sha256) = p.sha256 else {
        return Err(err(
            p.name,
            format!(
                "no checksum is known for this file, so activeshift does not download it; \
                 fetch {url} yourself and run `{} import-caffe FILE -o {}.safetensors`, then \
                 pass that file to --model",
                program(),
                p.name
            ),
        ));
    };
    let cached = cached_path(p)?;
    if cached.is_file() {
        return Model::load(&cached).map_err(|e| {
            err(
                p.name,
                format!("the cached copy is unreadable ({e}); delete it to download it again"),
            )
        });
    }
    eprintln!("downloading {} from {url}", p.name);
    let bytes = download(p, &url)?;
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
    let model = convert(&bytes)?;
    match save(&model, &cached, false) {
        Ok(()) => eprintln!("converted and cached as {}", cached.display()),
        // Another process cached it first: theirs is the same model.
        Err(_) if cached.is_file() => {}
        Err(e) => return Err(e),
    }
    Ok(model)
}

/// `import-caffe FILE --install`: the authors' file obtained by other means, checked against the
/// SHA-256 a download is checked against, converted and kept where `--model NAME` finds it.
/// Returns the name and the path written. An existing copy is replaced only with `force`.
pub fn install(file: &std::path::Path, force: bool) -> Result<(&'static str, PathBuf)> {
    let bytes = activeshift::caffe::read_caffemodel_bytes(file)?;
    let found = sha256_hex(&bytes);
    let Some(p) = PRETRAINED.iter().find(|p| p.sha256 == Some(found.as_str())) else {
        let known: Vec<String> = PRETRAINED
            .iter()
            .filter_map(|p| p.sha256.map(|_| format!("{} ({})", p.name, file_name(p))))
            .collect();
        return Err(err(
            &file.display().to_string(),
            format!(
                "SHA-256 is {found}, which is none of the files activeshift installs by name \
                 ({}); nothing was written (convert other weights with `-o FILE` instead)",
                known.join(", ")
            ),
        ));
    };
    let cached = cached_path(p)?;
    let model = convert(&bytes)?;
    save(&model, &cached, force)?;
    Ok((p.name, cached))
}

/// The authors' ImageNet network from the bytes of its `.caffemodel`, with the ImageNet labels.
fn convert(bytes: &[u8]) -> Result<Model> {
    let layers = activeshift::caffe::parse_caffemodel(bytes)?;
    activeshift::model::import_caffe(&layers, activeshift::model::imagenet::labels())
}

/// Write `model` to `path` (atomically; its folder created), replacing a file only with `force`.
fn save(model: &Model, path: &std::path::Path, force: bool) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            path: dir.display().to_string(),
            source,
        })?;
    }
    model.save(path, force)
}

fn download(p: &Pretrained, url: &str) -> Result<Vec<u8>> {
    let name = p.name;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(15)))
        .timeout_global(Some(Duration::from_secs(300)))
        .build()
        .into();
    let mut response = agent.get(url).call().map_err(|e| {
        err(
            name,
            format!("cannot download {url}: {e} (offline? {})", offline_hint(p)),
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
