    var acc: array<vec4<f32>, ROWS>;
#unroll M ROWS
    acc[M] = a##M;
#endunroll
    let y_base = n * params.cout * plane4 + q;
    let co0 = params.row0 + rb * ROWS;
    for (var m = 0u; m < ROWS; m++) {
        let co = co0 + m;
        if (co >= params.cout) {
            break;
        }
        let idx = y_base + co * plane4;
        var v = acc[m];
        if ((params.flags & FLAG_ACCUMULATE) != 0u) {
            v += y[idx];
        }
        if ((params.flags & FLAG_AFFINE) != 0u) {
            v = scale[co] * v + bias[co];
        }
        if ((params.flags & FLAG_RESIDUAL) != 0u) {
            v += residual[idx];
        }
        if ((params.flags & FLAG_RELU) != 0u) {
            v = max(v, vec4<f32>(0.0));
        }
        y[idx] = v;
    }
}
