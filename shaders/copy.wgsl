// A plain copy, y[i] = x[i], one f32 per invocation: the benchmark's bandwidth ceiling (the
// same access pattern as asl_forward.wgsl without the shift).

#import copy_params

const WG_SIZE: u32 = 256u;

@group(0) @binding(0) var<uniform> params: CopyParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(WG_SIZE)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.y * params.row + gid.x;
    if (i >= params.len) {
        return;
    }
    y[i] = x[i];
}
