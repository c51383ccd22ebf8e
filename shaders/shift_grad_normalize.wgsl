// Normalized shift gradient (docs/design.md §1): every channel's (dxpos, dypos) pair is scaled to
// unit L2 norm in place; a zero pair is left alone. The pair is first divided by its larger
// magnitude so that squaring neither underflows (tiny gradients) nor overflows.

// Its Rust twin `NormalizeParams` is generated from this by build.rs (from naga\'s layout).
struct NormalizeParams {
    c: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

const WG_SIZE: u32 = 256u;

#bindings
0 params: uniform NormalizeParams
// [2, C]: dxpos then dypos.
1 grad: read_write f32
#endbindings

@compute @workgroup_size(WG_SIZE)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    if (c >= params.c) {
        return;
    }
    let gx = grad[c];
    let gy = grad[params.c + c];
    let m = max(abs(gx), abs(gy));
    if (m > 0.0) {
        let a = gx / m;
        let b = gy / m;
        let norm = sqrt(a * a + b * b);
        grad[c] = a / norm;
        grad[params.c + c] = b / norm;
    }
}
