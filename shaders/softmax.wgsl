// Row-wise softmax over the last dimension of a [N, K] tensor (docs/design.md §2, the classifier):
//
//   m = max over k of x[r, k],   y[r, k] = exp(x[r, k] - m) / sum over k' of exp(x[r, k'] - m)
//
// Subtracting the row maximum keeps exp() from overflowing (the largest term is exp(0) = 1).
// Logits that overflowed must not give NaN (Inf - Inf): `finite` takes +-Inf as the largest
// finite value of its sign and NaN as the lowest (the CPU twin does the same), and exponents
// below -126 (where f32's exp is 0 anyway) are clamped so no exp(-Inf) is asked for.
// One workgroup per row (workgroup_id.x): each invocation strides over the row with step
// WG_SIZE, then a tree in workgroup memory combines the WG_SIZE partial results, first for the
// maximum, then for the sum; every invocation finally writes its elements.

// Its Rust twin `SoftmaxParams` is generated from this by build.rs (from naga\'s layout).
struct SoftmaxParams {
    rows: u32,
    cols: u32,
    _pad0: u32,
    _pad1: u32,
}

const WG_SIZE: u32 = 256u;

#bindings
0 params: uniform SoftmaxParams
// [N, K]
1 x: read f32
// [N, K]
2 y: read_write f32
#endbindings

var<workgroup> sh_red: array<f32, WG_SIZE>;

// The largest finite f32, written exactly (a rounded decimal is refused by some compilers).
const F32_MAX: f32 = 0x1.fffffep+127f;

// x[i] as a finite value: NaN (detected from its bits, which no fast-math rule may fold away)
// becomes -F32_MAX, +-Inf becomes +-F32_MAX.
fn finite(i: u32) -> f32 {
    let v = x[i];
    let nan = (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
    return select(clamp(v, -F32_MAX, F32_MAX), -F32_MAX, nan);
}

fn exp_from(i: u32, m: f32) -> f32 {
    return exp(max(finite(i) - m, -126.0));
}

// Tree reduction of sh_red into element 0, by maximum (`use_max`) or by sum; every invocation
// returns the result. Call from uniform control flow with sh_red[li] already written.
fn reduce(li: u32, use_max: bool) -> f32 {
    for (var width = WG_SIZE / 2u; width > 0u; width = width / 2u) {
        workgroupBarrier();
        if (li < width) {
            let a = sh_red[li];
            let b = sh_red[li + width];
            sh_red[li] = select(a + b, max(a, b), use_max);
        }
    }
    workgroupBarrier();
    let r = sh_red[0];
    // Nobody may overwrite sh_red before everybody has read the result.
    workgroupBarrier();
    return r;
}

@compute @workgroup_size(WG_SIZE)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let base = wg.x * params.cols;
    // Every row has at least one element; x[base] starts every partial maximum.
    var m = finite(base);
    for (var k = li; k < params.cols; k += WG_SIZE) {
        m = max(m, finite(base + k));
    }
    sh_red[li] = m;
    m = reduce(li, true);
    var s = 0.0;
    for (var k = li; k < params.cols; k += WG_SIZE) {
        s += exp_from(base + k, m);
    }
    sh_red[li] = s;
    let inv = 1.0 / reduce(li, false);
    for (var k = li; k < params.cols; k += WG_SIZE) {
        y[base + k] = exp_from(base + k, m) * inv;
    }
}
