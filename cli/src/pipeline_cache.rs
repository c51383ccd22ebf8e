//! The CLI's side of the first-run cost on a GPU: it tells the user when kernels are being
//! compiled for the first time on this machine, and keeps wgpu's pipeline cache (Vulkan) in the
//! user's cache directory so that later runs skip compiling where the driver allows.
//!
//! Files, in the program's one cache directory ([`cache_dir`]): `pipelines-<key>-<family>-<fused>-<version>.bin` per adapter, driver, kernel set
//! and version. Its content is an
//! 8-byte FNV-1a checksum and then what `wgpu::PipelineCache::get_data` returned (empty on
//! backends without a pipeline cache: the file then only records that this adapter compiled
//! the kernels once, and the driver's own shader cache, such as Mesa's, does the rest). A
//! file that does not check out is ignored and replaced.

use activeshift::GpuContext;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// The caches opened by [`open`], saved by [`save_all`] when the command ends.
static OPENED: std::sync::Mutex<Vec<PipelineCache>> = std::sync::Mutex::new(Vec::new());

/// Open the pipeline cache on a new context, before anything runs on it (see
/// [`PipelineCache::open`]); [`save_all`] saves it.
pub fn open(ctx: &GpuContext) {
    let cache = PipelineCache::open(ctx);
    if let Ok(mut opened) = OPENED.lock() {
        opened.push(cache);
    }
}

/// Save every cache [`open`] opened (at the end of a command).
pub fn save_all() {
    if let Ok(mut opened) = OPENED.lock() {
        opened.drain(..).for_each(|c| c.save());
    }
}

/// The cache of one run: where its file is, and whether this is the first run for the adapter.
pub struct PipelineCache {
    ctx: GpuContext,
    path: Option<PathBuf>,
    first_run: bool,
    started: Arc<std::sync::Mutex<Option<Instant>>>,
}

/// The one cache directory of the command-line program (pipeline caches, tuning decisions,
/// converted pretrained models, the Fashion-MNIST data): [`activeshift::data::cache_dir`].
pub fn cache_dir() -> Option<PathBuf> {
    activeshift::data::cache_dir()
}

/// 64-bit FNV-1a.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The file's name for `ctx`'s adapter and kernel choice: wgpu's own cache key where the
/// backend has a pipeline cache, else a hash of the adapter's name, backend and driver; then the
/// kernel family, the fusion default and this program's version.
fn file_name(ctx: &GpuContext) -> String {
    let info = ctx.adapter_info();
    let key = wgpu::util::pipeline_cache_key(info).unwrap_or_else(|| {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (
            &info.name,
            format!("{:?}", info.backend),
            &info.driver,
            &info.driver_info,
            info.vendor,
            info.device,
        )
            .hash(&mut h);
        format!("{:?}-{:016x}", info.backend, h.finish()).to_lowercase()
    });
    // The kernel set differs by family and fusion: a run with other kernels compiles others.
    let policy = ctx.policy();
    let family = format!("{:?}", policy.family()).to_lowercase();
    let fused = if policy.fused_by_default() {
        "fused"
    } else {
        "unfused"
    };
    format!(
        "pipelines-{key}-{family}-{fused}-{}.bin",
        env!("CARGO_PKG_VERSION")
    )
}

/// The cache's data if `bytes` checks out.
fn payload(bytes: &[u8]) -> Option<&[u8]> {
    let (sum, data) = bytes.split_at_checked(8)?;
    (u64::from_le_bytes(sum.try_into().ok()?) == fnv1a(data)).then_some(data)
}

impl PipelineCache {
    /// Open the cache for `ctx` (before anything runs on it): give wgpu the saved pipeline
    /// cache where the device has one, and print a note before the first kernel compiles when
    /// this adapter has never run here.
    pub fn open(ctx: &GpuContext) -> Self {
        let path = cache_dir().map(|d| d.join(file_name(ctx)));
        let saved = path.as_ref().and_then(|p| std::fs::read(p).ok());
        let data = match (&saved, &path) {
            (Some(bytes), Some(p)) => match payload(bytes) {
                Some(data) => Some(data),
                None => {
                    eprintln!(
                        "note: ignoring the damaged pipeline cache {} (it will be rewritten)",
                        p.display()
                    );
                    None
                }
            },
            _ => None,
        };
        let first_run = data.is_none();
        let device = ctx.device();
        if device.features().contains(wgpu::Features::PIPELINE_CACHE) {
            // SAFETY: `data` is what `PipelineCache::get_data` returned on an earlier run, read
            // back from our own file and checked against its checksum; its header names the
            // adapter, driver and wgpu version, which wgpu verifies, and `fallback: true` makes
            // wgpu start an empty cache when they differ.
            let cache = unsafe {
                device.create_pipeline_cache(&wgpu::PipelineCacheDescriptor {
                    label: Some("activeshift pipelines"),
                    data: data.filter(|d| !d.is_empty()),
                    fallback: true,
                })
            };
            ctx.use_pipeline_cache(cache);
        }
        let started = Arc::new(std::sync::Mutex::new(None));
        if first_run {
            let told = AtomicBool::new(false);
            let adapter = ctx.adapter_name();
            let started = Arc::clone(&started);
            ctx.on_pipeline_compile(move |_, _| {
                if !told.swap(true, Ordering::Relaxed) {
                    if let Ok(mut s) = started.lock() {
                        *s = Some(Instant::now());
                    }
                    eprintln!(
                        "compiling kernels for {adapter} (first run on this machine; later runs \
                         reuse them)..."
                    );
                }
            });
        }
        Self {
            ctx: ctx.clone(),
            path,
            first_run,
            started,
        }
    }

    /// After the run: report what was compiled (first run) and save the cache. A cache that
    /// cannot be written is a note, not an error.
    pub fn save(&self) {
        let compiled = self.ctx.compiled_pipelines();
        if compiled == 0 {
            return;
        }
        if self.first_run
            && let Some(t) = self.started.lock().ok().and_then(|s| *s)
        {
            eprintln!(
                "compiled {compiled} kernels in {:.1} s",
                t.elapsed().as_secs_f64()
            );
        }
        let Some(path) = &self.path else { return };
        let data = self
            .ctx
            .pipeline_cache()
            .and_then(wgpu::PipelineCache::get_data)
            .unwrap_or_default();
        let mut bytes = fnv1a(&data).to_le_bytes().to_vec();
        bytes.extend_from_slice(&data);
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let written = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(&tmp, &bytes))
            .and_then(|()| std::fs::rename(&tmp, path));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            eprintln!(
                "note: could not save the pipeline cache {}: {e}",
                path.display()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checksum_rejects_damage() {
        let data = b"some pipeline cache bytes".to_vec();
        let mut file = fnv1a(&data).to_le_bytes().to_vec();
        file.extend_from_slice(&data);
        assert_eq!(payload(&file), Some(&data[..]));
        let mut flipped = file.clone();
        flipped[12] ^= 1;
        assert_eq!(payload(&flipped), None);
        assert_eq!(payload(&file[..5]), None);
        assert_eq!(payload(&file[..file.len() - 1]), None);
        let empty = fnv1a(&[]).to_le_bytes();
        assert_eq!(payload(&empty), Some(&[][..]));
    }
}
