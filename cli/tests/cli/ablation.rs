//! `activeshift ablation` end to end: runs that resume and are never trained twice, result
//! files, and the report made from result files alone (mean ± sd, missing runs, bad files).

use crate::common;

use common::{bin, run, synthetic_fashion, tmpdir};
use serde_json::{Value, json};
use std::path::Path;
use std::process::Command;

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Mean |end - start| over a result file's layers (channel-weighted).
fn moved(r: &Value) -> f64 {
    let layers = r["shift_layers"].as_array().unwrap();
    let ch: f64 = layers.iter().map(|l| l["channels"].as_f64().unwrap()).sum();
    layers
        .iter()
        .map(|l| l["mean_abs_change"].as_f64().unwrap() * l["channels"].as_f64().unwrap())
        .sum::<f64>()
        / ch
}

/// Ctrl-C stops a run with its checkpoint and progress in `in-progress/` and prints the
/// command that continues it; that command finishes it into a result file and a model, and a
/// finished run is never trained again.
#[cfg(unix)]
#[test]
fn an_interrupted_run_resumes_and_a_finished_one_is_not_trained_again() {
    use std::io::BufRead;
    let dir = tmpdir("ablation-resume");
    synthetic_fashion(&dir, 1600, 50);
    let runs = dir.join("runs");
    let progress = runs.join("in-progress/learned-seed0.json");
    let mut child = bin()
        .env("ACTIVESHIFT_DATA", &dir)
        .args(["ablation", "--only", "learned:0", "--epochs", "3"])
        .args(["--limit", "160", "--checkpoint-every", "1", "--dir"])
        .arg(&runs)
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        std::io::BufReader::new(stderr)
            .lines()
            .map(|l| l.unwrap())
            .collect::<Vec<_>>()
    });
    // Interrupt once the first checkpoint's progress is recorded (12 steps per epoch, 36 in all).
    let start = std::time::Instant::now();
    while start.elapsed().as_secs() < 120 {
        let p: Option<Value> = std::fs::read(&progress)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        if p.is_some_and(|p| p["step_in_epoch"].as_u64() >= Some(1)) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = child.wait().unwrap();
    let lines = reader.join().unwrap();
    let err = lines.join("\n");
    assert_eq!(status.code(), Some(130), "{err}");
    let p = read_json(&progress);
    assert_eq!(p["sessions"].as_array().unwrap().len(), 1, "{p}");
    assert_eq!(p["initial_shifts_source"], "recorded at the run's start");
    assert!(p["epoch"].as_u64().unwrap() < 3, "{p}");
    assert!(!runs.join("learned-seed0.json").exists());
    let i = lines
        .iter()
        .position(|l| l == "resume with:")
        .unwrap_or_else(|| panic!("no resume command: {err}"));
    let command = lines[i + 1].trim();
    assert!(!command.contains("--resume"), "{command}");
    let (ok, out, err) = run(Command::new("sh")
        .args(["-c", command])
        .env("ACTIVESHIFT_DATA", &dir));
    assert!(ok, "{err}");
    assert!(err.contains("learned-seed0: resuming"), "{err}");
    assert!(
        out.contains("| learned real shift (ASL) | 1 of 3 |"),
        "{out}"
    );
    // The result file: what ran, how it scored, where the shifts went, on what machine.
    let result = runs.join("learned-seed0.json");
    let r = read_json(&result);
    assert_eq!(r["variant"], "learned");
    assert_eq!(r["seed"], 0);
    assert_eq!(r["recipe"]["epochs"], 3);
    assert_eq!(r["recipe"]["limit"], 160);
    assert_eq!(r["test_total"], 50);
    let acc = r["test_correct"].as_f64().unwrap() / 50.0;
    assert!((r["accuracy"].as_f64().unwrap() - acc).abs() < 1e-12);
    assert_eq!(r["sessions"].as_array().unwrap().len(), 2, "{r}");
    assert_eq!(r["train_images"], 3 * 12 * 128);
    assert!(r["wall_seconds"].as_f64().unwrap() > 0.0);
    assert!(!r["machine"]["cpu"].as_str().unwrap().is_empty());
    assert_eq!(r["initial_shifts_source"], "recorded at the run's start");
    // ASNet-20 has 9 ASL layers; learned shifts move.
    assert_eq!(r["shift_layers"].as_array().unwrap().len(), 9, "{r}");
    assert!(moved(&r) > 0.0, "{r}");
    let model = activeshift::Model::load(runs.join("learned-seed0.safetensors")).unwrap();
    assert_eq!(model.config.name, "asnet20-16x1");
    // Its final shifts are the recorded start moved by what the result file says.
    let remaining: Vec<_> = std::fs::read_dir(runs.join("in-progress"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(remaining.is_empty(), "{remaining:?}");
    // Asked again: kept, not trained; the result file is unchanged.
    let before = std::fs::read(&result).unwrap();
    let (ok, _, err) = run(bin()
        .env("ACTIVESHIFT_DATA", &dir)
        .args(["ablation", "--only", "learned:0", "--epochs", "3"])
        .args(["--limit", "160", "--dir"])
        .arg(&runs));
    assert!(ok, "{err}");
    assert!(
        err.contains("not trained again") && !err.contains("training"),
        "{err}"
    );
    assert_eq!(std::fs::read(&result).unwrap(), before);
    // Another recipe in the same folder is refused.
    let (ok, _, err) = run(bin()
        .env("ACTIVESHIFT_DATA", &dir)
        .args(["ablation", "--only", "learned:0", "--epochs", "2"])
        .args(["--limit", "160", "--dir"])
        .arg(&runs));
    assert!(!ok && err.contains("choose another --dir"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Every variant, one seed, one epoch: a result file and a model each; frozen shifts do not
/// move, learned ones do, the depthwise block has none; the document is written and rewritten.
#[test]
fn every_variant_trains_once_into_result_files_and_a_document() {
    let dir = tmpdir("all");
    synthetic_fashion(&dir, 300, 50);
    let runs = dir.join("runs");
    let table = dir.join("ablation.md");
    let ablation = || {
        let mut cmd = bin();
        cmd.env("ACTIVESHIFT_DATA", &dir)
            .args(["ablation", "--epochs", "1", "--limit", "13", "--seeds", "0"])
            .arg("--dir")
            .arg(&runs)
            .arg("--markdown")
            .arg(&table);
        cmd
    };
    let (ok, out, err) = run(&mut ablation());
    assert!(ok, "{err}");
    for key in [
        "grouped",
        "sampled-int",
        "sampled-real",
        "learned",
        "learned-normal",
        "depthwise",
    ] {
        let r = read_json(&runs.join(format!("{key}-seed0.json")));
        assert_eq!(r["variant"], key);
        activeshift::Model::load(runs.join(format!("{key}-seed0.safetensors"))).unwrap();
        match key {
            "depthwise" => assert!(r["shift_layers"].as_array().unwrap().is_empty()),
            "learned" | "learned-normal" => assert!(moved(&r) > 0.0, "{r}"),
            _ => assert_eq!(moved(&r), 0.0, "{key}: frozen shifts moved: {r}"),
        }
    }
    let depthwise = activeshift::Model::load(runs.join("depthwise-seed0.safetensors")).unwrap();
    assert_eq!(
        depthwise.config.block,
        activeshift::model::BlockKind::Depthwise
    );
    assert!(
        out.contains("| learned real shift (ASL) | 1 of 1 |"),
        "{out}"
    );
    assert!(out.contains("Missing runs: none."), "{out}");
    assert_eq!(std::fs::read_to_string(&table).unwrap(), out);
    // The document is this command's own: rewritten without --force; the runs are kept.
    let (ok, _, err) = run(&mut ablation());
    assert!(ok, "{err}");
    assert_eq!(err.matches("not trained again").count(), 6, "{err}");
    // A file it did not write is replaced only with --force.
    std::fs::write(&table, "my notes\n").unwrap();
    let (ok, _, err) = run(&mut ablation());
    assert!(!ok && err.contains("--force"), "{err}");
    assert_eq!(std::fs::read_to_string(&table).unwrap(), "my notes\n");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A result file as `activeshift ablation` writes it for ASNet-20 16x1; `moved`: (start, end,
/// mean change) of every one of its nine shift layers (none for the depthwise block).
fn result(variant: &str, seed: u64, correct: u64, moved: (f64, f64, f64)) -> Value {
    let (s, e, m) = moved;
    let layers: Vec<Value> = if variant == "depthwise" {
        Vec::new()
    } else {
        (0..9)
            .map(|i| {
                json!({
                    "name": format!("blocks.{i}.shift"), "channels": 16 << (i / 3),
                    "start_mean_abs": s, "end_mean_abs": e,
                    "mean_abs_change": m, "max_abs_change": m * 2.0,
                })
            })
            .collect()
    };
    let params = if variant == "depthwise" { 37450 } else { 35098 };
    json!({
        "format": "activeshift-ablation-run-v1",
        "variant": variant,
        "seed": seed,
        "recipe": {
            "dataset": "fashion-mnist", "arch": "asnet20-16x1", "epochs": 17, "batch": 128,
            "lr": 0.1, "momentum": 0.9, "weight_decay": 0.0005, "shift_lr_mult": 0.01,
            "schedule": "cosine", "augment": true, "limit": null
        },
        "test_correct": correct,
        "test_total": 10000,
        "accuracy": correct as f64 / 10000.0,
        "params": params,
        "mult_adds": 4330000,
        "wall_seconds": 4800.0,
        "train_images": 1018368,
        "images_per_second": 212.16,
        "inference_images_per_second_cpu": 1400.0,
        "machine": {"cpu": "Test CPU | 9000", "threads": 2},
        "sessions": [{"machine": {"cpu": "Test CPU | 9000", "threads": 2}, "backend": "cpu", "seconds": 4800.0, "steps": 7956}],
        "version": "0.1.0",
        "commit": "0123456789ab",
        "initial_shifts_source": "recorded at the run's start",
        "shift_layers": layers,
    })
}

fn write(dir: &Path, name: &str, v: &Value) {
    std::fs::write(dir.join(name), serde_json::to_vec_pretty(v).unwrap()).unwrap();
}

fn report(dir: &Path, md: &Path) -> (bool, String, String) {
    // No dataset anywhere: the report reads result files only.
    run(bin()
        .env("ACTIVESHIFT_DATA", dir.join("no-data"))
        .args(["ablation", "--report", "--dir"])
        .arg(dir.join("results"))
        .arg("--markdown")
        .arg(md))
}

#[test]
fn the_report_is_made_from_result_files_alone() {
    let dir = tmpdir("report");
    let res = dir.join("results");
    std::fs::create_dir_all(res.join("in-progress")).unwrap();
    let md = dir.join("ablation.md");
    // Learned: 90.00, 91.00, 92.00 -> 91.00 ± 1.00 (sample sd).
    for (seed, correct) in [(0, 9000), (1, 9100), (2, 9200)] {
        let name = format!("learned-seed{seed}.json");
        write(
            &res,
            &name,
            &result("learned", seed, correct, (0.5, 0.6, 0.1)),
        );
    }
    // Sampled real: 89.50, 89.60 -> 89.55 ± 0.07; seed 2 under way.
    for (seed, correct) in [(0, 8950), (1, 8960)] {
        let name = format!("sampled-real-seed{seed}.json");
        write(
            &res,
            &name,
            &result("sampled-real", seed, correct, (0.8, 0.8, 0.0)),
        );
    }
    let mut progress = json!({
        "format": "activeshift-ablation-progress-v1", "variant": "sampled-real", "seed": 2,
        "initial_shifts_source": "recorded at the run's start", "initial_shifts": {},
        "epoch": 5, "step_in_epoch": 0,
        "sessions": [{"machine": {"cpu": "x", "threads": 2}, "seconds": 1500.0, "steps": 2340}],
    });
    progress["recipe"] = result("learned", 0, 0, (0.5, 0.6, 0.1))["recipe"].clone();
    write(
        &res.join("in-progress"),
        "sampled-real-seed2.json",
        &progress,
    );
    write(
        &res,
        "grouped-seed0.json",
        &result("grouped", 0, 8800, (0.7, 0.7, 0.0)),
    );
    write(
        &res,
        "depthwise-seed0.json",
        &result("depthwise", 0, 8900, (0.0, 0.0, 0.0)),
    );
    // Files that are not result files are not read.
    std::fs::write(res.join("README.md"), "notes").unwrap();
    std::fs::write(res.join("learned-seed0.safetensors"), "not read").unwrap();
    let (ok, out, err) = report(&dir, &md);
    assert!(ok, "{err}");
    assert_eq!(std::fs::read_to_string(&md).unwrap(), out);
    let row = |label: &str| {
        out.lines()
            .find(|l| l.starts_with(&format!("| {label} |")))
            .unwrap_or_else(|| panic!("no row {label}: {out}"))
            .to_string()
    };
    let learned = row("learned real shift (ASL)");
    assert!(learned.contains("| 3 of 3 | 91.00% ± 1.00 |"), "{learned}");
    assert!(
        learned.contains("seed 0: 90.00%, 1: 91.00%, 2: 92.00%"),
        "{learned}"
    );
    let real = row("sampled real shift N(0,1), frozen");
    assert!(real.contains("| 2 of 3 | 89.55% ± 0.07 |"), "{real}");
    assert!(real.contains("2: missing"), "{real}");
    assert!(row("grouped integer shift (ShiftNet), frozen").contains("88.00% (one seed)"));
    assert!(row("sampled integer shift N(0,1), frozen").contains("| 0 of 1 | missing |"));
    assert!(
        out.contains(
            "- sampled-real seed 2: in progress: 5 of 17 epochs done, 25m00s of training kept"
        ),
        "{out}"
    );
    assert!(out.contains("- sampled-int seed 0: not started"), "{out}");
    assert!(
        out.contains("Cannot be decided yet: no finished run of sampled-int."),
        "{out}"
    );
    // Shift movement: per variant and per layer.
    assert!(
        out.contains("| learned | 3 | 0.5000 | 0.6000 | 0.1000 | 0.2000 |"),
        "{out}"
    );
    assert!(
        out.contains("| sampled-real | 2 | 0.8000 | 0.8000 | 0.0000 | 0.0000 |"),
        "{out}"
    );
    assert!(out.contains("| depthwise | 1 | no shifts"), "{out}");
    assert!(out.contains("| blocks.1.shift | 16 | 0.700 → 0.700 (0.0000) | 0.800 → 0.800 (0.0000) | 0.500 → 0.600 (0.1000) |"), "{out}");
    // Time and machine, with the text of the file kept out of the table's structure.
    assert!(out.contains("| learned-seed1 | 91.00% (9100/10000) | 1h20m | 212 | 1400 | 1 | Test CPU \\| 9000 (2 threads, cpu) | 0.1.0 (0123456789ab) |"), "{out}");
    // With the last variant in, the order is decided from the means.
    write(
        &res,
        "sampled-int-seed0.json",
        &result("sampled-int", 0, 8850, (0.6, 0.6, 0.0)),
    );
    let (ok, out, err) = report(&dir, &md);
    assert!(ok, "{err}");
    assert!(
        out.contains(
            "Reproduced by the means over seeds: learned > sampled real: 91.00% vs 89.55% (holds)"
        ),
        "{out}"
    );
    assert!(out.contains("learned minus sampled real: +1.45 points over 3 and 2 seeds (seed sd 1.00 and 0.07 points)"), "{out}");
    // 3 learned seeds above 2 sampled-real ones: 1 of C(5, 2) = 10 orderings.
    assert!(out.contains("every learned seed is above every sampled-real seed (90.00% the lowest against 89.60% the highest), the learned run is the better one in U = 6 of 6 pairs of seeds; were the two variants alike, a U this large would come with probability 0.100 (one-sided exact Mann-Whitney test)."), "{out}");
    write(
        &res,
        "grouped-seed0.json",
        &result("grouped", 0, 8900, (0.7, 0.7, 0.0)),
    );
    let (ok, out, err) = report(&dir, &md);
    assert!(ok, "{err}");
    assert!(
        out.contains("Not reproduced by the means over seeds"),
        "{out}"
    );
    assert!(
        out.contains("sampled integer >= grouped: 88.50% vs 89.00% (fails)"),
        "{out}"
    );
    // The same as JSON.
    let (ok, out, err) = run(bin()
        .args(["ablation", "--report", "--json", "--dir"])
        .arg(&res)
        .arg("--markdown")
        .arg(&md));
    assert!(ok, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["paper_order_reproduced"], false);
    assert_eq!(v["learned_vs_sampled_real"]["mann_whitney_u"], 6.0);
    assert!(
        (v["learned_vs_sampled_real"]["p_one_sided"]
            .as_f64()
            .unwrap()
            - 0.1)
            .abs()
            < 1e-12
    );
    let learned = &v["variants"][3];
    assert_eq!(learned["variant"], "learned");
    assert!((learned["accuracy_sd"].as_f64().unwrap() - 0.01).abs() < 1e-12);
    assert!((learned["accuracy_mean"].as_f64().unwrap() - 0.91).abs() < 1e-12);
    // A second recipe in the folder is refused.
    let mut other = result("sampled-int", 1, 8850, (0.6, 0.6, 0.0));
    other["recipe"]["epochs"] = json!(3);
    write(&res, "sampled-int-seed1.json", &other);
    let (ok, _, err) = report(&dir, &md);
    assert!(!ok && err.contains("different recipes"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_result_files_are_clear_errors() {
    let dir = tmpdir("bad");
    let res = dir.join("results");
    std::fs::create_dir_all(&res).unwrap();
    let md = dir.join("out.md");
    let good = result("learned", 0, 9000, (0.5, 0.6, 0.1));
    let with = |key: &str, value: Value| {
        let mut v = good.clone();
        v[key] = value;
        serde_json::to_vec(&v).unwrap()
    };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "garbage",
            vec![0xff, 0x00, 0x13, 0x37],
            "learned-seed0.json",
        ),
        ("empty", Vec::new(), "learned-seed0.json"),
        (
            "truncated",
            serde_json::to_vec(&good).unwrap()[..100].to_vec(),
            "learned-seed0.json",
        ),
        (
            "nested",
            "[".repeat(100_000).into_bytes(),
            "learned-seed0.json",
        ),
        ("too large", vec![b' '; 2 << 20], "at most"),
        (
            "correct > total",
            with("test_correct", json!(20000)),
            "test_correct",
        ),
        ("accuracy", with("accuracy", json!(0.5)), "accuracy"),
        (
            "negative time",
            with("wall_seconds", json!(-1.0)),
            "wall_seconds",
        ),
        (
            "huge number",
            b"{\"accuracy\": 1e999}".to_vec(),
            "learned-seed0.json",
        ),
        ("wrong format", with("format", json!("other")), "format"),
        ("other run", with("seed", json!(1)), "named for another run"),
        (
            "long text",
            with("version", json!("v".repeat(100_000))),
            "version",
        ),
        (
            "bad layer",
            {
                let mut v = good.clone();
                v["shift_layers"][0]["channels"] = json!(0);
                serde_json::to_vec(&v).unwrap()
            },
            "shift_layers must be those of asnet20-16x1: blocks.0.shift (16)",
        ),
        (
            "a layer missing",
            {
                let mut v = good.clone();
                v["shift_layers"].as_array_mut().unwrap().pop();
                serde_json::to_vec(&v).unwrap()
            },
            "shift_layers must be those of asnet20-16x1",
        ),
        ("no layers", with("shift_layers", json!([])), "found none"),
        (
            "another network's parameter count",
            with("params", json!(37450)),
            "params 37450 is not the 35098 parameters of asnet20-16x1",
        ),
        (
            "a network past the limits",
            {
                let mut v = good.clone();
                v["recipe"]["arch"] = json!("asnet20-100000000x1");
                serde_json::to_vec(&v).unwrap()
            },
            "recipe.arch",
        ),
    ];
    for (what, bytes, expect) in cases {
        std::fs::write(res.join("learned-seed0.json"), &bytes).unwrap();
        let (ok, out, err) = report(&dir, &md);
        assert!(!ok, "{what}: accepted: {out}");
        assert!(
            err.starts_with("error: ") && err.contains(expect) && !err.contains("panicked"),
            "{what}: {err}"
        );
    }
    std::fs::remove_file(res.join("learned-seed0.json")).unwrap();
    // Not a regular file: a folder, a FIFO, a link to a device.
    std::fs::create_dir(res.join("learned-seed0.json")).unwrap();
    let (ok, _, err) = report(&dir, &md);
    assert!(
        !ok && err.starts_with("error: ") && !err.contains("panicked"),
        "{err}"
    );
    std::fs::remove_dir(res.join("learned-seed0.json")).unwrap();
    #[cfg(unix)]
    {
        let fifo = res.join("learned-seed0.json");
        assert!(
            Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        let (ok, _, err) = report(&dir, &md);
        assert!(
            !ok && err.starts_with("error: ") && err.contains("learned-seed0"),
            "{err}"
        );
        std::fs::remove_file(&fifo).unwrap();
        std::os::unix::fs::symlink("/dev/zero", &fifo).unwrap();
        let (ok, _, err) = report(&dir, &md);
        assert!(
            !ok && err.starts_with("error: ") && err.contains("learned-seed0"),
            "{err}"
        );
        std::fs::remove_file(&fifo).unwrap();
    }
    // Nothing was written by the failed reports.
    assert!(!md.exists());
    // A progress file past its recipe's end, or with an absurd time: the run is listed with
    // the reason its progress is unreadable (the finished runs are what the report is made of).
    let progress = |epoch: u64, seconds: f64| {
        let mut p = json!({
            "format": "activeshift-ablation-progress-v1", "variant": "learned", "seed": 1,
            "initial_shifts_source": "recorded at the run's start", "initial_shifts": {},
            "epoch": epoch, "step_in_epoch": 0,
            "sessions": [{"machine": {"cpu": "x", "threads": 2}, "seconds": seconds, "steps": 100}],
        });
        p["recipe"] = good["recipe"].clone();
        p
    };
    std::fs::create_dir_all(res.join("in-progress")).unwrap();
    for (p, expect) in [
        (
            progress(18, 60.0),
            "epoch 18 is past the recipe's 17 epochs",
        ),
        (
            progress(3, 1e300),
            "sessions.seconds must be a number in 0..=1e9",
        ),
    ] {
        write(&res.join("in-progress"), "learned-seed1.json", &p);
        let (ok, out, err) = report(&dir, &md);
        assert!(ok, "{err}");
        let line = out
            .lines()
            .find(|l| l.starts_with("- learned seed 1:"))
            .unwrap_or_else(|| panic!("{out}"));
        assert!(
            line.contains("progress file unreadable") && line.contains(expect),
            "{line}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A checkpoint of `activeshift train` with the run's settings, copied into `in-progress/`, is
/// continued: its initial shifts are recomputed from the seed (the movement is measured from
/// them) and its earlier steps are counted as untimed.
#[test]
fn a_train_checkpoint_is_adopted_with_its_start_recomputed_from_the_seed() {
    use activeshift::train::{TrainSettings, Trainer, fashion_mnist_config};
    let dir = tmpdir("adopt");
    synthetic_fashion(&dir, 500, 50);
    let runs = dir.join("runs");
    std::fs::create_dir_all(runs.join("in-progress")).unwrap();
    let ckpt = runs.join("in-progress/learned-seed1.ckpt");
    let (ok, _, err) = run(bin()
        .env("ACTIVESHIFT_DATA", &dir)
        .args(["train", "--epochs", "1", "--limit", "40", "--seed", "1"])
        .args(["--backend", "cpu", "--checkpoint"])
        .arg(&ckpt)
        .arg("-o")
        .arg(dir.join("m.safetensors")));
    assert!(ok, "{err}");
    let (ok, _, err) = run(bin()
        .env("ACTIVESHIFT_DATA", &dir)
        .args([
            "ablation",
            "--only",
            "learned:1",
            "--epochs",
            "1",
            "--limit",
            "40",
        ])
        .arg("--dir")
        .arg(&runs));
    assert!(ok, "{err}");
    assert!(err.contains("learned-seed1: resuming"), "{err}");
    let r = read_json(&runs.join("learned-seed1.json"));
    assert_eq!(
        r["initial_shifts_source"],
        "recomputed from the seed (no progress file)"
    );
    assert_eq!(r["untimed_steps"], 3, "{r}");
    // The movement is measured from the start a fresh run of seed 1 has.
    let labels = activeshift::data::LABELS
        .iter()
        .map(|s| s.to_string())
        .collect();
    let settings = TrainSettings {
        epochs: 1,
        seed: 1,
        ..TrainSettings::default()
    };
    let start = Trainer::new(fashion_mnist_config(16, 1), labels, settings).unwrap();
    let model = activeshift::Model::load(runs.join("learned-seed1.safetensors")).unwrap();
    let (s, e) = (
        &start.params["blocks.4.shift"],
        &model.params["blocks.4.shift"].data,
    );
    let change = s
        .iter()
        .zip(e)
        .map(|(a, b)| f64::from((b - a).abs()))
        .sum::<f64>()
        / s.len() as f64;
    let layer = &r["shift_layers"][4];
    assert_eq!(layer["name"], "blocks.4.shift");
    assert!(change > 0.0);
    assert!(
        (layer["mean_abs_change"].as_f64().unwrap() - change).abs() < 1e-9,
        "{layer} vs {change}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
