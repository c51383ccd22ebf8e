//! `activeshift eval --images DIR`: top-1 and top-5 accuracy on a folder of labelled images.

use activeshift::model::imagenet;
use activeshift::{Classifier, Error, Result};
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// The class a name stands for: a WordNet id (`n02124075`, the ImageNet class it is in the
/// sorted list of 1000) or a class index (`285`).
fn class_of(name: &str) -> Option<usize> {
    if name.len() == 9 && name.starts_with('n') {
        return imagenet::class_of_wnid(name);
    }
    if !name.is_empty() && name.len() <= 6 && name.bytes().all(|b| b.is_ascii_digit()) {
        return name.parse().ok();
    }
    None
}

/// The label in a flat folder's file name: the wnid or class index it starts with, up to the
/// first character that is not a letter or digit (`n02124075_17.JPEG`, `285-cat.jpg`).
fn class_of_file_name(path: &Path) -> Option<usize> {
    let stem = path.file_stem()?.to_str()?;
    let head = stem
        .split(|c: char| !c.is_ascii_alphanumeric())
        .next()
        .unwrap_or("");
    class_of(head)
}

fn bad(path: &Path, msg: impl Into<String>) -> Error {
    Error::Io {
        path: path.display().to_string(),
        source: std::io::Error::other(msg.into()),
    }
}

/// Every image of `dir` with its class. Sub-folders named by wnid or class index hold their
/// class's images (the ImageNet layout); image files directly in `dir` carry their class at the
/// start of their name. Files that are not images (by extension) are left out.
pub fn labelled_images(dir: &Path) -> Result<Vec<(PathBuf, usize)>> {
    if !dir.is_dir() {
        return Err(bad(
            dir,
            "not a folder (--images takes a folder of labelled images)",
        ));
    }
    let mut out = Vec::new();
    for entry in crate::sorted_entries(dir)? {
        if entry.is_dir() {
            let name = entry.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let class = class_of(name).ok_or_else(|| {
                bad(
                    &entry,
                    "a sub-folder must be named by an ImageNet wnid (n01440764) or a class index",
                )
            })?;
            for file in crate::sorted_entries(&entry)? {
                if crate::is_image_file(&file) {
                    out.push((file, class));
                }
            }
        } else if crate::is_image_file(&entry) {
            let class = class_of_file_name(&entry).ok_or_else(|| {
                bad(
                    &entry,
                    "cannot tell its class: a file name must start with an ImageNet wnid \
                     (n02124075_1.jpg) or a class index (285_cat.jpg), or the file sit in a \
                     folder named so",
                )
            })?;
            out.push((entry, class));
        }
    }
    if out.is_empty() {
        return Err(bad(dir, "no images found"));
    }
    Ok(out)
}

/// Run the network over `images` in batches of `batch` and print top-1 and top-5 accuracy.
pub fn run(
    clf: &mut Classifier,
    dir: &Path,
    images: &[(PathBuf, usize)],
    batch: usize,
    json: bool,
) -> Result<()> {
    let classes = clf.model().config.classes;
    if let Some((path, class)) = images.iter().find(|(_, c)| *c >= classes) {
        return Err(bad(
            path,
            format!(
                "class {class}, but model `{}` has {classes} classes",
                clf.model().config.name
            ),
        ));
    }
    let preprocess = clf.model().config.preprocess.clone();
    let bar = indicatif::ProgressBar::new(images.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "[{bar:30}] {pos}/{len} {msg} ({elapsed}, ~{eta} left)",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    let (mut top1, mut top5) = (0usize, 0usize);
    let mut input = Vec::new();
    for chunk in images.chunks(batch) {
        // Decoding and preprocessing in parallel; the network runs the whole batch at once.
        let planes: Vec<Vec<f32>> = chunk
            .par_iter()
            .map(|(path, _)| {
                let bytes = activeshift::preprocess::read_image_file(path)?;
                let img = activeshift::preprocess::decode_image(&bytes)
                    .map_err(|e| bad(path, e.to_string()))?;
                activeshift::preprocess::preprocess(&img, &preprocess)
                    .map_err(|e| bad(path, e.to_string()))
            })
            .collect::<Result<_>>()?;
        input.clear();
        for p in &planes {
            input.extend_from_slice(p);
        }
        let out = clf.run_blocking(&input)?;
        for (i, (_, class)) in chunk.iter().enumerate() {
            let best = out.top_k(i, 5);
            top1 += usize::from(best.first().is_some_and(|b| b.0 == *class));
            top5 += usize::from(best.iter().any(|b| b.0 == *class));
        }
        bar.inc(chunk.len() as u64);
        let seen = bar.position() as f64;
        bar.set_message(format!(
            "top-1 {:.2}% top-5 {:.2}%",
            top1 as f64 / seen * 100.0,
            top5 as f64 / seen * 100.0
        ));
    }
    bar.finish_and_clear();
    let n = images.len();
    let name = &clf.model().config.name;
    if json {
        println!(
            "{}",
            serde_json::json!({"model": name, "backend": clf.backend(),
                "images": dir.display().to_string(), "count": n,
                "top1_correct": top1, "top5_correct": top5,
                "top1": top1 as f64 / n as f64, "top5": top5 as f64 / n as f64})
        );
    } else {
        println!(
            "{name} on {}: top-1 {top1}/{n} = {:.2}%, top-5 {top5}/{n} = {:.2}% ({})",
            clf.backend(),
            top1 as f64 / n as f64 * 100.0,
            top5 as f64 / n as f64 * 100.0,
            dir.display()
        );
    }
    Ok(())
}
