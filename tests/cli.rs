//! The `activeshift` program end to end: import the authors' weights, classify, errors.

mod common;
use common::{bin, run, tmpdir};

use std::path::{Path, PathBuf};
use std::process::Command;

const SHARED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data");

#[test]
fn info_prints_parameter_counts_of_every_builtin() {
    for (name, count) in [("asnet20-16x1", "35386"), ("as-resnet-w32", "901256")] {
        let (ok, out, err) = run(bin().args(["info", "--arch", name]));
        assert!(ok, "{err}");
        assert!(out.contains(&format!("parameters: {count}")), "{out}");
    }
    for name in activeshift::model::config::BUILTIN {
        let (ok, out, err) = run(bin().args(["info", "--arch", name]));
        assert!(ok && out.contains("parameters: "), "{name}: {out}{err}");
    }
    let (ok, _, err) = run(bin().args(["info", "--arch", "resnet50"]));
    assert!(
        !ok && err.starts_with("error: ") && err.contains("unknown architecture"),
        "{err}"
    );
}

#[test]
fn import_then_classify_the_cat() {
    let dir = tmpdir("cat");
    let model = dir.join("w32.safetensors");
    let caffemodel = format!("{SHARED}/pretrained/AS-ResNet-w32.caffemodel");
    let (ok, out, err) = run(bin().args(["import-caffe", &caffemodel, "-o"]).arg(&model));
    assert!(ok, "{err}");
    assert!(out.contains("as-resnet-w32, 901256 parameters"), "{out}");
    // Never overwrite silently.
    let (ok, _, err) = run(bin().args(["import-caffe", &caffemodel, "-o"]).arg(&model));
    assert!(!ok && err.contains("file exists"), "{err}");

    let cat = format!("{SHARED}/images/cat.jpg");
    let mut backends = vec!["cpu"];
    if common::gpu("cli import_then_classify_the_cat").is_some() {
        backends.push("gpu");
    }
    for backend in backends {
        let (ok, out, err) = run(bin()
            .args(["classify", "--json", "--backend", backend, "--model"])
            .arg(&model)
            .arg(&cat));
        assert!(ok, "{backend}: {err}");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 1, "{out}");
        let v: activeshift::Classification = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(v.image.as_deref(), Some(cat.as_str()));
        assert_eq!(v.model, "as-resnet-w32");
        assert_eq!(v.top.len(), 5);
        assert_eq!(
            (v.top[0].class, v.top[0].label.as_str()),
            (285, "Egyptian cat"),
            "{backend}"
        );
        assert!(
            (v.top[0].prob - 0.251).abs() < 0.02,
            "{backend}: {}",
            v.top[0].prob
        );
        if backend == "cpu" {
            assert_eq!(v.backend, "cpu");
        }
    }

    // A file that is not an image: one clear line, non-zero exit, no panic; good images still
    // get their result.
    let (ok, out, err) = run(bin()
        .args(["classify", "--backend", "cpu", "--model"])
        .arg(&model)
        .arg(&cat)
        .arg(&caffemodel));
    assert!(!ok);
    assert!(out.contains("Egyptian cat"), "{out}");
    assert!(
        err.contains("AS-ResNet-w32.caffemodel: invalid image"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_file_that_is_not_a_model_is_a_clear_error() {
    let cat = format!("{SHARED}/images/cat.jpg");
    let (ok, _, err) = run(bin().args(["classify", "--model", &cat, &cat]));
    assert!(!ok);
    assert!(err.starts_with("error: invalid safetensors"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    let dir = tmpdir("not-a-model");
    let (ok, _, err) = run(bin()
        .args(["import-caffe", &cat, "-o"])
        .arg(dir.join("x.safetensors")));
    assert!(!ok && err.starts_with("error: invalid caffemodel"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_embedded_default_model_classifies_the_samples() {
    // No --model: the shipped Fashion-MNIST ASNet-20 16x1 (93.53% on the test split).
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/images");
    let mut images: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    images.sort();
    assert_eq!(images.len(), 10);
    let (ok, out, err) = run(bin()
        .args(["classify", "--json", "--backend", "cpu"])
        .args(&images));
    assert!(ok, "{err}");
    let mut correct = 0;
    for line in out.lines() {
        let v: activeshift::Classification = serde_json::from_str(line).unwrap();
        assert_eq!(v.model, "asnet20-16x1");
        // file names are the class label, lower case, '/' and ' ' as '-', then -N.png
        let file = v
            .image
            .as_deref()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap()
            .to_string();
        let label = v.top[0].label.to_lowercase().replace(['/', ' '], "-");
        if file.starts_with(&format!("{label}-")) {
            correct += 1;
        }
    }
    assert!(correct >= 8, "only {correct} of 10 samples right:\n{out}");
}

use common::synthetic_fashion;

#[test]
fn a_killed_training_run_resumes_into_a_valid_model() {
    let dir = tmpdir("resume");
    synthetic_fashion(&dir, 400, 100);
    let model = dir.join("m.safetensors");
    let ckpt = dir.join("m.ckpt");
    let train = |resume: bool| {
        let mut cmd = bin();
        cmd.env("ACTIVESHIFT_DATA", &dir)
            .args([
                "train",
                "--epochs",
                "3",
                "--batch",
                "16",
                "--checkpoint-every",
                "1",
            ])
            .arg("--no-augment")
            .arg("--checkpoint")
            .arg(&ckpt)
            .arg("-o")
            .arg(&model);
        if resume {
            // No --force: resuming rewrites the run's own output.
            cmd.arg("--resume");
        } else {
            cmd.arg("--force");
        }
        cmd
    };
    // Start, wait for the first checkpoint, kill mid-epoch.
    let mut child = train(false)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while !ckpt.exists() && start.elapsed().as_secs() < 120 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(ckpt.exists(), "no checkpoint within 2 minutes");
    // Whatever moment the kill hit, the checkpoint is whole (written to a temporary file, then
    // renamed) and no temporary file is left behind.
    activeshift::train::Trainer::load_checkpoint(&ckpt).unwrap();
    // Resume to the end: a valid model that learned the synthetic task.
    let (ok, out, err) = run(&mut train(true));
    assert!(ok, "{err}");
    assert!(err.contains("resuming"), "{err}");
    assert!(out.contains("wrote"), "{out}");
    let m = activeshift::Model::load(&model).unwrap();
    assert_eq!(m.config.name, "asnet20-16x1");
    let (ok, out, err) = run(bin()
        .env("ACTIVESHIFT_DATA", &dir)
        .args(["eval", "--backend", "cpu", "--json", "--model"])
        .arg(&model));
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert!(v["accuracy"].as_f64().unwrap() > 0.5, "{out}");
    let leftovers: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_depthwise_block_trains_on_the_gpu_backend() {
    let dir = tmpdir("depthwise-gpu");
    synthetic_fashion(&dir, 300, 50);
    // The depthwise block trains on the GPU backend too, into a model that loads.
    if common::gpu("cli depthwise on the GPU backend").is_some() {
        let (ok, _, err) = run(bin()
            .env("ACTIVESHIFT_DATA", &dir)
            .args([
                "train",
                "--block",
                "depthwise",
                "--backend",
                "gpu",
                "--epochs",
                "1",
            ])
            .args(["--batch", "16", "--limit", "2", "-o"])
            .arg(dir.join("dw.safetensors")));
        assert!(ok, "{err}");
        let model = activeshift::Model::load(dir.join("dw.safetensors")).unwrap();
        assert_eq!(model.config.block, activeshift::model::BlockKind::Depthwise);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `bench --json` prints one JSON document naming the adapter, the cases run and every ratio
/// (here only the cheap cases: `--filter` keeps the test short; the ratios whose cases did not
/// run are null).
#[test]
fn bench_json_names_the_adapter_cases_and_ratios() {
    if common::gpu("bench_json_names_the_adapter_cases_and_ratios").is_none() {
        return;
    }
    let dir = tmpdir("bench");
    let md = dir.join("BENCH.md");
    let (ok, out, err) = run(bin().args([
        "bench",
        "--json",
        "--quick",
        "--filter",
        "asl_forward",
        "--markdown",
        md.to_str().unwrap(),
    ]));
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("one JSON document");
    assert!(
        v["adapter"].as_str().is_some_and(|a| !a.is_empty()),
        "{out}"
    );
    assert!(v["backend"].is_string() && v["driver"].is_string(), "{out}");
    let cases = v["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 1, "{out}");
    assert_eq!(cases[0]["name"], "asl_forward");
    assert!(
        cases[0]["median_ms"].as_f64().is_some_and(|m| m > 0.0),
        "{out}"
    );
    for r in [
        "asl_forward_vs_copy",
        "fused_block_vs_plain_1x1",
        "asl_block_vs_dw_block",
        "gemm_tiled_vs_naive",
    ] {
        assert!(v["ratios"][r].is_object(), "ratio {r} missing: {out}");
    }
    let text = std::fs::read_to_string(&md).unwrap();
    assert!(text.contains("| `asl_forward` |"), "{text}");
    // The picture beside it, linked from it.
    let svg = std::fs::read_to_string(dir.join("BENCH.svg")).expect("BENCH.svg written");
    assert!(
        svg.starts_with("<svg") && svg.contains("paper, Titan X"),
        "{svg}"
    );
    assert!(text.contains("](BENCH.svg)"), "{text}");
    // Neither file is replaced without --force; a chart alone in the way stops it too.
    let again = |md: &Path| {
        run(bin()
            .args(["bench", "--quick", "--filter", "asl_forward", "--markdown"])
            .arg(md))
    };
    let (ok, _, err) = again(&md);
    assert!(!ok && err.contains("--force"), "{err}");
    assert_eq!(std::fs::read_to_string(&md).unwrap(), text);
    let other = dir.join("OTHER.md");
    std::fs::write(dir.join("OTHER.svg"), "mine").unwrap();
    let (ok, _, err) = again(&other);
    assert!(!ok && err.contains("OTHER.svg"), "{err}");
    assert!(!other.exists());
    assert_eq!(
        std::fs::read_to_string(dir.join("OTHER.svg")).unwrap(),
        "mine"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `WGPU_ADAPTER_NAME` naming no adapter is a clear error that lists the adapters there are,
/// not a panic (wgpu's own helper for it panics), and `classify --backend auto` falls back to
/// the CPU with a note.
#[test]
fn an_adapter_name_that_matches_nothing_is_a_clear_error() {
    let (ok, _, err) = run(bin()
        .arg("info")
        .env("WGPU_ADAPTER_NAME", "no-such-adapter-3f9c"));
    assert!(!ok, "{err}");
    assert!(
        err.contains("WGPU_ADAPTER_NAME=\"no-such-adapter-3f9c\" matches none of"),
        "{err}"
    );
    assert!(
        !err.contains("panicked") && !err.contains("internal error"),
        "{err}"
    );
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("web/www/samples/orange.png");
    let (ok, out, err) = run(bin()
        .args(["classify", "--top", "1"])
        .arg(&sample)
        .env("WGPU_ADAPTER_NAME", "no-such-adapter-3f9c"));
    assert!(ok, "{err}");
    assert!(err.contains("running on the CPU"), "{err}");
    assert!(out.contains("orange"), "{out}");
}

/// `--backend auto` passes over a software adapter (lavapipe in CI) for the CPU code, which is
/// faster there, and says so; `--backend gpu` still runs on it.
#[test]
fn auto_prefers_the_cpu_to_a_software_adapter() {
    let Some(ctx) = common::gpu("auto_prefers_the_cpu_to_a_software_adapter") else {
        return;
    };
    let software = ctx.adapter_info().device_type == wgpu::DeviceType::Cpu;
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("web/www/samples/orange.png");
    let (ok, out, err) = run(bin().args(["classify", "--top", "1"]).arg(&sample));
    assert!(ok, "{err}");
    assert!(out.contains("orange"), "{out}");
    let name = &ctx.adapter_info().name;
    if software {
        assert!(out.contains("on cpu)"), "{out}");
        assert!(
            err.contains(&format!("{name} is a software adapter")),
            "{err}"
        );
    } else {
        assert!(out.contains(&format!("on {name})")), "{out}");
    }
    let (ok, out, err) = run(bin()
        .args(["classify", "--top", "1", "--backend", "gpu"])
        .arg(&sample));
    assert!(ok, "{err}");
    assert!(out.contains(&format!("on {name})")), "{out}");
}

/// The authors' w32 converted into `dir` (labels from the list compiled into activeshift).
fn import_w32(dir: &Path) -> PathBuf {
    let model = dir.join("w32.safetensors");
    let caffemodel = format!("{SHARED}/pretrained/AS-ResNet-w32.caffemodel");
    let (ok, _, err) = run(bin().args(["import-caffe", &caffemodel, "-o"]).arg(&model));
    assert!(ok, "{err}");
    model
}

/// A training command on the synthetic data of `data` (small, CPU, no augmentation).
fn train_cmd(data: &Path, extra: &[&str]) -> Command {
    let mut cmd = bin();
    cmd.env("ACTIVESHIFT_DATA", data)
        .args(["train", "--backend", "cpu", "--batch", "16", "--no-augment"])
        .args(extra);
    cmd
}

#[test]
fn training_makes_missing_folders_and_checks_outputs_before_any_work() {
    let dir = tmpdir("outputs");
    synthetic_fashion(&dir, 40, 20);
    // The README's form: neither folder exists yet.
    let model = dir.join("models/sub/m.safetensors");
    let ckpt = dir.join("artifacts/m.ckpt");
    let (ok, out, err) = run(train_cmd(&dir, &["--epochs", "1", "--checkpoint"])
        .arg(&ckpt)
        .arg("-o")
        .arg(&model));
    assert!(ok, "{err}");
    assert!(out.contains("wrote"), "{out}");
    assert!(model.is_file() && ckpt.is_file());
    // A fresh run never replaces a checkpoint or a model without being asked.
    let (ok, _, err) = run(train_cmd(&dir, &["--epochs", "1", "--checkpoint"])
        .arg(&ckpt)
        .arg("-o")
        .arg(dir.join("other.safetensors")));
    assert!(
        !ok && err.contains("checkpoint exists (pass --resume"),
        "{err}"
    );
    let (ok, _, err) = run(train_cmd(&dir, &["--epochs", "1", "-o"]).arg(&model));
    assert!(!ok && err.contains("file exists (pass --force"), "{err}");
    // Outputs that cannot be written fail at once, before the data is read: a folder, and a
    // path under a file. (ACTIVESHIFT_DATA points to an empty folder: reaching the data would
    // try to download it.)
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let blocker = dir.join("a-file");
    std::fs::write(&blocker, b"x").unwrap();
    for (output, want) in [
        (empty.clone(), "is a folder"),
        (blocker.join("m.safetensors"), "cannot create its folder"),
    ] {
        let start = std::time::Instant::now();
        let (ok, _, err) = run(train_cmd(&empty, &["-o"]).arg(&output));
        assert!(
            !ok && err.starts_with("error: ") && err.contains(want),
            "{err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(start.elapsed().as_secs() < 10);
    }
    let (ok, _, err) = run(train_cmd(&empty, &["--checkpoint"])
        .arg(blocker.join("x.ckpt"))
        .arg("-o")
        .arg(dir.join("n.safetensors")));
    assert!(!ok && err.contains("cannot create its folder"), "{err}");
    // The same checks for the other writing commands.
    let (ok, _, err) = run(bin().args(["shifts", "-o"]).arg(blocker.join("s.svg")));
    assert!(!ok && err.contains("cannot create its folder"), "{err}");
    let svg = dir.join("plots/deeper/s.svg");
    let (ok, _, err) = run(bin().args(["shifts", "-o"]).arg(&svg));
    assert!(ok && svg.is_file(), "{err}");
    let caffemodel = format!("{SHARED}/pretrained/AS-ResNet-w32.caffemodel");
    let (ok, _, err) = run(bin().args(["import-caffe", &caffemodel, "-o"]).arg(&empty));
    assert!(!ok && err.contains("is a folder"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Ctrl-C during training writes a checkpoint at the step it stopped and prints the command
/// that resumes; that command, run as printed, finishes the run.
#[cfg(unix)]
#[test]
fn ctrl_c_writes_a_checkpoint_and_prints_the_command_that_resumes() {
    use std::io::BufRead;
    let dir = tmpdir("sigint");
    synthetic_fashion(&dir, 1600, 50);
    let model = dir.join("m.safetensors");
    // 100 steps per epoch and no periodic checkpoint: only the interrupt writes one mid-epoch.
    let mut child = train_cmd(
        &dir,
        &["--epochs", "2", "--checkpoint-every", "100000", "-o"],
    )
    .arg(&model)
    .stderr(std::process::Stdio::piped())
    .stdout(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    // Without a terminal, progress comes as a line every 50 steps.
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        seen.push(line.clone());
        if line.contains("step 50/100") {
            break;
        }
    }
    assert!(
        seen.last().is_some_and(|l| l.contains("run ETA")),
        "{seen:?}"
    );
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    let status = child.wait().unwrap();
    let err = rest.join("\n");
    assert_eq!(status.code(), Some(130), "{err}");
    let ckpt = dir.join("m.ckpt");
    let t = activeshift::train::Trainer::load_checkpoint(&ckpt).unwrap();
    assert_eq!(t.epoch, 0, "{err}");
    assert!(t.step_in_epoch >= 50 && t.step_in_epoch < 100, "{err}");
    let i = rest
        .iter()
        .position(|l| l == "resume with:")
        .unwrap_or_else(|| panic!("no resume command: {err}"));
    let command = rest[i + 1].trim();
    assert!(command.ends_with("--resume"), "{command}");
    let (ok, out, err2) = run(Command::new("sh")
        .args(["-c", command])
        .env("ACTIVESHIFT_DATA", &dir));
    assert!(ok, "{err2}");
    assert!(
        err2.contains(&format!("at epoch 0 step {}", t.step_in_epoch)),
        "{err2}"
    );
    assert!(out.contains("wrote"), "{out}");
    let t = activeshift::train::Trainer::load_checkpoint(&ckpt).unwrap();
    assert_eq!(t.epoch, 2);
    activeshift::Model::load(&model).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn resume_refuses_settings_that_differ_from_the_checkpoint() {
    let dir = tmpdir("resume-settings");
    synthetic_fashion(&dir, 40, 20);
    let model = dir.join("m.safetensors");
    let (ok, _, err) = run(train_cmd(&dir, &["--epochs", "1", "--lr", "0.05", "-o"]).arg(&model));
    assert!(ok, "{err}");
    let (ok, _, err) = run(train_cmd(
        &dir,
        &[
            "--epochs", "1", "--lr", "0.5", "--shift", "grouped", "--resume", "-o",
        ],
    )
    .arg(&model));
    assert!(!ok, "{err}");
    assert!(
        err.contains("--lr 0.5 (the run has 0.05)")
            && err.contains("--shift Grouped (the run has Learned)"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    // The same settings, or none given, continue (here: a finished run, nothing left to do).
    for extra in [&["--lr", "0.05", "--epochs", "1"][..], &[]] {
        let (ok, out, err) = run(train_cmd(&dir, extra).args(["--resume", "-o"]).arg(&model));
        assert!(ok && out.contains("wrote"), "{err}");
    }
    // --resume without a checkpoint says so.
    let (ok, _, err) = run(train_cmd(&dir, &["--resume", "-o"]).arg(dir.join("new.safetensors")));
    assert!(!ok && err.contains("no checkpoint to resume"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `import-caffe` in an empty folder, with nothing beside the weights: the ImageNet names come
/// from activeshift itself; `--labels` still replaces them.
#[test]
fn import_labels_come_from_the_binary_and_labels_overrides_them() {
    let dir = tmpdir("labels");
    let caffemodel = dir.join("weights.caffemodel");
    std::fs::copy(
        format!("{SHARED}/pretrained/AS-ResNet-w32.caffemodel"),
        &caffemodel,
    )
    .unwrap();
    let cat = format!("{SHARED}/images/cat.jpg");
    let (ok, _, err) = run(bin().current_dir(&dir).args([
        "import-caffe",
        "weights.caffemodel",
        "-o",
        "w32.safetensors",
    ]));
    assert!(ok, "{err}");
    let (ok, out, err) = run(bin().current_dir(&dir).args([
        "classify",
        "--backend",
        "cpu",
        "--top",
        "2",
        "--model",
        "w32.safetensors",
        &cat,
    ]));
    assert!(ok, "{err}");
    assert!(
        out.contains("Egyptian cat") && out.contains("tabby, tabby cat"),
        "{out}"
    );
    let names: String = (0..1000).map(|i| format!("name-{i}\n")).collect();
    std::fs::write(dir.join("names.txt"), names).unwrap();
    let (ok, _, err) = run(bin().current_dir(&dir).args([
        "import-caffe",
        "weights.caffemodel",
        "--labels",
        "names.txt",
        "-o",
        "renamed.safetensors",
    ]));
    assert!(ok, "{err}");
    let (ok, out, err) = run(bin().current_dir(&dir).args([
        "classify",
        "--backend",
        "cpu",
        "--top",
        "1",
        "--model",
        "renamed.safetensors",
        &cat,
    ]));
    assert!(ok && out.contains("name-285"), "{out}{err}");
    std::fs::remove_dir_all(&dir).unwrap();
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
    let dir = tmpdir("eval-images");
    let model = import_w32(&dir);
    let cat = std::fs::read(format!("{SHARED}/images/cat.jpg")).unwrap();
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
        !ok && err.contains("but model `asnet20-16x1` has 10 classes"),
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
    // The coat is taken for a shirt (README); the other nine are right.
    assert_eq!(
        (v["count"].as_u64(), v["top1_correct"].as_u64()),
        (Some(10), Some(9)),
        "{v}"
    );
    assert_eq!(v["top5_correct"], 10, "{v}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A one-file HTTP server on 127.0.0.1: answers `path` with `body`, anything else with 404;
/// counts the requests.
fn serve(
    path: &'static str,
    body: Vec<u8>,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = count.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            let _ = reader.read_line(&mut request);
            let mut header = String::new();
            while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
                header.clear();
            }
            let target = request.split_whitespace().nth(1).unwrap_or("");
            let (status, bytes): (&str, &[u8]) = if target == path {
                ("200 OK", &body)
            } else {
                ("404 Not Found", b"not found")
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                bytes.len()
            );
            let _ = stream.write_all(bytes);
        }
    });
    (base, count)
}

const W32_PATH: &str =
    "/models/ASL_Model/ImageNet/test_model/w32/AS-ResNet-w32_iter_450360.caffemodel";

/// `--model as-resnet-w32` downloads the authors' file once (here from a local server standing
/// in for their repository), checks its SHA-256, converts it and reads it from the cache after.
#[test]
fn a_pretrained_model_by_name_is_downloaded_verified_and_cached_once() {
    let dir = tmpdir("pretrained");
    let cache = dir.join("cache");
    let weights = std::fs::read(format!("{SHARED}/pretrained/AS-ResNet-w32.caffemodel")).unwrap();
    let (base, requests) = serve(W32_PATH, weights.clone());
    let cat = format!("{SHARED}/images/cat.jpg");
    let classify = |base: &str| {
        run(bin()
            .current_dir(&dir)
            .env("ACTIVESHIFT_PRETRAINED_URL", base)
            .env("ACTIVESHIFT_CACHE_DIR", &cache)
            .args([
                "classify",
                "--json",
                "--backend",
                "cpu",
                "--model",
                "as-resnet-w32",
                &cat,
            ]))
    };
    for round in 0..2 {
        let (ok, out, err) = classify(&base);
        assert!(ok, "{err}");
        let v: activeshift::Classification = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(
            (v.top[0].class, v.top[0].label.as_str()),
            (285, "Egyptian cat")
        );
        assert_eq!(err.contains("downloading"), round == 0, "{err}");
    }
    assert_eq!(requests.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert!(cache.join("as-resnet-w32.safetensors").is_file());

    // A file that is not the authors' (one byte changed): refused, nothing cached.
    let cache2 = dir.join("cache2");
    let mut damaged = weights;
    damaged[1000] ^= 1;
    let (bad_base, _) = serve(W32_PATH, damaged);
    let (ok, _, err) = run(bin()
        .env("ACTIVESHIFT_PRETRAINED_URL", &bad_base)
        .env("ACTIVESHIFT_CACHE_DIR", &cache2)
        .args(["info", "--model", "as-resnet-w32"]));
    assert!(
        !ok && err.contains("SHA-256 is") && err.contains("nothing was written"),
        "{err}"
    );
    assert_eq!(
        err.lines().filter(|l| l.starts_with("error:")).count(),
        1,
        "{err}"
    );
    assert!(!cache2.join("as-resnet-w32.safetensors").exists());
    // Offline (nothing listens on the port): a clear error, at once.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let start = std::time::Instant::now();
    let (ok, _, err) = run(bin()
        .env("ACTIVESHIFT_PRETRAINED_URL", &closed)
        .env("ACTIVESHIFT_CACHE_DIR", &cache2)
        .args(["info", "--model", "as-resnet-w32"]));
    assert!(
        !ok && err.contains("cannot download") && err.contains("import-caffe"),
        "{err}"
    );
    assert!(start.elapsed().as_secs() < 20);
    // The wider models: no checksum known here, so no download; the error says what to do.
    let (ok, _, err) = run(bin().env("ACTIVESHIFT_PRETRAINED_URL", &closed).args([
        "info",
        "--model",
        "as-resnet-w50",
    ]));
    assert!(
        !ok && err.contains("no checksum") && err.contains("import-caffe"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn classify_takes_folders_and_stdin_and_refuses_top_zero() {
    let samples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/images");
    let (ok, out, err) = run(bin()
        .args(["classify", "--json", "--backend", "cpu", "--top", "1"])
        .arg(&samples));
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 10, "{out}");
    // stdin
    let mut child = bin()
        .args(["classify", "--backend", "cpu", "--top", "1", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(&std::fs::read(samples.join("bag-0.png")).unwrap())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("Bag"), "{text}");
    let (ok, _, err) = run(bin()
        .args(["classify", "--top", "0"])
        .arg(samples.join("bag-0.png")));
    assert!(!ok && err.contains("at least 1"), "{err}");
    let (ok, _, err) = run(bin().args(["classify", "-", "-"]));
    assert!(!ok && err.contains("once"), "{err}");
    let empty = tmpdir("no-images");
    let (ok, _, err) = run(bin().arg("classify").arg(&empty));
    assert!(!ok && err.contains("a folder without images"), "{err}");
    std::fs::remove_dir_all(&empty).unwrap();
}

/// `shifts` draws y downwards, as rows go in the image and in the web demo: a channel with a
/// positive ypos is drawn below one with a negative ypos.
#[test]
fn the_shift_plot_draws_ypos_downwards() {
    let dir = tmpdir("shift-plot");
    let mut model = activeshift::Model::synthetic(
        &activeshift::ArchConfig::builtin("asnet20-16x1").unwrap(),
        3,
    )
    .unwrap();
    let name = model
        .params
        .keys()
        .find(|k| k.ends_with(".shift"))
        .unwrap()
        .clone();
    let t = model.params.get_mut(&name).unwrap();
    let c = t.dims[1];
    // Channel 0 at (0, +1), channel 1 at (0, -1); the rows are xpos then ypos.
    t.data[0] = 0.0;
    t.data[1] = 0.0;
    t.data[c] = 1.0;
    t.data[c + 1] = -1.0;
    let file = dir.join("m.safetensors");
    model.save(&file, false).unwrap();
    let svg = dir.join("s.svg");
    let (ok, _, err) = run(bin()
        .args(["shifts", "--model"])
        .arg(&file)
        .arg("-o")
        .arg(&svg));
    assert!(ok, "{err}");
    let text = std::fs::read_to_string(&svg).unwrap();
    let cy: Vec<f64> = text
        .split("<circle")
        .skip(1)
        .take(2)
        .map(|c| {
            let v = c.split("cy=\"").nth(1).unwrap();
            v[..v.find('"').unwrap()].parse().unwrap()
        })
        .collect();
    assert!(
        cy[0] > cy[1],
        "ypos +1 drawn at {}, ypos -1 at {}",
        cy[0],
        cy[1]
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn info_names_the_adapter_features_in_words() {
    if common::gpu("cli info_names_the_adapter_features_in_words").is_none() {
        return;
    }
    let (ok, out, err) = run(bin().arg("info"));
    assert!(ok, "{err}");
    let line = out.lines().find(|l| l.starts_with("features: ")).unwrap();
    assert!(
        !line.contains('{') && !line.contains("FeaturesWGPU"),
        "{line}"
    );
}

// --- reliability (issue #18) -----------------------------------------------------------------

/// `(exit code, stdout, stderr)`.
fn run_code(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd.output().expect("run activeshift");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn argument_errors_are_one_error_line() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["classify", "--top", "-1", "x.jpg"],
            "unexpected argument '-1'",
        ),
        (
            &["classify", "--top", "18446744073709551616", "x.jpg"],
            "invalid value '18446744073709551616' for '--top <TOP>'",
        ),
        (
            &["classify", "--backend", "tpu", "x.jpg"],
            "invalid value 'tpu' for '--backend <BACKEND>'",
        ),
        (
            &["import-caffe", "x.caffemodel", "-o", ""],
            "'--output <OUTPUT>'",
        ),
        (
            &["train", "-o", "m.safetensors", "--batch", "0"],
            "'--batch <BATCH>'",
        ),
        (
            &["train", "-o", "m.safetensors", "--epochs", "0"],
            "'--epochs <EPOCHS>'",
        ),
        (
            &["train"],
            "required arguments were not provided: --output <OUTPUT>",
        ),
        (
            &["classify", "--forse", "x.jpg"],
            "unexpected argument '--forse'",
        ),
        (&["nonsense"], "unrecognized subcommand 'nonsense'"),
    ];
    for (args, want) in cases {
        let (code, out, err) = run_code(bin().args(*args));
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?}: {out}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("error: "), "{args:?}: {err}");
        assert!(!err.contains("Usage"), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
    // Help still prints in full.
    let (code, out, _) = run_code(bin().args(["classify", "--help"]));
    assert_eq!(code, 0);
    assert!(out.contains("Usage:") && out.lines().count() > 5, "{out}");
}

/// A tiny model (1 x 8 x 8 input, 3 classes) with `labels`, and an 8x8 PNG, in `dir`.
fn tiny_model_and_image(dir: &Path, labels: &[&str], weight: Option<f32>) -> (PathBuf, PathBuf) {
    let mut m =
        activeshift::Model::synthetic(&activeshift::ArchConfig::asnet20(4, 1, 1, 8, 3), 1).unwrap();
    m.labels = labels.iter().map(|s| s.to_string()).collect();
    if let Some(w) = weight {
        for (name, t) in m.params.iter_mut() {
            if !name.ends_with(".shift") {
                t.data.iter_mut().for_each(|v| *v = w);
            }
        }
    }
    let model = dir.join("tiny.safetensors");
    m.save(&model, true).unwrap();
    let img = dir.join("img.png");
    image::GrayImage::from_fn(8, 8, |x, y| image::Luma([(x * 30 + y * 7) as u8]))
        .save(&img)
        .unwrap();
    (model, img)
}

#[test]
fn labels_and_names_with_escape_sequences_are_printed_escaped() {
    let dir = tmpdir("escapes");
    let (model, img) = tiny_model_and_image(&dir, &["\x1b[31mred", "a\rb", "ok\x07"], None);
    let (ok, out, err) = run(bin()
        .args(["classify", "--backend", "cpu", "--top", "3", "--model"])
        .arg(&model)
        .arg(&img));
    assert!(ok, "{err}");
    assert!(
        !out.contains('\x1b') && !out.contains('\r') && !out.contains('\x07'),
        "{out:?}"
    );
    assert!(out.contains("\\u{1b}[31mred"), "{out}");
    assert!(out.contains("a\\rb"), "{out}");
    // JSON keeps the labels as they are (escaped by JSON itself).
    let (ok, out, _) = run(bin()
        .args(["classify", "--backend", "cpu", "--json", "--model"])
        .arg(&model)
        .arg(&img));
    assert!(ok);
    assert!(out.contains("\\u001b[31mred"), "{out}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn weights_near_the_float_limit_give_probabilities_not_nan() {
    let dir = tmpdir("overflow");
    let (model, img) = tiny_model_and_image(&dir, &[], Some(3e38));
    let (ok, out, err) = run(bin()
        .args(["classify", "--backend", "cpu", "--json", "--model"])
        .arg(&model)
        .arg(&img));
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let probs: Vec<f64> = v["top"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["prob"].as_f64().expect("a number, not null"))
        .collect();
    assert!((probs.iter().sum::<f64>() - 1.0).abs() < 1e-5, "{out}");
    let (ok, out, _) = run(bin()
        .args(["classify", "--backend", "cpu", "--model"])
        .arg(&model)
        .arg(&img));
    assert!(ok && !out.contains("NaN"), "{out}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[cfg(unix)]
#[test]
fn a_fifo_as_model_or_image_is_refused_without_blocking() {
    let dir = tmpdir("fifo");
    let fifo = dir.join("pipe");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let (model, img) = tiny_model_and_image(&dir, &[], None);
    for (m, i) in [(&fifo, &img), (&model, &fifo)] {
        let mut child = bin()
            .args(["classify", "--backend", "cpu", "--model"])
            .arg(m)
            .arg(i)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let started = std::time::Instant::now();
        while child.try_wait().unwrap().is_none() {
            if started.elapsed().as_secs() > 20 {
                child.kill().unwrap();
                panic!("classify blocked on a FIFO");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(
            err.contains("is a FIFO (named pipe); only regular files are read"),
            "{err}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn training_never_replaces_files_it_was_not_asked_to() {
    let dir = tmpdir("train-files");
    synthetic_fashion(&dir, 40, 10);
    let model = dir.join("m.safetensors");
    let ckpt = dir.join("m.ckpt");
    let train = |extra: &[&str], out: &Path| {
        let mut cmd = bin();
        cmd.env("ACTIVESHIFT_DATA", &dir)
            .args([
                "train",
                "--epochs",
                "1",
                "--batch",
                "16",
                "--backend",
                "cpu",
            ])
            .args(["--no-augment", "--limit", "2"])
            .arg("--checkpoint")
            .arg(&ckpt)
            .args(extra)
            .arg("-o")
            .arg(out);
        cmd
    };
    let (ok, out, err) = run(&mut train(&[], &model));
    assert!(ok && out.contains("wrote"), "{err}");
    let first = std::fs::read(&model).unwrap();
    // A fresh run refuses the checkpoint of an earlier run (the output is gone, the checkpoint
    // is not), and leaves it as it was.
    std::fs::remove_file(&model).unwrap();
    let ckpt_bytes = std::fs::read(&ckpt).unwrap();
    let (code, _, err) = run_code(&mut train(&[], &model));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("checkpoint exists (pass --resume"), "{err}");
    assert_eq!(std::fs::read(&ckpt).unwrap(), ckpt_bytes);
    // --resume of the finished run writes its model again: the same bytes as before.
    let (ok, out, err) = run(&mut train(&["--resume"], &model));
    assert!(ok && out.contains("wrote"), "{err}");
    assert!(err.contains("had finished all 1 epochs"), "{err}");
    assert_eq!(std::fs::read(&model).unwrap(), first);
    // --resume into another existing file that is not this run's model: refused, kept.
    let other = dir.join("other.safetensors");
    std::fs::write(&other, b"someone else's file").unwrap();
    let (code, _, err) = run_code(&mut train(&["--resume"], &other));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("is not a model of the resumed run"), "{err}");
    assert_eq!(std::fs::read(&other).unwrap(), b"someone else's file");
    // The run's own model is replaced on resume without --force.
    let (ok, _, err) = run(&mut train(&["--resume"], &model));
    assert!(ok, "{err}");
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
