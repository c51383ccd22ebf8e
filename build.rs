//! Build step: produces the WGSL of every kernel from `shaders/`, the table of them, and the
//! Rust twins of their `*Params` uniform structs.
//!
//! - Each kernel family is one source, `shaders/FAMILY.wgsl`; [`KERNELS`] below lists every
//!   kernel produced from them (its file name, its source, its defines, its entry points), and
//!   nothing else is produced.
//! - One preprocessor syntax, lines starting with `#`: `#import NAME` pulls in
//!   `shaders/common/NAME.wgsl` once per kernel (shared structs and functions), `#include NAME`
//!   pastes it where it stands (a fragment of a function body), `#ifdef FLAG` / `#else` /
//!   `#endif` keep lines by the defines, and `#unroll M COUNT` ... `#endunroll` (or
//!   `#unroll M FIRST..END`) repeats its lines once per value of `M`. A define `NAME=VALUE`
//!   (and `M` inside `#unroll`) replaces the identifier NAME in code and comments; `##` glues
//!   the pieces around it (`a##M` is `a0`, `a1`, ...). `#bindings` ... `#endbindings` declares
//!   the kernel's resources, one a line: `N name: uniform TYPE` is
//!   `@group(0) @binding(N) var<uniform> name: TYPE;`, `N name: read ELEM` and
//!   `N name: read_write ELEM` a storage `array<ELEM>` with that access; comments, blank lines
//!   and the other directives stand between them as anywhere else.
//! - The register-tiled GEMMs unroll their accumulator rows with `#unroll`, since compilers for
//!   CPU adapters (lavapipe) keep a dynamically indexed private array in memory.
//!
//! Every produced kernel starts with a line saying it was generated and from what. They are
//! written to `$OUT_DIR/shaders/`, and `$OUT_DIR/shaders.rs` lists them all
//! (`gpu::kernels::SHADERS`, with `SHADER_PERMUTATIONS`); tests/cpu/shaders.rs validates each with
//! naga under WebGPU's limits. `$OUT_DIR/params.rs` holds a `#[repr(C)]` bytemuck struct for
//! every WGSL struct whose name ends in `Params`, generated from naga's layout of it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// One kernel: the file name it is produced as, its family's source in `shaders/`, the defines
/// of all its entry points, and its entry points (the WGSL function `main` renamed, each with
/// its own defines added).
struct Kernel {
    file: &'static str,
    source: &'static str,
    defines: &'static [&'static str],
    entries: &'static [(&'static str, &'static [&'static str])],
}

/// A kernel with one entry point, `main` (or several written out in the source).
const MAIN: &[(&str, &[&str])] = &[("main", &[])];
/// The register-tiled GEMMs: 32 or 64 output channels per invocation, uniform weight slabs.
const GEMM: &[(&str, &[&str])] = &[
    ("main", &["ROWS=32u", "WEIGHTS=wslab"]),
    ("main_wide", &["ROWS=64u", "WEIGHTS=wslab"]),
];
/// The same with the one-dispatch forms (all weights in one storage buffer).
const GEMM_WHOLE: &[(&str, &[&str])] = &[
    ("main", &["ROWS=32u", "WEIGHTS=wslab"]),
    ("main_wide", &["ROWS=64u", "WEIGHTS=wslab"]),
    ("main_whole", &["ROWS=32u", "WEIGHTS=wall", "WHOLE"]),
    ("main_wide_whole", &["ROWS=64u", "WEIGHTS=wall", "WHOLE"]),
];

const fn k(file: &'static str, source: &'static str, defines: &'static [&'static str]) -> Kernel {
    Kernel {
        file,
        source,
        defines,
        entries: MAIN,
    }
}

/// Every kernel build.rs produces: the one place its permutations are listed.
const KERNELS: &[Kernel] = &[
    k("add.wgsl", "add", &[]),
    Kernel {
        file: "affine.wgsl",
        source: "affine",
        defines: &[],
        entries: &[
            ("main", &["SRC=x"]),
            ("in_place", &["SRC=y"]),
            ("main4", &["VEC4", "SRC=x4"]),
            ("in_place4", &["VEC4", "SRC=y4"]),
        ],
    },
    k("asl_backward_input.wgsl", "asl_backward_input", &[]),
    k("asl_backward_shift.wgsl", "asl_backward_shift", &[]),
    k("asl_forward.wgsl", "asl_forward", &[]),
    k("asl_forward_rows.wgsl", "asl_forward", &["STRIPS"]),
    k("asl_forward_vec4.wgsl", "asl_forward", &["VEC4"]),
    k("asl_taps.wgsl", "asl_taps", &[]),
    k("asl_conv1x1_tiled.wgsl", "conv1x1", &["SHIFTED"]),
    Kernel {
        file: "asl_conv1x1.wgsl",
        source: "gemm",
        defines: &["SHIFTED"],
        entries: GEMM,
    },
    Kernel {
        file: "asl_conv1x1_vec4.wgsl",
        source: "gemm",
        defines: &["SHIFTED", "VEC4"],
        entries: GEMM,
    },
    k("batchnorm_train.wgsl", "batchnorm_train", &[]),
    k("conv1x1.wgsl", "conv1x1", &[]),
    k("conv1x1_backward_input.wgsl", "conv1x1_backward_input", &[]),
    k(
        "conv1x1_backward_weight.wgsl",
        "conv1x1_backward_weight",
        &[],
    ),
    k("conv1x1_pack.wgsl", "conv1x1_pack", &[]),
    Kernel {
        file: "conv1x1_reg.wgsl",
        source: "gemm",
        defines: &[],
        entries: GEMM_WHOLE,
    },
    Kernel {
        file: "conv1x1_vec4.wgsl",
        source: "gemm",
        defines: &["VEC4"],
        entries: GEMM_WHOLE,
    },
    k("conv3x3.wgsl", "conv3x3", &[]),
    k(
        "conv3x3_backward_weight.wgsl",
        "conv3x3_backward_weight",
        &[],
    ),
    Kernel {
        file: "conv3x3_gemm.wgsl",
        source: "gemm",
        defines: &["IM2COL"],
        entries: GEMM,
    },
    k("copy.wgsl", "copy", &[]),
    k("copy_vec4.wgsl", "copy", &["VEC4"]),
    k("depthwise3x3.wgsl", "depthwise3x3", &[]),
    k("depthwise3x3_backward.wgsl", "depthwise3x3_backward", &[]),
    k("depthwise3x3_vec4.wgsl", "depthwise3x3", &["VEC4"]),
    k("global_avg_pool.wgsl", "global_avg_pool", &[]),
    k(
        "global_avg_pool_backward.wgsl",
        "global_avg_pool_backward",
        &[],
    ),
    Kernel {
        file: "optimizer.wgsl",
        source: "optimizer",
        defines: &[],
        entries: &[("sgd", &["SGD"]), ("running_stats", &[])],
    },
    k("shift_grad_normalize.wgsl", "shift_grad_normalize", &[]),
    k("softmax.wgsl", "softmax", &[]),
    k("softmax_cross_entropy.wgsl", "softmax_cross_entropy", &[]),
];

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let dir = root.join("shaders");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=shaders");

    // Every family source is used by some kernel.
    let used: BTreeSet<&str> = KERNELS.iter().map(|k| k.source).collect();
    for name in wgsl_files(&dir) {
        let family = name.trim_end_matches(".wgsl");
        assert!(
            used.contains(family),
            "shaders/{name} is no kernel's source: list its kernels in build.rs's KERNELS"
        );
    }

    let shader_dir = out.join("shaders");
    std::fs::create_dir_all(&shader_dir).expect("create $OUT_DIR/shaders");
    let mut table = String::from(
        "/// The WGSL source of every kernel, by file name, as built from `shaders/` by build.rs\n\
         /// (for validation, inspection and other backends' translation tests).\n\
         pub const SHADERS: &[(&str, &str)] = &[\n",
    );
    let mut permutations = String::from(
        "/// How build.rs produced each kernel of [`SHADERS`]: (file name, family source in\n\
         /// `shaders/`, defines of the kernel, entry points with their own defines).\n\
         #[allow(clippy::type_complexity)]\n\
         pub const SHADER_PERMUTATIONS: &[(&str, &str, &[&str], &[(&str, &[&str])])] = &[\n",
    );
    let mut bindings = String::from(
        "/// The group-0 bindings each entry point of [`SHADERS`] uses: (file name, entry point,\n\
         /// (binding, uniform buffer; else storage)), from naga's analysis of the produced WGSL.\n\
         #[allow(clippy::type_complexity)]\n\
         pub const SHADER_BINDINGS: &[(&str, &str, &[(u32, bool)])] = &[\n",
    );
    let mut params = BTreeMap::new();
    for kernel in KERNELS {
        let text = produce(&dir, kernel);
        for (i, line) in text.lines().enumerate() {
            let t = line.trim_start();
            assert!(
                !t.starts_with('#') && !t.contains("##"),
                "{}:{}: unexpanded directive `{t}`",
                kernel.file,
                i + 1
            );
        }
        collect_params(kernel, &text, &dir, &mut params);
        for (entry, used) in entry_bindings(kernel, &text) {
            writeln!(bindings, "    ({:?}, {entry:?}, &{used:?}),", kernel.file)
                .expect("write to a String");
        }
        let path = shader_dir.join(kernel.file);
        // Rewrite only what changed, so that tools watching $OUT_DIR see real changes.
        if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            std::fs::write(&path, &text).expect("write a produced shader");
        }
        writeln!(
            table,
            "    ({:?}, include_str!({:?})),",
            kernel.file,
            path.display().to_string()
        )
        .expect("write to a String");
        let entries: Vec<String> = kernel
            .entries
            .iter()
            .map(|(entry, defines)| format!("({entry:?}, &{defines:?})"))
            .collect();
        writeln!(
            permutations,
            "    ({:?}, {:?}, &{:?}, &[{}]),",
            kernel.file,
            kernel.source,
            kernel.defines,
            entries.join(", ")
        )
        .expect("write to a String");
    }
    table.push_str("];\n\n");
    permutations.push_str("];\n\n");
    bindings.push_str("];\n");
    std::fs::write(out.join("shaders.rs"), table + &permutations + &bindings)
        .expect("write $OUT_DIR/shaders.rs");
    std::fs::write(out.join("params.rs"), params_rust(&params)).expect("write $OUT_DIR/params.rs");
}

/// The `.wgsl` files directly in `dir`, sorted.
fn wgsl_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| {
            e.expect("directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|n| n.ends_with(".wgsl"))
        .collect();
    names.sort();
    names
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The text of `kernel`: its first entry point's composition up to the first `@compute`, then
/// from there on each entry point's composition with `fn main(` renamed to the entry's name.
fn produce(dir: &Path, kernel: &Kernel) -> String {
    let src = read(&dir.join(format!("{}.wgsl", kernel.source)));
    let mut modules = BTreeSet::new();
    let mut text = String::new();
    for (i, (entry, own)) in kernel.entries.iter().enumerate() {
        let defines: Vec<&str> = kernel.defines.iter().chain(own.iter()).copied().collect();
        let mut imported = BTreeSet::new();
        let mut body = String::new();
        expand(dir, kernel.source, &src, &defines, &mut imported, &mut body);
        modules.extend(imported);
        if kernel.entries.len() == 1 && *entry == "main" {
            text = body;
            break;
        }
        let at = body
            .find("@compute")
            .unwrap_or_else(|| panic!("{}: no @compute", kernel.file));
        if i == 0 {
            text.push_str(&body[..at]);
        } else {
            text.push('\n');
        }
        text += &body[at..].replacen("fn main(", &format!("fn {entry}("), 1);
    }
    let defines = if kernel.defines.is_empty() {
        String::new()
    } else {
        format!(" with {}", kernel.defines.join(", "))
    };
    let common = match modules.len() {
        0 => String::new(),
        1 => format!(
            " and shaders/common/{}.wgsl",
            modules.iter().next().map_or("", |s| s.as_str())
        ),
        _ => format!(
            " and shaders/common/{{{}}}.wgsl",
            modules.into_iter().collect::<Vec<_>>().join(", ")
        ),
    };
    format!(
        "// Generated by build.rs from shaders/{}.wgsl{defines}{common}: edit {}, not this.\n{text}",
        kernel.source,
        if common.is_empty() { "that" } else { "those" }
    )
}

/// `src` with its directives applied (see the module comment); `defines` are `FLAG` or
/// `NAME=VALUE`. `imported` collects the common modules pulled in.
fn expand(
    dir: &Path,
    name: &str,
    src: &str,
    defines: &[&str],
    imported: &mut BTreeSet<String>,
    out: &mut String,
) {
    let values: Vec<(&str, &str)> = defines.iter().filter_map(|d| d.split_once('=')).collect();
    let defined = |flag: &str| defines.iter().any(|d| d.split('=').next() == Some(flag));
    // One entry per open #ifdef: (this branch is kept, the enclosing ones are kept).
    let mut stack: Vec<(bool, bool)> = Vec::new();
    let keeping = |stack: &[(bool, bool)]| stack.last().is_none_or(|&(mine, outer)| mine && outer);
    // An open #unroll: its variable, its range and its lines so far.
    let mut unroll: Option<(String, std::ops::Range<usize>, Vec<String>)> = None;
    // Inside #bindings ... #endbindings.
    let mut bindings = false;
    for (i, line) in src.lines().enumerate() {
        let at = || format!("{name}:{}", i + 1);
        let t = line.trim();
        if let Some(flag) = t.strip_prefix("#ifdef ") {
            let outer = keeping(&stack);
            stack.push((defined(flag.trim()), outer));
        } else if t == "#else" {
            let top = stack
                .last_mut()
                .unwrap_or_else(|| panic!("{}: #else without #ifdef", at()));
            top.0 = !top.0;
        } else if t == "#endif" {
            stack
                .pop()
                .unwrap_or_else(|| panic!("{}: #endif without #ifdef", at()));
        } else if !keeping(&stack) {
        } else if let Some(args) = t.strip_prefix("#unroll ") {
            assert!(unroll.is_none(), "{}: nested #unroll", at());
            let args = substitute(args, &values);
            let mut words = args.split_whitespace();
            let var = words
                .next()
                .unwrap_or_else(|| panic!("{}: #unroll M N", at()));
            let range = words
                .next()
                .unwrap_or_else(|| panic!("{}: #unroll M N", at()));
            let number = |s: &str| -> usize {
                s.trim_end_matches('u')
                    .parse()
                    .unwrap_or_else(|_| panic!("{}: #unroll over `{s}`", at()))
            };
            let range = match range.split_once("..") {
                Some((a, b)) => number(a)..number(b),
                None => 0..number(range),
            };
            unroll = Some((var.to_string(), range, Vec::new()));
        } else if t == "#bindings" {
            assert!(
                !bindings && unroll.is_none(),
                "{}: #bindings inside a block",
                at()
            );
            bindings = true;
        } else if t == "#endbindings" {
            assert!(bindings, "{}: #endbindings without #bindings", at());
            bindings = false;
        } else if t == "#endunroll" {
            let (var, range, lines) = unroll
                .take()
                .unwrap_or_else(|| panic!("{}: #endunroll without #unroll", at()));
            for m in range {
                let m = m.to_string();
                for l in &lines {
                    let mut with = values.clone();
                    with.push((&var, &m));
                    out.push_str(&substitute(l, &with));
                    out.push('\n');
                }
            }
        } else if let Some((_, _, lines)) = unroll.as_mut() {
            assert!(!t.starts_with('#'), "{}: `{t}` inside #unroll", at());
            lines.push(line.to_string());
        } else if let Some(module) = t.strip_prefix("#import ") {
            let module = module.trim();
            if imported.insert(module.to_string()) {
                let text = read(&dir.join("common").join(format!("{module}.wgsl")));
                expand(dir, module, &text, defines, imported, out);
            }
        } else if let Some(module) = t.strip_prefix("#include ") {
            let module = module.trim();
            imported.insert(module.to_string());
            let text = read(&dir.join("common").join(format!("{module}.wgsl")));
            expand(dir, module, &text, defines, imported, out);
        } else if t.starts_with('#') {
            panic!("{}: unknown directive `{t}`", at());
        } else if bindings && !t.is_empty() && !t.starts_with("//") {
            out.push_str(&binding(&substitute(t, &values), &at()));
            out.push('\n');
        } else {
            out.push_str(&substitute(line, &values));
            out.push('\n');
        }
    }
    assert!(stack.is_empty(), "{name}: #ifdef without #endif");
    assert!(unroll.is_none(), "{name}: #unroll without #endunroll");
    assert!(!bindings, "{name}: #bindings without #endbindings");
}

/// The WGSL declaration of one line of a `#bindings` block, `N name: uniform TYPE`,
/// `N name: read ELEM` or `N name: read_write ELEM`: binding N of group 0, a uniform of TYPE or
/// a storage `array<ELEM>` with that access.
fn binding(line: &str, at: &str) -> String {
    let usage = || format!("{at}: `{line}` is not `N name: uniform|read|read_write TYPE`");
    let (slot, rest) = line
        .split_once(' ')
        .unwrap_or_else(|| panic!("{}", usage()));
    let slot: u32 = slot.parse().unwrap_or_else(|_| panic!("{}", usage()));
    let (name, rest) = rest
        .split_once(':')
        .unwrap_or_else(|| panic!("{}", usage()));
    let (kind, ty) = rest
        .trim()
        .split_once(' ')
        .unwrap_or_else(|| panic!("{}", usage()));
    let (name, ty) = (name.trim(), ty.trim());
    let var = match kind {
        "uniform" => format!("var<uniform> {name}: {ty}"),
        "read" | "read_write" => format!("var<storage, {kind}> {name}: array<{ty}>"),
        _ => panic!("{}", usage()),
    };
    format!("@group(0) @binding({slot}) {var};")
}

/// `line` with every identifier that `values` names replaced by its value, then `##` removed.
fn substitute(line: &str, values: &[(&str, &str)]) -> String {
    if values.is_empty() && !line.contains("##") {
        return line.to_string();
    }
    let mut out = String::with_capacity(line.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        match values.iter().find(|(n, _)| *n == word.as_str()) {
            Some((_, v)) => out.push_str(v),
            None => out.push_str(word),
        }
        word.clear();
    };
    for ch in line.chars() {
        if ch.is_ascii_alphanumeric() || ch == '_' {
            word.push(ch);
        } else {
            flush(&mut word, &mut out);
            out.push(ch);
        }
    }
    flush(&mut word, &mut out);
    out.replace("##", "")
}

/// A `*Params` struct as naga lays it out: where it is written, its fields (doc comment, name,
/// Rust type, offset) and its size.
#[derive(PartialEq)]
struct ParamsStruct {
    home: String,
    fields: Vec<(String, String, String, u32)>,
    size: u32,
}

/// Every struct named `*Params` in the produced `text` of `kernel`, laid out by naga, into
/// `found` (a struct several kernels share must come out the same in each).
fn collect_params(
    kernel: &Kernel,
    text: &str,
    dir: &Path,
    found: &mut BTreeMap<String, ParamsStruct>,
) {
    let module = naga::front::wgsl::parse_str(text)
        .unwrap_or_else(|e| panic!("{}: {}", kernel.file, e.emit_to_string(text)));
    let mut layouter = naga::proc::Layouter::default();
    layouter
        .update(module.to_ctx())
        .unwrap_or_else(|e| panic!("{}: layout: {e}", kernel.file));
    for (handle, ty) in module.types.iter() {
        let Some(name) = ty.name.as_deref().filter(|n| n.ends_with("Params")) else {
            continue;
        };
        let naga::TypeInner::Struct { members, span } = &ty.inner else {
            continue;
        };
        assert_eq!(layouter[handle].size, *span, "{name}: size");
        let docs = field_docs(text, name);
        let mut fields = Vec::new();
        let mut end = 0;
        for m in members {
            let field = m.name.clone().unwrap_or_default();
            let (rust, size) = rust_type(&module.types[m.ty].inner).unwrap_or_else(|| {
                panic!("{}: {name}.{field}: not a scalar or vector", kernel.file)
            });
            assert_eq!(
                m.offset, end,
                "{}: {name}.{field} starts at byte {} after {end} bytes of fields: add explicit \
                 `_pad` fields, so that the Rust twin has the same layout",
                kernel.file, m.offset
            );
            end += size;
            let doc = docs.get(&field).cloned().unwrap_or_default();
            fields.push((doc, field, rust, m.offset));
        }
        assert_eq!(
            *span, end,
            "{}: {name} is {span} bytes but its fields {end}: add explicit `_pad` fields",
            kernel.file
        );
        let params = ParamsStruct {
            home: home_of(dir, name),
            fields,
            size: *span,
        };
        if let Some(seen) = found.get(name) {
            assert!(
                *seen == params,
                "{}: {name} differs from the one of another kernel",
                kernel.file
            );
        } else {
            found.insert(name.to_string(), params);
        }
    }
}

/// For each entry point of `kernel` (produced as `text`), the group-0 bindings it uses, as
/// `(binding, uniform)` (a storage buffer otherwise): what a pipeline wgpu lays out from the
/// entry point (`layout: None`) expects bound, so that `gpu::compile_cost` can dispatch any
/// kernel once with stand-in buffers.
fn entry_bindings(kernel: &Kernel, text: &str) -> Vec<(String, Vec<(u32, bool)>)> {
    let module = naga::front::wgsl::parse_str(text)
        .unwrap_or_else(|e| panic!("{}: {}", kernel.file, e.emit_to_string(text)));
    let info = naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::all(),
    )
    .validate(&module)
    .unwrap_or_else(|e| panic!("{}: {}", kernel.file, e.emit_to_string(text)));
    module
        .entry_points
        .iter()
        .enumerate()
        .map(|(i, ep)| {
            let used = info.get_entry_point(i);
            let mut bindings: Vec<(u32, bool)> = module
                .global_variables
                .iter()
                .filter(|(h, _)| !used[*h].is_empty())
                .filter_map(|(_, g)| {
                    let b = g.binding.as_ref()?;
                    assert_eq!(b.group, 0, "{}: a binding outside group 0", kernel.file);
                    Some((b.binding, g.space == naga::AddressSpace::Uniform))
                })
                .collect();
            bindings.sort_unstable();
            (ep.name.clone(), bindings)
        })
        .collect()
}

/// The Rust type of a WGSL scalar or vector member, and its size in bytes.
fn rust_type(inner: &naga::TypeInner) -> Option<(String, u32)> {
    let scalar = |s: &naga::Scalar| -> Option<&str> {
        match (s.kind, s.width) {
            (naga::ScalarKind::Uint, 4) => Some("u32"),
            (naga::ScalarKind::Sint, 4) => Some("i32"),
            (naga::ScalarKind::Float, 4) => Some("f32"),
            _ => None,
        }
    };
    match inner {
        naga::TypeInner::Scalar(s) => Some((scalar(s)?.to_string(), 4)),
        naga::TypeInner::Vector { size, scalar: s } => {
            let n = *size as u32;
            Some((format!("[{}; {n}]", scalar(s)?), 4 * n))
        }
        _ => None,
    }
}

/// The `//` comment lines right above each field of `struct name` in `text`, by field name.
fn field_docs(text: &str, name: &str) -> BTreeMap<String, String> {
    let mut docs = BTreeMap::new();
    let head = format!("struct {name} {{");
    let Some(start) = text.find(&head) else {
        return docs;
    };
    let mut comment = String::new();
    for line in text[start + head.len()..].lines() {
        let t = line.trim();
        if t.starts_with('}') {
            break;
        }
        if let Some(c) = t.strip_prefix("//") {
            comment += &format!("    ///{c}\n");
        } else if let Some((field, _)) = t.split_once(':') {
            docs.insert(field.trim().to_string(), std::mem::take(&mut comment));
        } else {
            comment.clear();
        }
    }
    docs
}

/// The file of `shaders/` (or `shaders/common/`) that declares `struct name`.
fn home_of(dir: &Path, name: &str) -> String {
    let head = format!("struct {name} {{");
    for sub in ["common", ""] {
        let d = dir.join(sub);
        for file in wgsl_files(&d) {
            if read(&d.join(&file)).contains(&head) {
                let prefix = if sub.is_empty() { "" } else { "common/" };
                return format!("shaders/{prefix}{file}");
            }
        }
    }
    panic!("no file of shaders/ declares `{head}`")
}

/// The Rust twins of the `*Params` structs.
fn params_rust(found: &BTreeMap<String, ParamsStruct>) -> String {
    let mut out = String::from(
        "// Generated by build.rs from the `*Params` structs of shaders/ as naga lays them out.\n\n",
    );
    for (name, p) in found {
        let fields: Vec<String> = p
            .fields
            .iter()
            .map(|(_, f, _, offset)| format!("{f} at {offset}"))
            .collect();
        writeln!(
            out,
            "/// `struct {name}` of `{}` ({} bytes: {}), generated by build.rs from naga's layout\n\
             /// of it: edit the WGSL, not this.\n\
             #[repr(C)]\n\
             #[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]\n\
             pub(crate) struct {name} {{",
            p.home,
            p.size,
            fields.join(", ")
        )
        .expect("write to a String");
        for (doc, field, rust, _) in &p.fields {
            writeln!(out, "{doc}    pub(crate) {field}: {rust},").expect("write to a String");
        }
        out.push_str("}\n\n");
        for (_, field, _, offset) in &p.fields {
            writeln!(
                out,
                "const _: () = assert!(std::mem::offset_of!({name}, {field}) == {offset});"
            )
            .expect("write to a String");
        }
        writeln!(
            out,
            "const _: () = assert!(std::mem::size_of::<{name}>() == {});\n",
            p.size
        )
        .expect("write to a String");
    }
    out
}
