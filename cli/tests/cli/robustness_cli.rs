//! Bad input, faults and limits (the CLI): see `robustness_files.rs` for the suite's
//! scope and the classes tested elsewhere.

use crate::bad_input;
use crate::common;
use activeshift::Error;
use activeshift::model::{ArchConfig, Model, import_caffe};
use activeshift::preprocess::{decode_image, preprocess};
use bad_input::*;
use common::tmpdir;
use image::{DynamicImage, ImageFormat};
use std::path::Path;

// --- the CLI ---------------------------------------------------------------------------------

#[test]
fn the_cli_reports_every_bad_input_in_one_line_without_panicking() {
    let dir = tmpdir("cli");
    let model_path = dir.join("tiny.safetensors");
    Model::synthetic(&tiny_config(), 4)
        .unwrap()
        .save(&model_path, true)
        .unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    let good = write(
        "good.png",
        &encode(&DynamicImage::ImageRgb8(photo(12, 9)), ImageFormat::Png),
    );
    let o = |p: &Path| p.as_os_str().to_owned();
    let s = |v: &str| std::ffi::OsString::from(v);

    // Bad images: one line each, the good image still classified, exit status 1.
    let huge = write("huge.png", &png_claiming(20000, 20000));
    let corrupt = write("corrupt.jpg", b"\xff\xd8\xff\xe0 not really a jpeg");
    let missing = dir.join("missing.png");
    let args = [
        s("classify"),
        s("--backend"),
        s("cpu"),
        s("--model"),
        o(&model_path),
        o(&good),
        o(&huge),
        o(&corrupt),
        o(&missing),
    ];
    let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    let (code, out, err) = cli(&args);
    assert_eq!(code, Some(1), "{err}");
    assert!(out.contains("good.png (asnet20-4x1 on cpu)"), "{out}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 4, "{err}");
    assert!(
        lines[0].starts_with(&format!("error: {}: invalid image: ", huge.display()))
            && lines[0].contains("16384 x 16384"),
        "{err}"
    );
    assert!(
        lines[1].starts_with(&format!("error: {}: invalid image: ", corrupt.display())),
        "{err}"
    );
    assert!(
        lines[2].starts_with(&format!("error: {}: ", missing.display()))
            && lines[2].contains("No such file"),
        "{err}"
    );
    assert_eq!(
        lines[3],
        "error: classify: invalid argument: 3 of 4 images could not be classified"
    );
    assert!(!err.contains("panicked"), "{err}");

    // Bad model files: one line naming the file and the problem.
    let absurd = write(
        "absurd.safetensors",
        &safetensors_bytes(
            r#"{"w":{"dtype":"F32","shape":[1099511627776],"data_offsets":[0,4]}}"#,
            &[0; 4],
        ),
    );
    let err = cli_fails(&[&s("classify"), &s("--model"), &o(&absurd), &o(&good)]);
    assert_eq!(
        err.trim_end(),
        format!(
            "error: invalid safetensors: {}: tensor `w`: shape [1099511627776] needs \
             1099511627776 elements of F32, 4398046511104 bytes, but its data_offsets [0, 4] \
             hold 4 bytes",
            absurd.display()
        )
    );
    let config = write(
        "config.safetensors",
        &file_with_config(|c| c["stages"][0]["stride"] = serde_json::json!(0)),
    );
    let err = cli_fails(&[&s("info"), &s("--model"), &o(&config)]);
    assert_eq!(
        err.trim_end(),
        format!(
            "error: invalid model config: {}: field `stages[0].stride`: must be in 1..=65536, \
             found 0",
            config.display()
        )
    );
    let err = cli_fails(&[&s("classify"), &s("--model"), &o(&dir), &o(&good)]);
    assert!(err.contains("directory"), "{err}");
    let err = cli_fails(&[&s("import-caffe"), &o(&good), &s("-o"), &o(&dir.join("x"))]);
    assert!(
        err.starts_with(&format!("error: invalid caffemodel: {}: ", good.display())),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

// --- fuzzing regressions ---------------------------------------------------------------------

/// Replay every input kept in `tests/data/regressions/<target>/` (crashes and slow inputs found
/// by `cargo fuzz`, see `fuzz/README.md`) through what the fuzz target runs: each must return,
/// with a result or an error.
#[test]
fn fuzz_regressions_do_not_crash() {
    let root = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/..")).join("tests/data/regressions");
    let mut replayed = 0;
    for target in ["safetensors_model", "caffemodel", "image", "checkpoint"] {
        // A target without regressions has no folder.
        let Ok(entries) = std::fs::read_dir(root.join(target)) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            match target {
                "safetensors_model" => {
                    if let Ok(m) = Model::from_safetensors(&data) {
                        let again = Model::from_safetensors(&m.to_safetensors().unwrap()).unwrap();
                        assert_eq!(again, m, "{}", path.display());
                    }
                }
                "caffemodel" => {
                    if let Ok(layers) = activeshift::caffe::parse_caffemodel(&data) {
                        let _ = import_caffe(&layers, Vec::new());
                    }
                }
                "checkpoint" => {
                    use activeshift::train::Trainer;
                    if let Ok(t) = Trainer::from_checkpoint_bytes(&data) {
                        let again =
                            Trainer::from_checkpoint_bytes(&t.checkpoint_bytes().unwrap()).unwrap();
                        assert_eq!(again, t, "{}", path.display());
                        // A checkpoint that loads exports its model (the fuzz target's contract).
                        t.export()
                            .unwrap_or_else(|e| panic!("{}: export: {e}", path.display()));
                    }
                }
                _ => {
                    if let Ok(img) = decode_image(&data) {
                        for p in [imagenet(), tiny_config().preprocess] {
                            let x = preprocess(&img, &p).unwrap();
                            assert_eq!(x.len(), p.color.channels() * p.crop[0] * p.crop[1]);
                        }
                    }
                }
            }
            replayed += 1;
        }
    }
    eprintln!("replayed {replayed} fuzz regression inputs");
    // At least the committed GIF regression: a moved or emptied folder fails here instead of
    // replaying nothing.
    assert!(
        replayed >= 1,
        "no fuzz regression inputs found under {}",
        root.display()
    );
}

// --- fuzz seeds ------------------------------------------------------------------------------

/// Protobuf encoding, just enough for caffemodel seeds.
mod pb {
    pub fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    pub fn bytes(out: &mut Vec<u8>, field: u64, data: &[u8]) {
        varint(out, field << 3 | 2);
        varint(out, data.len() as u64);
        out.extend_from_slice(data);
    }
    pub fn int(out: &mut Vec<u8>, field: u64, v: u64) {
        varint(out, field << 3);
        varint(out, v);
    }
    /// A BlobProto with `shape.dim` and packed f32 `data` (or legacy 4-d fields and packed
    /// `double_data`).
    pub fn blob(dims: &[i64], legacy: bool, values: &[f32]) -> Vec<u8> {
        let mut b = Vec::new();
        if legacy {
            for (f, d) in dims.iter().enumerate() {
                int(&mut b, f as u64 + 1, *d as u64);
            }
            let data: Vec<u8> = values
                .iter()
                .flat_map(|v| f64::from(*v).to_le_bytes())
                .collect();
            bytes(&mut b, 8, &data);
        } else {
            let mut shape = Vec::new();
            let mut packed = Vec::new();
            for d in dims {
                varint(&mut packed, *d as u64);
            }
            bytes(&mut shape, 1, &packed);
            bytes(&mut b, 7, &shape);
            let data: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            bytes(&mut b, 5, &data);
        }
        b
    }
    pub fn layer(name: &str, kind: &str, blobs: &[Vec<u8>]) -> Vec<u8> {
        let mut l = Vec::new();
        bytes(&mut l, 1, name.as_bytes());
        bytes(&mut l, 2, kind.as_bytes());
        for b in blobs {
            bytes(&mut l, 7, b);
        }
        l
    }
    pub fn net(layers: &[Vec<u8>]) -> Vec<u8> {
        let mut n = Vec::new();
        bytes(&mut n, 1, b"seed");
        for l in layers {
            bytes(&mut n, 100, l);
        }
        n
    }
}

/// Writes the seed corpora of the fuzz targets into `fuzz/seeds/` (run with `--ignored`).
#[test]
#[ignore = "writes fuzz/seeds; run by hand"]
fn write_fuzz_seeds() {
    let root = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/..")).join("fuzz/seeds");
    let put = |target: &str, name: &str, bytes: &[u8]| {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
    };
    // Safetensors: a tiny but complete model, and a file without our metadata.
    let tiny = Model::synthetic(&ArchConfig::asnet20(1, 1, 1, 4, 2), 1).unwrap();
    put(
        "safetensors_model",
        "tiny-model.safetensors",
        &tiny.to_safetensors().unwrap(),
    );
    put(
        "safetensors_model",
        "plain.safetensors",
        &safetensors_bytes(
            r#"{"w":{"dtype":"F32","shape":[2,1],"data_offsets":[0,8]}}"#,
            &[0, 0, 128, 63, 0, 0, 0, 64],
        ),
    );
    // Caffe: a small net in each blob encoding, and the first layers of AS-ResNet-w32.
    let vals = |n: usize| -> Vec<f32> { (0..n).map(|i| (i as f32 * 0.37).sin()).collect() };
    put(
        "caffemodel",
        "small-net.caffemodel",
        &pb::net(&[
            pb::layer("data", "Input", &[]),
            pb::layer(
                "conv",
                "Convolution",
                &[pb::blob(&[2, 1, 1, 1], false, &vals(2))],
            ),
            pb::layer("old", "Scale", &[pb::blob(&[1, 1, 1, 3], true, &vals(3))]),
        ]),
    );
    let c = 32;
    put(
        "caffemodel",
        "as-resnet-w32-head.caffemodel",
        &pb::net(&[
            pb::layer(
                "conv0",
                "Convolution",
                &[pb::blob(&[c, 3, 3, 3], false, &vals(864))],
            ),
            pb::layer(
                "scale0_0",
                "Scale",
                &[
                    pb::blob(&[c], false, &vals(32)),
                    pb::blob(&[c], false, &vals(32)),
                ],
            ),
            pb::layer(
                "conv0_0/1",
                "Convolution",
                &[pb::blob(&[c, c, 1, 1], false, &vals(1024))],
            ),
            pb::layer(
                "scale0_0/1",
                "Scale",
                &[
                    pb::blob(&[c], false, &vals(32)),
                    pb::blob(&[c], false, &vals(32)),
                ],
            ),
            pb::layer(
                "shift0_0/2",
                "SpatialShift",
                &[
                    pb::blob(&[c], false, &vals(32)),
                    pb::blob(&[c], false, &vals(32)),
                ],
            ),
            pb::layer(
                "conv0_0/3",
                "Convolution",
                &[pb::blob(&[c, c, 1, 1], false, &vals(1024))],
            ),
        ]),
    );
    // Images: every format and several pixel types, a few pixels each.
    let rgb = DynamicImage::ImageRgb8(photo(5, 3));
    for (name, img, format) in [
        ("rgb.png", rgb.clone(), ImageFormat::Png),
        (
            "rgba.png",
            DynamicImage::ImageRgba8(rgb.to_rgba8()),
            ImageFormat::Png,
        ),
        (
            "gray16.png",
            DynamicImage::ImageLuma16(rgb.to_luma16()),
            ImageFormat::Png,
        ),
        ("rgb.jpg", rgb.clone(), ImageFormat::Jpeg),
        (
            "gray.jpg",
            DynamicImage::ImageLuma8(rgb.to_luma8()),
            ImageFormat::Jpeg,
        ),
        ("rgb.gif", rgb.clone(), ImageFormat::Gif),
        ("rgb.bmp", rgb.clone(), ImageFormat::Bmp),
        (
            "rgba.webp",
            DynamicImage::ImageRgba8(rgb.to_rgba8()),
            ImageFormat::WebP,
        ),
    ] {
        put("image", name, &encode(&img, format));
    }
    // Checkpoint: a tiny run's, fresh.
    let t = activeshift::train::Trainer::new(
        ArchConfig::asnet20(1, 1, 1, 4, 2),
        vec![],
        Default::default(),
    )
    .unwrap();
    put("checkpoint", "tiny.ckpt", &t.checkpoint_bytes().unwrap());
}

/// Files far larger than any model, checkpoint or dataset cache (a 2 GiB + 1 byte sparse file,
/// standing in for a wrong path or a device) are refused by size before they are read.
#[test]
fn oversized_checkpoints_and_dataset_caches_are_refused_before_reading() {
    let dir = tmpdir("oversized");
    let path = dir.join("huge.bin");
    let file = std::fs::File::create(&path).unwrap();
    file.set_len((2u64 << 30) + 1).unwrap();
    drop(file);
    let err = activeshift::train::Trainer::load_checkpoint(&path).unwrap_err();
    assert!(
        err.to_string()
            .contains("at most 2147483648 bytes are accepted"),
        "{err}"
    );
    let err = activeshift::data::FashionMnist::load_cache(&path).unwrap_err();
    assert!(
        err.to_string()
            .contains("at most 1073741824 bytes are accepted"),
        "{err}"
    );
    // A directory in place of the file is an I/O error, not a panic.
    let err = activeshift::data::FashionMnist::load_cache(&dir).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Finite statistics that fold into an infinite model (the fuzz finding kept in
/// `tests/data/regressions/checkpoint/`) are refused when the checkpoint is read, with the
/// reason, instead of failing when the run writes its model.
#[test]
fn checkpoints_whose_batchnorm_folds_to_infinity_are_refused() {
    let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .join("tests/data/regressions/checkpoint/bn-folds-to-infinity.ckpt");
    let data = std::fs::read(&path).unwrap();
    let err = activeshift::train::Trainer::from_checkpoint_bytes(&data)
        .unwrap_err()
        .to_string();
    assert!(err.contains("do not fold into a model"), "{err}");
    assert!(err.contains("head.bias"), "{err}");
}
