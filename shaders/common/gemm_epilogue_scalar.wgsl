    var acc: array<vec4<f32>, ROWS>;
#unroll M ROWS
    acc[M] = a##M;
#endunroll
    let y_base = n * params.cout * plane_out;
    let co0 = params.row0 + rb * ROWS;
    for (var m = 0u; m < ROWS; m++) {
        let co = co0 + m;
        if (co >= params.cout) {
            break;
        }
        for (var e = 0u; e < 4u; e++) {
            let p = p0 + e;
            if (p >= plane_out) {
                break;
            }
            store_output(y_base + co * plane_out + p, co, acc[m][e]);
        }
    }
}
