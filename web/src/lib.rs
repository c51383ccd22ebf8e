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
//!   `activeshift classify --json` prints.
//!
//! Errors reach JavaScript as `Error` objects whose message is meant for the user.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

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

/// The loaded classifier. It is taken out while a classification runs and put back afterwards,
/// unless another model was loaded in the meantime (`generation` changed).
#[derive(Default)]
struct Slot {
    classifier: Option<Classifier>,
    generation: u64,
    busy: bool,
    runs: u64,
    /// Why the last [`Demo::load_model`] failed, while no model is loaded (named by
    /// [`Demo::classify`] instead of a bare "no model").
    load_error: Option<String>,
}

/// The demo's engine: a WebGPU device (when the browser has one) and the loaded model.
#[wasm_bindgen]
pub struct Demo {
    gpu: Option<GpuContext>,
    gpu_error: Option<String>,
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
            Some(ctx) => ctx.adapter_info().name.clone(),
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
        let classifier = match &self.gpu {
            Some(ctx) => Classifier::gpu(ctx, model)
                .map_err(|e| format!("cannot load the model on the GPU: {e}"))?,
            None => Classifier::cpu(model),
        };
        let info = ModelInfo::of(classifier.model(), classifier.backend())
            .map_err(|e| format!("not an activeshift model: {e}"))?;
        let json = serde_json::to_string(&info).map_err(|e| e.to_string())?;
        let mut s = self.slot.borrow_mut();
        s.classifier = Some(classifier);
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
