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
            if let Some(ms) = torch_twin(if self.quick { 2 } else { 5 }, batch)? {
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
    /// `train --from as-resnet-w32 --freeze none` runs it): milliseconds per step of a small
    /// batch of random images, random weights of w32's shape.
    fn finetuning_whole(&mut self) -> Result<()> {
        use activeshift::train::{NormMode, TrainSettings, Trainer};
        let case = "finetune_whole_w32_cpu";
        if !self.wanted(case) {
            return Ok(());
        }
        let batch = if self.quick { 2 } else { 8 };
        let config = activeshift::ArchConfig::builtin("as-resnet-w32")?;
        let model = Model::synthetic(&config, 2)?;
        let labels: Vec<String> = (0..10).map(|i| format!("class {i}")).collect();
        let settings = TrainSettings {
            batch,
            norm: NormMode::Frozen,
            ..TrainSettings::default()
        };
        let trainer = Trainer::from_model(&model, labels, settings)?;
        let be = activeshift::train::CpuBackend;
        let ms = self.time_session(trainer, be, batch, if self.quick { 1 } else { 3 })?;
        self.push(
            case.to_string(),
            "training",
            ms,
            Some((batch as f64, "images")),
            format!(
                "3x224x224 batch {batch}, the whole of w32 (frozen statistics), CPU trainer ({} \
                 threads)",
                rayon::current_num_threads()
            ),
        );
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

/// Per-step milliseconds of the PyTorch twin of the CPU trainer (`tools/torch_twin`), run by
/// the interpreter named in `ACTIVESHIFT_TORCH_PYTHON`; `None` when that is not set.
fn torch_twin(steps: usize, batch: usize) -> Result<Option<Vec<f64>>> {
    let Some(python) = std::env::var_os("ACTIVESHIFT_TORCH_PYTHON") else {
        return Ok(None);
    };
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tools/torch_twin/train_twin.py"
    );
    let out = std::process::Command::new(python)
        .args([script, "--per-step", "--steps", &steps.to_string()])
        .args(["--batch", &batch.to_string()])
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
