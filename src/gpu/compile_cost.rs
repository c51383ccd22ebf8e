//! What compiling each kernel costs, measured honestly: a pipeline's creation and its first
//! dispatch. Some drivers compile machine code only when a pipeline first runs (Mesa's
//! llvmpipe, under lavapipe, builds each compute shader's LLVM variant at its first launch), so
//! the creation alone hides most of the cost there. With
//! [`GpuContext::time_compiles`](crate::gpu::GpuContext::time_compiles) on, every pipeline the
//! context builds is dispatched once right away (one workgroup, stand-in buffers of zeros), and
//! both times are recorded; the real dispatches later reuse what that first one compiled.

#[cfg(not(target_arch = "wasm32"))]
use std::time::Instant;

/// One kernel pipeline's compile cost.
#[derive(Clone, Debug, PartialEq)]
pub struct CompileTime {
    /// The kernel's file (`SHADERS`).
    pub file: &'static str,
    /// Its entry point.
    pub entry: &'static str,
    /// Milliseconds to create the shader module and the compute pipeline.
    pub create_ms: f64,
    /// Milliseconds of its first dispatch (one workgroup), submission to completion: on
    /// drivers that compile lazily, the rest of the compile.
    pub first_dispatch_ms: f64,
}

impl CompileTime {
    /// Creation and first dispatch together.
    pub fn total_ms(&self) -> f64 {
        self.create_ms + self.first_dispatch_ms
    }
}

/// The group-0 bindings `entry` of `file` uses, `(binding, uniform)`.
#[cfg(not(target_arch = "wasm32"))]
fn bindings(file: &str, entry: &str) -> &'static [(u32, bool)] {
    super::kernels::SHADER_BINDINGS
        .iter()
        .find(|(f, e, _)| *f == file && *e == entry)
        .map_or(&[], |(_, _, b)| *b)
}

/// Dispatch one workgroup of `pipeline` (`entry` of `file`) with a buffer of zeros at each of
/// its bindings, and wait for it; returns the milliseconds from recording to completion. Reads
/// past the stand-in buffers are safe (wgpu bounds-checks every access) and the kernels' loops
/// run zero times on zero parameters.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn first_dispatch(
    device: &wgpu::Device,
    queue: &wgpu::Queue,
    pipeline: &wgpu::ComputePipeline,
    layout: &wgpu::BindGroupLayout,
    file: &'static str,
    entry: &'static str,
) -> f64 {
    let uniform_size = 65536u64.min(device.limits().max_uniform_buffer_binding_size);
    let buffers: Vec<(u32, wgpu::Buffer)> = bindings(file, entry)
        .iter()
        .map(|&(binding, uniform)| {
            let buffer = device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("activeshift compile probe"),
                size: if uniform { uniform_size } else { 65536 },
                usage: if uniform {
                    wgpu::BufferUsages::UNIFORM
                } else {
                    wgpu::BufferUsages::STORAGE
                },
                mapped_at_creation: false,
            });
            (binding, buffer)
        })
        .collect();
    let entries: Vec<wgpu::BindGroupEntry<'_>> = buffers
        .iter()
        .map(|(binding, buffer)| wgpu::BindGroupEntry {
            binding: *binding,
            resource: buffer.as_entire_binding(),
        })
        .collect();
    let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some(file),
        layout,
        entries: &entries,
    });
    let start = Instant::now();
    let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
        label: Some("activeshift compile probe"),
    });
    {
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some(file),
            timestamp_writes: None,
        });
        pass.set_pipeline(pipeline);
        pass.set_bind_group(0, &bind_group, &[]);
        pass.dispatch_workgroups(1, 1, 1);
    }
    queue.submit([encoder.finish()]);
    // A lost device ends the wait too; its error surfaces at the caller's next check.
    let _ = device.poll(wgpu::PollType::wait_indefinitely());
    start.elapsed().as_secs_f64() * 1e3
}

/// Every entry point of every kernel permutation (`SHADER_BINDINGS`, which lists the entry
/// points naga finds, also those written out in a source) built and dispatched once on `ctx`
/// with [`GpuContext::time_compiles`](crate::gpu::GpuContext::time_compiles) on: the most a
/// first run can cost. Slowest first.
#[cfg(not(target_arch = "wasm32"))]
pub fn every_kernel(ctx: &crate::gpu::GpuContext) -> crate::Result<Vec<CompileTime>> {
    ctx.time_compiles();
    let mut rows = Vec::new();
    for (file, entry, _) in super::kernels::SHADER_BINDINGS {
        rows.push(ctx.kernels().probe(file, entry));
    }
    ctx.check_device()?;
    rows.sort_by(|a, b| b.total_ms().total_cmp(&a.total_ms()));
    Ok(rows)
}

/// A Markdown table of `rows` (as given) with their totals.
pub fn table(rows: &[CompileTime]) -> String {
    let mut s = String::from(
        "| kernel | entry point | create ms | first dispatch ms | total ms |\n|---|---|---:|---:|---:|\n",
    );
    for r in rows {
        s += &format!(
            "| `{}` | `{}` | {:.1} | {:.1} | {:.1} |\n",
            r.file,
            r.entry,
            r.create_ms,
            r.first_dispatch_ms,
            r.total_ms()
        );
    }
    let sum = |f: fn(&CompileTime) -> f64| rows.iter().map(f).sum::<f64>();
    s += &format!(
        "| total | {} pipelines | {:.1} | {:.1} | {:.1} |\n",
        rows.len(),
        sum(|r| r.create_ms),
        sum(|r| r.first_dispatch_ms),
        sum(CompileTime::total_ms)
    );
    s
}
