//! Every file in `shaders/` is parsed and validated by naga and checked against WebGPU's
//! default limits, so the browser path never differs from the native one.

use naga::valid::{Capabilities, ValidationFlags, Validator};

/// WebGPU's default limits that a compute shader can exceed by itself.
const MAX_INVOCATIONS: u32 = 256;
const MAX_SIZE_XY: u32 = 256;
const MAX_SIZE_Z: u32 = 64;
const MAX_STORAGE_BUFFERS: usize = 8;
const MAX_UNIFORM_BUFFERS: usize = 12;
const MAX_WORKGROUP_BYTES: u32 = 16 * 1024;

/// Parse, validate and check one WGSL source; returns what is wrong, per entry point.
fn check(name: &str, src: &str) -> Result<usize, String> {
    let module = naga::front::wgsl::parse_str(src)
        .map_err(|e| format!("{name}: does not parse:\n{}", e.emit_to_string(src)))?;
    let info = Validator::new(ValidationFlags::all(), Capabilities::empty())
        .validate(&module)
        .map_err(|e| format!("{name}: invalid:\n{}", e.emit_to_string(src)))?;
    let mut layouter = naga::proc::Layouter::default();
    layouter
        .update(module.to_ctx())
        .map_err(|e| format!("{name}: layout: {e}"))?;
    if module.entry_points.is_empty() {
        return Err(format!("{name}: no entry point"));
    }
    let mut problems = Vec::new();
    for (i, ep) in module.entry_points.iter().enumerate() {
        let [x, y, z] = ep.workgroup_size;
        if x * y * z > MAX_INVOCATIONS || x > MAX_SIZE_XY || y > MAX_SIZE_XY || z > MAX_SIZE_Z {
            problems.push(format!(
                "{name}::{}: workgroup size {x}x{y}x{z} exceeds {MAX_INVOCATIONS} invocations",
                ep.name
            ));
        }
        let uses = info.get_entry_point(i);
        let (mut storage, mut uniform, mut shared) = (0, 0, 0u32);
        for (handle, var) in module.global_variables.iter() {
            if uses[handle].is_empty() {
                continue;
            }
            match var.space {
                naga::AddressSpace::Storage { .. } => storage += 1,
                naga::AddressSpace::Uniform => uniform += 1,
                naga::AddressSpace::WorkGroup => shared += layouter[var.ty].size,
                _ => {}
            }
        }
        if storage > MAX_STORAGE_BUFFERS {
            problems.push(format!(
                "{name}::{}: {storage} storage buffers (limit {MAX_STORAGE_BUFFERS})",
                ep.name
            ));
        }
        if uniform > MAX_UNIFORM_BUFFERS {
            problems.push(format!("{name}::{}: {uniform} uniform buffers", ep.name));
        }
        if shared > MAX_WORKGROUP_BYTES {
            problems.push(format!(
                "{name}::{}: {shared} bytes of workgroup memory (limit {MAX_WORKGROUP_BYTES})",
                ep.name
            ));
        }
    }
    if problems.is_empty() {
        Ok(module.entry_points.len())
    } else {
        Err(problems.join("\n"))
    }
}

#[test]
fn every_shader_validates_within_webgpu_limits() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/shaders");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("shaders/ exists")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "wgsl"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 7,
        "expected the kernels in {dir}, found {files:?}"
    );
    let mut failures = Vec::new();
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let src = std::fs::read_to_string(path).expect("read shader");
        if let Err(e) = check(&name, &src) {
            failures.push(e);
        }
        // The library embeds the same text it is tested with.
        let embedded = activeshift::gpu::kernels::SHADERS
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("{name} is not listed in gpu::kernels::SHADERS"));
        assert_eq!(
            embedded.1, src,
            "{name}: embedded source differs from the file"
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_checker_rejects_shaders_over_the_limits() {
    let too_many_invocations = "@compute @workgroup_size(512) fn main() {}";
    let err = check("big_workgroup", too_many_invocations).unwrap_err();
    assert!(err.contains("512x1x1"), "{err}");

    let mut nine = String::new();
    for b in 0..9 {
        nine += &format!("@group(0) @binding({b}) var<storage, read_write> b{b}: array<f32>;\n");
    }
    nine += "@compute @workgroup_size(64) fn main() {";
    for b in 0..9 {
        nine += &format!(" b{b}[0] = 1.0;");
    }
    nine += " }";
    let err = check("nine_buffers", &nine).unwrap_err();
    assert!(err.contains("9 storage buffers"), "{err}");

    let shared = "var<workgroup> sh_big: array<f32, 5000>;\n\
                  @group(0) @binding(0) var<storage, read_write> o: array<f32>;\n\
                  @compute @workgroup_size(64) fn main(@builtin(local_invocation_index) i: u32) {\n\
                  sh_big[i] = 1.0; workgroupBarrier(); o[i] = sh_big[i + 1u]; }";
    let err = check("big_shared", shared).unwrap_err();
    assert!(err.contains("20000 bytes"), "{err}");

    let broken = "@compute @workgroup_size(64) fn main() { let x: f32 = 1u; }";
    assert!(check("type_error", broken).is_err());
}
