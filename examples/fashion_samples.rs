//! Writes Fashion-MNIST test images as PNG files:
//! - `cargo run --release --example fashion_samples -- OUT_DIR [PER_CLASS]`: the first
//!   PER_CLASS (default 1) test images of each class as `OUT_DIR/<label>-<i>.png` (the samples
//!   under `examples/images/`);
//! - `cargo run --release --example fashion_samples -- --folder OUT_DIR [PER_CLASS]`: the
//!   dataset as an image folder, `OUT_DIR/train/<label>/<i>.png` and `OUT_DIR/test/<label>/...`
//!   (the first PER_CLASS images of each class of each split, default all), the layout
//!   `activeshift train --images` reads.
//!
//! The data comes from the cache `activeshift train` or `eval` fills (fetched here if missing).
//! Labels become folder and file names in lower case with `/` and spaces as `-`
//! (`t-shirt-top`).
use activeshift::data::{Dataset, FashionMnist, LABELS, SIDE};
use std::path::Path;

fn name(label: u32) -> String {
    LABELS[label as usize]
        .to_lowercase()
        .replace(['/', ' '], "-")
}

fn save(set: &Dataset, i: usize, path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let img = image::GrayImage::from_raw(SIDE as u32, SIDE as u32, set.image(i).to_vec())
        .ok_or("bad image size")?;
    img.save(path)?;
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let folder = args.first().is_some_and(|a| a == "--folder");
    if folder {
        args.remove(0);
    }
    let out = std::path::PathBuf::from(args.first().map_or("examples/images", |s| s.as_str()));
    let default = if folder { usize::MAX } else { 1 };
    let per_class: usize = args.get(1).map_or(Ok(default), |s| s.parse())?;
    let data = FashionMnist::load_or_fetch(&FashionMnist::default_path()?)?;
    if !folder {
        std::fs::create_dir_all(&out)?;
        let mut written = [0usize; 10];
        for i in 0..data.test.len() {
            let label = data.test.labels[i];
            if written[label as usize] >= per_class {
                continue;
            }
            let path = out.join(format!("{}-{}.png", name(label), written[label as usize]));
            save(&data.test, i, &path)?;
            println!("{}", path.display());
            written[label as usize] += 1;
        }
        return Ok(());
    }
    for (split, set) in [("train", &data.train), ("test", &data.test)] {
        let mut written = [0usize; 10];
        for i in 0..set.len() {
            let label = set.labels[i];
            let n = &mut written[label as usize];
            if *n >= per_class {
                continue;
            }
            let dir = out.join(split).join(name(label));
            std::fs::create_dir_all(&dir)?;
            save(set, i, &dir.join(format!("{n:05}.png")))?;
            *n += 1;
        }
        println!(
            "{}: {} images",
            out.join(split).display(),
            written.iter().sum::<usize>()
        );
    }
    Ok(())
}
