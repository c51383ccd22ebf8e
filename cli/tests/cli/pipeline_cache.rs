//! The CLI's pipeline cache (`cli/src/pipeline_cache.rs`): the first GPU run on a machine says that
//! it compiles kernels and saves a cache file; later runs say nothing; a damaged file (bad
//! checksum, or a good checksum over bytes that are no pipeline cache) is survived and
//! replaced.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

/// One of the repository's own sample images.
const SAMPLE: &str = concat!(
    concat!(env!("CARGO_MANIFEST_DIR"), "/.."),
    "/examples/images/sneaker-0.png"
);

/// `classify --backend gpu` of a sample image with the built-in model and the cache in `dir`:
/// (stdout, stderr); panics when the command fails.
fn classify(dir: &Path) -> (String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_activeshift"))
        .env("ACTIVESHIFT_CACHE_DIR", dir)
        .args(["classify", "--backend", "gpu", SAMPLE])
        .output()
        .expect("run activeshift");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "classify failed:\n{stderr}");
    (stdout, stderr)
}

/// The one cache file in `dir`.
fn cache_file(dir: &Path) -> PathBuf {
    let files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("the cache directory exists")
        .map(|e| e.expect("dir entry").path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let name = files[0].file_name().unwrap().to_string_lossy().to_string();
    assert!(
        name.starts_with("pipelines-") && name.ends_with(".bin"),
        "{name}"
    );
    files[0].clone()
}

/// 64-bit FNV-1a (the file's checksum).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[test]
fn the_first_run_says_it_compiles_and_a_damaged_cache_is_survived() {
    if common::gpu("pipeline cache: first run, later runs, damaged file").is_none() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("activeshift-pipelines-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);

    let (first, err) = classify(&dir);
    assert!(
        err.contains("compiling kernels for") && err.contains("first run on this machine"),
        "{err}"
    );
    assert!(
        err.contains("compiled ") && err.contains(" kernels in "),
        "{err}"
    );
    let file = cache_file(&dir);
    let bytes = std::fs::read(&file).unwrap();
    assert!(bytes.len() >= 8, "{} bytes", bytes.len());
    assert_eq!(
        u64::from_le_bytes(bytes[..8].try_into().unwrap()),
        fnv1a(&bytes[8..]),
        "checksum"
    );

    let (again, err) = classify(&dir);
    assert_eq!(again, first);
    assert!(!err.contains("compiling kernels"), "{err}");

    // A file that is not ours at all.
    std::fs::write(&file, b"not a pipeline cache").unwrap();
    let (after_garbage, err) = classify(&dir);
    assert_eq!(after_garbage, first);
    assert!(err.contains("ignoring the damaged pipeline cache"), "{err}");
    assert!(err.contains("compiling kernels for"), "{err}");

    // A good checksum over bytes that are no pipeline cache: wgpu must refuse them and start
    // empty, not crash.
    let junk: Vec<u8> = (0..300u32).map(|i| (i * 7 + 3) as u8).collect();
    let mut forged = fnv1a(&junk).to_le_bytes().to_vec();
    forged.extend_from_slice(&junk);
    std::fs::write(&file, &forged).unwrap();
    let (after_forged, _) = classify(&dir);
    assert_eq!(after_forged, first);

    // Replaced by a good file again.
    let (last, err) = classify(&dir);
    assert_eq!(last, first);
    assert!(!err.contains("damaged"), "{err}");
    assert_ne!(std::fs::read(cache_file(&dir)).unwrap(), forged);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The library's side: the hook sees each compilation once, the count matches, a second hook
/// is refused, and a model run again compiles nothing more (on a fresh context, so the shared
/// test context's pipelines do not count).
#[test]
fn the_library_reports_each_compilation_once() {
    use activeshift::model::GpuModel;
    use std::sync::{Arc, Mutex};
    if common::gpu("pipeline compile hook and count").is_none() {
        return;
    }
    let ctx = pollster::block_on(activeshift::GpuContext::new()).expect("a GPU context");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    assert!(ctx.on_pipeline_compile(move |file, entry| record.lock().unwrap().push((file, entry))));
    assert!(
        !ctx.on_pipeline_compile(|_, _| {}),
        "a second hook is refused"
    );
    assert_eq!(ctx.compiled_pipelines(), 0);

    let model = activeshift::Model::embedded_default().unwrap();
    let mut gm = GpuModel::new(&ctx, &model).unwrap();
    let input = vec![0.5f32; gm.input_dims(2).iter().product()];
    let first = pollster::block_on(gm.forward(&input)).unwrap();
    let compiled = ctx.compiled_pipelines();
    let mut names = seen.lock().unwrap().clone();
    assert!(compiled > 0);
    assert_eq!(names.len(), compiled, "{names:?}");
    names.sort();
    names.dedup();
    assert_eq!(names.len(), compiled, "a pipeline was compiled twice");

    let second = pollster::block_on(gm.forward(&input)).unwrap();
    assert_eq!(ctx.compiled_pipelines(), compiled);
    assert_eq!(first.logits, second.logits);
}
