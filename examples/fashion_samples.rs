//! Writes Fashion-MNIST test images as PNG files (the samples under `examples/images/`):
//! `cargo run --release --example fashion_samples -- OUT_DIR [PER_CLASS]`.
//! The data comes from the cache `activeshift train` or `eval` fills (fetched here if missing).
use activeshift::data::{FashionMnist, LABELS, SIDE};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let out = std::path::PathBuf::from(args.first().map_or("examples/images", |s| s.as_str()));
    let per_class: usize = args.get(1).map_or(Ok(1), |s| s.parse())?;
    let data = FashionMnist::load_or_fetch(&FashionMnist::default_path()?)?;
    std::fs::create_dir_all(&out)?;
    let mut written = [0usize; 10];
    for i in 0..data.test.len() {
        let label = data.test.labels[i] as usize;
        if written[label] >= per_class {
            continue;
        }
        let img = image::GrayImage::from_raw(SIDE as u32, SIDE as u32, data.test.image(i).to_vec())
            .ok_or("bad image size")?;
        let name = LABELS[label].to_lowercase().replace(['/', ' '], "-");
        let path = out.join(format!("{name}-{}.png", written[label]));
        img.save(&path)?;
        println!("{}", path.display());
        written[label] += 1;
    }
    Ok(())
}
