//! Every op of the fast CPU op set (`activeshift::cpu::fast`, what the CPU engine and the CPU
//! trainer run) against its generic twin in `activeshift::cpu` run in f64, on fresh random
//! inputs: odd sizes, stride 1 and 2, batches of one image (split over output rows) and of
//! several (split over images), shifts beyond the border, integer and NaN shifts, outputs
//! poisoned before the op runs. The twins added for training (3x3 weight gradient, depthwise
//! backward, BatchNorm in training mode) are checked themselves against adjoint identities and
//! finite differences.

use crate::common;

use activeshift::Shape4;
use activeshift::cpu::{self, Epilogue, fast};
use common::*;
use rand::rngs::StdRng;

/// Shapes: odd sizes, one image and several, stride 1 and 2.
fn cases() -> Vec<(Shape4, usize)> {
    let mut v = Vec::new();
    for (n, c, h, w) in [
        (1, 3, 7, 5),
        (5, 4, 9, 6),
        (3, 7, 1, 4),
        (2, 5, 6, 1),
        (8, 16, 11, 13),
    ] {
        for s in [1, 2] {
            v.push((Shape4::new(n, c, h, w), s));
        }
    }
    v
}

fn poisoned(len: usize) -> Vec<f32> {
    vec![f32::NAN; len]
}

fn close(what: &str, got: &[f32], want: &[f64], tol: f64) {
    let err = rel_err(got, &f32s(want));
    assert!(err <= tol, "{what}: relative error {err}");
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[test]
fn convolutions_match_their_twins() {
    let (mut rng, _) = rng("fast convolutions");
    for (xs, s) in cases() {
        let cout = 2 * xs.c + 1;
        let ys = xs.strided(cout, s);
        let x = uniform64(&mut rng, xs.len(), -1.0, 1.0);
        let w = uniform64(&mut rng, cout * xs.c, -1.0, 1.0);
        let (sc, bi) = (
            uniform64(&mut rng, cout, 0.5, 1.5),
            uniform64(&mut rng, cout, -0.5, 0.5),
        );
        let res = uniform64(&mut rng, ys.len(), -1.0, 1.0);
        let ep = Epilogue {
            affine: Some((&sc[..], &bi[..])),
            residual: Some(&res[..]),
            relu: true,
        };
        let want = cpu::conv1x1(&x, xs, &w, cout, s, ep).unwrap();
        let (sc32, bi32, res32) = (f32s(&sc), f32s(&bi), f32s(&res));
        let ep32 = Epilogue {
            affine: Some((&sc32[..], &bi32[..])),
            residual: Some(&res32[..]),
            relu: true,
        };
        let mut y = poisoned(ys.len());
        let w32 = f32s(&w);
        let layer = fast::Conv1x1Layer {
            w: &w32,
            cout,
            stride: s,
            ep: &ep32,
        };
        fast::conv1x1(&f32s(&x), xs, layer, &mut y, &mut Vec::new());
        close(&format!("conv1x1 {xs} s{s}"), &y, &want, 1e-5);

        let w3 = uniform64(&mut rng, cout * xs.c * 9, -1.0, 1.0);
        let want = cpu::conv3x3(&x, xs, &w3, cout, s).unwrap();
        let mut y = poisoned(ys.len());
        fast::conv3x3(&f32s(&x), xs, &f32s(&w3), cout, s, &mut y, &mut Vec::new());
        close(&format!("conv3x3 {xs} s{s}"), &y, &want, 1e-5);

        let dy = uniform64(&mut rng, ys.len(), -1.0, 1.0);
        let want = cpu::conv1x1_backward_input(&dy, xs, &w, cout, s).unwrap();
        let mut dx = poisoned(xs.len());
        fast::conv1x1_backward_input(&f32s(&dy), xs, &f32s(&w), cout, s, &mut dx);
        close(&format!("conv1x1 dx {xs} s{s}"), &dx, &want, 1e-5);
        let want = cpu::conv1x1_backward_weight(&dy, &x, xs, cout, s).unwrap();
        let got = fast::conv1x1_backward_weight(&f32s(&dy), &f32s(&x), xs, cout, s);
        close(&format!("conv1x1 dw {xs} s{s}"), &got, &want, 1e-5);

        let want = cpu::conv3x3_backward_weight(&dy, &x, xs, cout, s).unwrap();
        let got = fast::conv3x3_backward_weight(&f32s(&dy), &f32s(&x), xs, cout, s);
        close(&format!("conv3x3 dw {xs} s{s}"), &got, &want, 1e-5);
        // The twin itself: the 3x3 convolution is linear in its weights, so
        // <dy, conv3x3(x, v)> = <dw, v> for any v.
        let v = uniform64(&mut rng, w3.len(), -1.0, 1.0);
        let lhs = dot(&dy, &cpu::conv3x3(&x, xs, &v, cout, s).unwrap());
        let rhs = dot(&want, &v);
        assert!(
            (lhs - rhs).abs() <= 1e-9 * lhs.abs().max(1.0),
            "conv3x3 dw twin: {lhs} vs {rhs}"
        );
    }
}

#[test]
fn affine_matches_its_twin() {
    let (mut rng, _) = rng("fast affine");
    for (xs, _) in cases() {
        let x = uniform64(&mut rng, xs.len(), -2.0, 2.0);
        let (a, b) = (
            uniform64(&mut rng, xs.c, -1.5, 1.5),
            uniform64(&mut rng, xs.c, -1.0, 1.0),
        );
        for relu in [false, true] {
            let want = cpu::affine(&x, xs, &a, &b, relu).unwrap();
            let mut y = poisoned(xs.len());
            fast::affine(&f32s(&x), xs, &f32s(&a), &f32s(&b), relu, &mut y);
            close(&format!("affine {xs} relu {relu}"), &y, &want, 1e-6);
        }
    }
}

/// Shifts of every kind: fractional within a pixel, integer, beyond the border, huge, NaN.
fn shifts(rng: &mut StdRng, xs: Shape4) -> Vec<f64> {
    let mut sh = uniform64(rng, 2 * xs.c, -2.5, 2.5);
    let specials = [
        (xs.w + 2) as f64 + 0.25,
        -((xs.h + 3) as f64) - 0.5,
        1.0,
        -2.0,
        0.0,
        1e9,
    ];
    for (k, v) in specials.iter().enumerate() {
        let i = (3 * k + 1) % sh.len();
        sh[i] = *v;
    }
    if xs.c > 2 {
        sh[xs.c - 1] = f64::NAN;
    }
    sh
}

#[test]
fn asl_forward_and_backward_match_their_twins() {
    let (mut rng, _) = rng("fast asl");
    for (xs, s) in cases() {
        let os = xs.strided(xs.c, s);
        let x = uniform64(&mut rng, xs.len(), -1.0, 1.0);
        let sh = shifts(&mut rng, xs);
        let want = cpu::asl_forward(&x, xs, &sh, s).unwrap();
        let mut y = poisoned(os.len());
        fast::asl_forward(&f32s(&x), xs, &f32s(&sh), s, &mut y);
        close(&format!("asl forward {xs} s{s}"), &y, &want, 1e-5);

        let dout = uniform64(&mut rng, os.len(), -1.0, 1.0);
        let want_dx = cpu::asl_backward_input(&dout, xs, &sh, s).unwrap();
        let want_dsh = cpu::asl_backward_shift(&x, xs, &dout, &sh, s).unwrap();
        let (dx, dsh) = fast::shift_backward(&f32s(&x), xs, &f32s(&dout), &f32s(&sh), s).unwrap();
        close(&format!("asl dx {xs} s{s}"), &dx, &want_dx, 1e-5);
        for c in 0..2 * xs.c {
            let (g, w) = (f64::from(dsh[c]), want_dsh[c]);
            assert!(
                (g - w).abs() <= 1e-4 * w.abs().max(1.0),
                "asl dshift {xs} s{s} [{c}]: {g} vs {w}"
            );
        }
    }
}

#[test]
fn shift_backward_refuses_a_wrong_shift_length() {
    let xs = Shape4::new(1, 3, 4, 4);
    let r = fast::shift_backward(&[0.0; 48], xs, &[0.0; 48], &[0.0; 5], 1);
    assert!(r.is_err());
}

#[test]
fn batchnorm_matches_its_twin() {
    let (mut rng, _) = rng("fast batchnorm");
    for (xs, _) in cases() {
        // An offset mean, so the variance is not the mean of squares.
        let x: Vec<f64> = uniform64(&mut rng, xs.len(), -1.0, 1.0)
            .iter()
            .map(|v| v + 3.0)
            .collect();
        let (g, b) = (
            uniform64(&mut rng, xs.c, 0.5, 1.5),
            uniform64(&mut rng, xs.c, -0.3, 0.3),
        );
        let (want_y, want_st) = cpu::batchnorm_relu_train(&x, xs, &g, &b).unwrap();
        let (y, st) = fast::bn_relu_train(&f32s(&x), xs, &f32s(&g), &f32s(&b));
        close(&format!("bn y {xs}"), &y, &want_y, 2e-5);
        close(
            &format!("bn mean {xs}"),
            &st[..xs.c],
            &want_st[..xs.c],
            1e-6,
        );
        close(&format!("bn var {xs}"), &st[xs.c..], &want_st[xs.c..], 1e-4);

        let dy = uniform64(&mut rng, xs.len(), -1.0, 1.0);
        // The same ReLU mask on both sides (a value near 0 may round either way).
        let (wdx, wdg, wdb) =
            cpu::batchnorm_relu_backward(&dy, &x, &f64s(&y), xs, &g, &want_st).unwrap();
        let (dx, dg, db) = fast::bn_relu_backward(&f32s(&dy), &f32s(&x), &y, xs, &f32s(&g), &st);
        close(&format!("bn dx {xs}"), &dx, &wdx, 1e-3);
        close(&format!("bn dgamma {xs}"), &dg, &wdg, 1e-4);
        close(&format!("bn dbeta {xs}"), &db, &wdb, 1e-5);
    }
}

#[test]
fn batchnorm_twin_matches_finite_differences() {
    let (mut rng, _) = rng("batchnorm twin fd");
    let xs = Shape4::new(3, 2, 3, 5);
    let x = uniform64(&mut rng, xs.len(), -1.0, 1.0);
    let (g, b) = (
        uniform64(&mut rng, xs.c, 0.5, 1.5),
        uniform64(&mut rng, xs.c, -0.3, 0.3),
    );
    let dy = uniform64(&mut rng, xs.len(), -1.0, 1.0);
    let loss = |x: &[f64], g: &[f64], b: &[f64]| {
        dot(&dy, &cpu::batchnorm_relu_train(x, xs, g, b).unwrap().0)
    };
    let (y, st) = cpu::batchnorm_relu_train(&x, xs, &g, &b).unwrap();
    let (dx, dg, db) = cpu::batchnorm_relu_backward(&dy, &x, &y, xs, &g, &st).unwrap();
    let h = 1e-6;
    let fd = |f: &dyn Fn(f64) -> f64| (f(h) - f(-h)) / (2.0 * h);
    for i in 0..xs.len() {
        let num = fd(&|e| {
            let mut x2 = x.clone();
            x2[i] += e;
            loss(&x2, &g, &b)
        });
        assert!((num - dx[i]).abs() <= 1e-5, "dx[{i}]: {num} vs {}", dx[i]);
    }
    for c in 0..xs.c {
        let num = fd(&|e| {
            let mut g2 = g.clone();
            g2[c] += e;
            loss(&x, &g2, &b)
        });
        assert!(
            (num - dg[c]).abs() <= 1e-5,
            "dgamma[{c}]: {num} vs {}",
            dg[c]
        );
        let num = fd(&|e| {
            let mut b2 = b.clone();
            b2[c] += e;
            loss(&x, &g, &b2)
        });
        assert!(
            (num - db[c]).abs() <= 1e-5,
            "dbeta[{c}]: {num} vs {}",
            db[c]
        );
    }
}

#[test]
fn depthwise_matches_its_twin() {
    let (mut rng, _) = rng("fast depthwise");
    for (xs, s) in cases() {
        let ys = xs.strided(xs.c, s);
        let x = uniform64(&mut rng, xs.len(), -1.0, 1.0);
        let w = uniform64(&mut rng, xs.c * 9, -1.0, 1.0);
        let want = cpu::depthwise3x3(&x, xs, &w, s).unwrap();
        let mut y = poisoned(ys.len());
        fast::depthwise3x3(&f32s(&x), xs, &f32s(&w), s, &mut y);
        close(&format!("depthwise {xs} s{s}"), &y, &want, 1e-5);

        let dy = uniform64(&mut rng, ys.len(), -1.0, 1.0);
        let (wdx, wdw) = cpu::depthwise3x3_backward(&x, xs, &dy, &w, s).unwrap();
        let (dx, dw) = fast::depthwise3x3_backward(&f32s(&x), xs, &f32s(&dy), &f32s(&w), s);
        close(&format!("depthwise dx {xs} s{s}"), &dx, &wdx, 1e-5);
        close(&format!("depthwise dw {xs} s{s}"), &dw, &wdw, 1e-5);
        // The twin itself: linear in the input and in the weights.
        let v = uniform64(&mut rng, xs.len(), -1.0, 1.0);
        let lhs = dot(&dy, &cpu::depthwise3x3(&v, xs, &w, s).unwrap());
        assert!(
            (lhs - dot(&wdx, &v)).abs() <= 1e-9 * lhs.abs().max(1.0),
            "depthwise dx twin"
        );
        let v = uniform64(&mut rng, w.len(), -1.0, 1.0);
        let lhs = dot(&dy, &cpu::depthwise3x3(&x, xs, &v, s).unwrap());
        assert!(
            (lhs - dot(&wdw, &v)).abs() <= 1e-9 * lhs.abs().max(1.0),
            "depthwise dw twin"
        );
    }
}
