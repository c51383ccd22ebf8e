//! `activeshift eval` end to end: top-1 and top-5 over folders of images in both layouts, the
//! bundled Fashion-MNIST samples, folders named by the model's labels (per-class accuracy and
//! the confusion matrix checked against `classify`), folder names that are no class, an empty
//! test set.

use crate::common;
use common::*;

use std::collections::{BTreeMap, BTreeSet};
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
    let samples = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/..")).join("examples/images");
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

fn fashion_labels() -> Vec<String> {
    activeshift::data::LABELS
        .iter()
        .map(|l| l.to_string())
        .collect()
}

/// The shipped samples: (class, label, file), one Fashion-MNIST test image per class.
fn fashion_samples() -> Vec<(usize, String, PathBuf)> {
    let samples = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/..")).join("examples/images");
    activeshift::data::LABELS
        .iter()
        .enumerate()
        .map(|(class, label)| {
            let file = format!("{}-0.png", label.to_lowercase().replace(['/', ' '], "-"));
            (class, label.to_string(), samples.join(file))
        })
        .collect()
}

/// What `classify --json --top 5` on `backend` says of each of `files`: the five best classes,
/// best first.
fn classify_top5(
    model: Option<&Path>,
    files: &[PathBuf],
    backend: &str,
) -> BTreeMap<PathBuf, Vec<usize>> {
    let mut cmd = bin();
    cmd.args(["classify", "--json", "--top", "5", "--backend", backend]);
    if let Some(m) = model {
        cmd.arg("--model").arg(m);
    }
    let (ok, out, err) = run(cmd.args(files));
    assert!(ok, "{backend}: {err}");
    out.lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let top = v["top"].as_array().unwrap();
            let classes = top.iter().map(|t| t["class"].as_u64().unwrap() as usize);
            (
                PathBuf::from(v["image"].as_str().unwrap()),
                classes.collect(),
            )
        })
        .collect()
}

/// Copy `file` into `dir/folder/` as `name`.
fn file_under(dir: &Path, folder: &str, file: &Path, name: &str) {
    std::fs::create_dir_all(dir.join(folder)).unwrap();
    std::fs::copy(file, dir.join(folder).join(name)).unwrap();
}

/// Check `eval --json`'s counts, per-class lines and confusion matrix against `truth` (the
/// class each image was filed under) and `ranked` (classify's five best classes of each sample).
fn check_against_classify(
    v: &serde_json::Value,
    truth: &[(PathBuf, usize)],
    ranked: &BTreeMap<PathBuf, Vec<usize>>,
    labels: &[String],
) {
    let best = |p: &PathBuf| ranked[p].clone();
    let top1 = truth.iter().filter(|(p, c)| best(p)[0] == *c).count();
    let top5 = truth.iter().filter(|(p, c)| best(p).contains(c)).count();
    assert_eq!(v["count"], truth.len(), "{v}");
    assert_eq!(v["top1_correct"], top1, "{v}");
    assert_eq!(v["top5_correct"], top5, "{v}");
    // Per class, ascending: images and top-1 hits of each class images were filed under.
    let mut per_class: BTreeMap<usize, (usize, usize)> = BTreeMap::new();
    for (p, c) in truth {
        let e = per_class.entry(*c).or_default();
        e.0 += 1;
        e.1 += usize::from(best(p)[0] == *c);
    }
    let got = v["per_class"].as_array().unwrap();
    assert_eq!(got.len(), per_class.len(), "{v}");
    for (g, (&c, &(n, k))) in got.iter().zip(&per_class) {
        assert_eq!(g["class"], c, "{g}");
        assert_eq!(g["label"], labels[c], "{g}");
        assert_eq!(g["images"], n, "{g}");
        assert_eq!(g["top1_correct"], k, "{g}");
        assert!(
            (g["top1"].as_f64().unwrap() - k as f64 / n as f64).abs() < 1e-12,
            "{g}"
        );
    }
    // The matrix: over every class that is a true or a predicted one, rows true, columns
    // predicted.
    let classes: Vec<usize> = truth
        .iter()
        .flat_map(|(p, c)| [*c, best(p)[0]])
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut counts = vec![vec![0usize; classes.len()]; classes.len()];
    let at = |c: usize| classes.iter().position(|&x| x == c).unwrap();
    for (p, c) in truth {
        counts[at(*c)][at(best(p)[0])] += 1;
    }
    assert_eq!(v["confusion"]["classes"], serde_json::json!(classes), "{v}");
    assert_eq!(v["confusion"]["counts"], serde_json::json!(counts), "{v}");
}

/// `eval --images` on folders named by the model's labels (exactly, and loosely where a label
/// cannot be a folder name), by normalized labels, by class index, and on a train/val layout:
/// counts, per-class accuracy and the confusion matrix agree with `classify` of the same files,
/// on both engines.
#[test]
fn eval_on_class_name_folders_agrees_with_classify() {
    let dir = tmpdir("eval-class-folders");
    let samples = fashion_samples();
    let files: Vec<PathBuf> = samples.iter().map(|s| s.2.clone()).collect();
    // Every sample under its own class, and the sneaker and the bag once more under classes
    // they are not (Sandal, Coat), so that the matrix has cells off its diagonal whatever the
    // model makes of the samples.
    let sneaker = files[7].clone();
    let bag = files[8].clone();
    let mut filed: Vec<(usize, PathBuf)> = samples.iter().map(|s| (s.0, s.2.clone())).collect();
    filed.push((5, sneaker));
    filed.push((4, bag));
    // Three ways to name the folders: the label itself (`T-shirt/top` cannot be a folder
    // name: `T-shirt_top`), the label in lower case with `-` for every other character, the
    // class index.
    let by_label = |c: usize| {
        let l = activeshift::data::LABELS[c];
        if l.contains('/') {
            l.replace('/', "_")
        } else {
            l.to_string()
        }
    };
    let loose = |c: usize| {
        activeshift::data::LABELS[c]
            .to_lowercase()
            .replace(['/', ' '], "-")
    };
    let index = |c: usize| c.to_string();
    let namings: [(&str, &dyn Fn(usize) -> String); 3] =
        [("label", &by_label), ("loose", &loose), ("index", &index)];
    let mut trees = Vec::new();
    for (name, naming) in namings {
        let tree = dir.join(name);
        let mut truth = Vec::new();
        for (i, (class, file)) in filed.iter().enumerate() {
            let folder = naming(*class);
            let shown = format!("{i}.png");
            file_under(&tree, &folder, file, &shown);
            truth.push((tree.join(&folder).join(&shown), file.clone(), *class));
        }
        // Files that are not images, hidden files and folders are passed over.
        std::fs::write(tree.join(naming(0)).join("notes.txt"), b"not an image").unwrap();
        std::fs::write(tree.join(naming(0)).join(".hidden.png"), b"not an image").unwrap();
        std::fs::create_dir_all(tree.join(".cache")).unwrap();
        trees.push((tree, truth));
    }
    // `DIR/train/<class>` beside `DIR/val/<class>`: only `val` is evaluated.
    let split = dir.join("split");
    let mut val_truth = Vec::new();
    for (class, _, file) in &samples {
        file_under(
            &split,
            &format!("train/{}", by_label(*class)),
            file,
            "a.png",
        );
        if *class % 3 == 0 {
            let folder = by_label(*class);
            file_under(&split.join("val"), &folder, file, "b.png");
            val_truth.push((
                split.join("val").join(folder).join("b.png"),
                file.clone(),
                *class,
            ));
        }
    }
    trees.push((split.clone(), val_truth));

    let mut backends = vec!["cpu"];
    if common::gpu("cli eval_on_class_name_folders_agrees_with_classify").is_some() {
        backends.push("gpu");
    }
    for backend in backends {
        let ranked = classify_top5(None, &files, backend);
        assert_eq!(ranked.len(), 10, "{ranked:?}");
        for (tree, truth) in &trees {
            let (ok, out, err) = run(bin()
                .args([
                    "eval",
                    "--json",
                    "--batch",
                    "3",
                    "--backend",
                    backend,
                    "--images",
                ])
                .arg(tree));
            assert!(ok, "{backend} {}: {err}", tree.display());
            let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
            // Each copy is ranked as classify ranks the sample it copies.
            let mut by_copy = BTreeMap::new();
            let mut filed_as = Vec::new();
            for (copy, sample, class) in truth {
                by_copy.insert(copy.clone(), ranked[sample].clone());
                filed_as.push((copy.clone(), *class));
            }
            check_against_classify(&v, &filed_as, &by_copy, &fashion_labels());
            assert_eq!(v["images"], tree.display().to_string(), "{v}");
            let folder = if tree == &split {
                split.join("val")
            } else {
                tree.clone()
            };
            assert_eq!(v["folder"], folder.display().to_string(), "{v}");
            assert_eq!(v["model"], "asnet20-26x1", "{v}");
        }
    }

    // The text form: the summary line, one line per class, the matrix with a row per class.
    let (tree, truth) = &trees[0];
    let (ok, out, err) = run(bin()
        .args(["eval", "--backend", "cpu", "--images"])
        .arg(tree));
    assert!(ok, "{err}");
    let ranked = classify_top5(None, &files, "cpu");
    let top1 = truth.iter().filter(|(_, s, c)| ranked[s][0] == *c).count();
    let summary = format!("top-1 {top1}/12 = {:.2}%", top1 as f64 / 12.0 * 100.0);
    assert!(out.lines().next().unwrap().contains(&summary), "{out}");
    assert!(out.contains("\nper class (top-1):\n"), "{out}");
    let sandal_hits =
        usize::from(ranked[&files[5]][0] == 5) + usize::from(ranked[&files[7]][0] == 5);
    assert!(
        out.lines().any(|l| l.split_whitespace().collect::<Vec<_>>()
            == [
                "5",
                &format!("{sandal_hits}/2"),
                &format!("{:.2}%", sandal_hits as f64 * 50.0),
                "Sandal"
            ]),
        "{out}"
    );
    assert!(
        out.contains("confusion (rows: true class, columns: predicted class, . = 0):"),
        "{out}"
    );
    let rows = out
        .lines()
        .skip_while(|l| !l.starts_with("confusion"))
        .skip(2)
        .count();
    let v = {
        let (_, out, _) = run(bin()
            .args(["eval", "--json", "--backend", "cpu", "--images"])
            .arg(tree));
        serde_json::from_str::<serde_json::Value>(out.trim()).unwrap()
    };
    assert_eq!(
        rows,
        v["confusion"]["classes"].as_array().unwrap().len(),
        "{out}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A folder name that is no class of the model is a one-line error naming the folder (and the
/// closest labels); a name that several labels match loosely is an error naming them; an exact
/// label still wins.
#[test]
fn eval_folder_names_that_are_no_class_or_ambiguous_are_errors() {
    let dir = tmpdir("eval-bad-folders");
    let samples = fashion_samples();
    let tree = dir.join("typo");
    file_under(&tree, "Sneaker", &samples[7].2, "a.png");
    file_under(&tree, "snekers", &samples[7].2, "b.png");
    let (code, out, err) = run_code(
        bin()
            .args(["eval", "--backend", "cpu", "--images"])
            .arg(&tree),
    );
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    let folder = tree.join("snekers").display().to_string();
    assert!(
        err.starts_with(&format!("error: {folder}: not a class of the model")),
        "{err}"
    );
    assert!(err.contains("one of its 10 labels"), "{err}");
    assert!(err.contains("closest: `Sneaker` (7)"), "{err}");

    // A model whose Shirt is relabelled `t-shirt top`: `T-shirt_top` now matches two labels
    // loosely; `t-shirt top` is one of them exactly.
    let mut model = activeshift::Model::embedded_default().unwrap();
    model.labels[6] = "t-shirt top".into();
    let file = dir.join("relabelled.safetensors");
    model.save(&file, false).unwrap();
    let tree = dir.join("ambiguous");
    file_under(&tree, "T-shirt_top", &samples[0].2, "a.png");
    let (code, out, err) = run_code(
        bin()
            .args(["eval", "--backend", "cpu", "--model"])
            .arg(&file)
            .arg("--images")
            .arg(&tree),
    );
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    let folder = tree.join("T-shirt_top").display().to_string();
    assert!(
        err.starts_with(&format!("error: {folder}: ambiguous")),
        "{err}"
    );
    assert!(
        err.contains("`T-shirt/top` (0), `t-shirt top` (6)"),
        "{err}"
    );
    std::fs::rename(tree.join("T-shirt_top"), tree.join("t-shirt top")).unwrap();
    let (ok, out, err) = run(bin()
        .args(["eval", "--json", "--backend", "cpu", "--model"])
        .arg(&file)
        .arg("--images")
        .arg(&tree));
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["per_class"][0]["class"], 6, "{v}");
    assert_eq!(v["per_class"][0]["label"], "t-shirt top", "{v}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// More than 20 classes: a 30-class model (random weights, labels `class 0` ... `class 29`) on
/// folders `class_0` ... `class_24` of the samples. The JSON matrix still has every class in
/// play; the text lists the per-class lines and the most confused pairs instead of a matrix.
/// Both engines, against `classify`.
#[test]
fn eval_with_many_classes_lists_the_most_confused_pairs() {
    let dir = tmpdir("eval-many-classes");
    let config = activeshift::model::ArchConfig::asnet20(4, 1, 1, 28, 30);
    let model = activeshift::Model::synthetic(&config, 7).unwrap();
    let labels = model.labels.clone();
    assert_eq!(labels[29], "class 29");
    let file = dir.join("thirty.safetensors");
    model.save(&file, false).unwrap();
    let samples = fashion_samples();
    let files: Vec<PathBuf> = samples.iter().map(|s| s.2.clone()).collect();
    let tree = dir.join("images");
    let mut truth = Vec::new();
    // One to three copies per class, so that pairs differ in count.
    for class in 0..25 {
        let sample = &files[class % files.len()];
        for copy in 0..1 + class % 3 {
            let name = format!("{copy}.png");
            file_under(&tree, &format!("class_{class}"), sample, &name);
            truth.push((
                tree.join(format!("class_{class}")).join(name),
                sample.clone(),
                class,
            ));
        }
    }
    let mut backends = vec!["cpu"];
    if common::gpu("cli eval_with_many_classes_lists_the_most_confused_pairs").is_some() {
        backends.push("gpu");
    }
    for backend in backends {
        let ranked = classify_top5(Some(&file), &files, backend);
        let by_copy: BTreeMap<PathBuf, Vec<usize>> = truth
            .iter()
            .map(|(copy, sample, _)| (copy.clone(), ranked[sample].clone()))
            .collect();
        let filed_as: Vec<(PathBuf, usize)> = truth
            .iter()
            .map(|(copy, _, c)| (copy.clone(), *c))
            .collect();
        let (ok, out, err) = run(bin()
            .args(["eval", "--json", "--backend", backend, "--model"])
            .arg(&file)
            .arg("--images")
            .arg(&tree));
        assert!(ok, "{backend}: {err}");
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        check_against_classify(&v, &filed_as, &by_copy, &labels);

        let (ok, out, err) = run(bin()
            .args(["eval", "--backend", backend, "--model"])
            .arg(&file)
            .arg("--images")
            .arg(&tree));
        assert!(ok, "{backend}: {err}");
        assert!(!out.contains("confusion ("), "{out}");
        let per_class = out
            .lines()
            .skip_while(|l| !l.starts_with("per class"))
            .skip(1)
            .take_while(|l| l.starts_with(' '))
            .count();
        assert_eq!(per_class, 25, "{out}");
        // The wrong (true, predicted) pairs, most images first, then by class.
        let mut wrong: BTreeMap<(usize, usize), usize> = BTreeMap::new();
        for (_, sample, class) in &truth {
            let p = ranked[sample][0];
            if p != *class {
                *wrong.entry((*class, p)).or_default() += 1;
            }
        }
        let mut wrong: Vec<((usize, usize), usize)> = wrong.into_iter().collect();
        wrong.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        wrong.truncate(20);
        let classes = v["confusion"]["classes"].as_array().unwrap().len();
        let listed: Vec<&str> = out
            .lines()
            .skip_while(|l| !l.starts_with("most confused"))
            .collect();
        assert!(
            listed[0].starts_with(&format!("most confused ({classes} classes")),
            "{out}"
        );
        let expected: Vec<String> = wrong
            .iter()
            .map(|((t, p), n)| format!("{n:>5}  {t} class {t} -> {p} class {p}"))
            .collect();
        assert_eq!(
            listed[1..]
                .iter()
                .map(|l| l.trim_start())
                .collect::<Vec<_>>(),
            expected.iter().map(|l| l.trim_start()).collect::<Vec<_>>(),
            "{out}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
