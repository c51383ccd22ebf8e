//! Time the CPU engine's forward pass (`Model::forward_cpu`) on one preprocessed image, batch 1:
//!
//! ```text
//! RAYON_NUM_THREADS=1 cargo run --release --example cpu_forward -- MODEL.safetensors IMAGE [RUNS]
//! ```
//!
//! Prints one JSON line: `{"threads", "first_ms", "ms": [...], "top1"}` (milliseconds per run,
//! preprocessing not included). `web/test/bench-cpu.mjs` compares it with the same pass in
//! WebAssembly (the npm package's CPU engine).

use activeshift::Model;
use activeshift::preprocess::{decode_image, preprocess, read_image_file};
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (model_path, image_path, runs) = match args.as_slice() {
        [m, i] => (m, i, 10),
        [m, i, r] => (m, i, r.parse()?),
        _ => {
            eprintln!("usage: cpu_forward MODEL.safetensors IMAGE [RUNS]");
            std::process::exit(2);
        }
    };
    let model = Model::load(model_path)?;
    let image = decode_image(&read_image_file(image_path.as_ref())?)?;
    let input = preprocess(&image, &model.config.preprocess)?;
    let time = || -> Result<(f64, usize), activeshift::Error> {
        let t = Instant::now();
        let out = model.forward_cpu(&input)?;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        let top1 = (0..out.probs.len())
            .max_by(|&a, &b| out.probs[a].total_cmp(&out.probs[b]))
            .unwrap_or(0);
        Ok((ms, top1))
    };
    let (first_ms, top1) = time()?;
    let ms = (0..runs)
        .map(|_| time().map(|(ms, _)| ms))
        .collect::<Result<Vec<_>, _>>()?;
    println!(
        "{{\"threads\":{},\"first_ms\":{first_ms:.3},\"ms\":[{}],\"top1\":{top1}}}",
        rayon::current_num_threads(),
        ms.iter()
            .map(|m| format!("{m:.3}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    Ok(())
}
