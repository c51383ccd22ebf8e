//! Files: atomic writes (symlinks, concurrent writers and readers, the overwrite rule at the
//! rename, long names), bounded reads (FIFOs, devices, directories, size caps), safetensors
//! headers (duplicate names, too many tensors), byte-reproducible model files, checkpoints
//! that are validated before a run resumes from them, and a softmax that stays finite.

use crate::common;

use activeshift::model::{ArchConfig, Model, write_atomic};
use activeshift::{Error, cpu};
use common::tmpdir;
use std::path::Path;
use std::time::{Duration, Instant};

fn tiny_config() -> ArchConfig {
    ArchConfig::asnet20(4, 1, 1, 8, 3)
}

fn format_msg<T: std::fmt::Debug>(r: activeshift::Result<T>, format: &str) -> String {
    match r {
        Err(Error::Format { format: f, msg }) => {
            assert_eq!(f, format, "wrong format in `{msg}`");
            msg
        }
        other => panic!("expected an invalid {format} error, got {other:?}"),
    }
}

fn io_msg<T: std::fmt::Debug>(r: activeshift::Result<T>) -> (String, std::io::ErrorKind) {
    match r {
        Err(Error::Io { path, source }) => (format!("{path}: {source}"), source.kind()),
        other => panic!("expected an I/O error, got {other:?}"),
    }
}

fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp"))
        .collect()
}

/// Runs `f` on a thread and fails the test if it has not returned within `secs` (a hang).
fn within<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(secs))
        .expect("did not return in time (a hang)")
}

// --- atomic writes ---------------------------------------------------------------------------

#[cfg(unix)]
#[test]
fn atomic_writes_never_follow_symlinks() {
    use std::os::unix::fs::symlink;
    let dir = tmpdir("symlink");
    let victim = dir.join("victim.txt");
    std::fs::write(&victim, b"precious").unwrap();
    // The old fixed temporary name, planted as a symlink to another file.
    let out = dir.join("out.safetensors");
    symlink(&victim, dir.join(".out.safetensors.tmp")).unwrap();
    write_atomic(&out, b"model", false).unwrap();
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    assert!(
        std::fs::symlink_metadata(&out)
            .unwrap()
            .file_type()
            .is_file()
    );
    assert_eq!(std::fs::read(&out).unwrap(), b"model");
    // A symlink at the target: refused without overwrite (also when dangling), replaced (not
    // written through) with it.
    let link = dir.join("link.svg");
    symlink(&victim, &link).unwrap();
    let (msg, kind) = io_msg(write_atomic(&link, b"plot", false));
    assert_eq!(kind, std::io::ErrorKind::AlreadyExists, "{msg}");
    let dangling = dir.join("dangling.svg");
    symlink(dir.join("nothing"), &dangling).unwrap();
    let (_, kind) = io_msg(write_atomic(&dangling, b"plot", false));
    assert_eq!(kind, std::io::ErrorKind::AlreadyExists);
    assert!(!dir.join("nothing").exists());
    write_atomic(&link, b"plot", true).unwrap();
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_file()
    );
    assert_eq!(std::fs::read(&link).unwrap(), b"plot");
    assert_eq!(leftovers(&dir), [".out.safetensors.tmp"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn atomic_writes_keep_an_existing_file_without_overwrite() {
    let dir = tmpdir("noclobber");
    let out = dir.join("m.safetensors");
    write_atomic(&out, b"first", false).unwrap();
    let (msg, kind) = io_msg(write_atomic(&out, b"second", false));
    assert_eq!(kind, std::io::ErrorKind::AlreadyExists);
    assert!(msg.contains("file exists"), "{msg}");
    assert_eq!(std::fs::read(&out).unwrap(), b"first");
    write_atomic(&out, b"third", true).unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), b"third");
    // A directory is never replaced.
    let sub = dir.join("sub");
    std::fs::create_dir(&sub).unwrap();
    io_msg(write_atomic(&sub, b"x", true));
    assert!(sub.is_dir());
    // The rule holds at the rename: of many writers racing to create one new file without
    // overwrite, exactly one succeeds and the file holds its bytes whole.
    for round in 0..20 {
        let target = dir.join(format!("race-{round}"));
        let handles: Vec<_> = (0..4u8)
            .map(|w| {
                let target = target.clone();
                std::thread::spawn(move || {
                    write_atomic(&target, &vec![w; 1 << 16], false).map(|()| w)
                })
            })
            .collect();
        let winners: Vec<u8> = handles
            .into_iter()
            .filter_map(|h| h.join().unwrap().ok())
            .collect();
        assert_eq!(winners.len(), 1, "round {round}: {winners:?}");
        assert_eq!(std::fs::read(&target).unwrap(), vec![winners[0]; 1 << 16]);
    }
    assert!(leftovers(&dir).is_empty(), "{:?}", leftovers(&dir));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn atomic_writes_take_names_of_255_bytes() {
    let dir = tmpdir("long");
    let name = format!("{}.safetensors", "m".repeat(255 - ".safetensors".len()));
    assert_eq!(name.len(), 255);
    let out = dir.join(&name);
    Model::synthetic(&tiny_config(), 3)
        .unwrap()
        .save(&out, false)
        .unwrap();
    Model::load(&out).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn concurrent_writers_and_readers_see_a_whole_file() {
    // Four writers replace one file over and over, each with its own content (a model of its
    // own seed); two readers load it all the while. Every load must give one of the writers'
    // models, never a mix, a short file or a missing one.
    let dir = tmpdir("concurrent");
    let out = dir.join("m.safetensors");
    let config = ArchConfig::asnet20(16, 1, 1, 28, 10);
    let models: Vec<Model> = (0..4)
        .map(|s| Model::synthetic(&config, s).unwrap())
        .collect();
    models[0].save(&out, false).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (out, stop, models) = (out.clone(), stop.clone(), models.clone());
            std::thread::spawn(move || {
                let mut loads = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let m = Model::load(&out).unwrap();
                    assert!(models.contains(&m), "a load gave a model nobody wrote");
                    loads += 1;
                }
                loads
            })
        })
        .collect();
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (out, m) = (out.clone(), models[w].clone());
            std::thread::spawn(move || {
                for _ in 0..25 {
                    m.save(&out, true).unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let loads: usize = readers.into_iter().map(|r| r.join().unwrap()).sum();
    assert!(loads > 0);
    assert!(models.contains(&Model::load(&out).unwrap()));
    assert!(leftovers(&dir).is_empty(), "{:?}", leftovers(&dir));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn model_files_are_byte_reproducible() {
    let m = Model::synthetic(&tiny_config(), 5).unwrap();
    let a = m.to_safetensors().unwrap();
    for _ in 0..8 {
        assert_eq!(m.to_safetensors().unwrap(), a);
    }
    // Keys in sorted order: `__metadata__` first, its keys sorted, then the tensors.
    let len = u64::from_le_bytes(a[..8].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&a[8..8 + len]).unwrap();
    let config = header.find("\"config\"").unwrap();
    let format = header.find("\"format\"").unwrap();
    let labels = header.find("\"labels\"").unwrap();
    assert!(header.starts_with("{\"__metadata__\""), "{header}");
    assert!(config < format && format < labels, "{header}");
    assert_eq!(Model::from_safetensors(&a).unwrap(), m);
}

// --- bounded reads ---------------------------------------------------------------------------

#[cfg(unix)]
#[test]
fn fifos_devices_and_directories_are_refused_by_type_without_blocking() {
    let dir = tmpdir("fifo");
    let fifo = dir.join("model.safetensors");
    let ok = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(ok.success());
    let f = fifo.clone();
    let (msg, _) = io_msg(within(10, move || Model::load(&f)));
    assert!(
        msg.contains("is a FIFO (named pipe); only regular files are read"),
        "{msg}"
    );
    let f = fifo.clone();
    let (msg, _) = io_msg(within(10, move || {
        activeshift::preprocess::read_image_file(&f)
    }));
    assert!(msg.contains("FIFO"), "{msg}");
    // A symlink to the FIFO: the same.
    let link = dir.join("link.jpg");
    std::os::unix::fs::symlink(&fifo, &link).unwrap();
    let (msg, _) = io_msg(within(10, move || {
        activeshift::model::read_labels_file(&link)
    }));
    assert!(msg.contains("FIFO"), "{msg}");
    for dev in ["/dev/zero", "/dev/urandom", "/dev/null"] {
        let started = Instant::now();
        let (msg, _) = io_msg(Model::load(Path::new(dev)));
        assert_eq!(
            msg,
            format!("{dev}: is a device; only regular files are read")
        );
        assert!(started.elapsed() < Duration::from_secs(1));
        let (msg, _) = io_msg(activeshift::model::read_labels_file(Path::new(dev)));
        assert!(msg.contains("is a device"), "{msg}");
    }
    let (msg, _) = io_msg(activeshift::preprocess::read_image_file(&dir));
    assert!(
        msg.ends_with("is a directory; only regular files are read"),
        "{msg}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn labels_files_have_a_size_cap() {
    let dir = tmpdir("labels");
    let big = dir.join("labels.txt");
    let f = std::fs::File::create(&big).unwrap();
    f.set_len(activeshift::model::MAX_LABELS_FILE_BYTES + 1)
        .unwrap();
    let msg = format_msg(activeshift::model::read_labels_file(&big), "labels file");
    assert!(msg.contains("at most 16777216 bytes are accepted"), "{msg}");
    std::fs::write(&big, b"cat\n\xff\xfe\n").unwrap();
    let msg = format_msg(activeshift::model::read_labels_file(&big), "labels file");
    assert!(msg.contains("not UTF-8"), "{msg}");
    std::fs::write(&big, b"cat\ndog\n\n").unwrap();
    assert_eq!(
        activeshift::model::read_labels_file(&big).unwrap(),
        ["cat", "dog"]
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

// --- safetensors headers ---------------------------------------------------------------------

fn safetensors_bytes(header: &str, data: &[u8]) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

#[test]
fn a_tensor_listed_twice_is_refused_in_either_order() {
    let a = r#""w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}"#;
    let b = r#""w":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}"#;
    for header in [format!("{{{a},{b}}}"), format!("{{{b},{a}}}")] {
        let bytes = safetensors_bytes(&header, &[0; 12]);
        let msg = format_msg(Model::from_safetensors(&bytes), "safetensors");
        assert!(msg.contains("`w` is listed twice"), "{msg}");
    }
    // Also in a real model file: a duplicated entry of `fc.bias` at the end.
    let m = Model::synthetic(&tiny_config(), 1).unwrap();
    let bytes = m.to_safetensors().unwrap();
    let len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&bytes[8..8 + len]).unwrap().trim_end();
    let entry = &header[header.find("\"fc.bias\"").unwrap()..];
    let entry = &entry[..entry.find('}').unwrap() + 1];
    let dup = format!("{},{entry}}}", &header[..header.len() - 1]);
    let bytes = safetensors_bytes(&dup, &bytes[8 + len..]);
    let msg = format_msg(Model::from_safetensors(&bytes), "safetensors");
    assert!(msg.contains("`fc.bias` is listed twice"), "{msg}");
}

#[test]
fn headers_with_too_many_tensors_or_bytes_are_refused_quickly() {
    // 70,000 one-value tensors: over MAX_TENSORS, refused in well under a second.
    let n = activeshift::model::MAX_TENSORS + 5000;
    let mut header = String::from("{");
    for i in 0..n {
        if i > 0 {
            header.push(',');
        }
        header.push_str(&format!(
            r#""t{i}":{{"dtype":"F32","shape":[1],"data_offsets":[{},{}]}}"#,
            4 * i,
            4 * i + 4
        ));
    }
    header.push('}');
    let bytes = safetensors_bytes(&header, &vec![0; 4 * n]);
    let started = Instant::now();
    let msg = format_msg(Model::from_safetensors(&bytes), "safetensors");
    assert!(msg.contains("more than 65536 tensors"), "{msg}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // A header longer than MAX_HEADER_BYTES: refused from its length.
    let mut bytes = Model::synthetic(&tiny_config(), 1)
        .unwrap()
        .to_safetensors()
        .unwrap();
    bytes[..8].copy_from_slice(&(activeshift::model::MAX_HEADER_BYTES + 1).to_le_bytes());
    let msg = format_msg(Model::from_safetensors(&bytes), "safetensors");
    assert_eq!(
        msg,
        "the header is 16777217 bytes long; at most 16777216 are accepted"
    );
}

// --- softmax ---------------------------------------------------------------------------------

#[test]
fn softmax_of_overflowing_logits_stays_a_distribution() {
    let inf = f32::INFINITY;
    let rows: [&[f32]; 6] = [
        &[3e38, -3e38, 0.0],
        &[inf, 1.0, inf],
        &[-inf, -inf, -inf],
        &[f32::NAN, 1.0, 2.0],
        &[f32::MAX, f32::MAX, -f32::MAX],
        &[1.0, 2.0, 3.0],
    ];
    let want: [&[f32]; 6] = [
        &[1.0, 0.0, 0.0],
        &[0.5, 0.0, 0.5],
        &[1.0 / 3.0; 3],
        &[0.0, 0.268_941_43, 0.731_058_6],
        &[0.5, 0.5, 0.0],
        &[0.090_030_57, 0.244_728_48, 0.665_240_94],
    ];
    for (row, want) in rows.iter().zip(want) {
        let got = cpu::softmax(row, 1, 3).unwrap();
        for (g, w) in got.iter().zip(want) {
            assert!(
                (g - w).abs() < 1e-6,
                "softmax({row:?}) = {got:?}, want {want:?}"
            );
        }
    }
}

// --- checkpoints -----------------------------------------------------------------------------

#[test]
fn checkpoints_are_validated_before_a_run_resumes() {
    use activeshift::model::{read_tensors, write_tensors_atomic};
    use activeshift::train::{CHECKPOINT_FORMAT, TrainSettings, Trainer};
    let dir = tmpdir("ckpt");
    let good = dir.join("good.ckpt");
    let t = Trainer::new(tiny_config(), vec![], TrainSettings::default()).unwrap();
    t.save_checkpoint(&good).unwrap();
    assert_eq!(Trainer::load_checkpoint(&good).unwrap(), t);
    let (tensors, state) = read_tensors(&good, CHECKPOINT_FORMAT).unwrap();
    let variant = |name: &str,
                   edit_tensors: &dyn Fn(
        &mut std::collections::BTreeMap<String, activeshift::model::HostTensor>,
    ),
                   edit_state: &dyn Fn(&mut serde_json::Value)| {
        let mut ts = tensors.clone();
        edit_tensors(&mut ts);
        let mut st: serde_json::Value = serde_json::from_str(&state).unwrap();
        edit_state(&mut st);
        let path = dir.join(name);
        write_tensors_atomic(&path, &ts, CHECKPOINT_FORMAT, &st.to_string()).unwrap();
        format_msg(Trainer::load_checkpoint(&path), "checkpoint")
    };
    let one = |v: f32| activeshift::model::HostTensor::new(vec![1], vec![v]).unwrap();
    let none = |_: &mut std::collections::BTreeMap<_, _>| {};
    let keep = |_: &mut serde_json::Value| {};
    let msg = variant("batch0.ckpt", &none, &|s| s["settings"]["batch"] = 0.into());
    assert!(
        msg.contains("batch must be 1..=65536 images, found 0"),
        "{msg}"
    );
    let msg = variant("lr.ckpt", &none, &|s| {
        s["settings"]["momentum"] = 1.5.into()
    });
    assert!(msg.contains("momentum must be in [0, 1)"), "{msg}");
    let msg = variant("epochs.ckpt", &none, &|s| {
        s["settings"]["epochs"] = u64::MAX.into()
    });
    assert!(msg.contains("epochs must be at most 1000000"), "{msg}");
    let msg = variant(
        "stem.ckpt",
        &|t| {
            t.insert("param/stem.weight".into(), one(0.5));
        },
        &keep,
    );
    assert!(
        msg.contains("tensor `param/stem.weight` holds 1 values, expected 36"),
        "{msg}"
    );
    let msg = variant(
        "velocity.ckpt",
        &|t| {
            let v = t.get_mut("velocity/fc.weight").unwrap();
            v.data.pop();
            v.dims = vec![v.data.len()];
        },
        &keep,
    );
    assert!(
        msg.contains("tensor `velocity/fc.weight` holds 47 values, expected 48"),
        "{msg}"
    );
    let msg = variant(
        "missing.ckpt",
        &|t| {
            t.remove("velocity/fc.bias");
        },
        &keep,
    );
    assert!(msg.contains("`fc.bias` is missing"), "{msg}");
    let msg = variant(
        "nan.ckpt",
        &|t| {
            t.insert(
                "param/fc.bias".into(),
                activeshift::model::HostTensor::new(vec![3], vec![0.0, f32::NAN, 0.0]).unwrap(),
            );
        },
        &keep,
    );
    assert!(msg.contains("element 1 is NaN"), "{msg}");
    let msg = variant(
        "extra.ckpt",
        &|t| {
            t.insert("param/nothing".into(), one(0.0));
        },
        &keep,
    );
    assert!(msg.contains("unexpected tensor `param/nothing`"), "{msg}");
    let msg = variant("labels.ckpt", &none, &|s| {
        s["labels"] = serde_json::json!(["a"])
    });
    assert!(msg.contains("1 labels for 3 classes"), "{msg}");
    // Batch 0 is refused by a fresh run too (it divided by zero).
    let settings = TrainSettings {
        batch: 0,
        ..TrainSettings::default()
    };
    let err = Trainer::new(tiny_config(), vec![], settings).unwrap_err();
    assert!(err.to_string().contains("batch must be"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

// --- images ----------------------------------------------------------------------------------

/// `jpeg` with an APP1 Exif segment holding only `Orientation = orientation` after its SOI.
fn with_exif_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    let mut tiff = b"MM\x00\x2a\x00\x00\x00\x08".to_vec();
    tiff.extend_from_slice(&1u16.to_be_bytes()); // one entry
    tiff.extend_from_slice(&0x0112u16.to_be_bytes()); // Orientation
    tiff.extend_from_slice(&3u16.to_be_bytes()); // SHORT
    tiff.extend_from_slice(&1u32.to_be_bytes()); // one value
    tiff.extend_from_slice(&orientation.to_be_bytes());
    tiff.extend_from_slice(&[0, 0]);
    tiff.extend_from_slice(&0u32.to_be_bytes()); // no next IFD
    let mut app1 = b"Exif\x00\x00".to_vec();
    app1.extend_from_slice(&tiff);
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&app1);
    out.extend_from_slice(&jpeg[2..]);
    out
}

#[test]
fn exif_orientation_is_applied() {
    // 32 x 16: the left half white, the right half black.
    let img = image::RgbImage::from_fn(32, 16, |x, _| {
        image::Rgb(if x < 16 { [255; 3] } else { [0; 3] })
    });
    let mut jpeg = Vec::new();
    image::DynamicImage::ImageRgb8(img)
        .write_to(
            &mut std::io::Cursor::new(&mut jpeg),
            image::ImageFormat::Jpeg,
        )
        .unwrap();
    let plain = activeshift::preprocess::decode_image(&jpeg).unwrap();
    assert_eq!((plain.width(), plain.height()), (32, 16));
    // Orientation 6: stored sideways, shown turned 90 degrees clockwise: the white left half
    // becomes the top.
    let turned = activeshift::preprocess::decode_image(&with_exif_orientation(&jpeg, 6)).unwrap();
    assert_eq!((turned.width(), turned.height()), (16, 32));
    let rgb = turned.to_rgb8();
    assert!(rgb.get_pixel(8, 4).0[0] > 200, "{:?}", rgb.get_pixel(8, 4));
    assert!(rgb.get_pixel(8, 28).0[0] < 50, "{:?}", rgb.get_pixel(8, 28));
    // Orientation 3 (180 degrees): the white half on the right.
    let flipped = activeshift::preprocess::decode_image(&with_exif_orientation(&jpeg, 3)).unwrap();
    assert_eq!((flipped.width(), flipped.height()), (32, 16));
    let rgb = flipped.to_rgb8();
    assert!(rgb.get_pixel(28, 8).0[0] > 200 && rgb.get_pixel(4, 8).0[0] < 50);
}

/// A JPEG of only a frame header (SOFn with `components` components) and an end marker.
fn jpeg_header(marker: u8, w: u16, h: u16, components: u8) -> Vec<u8> {
    let mut out = vec![0xFF, 0xD8, 0xFF, marker];
    out.extend_from_slice(&(8 + 3 * u16::from(components)).to_be_bytes());
    out.push(8);
    out.extend_from_slice(&h.to_be_bytes());
    out.extend_from_slice(&w.to_be_bytes());
    out.push(components);
    for c in 0..components {
        out.extend_from_slice(&[c + 1, 0x11, 0]);
    }
    out.extend_from_slice(&[0xFF, 0xD9]);
    out
}

#[test]
fn progressive_jpegs_beyond_the_decode_budget_are_refused_before_decoding() {
    // The reported file: progressive CMYK, 16383 x 10922 (1.85 GiB to decode).
    let bytes = jpeg_header(0xC2, 16383, 10922, 4);
    let started = Instant::now();
    let msg = format_msg(activeshift::preprocess::decode_image(&bytes), "image");
    assert!(
        msg.contains("progressive JPEG of 16383 x 10922 pixels and 4 components needs about 2047 MiB; at most 512 MiB"),
        "{msg}"
    );
    assert!(started.elapsed() < Duration::from_secs(1));
    // The same size as a baseline JPEG is left to the decoder's own (output) limit, and a
    // small progressive one passes the estimate (and then fails for lack of scans).
    let msg = format_msg(
        activeshift::preprocess::decode_image(&jpeg_header(0xC0, 16383, 10922, 4)),
        "image",
    );
    assert!(!msg.contains("progressive"), "{msg}");
    let msg = format_msg(
        activeshift::preprocess::decode_image(&jpeg_header(0xC2, 640, 480, 3)),
        "image",
    );
    assert!(!msg.contains("needs about"), "{msg}");
}
