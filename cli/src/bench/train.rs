//! The training cases of `activeshift bench`: the CPU and GPU trainers and, where
//! `ACTIVESHIFT_TORCH_PYTHON` names an interpreter with torch, the PyTorch twin beside them.

use super::*;

impl Bench {
    /// Training images/s of ASNet-20 16x1 on Fashion-MNIST-sized input (one SGD step of
    /// forward, backward and update on random images), per backend.
    pub(super) fn training(&mut self) -> Result<()> {
        let case = "train_cpu_asnet20-16x1";
        if self.wanted(case) {
            // The run's state in the CPU trainer's own buffers (`Session<CpuBackend>`), as
            // `activeshift train` runs it.
            let batch = if self.quick { 32 } else { 128 };
            let ms = self.time_steps(activeshift::train::CpuBackend, batch)?;
            self.push(
                case.to_string(),
                "training",
                ms,
                Some((batch as f64, "images")),
                format!(
                    "1x28x28 batch {batch}, CPU trainer ({} threads)",
                    rayon::current_num_threads()
                ),
            );
        }
        let case = "train_torch_twin_asnet20-16x1";
        if self.wanted(case) {
            let batch = if self.quick { 32 } else { 128 };
            let config = activeshift::train::fashion_mnist_config(16, 1);
            if let Some(ms) = torch_twin(if self.quick { 2 } else { 5 }, batch, &config, false)? {
                let note = format!("1x28x28 batch {batch}, tools/torch_twin (PyTorch, 2 threads)");
                self.push(
                    case.to_string(),
                    "training",
                    ms,
                    Some((batch as f64, "images")),
                    note,
                );
            }
        }
        self.folder_vs_builtin()?;
        self.finetuning()?;
        self.finetuning_whole()?;
        let case = "train_gpu_asnet20-16x1";
        if self.wanted(case) {
            // The same step through the WGSL training kernels, the run's state resident on the
            // device (`Session<GpuBackend>`: storage and launches prepared once, one submission
            // per step, the loss and accuracy read back after it); a software adapter is slow at
            // it, so smaller batches there.
            let batch = if self.quick { 8 } else { 64 };
            let be = activeshift::train::GpuBackend::new(self.ctx.clone());
            let ms = self.time_steps(be, batch)?;
            self.push(
                case.to_string(),
                "training",
                ms,
                Some((batch as f64, "images")),
                format!(
                    "1x28x28 batch {batch}, GPU trainer on {}",
                    self.ctx.adapter_name()
                ),
            );
        }
        Ok(())
    }

    /// CPU training of ASNet-20 16x1 on the same 28x28 grayscale images two ways: as a
    /// `Dataset` filled directly (how the built-in Fashion-MNIST path holds its images) and as a
    /// folder of PNGs (`DIR/train/<class>/`) loaded by `image_folder::load`, as
    /// `train --images` reads it. Milliseconds per `Session::step` (batch assembly with
    /// augmentation, forward, backward, update) over the same index batches; and the folder's
    /// load itself (decoding every PNG into the cache), which a run pays once.
    fn folder_vs_builtin(&mut self) -> Result<()> {
        use activeshift::data::Dataset;
        use activeshift::image_folder::{self, FolderOptions};
        use activeshift::train::{Session, TrainSettings, Trainer, fashion_mnist_config};
        let (builtin_case, folder_case, load_case) = (
            "train_cpu_builtin_data_asnet20-16x1",
            "train_cpu_folder_data_asnet20-16x1",
            "folder_load_png_28x28",
        );
        if ![builtin_case, folder_case, load_case]
            .iter()
            .any(|c| self.wanted(c))
        {
            return Ok(());
        }
        let (per_class, batch, runs) = if self.quick { (4, 32, 2) } else { (60, 128, 5) };
        let dir = tempfile::tempdir()
            .map_err(|e| crate::io_err(std::path::Path::new("temp folder"), e))?;
        let labels: Vec<String> = (0..10).map(|c| format!("class{c}")).collect();
        let mut builtin = Dataset::empty([1, 28, 28]);
        for (c, label) in labels.iter().enumerate() {
            for (split, count) in [("train", per_class), ("val", 1)] {
                let sub = dir.path().join(split).join(label);
                std::fs::create_dir_all(&sub).map_err(|e| crate::io_err(&sub, e))?;
                for i in 0..count {
                    let pixels: Vec<u8> = (0..28 * 28).map(|_| self.rng.random()).collect();
                    if split == "train" {
                        builtin.push(&pixels, c as u32)?;
                    }
                    let img = image::GrayImage::from_raw(28, 28, pixels)
                        .expect("28x28 pixels make a 28x28 image");
                    // Names that sort as the images were pushed.
                    let path = sub.join(format!("{i:04}.png"));
                    img.save(&path)
                        .map_err(|e| crate::io_err(&path, std::io::Error::other(e)))?;
                }
            }
        }
        let cache = tempfile::tempdir()
            .map_err(|e| crate::io_err(std::path::Path::new("temp folder"), e))?;
        let opts = FolderOptions {
            cache_dir: Some(cache.path().to_path_buf()),
            ..FolderOptions::new(28, 28, 1)
        };
        let start = Instant::now();
        let folder = Dataset::from(image_folder::load(dir.path(), &opts, &|_| {})?.train);
        let load_ms = start.elapsed().as_secs_f64() * 1e3;
        let images = builtin.len();
        if self.wanted(load_case) {
            self.push(
                load_case.to_string(),
                "training",
                vec![load_ms],
                Some((images as f64, "images")),
                format!(
                    "{images} grayscale PNGs decoded into an empty cache by image_folder::load \
                     (once per run; later runs read the cache)"
                ),
            );
        }
        // The same images in the same order: the folder's classes sort by name as created.
        if folder.labels != builtin.labels || folder.pixels != builtin.pixels {
            return Err(activeshift::Error::invalid(
                "bench",
                "the folder did not load the images written to it",
            ));
        }
        let batches: Vec<Vec<usize>> = (0..=runs)
            .map(|r| (0..batch).map(|i| (r * batch + i) % images).collect())
            .collect();
        // Two sessions stepped alternately, so that a change in the host's load falls on both.
        let session = || -> Result<Session<activeshift::train::CpuBackend>> {
            let trainer = Trainer::new(
                fashion_mnist_config(16, 1),
                labels.clone(),
                TrainSettings::default(),
            )?;
            Session::new(trainer, activeshift::train::CpuBackend)
        };
        let mut runs_of = [
            (session()?, &builtin, Vec::new()),
            (session()?, &folder, Vec::new()),
        ];
        for (r, idx) in batches.iter().enumerate() {
            for (session, set, ms) in &mut runs_of {
                let start = Instant::now();
                session.step(set, idx, 0.01, 7)?;
                session.stats()?;
                // The first batch warms up.
                if r > 0 {
                    ms.push(start.elapsed().as_secs_f64() * 1e3);
                }
            }
        }
        let [(_, _, builtin_ms), (_, _, folder_ms)] = runs_of;
        for (case, ms, source) in [
            (
                builtin_case,
                builtin_ms,
                "a Dataset filled directly, as the built-in Fashion-MNIST path",
            ),
            (
                folder_case,
                folder_ms,
                "a folder of PNGs loaded by image_folder::load",
            ),
        ] {
            if self.wanted(case) {
                self.push(
                    case.to_string(),
                    "training",
                    ms,
                    Some((batch as f64, "images")),
                    format!(
                        "1x28x28 batch {batch} with augmentation from {source}, CPU trainer ({} \
                         threads, steps alternating with the other data path's)",
                        rayon::current_num_threads()
                    ),
                );
            }
        }
        Ok(())
    }

    /// Head-only fine-tuning of w32 on a folder of JPEGs, wall time of the whole job as
    /// `train --images DIR --from as-resnet-w32` runs it: decoding (no cache), resizing to
    /// 256 / 224, the pooled features of each image and its mirror on the CPU engine, then the
    /// new classifier's epochs. Random weights of w32's shape (the work does not depend on
    /// them). Goal: 200 images, 5 epochs in at most 60 s on a 2-core host.
    fn finetuning(&mut self) -> Result<()> {
        use activeshift::image_folder::{self, FolderOptions};
        use activeshift::train::{TrainSettings, head};
        let case = "finetune_head_w32";
        if !self.wanted(case) {
            return Ok(());
        }
        let (images, epochs) = if self.quick { (40, 2) } else { (200, 5) };
        let dir = tempfile::tempdir()
            .map_err(|e| crate::io_err(std::path::Path::new("temp folder"), e))?;
        for i in 0..images {
            let class = dir.path().join(if i % 2 == 0 { "a" } else { "b" });
            std::fs::create_dir_all(&class).map_err(|e| crate::io_err(&class, e))?;
            // Blocks of random colour: a photo-sized JPEG that compresses like one.
            let colors: Vec<[u8; 3]> = (0..48).map(|_| self.rng.random()).collect();
            let img = image::RgbImage::from_fn(480, 360, |x, y| {
                image::Rgb(colors[(y / 60 * 8 + x / 60) as usize % colors.len()])
            });
            let path = class.join(format!("{i}.jpg"));
            img.save(&path)
                .map_err(|e| crate::io_err(&path, std::io::Error::other(e)))?;
        }
        let config = activeshift::ArchConfig::builtin("as-resnet-w32")?;
        let model = Model::synthetic(&config, 1)?;
        let settings = TrainSettings {
            epochs,
            batch: 32,
            ..TrainSettings::default()
        };
        let ms = time_wall(1, || {
            let opts = FolderOptions::for_network(&model.config);
            let data = image_folder::load(dir.path(), &opts, &|_| {})?;
            head::finetune(&model, &data, &settings, |_, _| Ok(()))?;
            Ok(())
        })?;
        self.push(
            case.to_string(),
            "training",
            ms,
            Some((images as f64, "images")),
            format!(
                "{images} JPEGs 480x360 decoded and resized to 224x224, features of each and its \
                 mirror on the CPU engine ({} threads), classifier trained {epochs} epochs; goal \
                 <= 60 s for 200 images x 5 epochs",
                rayon::current_num_threads()
            ),
        );
        Ok(())
    }

    /// Whole-network fine-tuning of w32 at 224x224 on the CPU trainer (frozen statistics, as
    /// `train --from as-resnet-w32 --freeze none` runs it): milliseconds per step of a batch of
    /// 32 random images, random weights of w32's shape; and the PyTorch twin of the same
    /// network and step beside it, built from the same description (its JSON), where
    /// `ACTIVESHIFT_TORCH_PYTHON` names an interpreter with torch.
    fn finetuning_whole(&mut self) -> Result<()> {
        use activeshift::train::{NormMode, TrainSettings, Trainer};
        let case = "finetune_whole_w32_cpu";
        let twin_case = "finetune_whole_w32_torch_twin";
        let batch = if self.quick { 2 } else { 32 };
        let steps = if self.quick { 1 } else { 3 };
        let config = activeshift::ArchConfig::builtin("as-resnet-w32")?;
        if self.wanted(case) {
            let model = Model::synthetic(&config, 2)?;
            let labels: Vec<String> = (0..10).map(|i| format!("class {i}")).collect();
            let settings = TrainSettings {
                batch,
                norm: NormMode::Frozen,
                ..TrainSettings::default()
            };
            let trainer = Trainer::from_model(&model, labels, settings)?;
            let be = activeshift::train::CpuBackend;
            let ms = self.time_session(trainer, be, batch, steps)?;
            self.push(
                case.to_string(),
                "training",
                ms,
                Some((batch as f64, "images")),
                format!(
                    "3x224x224 batch {batch}, the whole of w32 (frozen statistics), CPU trainer \
                     ({} threads)",
                    rayon::current_num_threads()
                ),
            );
        }
        if self.wanted(twin_case) {
            // The twin's network: w32 with the new classifier's 10 classes.
            let mut twin = config.clone();
            twin.classes = 10;
            if let Some(ms) = torch_twin(steps, batch, &twin, true)? {
                let note = format!(
                    "3x224x224 batch {batch}, the whole of w32 (per-channel affine for the \
                     folded BatchNorm), tools/torch_twin (PyTorch, 2 threads)"
                );
                self.push(
                    twin_case.to_string(),
                    "training",
                    ms,
                    Some((batch as f64, "images")),
                    note,
                );
            }
        }
        Ok(())
    }

    /// Milliseconds of each timed SGD step of ASNet-20 16x1 on `batch` random Fashion-MNIST-sized images
    /// in a session on `be`, the loss read after each step (which waits for a device).
    fn time_steps<B: activeshift::train::Backend>(
        &mut self,
        be: B,
        batch: usize,
    ) -> Result<Vec<f64>> {
        use activeshift::train::{TrainSettings, Trainer, fashion_mnist_config};
        let trainer = Trainer::new(
            fashion_mnist_config(16, 1),
            Vec::new(),
            TrainSettings::default(),
        )?;
        let runs = if self.quick { 2 } else { 5 };
        self.time_session(trainer, be, batch, runs)
    }

    /// Milliseconds of each of `runs` timed SGD steps of `trainer`'s network on `batch` random
    /// images in a session on `be`, the loss read after each step (which waits for a device).
    fn time_session<B: activeshift::train::Backend>(
        &mut self,
        trainer: activeshift::train::Trainer,
        be: B,
        batch: usize,
        runs: usize,
    ) -> Result<Vec<f64>> {
        let config = &trainer.config;
        let per = config.in_channels * config.input_size[0] * config.input_size[1];
        let classes = config.classes;
        let input: Vec<f32> = (0..batch * per)
            .map(|_| self.rng.random_range(-1.0..1.0))
            .collect();
        let labels: Vec<u32> = (0..batch).map(|i| (i % classes) as u32).collect();
        let mut session = activeshift::train::Session::new(trainer, be)?;
        time_wall(runs, || {
            session.step_batch(&input, &labels, 0.01)?;
            session.stats()?;
            Ok(())
        })
    }
}

/// Per-step milliseconds of the PyTorch twin (`tools/torch_twin`) training `config`'s network
/// (built from its plan's JSON; `frozen_norm`: per-channel affine layers in place of BatchNorm),
/// run by the interpreter named in `ACTIVESHIFT_TORCH_PYTHON`; `None` when that is not set.
fn torch_twin(
    steps: usize,
    batch: usize,
    config: &activeshift::ArchConfig,
    frozen_norm: bool,
) -> Result<Option<Vec<f64>>> {
    let Some(python) = std::env::var_os("ACTIVESHIFT_TORCH_PYTHON") else {
        return Ok(None);
    };
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tools/torch_twin/train_twin.py"
    );
    let bench_err = |e: String| activeshift::Error::invalid("bench", format!("torch twin: {e}"));
    let plan = tempfile::NamedTempFile::new().map_err(|e| bench_err(e.to_string()))?;
    let json = activeshift::model::Plan::new(config, 1).to_json();
    serde_json::to_writer(plan.as_file(), &json).map_err(|e| bench_err(e.to_string()))?;
    let out = std::process::Command::new(python)
        .args([script, "--per-step", "--steps", &steps.to_string()])
        .args(["--batch", &batch.to_string()])
        .arg("--plan")
        .arg(plan.path())
        .args(frozen_norm.then_some("--frozen-norm"))
        .output()
        .map_err(|e| activeshift::Error::invalid("bench", format!("torch twin: {e}")))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().last().unwrap_or("").to_string();
        return Err(activeshift::Error::invalid(
            "bench",
            format!("torch twin failed: {last}"),
        ));
    }
    let ms: Vec<f64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("step_ms ")?.trim().parse().ok())
        .collect();
    Ok(Some(ms))
}
