//! # activeshift-web
//!
//! The browser side of activeshift: a thin wasm-bindgen layer over the library's
//! [`Classifier`], so the page runs the very same Rust code and WGSL kernels as the native
//! `activeshift classify`, on the browser's WebGPU adapter (or, where the browser has no
//! WebGPU, on the library's CPU engine compiled to wasm).
//!
//! JavaScript (`www/app.js`) only handles the page: reading files and URLs into bytes, drawing
//! the bars and the shift scatter plots. The API it uses:
//!
//! - [`Demo::create`] opens WebGPU (or records why not and falls back to the CPU);
//! - [`Demo::load_model`] parses an activeshift `.safetensors` model and uploads it;
//! - [`Demo::classify`] decodes, preprocesses and classifies one encoded image; the returned
//!   promise resolves once the GPU readback is done (asynchronously: nothing blocks the page
//!   while the GPU works) to an [`Outcome`], whose [`Outcome::json`] is the same JSON object as
//!   `activeshift classify --json` prints;
//! - [`Demo::tune`] measures, for every op and shape the loaded model runs, which kernel
//!   variant is fastest on this adapter (the library's [`activeshift::gpu::tune::tune`], the
//!   code behind the native `activeshift tune`), and runs the model with those decisions from
//!   then on; [`Demo::tuning_json`] and [`Demo::use_tuning`] let the page keep the decisions in
//!   `localStorage` (a cache valid only for the same adapter, driver and kernels).
//!
//! Errors reach JavaScript as `Error` objects whose message is meant for the user.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use activeshift::gpu::tune::{TuneBudget, Tuning, tune};
use activeshift::model::{BlockKind, ParamId};
use activeshift::preprocess::{decode_image, preprocess};
use activeshift::{Classifier, Error, GpuContext, Model};
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

/// The learned shifts of one Active Shift layer, for the scatter plots.
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

/// What the page shows about a freshly loaded model.
#[derive(Serialize)]
struct ModelInfo {
    /// Architecture name (the `model` field of the results).
    name: String,
    /// Number of classes.
    classes: usize,
    /// Learnable parameters.
    params: usize,
    /// Input `[C, H, W]`.
    input: [usize; 3],
    /// `cpu` or the adapter name.
    backend: String,
    /// One entry per Active Shift layer, in execution order.
    shifts: Vec<ShiftLayer>,
}

impl ModelInfo {
    fn of(model: &Model, backend: &str) -> Result<Self, Error> {
        let c = &model.config;
        let mut shifts = Vec::new();
        // Depthwise baseline networks have no shifts to show.
        for b in c.blocks().into_iter().filter(|b| b.kind == BlockKind::Asl) {
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
        Ok(Self {
            name: c.name.clone(),
            classes: c.classes,
            params: c.param_count(),
            input: [c.in_channels, c.input_size[0], c.input_size[1]],
            backend: backend.to_string(),
            shifts,
        })
    }
}

/// The loaded classifier. It is taken out while a classification or a tuning runs and put back
/// afterwards, unless another model was loaded in the meantime (`generation` changed).
#[derive(Default)]
struct Slot {
    classifier: Option<Classifier>,
    /// The context the classifier runs on (GPU only): its policy, made for this model, records
    /// the op shapes the model asks about (what [`Demo::tune`] measures).
    ctx: Option<GpuContext>,
    generation: u64,
    busy: bool,
    runs: u64,
    /// Why the last [`Demo::load_model`] failed, while no model is loaded (named by
    /// [`Demo::classify`] instead of a bare "no model").
    load_error: Option<String>,
}

/// The demo's engine: a WebGPU device (when the browser has one), the kernel decisions measured
/// on it, and the loaded model.
#[wasm_bindgen]
pub struct Demo {
    /// The device with the rules' policy (and the page's `?kernels=` family).
    gpu: Option<GpuContext>,
    gpu_error: Option<String>,
    /// Every decision measured (or restored) so far, for all models loaded.
    tuning: Rc<RefCell<Tuning>>,
    slot: Rc<RefCell<Slot>>,
}

/// The result of [`Demo::classify`].
#[wasm_bindgen]
pub struct Outcome {
    json: String,
    prepare_ms: f64,
    forward_ms: f64,
    first: bool,
}

#[wasm_bindgen]
impl Outcome {
    /// The same JSON object as `activeshift classify --json` prints (with `image` only when
    /// an image name or URL was given).
    #[wasm_bindgen(getter)]
    pub fn json(&self) -> String {
        self.json.clone()
    }

    /// Milliseconds spent decoding and preprocessing the image (CPU, in wasm).
    #[wasm_bindgen(getter)]
    pub fn prepare_ms(&self) -> f64 {
        self.prepare_ms
    }

    /// Milliseconds for the forward pass including upload and readback (on the GPU the first
    /// run of a model also compiles the pipelines).
    #[wasm_bindgen(getter)]
    pub fn forward_ms(&self) -> f64 {
        self.forward_ms
    }

    /// Whether this was the first forward pass of the loaded model.
    #[wasm_bindgen(getter)]
    pub fn first(&self) -> bool {
        self.first
    }
}

fn js_err(msg: impl std::fmt::Display) -> JsValue {
    JsError::new(&msg.to_string()).into()
}

#[wasm_bindgen]
impl Demo {
    /// Open the browser's WebGPU adapter when `use_gpu` is set; when that is not possible (no
    /// WebGPU in this browser, no adapter, adapter below WebGPU's default limits), or when
    /// `use_gpu` is false, models run on the CPU engine and [`Demo::gpu_error`] says why.
    /// `kernels` (`"gpu"` or `"cpu"`, the page's `?kernels=`) fixes the kernel family
    /// ([`activeshift::gpu::KernelFamily`]) instead of letting the adapter choose: the browser
    /// test runs the hardware-GPU kernels on SwiftShader with it.
    pub async fn create(use_gpu: bool, kernels: Option<String>) -> Demo {
        use activeshift::gpu::KernelFamily;
        let family = match kernels.as_deref() {
            Some("gpu") => Some(KernelFamily::Gpu),
            Some("cpu") => Some(KernelFamily::Cpu),
            _ => None,
        };
        let (gpu, gpu_error) = if use_gpu {
            match GpuContext::new().await {
                Ok(ctx) => (Some(ctx.with_kernel_family(family)), None),
                Err(Error::NoAdapter(_)) => (
                    None,
                    Some("this browser offers no WebGPU adapter".to_string()),
                ),
                Err(e) => (None, Some(e.to_string())),
            }
        } else {
            (
                None,
                Some("the GPU was turned off (?backend=cpu)".to_string()),
            )
        };
        Demo {
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

    /// Whether a model is loaded.
    pub fn has_model(&self) -> bool {
        let s = self.slot.borrow();
        s.classifier.is_some() || s.busy
    }

    /// Parse an activeshift `.safetensors` model and make it the current model (uploading its
    /// parameters to the GPU). Returns a JSON object describing it (name, classes, params,
    /// input, backend, and the learned shifts of every layer). On error the previous model
    /// stays loaded.
    pub fn load_model(&self, bytes: &[u8]) -> Result<String, JsValue> {
        let result = self.try_load_model(bytes);
        let mut s = self.slot.borrow_mut();
        let loaded = s.classifier.is_some() || s.busy;
        s.load_error = match &result {
            Err(e) if !loaded => Some(e.clone()),
            _ => None,
        };
        result.map_err(js_err)
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

    /// Take the decisions of a [`Demo::tuning_json`] text kept from an earlier visit, for the
    /// models loaded from now on; returns how many there are. A text from another adapter,
    /// driver or kernel version, or one that does not parse, is refused with the reason (the
    /// rules keep choosing).
    pub fn use_tuning(&self, json: &str) -> Result<usize, JsValue> {
        let ctx = self
            .gpu
            .as_ref()
            .ok_or_else(|| js_err("no GPU: there is nothing to tune"))?;
        let restored = Tuning::from_json(json, ctx.adapter_info()).map_err(js_err)?;
        let n = restored.entries().len();
        self.tuning.borrow_mut().merge(restored);
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
            let job = job.ok_or_else(|| js_err("no GPU: there is nothing to tune"))?;
            let (mut classifier, ctx, generation) = {
                let mut s = slot.borrow_mut();
                if s.busy {
                    return Err(js_err("a classification is already running"));
                }
                let (Some(c), Some(ctx)) = (s.classifier.take(), s.ctx.clone()) else {
                    return Err(js_err(
                        "no model is loaded: load an activeshift model first",
                    ));
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

    /// Decode (JPEG, PNG, GIF, BMP, WebP), preprocess and classify one image with the current
    /// model, returning a promise of an [`Outcome`] with the `k` best classes. `image` becomes
    /// the `image` field of the JSON (leave it out for local files). One classification runs
    /// at a time: a second call while one is running is refused.
    pub fn classify(&self, bytes: Vec<u8>, k: usize, image: Option<String>) -> js_sys::Promise {
        let slot = Rc::clone(&self.slot);
        wasm_bindgen_futures::future_to_promise(async move {
            let (mut classifier, generation, first) = {
                let mut s = slot.borrow_mut();
                if s.busy {
                    return Err(js_err("a classification is already running"));
                }
                let Some(c) = s.classifier.take() else {
                    return Err(js_err(match &s.load_error {
                        Some(e) => format!("no model is loaded: loading it failed: {e}"),
                        None => "no model is loaded: load an activeshift model first".into(),
                    }));
                };
                s.busy = true;
                (c, s.generation, s.runs == 0)
            };
            let result = run(&mut classifier, &bytes, k, image).await;
            let mut s = slot.borrow_mut();
            s.busy = false;
            if s.generation == generation {
                s.classifier = Some(classifier);
                s.runs += 1;
            }
            result.map(|mut o| {
                o.first = first;
                JsValue::from(o)
            })
        })
    }
}

impl Demo {
    /// [`Demo::load_model`], with its error as text.
    fn try_load_model(&self, bytes: &[u8]) -> Result<String, String> {
        let model =
            Model::from_safetensors(bytes).map_err(|e| format!("not an activeshift model: {e}"))?;
        let ctx = self
            .gpu
            .as_ref()
            .map(|base| tuned_context(base, &self.tuning.borrow()));
        let classifier = match &ctx {
            Some(ctx) => Classifier::gpu(ctx, model)
                .map_err(|e| format!("cannot load the model on the GPU: {e}"))?,
            None => Classifier::cpu(model),
        };
        let info = ModelInfo::of(classifier.model(), classifier.backend())
            .map_err(|e| format!("not an activeshift model: {e}"))?;
        let json = serde_json::to_string(&info).map_err(|e| e.to_string())?;
        let mut s = self.slot.borrow_mut();
        s.classifier = Some(classifier);
        s.ctx = ctx;
        s.generation += 1;
        s.runs = 0;
        Ok(json)
    }
}

async fn run(
    classifier: &mut Classifier,
    bytes: &[u8],
    k: usize,
    image: Option<String>,
) -> Result<Outcome, JsValue> {
    let t0 = performance_now();
    let img = decode_image(bytes).map_err(|e| js_err(format!("not a readable image: {e}")))?;
    let input = preprocess(&img, &classifier.model().config.preprocess)
        .map_err(|e| js_err(format!("not a usable image: {e}")))?;
    let t1 = performance_now();
    let out = classifier
        .run(&input)
        .await
        .map_err(|e| js_err(format!("inference failed: {e}")))?;
    let t2 = performance_now();
    let mut c = classifier.describe(&out, 0, k);
    c.image = image;
    Ok(Outcome {
        json: serde_json::to_string(&c).map_err(js_err)?,
        prepare_ms: t1 - t0,
        forward_ms: t2 - t1,
        first: false,
    })
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

/// [`Demo::tune`]'s work, and what it needs besides the model.
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
