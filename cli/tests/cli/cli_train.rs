//! The `activeshift train` command end to end: folders and outputs checked before any work,
//! Ctrl-C checkpoints and the command that resumes them, settings a resume refuses, files it
//! never replaces, the GPU backend.

use crate::common;
use common::{bin, run, run_code, synthetic_fashion, tmpdir};

use std::path::Path;
use std::process::Command;

#[test]
fn a_killed_training_run_resumes_into_a_valid_model() {
    let dir = tmpdir("train-resume");
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
    // The output is checked before the input is read: any file stands for the weights.
    let sample = concat!(
        concat!(env!("CARGO_MANIFEST_DIR"), "/.."),
        "/examples/images/bag-0.png"
    );
    let (ok, _, err) = run(bin().args(["import-caffe", sample, "-o"]).arg(&empty));
    assert!(!ok && err.contains("is a folder"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

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
    // Both messages count epochs from 1, as the progress bar does.
    let at = format!("in epoch 1 of 2 after step {}", t.step_in_epoch);
    assert!(
        rest.iter()
            .any(|l| l.starts_with(&format!("stopped {at};"))),
        "{err}"
    );
    assert!(
        err2.contains(&format!("resuming {} {at}", ckpt.display())),
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
            "--epochs",
            "1",
            "--lr",
            "0.5",
            "--shift",
            "grouped",
            "--shift-lr-mult",
            "0.1",
            "--resume",
            "-o",
        ],
    )
    .arg(&model));
    assert!(!ok, "{err}");
    assert!(
        err.contains("--lr 0.5 (the run has 0.05)")
            && err.contains("--shift Grouped (the run has Learned)")
            && err.contains("--shift-lr-mult 0.1 (the run has 0.01)"),
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
fn a_file_created_at_the_output_while_a_resumed_run_trains_is_kept() {
    let dir = tmpdir("resume-race");
    synthetic_fashion(&dir, 1600, 50);
    let model = dir.join("m.safetensors");
    let ckpt = dir.join("m.ckpt");
    let train = |extra: &str| {
        let mut cmd = train_cmd(&dir, &["--epochs", "1", "--checkpoint-every", "1", extra]);
        cmd.arg("--checkpoint").arg(&ckpt).arg("-o").arg(&model);
        cmd
    };
    // A run stopped in its first epoch (100 steps): a checkpoint, no model yet.
    let mut child = train("--force")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while !ckpt.exists() && start.elapsed().as_secs() < 120 {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(ckpt.exists(), "no checkpoint within 2 minutes");
    let _ = std::fs::remove_file(&model);
    // Resume; once it has checked its output and started training, another process writes a
    // file there. The run must not replace it when its epoch ends.
    let mut child = train("--resume")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut log = String::new();
    loop {
        let mut line = String::new();
        let n = std::io::BufRead::read_line(&mut stderr, &mut line).unwrap();
        log.push_str(&line);
        assert!(n > 0, "the run ended before training: {log}");
        if line.starts_with("training ") {
            break;
        }
    }
    std::fs::write(&model, b"another process's file").unwrap();
    std::io::Read::read_to_string(&mut stderr, &mut log).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains("exists"), "{log}");
    assert_eq!(std::fs::read(&model).unwrap(), b"another process's file");
    std::fs::remove_dir_all(&dir).unwrap();
}
