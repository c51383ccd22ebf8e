// Packs a [Cout, Cin] weight matrix into the uniform-buffer slabs that the register-tiled
// GEMMs (conv1x1_vec4.wgsl, conv1x1_reg.wgsl, asl_conv1x1.wgsl) read. Slab s (SLAB floats,
// 64 KiB) covers output channels rb*rows .. rb*rows + rows - 1 and input channels
// kb*kc .. kb*kc + kc - 1, with rb = s / nk and kb = s % nk; each of its rows holds kc floats:
//
//   packed[s * SLAB + r * kc + k] = W[rb * rows + r, kb * kc + k]   (0 outside W)
//
// With `transposed` set, W is read from a [Cin, Cout] matrix (W[co, ci] = weight[ci, co]): the
// GEMM then multiplies by the transpose of that matrix (the 1x1 convolution's input gradient).

// Its Rust twin `PackParams` is generated from this by build.rs (from naga\'s layout).
struct PackParams {
    cout: u32,
    cin: u32,
    // Floats per packed row (the input-channel chunk width, a multiple of 4).
    kc: u32,
    // Output channels per slab.
    rows: u32,
    // Input-channel chunks.
    nk: u32,
    // Floats to write: slabs * rows * kc.
    len: u32,
    // 1: the weight buffer holds W transposed, [Cin, Cout].
    transposed: u32,
    _pad1: u32,
}

const WG_SIZE: u32 = 256u;
const SLAB: u32 = 16384u;

#bindings
0 params: uniform PackParams
// [Cout, Cin]
1 weight: read f32
2 packed: read_write f32
#endbindings

@compute @workgroup_size(WG_SIZE)
fn main(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let i = gid.x + gid.y * groups.x * WG_SIZE;
    if (i >= params.len) {
        return;
    }
    // Only the rows * kc floats at the start of each slab are written (and ever read).
    let used = params.rows * params.kc;
    let s = i / used;
    let within = i % used;
    let r = within / params.kc;
    let k = within % params.kc;
    let co = (s / params.nk) * params.rows + r;
    let ci = (s % params.nk) * params.kc + k;
    var v = 0.0;
    if (co < params.cout && ci < params.cin) {
        v = select(weight[co * params.cin + ci], weight[ci * params.cout + co], params.transposed != 0u);
    }
    packed[s * SLAB + within] = v;
}
