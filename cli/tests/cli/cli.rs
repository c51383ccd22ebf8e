//! The `activeshift` program end to end: import the authors' weights, classify, errors.

use crate::common;
use common::{bin, run, run_code, tmpdir};

use std::path::{Path, PathBuf};
use std::process::Command;

/// One of the repository's own sample images.
const SAMPLE: &str = concat!(
    concat!(env!("CARGO_MANIFEST_DIR"), "/.."),
    "/examples/images/sneaker-0.png"
);

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
fn info_times_every_kernel_pipeline() {
    let (ok, out, err) = run(bin().args(["info", "--compile-times"]));
    assert!(ok, "{err}");
    let rows = activeshift::gpu::kernels::SHADER_BINDINGS.len();
    assert!(
        out.contains(&format!("| total | {rows} pipelines |")),
        "{out}"
    );
    assert!(
        out.contains("| `conv1x1_reg.wgsl` | `main_wide_whole` |"),
        "{out}"
    );
}

#[test]
fn import_then_classify_the_cat() {
    let Some(shared) = common::shared_data("cli::import_then_classify_the_cat") else {
        return;
    };
    let dir = tmpdir("cat");
    let model = dir.join("w32.safetensors");
    let caffemodel = shared.caffemodel();
    let (ok, out, err) = run(bin().args(["import-caffe", &caffemodel, "-o"]).arg(&model));
    assert!(ok, "{err}");
    assert!(out.contains("as-resnet-w32, 901256 parameters"), "{out}");
    // Never overwrite silently.
    let (ok, _, err) = run(bin().args(["import-caffe", &caffemodel, "-o"]).arg(&model));
    assert!(!ok && err.contains("file exists"), "{err}");

    let cat = shared.cat();
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
    let (ok, _, err) = run(bin().args(["classify", "--model", SAMPLE, SAMPLE]));
    assert!(!ok);
    assert!(err.starts_with("error: invalid safetensors"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    let dir = tmpdir("not-a-model");
    let (ok, _, err) = run(bin()
        .args(["import-caffe", SAMPLE, "-o"])
        .arg(dir.join("x.safetensors")));
    assert!(!ok && err.starts_with("error: invalid caffemodel"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_embedded_default_model_classifies_the_samples() {
    // No --model: the shipped Fashion-MNIST ASNet-20 26x1 (94.76% on the test split).
    let dir = concat!(
        concat!(env!("CARGO_MANIFEST_DIR"), "/.."),
        "/examples/images"
    );
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
        assert_eq!(v.model, "asnet20-26x1");
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
    let sample =
        Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/..")).join("web/www/samples/orange.png");
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
    let sample =
        Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/..")).join("web/www/samples/orange.png");
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

/// Ctrl-C during training writes a checkpoint at the step it stopped and prints the command
/// that resumes; that command, run as printed, finishes the run.
#[cfg(unix)]
/// `import-caffe` in an empty folder, with nothing beside the weights: the ImageNet names come
/// from activeshift itself; `--labels` still replaces them.
#[test]
fn import_labels_come_from_the_binary_and_labels_overrides_them() {
    let Some(shared) =
        common::shared_data("cli::import_labels_come_from_the_binary_and_labels_overrides_them")
    else {
        return;
    };
    let dir = tmpdir("labels");
    let caffemodel = dir.join("weights.caffemodel");
    std::fs::copy(shared.caffemodel(), &caffemodel).unwrap();
    let cat = shared.cat();
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
    let Some(shared) = common::shared_data(
        "cli::a_pretrained_model_by_name_is_downloaded_verified_and_cached_once",
    ) else {
        return;
    };
    let dir = tmpdir("pretrained");
    let cache = dir.join("cache");
    let weights = std::fs::read(shared.caffemodel()).unwrap();
    let (base, requests) = serve(W32_PATH, weights.clone());
    let cat = shared.cat();
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
    std::fs::remove_dir_all(&dir).unwrap();
}

/// An address where nothing listens (offline).
fn closed_port() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", l.local_addr().unwrap())
}

/// Offline, `--model as-resnet-w32` fails at once with the command that installs the authors'
/// file by hand; that command, run as printed (the file put in its place), installs it where
/// the same `--model as-resnet-w32` finds it, still offline.
#[test]
fn offline_by_name_prints_the_command_that_installs_it() {
    let dir = tmpdir("offline");
    let cache = dir.join("cache");
    let closed = closed_port();
    let start = std::time::Instant::now();
    let by_name = |args: &[&str]| {
        run(bin()
            .current_dir(&dir)
            .env_remove("CARGO")
            .env("ACTIVESHIFT_PRETRAINED_URL", &closed)
            .env("ACTIVESHIFT_CACHE_DIR", &cache)
            .args(args))
    };
    let (ok, _, err) = by_name(&["info", "--model", "as-resnet-w32"]);
    assert!(!ok && err.contains("cannot download"), "{err}");
    assert!(start.elapsed().as_secs() < 20);
    // Outside cargo (no `CARGO` variable) the message names the program as it was started.
    let exe = env!("CARGO_BIN_EXE_activeshift");
    let printed = format!("`{exe} import-caffe FILE --install`");
    assert!(err.contains(&printed), "{err}");
    assert!(
        err.contains("AS-ResNet-w32_iter_450360.caffemodel"),
        "{err}"
    );
    // Through `cargo run`, the command is cargo's.
    let (_, _, err) = run(bin()
        .env("ACTIVESHIFT_PRETRAINED_URL", &closed)
        .env("ACTIVESHIFT_CACHE_DIR", &cache)
        .env("CARGO", "cargo")
        .args(["info", "--model", "as-resnet-w32"]));
    assert!(
        err.contains("`cargo run --release -- import-caffe FILE --install`"),
        "{err}"
    );
    // The wider models: no checksum known here, so no download; the error says what to do.
    let (ok, _, err) = by_name(&["info", "--model", "as-resnet-w50"]);
    assert!(
        !ok && err.contains("no checksum") && err.contains("import-caffe"),
        "{err}"
    );
    // A file that is not the authors' w32 is not installed under its name.
    let (ok, _, err) = by_name(&["import-caffe", SAMPLE, "--install"]);
    assert!(!ok && err.contains("SHA-256"), "{err}");
    assert!(!cache.join("as-resnet-w32.safetensors").exists());

    let Some(shared) =
        common::shared_data("cli::offline_by_name_prints_the_command_that_installs_it")
    else {
        return;
    };
    // The printed command, with FILE the authors' weights.
    let (ok, out, err) = by_name(&["import-caffe", &shared.caffemodel(), "--install"]);
    assert!(ok, "{err}");
    let installed = cache.join("as-resnet-w32.safetensors");
    assert!(installed.is_file(), "{out}{err}");
    assert!(out.contains(&installed.display().to_string()), "{out}");
    let (ok, out, err) = by_name(&[
        "classify",
        "--json",
        "--backend",
        "cpu",
        "--model",
        "as-resnet-w32",
        &shared.cat(),
    ]);
    assert!(ok, "{err}");
    let v: activeshift::Classification = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        (v.top[0].class, v.top[0].label.as_str()),
        (285, "Egyptian cat")
    );
    assert!(!err.contains("download"), "{err}");
    // Installing again: already there, not replaced without --force.
    let (ok, _, err) = by_name(&["import-caffe", &shared.caffemodel(), "--install"]);
    assert!(!ok && err.contains("exists"), "{err}");
    let (ok, _, err) = by_name(&["import-caffe", &shared.caffemodel(), "--install", "--force"]);
    assert!(ok, "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn classify_takes_folders_and_stdin_and_refuses_top_zero() {
    let samples = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/..")).join("examples/images");
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
