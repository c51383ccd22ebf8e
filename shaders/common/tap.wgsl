// x[n, c] (the plane starting at `base`) at row `row`, column `col`; 0 outside the image. Needs
// `x: array<f32>` and `params` (with `h` and `w`) in the kernel that imports it.

fn tap(base: u32, row: i32, col: i32) -> f32 {
    if (row < 0 || col < 0 || row >= i32(params.h) || col >= i32(params.w)) {
        return 0.0;
    }
    return x[base + u32(row) * params.w + u32(col)];
}
