//! One Rust type per WGSL kernel in `shaders/`. Each builds its pipelines once and records
//! dispatches after checking shapes and device limits.

mod asl;
mod asl_conv1x1;
mod conv1x1;
mod conv1x1_backward;
mod conv3x3;
mod depthwise;
mod elementwise;
mod optimizer;
mod packed;
mod params;
mod training;

pub use asl::{
    AslBackwardInput, AslBackwardShift, AslForward, AslForwardVariant, ShiftGradNormalize,
};
pub use asl_conv1x1::{ASL_CONV1X1_MAX_CHANNELS, AslConv1x1, AslConv1x1Args, AslConv1x1Variant};
pub use conv1x1::{Conv1x1, Conv1x1Args, Conv1x1Epilogue, Conv1x1Variant};
pub use conv1x1_backward::{Conv1x1BackwardInput, Conv1x1BackwardWeight};
pub use conv3x3::Conv3x3;
pub use depthwise::Depthwise3x3;
pub use elementwise::{Affine, BufferCopy, GlobalAvgPool, Softmax};
pub use optimizer::{Optimizer, RunningStatsDispatch, SgdDispatch};
pub(crate) use packed::one_dispatch_pays;
pub use training::{
    Add, BatchNormTrain, BnBackward, BnForward, Conv3x3BackwardWeight, Depthwise3x3Backward,
    DepthwiseBackward, GlobalAvgPoolBackward, SoftmaxCrossEntropy,
};

use crate::error::{Error, Result};
use crate::gpu::GpuContext;
use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use wgpu::util::DeviceExt;

/// The kernels inference picks on a context ([`KernelPolicy`](crate::gpu::KernelPolicy)), in
/// short; shown by `activeshift info` and the web demo.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelChoice {
    /// Whether the 1x1 convolutions and the stem run the register-tiled GEMMs over packed
    /// weights (else the workgroup-tiled GEMM and the direct 3x3).
    pub register_tiled: bool,
    /// The ASL forward kernel for stride 1 and a width divisible by 4.
    pub asl: AslForwardVariant,
    /// Whether each ASL runs fused into its 1x1 convolution by default.
    pub fused: bool,
}

impl KernelChoice {
    /// The choice on `ctx`'s adapter.
    pub fn of(ctx: &GpuContext) -> Self {
        Self {
            register_tiled: ctx.policy().register_tiled(),
            asl: ctx
                .policy()
                .rule_asl_forward(crate::Shape4::new(1, 1, 4, 4), 1),
            fused: ctx.policy().fused_by_default(),
        }
    }
}

impl std::fmt::Display for KernelChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} GEMM, {} ASL, {}",
            if self.register_tiled {
                "register-tiled"
            } else {
                "workgroup-tiled"
            },
            self.asl.name(),
            if self.fused {
                "fused into the GEMM"
            } else {
                "then the GEMM"
            }
        )
    }
}

// `SHADERS`: the WGSL source of every kernel, by file name, produced by build.rs from
// `shaders/` (one source per family, every permutation listed in build.rs's `KERNELS`), and
// `SHADER_PERMUTATIONS`: that table.
include!(concat!(env!("OUT_DIR"), "/shaders.rs"));

fn source(file: &str) -> &'static str {
    SHADERS
        .iter()
        .find(|(name, _)| *name == file)
        .map(|(_, src)| *src)
        .unwrap_or_else(|| unreachable!("shader {file} is listed in SHADERS"))
}

/// Every kernel, its pipelines built on first use (one field per kernel) on the device of the
/// [`GpuContext`] that owns them.
pub struct Kernels {
    device: wgpu::Device,
    asl_forward: OnceLock<AslForward>,
    asl_backward_input: OnceLock<AslBackwardInput>,
    asl_backward_shift: OnceLock<AslBackwardShift>,
    shift_grad_normalize: OnceLock<ShiftGradNormalize>,
    asl_conv1x1: OnceLock<AslConv1x1>,
    conv1x1: OnceLock<Conv1x1>,
    conv1x1_backward_input: OnceLock<Conv1x1BackwardInput>,
    conv1x1_backward_weight: OnceLock<Conv1x1BackwardWeight>,
    conv3x3: OnceLock<Conv3x3>,
    depthwise3x3: OnceLock<Depthwise3x3>,
    affine: OnceLock<Affine>,
    copy: OnceLock<BufferCopy>,
    global_avg_pool: OnceLock<GlobalAvgPool>,
    softmax: OnceLock<Softmax>,
    batchnorm_train: OnceLock<BatchNormTrain>,
    conv3x3_backward_weight: OnceLock<Conv3x3BackwardWeight>,
    depthwise3x3_backward: OnceLock<Depthwise3x3Backward>,
    softmax_cross_entropy: OnceLock<SoftmaxCrossEntropy>,
    global_avg_pool_backward: OnceLock<GlobalAvgPoolBackward>,
    add: OnceLock<Add>,
    optimizer: OnceLock<Optimizer>,
    placeholder: OnceLock<wgpu::Buffer>,
    /// What every pipeline built on this context shares (cache, compile hook, count).
    env: Arc<PipelineEnv>,
}

/// Called with a kernel's file and entry point just before its pipeline is compiled
/// ([`crate::GpuContext::on_pipeline_compile`]).
pub type CompileHook = Arc<dyn Fn(&'static str, &'static str) + Send + Sync>;

/// What pipeline creation on one context shares: the host's `wgpu::PipelineCache` (if any),
/// the compile hook, and the number of pipelines compiled so far.
#[derive(Default)]
pub(crate) struct PipelineEnv {
    cache: OnceLock<wgpu::PipelineCache>,
    hook: OnceLock<CompileHook>,
    compiled: AtomicUsize,
    /// Set by [`crate::GpuContext::time_compiles`]: dispatch each pipeline once as it is built
    /// and record what creating and first dispatching it took.
    probe: OnceLock<wgpu::Queue>,
    compile_times: std::sync::Mutex<Vec<crate::gpu::CompileTime>>,
    /// Buffers created on the context (tensors, uniforms of prepared dispatches, staging).
    buffers_created: AtomicU64,
    /// Bytes written from the host into buffers (creation with contents, queued writes).
    bytes_uploaded: AtomicU64,
    /// Bytes read back to the host.
    bytes_downloaded: AtomicU64,
}

impl PipelineEnv {
    /// Use `cache` for every pipeline compiled from now on; false if one was set already.
    pub(crate) fn set_cache(&self, cache: wgpu::PipelineCache) -> bool {
        self.cache.set(cache).is_ok()
    }
    /// Call `hook` before each compilation from now on; false if one was set already.
    pub(crate) fn set_hook(&self, hook: CompileHook) -> bool {
        self.hook.set(hook).is_ok()
    }
    /// The pipeline cache given with [`PipelineEnv::set_cache`].
    pub(crate) fn cache(&self) -> Option<&wgpu::PipelineCache> {
        self.cache.get()
    }
    /// Time every pipeline built from now on (creation, and a first dispatch on `queue`).
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn set_probe(&self, queue: wgpu::Queue) {
        let _ = self.probe.set(queue);
    }
    /// Whether pipelines are timed.
    pub(crate) fn probing(&self) -> bool {
        self.probe.get().is_some()
    }
    /// The compile times recorded so far, in the order built.
    pub(crate) fn compile_times(&self) -> Vec<crate::gpu::CompileTime> {
        self.compile_times
            .lock()
            .map(|t| t.clone())
            .unwrap_or_default()
    }
    /// Pipelines compiled so far.
    pub(crate) fn compiled(&self) -> usize {
        self.compiled.load(Ordering::Relaxed)
    }
    /// Count one buffer created, with `uploaded` bytes of host data in it.
    pub(crate) fn count_buffer(&self, uploaded: u64) {
        self.buffers_created.fetch_add(1, Ordering::Relaxed);
        self.count_upload(uploaded);
    }
    /// Count `bytes` written from the host.
    pub(crate) fn count_upload(&self, bytes: u64) {
        self.bytes_uploaded.fetch_add(bytes, Ordering::Relaxed);
    }
    /// Count `bytes` read back to the host.
    pub(crate) fn count_download(&self, bytes: u64) {
        self.bytes_downloaded.fetch_add(bytes, Ordering::Relaxed);
    }
    /// The counts so far.
    pub(crate) fn transfers(&self) -> crate::gpu::TransferCounts {
        crate::gpu::TransferCounts {
            buffers_created: self.buffers_created.load(Ordering::Relaxed),
            bytes_uploaded: self.bytes_uploaded.load(Ordering::Relaxed),
            bytes_downloaded: self.bytes_downloaded.load(Ordering::Relaxed),
        }
    }
}

thread_local! {
    /// The environment of the [`Kernels`] whose kernel is being constructed on this thread
    /// (set by [`Kernels::build`], read by [`Pipeline::new`] and [`LazyPipeline::new`]), so
    /// that kernel constructors keep taking just the device.
    static BUILDING: RefCell<Option<Arc<PipelineEnv>>> = const { RefCell::new(None) };
}

fn current_env() -> Option<Arc<PipelineEnv>> {
    BUILDING.with(|b| b.borrow().clone())
}

impl Kernels {
    /// No pipeline built yet; each is built on `device` the first time it is asked for.
    pub(crate) fn new(device: &wgpu::Device) -> Self {
        Self {
            device: device.clone(),
            asl_forward: OnceLock::new(),
            asl_backward_input: OnceLock::new(),
            asl_backward_shift: OnceLock::new(),
            shift_grad_normalize: OnceLock::new(),
            asl_conv1x1: OnceLock::new(),
            conv1x1: OnceLock::new(),
            conv1x1_backward_input: OnceLock::new(),
            conv1x1_backward_weight: OnceLock::new(),
            conv3x3: OnceLock::new(),
            depthwise3x3: OnceLock::new(),
            affine: OnceLock::new(),
            copy: OnceLock::new(),
            global_avg_pool: OnceLock::new(),
            softmax: OnceLock::new(),
            batchnorm_train: OnceLock::new(),
            conv3x3_backward_weight: OnceLock::new(),
            depthwise3x3_backward: OnceLock::new(),
            softmax_cross_entropy: OnceLock::new(),
            global_avg_pool_backward: OnceLock::new(),
            add: OnceLock::new(),
            optimizer: OnceLock::new(),
            placeholder: OnceLock::new(),
            env: Arc::new(PipelineEnv::default()),
        }
    }

    /// The pipeline environment shared by this context's kernels.
    pub(crate) fn env(&self) -> &PipelineEnv {
        &self.env
    }

    /// `cell`'s kernel, constructed by `new` (with this context's pipeline environment) if it
    /// is not yet.
    fn build<'k, T>(&'k self, cell: &'k OnceLock<T>, new: impl FnOnce() -> T) -> &'k T {
        /// Puts the outer environment back when dropped, also when a constructor panics.
        struct Restore(Option<Arc<PipelineEnv>>);
        impl Drop for Restore {
            fn drop(&mut self) {
                let outer = self.0.take();
                BUILDING.with(|b| *b.borrow_mut() = outer);
            }
        }
        cell.get_or_init(|| {
            let _restore = Restore(BUILDING.with(|b| b.replace(Some(Arc::clone(&self.env)))));
            new()
        })
    }
    /// `shaders/asl_forward.wgsl`.
    pub fn asl_forward(&self) -> &AslForward {
        self.build(&self.asl_forward, || AslForward::new(&self.device))
    }
    /// `shaders/asl_backward_input.wgsl`.
    pub fn asl_backward_input(&self) -> &AslBackwardInput {
        self.build(&self.asl_backward_input, || {
            AslBackwardInput::new(&self.device)
        })
    }
    /// `shaders/asl_backward_shift.wgsl`.
    pub fn asl_backward_shift(&self) -> &AslBackwardShift {
        self.build(&self.asl_backward_shift, || {
            AslBackwardShift::new(&self.device)
        })
    }
    /// `shaders/shift_grad_normalize.wgsl`.
    pub fn shift_grad_normalize(&self) -> &ShiftGradNormalize {
        self.build(&self.shift_grad_normalize, || {
            ShiftGradNormalize::new(&self.device)
        })
    }
    /// `shaders/asl_conv1x1.wgsl` (with `asl_taps.wgsl`): the ASL fused into the 1x1 GEMM.
    pub fn asl_conv1x1(&self) -> &AslConv1x1 {
        self.build(&self.asl_conv1x1, || AslConv1x1::new(&self.device))
    }
    /// `shaders/conv1x1*.wgsl` (every GEMM variant).
    pub fn conv1x1(&self) -> &Conv1x1 {
        self.build(&self.conv1x1, || Conv1x1::new(&self.device))
    }
    /// `shaders/conv1x1_backward_input.wgsl`.
    pub fn conv1x1_backward_input(&self) -> &Conv1x1BackwardInput {
        self.build(&self.conv1x1_backward_input, || {
            Conv1x1BackwardInput::new(&self.device)
        })
    }
    /// `shaders/conv1x1_backward_weight.wgsl`.
    pub fn conv1x1_backward_weight(&self) -> &Conv1x1BackwardWeight {
        self.build(&self.conv1x1_backward_weight, || {
            Conv1x1BackwardWeight::new(&self.device)
        })
    }
    /// `shaders/conv3x3.wgsl`.
    pub fn conv3x3(&self) -> &Conv3x3 {
        self.build(&self.conv3x3, || Conv3x3::new(&self.device))
    }
    /// `shaders/depthwise3x3.wgsl`.
    pub fn depthwise3x3(&self) -> &Depthwise3x3 {
        self.build(&self.depthwise3x3, || Depthwise3x3::new(&self.device))
    }
    /// `shaders/affine.wgsl`.
    pub fn affine(&self) -> &Affine {
        self.build(&self.affine, || Affine::new(&self.device))
    }
    /// `shaders/copy.wgsl`.
    pub fn copy(&self) -> &BufferCopy {
        self.build(&self.copy, || BufferCopy::new(&self.device))
    }
    /// `shaders/global_avg_pool.wgsl`.
    pub fn global_avg_pool(&self) -> &GlobalAvgPool {
        self.build(&self.global_avg_pool, || GlobalAvgPool::new(&self.device))
    }
    /// `shaders/softmax.wgsl`.
    pub fn softmax(&self) -> &Softmax {
        self.build(&self.softmax, || Softmax::new(&self.device))
    }
    /// `shaders/batchnorm_train.wgsl`.
    pub fn batchnorm_train(&self) -> &BatchNormTrain {
        self.build(&self.batchnorm_train, || BatchNormTrain::new(&self.device))
    }
    /// `shaders/depthwise3x3_backward.wgsl`.
    pub fn depthwise3x3_backward(&self) -> &Depthwise3x3Backward {
        self.build(&self.depthwise3x3_backward, || {
            Depthwise3x3Backward::new(&self.device)
        })
    }
    /// `shaders/conv3x3_backward_weight.wgsl`.
    pub fn conv3x3_backward_weight(&self) -> &Conv3x3BackwardWeight {
        self.build(&self.conv3x3_backward_weight, || {
            Conv3x3BackwardWeight::new(&self.device)
        })
    }
    /// `shaders/softmax_cross_entropy.wgsl`.
    pub fn softmax_cross_entropy(&self) -> &SoftmaxCrossEntropy {
        self.build(&self.softmax_cross_entropy, || {
            SoftmaxCrossEntropy::new(&self.device)
        })
    }
    /// `shaders/global_avg_pool_backward.wgsl`.
    pub fn global_avg_pool_backward(&self) -> &GlobalAvgPoolBackward {
        self.build(&self.global_avg_pool_backward, || {
            GlobalAvgPoolBackward::new(&self.device)
        })
    }
    /// `shaders/add.wgsl`.
    pub fn add(&self) -> &Add {
        self.build(&self.add, || Add::new(&self.device))
    }
    /// `shaders/optimizer.wgsl`.
    pub fn optimizer(&self) -> &Optimizer {
        self.build(&self.optimizer, || Optimizer::new(&self.device))
    }
    /// Build `entry` of `file` anew (outside every kernel type) with compile timing on, and
    /// return what it took.
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn probe(&self, file: &'static str, entry: &'static str) -> crate::gpu::CompileTime {
        let (_, time) =
            Pipeline::build_timed(&self.device, Some(Arc::clone(&self.env)), file, entry);
        time.unwrap_or(crate::gpu::CompileTime {
            file,
            entry,
            create_ms: 0.0,
            first_dispatch_ms: 0.0,
        })
    }
    /// A 16-byte storage buffer bound where a kernel's optional input is absent.
    pub(crate) fn placeholder(&self) -> &wgpu::Buffer {
        self.placeholder.get_or_init(|| {
            self.env.count_buffer(0);
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("activeshift placeholder"),
                size: 16,
                usage: wgpu::BufferUsages::STORAGE,
                mapped_at_creation: false,
            })
        })
    }
}

/// A compute pipeline with the bind group layout wgpu derived from its WGSL.
pub(crate) struct Pipeline {
    label: &'static str,
    entry: &'static str,
    pipeline: wgpu::ComputePipeline,
    layout: wgpu::BindGroupLayout,
    /// The context's environment, which counts the uniform buffers of prepared dispatches.
    env: Option<Arc<PipelineEnv>>,
}

/// A [`Pipeline`] built on first use: a kernel type with several variants compiles only those
/// that run (some compilers, SwiftShader's among them, take minutes on a large kernel).
pub(crate) struct LazyPipeline {
    device: wgpu::Device,
    env: Option<Arc<PipelineEnv>>,
    file: &'static str,
    entry: &'static str,
    cell: OnceLock<Pipeline>,
}

impl LazyPipeline {
    pub(crate) fn new(device: &wgpu::Device, file: &'static str, entry: &'static str) -> Self {
        Self {
            device: device.clone(),
            env: current_env(),
            file,
            entry,
            cell: OnceLock::new(),
        }
    }

    /// The pipeline, built now if this is its first use.
    pub(crate) fn get(&self) -> &Pipeline {
        self.cell
            .get_or_init(|| Pipeline::build(&self.device, self.env.clone(), self.file, self.entry))
    }
}

impl Pipeline {
    /// Build the pipeline for `entry` of `file` (with the pipeline environment of the kernels
    /// being constructed, if any).
    pub(crate) fn new(device: &wgpu::Device, file: &'static str, entry: &'static str) -> Self {
        Self::build(device, current_env(), file, entry)
    }

    /// Build the pipeline for `entry` of `file` with `env`'s cache and compile hook.
    fn build(
        device: &wgpu::Device,
        env: Option<Arc<PipelineEnv>>,
        file: &'static str,
        entry: &'static str,
    ) -> Self {
        Self::build_timed(device, env, file, entry).0
    }

    /// [`Pipeline::build`], and if `env` times compiles, dispatch the pipeline once and return
    /// (and record) what its creation and that dispatch took.
    fn build_timed(
        device: &wgpu::Device,
        env: Option<Arc<PipelineEnv>>,
        file: &'static str,
        entry: &'static str,
    ) -> (Self, Option<crate::gpu::CompileTime>) {
        #[cfg(not(target_arch = "wasm32"))]
        let start = std::time::Instant::now();
        if let Some(env) = &env {
            if let Some(hook) = env.hook.get() {
                hook(file, entry);
            }
            env.compiled.fetch_add(1, Ordering::Relaxed);
        }
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(file),
            source: wgpu::ShaderSource::Wgsl(source(file).into()),
        });
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(file),
            layout: None,
            module: &module,
            entry_point: Some(entry),
            compilation_options: Default::default(),
            cache: env.as_deref().and_then(PipelineEnv::cache),
        });
        let layout = pipeline.get_bind_group_layout(0);
        #[cfg(not(target_arch = "wasm32"))]
        let time = env.as_ref().and_then(|env| {
            let queue = env.probe.get()?;
            let create_ms = start.elapsed().as_secs_f64() * 1e3;
            let first_dispatch_ms = crate::gpu::compile_cost::first_dispatch(
                device, queue, &pipeline, &layout, file, entry,
            );
            let t = crate::gpu::CompileTime {
                file,
                entry,
                create_ms,
                first_dispatch_ms,
            };
            if let Ok(mut times) = env.compile_times.lock() {
                times.push(t.clone());
            }
            Some(t)
        });
        #[cfg(target_arch = "wasm32")]
        let time = None;
        (
            Self {
                label: file,
                entry,
                pipeline,
                layout,
                env,
            },
            time,
        )
    }

    /// Build one dispatch of `groups` workgroups with `params` (uploaded into a uniform
    /// buffer) at binding 0 and `buffers` at the bindings given.
    pub(crate) fn prepare<P: bytemuck::Pod>(
        &self,
        device: &wgpu::Device,
        params: &P,
        buffers: &[(u32, &wgpu::Buffer)],
        groups: [u32; 3],
    ) -> Dispatch {
        let resources: Vec<(u32, wgpu::BindingResource<'_>)> = buffers
            .iter()
            .map(|(binding, buf)| (*binding, buf.as_entire_binding()))
            .collect();
        self.prepare_bindings(device, params, &resources, groups)
    }

    /// [`Pipeline::prepare`] with explicit binding resources (e.g. a range of a buffer).
    pub(crate) fn prepare_bindings<P: bytemuck::Pod>(
        &self,
        device: &wgpu::Device,
        params: &P,
        resources: &[(u32, wgpu::BindingResource<'_>)],
        groups: [u32; 3],
    ) -> Dispatch {
        let uniform = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(self.label),
            contents: bytemuck::bytes_of(params),
            usage: wgpu::BufferUsages::UNIFORM,
        });
        if let Some(env) = &self.env {
            env.count_buffer(std::mem::size_of::<P>() as u64);
        }
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: uniform.as_entire_binding(),
        }];
        entries.extend(resources.iter().map(|(binding, res)| wgpu::BindGroupEntry {
            binding: *binding,
            resource: res.clone(),
        }));
        let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(self.label),
            layout: &self.layout,
            entries: &entries,
        });
        Dispatch {
            steps: vec![Step {
                label: self.label,
                entry: self.entry,
                pipeline: self.pipeline.clone(),
                bind_group,
                groups,
                setup: false,
            }],
        }
    }
}

/// Kernel launches that are ready to run: pipelines, bind groups (which keep their buffers
/// alive) and workgroup counts, checked and built once by a kernel's `prepare`, then recorded
/// as often as wanted. Recording costs no allocation and no validation beyond wgpu's own.
#[derive(Clone, Debug)]
pub struct Dispatch {
    steps: Vec<Step>,
}

#[derive(Clone, Debug)]
struct Step {
    label: &'static str,
    /// The shader's entry point.
    entry: &'static str,
    pipeline: wgpu::ComputePipeline,
    bind_group: wgpu::BindGroup,
    groups: [u32; 3],
    /// Depends on parameters only (e.g. packing a weight), not on activations.
    setup: bool,
}

impl Dispatch {
    /// A dispatch that launches nothing (the placeholder of an op folded into another).
    pub fn empty() -> Dispatch {
        Dispatch { steps: Vec::new() }
    }

    /// Number of kernel launches.
    pub fn launches(&self) -> usize {
        self.steps.len()
    }

    /// The same launches, marked as setup: they read parameters only (packing a weight,
    /// precomputing a shift's taps), so a caller whose parameters never change may run them
    /// once ([`Dispatch::split_setup`]). Recorded whole, a dispatch runs them every time.
    pub(crate) fn setup(mut self) -> Dispatch {
        self.steps.iter_mut().for_each(|s| s.setup = true);
        self
    }

    /// `(setup, per-run)`: the setup launches (in order) and the others (in order). Running
    /// the first once, then the second any number of times, computes what recording the whole
    /// dispatch each time does, as long as the parameters do not change.
    pub fn split_setup(self) -> (Dispatch, Dispatch) {
        let (setup, run) = self.steps.into_iter().partition(|s| s.setup);
        (Dispatch { steps: setup }, Dispatch { steps: run })
    }

    /// Record into a new compute pass of `encoder`.
    pub fn record(&self, encoder: &mut wgpu::CommandEncoder) {
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: self.steps.first().map(|s| s.label),
            timestamp_writes: None,
        });
        self.record_in(&mut pass);
    }

    /// Record into an open compute pass (wgpu orders the dispatches of a pass by their buffer
    /// use, so a later dispatch sees what an earlier one wrote).
    pub fn record_in(&self, pass: &mut wgpu::ComputePass<'_>) {
        for s in &self.steps {
            pass.set_pipeline(&s.pipeline);
            pass.set_bind_group(0, &s.bind_group, &[]);
            pass.dispatch_workgroups(s.groups[0], s.groups[1], s.groups[2]);
        }
    }

    /// Each launch by itself, with its kernel's name (`file.wgsl:entry`): to time them one by
    /// one (`examples/train_profile.rs --gpu`).
    pub fn parts(&self) -> Vec<(String, Dispatch)> {
        self.steps
            .iter()
            .map(|s| {
                let name = format!("{}:{}", s.label, s.entry);
                (
                    name,
                    Dispatch {
                        steps: vec![s.clone()],
                    },
                )
            })
            .collect()
    }

    /// This dispatch followed by `next`.
    pub fn then(mut self, next: Dispatch) -> Dispatch {
        self.steps.extend(next.steps);
        self
    }
}

/// Workgroup counts for a dispatch, checked against the device's per-dimension limit.
pub(crate) fn workgroups(
    op: &'static str,
    device: &wgpu::Device,
    groups: [usize; 3],
) -> Result<[u32; 3]> {
    let limit = device.limits().max_compute_workgroups_per_dimension;
    let mut out = [0u32; 3];
    for (o, g) in out.iter_mut().zip(groups) {
        *o = u32::try_from(g)
            .ok()
            .filter(|&g| g <= limit)
            .ok_or(Error::DeviceLimit {
                op,
                what: "workgroups per dispatch dimension",
                needed: g as u64,
                limit: u64::from(limit),
            })?;
    }
    Ok(out)
}

/// A shape value as u32 for a uniform.
pub(crate) fn u32_of(op: &'static str, what: &'static str, v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::DeviceLimit {
        op,
        what,
        needed: v as u64,
        limit: u64::from(u32::MAX),
    })
}

/// Check a tensor's dims.
pub(crate) fn expect_dims(
    op: &'static str,
    what: &str,
    t: &crate::GpuTensor,
    dims: &[usize],
) -> Result<()> {
    if t.dims() != dims {
        return Err(Error::shape(
            op,
            what,
            format!("{dims:?}"),
            format!("{:?}", t.dims()),
        ));
    }
    Ok(())
}

/// Check that the output `out` of `op` shares its buffer with none of `inputs` (a buffer cannot
/// be bound for reading and writing in one dispatch, and these kernels do not work in place).
pub(crate) fn expect_distinct(
    op: &'static str,
    out: &crate::GpuTensor,
    inputs: &[(&str, &crate::GpuTensor)],
) -> Result<()> {
    match inputs.iter().find(|(_, t)| t.buffer() == out.buffer()) {
        Some((what, _)) => Err(Error::invalid(
            op,
            format!("the output must be a different tensor from the {what}"),
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod params_layout;
