//! `activeshift train --images DIR` end to end on folders built here from generated images
//! (three patterns a small network tells apart, at mixed sizes and colours, with junk files and
//! a corrupt image beside them): a new network trained from scratch, and the classifier of a
//! trained model fine-tuned (the embedded Fashion-MNIST model; the authors' w32 with
//! `ACTIVESHIFT_SHARED_DATA`). The models carry the folder's class names; `classify` shows them
//! on both engines.

use crate::common;
use common::{bin, run, tmpdir};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use std::path::{Path, PathBuf};

/// The classes, sorted as the folder names sort.
const CLASSES: [&str; 3] = ["bars", "ring", "stripes"];

/// One generated image of class `class`: horizontal bars, a ring, or vertical stripes, at a
/// random size and colour with noise.
fn pattern(class: usize, rng: &mut StdRng) -> image::RgbImage {
    let (w, h) = (rng.random_range(36..64u32), rng.random_range(36..64u32));
    let fg = [
        rng.random_range(150..=255u8),
        rng.random_range(150..=255u8),
        rng.random_range(150..=255u8),
    ];
    let period = rng.random_range(6..10u32);
    let (cx, cy) = (w as f32 / 2.0, h as f32 / 2.0);
    let radius = w.min(h) as f32 * rng.random_range(0.25..0.4f32);
    image::RgbImage::from_fn(w, h, |x, y| {
        let on = match class {
            0 => (y / (period / 2)).is_multiple_of(2),
            1 => {
                let d = ((x as f32 - cx).powi(2) + (y as f32 - cy).powi(2)).sqrt();
                (d - radius).abs() < 3.0
            }
            _ => (x / (period / 2)).is_multiple_of(2),
        };
        let noise: u8 = rng.random_range(0..40);
        if on {
            image::Rgb(fg.map(|v| v.saturating_sub(noise)))
        } else {
            image::Rgb([noise; 3])
        }
    })
}

/// `DIR/<class>/<n>.png` (some as JPEG) for `per_class` images of each class, plus files that
/// are no images and one that does not decode.
fn make_folder(dir: &Path, per_class: usize, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    for (c, name) in CLASSES.iter().enumerate() {
        let sub = dir.join(name);
        std::fs::create_dir_all(&sub).unwrap();
        for i in 0..per_class {
            let img = pattern(c, &mut rng);
            let path = if i % 4 == 3 {
                sub.join(format!("{i}.jpg"))
            } else {
                sub.join(format!("{i}.png"))
            };
            img.save(&path).unwrap();
        }
    }
    std::fs::write(dir.join(".DS_Store"), b"\0\0\0\x01Bud1").unwrap();
    std::fs::write(dir.join("ring/notes.txt"), b"not an image").unwrap();
    std::fs::write(dir.join("bars/broken.jpg"), b"\xff\xd8\xff\xe0 truncated").unwrap();
}

/// `activeshift train --images IMAGES ARGS -o OUT` (`args` split at spaces) with the cache
/// folder `cache` (and no network for pretrained names): (success, stdout, stderr).
fn train(cache: &Path, images: &Path, args: &str, out: &Path) -> (bool, String, String) {
    run(bin()
        .env("ACTIVESHIFT_CACHE_DIR", cache)
        .env("ACTIVESHIFT_PRETRAINED_URL", "http://127.0.0.1:9")
        .args(["train", "--images"])
        .arg(images)
        .args(args.split_whitespace())
        .arg("-o")
        .arg(out))
}

/// `classify --json --top 1` of `images` with `model` on `backend`: the top label of each.
fn top_labels(model: &Path, images: &[PathBuf], backend: &str) -> Vec<(String, f32)> {
    let (ok, out, err) = run(bin()
        .args([
            "classify",
            "--json",
            "--top",
            "3",
            "--backend",
            backend,
            "--model",
        ])
        .arg(model)
        .args(images));
    assert!(ok, "{backend}: {err}");
    out.lines()
        .map(|l| {
            let v: activeshift::Classification = serde_json::from_str(l).unwrap();
            (v.top[0].label.clone(), v.top[0].prob)
        })
        .collect()
}

/// Fresh generated images of every class (not in the training folder), with their classes.
fn held_out(dir: &Path, per_class: usize) -> Vec<(PathBuf, &'static str)> {
    let mut rng = StdRng::seed_from_u64(99);
    std::fs::create_dir_all(dir).unwrap();
    let mut out = Vec::new();
    for (c, name) in CLASSES.iter().enumerate() {
        for i in 0..per_class {
            let path = dir.join(format!("{name}-{i}.png"));
            pattern(c, &mut rng).save(&path).unwrap();
            out.push((path, *name));
        }
    }
    out
}

/// The training loss of each epoch line `epoch E/N: train loss L ...` in `stderr`.
fn epoch_losses(stderr: &str) -> Vec<f64> {
    stderr
        .lines()
        .filter_map(|l| l.split("train loss ").nth(1))
        .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
        .collect()
}

/// The epoch losses in `stderr`, checked to fall from the first epoch to the last.
fn falling_losses(stderr: &str) -> Vec<f64> {
    let losses = epoch_losses(stderr);
    assert!(losses.len() >= 2, "{stderr}");
    assert!(
        losses[losses.len() - 1] < losses[0],
        "the loss did not fall: {losses:?}"
    );
    losses
}

/// Checks a model trained on the folder: its labels are the folder's classes, the held-out
/// images get their class on the CPU, and the GPU (when there is one) agrees.
fn check_model(model: &Path, dir: &Path, test: &str, min_right: usize) {
    let m = activeshift::Model::load(model).unwrap();
    assert_eq!(m.labels, CLASSES.map(String::from).to_vec());
    let fresh = held_out(&dir.join("fresh"), 4);
    let paths: Vec<PathBuf> = fresh.iter().map(|(p, _)| p.clone()).collect();
    let cpu = top_labels(model, &paths, "cpu");
    let right = cpu
        .iter()
        .zip(&fresh)
        .filter(|((got, _), (_, want))| got == want)
        .count();
    assert!(
        right >= min_right,
        "{test}: {right} of {} fresh images right: {cpu:?}",
        fresh.len()
    );
    if common::gpu(test).is_some() {
        let gpu = top_labels(model, &paths, "gpu");
        for ((a, pa), (b, pb)) in cpu.iter().zip(&gpu) {
            assert_eq!(a, b, "{test}: CPU and GPU top-1 differ");
            assert!((pa - pb).abs() < 1e-3, "{test}: {pa} vs {pb}");
        }
    }
}

#[test]
fn a_new_network_learns_the_folders_classes() {
    let dir = tmpdir("scratch");
    let images = dir.join("images");
    make_folder(&images, 24, 1);
    let model = dir.join("m.safetensors");
    let (ok, out, err) = train(
        &dir.join("cache"),
        &images,
        "--size 32 --arch asnet20-8x1 --epochs 12 --batch 16 --backend cpu",
        &model,
    );
    assert!(ok, "{err}");
    assert!(out.contains("wrote"), "{out}");
    // The corrupt image is reported by path and reason; the junk files are not images.
    assert!(err.contains("broken.jpg"), "{err}");
    assert!(
        !err.contains("notes.txt") && !err.contains(".DS_Store"),
        "{err}"
    );
    assert!(err.contains("3 classes"), "{err}");
    let losses = epoch_losses(&err);
    assert_eq!(losses.len(), 12, "{err}");
    assert!(
        losses[11] < losses[0] * 0.7,
        "the loss did not fall: {losses:?}"
    );
    check_model(&model, &dir, "train_images::a_new_network", 10);
    // A second run reads the decoded images from the cache.
    let again = dir.join("again.safetensors");
    let (ok, _, err) = train(
        &dir.join("cache"),
        &images,
        "--size 32 --arch asnet20-8x1 --epochs 1 --backend cpu",
        &again,
    );
    assert!(ok, "{err}");
    assert!(err.contains("(0 decoded"), "{err}");
    // Resuming the finished run (seed 5, not given again) reads the folder at the run's input
    // with the run's seed: the same split, nothing to train, the same model.
    let seeded = dir.join("seeded.safetensors");
    let args = "--size 32 --arch asnet20-8x1 --epochs 1 --backend cpu";
    let (ok, _, first) = train(
        &dir.join("cache"),
        &images,
        &format!("{args} --seed 5"),
        &seeded,
    );
    assert!(ok, "{first}");
    let before = std::fs::read(&seeded).unwrap();
    let (ok, _, resumed) = train(
        &dir.join("cache"),
        &images,
        &format!("{args} --resume"),
        &seeded,
    );
    assert!(ok, "{resumed}");
    assert!(resumed.contains("nothing to train"), "{resumed}");
    let split = |log: &str| {
        log.lines()
            .find(|l| l.contains("held-out images"))
            .map(String::from)
    };
    assert_eq!(split(&first), split(&resumed), "{first}\n{resumed}");
    assert_eq!(std::fs::read(&seeded).unwrap(), before);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_folder_of_grayscale_images_gets_a_grayscale_network() {
    let dir = tmpdir("gray");
    let images = dir.join("images");
    let mut rng = StdRng::seed_from_u64(3);
    for (c, name) in CLASSES.iter().enumerate() {
        std::fs::create_dir_all(images.join(name)).unwrap();
        for i in 0..4 {
            let img = image::DynamicImage::ImageRgb8(pattern(c, &mut rng)).to_luma8();
            img.save(images.join(format!("{name}/{i}.png"))).unwrap();
        }
    }
    let in_channels = |model: &Path| activeshift::Model::load(model).unwrap().config.in_channels;
    let args = "--size 16 --arch asnet20-4x1 --epochs 1 --batch 4 --backend cpu";
    let gray = dir.join("gray.safetensors");
    let (ok, _, err) = train(&dir.join("cache"), &images, args, &gray);
    assert!(ok, "{err}");
    assert!(err.contains("grayscale input"), "{err}");
    assert_eq!(in_channels(&gray), 1);
    // --rgb asks for three channels all the same.
    let rgb = dir.join("rgb.safetensors");
    let (ok, _, err) = train(&dir.join("cache"), &images, &format!("{args} --rgb"), &rgb);
    assert!(ok, "{err}");
    assert!(!err.contains("grayscale input"), "{err}");
    assert_eq!(in_channels(&rgb), 3);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_embedded_models_classifier_is_fine_tuned_on_a_folder() {
    let dir = tmpdir("finetune");
    let images = dir.join("images");
    make_folder(&images, 12, 2);
    let model = dir.join("ft.safetensors");
    let (ok, out, err) = train(
        &dir.join("cache"),
        &images,
        "--from default --epochs 40 --batch 8 --backend cpu",
        &model,
    );
    assert!(ok, "{err}");
    assert!(out.contains("wrote"), "{out}");
    assert!(err.contains("the rest frozen"), "{err}");
    falling_losses(&err);
    // Every layer but the classifier is the embedded model's.
    let base = activeshift::Model::embedded_default().unwrap();
    let tuned = activeshift::Model::load(&model).unwrap();
    assert_eq!(tuned.config.preprocess, base.config.preprocess);
    for (name, t) in &base.params {
        if !name.starts_with("fc.") {
            assert_eq!(&tuned.params[name], t, "{name} changed");
        }
    }
    assert_eq!(
        tuned.params["fc.weight"].dims,
        vec![3, base.params["fc.weight"].dims[1]]
    );
    check_model(&model, &dir, "train_images::fine_tune_default", 8);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_whole_embedded_model_is_fine_tuned_with_frozen_statistics() {
    let dir = tmpdir("finetune-whole");
    let images = dir.join("images");
    make_folder(&images, 16, 5);
    let model = dir.join("whole.safetensors");
    let (ok, _, err) = train(
        &dir.join("cache"),
        &images,
        "--from default --freeze none --epochs 8 --batch 8 --backend cpu",
        &model,
    );
    assert!(ok, "{err}");
    assert!(
        err.contains("fine-tuning the whole of asnet20-26x1"),
        "{err}"
    );
    assert!(err.contains("learning rate 0.000625, batch 8"), "{err}");
    let losses = epoch_losses(&err);
    assert_eq!(losses.len(), 8, "{err}");
    assert!(losses[7] < losses[0], "the loss did not fall: {losses:?}");
    // Everything trained, the preprocessing is the model's.
    let base = activeshift::Model::embedded_default().unwrap();
    let tuned = activeshift::Model::load(&model).unwrap();
    assert_eq!(tuned.config.preprocess, base.config.preprocess);
    assert_ne!(tuned.params["stem.weight"], base.params["stem.weight"]);
    check_model(&model, &dir, "train_images::fine_tune_whole", 8);
    // The same run on the GPU backend (frozen statistics through the WGSL training kernels):
    // its first epoch's loss as the CPU's.
    if common::gpu("train_images::fine_tune_whole_gpu").is_some() {
        let (ok, _, gerr) = train(
            &dir.join("cache"),
            &images,
            "--from default --freeze none --epochs 8 --batch 8 --backend gpu",
            &dir.join("whole-gpu.safetensors"),
        );
        assert!(ok, "{gerr}");
        let gpu_losses = epoch_losses(&gerr);
        assert!(
            (gpu_losses[0] - losses[0]).abs() < 1e-3 * losses[0].max(1.0),
            "GPU {gpu_losses:?} vs CPU {losses:?}"
        );
    }
    // --freeze stage: the stem and the first two stages stay as trained, the last trains.
    let stage = dir.join("stage.safetensors");
    let (ok, _, err) = train(
        &dir.join("cache"),
        &images,
        "--from default --freeze stage --epochs 2 --batch 8 --backend cpu",
        &stage,
    );
    assert!(ok, "{err}");
    assert!(err.contains("the stem and 6 blocks frozen"), "{err}");
    let staged = activeshift::Model::load(&stage).unwrap();
    for (name, t) in &base.params {
        let block: Option<usize> = name
            .strip_prefix("blocks.")
            .and_then(|r| r.split('.').next()?.parse().ok());
        let frozen = name.starts_with("stem.") || block.is_some_and(|b| b < 6);
        if frozen {
            assert_eq!(&staged.params[name], t, "{name} moved");
        } else if name.ends_with(".weight") && !name.starts_with("fc.") {
            assert_ne!(&staged.params[name], t, "{name} did not train");
        }
    }
    // A learning rate far too high: a clear error, not a model of NaNs.
    let (ok, _, err) = train(
        &dir.join("cache"),
        &images,
        "--from default --freeze none --epochs 2 --batch 8 --lr 50 --backend cpu",
        &dir.join("nan.safetensors"),
    );
    assert!(!ok && err.contains("diverged"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    // --freeze belongs to --from.
    let (ok, _, err) = run(bin()
        .args(["train", "--images"])
        .arg(&images)
        .args(["--freeze", "none", "-o"])
        .arg(dir.join("x.safetensors")));
    assert!(!ok && err.contains("--from"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The authors' w32 (converted from ACTIVESHIFT_SHARED_DATA into a private cache, where
/// `--from as-resnet-w32` finds it) fine-tuned at its own 256 / 224 preprocessing.
#[test]
fn w32_is_fine_tuned_on_a_folder_at_its_own_preprocessing() {
    let Some(shared) = common::shared_data("train_images::w32_is_fine_tuned") else {
        return;
    };
    let dir = tmpdir("finetune-w32");
    let cache = dir.join("cache");
    let (ok, _, err) = run(bin().env("ACTIVESHIFT_CACHE_DIR", &cache).args([
        "import-caffe",
        &shared.caffemodel(),
        "--install",
    ]));
    assert!(ok, "{err}");
    let images = dir.join("images");
    make_folder(&images, 6, 3);
    let model = dir.join("w32-ft.safetensors");
    let (ok, _, err) = train(
        &cache,
        &images,
        "--from as-resnet-w32 --epochs 30 --batch 8 --backend cpu",
        &model,
    );
    assert!(ok, "{err}");
    assert!(err.contains("at 3x224x224"), "{err}");
    falling_losses(&err);
    let tuned = activeshift::Model::load(&model).unwrap();
    assert_eq!(tuned.config.preprocess.resize_short, Some(256));
    check_model(&model, &dir, "train_images::w32_fine_tuned", 9);
    // The whole of w32 at 224x224: a few steps run, export and classify on both engines.
    let whole = dir.join("w32-whole.safetensors");
    let (ok, _, err) = train(
        &cache,
        &images,
        "--from as-resnet-w32 --freeze none --epochs 2 --batch 4 --backend cpu",
        &whole,
    );
    assert!(ok, "{err}");
    assert_eq!(epoch_losses(&err).len(), 2, "{err}");
    let m = activeshift::Model::load(&whole).unwrap();
    assert_eq!(m.labels, CLASSES.map(String::from).to_vec());
    let fresh = held_out(&dir.join("fresh-whole"), 1);
    let paths: Vec<PathBuf> = fresh.iter().map(|(p, _)| p.clone()).collect();
    let cpu = top_labels(&whole, &paths, "cpu");
    if common::gpu("train_images::w32_whole").is_some() {
        let gpu = top_labels(&whole, &paths, "gpu");
        for ((a, pa), (b, pb)) in cpu.iter().zip(&gpu) {
            assert_eq!(a, b);
            assert!((pa - pb).abs() < 1e-3, "{pa} vs {pb}");
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn folder_mistakes_are_clear_errors_before_any_work() {
    let dir = tmpdir("mistakes");
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let one = dir.join("one");
    make_folder(&one, 2, 4);
    std::fs::remove_dir_all(one.join("ring")).unwrap();
    std::fs::remove_dir_all(one.join("stripes")).unwrap();
    for (folder, want) in [(&empty, "is empty"), (&one, "one class")] {
        let (ok, _, err) = run(bin()
            .env("ACTIVESHIFT_CACHE_DIR", dir.join("cache"))
            .args(["train", "--images"])
            .arg(folder)
            .args(["--size", "32", "-o"])
            .arg(dir.join("m.safetensors")));
        assert!(!ok && err.starts_with("error: "), "{err}");
        assert!(err.to_lowercase().contains(want), "{want}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    // --from needs a folder; --size belongs to --images.
    let (ok, _, err) = run(bin().args(["train", "--from", "default", "-o", "x.safetensors"]));
    assert!(!ok && err.contains("--images"), "{err}");
    let (ok, _, err) = run(bin()
        .args(["train", "--size", "32", "-o"])
        .arg(dir.join("x.st")));
    assert!(!ok && err.contains("--images"), "{err}");
    assert!(!dir.join("m.safetensors").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}
