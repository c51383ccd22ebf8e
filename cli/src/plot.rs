//! `activeshift shifts`: the learned shifts of every ASL layer as a grid of scatter plots (the
//! paper's Figure 3), drawn with plotters as SVG and rasterized with resvg for PNG.

use activeshift::{Model, Result};
use plotters::prelude::*;
use std::path::Path;

const CELL: u32 = 260;

/// One ASL layer to draw: its name, stride and every channel's `(xpos, ypos)`.
type ShiftLayer = (String, usize, Vec<(f32, f32)>);

/// The `[2, C]` shift tensors of the model, in block order, with their stride.
fn shift_layers(model: &Model) -> Vec<ShiftLayer> {
    model
        .config
        .blocks()
        .iter()
        .filter_map(|b| {
            let t = model
                .param(activeshift::model::ParamId::Shift(b.index))
                .ok()?;
            let c = t.dims[1];
            let pts = (0..c).map(|i| (t.data[i], t.data[c + i])).collect();
            Some((b.prefix.clone(), b.stride, pts))
        })
        .collect()
}

fn plot_err(e: impl std::fmt::Display) -> activeshift::Error {
    activeshift::Error::invalid("shifts", format!("drawing failed: {e}"))
}

/// The plot as an SVG document.
pub fn shifts_svg(model: &Model) -> Result<String> {
    let layers = shift_layers(model);
    if layers.is_empty() {
        return Err(activeshift::Error::invalid(
            "shifts",
            "the model has no shift layers",
        ));
    }
    let cols = 6.min(layers.len()) as u32;
    let rows = (layers.len() as u32).div_ceil(cols);
    let mut svg = String::new();
    {
        let root =
            SVGBackend::with_string(&mut svg, (cols * CELL, rows * CELL + 40)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let (title, body) = root.split_vertically(40);
        title
            .titled(
                &format!(
                    "{}: learned shifts (xpos to the right, ypos downwards as in the image; pixels, a dot per channel)",
                    model.config.name
                ),
                ("sans-serif", 18),
            )
            .map_err(plot_err)?;
        let cells = body.split_evenly((rows as usize, cols as usize));
        for ((name, stride, pts), cell) in layers.iter().zip(cells.iter()) {
            let reach = pts
                .iter()
                .fold(1.0f32, |m, (x, y)| m.max(x.abs()).max(y.abs()))
                .ceil()
                .min(1e4);
            let mut chart = ChartBuilder::on(cell)
                .caption(
                    format!("{name} ({} ch, stride {stride})", pts.len()),
                    ("sans-serif", 13),
                )
                .margin(6)
                .x_label_area_size(18)
                .y_label_area_size(24)
                // y grows downwards, as rows do in the image (and in the web demo's plot): a
                // positive ypos reads from lower rows.
                .build_cartesian_2d(-reach..reach, reach..-reach)
                .map_err(plot_err)?;
            chart
                .configure_mesh()
                .x_labels(5)
                .y_labels(5)
                .label_style(("sans-serif", 10))
                .draw()
                .map_err(plot_err)?;
            chart
                .draw_series(
                    pts.iter()
                        .filter(|(x, y)| x.is_finite() && y.is_finite())
                        .map(|&(x, y)| {
                            Circle::new((x, y), 2, RGBColor(200, 60, 30).mix(0.6).filled())
                        }),
                )
                .map_err(plot_err)?;
        }
        root.present().map_err(plot_err)?;
    }
    Ok(svg)
}

/// Write the plot to `path` (`.svg`, or `.png` rasterized with the system's fonts), atomically;
/// an existing file is replaced only with `overwrite`.
pub fn write_shifts(model: &Model, path: &Path, overwrite: bool) -> Result<()> {
    let svg = shifts_svg(model)?;
    let write = |bytes: &[u8]| activeshift::model::write_atomic(path, bytes, overwrite);
    match path.extension().and_then(|e| e.to_str()) {
        Some("svg") => write(svg.as_bytes()),
        Some("png") => {
            let mut opt = resvg::usvg::Options::default();
            let db = opt.fontdb_mut();
            db.load_system_fonts();
            // The SVG asks for the generic `sans-serif`; map it to a sans face that exists.
            let family = db
                .faces()
                .flat_map(|f| f.families.iter().map(|(name, _)| name.clone()))
                .min_by_key(|name| (!name.contains("Sans"), name.len()));
            if let Some(family) = family {
                db.set_sans_serif_family(family);
            }
            let tree = resvg::usvg::Tree::from_str(&svg, &opt).map_err(plot_err)?;
            let size = tree.size().to_int_size();
            let mut pixmap = resvg::tiny_skia::Pixmap::new(size.width(), size.height())
                .ok_or_else(|| plot_err("empty image"))?;
            resvg::render(
                &tree,
                resvg::tiny_skia::Transform::default(),
                &mut pixmap.as_mut(),
            );
            let png = pixmap.encode_png().map_err(plot_err)?;
            write(&png)
        }
        _ => Err(activeshift::Error::invalid(
            "shifts",
            format!("{}: the output must end in .svg or .png", path.display()),
        )),
    }
}

/// One group of bars in [`bars_svg`]: a title and `(label, value in ms, colour)` per bar.
pub type BarGroup = (String, Vec<(String, f64, RGBColor)>);

/// Horizontal bar charts side by side (the picture beside BENCHMARKS.md), as an SVG document:
/// one panel per group, each bar labelled with its name and value.
pub fn bars_svg(title: &str, groups: &[BarGroup]) -> Result<String> {
    let groups: Vec<&BarGroup> = groups.iter().filter(|(_, b)| !b.is_empty()).collect();
    if groups.is_empty() {
        return Err(activeshift::Error::invalid("bench", "nothing to draw"));
    }
    const W: u32 = 520;
    const BAR: u32 = 30;
    let most = groups.iter().map(|(_, b)| b.len()).max().unwrap_or(1) as u32;
    let (width, height) = (W * groups.len() as u32, 40 + 50 + BAR * most);
    let err = |e: &dyn std::fmt::Display| {
        activeshift::Error::invalid("bench", format!("drawing failed: {e}"))
    };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let (head, body) = root.split_vertically(40);
        head.titled(title, ("sans-serif", 17))
            .map_err(|e| err(&e))?;
        let panels = body.split_evenly((1, groups.len()));
        for ((name, bars), panel) in groups.iter().zip(panels.iter()) {
            let top = bars
                .iter()
                .map(|b| b.1)
                .filter(|v| v.is_finite())
                .fold(0.0f64, f64::max)
                .max(1e-6);
            let n = bars.len() as f64;
            let mut chart = ChartBuilder::on(panel)
                .caption(name.as_str(), ("sans-serif", 14))
                .margin(8)
                .x_label_area_size(22)
                .y_label_area_size(4)
                .build_cartesian_2d(0.0..top * 1.02, 0.0..n)
                .map_err(|e| err(&e))?;
            chart
                .configure_mesh()
                .disable_y_mesh()
                .disable_y_axis()
                .light_line_style(WHITE)
                .x_labels(6)
                .x_desc("ms")
                .label_style(("sans-serif", 11))
                .draw()
                .map_err(|e| err(&e))?;
            // First bar on top.
            for (i, (label, v, colour)) in bars.iter().enumerate() {
                let y = n - i as f64;
                let v = if v.is_finite() { *v } else { 0.0 };
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(0.0, y - 0.85), (v, y - 0.15)],
                        colour.mix(0.45).filled(),
                    )))
                    .map_err(|e| err(&e))?;
                chart
                    .draw_series(std::iter::once(Text::new(
                        format!("{label}: {v:.1}"),
                        (top * 0.01, y - 0.62),
                        ("sans-serif", 12),
                    )))
                    .map_err(|e| err(&e))?;
            }
        }
        root.present().map_err(|e| err(&e))?;
    }
    Ok(svg)
}
