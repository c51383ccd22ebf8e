    // Channel c's shift by shift.wgsl's rules: whether it reads anything (live), its integer
    // parts (fx, fy) and its fractions (tx, ty).
    let live = !(shift_is_nan(shift[c]) || shift_is_nan(shift[params.c + c]));
    let xp = limit_shift(shift[c]);
    let yp = limit_shift(shift[params.c + c]);
    let fx = floor(xp);
    let fy = floor(yp);
    let tx = xp - fx;
    let ty = yp - fy;
