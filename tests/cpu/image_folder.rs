//! The image-folder dataset (`activeshift::image_folder`): layouts, every image kind the
//! decoder takes, junk and broken files, the held-out split, the cache, links and FIFOs, and
//! the errors. Every folder is built here from generated images.
#![cfg(feature = "train")]

use activeshift::Error;
use activeshift::image_folder::{
    self, FolderData, FolderOptions, Progress, decode_resized, load, scan, stratified_split,
    suggest_channels, suggest_size,
};
use image::{DynamicImage, ImageBuffer, LumaA, Rgb, RgbImage, Rgba};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// A `w x h` picture of one of three classes: a disc, a square, vertical stripes (`variant`
/// moves the shape a little, so images of one class differ).
fn shape(class: usize, w: u32, h: u32, variant: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        let (cx, cy) = ((w / 2 + variant) as i64, (h / 2) as i64);
        let (dx, dy) = (x as i64 - cx, y as i64 - cy);
        let r = (w.min(h) / 3) as i64;
        let inside = match class {
            0 => dx * dx + dy * dy <= r * r,
            1 => dx.abs() <= r && dy.abs() <= r,
            _ => ((x + variant) / 3).is_multiple_of(2),
        };
        if inside {
            Rgb([230, 40 + 60 * class as u8, 30])
        } else {
            Rgb([20, 20, 90 + variant as u8])
        }
    })
}

fn save(img: &DynamicImage, path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    img.save(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

fn rgb(class: usize, w: u32, h: u32, variant: u32) -> DynamicImage {
    DynamicImage::ImageRgb8(shape(class, w, h, variant))
}

/// A JPEG of `img` with an EXIF APP1 segment holding `orientation`, written by hand.
fn jpeg_with_orientation(img: &DynamicImage, orientation: u8) -> Vec<u8> {
    let mut plain = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut plain),
        image::ImageFormat::Jpeg,
    )
    .unwrap();
    let mut app1 = vec![0xFF, 0xE1, 0x00, 0x22];
    app1.extend_from_slice(b"Exif\0\0");
    // Big-endian TIFF header, first IFD at offset 8.
    app1.extend_from_slice(b"MM\0\x2a\0\0\0\x08");
    // One entry: tag 0x0112 (Orientation), type SHORT, count 1, the value; no next IFD.
    app1.extend_from_slice(&[0, 1, 0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, orientation, 0, 0]);
    app1.extend_from_slice(&[0, 0, 0, 0]);
    assert_eq!(app1.len(), 2 + 0x22);
    let mut out = plain[..2].to_vec();
    out.extend_from_slice(&app1);
    out.extend_from_slice(&plain[2..]);
    out
}

/// The test folder: three classes of every image kind, with junk, a broken JPEG, hidden files
/// and a hidden folder. 21 decodable images and one broken.
fn build_folder(root: &Path) {
    // circle: 5 RGB PNGs of several sizes and aspects, a grayscale PNG, a 16-bit PNG, one in
    // a sub-folder.
    for i in 0..5 {
        save(
            &rgb(0, 30 + 7 * i, 24 + 11 * i, i),
            &root.join(format!("circle/c{i}.png")),
        );
    }
    save(
        &DynamicImage::ImageLuma8(rgb(0, 32, 32, 1).to_luma8()),
        &root.join("circle/gray.png"),
    );
    let wide: ImageBuffer<Rgb<u16>, Vec<u16>> = ImageBuffer::from_fn(48, 20, |x, _| {
        Rgb([(x * 1300) as u16, 20_000, 65_535 - (x * 1000) as u16])
    });
    save(
        &DynamicImage::ImageRgb16(wide),
        &root.join("circle/sixteen.png"),
    );
    save(
        &rgb(0, 28, 28, 2),
        &root.join("circle/nested/deeper/c9.png"),
    );
    std::fs::write(root.join("circle/.DS_Store"), b"\0\0\0\x01Bud1").unwrap();
    std::fs::write(root.join("circle/notes.txt"), "where these came from").unwrap();
    save(&rgb(1, 20, 20, 0), &root.join("circle/.hidden.png"));

    // square: 5 JPEGs (one upper-case extension), an RGBA PNG, a JPEG with EXIF orientation.
    for i in 0..5 {
        let ext = if i == 4 { "JPG" } else { "jpg" };
        let path = root.join(format!("square/s{i}.{ext}"));
        let mut bytes = Vec::new();
        rgb(1, 40 + 3 * i, 40, i)
            .write_to(
                &mut std::io::Cursor::new(&mut bytes),
                image::ImageFormat::Jpeg,
            )
            .unwrap();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
    let rgba = ImageBuffer::from_fn(30, 30, |x, y| {
        Rgba([
            200,
            100,
            50,
            if (x + y).is_multiple_of(2) { 255 } else { 0 },
        ])
    });
    save(
        &DynamicImage::ImageRgba8(rgba),
        &root.join("square/alpha.png"),
    );
    std::fs::write(
        root.join("square/turned.jpeg"),
        jpeg_with_orientation(&rgb(1, 40, 20, 0), 6),
    )
    .unwrap();
    std::fs::write(root.join("square/Thumbs.db"), b"junk").unwrap();

    // stripes: BMP, GIF, WebP, a gray+alpha PNG, an RGB and a palette PNG, a broken JPEG.
    save(&rgb(2, 30, 30, 0), &root.join("stripes/t0.bmp"));
    save(
        &DynamicImage::ImageRgba8(rgb(2, 30, 30, 1).to_rgba8()),
        &root.join("stripes/t1.gif"),
    );
    save(&rgb(2, 30, 30, 2), &root.join("stripes/t2.webp"));
    let la = ImageBuffer::from_fn(26, 26, |x, _| LumaA([(x * 9) as u8, 255]));
    save(&DynamicImage::ImageLumaA8(la), &root.join("stripes/t3.png"));
    save(&rgb(2, 64, 32, 3), &root.join("stripes/t4.png"));
    // A palette PNG, 32 x 64: two colours, stripes.
    let mut palette_png = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut palette_png, 32, 64);
        enc.set_color(png::ColorType::Indexed);
        enc.set_depth(png::BitDepth::Eight);
        enc.set_palette(vec![20u8, 20, 90, 230, 160, 30]);
        let data: Vec<u8> = (0..32 * 64)
            .map(|i| u8::from(i % 32 / 3 % 2 == 0))
            .collect();
        let mut w = enc.write_header().unwrap();
        w.write_image_data(&data).unwrap();
    }
    std::fs::write(root.join("stripes/t5.png"), palette_png).unwrap();
    std::fs::write(
        root.join("stripes/broken.jpg"),
        b"\xFF\xD8\xFF\xE0 not really",
    )
    .unwrap();

    // A hidden class folder: ignored.
    save(&rgb(0, 20, 20, 0), &root.join(".thumbnails/x.png"));
    // A file beside the classes: ignored.
    std::fs::write(root.join("README.txt"), "a dataset").unwrap();
}

fn quiet(_: Progress) {}

fn opts(side: usize) -> FolderOptions {
    FolderOptions::new(side, side, 3)
}

fn folder_err(e: Error) -> String {
    match e {
        Error::ImageFolder { msg, .. } => msg,
        other => panic!("expected an image-folder error, found {other:?}"),
    }
}

fn all_paths(d: &FolderData) -> Vec<PathBuf> {
    let mut p: Vec<PathBuf> = d.train.paths.iter().chain(&d.val.paths).cloned().collect();
    p.sort();
    p
}

#[test]
fn every_image_kind_is_loaded_and_junk_is_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    build_folder(root);
    let data = load(root, &opts(16), &quiet).unwrap();
    assert_eq!(data.classes, ["circle", "square", "stripes"]);
    assert_eq!(data.train.len() + data.val.len(), 21);
    for set in [&data.train, &data.val] {
        assert_eq!((set.channels, set.height, set.width), (3, 16, 16));
        assert_eq!(set.pixels.len(), set.len() * 3 * 16 * 16);
        assert_eq!(set.paths.len(), set.len());
    }
    // Only the broken JPEG is reported; junk, hidden files and folders are passed over.
    assert_eq!(data.skipped.len(), 1, "{:?}", data.skipped);
    assert!(data.skipped[0].0.ends_with("stripes/broken.jpg"));
    assert!(!data.skipped[0].1.is_empty());
    for p in all_paths(&data) {
        let s = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        assert!(
            !s.starts_with('.') && !s.contains("/.") && !s.contains("README"),
            "{s}"
        );
        assert!(
            image_folder::IMAGE_EXTENSIONS
                .iter()
                .any(|e| s.to_ascii_lowercase().ends_with(e))
        );
    }
    assert!(
        all_paths(&data)
            .iter()
            .any(|p| p.ends_with("circle/nested/deeper/c9.png"))
    );
    assert!(
        all_paths(&data)
            .iter()
            .any(|p| p.ends_with("square/s4.JPG"))
    );
    // Labels follow the class of the folder.
    for set in [&data.train, &data.val] {
        for (p, &l) in set.paths.iter().zip(&set.labels) {
            let class = p.strip_prefix(root).unwrap().components().next().unwrap();
            assert_eq!(class.as_os_str(), data.classes[l as usize].as_str());
        }
    }
    // One held out per class: round(8 * 0.1), round(7 * 0.1), round(6 * 0.1) are 1, 1, 1.
    let mut val_labels = data.val.labels.clone();
    val_labels.sort();
    assert_eq!(val_labels, [0, 1, 2]);
    assert_eq!(data.decoded, 22);
    assert_eq!(data.cached, 0);

    // Grayscale: one luma plane.
    let gray = load(root, &FolderOptions::new(12, 20, 1), &quiet).unwrap();
    assert_eq!(gray.train.image_len(), 12 * 20);
    assert_eq!(gray.train.pixels.len(), gray.train.len() * 240);
}

#[test]
fn pixels_are_resized_and_centre_cropped_like_inference() {
    use activeshift::model::{ColorOrder, Preprocess};
    let img = rgb(0, 50, 30, 0);
    let mut bytes = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )
    .unwrap();
    let (h, w) = (12, 16);
    let ours = decode_resized(&bytes, &FolderOptions::new(h, w, 3)).unwrap();
    let opts = FolderOptions::new(h, w, 3);
    let p = Preprocess {
        resize_short: opts.resize_short,
        crop: [h, w],
        color: ColorOrder::Rgb,
        mean: vec![0.0; 3],
        scale: vec![1.0; 3],
    };
    let theirs = activeshift::preprocess::preprocess(&img, &p).unwrap();
    let theirs: Vec<u8> = theirs.iter().map(|&v| v as u8).collect();
    assert_eq!(ours, theirs);
}

#[test]
fn exif_orientation_is_applied() {
    // 40 x 20: left half red, right half blue.
    let img = DynamicImage::ImageRgb8(RgbImage::from_fn(40, 20, |x, _| {
        if x < 20 {
            Rgb([255, 0, 0])
        } else {
            Rgb([0, 0, 255])
        }
    }));
    let px = |chw: &[u8], c: usize, y: usize, x: usize| chw[c * 256 + y * 16 + x];
    // Without a tag: the centre crop keeps red on the left, blue on the right.
    let plain = decode_resized(
        &jpeg_with_orientation(&img, 1),
        &FolderOptions::new(16, 16, 3),
    )
    .unwrap();
    assert!(px(&plain, 0, 8, 1) > 200 && px(&plain, 2, 8, 14) > 200);
    // Orientation 6 (turn 90 degrees clockwise to view): the left half comes out on top.
    let turned = decode_resized(
        &jpeg_with_orientation(&img, 6),
        &FolderOptions::new(16, 16, 3),
    )
    .unwrap();
    assert!(px(&turned, 0, 1, 8) > 200, "top is not red");
    assert!(px(&turned, 2, 14, 8) > 200, "bottom is not blue");
    assert!(px(&turned, 0, 14, 8) < 60);
}

#[test]
fn split_is_stable_and_stratified() {
    let tmp = tempfile::tempdir().unwrap();
    build_folder(tmp.path());
    let a = load(tmp.path(), &opts(8), &quiet).unwrap();
    let b = load(tmp.path(), &opts(8), &quiet).unwrap();
    assert_eq!(a.val.paths, b.val.paths);
    assert_eq!(a.train.paths, b.train.paths);
    assert_eq!(a.train.pixels, b.train.pixels);

    // The function itself: 20, 9, 2 and 1 images in classes 0..4, interleaved.
    let mut labels = Vec::new();
    for (class, n) in [(0u32, 20), (1, 9), (2, 2), (3, 1)] {
        labels.extend(std::iter::repeat_n(class, n));
    }
    labels.sort_by_key(|l| (l * 7) % 5);
    let (train, val) = stratified_split(&labels, 0.2, 7).unwrap();
    let count = |idx: &[usize], c: u32| idx.iter().filter(|&&i| labels[i] == c).count();
    // round(4.0), round(1.8), at least 1 of 2, none of 1.
    assert_eq!(
        [0, 1, 2, 3].map(|c| count(&val, c)),
        [4, 2, 1, 0],
        "held out per class"
    );
    let mut all: Vec<usize> = train.iter().chain(&val).copied().collect();
    all.sort();
    assert_eq!(all, (0..labels.len()).collect::<Vec<_>>());
    assert!(train.is_sorted() && val.is_sorted());
    assert_eq!(
        stratified_split(&labels, 0.2, 7).unwrap(),
        (train.clone(), val.clone())
    );
    assert_ne!(stratified_split(&labels, 0.2, 8).unwrap().1, val);
    // No held-out set when asked for none; bad fractions are errors.
    assert!(stratified_split(&labels, 0.0, 7).unwrap().1.is_empty());
    for bad in [1.0, -0.1, f64::NAN] {
        assert!(matches!(
            stratified_split(&labels, bad, 7),
            Err(Error::InvalidArgument { .. })
        ));
    }
}

#[test]
fn train_and_val_folders() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    for (i, class) in ["ant", "bee", "cat"].into_iter().enumerate() {
        for j in 0..3 {
            save(
                &rgb(i, 24, 24, j),
                &root.join(format!("train/{class}/{j}.png")),
            );
        }
    }
    save(&rgb(1, 24, 24, 0), &root.join("val/bee/v.png"));
    save(&rgb(0, 24, 24, 0), &root.join("val/ant/v.png"));
    let s = scan(root).unwrap();
    assert_eq!(s.classes, ["ant", "bee", "cat"]);
    assert_eq!(s.train_root, root.join("train"));
    assert_eq!(s.val_root.as_deref(), Some(root.join("val").as_path()));
    let data = load(root, &opts(8), &quiet).unwrap();
    assert_eq!(data.train.len(), 9);
    assert_eq!(data.val.labels, [0, 1]);
    assert!(
        data.val
            .paths
            .iter()
            .all(|p| p.starts_with(root.join("val")))
    );

    // `test` in place of `val`.
    std::fs::rename(root.join("val"), root.join("test")).unwrap();
    let data = load(root, &opts(8), &quiet).unwrap();
    assert_eq!(data.val.len(), 2);
    assert!(
        data.val
            .paths
            .iter()
            .all(|p| p.starts_with(root.join("test")))
    );

    // Only `train`: the held-out set is drawn from it.
    std::fs::remove_dir_all(root.join("test")).unwrap();
    let data = load(root, &opts(8), &quiet).unwrap();
    assert_eq!((data.train.len(), data.val.len()), (6, 3));

    // A held-out class the training set does not have.
    save(&rgb(2, 24, 24, 0), &root.join("val/dog/v.png"));
    let msg = folder_err(load(root, &opts(8), &quiet).unwrap_err());
    assert!(msg.contains("dog"), "{msg}");
}

#[test]
fn bad_folders_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();

    // Not a folder, missing, empty.
    std::fs::write(root.join("file.png"), b"x").unwrap();
    assert!(load(&root.join("file.png"), &opts(8), &quiet).is_err());
    assert!(matches!(
        load(&root.join("missing"), &opts(8), &quiet),
        Err(Error::Io { .. })
    ));
    let empty = root.join("empty");
    std::fs::create_dir(&empty).unwrap();
    std::fs::write(empty.join(".DS_Store"), b"x").unwrap();
    let msg = folder_err(load(&empty, &opts(8), &quiet).unwrap_err());
    assert!(msg.contains("empty"), "{msg}");

    // Images but no class folders.
    let loose = root.join("loose");
    save(&rgb(0, 20, 20, 0), &loose.join("a.png"));
    save(&rgb(0, 20, 20, 1), &loose.join("b.png"));
    let msg = folder_err(scan(&loose).unwrap_err());
    assert!(
        msg.contains("no class folders") && msg.contains("2 images"),
        "{msg}"
    );

    // One class.
    let one = root.join("one");
    save(&rgb(0, 20, 20, 0), &one.join("only/a.png"));
    let msg = folder_err(scan(&one).unwrap_err());
    assert!(
        msg.contains("only one class") && msg.contains("only"),
        "{msg}"
    );

    // A class folder with no images (only junk).
    let hollow = root.join("hollow");
    save(&rgb(0, 20, 20, 0), &hollow.join("full/a.png"));
    std::fs::create_dir_all(hollow.join("bare")).unwrap();
    std::fs::write(hollow.join("bare/notes.txt"), "x").unwrap();
    let msg = folder_err(scan(&hollow).unwrap_err());
    assert!(
        msg.contains("without images") && msg.contains("bare"),
        "{msg}"
    );

    // Too many broken files: 3 of 5, named in the message.
    let broken = root.join("broken");
    save(&rgb(0, 20, 20, 0), &broken.join("a/ok.png"));
    save(&rgb(1, 20, 20, 0), &broken.join("b/ok.png"));
    for i in 0..3 {
        std::fs::write(broken.join(format!("b/bad{i}.jpg")), b"not a jpeg").unwrap();
    }
    let msg = folder_err(load(&broken, &opts(8), &quiet).unwrap_err());
    assert!(msg.contains("3 of 5") && msg.contains("bad0.jpg"), "{msg}");
    // Allowed when the share is raised; the failures are then listed.
    let lenient = FolderOptions {
        max_failed_fraction: 0.6,
        ..opts(8)
    };
    let data = load(&broken, &lenient, &quiet).unwrap();
    assert_eq!(data.skipped.len(), 3);
    // A class whose every image fails.
    std::fs::remove_file(broken.join("b/ok.png")).unwrap();
    let all = FolderOptions {
        max_failed_fraction: 1.0,
        ..opts(8)
    };
    let msg = folder_err(load(&broken, &all, &quiet).unwrap_err());
    assert!(
        msg.contains("could be decoded") && msg.contains('b'),
        "{msg}"
    );

    // Bad options.
    for bad in [
        FolderOptions::new(0, 8, 3),
        FolderOptions::new(8, 8, 2),
        FolderOptions {
            val_fraction: 1.0,
            ..opts(8)
        },
        FolderOptions {
            max_failed_fraction: f64::NAN,
            ..opts(8)
        },
    ] {
        assert!(matches!(
            load(&hollow, &bad, &quiet),
            Err(Error::InvalidArgument { .. })
        ));
    }
}

/// Every file under `dir` with its length and modification time.
fn snapshot(dir: &Path) -> Vec<(PathBuf, u64, std::time::SystemTime)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let m = std::fs::symlink_metadata(e.path()).unwrap();
            if m.is_dir() {
                stack.push(e.path());
            }
            out.push((e.path(), m.len(), m.modified().unwrap()));
        }
    }
    out.sort();
    out
}

#[test]
fn cache_is_reused_and_refreshed() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("images");
    build_folder(&root);
    let before = snapshot(&root);
    let cache = tmp.path().join("cache/sub");
    let o = FolderOptions {
        cache_dir: Some(cache.clone()),
        ..opts(16)
    };
    let calls = Mutex::new(Vec::new());
    let record = |p: Progress| calls.lock().unwrap().push(p);
    let first = load(&root, &o, &record).unwrap();
    assert_eq!((first.decoded, first.cached), (22, 0));
    assert!(first.cache_warning.is_none(), "{:?}", first.cache_warning);
    let file = first.cache_file.clone().unwrap();
    assert!(file.starts_with(&cache) && file.is_file());
    {
        let calls = calls.lock().unwrap();
        assert_eq!(calls.len(), 23);
        assert!(calls.windows(2).all(|w| w[0].done < w[1].done));
        assert_eq!(calls.last().unwrap().done, 22);
        assert!(calls.iter().all(|p| p.total == 22 && p.cached == 0));
    }

    // Nothing decoded the second time (the broken file's failure is remembered too).
    let second = load(&root, &o, &quiet).unwrap();
    assert_eq!((second.decoded, second.cached), (0, 22));
    assert_eq!(second.train, first.train);
    assert_eq!(second.val, first.val);
    assert_eq!(second.skipped, first.skipped);

    // Another size has its own cache file.
    let other = FolderOptions {
        cache_dir: Some(cache.clone()),
        ..opts(12)
    };
    let o12 = load(&root, &other, &quiet).unwrap();
    assert_eq!(o12.decoded, 22);
    assert_ne!(o12.cache_file, first.cache_file);

    // A file rewritten (new size) and one only touched (new time) are decoded again.
    save(&rgb(0, 33, 33, 3), &root.join("circle/c1.png"));
    let f = std::fs::File::options()
        .write(true)
        .open(root.join("circle/c2.png"))
        .unwrap();
    f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(5))
        .unwrap();
    drop(f);
    let third = load(&root, &o, &quiet).unwrap();
    assert_eq!((third.decoded, third.cached), (2, 20));
    // A removed file: its entry is dropped, the rest reused.
    std::fs::remove_file(root.join("square/s0.jpg")).unwrap();
    let fourth = load(&root, &o, &quiet).unwrap();
    assert_eq!((fourth.decoded, fourth.cached), (0, 21));
    let fifth = load(&root, &o, &quiet).unwrap();
    assert_eq!((fifth.decoded, fifth.cached), (0, 21));
    assert_eq!(fifth.train, fourth.train);

    // The image folder itself was never written to (beyond the test's own edits).
    let after: Vec<PathBuf> = snapshot(&root).into_iter().map(|e| e.0).collect();
    let mut expected: Vec<PathBuf> = before.into_iter().map(|e| e.0).collect();
    expected.retain(|p| !p.ends_with("square/s0.jpg"));
    assert_eq!(after, expected);
    // And no temporary file was left in the cache folder.
    let names: Vec<_> = std::fs::read_dir(&cache).unwrap().collect();
    assert_eq!(names.len(), 2);
}

#[test]
fn corrupt_cache_is_ignored_and_rebuilt() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("images");
    build_folder(&root);
    let o = FolderOptions {
        cache_dir: Some(tmp.path().join("cache")),
        ..opts(16)
    };
    let good = load(&root, &o, &quiet).unwrap();
    let file = good.cache_file.clone().unwrap();
    let bytes = std::fs::read(&file).unwrap();
    let damaged: Vec<(&str, Vec<u8>)> = vec![
        ("truncated", bytes[..bytes.len() / 2].to_vec()),
        ("header only", bytes[..20].to_vec()),
        ("empty", Vec::new()),
        ("garbage", vec![0xAB; 5000]),
        ("one byte changed", {
            let mut b = bytes.clone();
            let mid = b.len() / 2;
            b[mid] ^= 0x40;
            b
        }),
        ("huge count", {
            let mut b = bytes.clone();
            b[24..32].copy_from_slice(&u64::MAX.to_le_bytes());
            b
        }),
        ("trailing data", {
            let mut b = bytes.clone();
            b.push(0);
            b
        }),
    ];
    for (what, content) in damaged {
        std::fs::write(&file, content).unwrap();
        let d = load(&root, &o, &quiet).unwrap();
        assert_eq!(d.decoded, 22, "{what}");
        assert!(d.cache_warning.is_some(), "{what}");
        assert_eq!(d.train, good.train, "{what}");
        // Rebuilt: the next load takes everything from it.
        let again = load(&root, &o, &quiet).unwrap();
        assert_eq!((again.decoded, again.cache_warning), (0, None), "{what}");
    }
    // A cache folder inside the image folder is refused, and not created.
    let inside = FolderOptions {
        cache_dir: Some(root.join("cache")),
        ..opts(16)
    };
    let msg = folder_err(load(&root, &inside, &quiet).unwrap_err());
    assert!(msg.contains("inside"), "{msg}");
    assert!(!root.join("cache").exists());
}

#[test]
fn suggested_size_follows_the_images() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    // Shorter sides 60, 70, 90, 90, 100: median 90 -> 92 (the nearest multiple of 4, halves up).
    for (i, (w, h)) in [(60, 80), (70, 70), (120, 90), (90, 90), (100, 300)]
        .into_iter()
        .enumerate()
    {
        save(
            &rgb(i % 2, w, h, 0),
            &root.join(format!("big/{}/{i}.png", i % 2)),
        );
    }
    assert_eq!(suggest_size(&root.join("big")).unwrap(), (92, 92));
    for i in 0..4 {
        save(
            &rgb(i % 2, 10, 12, 0),
            &root.join(format!("small/{}/{i}.png", i % 2)),
        );
        save(
            &rgb(i % 2, 400, 500, 0),
            &root.join(format!("large/{}/{i}.png", i % 2)),
        );
    }
    assert_eq!(suggest_size(&root.join("small")).unwrap(), (28, 28));
    assert_eq!(suggest_size(&root.join("large")).unwrap(), (224, 224));
}

#[test]
fn suggested_channels_follow_the_images() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    // Grayscale PNGs (8-bit, 16-bit, with alpha) and a JPEG stored as luma: one channel.
    for i in 0..4u32 {
        let luma = rgb(i as usize % 2, 20, 24, i).to_luma8();
        let img = match i {
            0 => DynamicImage::ImageLuma8(luma),
            1 => DynamicImage::ImageLuma16(DynamicImage::ImageLuma8(luma).to_luma16()),
            2 => DynamicImage::ImageLumaA8(DynamicImage::ImageLuma8(luma).to_luma_alpha8()),
            _ => DynamicImage::ImageLuma8(luma),
        };
        let ext = if i == 3 { "jpg" } else { "png" };
        let path = root.join(format!("gray/{}/{i}.{ext}", i % 2));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        img.save(&path).unwrap();
    }
    // A file that is not an image does not change the answer.
    std::fs::write(root.join("gray/0/notes.txt"), "not an image").unwrap();
    assert_eq!(suggest_channels(&root.join("gray")).unwrap(), 1);
    // One colour image among them: three channels.
    save(&rgb(1, 20, 24, 0), &root.join("gray/1/colour.png"));
    assert_eq!(suggest_channels(&root.join("gray")).unwrap(), 3);
}

#[cfg(unix)]
#[test]
fn links_are_followed_to_files_only() {
    use std::os::unix::fs::symlink;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("images");
    let outside = tmp.path().join("outside");
    save(&rgb(0, 20, 20, 0), &root.join("a/own.png"));
    save(&rgb(1, 20, 20, 0), &root.join("b/own.png"));
    save(&rgb(0, 20, 20, 1), &outside.join("linked.png"));
    save(&rgb(0, 20, 20, 2), &outside.join("folder/inner.png"));
    symlink(outside.join("linked.png"), root.join("a/link.png")).unwrap();
    symlink(outside.join("folder"), root.join("a/folder.png")).unwrap();
    symlink(outside.join("folder"), root.join("a/sub")).unwrap();
    // A loop: followed, it would never end.
    symlink(&root, root.join("a/loop")).unwrap();
    symlink(outside.join("gone.png"), root.join("b/dangling.png")).unwrap();
    // A link to a class folder is not a class.
    symlink(outside.join("folder"), root.join("c")).unwrap();
    let o = FolderOptions {
        val_fraction: 0.0,
        ..opts(8)
    };
    let data = load(&root, &o, &quiet).unwrap();
    assert_eq!(data.classes, ["a", "b"]);
    let names: Vec<String> = data
        .train
        .paths
        .iter()
        .map(|p| p.strip_prefix(&root).unwrap().display().to_string())
        .collect();
    assert_eq!(names, ["a/link.png", "a/own.png", "b/own.png"]);
    assert_eq!(data.skipped.len(), 1);
    assert!(data.skipped[0].0.ends_with("b/dangling.png"));
}

#[cfg(unix)]
#[test]
fn fifos_are_skipped_without_blocking() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("images");
    save(&rgb(0, 20, 20, 0), &root.join("a/own.png"));
    save(&rgb(1, 20, 20, 0), &root.join("b/own.png"));
    let fifo = |p: PathBuf| {
        let ok = std::process::Command::new("mkfifo")
            .arg(&p)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "mkfifo {}", p.display());
    };
    fifo(root.join("a/pipe.png"));
    fifo(root.join("b/pipe"));
    // A cache file that is a FIFO: not opened (the load warns, and puts a real cache in its
    // place).
    let cache = tmp.path().join("cache");
    std::fs::create_dir(&cache).unwrap();
    let o = FolderOptions {
        cache_dir: Some(cache.clone()),
        val_fraction: 0.0,
        ..opts(8)
    };
    fifo(image_folder::cache_file(&cache, &root, &o).unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    let (tx2, rx2) = std::sync::mpsc::channel();
    let (r1, r2) = (root.clone(), root.clone());
    std::thread::spawn(move || {
        let _ = tx.send(load(&r1, &o, &quiet).map_err(|e| e.to_string()));
    });
    std::thread::spawn(move || {
        let _ = tx2.send(suggest_size(&r2).map_err(|e| e.to_string()));
    });
    let wait = std::time::Duration::from_secs(60);
    let data = rx
        .recv_timeout(wait)
        .expect("load blocked on a FIFO")
        .unwrap();
    assert_eq!(data.train.len(), 2);
    assert_eq!(data.skipped.len(), 1);
    assert!(data.skipped[0].0.ends_with("a/pipe.png"));
    assert!(data.cache_warning.is_some());
    assert_eq!(
        rx2.recv_timeout(wait)
            .expect("suggest_size blocked")
            .unwrap(),
        (28, 28)
    );
}
