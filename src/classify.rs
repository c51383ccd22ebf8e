//! The high-level API: a model on a backend that turns images into ranked classes.

use crate::error::Result;
use crate::gpu::GpuContext;
use crate::model::{GpuModel, Model, Output};
use crate::preprocess::{decode_image, preprocess};
use image::DynamicImage;
use serde::{Deserialize, Serialize};

/// One ranked class.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TopClass {
    /// Class index.
    pub class: usize,
    /// Class label.
    pub label: String,
    /// Softmax probability.
    pub prob: f32,
}

/// The result for one image, as `activeshift classify --json` prints it (one object per line)
/// and the web demo shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Classification {
    /// The image path or URL as given, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Model (architecture) name.
    pub model: String,
    /// The adapter name, or `cpu`.
    pub backend: String,
    /// The most probable classes, best first.
    pub top: Vec<TopClass>,
}

enum Engine {
    Cpu,
    Gpu(Box<GpuModel>),
}

/// A model ready to classify images on the GPU or the CPU.
pub struct Classifier {
    model: Model,
    engine: Engine,
    backend: String,
}

impl Classifier {
    /// Classify on the CPU.
    pub fn cpu(model: Model) -> Self {
        Self {
            model,
            engine: Engine::Cpu,
            backend: "cpu".into(),
        }
    }

    /// Classify on the context's GPU (parameters are uploaded now).
    pub fn gpu(ctx: &GpuContext, model: Model) -> Result<Self> {
        let gm = GpuModel::new(ctx, &model)?;
        Ok(Self {
            model,
            engine: Engine::Gpu(Box::new(gm)),
            backend: ctx.adapter_name(),
        })
    }

    /// The model.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The adapter name, or `cpu`.
    pub fn backend(&self) -> &str {
        &self.backend
    }

    /// Run the network on preprocessed input `[N, C, H, W]`.
    pub async fn run(&mut self, input: &[f32]) -> Result<Output> {
        match &mut self.engine {
            Engine::Cpu => self.model.forward_cpu(input),
            Engine::Gpu(gm) => gm.forward(input).await,
        }
    }

    /// Preprocess and classify a batch of decoded images (one submission on the GPU); returns
    /// the `k` best classes of each.
    pub async fn classify_images(
        &mut self,
        images: &[DynamicImage],
        k: usize,
    ) -> Result<Vec<Classification>> {
        let mut input = Vec::new();
        for img in images {
            input.extend(preprocess(img, &self.model.config.preprocess)?);
        }
        let out = self.run(&input).await?;
        Ok((0..images.len())
            .map(|i| self.describe(&out, i, k))
            .collect())
    }

    /// Decode, preprocess and classify one encoded image (JPEG, PNG, ...).
    pub async fn classify_bytes(&mut self, bytes: &[u8], k: usize) -> Result<Classification> {
        let img = decode_image(bytes)?;
        let mut v = self.classify_images(std::slice::from_ref(&img), k).await?;
        Ok(v.remove(0))
    }

    /// [`Classifier::run`], blocking until the result is back (native only: the web never
    /// blocks).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn run_blocking(&mut self, input: &[f32]) -> Result<Output> {
        pollster::block_on(self.run(input))
    }

    /// [`Classifier::classify_bytes`], blocking until the result is back (native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn classify_bytes_blocking(&mut self, bytes: &[u8], k: usize) -> Result<Classification> {
        pollster::block_on(self.classify_bytes(bytes, k))
    }

    /// Read, decode, preprocess and classify one image file, blocking until the result is back
    /// (native only). The result's `image` is the path as given.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn classify_file(
        &mut self,
        path: impl AsRef<std::path::Path>,
        k: usize,
    ) -> Result<Classification> {
        let path = path.as_ref();
        let bytes = crate::preprocess::read_image_file(path)?;
        let mut c = self.classify_bytes_blocking(&bytes, k)?;
        c.image = Some(path.display().to_string());
        Ok(c)
    }

    /// The `k` best classes of image `i` of `out`.
    pub fn describe(&self, out: &Output, i: usize, k: usize) -> Classification {
        Classification {
            image: None,
            model: self.model.config.name.clone(),
            backend: self.backend.clone(),
            top: out
                .top_k(i, k)
                .into_iter()
                .map(|(class, prob)| TopClass {
                    class,
                    label: self
                        .model
                        .labels
                        .get(class)
                        .cloned()
                        .unwrap_or_else(|| format!("class {class}")),
                    prob,
                })
                .collect(),
        }
    }
}
