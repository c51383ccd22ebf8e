//! `activeshift classify`: images from files, folders or standard input, printed as text or JSON.

use super::*;

/// The images `classify` was given: files as they are, each folder replaced by its image files
/// (by extension, sorted by name, not recursive), `-` kept for stdin.
fn expand_images(args: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for a in args {
        if a.is_dir() {
            let found: Vec<PathBuf> = sorted_entries(a)?
                .into_iter()
                .filter(|p| is_image_file(p))
                .collect();
            if found.is_empty() {
                return Err(io_err(
                    a,
                    std::io::Error::other(format!(
                        "a folder without images (.{})",
                        IMAGE_EXTENSIONS.join(", .")
                    )),
                ));
            }
            out.extend(found);
        } else {
            out.push(a.clone());
        }
    }
    if out.iter().filter(|p| p.as_os_str() == "-").count() > 1 {
        return Err(activeshift::Error::invalid(
            "classify",
            "`-` (stdin) can be given once",
        ));
    }
    Ok(out)
}

/// One image from stdin, at most [`activeshift::preprocess::MAX_IMAGE_FILE_BYTES`].
fn read_stdin_image() -> Result<Vec<u8>> {
    use std::io::Read;
    let max = activeshift::preprocess::MAX_IMAGE_FILE_BYTES;
    let mut bytes = Vec::new();
    std::io::stdin()
        .lock()
        .take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| io_err(Path::new("stdin"), e))?;
    if bytes.len() as u64 > max {
        return Err(io_err(
            Path::new("stdin"),
            std::io::Error::other(format!("more than {max} bytes: not an image")),
        ));
    }
    if bytes.is_empty() {
        return Err(io_err(
            Path::new("stdin"),
            std::io::Error::other("empty: pipe an image into `classify -`"),
        ));
    }
    Ok(bytes)
}

pub(crate) fn classify(a: ClassifyArgs) -> Result<()> {
    let images = expand_images(&a.images)?;
    let model = load_model(a.model.as_deref())?;
    let mut clf = classifier(model, a.backend)?;
    let mut failed = 0;
    for path in &images {
        let shown = path.display().to_string();
        let bytes = if path.as_os_str() == "-" {
            read_stdin_image()
        } else {
            activeshift::preprocess::read_image_file(path)
        };
        let result = bytes.and_then(|bytes| clf.classify_bytes_blocking(&bytes, a.top));
        match result {
            Ok(mut c) => {
                c.image = Some(shown);
                print_classification(&c, a.json)?;
            }
            Err(e @ activeshift::Error::Io { .. }) => {
                failed += 1;
                eprintln!("error: {}", one_line(&e));
            }
            Err(e) => {
                failed += 1;
                eprintln!("error: {shown}: {}", one_line(&e));
            }
        }
    }
    if failed > 0 {
        return Err(activeshift::Error::invalid(
            "classify",
            format!(
                "{failed} of {} images could not be classified",
                images.len()
            ),
        ));
    }
    Ok(())
}

fn print_classification(c: &Classification, json: bool) -> Result<()> {
    if json {
        let line = serde_json::to_string(c)
            .map_err(|e| activeshift::Error::invalid("classify", e.to_string()))?;
        println!("{line}");
        return Ok(());
    }
    println!(
        "{} ({} on {})",
        printable(c.image.as_deref().unwrap_or("image")),
        printable(&c.model),
        c.backend
    );
    for t in &c.top {
        let bar = "#".repeat((t.prob * 40.0).round() as usize);
        println!(
            "  {:>5}  {:>6.2}%  {:<40}  {}",
            t.class,
            t.prob * 100.0,
            bar,
            printable(&t.label)
        );
    }
    Ok(())
}
