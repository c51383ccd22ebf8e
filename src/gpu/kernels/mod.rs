//! One Rust type per WGSL kernel in `shaders/`. Each builds its pipelines once and records
//! dispatches after checking shapes and device limits.

mod asl;
mod conv1x1;

pub use asl::{AslBackwardInput, AslBackwardShift, AslForward, ShiftGradNormalize};
pub use conv1x1::{Conv1x1, Conv1x1BackwardInput, Conv1x1BackwardWeight, Conv1x1Epilogue};

use crate::error::{Error, Result};
use std::sync::OnceLock;
use wgpu::util::DeviceExt;

/// The WGSL source of every kernel, by file name (for validation and inspection).
pub const SHADERS: &[(&str, &str)] = &[
    (
        "asl_forward.wgsl",
        include_str!("../../../shaders/asl_forward.wgsl"),
    ),
    (
        "asl_backward_input.wgsl",
        include_str!("../../../shaders/asl_backward_input.wgsl"),
    ),
    (
        "asl_backward_shift.wgsl",
        include_str!("../../../shaders/asl_backward_shift.wgsl"),
    ),
    (
        "shift_grad_normalize.wgsl",
        include_str!("../../../shaders/shift_grad_normalize.wgsl"),
    ),
    ("conv1x1.wgsl", include_str!("../../../shaders/conv1x1.wgsl")),
    (
        "conv1x1_backward_input.wgsl",
        include_str!("../../../shaders/conv1x1_backward_input.wgsl"),
    ),
    (
        "conv1x1_backward_weight.wgsl",
        include_str!("../../../shaders/conv1x1_backward_weight.wgsl"),
    ),
];

fn source(file: &str) -> &'static str {
    SHADERS
        .iter()
        .find(|(name, _)| *name == file)
        .map(|(_, src)| *src)
        .unwrap_or_else(|| unreachable!("shader {file} is listed in SHADERS"))
}

/// Every kernel, its pipelines built on first use (one field per kernel).
#[derive(Default)]
pub struct Kernels {
    asl_forward: OnceLock<AslForward>,
    asl_backward_input: OnceLock<AslBackwardInput>,
    asl_backward_shift: OnceLock<AslBackwardShift>,
    shift_grad_normalize: OnceLock<ShiftGradNormalize>,
    conv1x1: OnceLock<Conv1x1>,
    conv1x1_backward_input: OnceLock<Conv1x1BackwardInput>,
    conv1x1_backward_weight: OnceLock<Conv1x1BackwardWeight>,
    placeholder: OnceLock<wgpu::Buffer>,
}

impl Kernels {
    /// `shaders/asl_forward.wgsl`.
    pub fn asl_forward(&self, device: &wgpu::Device) -> &AslForward {
        self.asl_forward.get_or_init(|| AslForward::new(device))
    }
    /// `shaders/asl_backward_input.wgsl`.
    pub fn asl_backward_input(&self, device: &wgpu::Device) -> &AslBackwardInput {
        self.asl_backward_input
            .get_or_init(|| AslBackwardInput::new(device))
    }
    /// `shaders/asl_backward_shift.wgsl`.
    pub fn asl_backward_shift(&self, device: &wgpu::Device) -> &AslBackwardShift {
        self.asl_backward_shift
            .get_or_init(|| AslBackwardShift::new(device))
    }
    /// `shaders/shift_grad_normalize.wgsl`.
    pub fn shift_grad_normalize(&self, device: &wgpu::Device) -> &ShiftGradNormalize {
        self.shift_grad_normalize
            .get_or_init(|| ShiftGradNormalize::new(device))
    }
    /// `shaders/conv1x1.wgsl`.
    pub fn conv1x1(&self, device: &wgpu::Device) -> &Conv1x1 {
        self.conv1x1.get_or_init(|| Conv1x1::new(device))
    }
    /// `shaders/conv1x1_backward_input.wgsl`.
    pub fn conv1x1_backward_input(&self, device: &wgpu::Device) -> &Conv1x1BackwardInput {
        self.conv1x1_backward_input
            .get_or_init(|| Conv1x1BackwardInput::new(device))
    }
    /// `shaders/conv1x1_backward_weight.wgsl`.
    pub fn conv1x1_backward_weight(&self, device: &wgpu::Device) -> &Conv1x1BackwardWeight {
        self.conv1x1_backward_weight
            .get_or_init(|| Conv1x1BackwardWeight::new(device))
    }
    /// A 16-byte storage buffer bound where a kernel's optional input is absent.
    pub(crate) fn placeholder(&self, device: &wgpu::Device) -> &wgpu::Buffer {
        self.placeholder.get_or_init(|| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("activeshift placeholder"),
                size: 16,
                usage: wgpu::BufferUsages::STORAGE,
                mapped_at_creation: false,
            })
        })
    }
}

/// A compute pipeline with the bind group layout wgpu derived from its WGSL.
pub(crate) struct Pipeline {
    label: &'static str,
    pipeline: wgpu::ComputePipeline,
    layout: wgpu::BindGroupLayout,
}

impl Pipeline {
    /// Build the pipeline for `entry` of `file`.
    pub(crate) fn new(device: &wgpu::Device, file: &'static str, entry: &'static str) -> Self {
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(file),
            source: wgpu::ShaderSource::Wgsl(source(file).into()),
        });
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(file),
            layout: None,
            module: &module,
            entry_point: Some(entry),
            compilation_options: Default::default(),
            cache: None,
        });
        let layout = pipeline.get_bind_group_layout(0);
        Self {
            label: file,
            pipeline,
            layout,
        }
    }

    /// Record one dispatch of `groups` workgroups with `params` at binding 0 and `buffers` at
    /// the bindings given.
    pub(crate) fn dispatch<P: bytemuck::Pod>(
        &self,
        device: &wgpu::Device,
        encoder: &mut wgpu::CommandEncoder,
        params: &P,
        buffers: &[(u32, &wgpu::Buffer)],
        groups: [u32; 3],
    ) {
        let uniform = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(self.label),
            contents: bytemuck::bytes_of(params),
            usage: wgpu::BufferUsages::UNIFORM,
        });
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: uniform.as_entire_binding(),
        }];
        entries.extend(buffers.iter().map(|(binding, buf)| wgpu::BindGroupEntry {
            binding: *binding,
            resource: buf.as_entire_binding(),
        }));
        let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(self.label),
            layout: &self.layout,
            entries: &entries,
        });
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some(self.label),
            timestamp_writes: None,
        });
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &bind_group, &[]);
        pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
    }
}

/// Workgroup counts for a dispatch, checked against the device's per-dimension limit.
pub(crate) fn workgroups(
    op: &'static str,
    device: &wgpu::Device,
    groups: [usize; 3],
) -> Result<[u32; 3]> {
    let limit = device.limits().max_compute_workgroups_per_dimension;
    let mut out = [0u32; 3];
    for (o, g) in out.iter_mut().zip(groups) {
        *o = u32::try_from(g)
            .ok()
            .filter(|&g| g <= limit)
            .ok_or(Error::DeviceLimit {
                op,
                what: "workgroups per dispatch dimension",
                needed: g as u64,
                limit: u64::from(limit),
            })?;
    }
    Ok(out)
}

/// A shape value as u32 for a uniform.
pub(crate) fn u32_of(op: &'static str, what: &'static str, v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::DeviceLimit {
        op,
        what,
        needed: v as u64,
        limit: u64::from(u32::MAX),
    })
}

/// Check a tensor's dims.
pub(crate) fn expect_dims(
    op: &'static str,
    what: &str,
    t: &crate::GpuTensor,
    dims: &[usize],
) -> Result<()> {
    if t.dims() != dims {
        return Err(Error::shape(
            op,
            what,
            format!("{dims:?}"),
            format!("{:?}", t.dims()),
        ));
    }
    Ok(())
}
