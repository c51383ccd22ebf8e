//! Each `#[repr(C)]` params struct against naga's layout of its WGSL twin: the same size, the
//! same named fields in the same order at the same offsets (padding fields, named `_...`, are
//! only counted in the size). Every produced shader that declares the struct is checked.

use super::*;

/// What a Rust params struct looks like: its size and its named fields with their offsets.
struct RustLayout {
    name: &'static str,
    wgsl: &'static [&'static str],
    size: usize,
    fields: Vec<(&'static str, usize)>,
}

/// The layout of `$path` (WGSL struct names `$wgsl`, default the Rust name). The pattern in
/// `_exhaustive` stops compiling when a field is added on the Rust side but not listed here.
macro_rules! layout {
    ($path:path $(as [$($wgsl:literal),+])?, [$($field:ident),*], [$($pad:ident),*]) => {{
        #[allow(dead_code)]
        fn _exhaustive(p: $path) {
            let $path { $($field: _,)* $($pad: _,)* } = p;
        }
        let name: &'static str = stringify!($path).rsplit("::").next().unwrap_or_default().trim();
        let wgsl: &'static [&'static str] = layout!(@names name $(, $($wgsl),+)?);
        RustLayout {
            name,
            wgsl,
            size: std::mem::size_of::<$path>(),
            fields: vec![$((stringify!($field), std::mem::offset_of!($path, $field))),*],
        }
    }};
    (@names $name:ident) => { Box::leak(Box::new([$name])) };
    (@names $name:ident, $($wgsl:literal),+) => { &[$($wgsl),+] };
}

fn rust_layouts() -> Vec<RustLayout> {
    vec![
        layout!(params::AslParams, [n, c, h, w, ho, wo, stride, chunks], []),
        layout!(
            params::RowsParams,
            [n, c, h, w, rows, strips, chunks],
            [_pad]
        ),
        layout!(params::NormalizeParams, [c], [_pad0, _pad1, _pad2]),
        layout!(params::TapsParams, [c, offset], [_pad0, _pad1]),
        layout!(
            params::Conv1x1Params,
            [n, cin, cout, h, w, ho, wo, stride, flags, k_chunk, splits],
            [_pad]
        ),
        layout!(
            params::PackParams,
            [cout, cin, kc, rows, nk, len, transposed],
            [_pad1]
        ),
        layout!(
            params::GemmParams,
            [
                n, cin, cout, h, w, ho, wo, stride, flags, row0, kc, k0, k1, nrows
            ],
            [_pad1, _pad2]
        ),
        layout!(
            params::Conv3x3Params,
            [n, cin, cout, h, w, ho, wo, stride],
            []
        ),
        layout!(
            params::DepthwiseParams,
            [n, c, h, w, ho, wo, stride, runs_per_row],
            []
        ),
        layout!(params::AffineParams, [len, c, plane, relu], []),
        layout!(params::PoolParams, [n, c, plane], [_pad0]),
        layout!(params::SoftmaxParams, [rows, cols], [_pad0, _pad1]),
        layout!(params::CopyParams, [len, row], [_pad0, _pad1]),
        layout!(params::BnParams, [n, c, plane, len], []),
        layout!(
            params::DepthwiseBackwardParams,
            [n, c, h, w, ho, wo, stride],
            [_pad]
        ),
        layout!(params::CeParams, [n, k], [_pad0, _pad1]),
        layout!(
            params::OptimizerParams,
            [
                len,
                offset,
                channels,
                lr_mult,
                momentum,
                weight_decay,
                count,
                divisor
            ],
            [_pad0, _pad1, _pad2, _pad3]
        ),
        layout!(params::LenParams, [len, plane], [_pad0, _pad1]),
    ]
}

/// Compare `rust` with struct `wgsl_name` of the WGSL `src`; `Ok(false)` if `src` has no such
/// struct.
fn compare(rust: &RustLayout, wgsl_name: &str, src: &str) -> Result<bool, String> {
    let module = naga::front::wgsl::parse_str(src).map_err(|e| e.emit_to_string(src))?;
    let mut layouter = naga::proc::Layouter::default();
    layouter
        .update(module.to_ctx())
        .map_err(|e| format!("layout: {e}"))?;
    let Some((handle, ty)) = module
        .types
        .iter()
        .find(|(_, t)| t.name.as_deref() == Some(wgsl_name))
    else {
        return Ok(false);
    };
    let naga::TypeInner::Struct { members, span } = &ty.inner else {
        return Err(format!("{wgsl_name} is not a struct"));
    };
    let wgsl_fields: Vec<(&str, usize)> = members
        .iter()
        .filter_map(|m| {
            let name = m.name.as_deref()?;
            (!name.starts_with('_')).then_some((name, m.offset as usize))
        })
        .collect();
    let problems = [
        (rust.size != *span as usize || layouter[handle].size != *span)
            .then(|| format!("size: Rust {} bytes, WGSL {span}", rust.size)),
        (rust.fields != wgsl_fields).then(|| {
            format!(
                "fields (name, offset): Rust {:?}, WGSL {wgsl_fields:?}",
                rust.fields
            )
        }),
    ];
    let problems: Vec<String> = problems.into_iter().flatten().collect();
    if problems.is_empty() {
        Ok(true)
    } else {
        Err(format!(
            "{} vs WGSL {wgsl_name}: {}",
            rust.name,
            problems.join("; ")
        ))
    }
}

#[test]
fn every_params_struct_matches_its_wgsl_twin() {
    let mut failures = Vec::new();
    for rust in rust_layouts() {
        let mut found = 0;
        for &wgsl in rust.wgsl {
            for (file, src) in SHADERS {
                match compare(&rust, wgsl, src) {
                    Ok(true) => found += 1,
                    Ok(false) => {}
                    Err(e) => failures.push(format!("{file}: {e}")),
                }
            }
        }
        if found == 0 {
            failures.push(format!("{}: no shader declares {:?}", rust.name, rust.wgsl));
        }
    }
    // Every params struct of every shader is covered by a Rust twin above.
    let covered: Vec<&str> = rust_layouts()
        .iter()
        .flat_map(|r| r.wgsl.to_vec())
        .collect();
    for (file, src) in SHADERS {
        let module = naga::front::wgsl::parse_str(src).expect("parses (tests/cpu/shaders.rs)");
        for (_, ty) in module.types.iter() {
            if let Some(name) = ty.name.as_deref()
                && name.ends_with("Params")
                && !covered.contains(&name)
            {
                failures.push(format!("{file}: {name} has no Rust twin in this test"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_reordered_field_fails_on_either_side() {
    let (_, src) = SHADERS
        .iter()
        .find(|(f, _)| *f == "asl_forward.wgsl")
        .expect("asl_forward.wgsl is produced");
    let rust = layout!(params::AslParams, [n, c, h, w, ho, wo, stride, chunks], []);
    assert_eq!(compare(&rust, "AslParams", src), Ok(true));

    // WGSL side: `h` and `w` swapped.
    let swapped = src.replacen("    h: u32,\n    w: u32,", "    w: u32,\n    h: u32,", 1);
    assert_ne!(&swapped, src, "the test edits the struct");
    assert!(compare(&rust, "AslParams", &swapped).is_err());

    // Rust side: the same swap in a copy of the struct.
    #[repr(C)]
    #[allow(dead_code)]
    struct AslParams {
        n: u32,
        c: u32,
        w: u32,
        h: u32,
        ho: u32,
        wo: u32,
        stride: u32,
        chunks: u32,
    }
    let reordered = layout!(AslParams, [n, c, h, w, ho, wo, stride, chunks], []);
    assert!(compare(&reordered, "AslParams", src).is_err());

    // A field missing on the Rust side.
    let mut short = layout!(params::AslParams, [n, c, h, w, ho, wo, stride, chunks], []);
    short.fields.pop();
    assert!(compare(&short, "AslParams", src).is_err());
}
