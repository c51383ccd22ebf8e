//! Every shader the crate ships, translated by naga for the backends wgpu has but CI cannot run:
//! each entry point of each module in `gpu::kernels::SHADERS` goes through naga's MSL (Metal),
//! HLSL (DX12), SPIR-V (Vulkan) and GLSL (OpenGL 4.3 core and OpenGL ES 3.1) writers with the
//! options wgpu-hal 30 gives them, on the bind group layout wgpu derives from the shader. The
//! SPIR-V is checked by `spirv-val` (Debian's `spirv-tools`); under CI (`CI=true` or
//! `ACTIVESHIFT_REQUIRE_GPU=1`) a missing `spirv-val` fails the test.
//!
//! What it does not check: that Apple's Metal compiler or Microsoft's DXC accept the text naga
//! writes (neither runs here). wgpu hands them the same text, so a naga error here is an error
//! there; the reverse is not guaranteed.

use naga::back::{glsl, hlsl, msl, spv};
use naga::valid::{Capabilities, ModuleInfo, ValidationFlags, Validator};
use naga::{AddressSpace, Module, ResourceBinding, ShaderStage};
use std::collections::BTreeMap;
use std::process::Command;

/// The backends a shader is written for, as wgpu-hal 30 configures each at its minimum.
#[derive(Clone, Copy, Debug)]
enum Backend {
    /// Metal: MSL 2.0 (macOS 10.13, the oldest wgpu's Metal backend picks for compute here).
    Msl,
    /// DX12: HLSL shader model 6.0 (wgpu does not expose DX12 adapters below 6.0).
    Hlsl,
    /// Vulkan: SPIR-V 1.0 (Vulkan 1.0) with the capabilities every Vulkan device has.
    Spirv,
    /// OpenGL: GLSL 4.30 core (GL 4.3 is where compute shaders start).
    GlslCore,
    /// OpenGL ES / ANGLE / Android: GLSL ES 3.10.
    GlslEs,
}

const BACKENDS: [Backend; 5] = [
    Backend::Msl,
    Backend::Hlsl,
    Backend::Spirv,
    Backend::GlslCore,
    Backend::GlslEs,
];

/// What kind of resource a binding is, as wgpu's derived layout sees it.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Uniform,
    Storage { read_only: bool },
    Texture,
}

/// The bindings entry point `ep` uses, in (group, binding) order: what wgpu's derived layout
/// (`layout: None`) would contain.
fn bindings(
    module: &Module,
    info: &ModuleInfo,
    ep: usize,
) -> Result<Vec<(ResourceBinding, Kind)>, String> {
    let uses = info.get_entry_point(ep);
    let mut out = Vec::new();
    for (handle, var) in module.global_variables.iter() {
        if uses[handle].is_empty() {
            continue;
        }
        let Some(rb) = var.binding else { continue };
        let kind = match var.space {
            AddressSpace::Uniform => Kind::Uniform,
            AddressSpace::Storage { access } => Kind::Storage {
                read_only: !access.contains(naga::StorageAccess::STORE),
            },
            AddressSpace::Handle => match module.types[var.ty].inner {
                naga::TypeInner::Image { .. } => Kind::Texture,
                ref other => return Err(format!("binding {rb:?}: {other:?} not handled")),
            },
            other => return Err(format!("binding {rb:?} in {other:?} not handled")),
        };
        out.push((rb, kind));
    }
    out.sort_by_key(|(rb, _)| (rb.group, rb.binding));
    Ok(out)
}

/// `spirv-val`, or None where it is not installed and the run does not require it.
fn spirv_val() -> Option<&'static str> {
    let found = Command::new("spirv-val")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return Some("spirv-val");
    }
    let required = std::env::var("CI").is_ok_and(|v| v == "true")
        || std::env::var("ACTIVESHIFT_REQUIRE_GPU").is_ok_and(|v| v == "1");
    assert!(
        !required,
        "spirv-val is not installed (Debian: apt-get install spirv-tools); CI requires it"
    );
    eprintln!("spirv-val not installed: SPIR-V is written by naga but not validated");
    None
}

/// Validate SPIR-V words with `spirv-val` for Vulkan 1.0.
fn validate_spirv(val: &str, tag: &str, words: &[u32]) -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("activeshift-spv-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = dir.join(format!("{}.spv", tag.replace([':', '/', ' '], "_")));
    std::fs::write(&path, bytemuck::cast_slice::<u32, u8>(words))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let out = Command::new(val)
        .args(["--target-env", "vulkan1.0"])
        .arg(&path)
        .output()
        .map_err(|e| format!("running {val}: {e}"))?;
    let _ = std::fs::remove_file(&path);
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "spirv-val rejects it:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Write entry point `ep` of `module` for `backend` (and validate SPIR-V with `val`).
fn translate(
    module: &Module,
    info: &ModuleInfo,
    ep: usize,
    backend: Backend,
    val: Option<&str>,
    tag: &str,
) -> Result<(), String> {
    let entry = &module.entry_points[ep];
    let name = entry.name.clone();
    let stage = entry.stage;
    let binds = bindings(module, info, ep)?;
    // wgpu-core applies pipeline-overridable constants first (none are set by activeshift).
    let (module, info) = naga::back::pipeline_constants::process_overrides(
        module,
        info,
        Some((stage, &name)),
        &Default::default(),
    )
    .map_err(|e| format!("overrides: {e}"))?;
    let (module, info) = (module.as_ref(), info.as_ref());
    match backend {
        Backend::Msl => {
            // wgpu-hal's Metal pipeline layout: buffers and textures numbered in layout order,
            // then the sizes buffer when a storage buffer is bound.
            let (mut buffers, mut textures) = (0u8, 0u8);
            let mut resources = msl::BindingMap::default();
            let mut storage = false;
            for (rb, kind) in &binds {
                let mut target = msl::BindTarget::default();
                match kind {
                    Kind::Uniform => {
                        target.buffer = Some(buffers);
                        buffers += 1;
                    }
                    Kind::Storage { read_only } => {
                        target.buffer = Some(buffers);
                        target.mutable = !read_only;
                        buffers += 1;
                        storage = true;
                    }
                    Kind::Texture => {
                        target.texture = Some(textures);
                        textures += 1;
                    }
                }
                resources.insert(*rb, target);
            }
            let options = msl::Options {
                lang_version: (2, 0),
                per_entry_point_map: BTreeMap::from([(
                    name.clone(),
                    msl::EntryPointResources {
                        resources,
                        immediates_buffer: None,
                        sizes_buffer: storage.then_some(buffers),
                    },
                )]),
                fake_missing_bindings: false,
                bounds_check_policies: naga::proc::BoundsCheckPolicies {
                    index: naga::proc::BoundsCheckPolicy::Restrict,
                    buffer: naga::proc::BoundsCheckPolicy::Restrict,
                    image_load: naga::proc::BoundsCheckPolicy::Restrict,
                    binding_array: naga::proc::BoundsCheckPolicy::Unchecked,
                },
                zero_initialize_workgroup_memory: true,
                force_loop_bounding: true,
                ..Default::default()
            };
            let pipeline = msl::PipelineOptions {
                entry_point: Some((stage, name.clone())),
                vertex_pulling_transform: true,
                ..Default::default()
            };
            msl::write_string(module, info, &options, &pipeline)
                .map(drop)
                .map_err(|e| format!("MSL: {e}"))
        }
        Backend::Hlsl => {
            // wgpu-hal's DX12 root signature: everything in space 0, CBV/SRV/UAV registers
            // counted separately, the special constants (num_workgroups) in the next CBV.
            let (mut cbv, mut srv, mut uav) = (0u32, 0u32, 0u32);
            let mut binding_map = hlsl::BindingMap::default();
            for (rb, kind) in &binds {
                let counter = match kind {
                    Kind::Uniform => &mut cbv,
                    Kind::Storage { read_only: false } => &mut uav,
                    Kind::Storage { read_only: true } | Kind::Texture => &mut srv,
                };
                binding_map.insert(
                    *rb,
                    hlsl::BindTarget {
                        space: 0,
                        register: *counter,
                        binding_array_size: None,
                        dynamic_storage_buffer_offsets_index: None,
                        restrict_indexing: false,
                    },
                );
                *counter += 1;
            }
            let options = hlsl::Options {
                shader_model: hlsl::ShaderModel::V6_0,
                binding_map,
                fake_missing_bindings: false,
                special_constants_binding: Some(hlsl::BindTarget {
                    space: 0,
                    register: cbv,
                    binding_array_size: None,
                    dynamic_storage_buffer_offsets_index: None,
                    restrict_indexing: false,
                }),
                zero_initialize_workgroup_memory: true,
                restrict_indexing: true,
                force_loop_bounding: true,
                ..Default::default()
            };
            let pipeline = hlsl::PipelineOptions {
                entry_point: Some((stage, name.clone())),
            };
            let mut text = String::new();
            hlsl::Writer::new(&mut text, &options, &pipeline)
                .write(module, info, None)
                .map(drop)
                .map_err(|e| format!("HLSL: {e}"))
        }
        Backend::Spirv => {
            // wgpu-hal's Vulkan options on a Vulkan 1.0 device without robustness2 or
            // zero-initialised workgroup memory: the capabilities every device has.
            use spv::Capability as C;
            // wgpu-hal's Vulkan layout: descriptor set = group, bindings renumbered in order.
            let mut binding_map = spv::BindingMap::default();
            let mut next = BTreeMap::<u32, u32>::new();
            for (rb, _) in &binds {
                let slot = next.entry(rb.group).or_default();
                binding_map.insert(
                    *rb,
                    spv::BindingInfo {
                        descriptor_set: rb.group,
                        binding: *slot,
                        binding_array_size: None,
                    },
                );
                *slot += 1;
            }
            let options = spv::Options {
                binding_map,
                lang_version: (1, 0),
                flags: spv::WriterFlags::LABEL_VARYINGS | spv::WriterFlags::FORCE_POINT_SIZE,
                capabilities: Some(
                    [
                        C::Shader,
                        C::Matrix,
                        C::Sampled1D,
                        C::Image1D,
                        C::ImageQuery,
                        C::DerivativeControl,
                        C::StorageImageExtendedFormats,
                    ]
                    .into_iter()
                    .collect(),
                ),
                bounds_check_policies: naga::proc::BoundsCheckPolicies {
                    index: naga::proc::BoundsCheckPolicy::Restrict,
                    buffer: naga::proc::BoundsCheckPolicy::Restrict,
                    image_load: naga::proc::BoundsCheckPolicy::Restrict,
                    binding_array: naga::proc::BoundsCheckPolicy::Unchecked,
                },
                zero_initialize_workgroup_memory: spv::ZeroInitializeWorkgroupMemoryMode::Polyfill,
                force_loop_bounding: true,
                use_storage_input_output_16: false,
                fake_missing_bindings: false,
                ..Default::default()
            };
            let pipeline = spv::PipelineOptions {
                shader_stage: stage,
                entry_point: name.clone(),
            };
            let words = spv::write_vec(module, info, &options, Some(&pipeline))
                .map_err(|e| format!("SPIR-V: {e}"))?;
            match val {
                Some(val) => validate_spirv(val, tag, &words),
                None => Ok(()),
            }
        }
        Backend::GlslCore | Backend::GlslEs => {
            // wgpu-hal's GL pipeline layout: one counter per resource kind; bounds checks
            // left to GLSL (index and buffer unchecked), images checked on desktop GL 4.3+.
            let version = match backend {
                Backend::GlslCore => glsl::Version::Desktop(430),
                _ => glsl::Version::Embedded {
                    version: 310,
                    is_webgl: false,
                },
            };
            let (mut uniforms, mut storages, mut textures) = (0u8, 0u8, 0u8);
            let mut binding_map = glsl::BindingMap::default();
            for (rb, kind) in &binds {
                let counter = match kind {
                    Kind::Uniform => &mut uniforms,
                    Kind::Storage { .. } => &mut storages,
                    Kind::Texture => &mut textures,
                };
                binding_map.insert(*rb, *counter);
                *counter += 1;
            }
            let options = glsl::Options {
                version,
                writer_flags: glsl::WriterFlags::ADJUST_COORDINATE_SPACE
                    | glsl::WriterFlags::FORCE_POINT_SIZE,
                binding_map,
                zero_initialize_workgroup_memory: true,
            };
            let pipeline = glsl::PipelineOptions {
                shader_stage: stage,
                entry_point: name.clone(),
                multiview: None,
            };
            let image_load = if version.is_es() {
                naga::proc::BoundsCheckPolicy::Unchecked
            } else {
                naga::proc::BoundsCheckPolicy::ReadZeroSkipWrite
            };
            let policies = naga::proc::BoundsCheckPolicies {
                index: naga::proc::BoundsCheckPolicy::Unchecked,
                buffer: naga::proc::BoundsCheckPolicy::Unchecked,
                image_load,
                binding_array: naga::proc::BoundsCheckPolicy::Unchecked,
            };
            let mut text = String::new();
            glsl::Writer::new(&mut text, module, info, &options, &pipeline, policies)
                .and_then(|mut w| w.write())
                .map(drop)
                .map_err(|e| format!("GLSL {version}: {e}"))
        }
    }
}

/// Parse and validate `src` (what wgpu does with a WGSL module on a device without optional
/// features), then translate every entry point for every backend. Returns the number of
/// (entry point, backend) pairs translated, or every failure.
fn translate_all(name: &str, src: &str, val: Option<&str>) -> Result<usize, Vec<String>> {
    let module = naga::front::wgsl::parse_str(src).map_err(|e| {
        vec![format!(
            "{name}: does not parse:\n{}",
            e.emit_to_string(src)
        )]
    })?;
    let info = Validator::new(ValidationFlags::all(), Capabilities::empty())
        .validate(&module)
        .map_err(|e| vec![format!("{name}: invalid:\n{}", e.emit_to_string(src))])?;
    if module.entry_points.is_empty() {
        return Err(vec![format!("{name}: no entry point")]);
    }
    let mut failures = Vec::new();
    let mut pairs = 0;
    for (i, ep) in module.entry_points.iter().enumerate() {
        if ep.stage != ShaderStage::Compute {
            failures.push(format!("{name}::{}: not a compute entry point", ep.name));
            continue;
        }
        for backend in BACKENDS {
            let tag = format!("{name}::{}::{backend:?}", ep.name);
            match translate(&module, &info, i, backend, val, &tag) {
                Ok(()) => pairs += 1,
                Err(e) => failures.push(format!("{tag}: {e}")),
            }
        }
    }
    if failures.is_empty() {
        Ok(pairs)
    } else {
        Err(failures)
    }
}

#[test]
fn every_shader_translates_for_every_backend() {
    let val = spirv_val();
    let shaders = activeshift::gpu::kernels::SHADERS;
    assert!(!shaders.is_empty(), "the crate lists no shader");
    let (mut pairs, mut entry_points) = (0, 0);
    let mut failures = Vec::new();
    for (name, src) in shaders {
        match translate_all(name, src, val) {
            Ok(n) => {
                pairs += n;
                entry_points += n / BACKENDS.len();
            }
            Err(e) => failures.extend(e),
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    println!(
        "translated {pairs} (shader, entry point, backend) pairs: {} shaders, {entry_points} \
         entry points, {} backends (MSL 2.0, HLSL SM 6.0, SPIR-V 1.0{}, GLSL 430 core, GLSL ES 310)",
        shaders.len(),
        BACKENDS.len(),
        if val.is_some() {
            " checked by spirv-val"
        } else {
            " NOT validated"
        }
    );
    assert_eq!(pairs, entry_points * BACKENDS.len());
}

/// The checker is not blind: constructs that one backend cannot express fail it, by backend.
#[test]
fn an_unportable_shader_fails_translation() {
    let val = spirv_val();
    // Querying a texture's mip levels: fine in WGSL, Metal, DX12 and Vulkan, but OpenGL ES has
    // no textureQueryLevels.
    let levels = "@group(0) @binding(0) var t: texture_2d<f32>;\n\
                  @group(0) @binding(1) var<storage, read_write> o: array<u32>;\n\
                  @compute @workgroup_size(64) fn main() { o[0] = textureNumLevels(t); }";
    let err = translate_all("levels", levels, val).unwrap_err();
    assert_eq!(err.len(), 1, "{err:?}");
    assert!(err[0].contains("levels::main::GlslEs"), "{err:?}");

    // The same shader without the query translates everywhere.
    let fine = "@group(0) @binding(0) var t: texture_2d<f32>;\n\
                @group(0) @binding(1) var<storage, read_write> o: array<u32>;\n\
                @compute @workgroup_size(64) fn main() { o[0] = u32(textureLoad(t, vec2(0), 0).x); }";
    assert_eq!(translate_all("fine", fine, val), Ok(BACKENDS.len()));

    // spirv-val is really consulted: a module header with no capability and no entry point.
    if let Some(val) = val {
        let header = [0x0723_0203, 0x0001_0000, 0, 1, 0];
        assert!(validate_spirv(val, "header_only", &header).is_err());
    }
}
