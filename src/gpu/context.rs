//! Creating or adopting a wgpu device.

use super::kernels::Kernels;
use super::policy::{KernelFamily, KernelPolicy, KernelPolicyBuilder};
use crate::error::{Error, Result};
use std::sync::{Arc, Mutex};

/// A wgpu device and queue plus everything activeshift builds on them (pipelines are built
/// lazily, once per context, the first time a kernel is used).
///
/// Create one with [`GpuContext::new`] (activeshift picks and opens an adapter) or
/// [`GpuContext::from_device`] (a host application hands over the device it already owns).
/// `wgpu::Device` and `wgpu::Queue` are cheap reference-counted handles, so the host keeps
/// using its own. `GpuContext` is a handle too: clones share the device and the pipelines.
#[derive(Clone)]
pub struct GpuContext {
    device: wgpu::Device,
    queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    kernels: Arc<Kernels>,
    /// Set once the device is lost (by wgpu's device-lost callback on contexts activeshift
    /// created, or by [`GpuContext::mark_lost`]); every later submission or readback fails.
    lost: Arc<Mutex<Option<String>>>,
    /// The first wgpu error not yet reported (contexts activeshift created only: their
    /// uncaptured-error handler records errors here instead of panicking).
    uncaptured: Arc<Mutex<Option<String>>>,
    /// The overrides the policy was built with.
    overrides: KernelPolicyBuilder,
    /// Which kernel variant runs for each op and shape (from the adapter and `overrides`).
    policy: Arc<KernelPolicy>,
}

/// Buffers created and bytes moved between host and device by a [`GpuContext`]
/// ([`GpuContext::transfers`]); subtract two readings for what happened between them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TransferCounts {
    /// Buffers created (tensors, the uniforms and scratch of prepared dispatches, staging).
    pub buffers_created: u64,
    /// Bytes written from the host (buffers created with contents, queued writes).
    pub bytes_uploaded: u64,
    /// Bytes read back to the host.
    pub bytes_downloaded: u64,
}

impl std::ops::Sub for TransferCounts {
    type Output = TransferCounts;
    fn sub(self, o: TransferCounts) -> TransferCounts {
        TransferCounts {
            buffers_created: self.buffers_created - o.buffers_created,
            bytes_uploaded: self.bytes_uploaded - o.bytes_uploaded,
            bytes_downloaded: self.bytes_downloaded - o.bytes_downloaded,
        }
    }
}

/// The limits every activeshift kernel stays within: WebGPU's defaults (256 invocations per
/// workgroup, 8 storage buffers per stage, 16 KiB of workgroup memory, 128 MiB per binding).
/// A device handed to [`GpuContext::from_device`] must provide at least these.
pub fn required_limits() -> wgpu::Limits {
    wgpu::Limits::defaults()
}

fn check_limits(adapter: &str, have: &wgpu::Limits) -> Result<()> {
    let mut missing = Vec::new();
    required_limits().check_limits_with_fail_fn(have, false, |name, needed, allowed| {
        missing.push(format!("{name}: needs {needed}, has {allowed}"));
    });
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Error::UnsupportedAdapter {
            adapter: adapter.to_string(),
            reason: format!("limits below WebGPU's defaults ({})", missing.join("; ")),
        })
    }
}

impl GpuContext {
    /// Pick an adapter and open a device on it.
    ///
    /// Honours wgpu's environment variables: `WGPU_BACKEND` (e.g. `vulkan`, `gl`),
    /// `WGPU_ADAPTER_NAME` (a case-insensitive substring of the adapter name; an error if none
    /// matches) and `WGPU_POWER_PREF`. Requires WebGPU's default limits; takes the optional
    /// features `SHADER_F16`, `TIMESTAMP_QUERY` and `PIPELINE_CACHE` (Vulkan) where the adapter
    /// has them.
    ///
    /// The device is activeshift's own, so it installs a device-lost callback and an
    /// uncaptured-error handler on it: device loss and wgpu errors (validation, out of memory)
    /// come back as [`Error::Device`] from the next submission or readback, instead of wgpu's
    /// default panic.
    pub async fn new() -> Result<Self> {
        let instance =
            wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapter = select_adapter(&instance).await?;
        let info = adapter.get_info();
        let downlevel = adapter.get_downlevel_capabilities();
        if !downlevel
            .flags
            .contains(wgpu::DownlevelFlags::COMPUTE_SHADERS)
        {
            return Err(Error::UnsupportedAdapter {
                adapter: display_name(&info),
                reason: "it has no compute shaders".into(),
            });
        }
        let adapter_limits = adapter.limits();
        check_limits(&display_name(&info), &adapter_limits)?;
        // Take the WebGPU defaults, but let tensors grow to what the adapter allows.
        let mut limits = required_limits();
        limits.max_storage_buffer_binding_size = adapter_limits.max_storage_buffer_binding_size;
        limits.max_buffer_size = adapter_limits.max_buffer_size;
        let optional = wgpu::Features::SHADER_F16
            | wgpu::Features::TIMESTAMP_QUERY
            | wgpu::Features::PIPELINE_CACHE;
        let features = adapter.features() & optional;
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("activeshift"),
                required_features: features,
                required_limits: limits,
                experimental_features: wgpu::ExperimentalFeatures::disabled(),
                memory_hints: wgpu::MemoryHints::Performance,
                trace: wgpu::Trace::Off,
            })
            .await
            .map_err(|e| Error::RequestDevice(e.to_string()))?;
        let ctx = Self::assemble(device, queue, info);
        // The device is ours: instead of wgpu's default handlers (the uncaptured-error one
        // panics), record loss and errors so that they surface as `Error::Device`.
        let lost = Arc::clone(&ctx.lost);
        ctx.device.set_device_lost_callback(move |reason, message| {
            if let Ok(mut slot) = lost.lock() {
                slot.get_or_insert_with(|| format!("{reason:?}: {message}"));
            }
        });
        let uncaptured = Arc::clone(&ctx.uncaptured);
        ctx.device
            .on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
                if let Ok(mut slot) = uncaptured.lock() {
                    slot.get_or_insert_with(|| e.to_string());
                }
            }));
        Ok(ctx)
    }

    /// Adopt a device and queue that a host application already owns. Checks that the device
    /// provides [`required_limits`]; activeshift needs no optional feature.
    ///
    /// The host keeps full control of its device: activeshift installs no device-lost callback
    /// and no uncaptured-error handler on it (wgpu allows only one of each, and they are the
    /// host's). A host that wants activeshift calls to fail with [`Error::Device`] after the
    /// device is lost can forward the news from its own callback with
    /// [`GpuContext::mark_lost`]. See `docs/embedding.md`.
    pub fn from_device(
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        info: wgpu::AdapterInfo,
    ) -> Result<Self> {
        check_limits(&display_name(&info), &device.limits())?;
        Ok(Self::assemble(device.clone(), queue.clone(), info))
    }

    // On wasm32 wgpu's handles are neither Send nor Sync; the Arc is then merely shared
    // ownership on the single browser thread.
    #[allow(clippy::arc_with_non_send_sync)]
    fn assemble(device: wgpu::Device, queue: wgpu::Queue, info: wgpu::AdapterInfo) -> Self {
        let kernels = Arc::new(Kernels::new(&device));
        let overrides = KernelPolicy::builder();
        let policy = Arc::new(overrides.build(&info, max_binding(&device)));
        Self {
            device,
            queue,
            info,
            kernels,
            lost: Arc::new(Mutex::new(None)),
            uncaptured: Arc::new(Mutex::new(None)),
            overrides,
            policy,
        }
    }

    /// This context with the kernel policy built from the adapter and `overrides` (which
    /// replace any given before). The device, its pipelines and its state are shared with
    /// `self`; only the choice of kernels differs.
    pub fn with_policy(mut self, overrides: KernelPolicyBuilder) -> Self {
        self.policy = Arc::new(overrides.build(&self.info, max_binding(&self.device)));
        self.overrides = overrides;
        self
    }

    /// This context with the kernel family fixed to `family` (None: chosen by the adapter),
    /// other overrides kept: [`GpuContext::with_policy`] with
    /// [`KernelPolicyBuilder::family`]. Use it to run what a hardware GPU would run on a
    /// software adapter (tests, the web demo's `?kernels=gpu`), or to compare the two.
    pub fn with_kernel_family(self, family: Option<KernelFamily>) -> Self {
        let overrides = self.overrides.clone().family(family);
        self.with_policy(overrides)
    }

    /// The overrides this context's policy was built with.
    pub fn policy_overrides(&self) -> &KernelPolicyBuilder {
        &self.overrides
    }

    /// Which kernel variant runs for each op and shape on this context.
    pub fn policy(&self) -> &KernelPolicy {
        &self.policy
    }

    /// The kernel family inference uses on this context ([`KernelPolicy::family`]).
    pub fn kernel_family(&self) -> KernelFamily {
        self.policy.family()
    }

    /// Record that the device is lost (`reason` is shown in the errors): every later
    /// submission and readback through this context (and its clones) fails with
    /// [`Error::Device`]. Contexts made by [`GpuContext::new`] do this themselves; a host that
    /// handed its device to [`GpuContext::from_device`] can call it from its own device-lost
    /// callback.
    pub fn mark_lost(&self, reason: impl Into<String>) {
        if let Ok(mut slot) = self.lost.lock() {
            slot.get_or_insert_with(|| reason.into());
        }
    }

    /// The wgpu device.
    pub fn device(&self) -> &wgpu::Device {
        &self.device
    }

    /// The wgpu queue.
    pub fn queue(&self) -> &wgpu::Queue {
        &self.queue
    }

    /// The adapter the device belongs to.
    pub fn adapter_info(&self) -> &wgpu::AdapterInfo {
        &self.info
    }

    /// The adapter's name as shown to people and in results: the name the driver reports, or,
    /// where it reports none (browsers may hide it, e.g. Chromium's SwiftShader), `unnamed
    /// <backend> adapter`.
    pub fn adapter_name(&self) -> String {
        display_name(&self.info)
    }

    /// One line naming the adapter, its backend and driver.
    pub fn describe(&self) -> String {
        let i = &self.info;
        format!(
            "{} ({:?}, {:?}, driver: {} {})",
            display_name(i),
            i.backend,
            i.device_type,
            i.driver,
            i.driver_info
        )
    }

    /// The kernels (pipelines are built on first use and cached).
    pub fn kernels(&self) -> &Kernels {
        &self.kernels
    }

    /// Compile every pipeline from now on through `cache`, a `wgpu::PipelineCache` the host
    /// created on this device (with data saved from [`wgpu::PipelineCache::get_data`] by an
    /// earlier run, so a driver that keeps its compiled code there skips compiling). Needs
    /// `wgpu::Features::PIPELINE_CACHE` (Vulkan; [`GpuContext::new`] takes it where the
    /// adapter has it). Creating the cache from saved bytes is `unsafe` in wgpu, so the host
    /// does it; activeshift only uses it. Returns false (and keeps the first) if a cache was
    /// given already. Pipelines compiled before the call do not go into it.
    pub fn use_pipeline_cache(&self, cache: wgpu::PipelineCache) -> bool {
        self.kernels.env().set_cache(cache)
    }

    /// The cache given to [`GpuContext::use_pipeline_cache`], to save its data after a run.
    pub fn pipeline_cache(&self) -> Option<&wgpu::PipelineCache> {
        self.kernels.env().cache()
    }

    /// Call `hook(file, entry_point)` just before each kernel pipeline is compiled (the first
    /// use of a kernel variant on this context), e.g. to tell the user why the first run takes
    /// long. The library itself prints nothing. Returns false (and keeps the first) if a hook
    /// was set already. Native hooks may be called from several threads at once (see
    /// [`GpuContext::compiles_in_parallel`]).
    pub fn on_pipeline_compile(
        &self,
        hook: impl Fn(&'static str, &'static str) + Send + Sync + 'static,
    ) -> bool {
        self.kernels.env().set_hook(Arc::new(hook))
    }

    /// How many buffers this context has created and how many bytes it has moved between host
    /// and device so far (all clones of the context together). Cheap, always counted: tests
    /// use it to show that a training step allocates nothing after the first and moves only
    /// its batch, labels and a few scalars.
    pub fn transfers(&self) -> TransferCounts {
        self.kernels.env().transfers()
    }

    /// Count one buffer created with `uploaded` bytes of host data.
    pub(crate) fn count_buffer(&self, uploaded: u64) {
        self.kernels.env().count_buffer(uploaded);
    }

    /// Count `bytes` written from the host into an existing buffer.
    pub(crate) fn count_upload(&self, bytes: u64) {
        self.kernels.env().count_upload(bytes);
    }

    /// Count `bytes` read back to the host.
    pub(crate) fn count_download(&self, bytes: u64) {
        self.kernels.env().count_download(bytes);
    }

    /// From now on, dispatch every pipeline once as it is built (one workgroup, stand-in
    /// buffers) and record what its creation and that first dispatch took
    /// ([`GpuContext::compile_times`]): drivers such as Mesa's llvmpipe compile a shader's
    /// machine code only at its first dispatch. Preparing then compiles on one thread, so each
    /// time is one kernel's own. Native only (a no-op on the web).
    pub fn time_compiles(&self) {
        #[cfg(not(target_arch = "wasm32"))]
        self.kernels.env().set_probe(self.queue.clone());
    }

    /// The compile times recorded since [`GpuContext::time_compiles`], in the order built.
    pub fn compile_times(&self) -> Vec<crate::gpu::CompileTime> {
        self.kernels.env().compile_times()
    }

    /// How many kernel pipelines this context has compiled so far.
    pub fn compiled_pipelines(&self) -> usize {
        self.kernels.env().compiled()
    }

    /// Whether preparing a model compiles its pipelines on several threads: native builds on
    /// every backend except GL (wgpu's GL backend runs everything under one context lock and
    /// panics when a thread waits on it for more than a few seconds, which a long shader
    /// compile on a software rasteriser can cause), never on the web.
    pub fn compiles_in_parallel(&self) -> bool {
        cfg!(not(target_arch = "wasm32"))
            && self.info.backend != wgpu::Backend::Gl
            && !self.kernels.env().probing()
    }

    /// An error if the device has been lost, or if wgpu reported an error (validation, out of
    /// memory) that has not been returned yet. Loss is permanent; another error is returned
    /// once.
    pub fn check_device(&self) -> Result<()> {
        if let Some(msg) = self.lost.lock().ok().and_then(|s| s.clone()) {
            return Err(Error::Device(format!("device lost ({msg})")));
        }
        match self.uncaptured.lock().ok().and_then(|mut s| s.take()) {
            Some(msg) => Err(Error::Device(msg)),
            None => Ok(()),
        }
    }

    /// Record work with `f` into a fresh command encoder and submit it.
    pub fn submit<F>(&self, f: F) -> Result<wgpu::SubmissionIndex>
    where
        F: FnOnce(&mut wgpu::CommandEncoder) -> Result<()>,
    {
        self.check_device()?;
        let mut encoder = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("activeshift"),
            });
        f(&mut encoder)?;
        let index = self.queue.submit([encoder.finish()]);
        self.check_device()?;
        Ok(index)
    }
}

/// What [`GpuContext::adapter_name`] returns for `info`.
fn display_name(info: &wgpu::AdapterInfo) -> String {
    let name = info.name.trim();
    if name.is_empty() {
        format!("unnamed {} adapter", info.backend.to_str())
    } else {
        name.to_string()
    }
}

/// The largest storage binding `device` allows, in bytes.
fn max_binding(device: &wgpu::Device) -> u64 {
    device.limits().max_storage_buffer_binding_size
}

/// The adapter [`GpuContext::new`] opens: the one `WGPU_ADAPTER_NAME` names (a
/// case-insensitive substring of the adapter name), else wgpu's default choice (honouring
/// `WGPU_POWER_PREF`). A host that opens its own device can pick the same adapter with it.
///
/// (`wgpu::util::initialize_adapter_from_env` applies the same rule but panics when no
/// adapter matches; this returns [`Error::NoAdapter`] listing the adapters there are.)
///
/// # Errors
/// [`Error::NoAdapter`] when no adapter matches or none exists.
pub async fn select_adapter(instance: &wgpu::Instance) -> Result<wgpu::Adapter> {
    #[cfg(not(target_arch = "wasm32"))]
    if let Ok(wanted) = std::env::var("WGPU_ADAPTER_NAME") {
        let wanted = wanted.to_lowercase();
        let adapters = instance.enumerate_adapters(wgpu::Backends::all()).await;
        let names: Vec<String> = adapters.iter().map(|a| a.get_info().name).collect();
        return adapters
            .into_iter()
            .find(|a| a.get_info().name.to_lowercase().contains(&wanted))
            .ok_or_else(|| {
                Error::NoAdapter(format!(
                    "WGPU_ADAPTER_NAME={wanted:?} matches none of {names:?}"
                ))
            });
    }
    instance
        .request_adapter(&wgpu::RequestAdapterOptions {
            power_preference: wgpu::PowerPreference::from_env().unwrap_or_default(),
            force_fallback_adapter: false,
            compatible_surface: None,
            ..Default::default()
        })
        .await
        .map_err(|e| {
            Error::NoAdapter(format!(
                "{e} (on Linux without a GPU, install Mesa's software Vulkan driver: \
                 `apt-get install mesa-vulkan-drivers libvulkan1`)"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(name: &str, backend: wgpu::Backend) -> wgpu::AdapterInfo {
        let mut info = wgpu::AdapterInfo::new(wgpu::DeviceType::Cpu, backend);
        info.name = name.into();
        info
    }

    #[test]
    fn adapters_without_a_name_are_named_by_their_backend() {
        let unnamed = info("", wgpu::Backend::BrowserWebGpu);
        assert_eq!(display_name(&unnamed), "unnamed webgpu adapter");
        let blank = info("  ", wgpu::Backend::Vulkan);
        assert_eq!(display_name(&blank), "unnamed vulkan adapter");
        let named = info("llvmpipe (LLVM 15.0.6, 256 bits)", wgpu::Backend::Vulkan);
        assert_eq!(display_name(&named), "llvmpipe (LLVM 15.0.6, 256 bits)");
    }
}
