//! `activeshift eval` end to end: top-1 and top-5 over folders of images in both layouts, the
//! bundled Fashion-MNIST samples, an empty test set.

mod common;
use common::*;

use std::path::{Path, PathBuf};

/// The authors' w32 converted into `dir` (labels from the list compiled into activeshift).
fn import_w32(dir: &Path, shared: &SharedData) -> PathBuf {
    let model = dir.join("w32.safetensors");
    let caffemodel = shared.caffemodel();
    let (ok, _, err) = run(bin().args(["import-caffe", &caffemodel, "-o"]).arg(&model));
    assert!(ok, "{err}");
    model
}

fn eval_images(model: &Path, images: &Path, backend: &str) -> serde_json::Value {
    let (ok, out, err) = run(bin()
        .args([
            "eval",
            "--json",
            "--batch",
            "2",
            "--backend",
            backend,
            "--model",
        ])
        .arg(model)
        .arg("--images")
        .arg(images));
    assert!(ok, "{backend}: {err}");
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// `eval --images` on an ImageNet-layout folder and on a flat folder, on both engines. The
/// one photo is filed under classes chosen against w32's known ranking of it (285 Egyptian cat
/// first, then 281 tabby, 282 tiger cat, 284 Siamese, 151 Chihuahua): a top-1 hit, a top-5
/// hit, and misses.
#[test]
fn eval_images_counts_top1_and_top5_in_both_layouts() {
    let Some(shared) = shared_data("cli_eval::eval_images_counts_top1_and_top5_in_both_layouts")
    else {
        return;
    };
    let dir = tmpdir("eval-images");
    let model = import_w32(&dir, &shared);
    let cat = std::fs::read(shared.cat()).unwrap();
    let tree = dir.join("val");
    // wnids: 285 Egyptian cat, 281 tabby, 0 tench.
    for (wnid, n) in [("n02124075", 1), ("n02123045", 2), ("n01440764", 2)] {
        std::fs::create_dir_all(tree.join(wnid)).unwrap();
        for i in 0..n {
            std::fs::write(tree.join(wnid).join(format!("img{i}.JPEG")), &cat).unwrap();
        }
    }
    std::fs::write(tree.join("n01440764/notes.txt"), b"not an image").unwrap();
    let flat = dir.join("flat");
    std::fs::create_dir_all(&flat).unwrap();
    for name in ["285_a.jpg", "n02123159_b.jpg", "151-c.jpg", "7.jpg"] {
        std::fs::write(flat.join(name), &cat).unwrap();
    }
    let mut backends = vec!["cpu"];
    if common::gpu("cli eval_images_counts_top1_and_top5_in_both_layouts").is_some() {
        backends.push("gpu");
    }
    for backend in backends {
        let v = eval_images(&model, &tree, backend);
        assert_eq!(v["count"], 5, "{v}");
        assert_eq!(v["top1_correct"], 1, "{v}");
        assert_eq!(v["top5_correct"], 3, "{v}");
        let v = eval_images(&model, &flat, backend);
        assert_eq!(v["count"], 4, "{v}");
        assert_eq!(v["top1_correct"], 1, "{v}");
        assert_eq!(v["top5_correct"], 3, "{v}");
        assert_eq!(v["model"], "as-resnet-w32");
    }
    // The text form.
    let (ok, out, err) = run(bin()
        .args(["eval", "--backend", "cpu", "--model"])
        .arg(&model)
        .arg("--images")
        .arg(&tree));
    assert!(ok, "{err}");
    assert!(
        out.contains("top-1 1/5 = 20.00%, top-5 3/5 = 60.00%"),
        "{out}"
    );
    // A file whose class cannot be told, and a class the model does not have.
    std::fs::write(flat.join("cat.jpg"), &cat).unwrap();
    let (ok, _, err) = run(bin()
        .args(["eval", "--model"])
        .arg(&model)
        .arg("--images")
        .arg(&flat));
    assert!(
        !ok && err.contains("cat.jpg: cannot tell its class"),
        "{err}"
    );
    let (ok, _, err) = run(bin().args(["eval", "--images"]).arg(&tree));
    assert!(
        !ok && err.contains("but model `asnet20-26x1` has 10 classes"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The shipped model on the ten samples, filed by class index in a flat folder.
#[test]
fn eval_images_on_the_fashion_samples() {
    let dir = tmpdir("eval-fashion");
    let samples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/images");
    let labels = activeshift::data::LABELS;
    for (class, label) in labels.iter().enumerate() {
        let file = format!("{}-0.png", label.to_lowercase().replace(['/', ' '], "-"));
        std::fs::copy(samples.join(&file), dir.join(format!("{class}_{file}"))).unwrap();
    }
    let (ok, out, err) = run(bin()
        .args([
            "eval",
            "--json",
            "--backend",
            "cpu",
            "--batch",
            "3",
            "--images",
        ])
        .arg(&dir));
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    // The coat is taken for a shirt, and is not among the top five either (docs/training.md); the other
    // nine are right.
    assert_eq!(
        (v["count"].as_u64(), v["top1_correct"].as_u64()),
        (Some(10), Some(9)),
        "{v}"
    );
    assert_eq!(v["top5_correct"], 9, "{v}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn eval_with_an_empty_test_set_is_an_error() {
    let dir = tmpdir("eval-empty");
    synthetic_fashion(&dir, 20, 0);
    let (code, out, err) =
        run_code(
            bin()
                .env("ACTIVESHIFT_DATA", &dir)
                .args(["eval", "--backend", "cpu"]),
        );
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("test set holds no images"), "{err}");
    assert!(!out.contains("NaN"), "{out}");
    std::fs::remove_dir_all(&dir).unwrap();
}
