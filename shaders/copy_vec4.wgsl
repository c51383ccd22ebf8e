// A plain copy, y[i] = x[i], one vec4 per invocation (the vectorised twin of copy.wgsl, for
// lengths divisible by 4): the benchmark's bandwidth ceiling for the vectorised kernels.

#import copy_params
// (`params.len` counts vec4s here.)

const WG_SIZE: u32 = 256u;

@group(0) @binding(0) var<uniform> params: CopyParams;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> y: array<vec4<f32>>;

@compute @workgroup_size(WG_SIZE)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.y * params.row + gid.x;
    if (i >= params.len) {
        return;
    }
    y[i] = x[i];
}
