// A plain copy, y[i] = x[i], one element per invocation: the benchmark's bandwidth ceiling (the
// same access pattern as asl_forward.wgsl without the shift). With VEC4 (copy_vec4.wgsl, for
// lengths divisible by 4) an element is a vec4 and `params.len` counts vec4s: the ceiling for
// the vectorised kernels.

#import copy_params

const WG_SIZE: u32 = 256u;

#ifdef VEC4
alias Elem = vec4<f32>;
#else
alias Elem = f32;
#endif

#bindings
0 params: uniform CopyParams
1 x: read Elem
2 y: read_write Elem
#endbindings

@compute @workgroup_size(WG_SIZE)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.y * params.row + gid.x;
    if (i >= params.len) {
        return;
    }
    y[i] = x[i];
}
