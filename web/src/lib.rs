//! # activeshift-web
//!
//! The wasm side of the `activeshift` npm package: a thin wasm-bindgen layer over the
//! library's [`Classifier`], so pages, workers and Node.js run the very same Rust code and WGSL
//! kernels as the native `activeshift classify`, on the browser's WebGPU adapter (or on the
//! library's CPU engine compiled to wasm).
//!
//! The package's JavaScript (`js/index.js`, the documented API: `Classifier.load`,
//! `classify`, `info`, `shifts`, `dispose`) turns URLs, blobs, canvases and video frames into
//! bytes or RGBA pixels and calls this binding:
//!
//! - [`Engine::create`] opens WebGPU (or records why not and falls back to the CPU);
//! - [`Engine::load_model`] parses an activeshift `.safetensors` model and uploads it;
//! - [`Batch`] collects images (encoded bytes, decoded here as natively, or RGBA pixels) and
//!   [`Engine::classify`] preprocesses and classifies them in one forward pass; the returned
//!   promise resolves once the GPU readback is done (asynchronously: nothing blocks the page
//!   while the GPU works) to a JSON text whose `results` are the objects
//!   `activeshift classify --json` prints;
//! - [`Engine::tune`] measures, for every op and shape the loaded model runs, which kernel
//!   variant is fastest on this adapter (the library's [`activeshift::gpu::tune::tune`], the
//!   code behind the native `activeshift tune`), and runs the model with those decisions from
//!   then on; [`Engine::tuning_json`] and [`Engine::use_tuning`] let the page keep the decisions
//!   (a cache valid only for the same adapter, driver and kernels);
//! - [`Engine::dispose`] drops the model (and its GPU buffers).
//!
//! Errors reach JavaScript as `Error` objects with a `code` property (see [`code`]) and a
//! message meant for the user.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use activeshift::gpu::tune::{TuneBudget, Tuning, tune};
use activeshift::model::{BlockKind, ParamId};
use activeshift::preprocess::{decode_image, preprocess};
use activeshift::{Classifier, Error, GpuContext, Model};
use image::DynamicImage;
use serde::Serialize;
use std::cell::RefCell;
use std::rc::Rc;
use wasm_bindgen::prelude::*;

#[wasm_bindgen]
extern "C" {
    /// `performance.now()`: milliseconds with sub-millisecond resolution (window or worker).
    #[wasm_bindgen(js_namespace = performance, js_name = now)]
    fn performance_now() -> f64;

    /// `console.error(msg)`.
    #[wasm_bindgen(js_namespace = console, js_name = error)]
    fn console_error(msg: &str);
}

/// Runs when the module is instantiated: report Rust panics on the browser console (a panic
/// still surfaces in JavaScript as a `RuntimeError`, which the page shows in `#error`).
#[wasm_bindgen(start)]
pub fn start() {
    std::panic::set_hook(Box::new(|info| {
        console_error(&format!("activeshift-web panicked: {info}"));
    }));
}

/// The `code` property of the errors this binding throws (the package's `ActiveShiftError`
/// keeps it; `js/index.d.ts` lists them).
pub mod code {
    /// The bytes are not an activeshift model.
    pub const BAD_MODEL: &str = "BAD_MODEL";
    /// An input is not a readable or usable image.
    pub const BAD_IMAGE: &str = "BAD_IMAGE";
    /// No model is loaded (never loaded, or disposed).
    pub const NO_MODEL: &str = "NO_MODEL";
    /// A classification or tuning is already running on this engine.
    pub const BUSY: &str = "BUSY";
    /// The GPU failed: device lost, out of memory, a wgpu error.
    pub const GPU: &str = "GPU_ERROR";
    /// WebGPU is asked for but cannot be used here.
    pub const NO_WEBGPU: &str = "NO_WEBGPU";
    /// An argument is out of range.
    pub const BAD_ARGUMENT: &str = "BAD_ARGUMENT";
    /// Anything else.
    pub const INTERNAL: &str = "INTERNAL";
}

/// An `Error` with `code` set.
fn coded(code: &str, msg: impl std::fmt::Display) -> JsValue {
    let e = js_sys::Error::new(&msg.to_string());
    let _ = js_sys::Reflect::set(&e, &JsValue::from_str("code"), &JsValue::from_str(code));
    e.into()
}

fn js_err(msg: impl std::fmt::Display) -> JsValue {
    coded(code::INTERNAL, msg)
}

/// The learned shifts of one Active Shift layer, for plots.
#[derive(Serialize)]
struct ShiftLayer {
    /// Parameter prefix, e.g. `blocks.3`.
    name: String,
    /// Channels (points in the plot).
    channels: usize,
    /// Stride of the layer.
    stride: usize,
    /// Horizontal shifts, one per channel.
    x: Vec<f32>,
    /// Vertical shifts, one per channel.
    y: Vec<f32>,
}

/// The learned shifts of every Active Shift layer, in execution order (none for the depthwise
/// baselines).
fn shift_layers(model: &Model) -> Result<Vec<ShiftLayer>, Error> {
    let mut shifts = Vec::new();
    for b in model
        .config
        .blocks()
        .into_iter()
        .filter(|b| b.kind == BlockKind::Asl)
    {
        let t = model.param(ParamId::Shift(b.index))?;
        let n = b.inner;
        shifts.push(ShiftLayer {
            name: b.prefix.clone(),
            channels: n,
            stride: b.stride,
            x: t.data[..n].to_vec(),
            y: t.data[n..].to_vec(),
        });
    }
    Ok(shifts)
}

/// What the package's `classifier.info()` returns (besides what JavaScript adds).
#[derive(Serialize)]
struct ModelInfo<'a> {
    /// Architecture name (the `model` field of the results).
    name: &'a str,
    /// Number of classes.
    classes: usize,
    /// Class names, one per class.
    labels: &'a [String],
    /// Learnable parameters.
    params: usize,
    /// Input `[C, H, W]`.
    input: [usize; 3],
    /// How an image becomes the input tensor.
    preprocess: &'a activeshift::model::Preprocess,
    /// Active Shift layers.
    shift_layers: usize,
    /// `cpu` or the adapter name.
    backend: &'a str,
    /// The kernels inference uses on this adapter; empty on the CPU.
    kernels: String,
}

/// The loaded classifier. It is taken out while a classification or a tuning runs and put back
/// afterwards, unless another model was loaded in the meantime (`generation` changed).
#[derive(Default)]
struct Slot {
    classifier: Option<Classifier>,
    /// The context the classifier runs on (GPU only): its policy, made for this model, records
    /// the op shapes the model asks about (what [`Engine::tune`] measures).
    ctx: Option<GpuContext>,
    generation: u64,
    busy: bool,
    runs: u64,
    /// Set by [`Engine::dispose`].
    disposed: bool,
}

/// A WebGPU device (when the browser has one, or the page's own), the kernel decisions
/// measured on it, and the loaded model.
#[wasm_bindgen]
pub struct Engine {
    /// The device with the rules' policy (and the `kernels` family asked for).
    gpu: Option<GpuContext>,
    gpu_error: Option<String>,
    /// Every decision measured (or restored) so far, for all models loaded.
    tuning: Rc<RefCell<Tuning>>,
    slot: Rc<RefCell<Slot>>,
}

/// Images for one [`Engine::classify`]: each pushed as encoded bytes (decoded by the same
/// Rust decoders as the native CLI) or as RGBA pixels (from a canvas).
#[wasm_bindgen]
#[derive(Default)]
pub struct Batch {
    images: Vec<DynamicImage>,
}

#[wasm_bindgen]
impl Batch {
    /// An empty batch.
    #[wasm_bindgen(constructor)]
    pub fn new() -> Batch {
        Batch::default()
    }

    /// Add an encoded image (JPEG, PNG, GIF, BMP, WebP). Errors with code `BAD_IMAGE`.
    pub fn push_encoded(&mut self, bytes: &[u8]) -> Result<(), JsValue> {
        let img = decode_image(bytes)
            .map_err(|e| coded(code::BAD_IMAGE, format!("not a readable image: {e}")))?;
        self.images.push(img);
        Ok(())
    }

    /// Add `width * height` RGBA pixels, row by row (as `ImageData.data`). Errors with code
    /// `BAD_IMAGE` when the length does not match or the image is empty.
    pub fn push_rgba(&mut self, rgba: Vec<u8>, width: u32, height: u32) -> Result<(), JsValue> {
        let want = (width as usize)
            .checked_mul(height as usize)
            .and_then(|n| n.checked_mul(4));
        if width == 0 || height == 0 || want != Some(rgba.len()) {
            return Err(coded(
                code::BAD_IMAGE,
                format!(
                    "not a usable image: {} bytes of RGBA for {width}x{height} pixels",
                    rgba.len()
                ),
            ));
        }
        let img = image::RgbaImage::from_raw(width, height, rgba)
            .ok_or_else(|| coded(code::BAD_IMAGE, "not a usable image"))?;
        self.images.push(DynamicImage::ImageRgba8(img));
        Ok(())
    }

    /// Images in the batch.
    #[wasm_bindgen(getter)]
    pub fn length(&self) -> usize {
        self.images.len()
    }
}

/// What [`Engine::classify`] resolves to, as JSON.
#[derive(Serialize)]
struct Outcome {
    /// One per image, as `activeshift classify --json` prints them.
    results: Vec<activeshift::Classification>,
    /// Milliseconds spent preprocessing (CPU, in wasm; decoding happened in [`Batch`]).
    prepare_ms: f64,
    /// Milliseconds for the forward pass including upload and readback (on the GPU the first
    /// run of a model also compiles the pipelines).
    forward_ms: f64,
    /// Whether this was the first forward pass of the loaded model.
    first: bool,
}

/// What the library's errors mean for JavaScript: the code for [`coded`].
fn code_of(e: &Error) -> &'static str {
    match e {
        Error::Device(_) | Error::Readback(_) | Error::DeviceLimit { .. } => code::GPU,
        Error::Format { .. } => code::BAD_MODEL,
        Error::InvalidArgument { .. } | Error::Shape { .. } => code::BAD_ARGUMENT,
        _ => code::INTERNAL,
    }
}

#[wasm_bindgen]
impl Engine {
    /// Open the browser's WebGPU adapter when `use_gpu` is set; when that is not possible (no
    /// WebGPU here, no adapter, adapter below WebGPU's default limits), or when `use_gpu` is
    /// false, models run on the CPU engine and [`Engine::gpu_error`] says why. `kernels`
    /// (`"gpu"` or `"cpu"`) fixes the kernel family ([`activeshift::gpu::KernelFamily`])
    /// instead of letting the adapter choose: the browser test runs the hardware-GPU kernels on
    /// SwiftShader with it. With `shared`, the device is adopted as a host's
    /// ([`GpuContext::from_device`]: no device-lost or uncaptured-error handler is installed);
    /// the package sets this when the page passes its own `GPUDevice`, which `navigator.gpu`
    /// then hands out.
    pub async fn create(use_gpu: bool, kernels: Option<String>, shared: bool) -> Engine {
        use activeshift::gpu::KernelFamily;
        let family = match kernels.as_deref() {
            Some("gpu") => Some(KernelFamily::Gpu),
            Some("cpu") => Some(KernelFamily::Cpu),
            _ => None,
        };
        let (gpu, gpu_error) = if use_gpu {
            let ctx = if shared {
                shared_context().await
            } else {
                GpuContext::new().await
            };
            match ctx {
                Ok(ctx) => (Some(ctx.with_kernel_family(family)), None),
                Err(Error::NoAdapter(_)) => (
                    None,
                    Some("this browser offers no WebGPU adapter".to_string()),
                ),
                Err(e) => (None, Some(e.to_string())),
            }
        } else {
            (None, Some("the CPU engine was asked for".to_string()))
        };
        Engine {
            gpu,
            gpu_error,
            tuning: Rc::default(),
            slot: Rc::default(),
        }
    }

    /// Whether models run on WebGPU.
    pub fn on_gpu(&self) -> bool {
        self.gpu.is_some()
    }

    /// Why the GPU is not used, when it is not.
    pub fn gpu_error(&self) -> Option<String> {
        self.gpu_error.clone()
    }

    /// The adapter's name (the `backend` field of results; browsers may leave it empty), or
    /// `cpu`.
    pub fn adapter(&self) -> String {
        match &self.gpu {
            Some(ctx) => ctx.adapter_name(),
            None => "cpu".to_string(),
        }
    }

    /// The kernels inference uses on this adapter (e.g. `register-tiled GEMM, vec4 ASL, then
    /// the GEMM`), or an empty string on the CPU.
    pub fn kernels(&self) -> String {
        self.gpu
            .as_ref()
            .map(|ctx| activeshift::gpu::kernels::KernelChoice::of(ctx).to_string())
            .unwrap_or_default()
    }

    /// Parse an activeshift `.safetensors` model and make it the current model (uploading its
    /// parameters to the GPU). Returns a JSON object describing it (name, classes, labels,
    /// params, input, preprocess, shift_layers, backend, kernels). On error (code
    /// `BAD_MODEL`, or `GPU_ERROR`) the previous model stays loaded.
    pub fn load_model(&self, bytes: &[u8]) -> Result<String, JsValue> {
        if self.slot.borrow().disposed {
            return Err(coded(code::NO_MODEL, "the classifier was disposed"));
        }
        let model = Model::from_safetensors(bytes)
            .map_err(|e| coded(code::BAD_MODEL, format!("not an activeshift model: {e}")))?;
        let ctx = self
            .gpu
            .as_ref()
            .map(|base| tuned_context(base, &self.tuning.borrow()));
        let classifier = match &ctx {
            Some(ctx) => Classifier::gpu(ctx, model)
                .map_err(|e| coded(code::GPU, format!("cannot load the model on the GPU: {e}")))?,
            None => Classifier::cpu(model),
        };
        let m = classifier.model();
        let c = &m.config;
        let shift_layers = shift_layers(m)
            .map_err(|e| coded(code::BAD_MODEL, format!("not an activeshift model: {e}")))?
            .len();
        let info = ModelInfo {
            name: &c.name,
            classes: c.classes,
            labels: &m.labels,
            params: c.param_count(),
            input: [c.in_channels, c.input_size[0], c.input_size[1]],
            preprocess: &c.preprocess,
            shift_layers,
            backend: classifier.backend(),
            kernels: self.kernels(),
        };
        let json = serde_json::to_string(&info).map_err(js_err)?;
        let mut s = self.slot.borrow_mut();
        s.classifier = Some(classifier);
        s.ctx = ctx;
        s.generation += 1;
        s.runs = 0;
        Ok(json)
    }

    /// The learned shifts of the loaded model as JSON: one object per Active Shift layer, in
    /// execution order, `{name, channels, stride, x: [...], y: [...]}`.
    pub fn shifts(&self) -> Result<String, JsValue> {
        let s = self.slot.borrow();
        let c = s
            .classifier
            .as_ref()
            .ok_or_else(|| coded(code::NO_MODEL, "no model is loaded"))?;
        let layers = shift_layers(c.model()).map_err(|e| coded(code_of(&e), e))?;
        serde_json::to_string(&layers).map_err(js_err)
    }

    /// Drop the model and its GPU buffers; later calls fail with code `NO_MODEL`.
    pub fn dispose(&self) {
        let mut s = self.slot.borrow_mut();
        s.classifier = None;
        s.ctx = None;
        s.disposed = true;
        s.generation += 1;
    }

    /// How many op shapes have a measured kernel decision (0: the rules choose every kernel).
    pub fn tuned(&self) -> usize {
        self.tuning.borrow().entries().len()
    }

    /// The measured decisions as the cache text of the native `activeshift tune` (tied to this
    /// adapter, its driver and these kernels), for the page to keep in `localStorage`; empty
    /// on the CPU.
    pub fn tuning_json(&self) -> String {
        match &self.gpu {
            Some(ctx) => self.tuning.borrow().to_json(ctx.adapter_info()),
            None => String::new(),
        }
    }

    /// Take the decisions of a [`Engine::tuning_json`] text kept from an earlier visit, for the
    /// loaded model and those loaded from now on; returns how many there are. A text from another adapter,
    /// driver or kernel version, or one that does not parse, is refused with the reason (the
    /// rules keep choosing).
    pub fn use_tuning(&self, json: &str) -> Result<usize, JsValue> {
        let ctx = self
            .gpu
            .as_ref()
            .ok_or_else(|| coded(code::NO_WEBGPU, "no GPU: there is nothing to tune"))?;
        let restored = Tuning::from_json(json, ctx.adapter_info())
            .map_err(|e| coded(code::BAD_ARGUMENT, e))?;
        let n = restored.entries().len();
        self.tuning.borrow_mut().merge(restored);
        // A loaded model runs with the decisions from now on.
        let mut s = self.slot.borrow_mut();
        if let Some(c) = s.classifier.as_ref() {
            let tuned = tuned_context(ctx, &self.tuning.borrow());
            let again = Classifier::gpu(&tuned, c.model().clone())
                .map_err(|e| coded(code::GPU, format!("cannot load the model on the GPU: {e}")))?;
            s.classifier = Some(again);
            s.ctx = Some(tuned);
            s.runs = 0;
        }
        Ok(n)
    }

    /// Measure which kernel variant is fastest for every op and shape the loaded model runs
    /// (after one forward pass on a blank input if it has not run yet), spending at most
    /// `per_key_ms` on each and about `total_ms` in all (op shapes not reached keep following
    /// the rules), and run the model with the decisions from then on. `progress(i, n, key)`
    /// is called before the `i`-th of `n` op shapes. The promise resolves to a JSON object:
    /// `{clock, shapes, tuned, ms, entries: [{key, rule, chosen, micros: {variant: us}}]}`.
    /// Everything waits on the GPU asynchronously: the page stays responsive.
    pub fn tune(
        &self,
        per_key_ms: f64,
        total_ms: f64,
        progress: js_sys::Function,
    ) -> js_sys::Promise {
        let slot = Rc::clone(&self.slot);
        let ms = |v: f64| std::time::Duration::from_secs_f64(v.max(0.0) / 1e3);
        let job = self.gpu.clone().map(|base| TuneJob {
            base,
            tuning: Rc::clone(&self.tuning),
            budget: TuneBudget {
                per_key: ms(per_key_ms),
                total: Some(ms(total_ms)),
            },
            progress,
        });
        wasm_bindgen_futures::future_to_promise(async move {
            let job =
                job.ok_or_else(|| coded(code::NO_WEBGPU, "no GPU: there is nothing to tune"))?;
            let (mut classifier, ctx, generation) = {
                let mut s = slot.borrow_mut();
                if s.busy {
                    return Err(coded(code::BUSY, "a classification is already running"));
                }
                let (Some(c), Some(ctx)) = (s.classifier.take(), s.ctx.clone()) else {
                    return Err(coded(code::NO_MODEL, "no model is loaded"));
                };
                s.busy = true;
                (c, ctx, s.generation)
            };
            let result = job.run(&mut classifier, &ctx).await;
            let mut s = slot.borrow_mut();
            s.busy = false;
            if s.generation != generation {
                return result.map(|(_, _, json)| JsValue::from(json));
            }
            match result {
                Ok((tuned, tuned_ctx, json)) => {
                    s.classifier = Some(tuned);
                    s.ctx = Some(tuned_ctx);
                    s.runs = 0;
                    Ok(JsValue::from(json))
                }
                Err(e) => {
                    s.classifier = Some(classifier);
                    Err(e)
                }
            }
        })
    }

    /// Preprocess and classify the images of `batch` with the current model in one forward
    /// pass, returning a promise of a JSON text `{results, prepare_ms, forward_ms, first}`
    /// whose `results` hold the `k` best classes of each image, as `activeshift classify
    /// --json` prints them. One classification runs at a time: a second call while one is
    /// running is refused (code `BUSY`; the package queues calls instead).
    pub fn classify(&self, batch: &Batch, k: usize) -> js_sys::Promise {
        // Preprocess now: the promise must not borrow the batch.
        let start = performance_now();
        let taken = (|| {
            let mut s = self.slot.borrow_mut();
            if s.busy {
                return Err(coded(code::BUSY, "a classification is already running"));
            }
            if batch.images.is_empty() {
                return Err(coded(code::BAD_ARGUMENT, "no image to classify"));
            }
            let Some(c) = s.classifier.take() else {
                return Err(coded(code::NO_MODEL, "no model is loaded"));
            };
            let mut input = Vec::new();
            for (i, img) in batch.images.iter().enumerate() {
                match preprocess(img, &c.model().config.preprocess) {
                    Ok(x) => input.extend(x),
                    Err(e) => {
                        s.classifier = Some(c);
                        return Err(coded(
                            code::BAD_IMAGE,
                            format!("image {i}: not a usable image: {e}"),
                        ));
                    }
                }
            }
            s.busy = true;
            Ok((c, input, s.generation, s.runs == 0))
        })();
        let n = batch.images.len();
        let slot = Rc::clone(&self.slot);
        wasm_bindgen_futures::future_to_promise(async move {
            let (mut classifier, input, generation, first) = taken?;
            let t1 = performance_now();
            let result = classifier.run(&input).await;
            let t2 = performance_now();
            let mut s = slot.borrow_mut();
            s.busy = false;
            if s.generation == generation {
                s.runs += 1;
            }
            let out = match result {
                Ok(out) => out,
                Err(e) => {
                    if s.generation == generation {
                        s.classifier = Some(classifier);
                    }
                    return Err(coded(code_of(&e), format!("inference failed: {e}")));
                }
            };
            let outcome = Outcome {
                results: (0..n).map(|i| classifier.describe(&out, i, k)).collect(),
                prepare_ms: t1 - start,
                forward_ms: t2 - t1,
                first,
            };
            if s.generation == generation {
                s.classifier = Some(classifier);
            }
            Ok(JsValue::from(
                serde_json::to_string(&outcome).map_err(js_err)?,
            ))
        })
    }
}

/// A context on the device that `navigator.gpu` hands out, adopted as a host's (the package
/// makes `navigator.gpu` hand out the page's own `GPUDevice` while this runs).
async fn shared_context() -> Result<GpuContext, Error> {
    let instance =
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter = activeshift::gpu::select_adapter(&instance).await?;
    let (device, queue) = adapter
        .request_device(&wgpu::DeviceDescriptor {
            label: Some("activeshift (shared)"),
            required_features: adapter.features(),
            required_limits: adapter.limits(),
            ..Default::default()
        })
        .await
        .map_err(|e| Error::RequestDevice(e.to_string()))?;
    GpuContext::from_device(&device, &queue, adapter.get_info())
}

/// A context on `base`'s device whose policy, fresh (it records the op shapes of one model),
/// follows `tuning` where it has a decision and the rules elsewhere.
fn tuned_context(base: &GpuContext, tuning: &Tuning) -> GpuContext {
    let decisions = (!tuning.entries().is_empty()).then(|| tuning.clone());
    base.clone()
        .with_policy(base.policy_overrides().clone().tuning(decisions))
}

/// What one tuning measured, for the page.
#[derive(Serialize)]
struct TuneReport {
    /// What the times come from (`the device's timestamp queries`, `wall clock`).
    clock: &'static str,
    /// Op shapes the model runs.
    shapes: usize,
    /// Op shapes measured within the budget.
    tuned: usize,
    /// Milliseconds the tuning took.
    ms: f64,
    /// One per measured op shape.
    entries: Vec<TuneRow>,
}

#[derive(Serialize)]
struct TuneRow {
    key: String,
    rule: String,
    chosen: String,
    micros: std::collections::BTreeMap<String, f64>,
}

/// [`Engine::tune`]'s work, and what it needs besides the model.
struct TuneJob {
    /// The device with the rules' policy.
    base: GpuContext,
    /// The demo's decisions, which the measured ones join.
    tuning: Rc<RefCell<Tuning>>,
    budget: TuneBudget,
    /// `progress(i, n, key)`.
    progress: js_sys::Function,
}

impl TuneJob {
    /// Measure the op shapes `classifier` runs on `ctx` (after one forward pass on a blank
    /// input if it has not run), merge the decisions into the demo's, and load the model again
    /// on a context that follows them. Returns that classifier and context, and the report.
    async fn run(
        self,
        classifier: &mut Classifier,
        ctx: &GpuContext,
    ) -> Result<(Classifier, GpuContext, String), JsValue> {
        let t0 = performance_now();
        if ctx.policy().asked().is_empty() {
            let c = &classifier.model().config;
            let blank = vec![0.0; c.in_channels * c.input_size[0] * c.input_size[1]];
            classifier
                .run(&blank)
                .await
                .map_err(|e| js_err(format!("inference failed: {e}")))?;
        }
        let keys = ctx.policy().asked();
        let n = keys.len();
        let progress = |i: usize, key: &activeshift::gpu::tune::TuneKey| {
            let _ = self.progress.call3(
                &JsValue::NULL,
                &JsValue::from(i as u32),
                &JsValue::from(n as u32),
                &JsValue::from(key.text()),
            );
        };
        let measured = tune(ctx, &keys, self.budget, progress)
            .await
            .map_err(|e| js_err(format!("tuning failed: {e}")))?;
        let entries: Vec<TuneRow> = keys
            .iter()
            .filter_map(|k| {
                let e = measured.entries().get(&k.text())?;
                Some(TuneRow {
                    key: k.text(),
                    rule: e.rule.clone(),
                    chosen: e.chosen.clone(),
                    micros: e.micros.clone(),
                })
            })
            .collect();
        let report = TuneReport {
            clock: activeshift::gpu::DispatchTimer::new(ctx).clock(),
            shapes: n,
            tuned: entries.len(),
            ms: performance_now() - t0,
            entries,
        };
        self.tuning.borrow_mut().merge(measured);
        let tuned = tuned_context(&self.base, &self.tuning.borrow());
        let again = Classifier::gpu(&tuned, classifier.model().clone())
            .map_err(|e| js_err(format!("cannot load the model on the GPU: {e}")))?;
        let json = serde_json::to_string(&report).map_err(js_err)?;
        Ok((again, tuned, json))
    }
}

/// The CPU engine's 1x1 convolution (`activeshift::cpu::fast::conv1x1`, the GEMM most of a
/// forward pass spends its time in) on one image: `x` `[cin, h, w]`, `weight` `[cout, cin]`,
/// stride 1, no epilogue; returns `[cout, h, w]`. Not part of the package's API: the CPU
/// benchmark (`web/test/bench-cpu.mjs`) times it against onnxruntime-web running the same
/// convolution. A size mismatch is an error with code `BAD_ARGUMENT`.
#[wasm_bindgen(js_name = benchConv1x1)]
pub fn bench_conv1x1(
    x: &[f32],
    weight: &[f32],
    cin: usize,
    cout: usize,
    h: usize,
    w: usize,
) -> Result<Vec<f32>, JsValue> {
    let xs = activeshift::Shape4 { n: 1, c: cin, h, w };
    let sizes = cin.checked_mul(h).and_then(|v| v.checked_mul(w));
    let out = cout.checked_mul(h).and_then(|v| v.checked_mul(w));
    let (Some(n_x), Some(n_y)) = (sizes, out) else {
        return Err(coded(code::BAD_ARGUMENT, "convolution sizes overflow"));
    };
    if x.len() != n_x || weight.len() != cout.saturating_mul(cin) {
        return Err(coded(
            code::BAD_ARGUMENT,
            format!(
                "x has {} values and weight {}, expected {n_x} ([{cin}, {h}, {w}]) and {} ([{cout}, {cin}])",
                x.len(),
                weight.len(),
                cout.saturating_mul(cin)
            ),
        ));
    }
    let mut y = vec![0.0; n_y];
    let ep = activeshift::cpu::Epilogue::default();
    let layer = activeshift::cpu::fast::Conv1x1Layer {
        w: weight,
        cout,
        stride: 1,
        ep: &ep,
    };
    activeshift::cpu::fast::conv1x1(x, xs, layer, &mut y, &mut Vec::new());
    Ok(y)
}
