//! `activeshift eval --images DIR`: top-1 and top-5 accuracy, accuracy per class and a
//! confusion matrix on a folder of labelled images.
//!
//! A sub-folder of `DIR` holds the images of one class (at any depth), named by one of the
//! model's labels, an ImageNet wnid or a class index ([`class_of_folder`]); image files directly
//! in `DIR` carry a wnid or class index at the start of their name. A `DIR` that holds `train/`
//! beside `val/` (or `test/`) is the layout `train --images` reads: its held-out folder is
//! evaluated.

use activeshift::model::imagenet;
use activeshift::{Classifier, Error, Result};
use rayon::prelude::*;
use std::collections::BTreeMap;
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

/// A name as the loose match compares it: letters and digits in lower case, every run of other
/// characters (spaces, `-`, `_`, `/`, `.`, ...) one space, none at the ends. `T-shirt/top`,
/// `t-shirt-top` and `T_shirt  top` are all `t shirt top`.
fn normalized(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut gap = false;
    for c in name.chars() {
        if c.is_alphanumeric() {
            if gap && !out.is_empty() {
                out.push(' ');
            }
            gap = false;
            out.extend(c.to_lowercase());
        } else {
            gap = true;
        }
    }
    out
}

/// Edit distance (insertions, deletions, substitutions of characters) between `a` and `b`.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let next = (diag + usize::from(ca != cb))
                .min(row[j] + 1)
                .min(row[j + 1] + 1);
            diag = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

/// `` `label` (index) `` for each of `classes`, joined, safe to print.
fn named(labels: &[String], classes: &[usize]) -> String {
    classes
        .iter()
        .map(|&c| format!("`{}` ({c})", crate::printable(&labels[c])))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The class a sub-folder named `name` holds, for a model with `labels`, tried in this order:
///
/// 1. `name` is one of the labels, exactly;
/// 2. `name` is an ImageNet wnid or a class index ([`class_of`]);
/// 3. `name` is one of the labels when both are [`normalized`] (case, and which characters
///    separate the words, ignored), and no other label is the same when normalized.
///
/// A name that several labels match (at step 1 or 3) or none is an error that says why.
fn class_of_folder(name: &str, labels: &[String]) -> std::result::Result<usize, String> {
    let exact: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == name).collect();
    match exact[..] {
        [c] => return Ok(c),
        [] => {}
        _ => {
            return Err(format!(
                "the model has several classes with this label: {}; name the folder by its \
                 class index instead",
                named(labels, &exact)
            ));
        }
    }
    if let Some(c) = class_of(name) {
        return Ok(c);
    }
    let key = normalized(name);
    let keys: Vec<String> = labels.iter().map(|l| normalized(l)).collect();
    let loose: Vec<usize> = (0..labels.len())
        .filter(|&i| !key.is_empty() && keys[i] == key)
        .collect();
    match loose[..] {
        [c] => return Ok(c),
        [] => {}
        _ => {
            return Err(format!(
                "ambiguous: with case and punctuation ignored it matches several labels: {}; \
                 name the folder by one label exactly or by its class index",
                named(labels, &loose)
            ));
        }
    }
    // The closest labels, to help with a typo or a partial name.
    let mut near: Vec<(usize, usize)> = (0..labels.len())
        .filter(|&i| !keys[i].is_empty() && !key.is_empty())
        .map(|i| (edit_distance(&key, &keys[i]), i))
        .filter(|&(d, i)| {
            d <= (key.chars().count() / 3).max(2)
                || keys[i].split(' ').any(|w| w == key)
                || key.split(' ').any(|w| w == keys[i])
        })
        .collect();
    near.sort();
    let near: Vec<usize> = near.iter().take(3).map(|&(_, i)| i).collect();
    let hint = if near.is_empty() {
        String::new()
    } else {
        format!("; closest: {}", named(labels, &near))
    };
    let split = if ["train", "val", "test"].contains(&name) {
        " (a folder holding train/ beside val/ or test/ is evaluated on val/ or test/)"
    } else {
        ""
    };
    Err(format!(
        "not a class of the model: a sub-folder must be named by one of its {} labels \
         (exactly, or with case and punctuation ignored), an ImageNet wnid or a class index{hint}{split}",
        labels.len()
    ))
}

fn bad(path: &Path, msg: impl Into<String>) -> Error {
    Error::Io {
        path: path.display().to_string(),
        source: std::io::Error::other(msg.into()),
    }
}

fn is_hidden(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|n| n.as_encoded_bytes().first() == Some(&b'.'))
}

/// The image files of an `--images` folder, found before the model is loaded; the names of its
/// class folders are matched with the model's labels by [`Found::labelled`].
pub struct Found {
    /// The folder evaluated: `DIR`, or its `val/` (or `test/`) folder beside `train/`.
    pub folder: PathBuf,
    /// Sub-folders: (name, path, the images under it).
    folders: Vec<(String, PathBuf, Vec<PathBuf>)>,
    /// Images directly in the folder, with the class their name starts with.
    flat: Vec<(PathBuf, usize)>,
    /// Image-named entries that are not regular files, with the reason.
    pub skipped: Vec<(PathBuf, String)>,
}

/// The folder evaluated for `--images dir`: `dir/val` (or `dir/test` when there is no `val`)
/// when `dir` holds a `train` folder beside it, else `dir`.
fn held_out(dir: &Path) -> Result<PathBuf> {
    let mut names = Vec::new();
    for entry in crate::sorted_entries(dir)? {
        if entry.is_dir()
            && !is_hidden(&entry)
            && let Some(name) = entry.file_name().and_then(|n| n.to_str())
        {
            names.push(name.to_string());
        }
    }
    let has = |n: &str| names.iter().any(|x| x == n);
    if has("train")
        && let Some(n) = ["val", "test"].into_iter().find(|n| has(n))
    {
        return Ok(dir.join(n));
    }
    Ok(dir.to_path_buf())
}

/// Every image of `dir` (see the [module docs](self) for the layouts). Names starting with `.`
/// are skipped, files are images by extension, links are followed only to regular files. Errors:
/// `dir` is not a folder, a flat file name does not start with a class, no images at all.
pub fn find_images(dir: &Path) -> Result<Found> {
    if !dir.is_dir() {
        return Err(bad(
            dir,
            "not a folder (--images takes a folder of labelled images)",
        ));
    }
    let folder = held_out(dir)?;
    let mut found = Found {
        folder: folder.clone(),
        folders: Vec::new(),
        flat: Vec::new(),
        skipped: Vec::new(),
    };
    for entry in crate::sorted_entries(&folder)? {
        if is_hidden(&entry) {
            continue;
        }
        // A class folder may be a link to one (the images under it are found without following
        // links to folders).
        if entry.is_dir() {
            let Some(name) = entry.file_name().and_then(|n| n.to_str()) else {
                return Err(bad(&entry, "a class folder's name must be valid UTF-8"));
            };
            let files = activeshift::image_folder::images_under(&entry, &mut found.skipped)?;
            found.folders.push((name.to_string(), entry.clone(), files));
        } else if crate::is_image_file(&entry) {
            let class = class_of_file_name(&entry).ok_or_else(|| {
                bad(
                    &entry,
                    "cannot tell its class: a file name must start with an ImageNet wnid \
                     (n02124075_1.jpg) or a class index (285_cat.jpg), or the file sit in a \
                     folder named by its class",
                )
            })?;
            found.flat.push((entry, class));
        }
    }
    found.skipped.sort();
    if found.folders.iter().all(|f| f.2.is_empty()) && found.flat.is_empty() {
        return Err(bad(&folder, "no images found"));
    }
    Ok(found)
}

impl Found {
    /// Every image with its class: sub-folders matched with `labels` by [`class_of_folder`].
    pub fn labelled(self, labels: &[String]) -> Result<Vec<(PathBuf, usize)>> {
        let mut out = Vec::new();
        for (name, path, files) in self.folders {
            let class = class_of_folder(&name, labels).map_err(|msg| bad(&path, msg))?;
            out.extend(files.into_iter().map(|f| (f, class)));
        }
        out.extend(self.flat);
        Ok(out)
    }
}

/// Counts by true class (and the predicted one) of a run over labelled images.
#[derive(Default)]
struct Tally {
    /// True class -> (images, top-1 correct).
    per_class: BTreeMap<usize, (usize, usize)>,
    /// (true class, predicted class) -> images.
    pairs: BTreeMap<(usize, usize), usize>,
}

impl Tally {
    fn add(&mut self, truth: usize, predicted: usize) {
        let e = self.per_class.entry(truth).or_default();
        e.0 += 1;
        e.1 += usize::from(truth == predicted);
        *self.pairs.entry((truth, predicted)).or_default() += 1;
    }

    /// The classes of the confusion matrix: every class that is the true or the predicted
    /// class of some image, ascending.
    fn classes(&self) -> Vec<usize> {
        let mut v: Vec<usize> = self.pairs.keys().flat_map(|&(t, p)| [t, p]).collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Rows by true class, columns by predicted class, both over [`Tally::classes`].
    fn matrix(&self, classes: &[usize]) -> Vec<Vec<usize>> {
        let at = |c: usize| classes.binary_search(&c).unwrap_or(0);
        let mut m = vec![vec![0; classes.len()]; classes.len()];
        for (&(t, p), &n) in &self.pairs {
            m[at(t)][at(p)] += n;
        }
        m
    }

    /// Wrong (true, predicted) pairs, most images first.
    fn most_confused(&self, k: usize) -> Vec<((usize, usize), usize)> {
        let mut v: Vec<((usize, usize), usize)> = self
            .pairs
            .iter()
            .filter(|((t, p), _)| t != p)
            .map(|(&k, &n)| (k, n))
            .collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v.truncate(k);
        v
    }
}

/// The most classes a text confusion matrix shows; beyond, the most confused pairs are listed.
const MATRIX_CLASSES: usize = 20;
/// How many confused pairs the text output lists instead of a larger matrix.
const CONFUSED_PAIRS: usize = 20;

fn percent(k: usize, n: usize) -> f64 {
    k as f64 / n as f64 * 100.0
}

/// The per-class lines and the confusion matrix (or the most confused pairs) as text.
fn print_tally(tally: &Tally, labels: &[String]) {
    let label = |c: usize| crate::printable(labels.get(c).map_or("", String::as_str)).into_owned();
    let width = tally
        .per_class
        .iter()
        .map(|(c, (n, k))| format!("{c}{n}{k}").len())
        .max()
        .unwrap_or(1);
    println!("per class (top-1):");
    for (&c, &(n, k)) in &tally.per_class {
        let hits = format!("{k}/{n}");
        println!(
            "  {c:>5}  {hits:>w$}  {:>7.2}%  {}",
            percent(k, n),
            label(c),
            w = width.max(5)
        );
    }
    let classes = tally.classes();
    if classes.len() <= MATRIX_CLASSES {
        let m = tally.matrix(&classes);
        let w = classes
            .iter()
            .map(|c| c.to_string().len())
            .chain(m.iter().flatten().map(|n| n.to_string().len()))
            .max()
            .unwrap_or(1)
            .max(2);
        println!("confusion (rows: true class, columns: predicted class, . = 0):");
        let head: String = classes.iter().map(|c| format!(" {c:>w$}")).collect();
        println!("  {:>5} {head}", "");
        for (row, &c) in m.iter().zip(&classes) {
            let cells: String = row
                .iter()
                .map(|&n| {
                    let s = if n == 0 { ".".into() } else { n.to_string() };
                    format!(" {s:>w$}")
                })
                .collect();
            println!("  {c:>5} {cells}  {}", label(c));
        }
    } else {
        let pairs = tally.most_confused(CONFUSED_PAIRS);
        if pairs.is_empty() {
            println!("no image was taken for another class");
        } else {
            println!(
                "most confused ({} classes, too many for a matrix): images, true class -> predicted",
                classes.len()
            );
            for ((t, p), n) in pairs {
                println!("  {n:>5}  {t} {} -> {p} {}", label(t), label(p));
            }
        }
    }
}

/// Run the network over `images` (of `dir`, read from `folder`) in batches of `batch` and print
/// top-1 and top-5 accuracy, accuracy per class and the confusion matrix.
pub fn run(
    clf: &mut Classifier,
    dir: &Path,
    folder: &Path,
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
    let mut tally = Tally::default();
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
            let first = best.first().map_or(usize::MAX, |b| b.0);
            top1 += usize::from(first == *class);
            top5 += usize::from(best.iter().any(|b| b.0 == *class));
            tally.add(*class, first);
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
    let labels = &clf.model().labels;
    if json {
        let per_class: Vec<serde_json::Value> = tally
            .per_class
            .iter()
            .map(|(&c, &(n, k))| {
                serde_json::json!({"class": c, "label": labels.get(c), "images": n,
                    "top1_correct": k, "top1": k as f64 / n as f64})
            })
            .collect();
        let confused = tally.classes();
        let counts = tally.matrix(&confused);
        println!(
            "{}",
            serde_json::json!({"model": name, "backend": clf.backend(),
                "images": dir.display().to_string(), "count": n,
                "top1_correct": top1, "top5_correct": top5,
                "top1": top1 as f64 / n as f64, "top5": top5 as f64 / n as f64,
                "folder": folder.display().to_string(),
                "per_class": per_class,
                "confusion": {"classes": confused, "counts": counts}})
        );
    } else {
        println!(
            "{} on {}: top-1 {top1}/{n} = {:.2}%, top-5 {top5}/{n} = {:.2}% ({})",
            crate::printable(name),
            clf.backend(),
            percent(top1, n),
            percent(top5, n),
            crate::printable(&folder.display().to_string())
        );
        print_tally(&tally, labels);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn normalized_ignores_case_and_separators() {
        assert_eq!(normalized("T-shirt/top"), "t shirt top");
        assert_eq!(normalized("t-shirt-top"), "t shirt top");
        assert_eq!(normalized("__T_shirt  top."), "t shirt top");
        assert_eq!(normalized("Tshirt top"), "tshirt top");
        assert_eq!(normalized("---"), "");
    }

    #[test]
    fn folder_names_match_labels_then_indices_then_loosely() {
        let l = labels(&[
            "T-shirt/top",
            "Ankle boot",
            "3",
            "crane",
            "crane",
            "a b",
            "A-B",
        ]);
        assert_eq!(class_of_folder("Ankle boot", &l), Ok(1));
        assert_eq!(class_of_folder("ankle_boot", &l), Ok(1));
        assert_eq!(class_of_folder("T_shirt-TOP", &l), Ok(0));
        // A label first, then an index: `3` is class 2's label, `4` is class 4.
        assert_eq!(class_of_folder("3", &l), Ok(2));
        assert_eq!(class_of_folder("4", &l), Ok(4));
        // Exact beats loose: `a b` is class 5 though `A-B` looks the same.
        assert_eq!(class_of_folder("a b", &l), Ok(5));
        let e = class_of_folder("a_b", &l).unwrap_err();
        assert!(
            e.starts_with("ambiguous") && e.contains("(5)") && e.contains("(6)"),
            "{e}"
        );
        let e = class_of_folder("crane", &l).unwrap_err();
        assert!(
            e.contains("several classes") && e.contains("(3), `crane` (4)"),
            "{e}"
        );
        let e = class_of_folder("ankle-bot", &l).unwrap_err();
        assert!(
            e.contains("7 labels") && e.contains("closest: `Ankle boot` (1)"),
            "{e}"
        );
        let e = class_of_folder("zzzzzzzzzzzz", &l).unwrap_err();
        assert!(!e.contains("closest"), "{e}");
    }

    #[test]
    fn tally_counts_and_orders_the_matrix() {
        let mut t = Tally::default();
        for (a, b) in [(3, 3), (3, 7), (1, 1), (3, 7), (1, 3)] {
            t.add(a, b);
        }
        assert_eq!(t.classes(), vec![1, 3, 7]);
        assert_eq!(
            t.matrix(&t.classes()),
            vec![vec![1, 1, 0], vec![0, 1, 2], vec![0, 0, 0]]
        );
        assert_eq!(t.per_class[&3], (3, 1));
        assert_eq!(t.most_confused(5), vec![((3, 7), 2), ((1, 3), 1)]);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
