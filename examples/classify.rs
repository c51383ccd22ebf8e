//! Classify an image with a model file, on the GPU when there is one:
//!
//! ```text
//! cargo run --release --example classify -- MODEL.safetensors IMAGE
//! ```
//!
//! (`activeshift import-caffe` makes a model from the authors' ImageNet weights.)

use activeshift::{Classifier, GpuContext, Model};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [model_path, image_path] = args.as_slice() else {
        eprintln!("usage: classify MODEL.safetensors IMAGE");
        std::process::exit(2);
    };
    let model = Model::load(model_path)?;
    let mut classifier = match pollster::block_on(GpuContext::new()) {
        Ok(ctx) => Classifier::gpu(&ctx, model)?,
        Err(e) => {
            eprintln!("{e}; using the CPU");
            Classifier::cpu(model)
        }
    };
    let image = std::fs::read(image_path)?;
    let result = pollster::block_on(classifier.classify_bytes(&image, 5))?;
    println!("{} on {}:", result.model, result.backend);
    for t in result.top {
        println!("{:6.2}%  {:4}  {}", t.prob * 100.0, t.class, t.label);
    }
    Ok(())
}
