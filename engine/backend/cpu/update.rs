//! The optimizer step over a parameter array, from [`crate::ops::optimizer::update`].

use super::Par;
use crate::backend::traits::check_dim;
use crate::error::Result;
use crate::ops::optimizer::{state_len, update_step, StepConsts};
use crate::ops::{Hyper, Optimizer};
use rayon::prelude::*;

/// Elements per parallel task.
const STEP_CHUNK: usize = 4096;

/// `w[i], s[i] ← f(w[i], g[i], s[i])` over a chunk, with `K` state arrays in use.
#[inline(always)]
fn apply<const K: usize>(
    w: &mut [f32],
    g: &[f32],
    s0: &mut [f32],
    s1: &mut [f32],
    f: impl Fn(f32, f32, [f32; 2]) -> (f32, [f32; 2]),
) {
    let n = w.len();
    let g = &g[..n];
    match K {
        0 => {
            for i in 0..n {
                w[i] = f(w[i], g[i], [0.0; 2]).0;
            }
        }
        1 => {
            let s0 = &mut s0[..n];
            for i in 0..n {
                let (nw, ns) = f(w[i], g[i], [s0[i], 0.0]);
                w[i] = nw;
                s0[i] = ns[0];
            }
        }
        _ => {
            let (s0, s1) = (&mut s0[..n], &mut s1[..n]);
            for i in 0..n {
                let (nw, ns) = f(w[i], g[i], [s0[i], s1[i]]);
                w[i] = nw;
                s0[i] = ns[0];
                s1[i] = ns[1];
            }
        }
    }
}

/// Applies one update of `opt` to every element: `w[i], s0[i], s1[i] ← update(w[i], g[i], …)`.
/// `g` is the negative mean gradient (regularisation is applied inside with `h.lambda`,
/// `h.lambda1`). The state arrays must have `w.len()` elements when the rule uses them
/// ([`state_len`]: `s0` from 1, `s1` from 2) and may be empty otherwise. `t` is the 1-based
/// update count (Adam). Element-wise, so the result does not depend on `par`.
#[allow(clippy::too_many_arguments)]
pub fn optimizer_step(
    w: &mut [f32],
    g: &[f32],
    s0: &mut [f32],
    s1: &mut [f32],
    opt: Optimizer,
    h: &Hyper,
    t: u64,
    par: Par,
) -> Result<()> {
    let n = w.len();
    check_dim("optimizer step: gradient length", g.len(), n)?;
    let k = state_len(opt);
    check_dim(
        "optimizer step: state 0 length",
        s0.len(),
        if k >= 1 { n } else { s0.len() },
    )?;
    check_dim(
        "optimizer step: state 1 length",
        s1.len(),
        if k >= 2 { n } else { s1.len() },
    )?;
    let c = StepConsts::new(h, t);
    // One monomorphised loop per rule, so the per-element code has no branches on `opt` and
    // vectorises.
    let step = |w: &mut [f32], g: &[f32], s0: &mut [f32], s1: &mut [f32]| {
        macro_rules! rule {
            ($opt:expr, $k:literal) => {
                apply::<$k>(w, g, s0, s1, |w, g, s| update_step($opt, h, &c, w, g, s))
            };
        }
        match opt {
            Optimizer::Sgd => rule!(Optimizer::Sgd, 0),
            Optimizer::Momentum => rule!(Optimizer::Momentum, 1),
            Optimizer::Nesterov => rule!(Optimizer::Nesterov, 1),
            Optimizer::AdaGrad => rule!(Optimizer::AdaGrad, 1),
            Optimizer::RmsProp => rule!(Optimizer::RmsProp, 1),
            Optimizer::AdaDelta => rule!(Optimizer::AdaDelta, 2),
            Optimizer::Adam => rule!(Optimizer::Adam, 2),
        }
    };
    // Empty state arrays are split into empty chunks alongside `w`.
    fn split(s: &mut [f32], used: bool, n: usize) -> Vec<&mut [f32]> {
        if used {
            s.chunks_mut(STEP_CHUNK).collect()
        } else {
            (0..n.div_ceil(STEP_CHUNK)).map(|_| &mut [][..]).collect()
        }
    }
    let s0c = split(s0, k >= 1, n);
    let s1c = split(s1, k >= 2, n);
    let tasks = w
        .chunks_mut(STEP_CHUNK)
        .zip(g.chunks(STEP_CHUNK))
        .zip(s0c)
        .zip(s1c);
    if par.threads() <= 1 {
        tasks.for_each(|(((w, g), s0), s1)| step(w, g, s0, s1));
    } else {
        let tasks: Vec<_> = tasks.collect();
        tasks
            .into_par_iter()
            .for_each(|(((w, g), s0), s1)| step(w, g, s0, s1));
    }
    Ok(())
}
