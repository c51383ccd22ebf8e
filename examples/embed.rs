//! A host application that owns its wgpu device and runs an activeshift model inside its own
//! frame.
//!
//! The host opens its device, draws a procedural image batch with a compute shader of its own
//! into a buffer it owns, and in the same command encoder has the model read that buffer in
//! place and write class scores into another host buffer. One submission, no CPU round trip;
//! the host then reads the scores back (only to print them). Finally the example checks that
//! the result equals the standalone API (`GpuModel::forward` on the same input).
//!
//! ```text
//! cargo run --release --example embed                     # synthetic asnet20-16x1
//! cargo run --release --example embed -- MODEL.safetensors
//! ```
//!
//! See `docs/embedding.md`.

use activeshift::model::{ArchConfig, GpuModel, Model};
use activeshift::{GpuContext, Output};
use std::error::Error;
use wgpu::util::DeviceExt;

/// The host's own shader: a procedural pattern per image and channel, written straight into the
/// network's input layout (`[N, C, H, W]`, values already normalized to about [-2, 2]).
const HOST_SHADER: &str = r#"
struct Params {
    n: u32,
    c: u32,
    h: u32,
    w: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> image: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    let i = id.x;
    if (i >= params.n * params.c * params.h * params.w) {
        return;
    }
    let x = f32(i % params.w) / f32(params.w);
    let y = f32((i / params.w) % params.h) / f32(params.h);
    let c = f32((i / (params.w * params.h)) % params.c);
    let n = f32(i / (params.w * params.h * params.c));
    let ring = length(vec2<f32>(x - 0.5, y - 0.5)) * (6.0 + 3.0 * n);
    image[i] = 2.0 * sin(6.2831853 * (ring + 0.3 * c)) * cos(3.0 * x * (c + 1.0) - 2.0 * y * n);
}
"#;

/// What one frame produced, read back for checking.
pub struct Frame {
    /// The image batch the host's shader drew (`[N, C, H, W]`).
    pub input: Vec<f32>,
    /// The model's logits and probabilities, from the host's output buffer.
    pub output: Output,
    /// The adapter the host opened.
    pub adapter: String,
}

/// The host's device: its own instance, adapter and device, opened with at least the limits
/// activeshift needs (WebGPU's defaults).
pub fn host_device() -> Result<(wgpu::Device, wgpu::Queue, wgpu::AdapterInfo), Box<dyn Error>> {
    let instance =
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    // The adapter activeshift's own `GpuContext::new` would open (`WGPU_ADAPTER_NAME`, else
    // wgpu's default), so the comparison with `GpuModel::forward` below runs on one adapter.
    let adapter = pollster::block_on(activeshift::gpu::select_adapter(&instance))?;
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        label: Some("host device"),
        required_limits: activeshift::gpu::required_limits(),
        ..Default::default()
    }))?;
    // The host's own error policy: here, wgpu's default (panic on validation errors) is
    // replaced by a log line, as many applications do; activeshift leaves it alone.
    device.on_uncaptured_error(std::sync::Arc::new(|e| eprintln!("host: wgpu error: {e}")));
    Ok((device, queue, adapter.get_info()))
}

/// Run one frame on a fresh host device: host compute pass, then the model, one submission.
pub fn run_frame(model: &Model, batch: usize) -> Result<Frame, Box<dyn Error>> {
    let (device, queue, info) = host_device()?;

    // activeshift on the host's device: parameters are uploaded once here.
    let ctx = GpuContext::from_device(&device, &queue, info.clone())?;
    let mut net = GpuModel::new(&ctx, model)?;

    // The host's buffers. The input needs STORAGE (the model binds it in place); the scores
    // buffer needs COPY_DST (the model copies its results into it).
    let dims = net.input_dims(batch);
    let input_bytes = (dims.iter().product::<usize>() * 4) as u64;
    let image = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("host image"),
        size: input_bytes,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    let scores = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("host scores"),
        size: net.output_bytes(batch),
        usage: wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    let readback = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("host readback"),
        size: input_bytes + net.output_bytes(batch),
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });

    // The host's own compute pipeline.
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some("host pattern"),
        source: wgpu::ShaderSource::Wgsl(HOST_SHADER.into()),
    });
    let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some("host pattern"),
        layout: None,
        module: &module,
        entry_point: Some("main"),
        compilation_options: Default::default(),
        cache: None,
    });
    let params: [u32; 4] = [
        dims[0] as u32,
        dims[1] as u32,
        dims[2] as u32,
        dims[3] as u32,
    ];
    let uniform = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some("host params"),
        contents: bytemuck::cast_slice(&params),
        usage: wgpu::BufferUsages::UNIFORM,
    });
    let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some("host pattern"),
        layout: &pipeline.get_bind_group_layout(0),
        entries: &[
            wgpu::BindGroupEntry {
                binding: 0,
                resource: uniform.as_entire_binding(),
            },
            wgpu::BindGroupEntry {
                binding: 1,
                resource: image.as_entire_binding(),
            },
        ],
    });

    // One frame: the host's pass, the model, the host's copies; one submission.
    let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
        label: Some("host frame"),
    });
    {
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("host pattern"),
            timestamp_writes: None,
        });
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &bind_group, &[]);
        pass.dispatch_workgroups((input_bytes / 4).div_ceil(64) as u32, 1, 1);
    }
    net.record(&mut encoder, &image, batch, Some(&scores))?;
    encoder.copy_buffer_to_buffer(&image, 0, &readback, 0, input_bytes);
    encoder.copy_buffer_to_buffer(&scores, 0, &readback, input_bytes, net.output_bytes(batch));
    queue.submit([encoder.finish()]);

    // Read back (a real host would bind `scores` in its next pass instead).
    let (tx, rx) = std::sync::mpsc::channel();
    readback.map_async(wgpu::MapMode::Read, .., move |r| {
        let _ = tx.send(r);
    });
    device.poll(wgpu::PollType::wait_indefinitely())?;
    rx.recv()??;
    let data: Vec<f32> = bytemuck::pod_collect_to_vec(&readback.get_mapped_range(..)?);
    readback.unmap();
    let (input, scores) = data.split_at((input_bytes / 4) as usize);
    let (logits, probs) = scores.split_at(scores.len() / 2);
    Ok(Frame {
        input: input.to_vec(),
        output: Output {
            classes: net.classes(),
            logits: logits.to_vec(),
            probs: probs.to_vec(),
        },
        adapter: info.name,
    })
}

/// The model to run: the file named on the command line, else a synthetic asnet20-16x1.
pub fn model_from_args() -> Result<Model, Box<dyn Error>> {
    Ok(match std::env::args_os().nth(1) {
        Some(path) => Model::load(path)?,
        None => Model::synthetic(&ArchConfig::builtin("asnet20-16x1")?, 2024)?,
    })
}

fn main() -> Result<(), Box<dyn Error>> {
    let model = model_from_args()?;
    let batch = 3;
    let frame = run_frame(&model, batch)?;
    println!(
        "host frame on {}: pattern pass + {} ({} images) in one submission",
        frame.adapter, model.config.name, batch
    );
    for i in 0..batch {
        let top: Vec<String> = frame
            .output
            .top_k(i, 3)
            .into_iter()
            .map(|(c, p)| format!("{} {:.3}", model.labels[c], p))
            .collect();
        println!("  image {i}: {}", top.join(", "));
    }

    // The same input through the standalone API, on a device activeshift opens itself.
    let ctx = pollster::block_on(GpuContext::new())?;
    let standalone = pollster::block_on(GpuModel::new(&ctx, &model)?.forward(&frame.input))?;
    if standalone != frame.output {
        return Err("the embedded run differs from GpuModel::forward on the same input".into());
    }
    println!("embedded output equals GpuModel::forward on the same input");
    Ok(())
}
