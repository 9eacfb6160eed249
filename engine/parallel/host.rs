//! The cross-rank steps of a sharded [`Network`](crate::network::Network) pass, run on host
//! copies of device buffers: column gathers and reductions of activations and deltas,
//! SoftMax over a row split across ranks, the norms of `DeltaNorm` and `WeightNorm`, and the
//! re-layouts of a hybrid plan between a matrix split by columns (a layer's units) and by
//! rows (the examples).

use crate::backend::traits::{Backend, Mat, MatMut};
use crate::collective::{Collective, ReduceOp};
use crate::error::Result;
use crate::ops::norm;
use crate::parallel::exact::{
    all_gather_columns, reduce_scatter_columns, reduce_scatter_rows, sum_all,
};
use crate::parallel::{Layout, Split};

use std::cell::{Cell, RefCell};
use std::time::{Duration, Instant};

use crate::collective::pool::with_buffer;

thread_local! {
    /// Host copies of the blocks a collective step moves.
    static STAGING: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    /// The blocks of a re-layout as they travel.
    static RELAYOUT: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Where a rank's collective steps spend their time (for the training log): copying blocks
/// between the device and the host (on a GPU this includes waiting for the queued kernels),
/// and the exchange itself (fixed-point conversion and MPI).
#[derive(Debug, Default)]
pub(crate) struct Timers {
    pub staging: Cell<Duration>,
    pub exchange: Cell<Duration>,
}

impl Timers {
    pub(crate) fn add<T>(cell: &Cell<Duration>, f: impl FnOnce() -> T) -> T {
        let t = Instant::now();
        let out = f();
        cell.set(cell.get() + t.elapsed());
        out
    }

    /// `(staging, exchange)` seconds since the last call, then zero.
    pub fn take(&self) -> (f64, f64) {
        (
            self.staging.take().as_secs_f64(),
            self.exchange.take().as_secs_f64(),
        )
    }
}

/// One collective step through the host: downloads `src` (`src_len` values) into a staging
/// buffer, runs `exchange(downloaded, result)` (`dst_len` values out, every one written),
/// uploads the result to `dst`; the copies count as staging time, the exchange as exchange
/// time. Buffers that live in host memory (the CPU backend) are exchanged in place.
#[allow(clippy::too_many_arguments)]
fn through_host<B: Backend>(
    backend: &B,
    timers: &Timers,
    src: &B::Vector,
    src_len: usize,
    dst: &mut B::Vector,
    dst_len: usize,
    exchange: impl FnOnce(&[f32], &mut [f32]) -> Result<()>,
) -> Result<()> {
    // Buffers in host memory are exchanged in place.
    if let Some(from) = backend.host_slice(src).and_then(|s| s.get(..src_len)) {
        if let Some(to) = backend.host_values(dst).and_then(|d| d.get_mut(..dst_len)) {
            return Timers::add(&timers.exchange, || exchange(from, to));
        }
    }
    with_buffer(&STAGING, src_len + dst_len, |buf| {
        let (down, up) = buf.split_at_mut(src_len);
        Timers::add(&timers.staging, || backend.download(src, down))?;
        Timers::add(&timers.exchange, || exchange(down, up))?;
        Timers::add(&timers.staging, || backend.upload(dst, up))
    })
}

/// `dst` (`rows × split.total()`) ← the column blocks `src` (`rows × split.len(rank)`) of
/// every rank.
pub(crate) fn gather_columns<B: Backend, C: Collective>(
    backend: &B,
    comm: &C,
    timers: &Timers,
    src: &B::Vector,
    rows: usize,
    split: &Split,
    dst: &mut B::Vector,
) -> Result<()> {
    let (n_local, n_whole) = (rows * split.len(comm.rank()), rows * split.total());
    through_host(
        backend,
        timers,
        src,
        n_local,
        dst,
        n_whole,
        |local, whole| all_gather_columns(comm, local, rows, split, whole),
    )
}

/// `dst` (`rows × split.len(rank)`) ← this rank's columns of the sum over ranks of every
/// rank's `partial` (`rows × split.total()`).
pub(crate) fn reduce_columns<B: Backend, C: Collective>(
    backend: &B,
    comm: &C,
    timers: &Timers,
    partial: &B::Vector,
    rows: usize,
    split: &Split,
    dst: &mut B::Vector,
) -> Result<()> {
    let (n_local, n_whole) = (rows * split.len(comm.rank()), rows * split.total());
    through_host(
        backend,
        timers,
        partial,
        n_whole,
        dst,
        n_local,
        |whole, local| reduce_scatter_columns(comm, whole, rows, split, local),
    )
}

/// `out` (`rows.len(rank) × cols.total()`) ← this rank's rows of the matrix whose column
/// blocks the ranks hold in `units` (`rows.total() × cols.len(rank)`): an all-to-all.
#[allow(clippy::too_many_arguments)]
pub(crate) fn units_to_rows<B: Backend, C: Collective>(
    backend: &B,
    comm: &C,
    timers: &Timers,
    units: &B::Vector,
    rows: &Split,
    cols: &Split,
    out: &mut B::Vector,
) -> Result<()> {
    let (r, p, n) = (comm.rank(), comm.size(), cols.total());
    let (mine, width) = (rows.len(r), cols.len(r));
    let send_counts: Vec<usize> = (0..p).map(|q| rows.len(q) * width).collect();
    let recv_counts: Vec<usize> = (0..p).map(|q| mine * cols.len(q)).collect();
    through_host(
        backend,
        timers,
        units,
        rows.total() * width,
        out,
        mine * n,
        |local, whole_rows| {
            with_buffer(&RELAYOUT, mine * n, |recv| {
                // Rank q's rows of this rank's columns are contiguous: send the block as is.
                comm.all_to_all(local, &send_counts, recv, &recv_counts)?;
                let mut at = 0;
                for q in 0..p {
                    let range = cols.range(q);
                    for b in 0..mine {
                        let row = &mut whole_rows[b * n + range.start..b * n + range.end];
                        row.copy_from_slice(&recv[at..at + range.len()]);
                        at += range.len();
                    }
                }
                Ok(())
            })
        },
    )
}

/// `out` (`rows.total() × cols.len(rank)`) ← this rank's columns of the matrix whose rows the
/// ranks hold in `by_rows` (`rows.len(rank) × cols.total()`): the inverse of
/// [`units_to_rows`].
#[allow(clippy::too_many_arguments)]
pub(crate) fn rows_to_units<B: Backend, C: Collective>(
    backend: &B,
    comm: &C,
    timers: &Timers,
    by_rows: &B::Vector,
    rows: &Split,
    cols: &Split,
    out: &mut B::Vector,
) -> Result<()> {
    let (r, p, n) = (comm.rank(), comm.size(), cols.total());
    let (mine, width) = (rows.len(r), cols.len(r));
    let send_counts: Vec<usize> = (0..p).map(|q| mine * cols.len(q)).collect();
    let recv_counts: Vec<usize> = (0..p).map(|q| rows.len(q) * width).collect();
    through_host(
        backend,
        timers,
        by_rows,
        mine * n,
        out,
        rows.total() * width,
        |local, units| {
            with_buffer(&RELAYOUT, mine * n, |send| {
                // Rank q gets this rank's rows of its columns; the blocks received, in rank
                // order, are the rows in order.
                let mut at = 0;
                for q in 0..p {
                    let range = cols.range(q);
                    for b in 0..mine {
                        send[at..at + range.len()]
                            .copy_from_slice(&local[b * n + range.start..b * n + range.end]);
                        at += range.len();
                    }
                }
                comm.all_to_all(send, &send_counts, units, &recv_counts)
            })
        },
    )
}

/// `dst` ← `src` re-laid `into` the other layout: [`units_to_rows`] into
/// [`Layout::Rows`], [`rows_to_units`] into [`Layout::Units`] (`rows` the minibatch's split,
/// `cols` the units' split over the ranks).
#[allow(clippy::too_many_arguments)]
pub(crate) fn relay<B: Backend, C: Collective>(
    backend: &B,
    comm: &C,
    timers: &Timers,
    src: &B::Vector,
    (rows, cols): (&Split, &Split),
    into: Layout,
    dst: &mut B::Vector,
) -> Result<()> {
    match into {
        Layout::Rows => units_to_rows(backend, comm, timers, src, rows, cols, dst),
        Layout::Units => rows_to_units(backend, comm, timers, src, rows, cols, dst),
    }
}

/// `dst` (`rows.len(rank) × width`) ← this rank's rows of the sum over ranks of every rank's
/// `partial` (`rows.total() × width`), exact ([`reduce_scatter_rows`]).
pub(crate) fn reduce_rows<B: Backend, C: Collective>(
    backend: &B,
    comm: &C,
    timers: &Timers,
    partial: &B::Vector,
    rows: &Split,
    width: usize,
    dst: &mut B::Vector,
) -> Result<()> {
    let (whole, mine) = (rows.total() * width, rows.len(comm.rank()) * width);
    through_host(backend, timers, partial, whole, dst, mine, |all, local| {
        reduce_scatter_rows(comm, all, rows, width, local)
    })
}

/// SoftMax of each row of a layer whose columns are split over the ranks: `x` holds this
/// rank's `rows × cols` block of `z` and receives `a = exp(z − max) / Σ exp(z − max)`, the
/// maximum and the sum taken over the whole row (the maximum exactly, the sum in
/// [`sum_all`]'s fixed point). Three passes on the backend (`row_maxima`, `exp_shifted_rows`,
/// `scale_rows_exact`); only each row's maximum and sum cross the ranks. Equals
/// [`crate::ops::activation::softmax_row`] on one rank up to the rounding of the sum.
pub(crate) fn softmax_rows<B: Backend, C: Collective>(
    backend: &B,
    comm: &C,
    x: &mut B::Vector,
    rows: usize,
    cols: usize,
) -> Result<()> {
    let mut max = vec![f32::NEG_INFINITY; rows];
    backend.row_maxima(Mat::new(x, rows, cols), &mut max)?;
    comm.all_reduce(&mut max, ReduceOp::Max)?;
    let mut sums = vec![0.0f64; rows];
    backend.exp_shifted_rows(MatMut::new(x, rows, cols), &max, &mut sums)?;
    sum_all(comm, &mut sums)?;
    let inverses: Vec<f64> = sums.iter().map(|&s| 1.0 / s).collect();
    backend.scale_rows_exact(MatMut::new(x, rows, cols), &inverses)
}

/// `DeltaNorm` of a layer split by columns: every row whose L2 norm over all ranks' columns
/// exceeds `max_norm` is scaled to it ([`crate::ops::norm::clip_row_norms`]'s rule, the
/// squares summed across ranks).
pub(crate) fn clip_split_row_norms<B: Backend, C: Collective>(
    backend: &B,
    comm: &C,
    x: &mut B::Vector,
    rows: usize,
    cols: usize,
    max_norm: f32,
) -> Result<()> {
    let mut v = vec![0.0f32; rows * cols];
    backend.download(x, &mut v)?;
    let mut sq = norm::row_squares(&v, rows, cols);
    sum_all(comm, &mut sq)?;
    let factors: Vec<f32> = sq.iter().map(|&s| norm::clip_factor(s, max_norm)).collect();
    norm::scale_rows_by(&mut v, cols, &factors);
    backend.upload(x, &v)
}

/// `WeightNorm` of an input-sharded weight (each rank holds some rows of every column):
/// every column whose L2 norm over all ranks' rows exceeds `max_norm` is scaled to it
/// ([`crate::ops::norm::clip_column_norms`]'s rule, the squares summed across ranks).
pub(crate) fn clip_split_column_norms<B: Backend, C: Collective>(
    backend: &B,
    comm: &C,
    w: &mut B::Vector,
    rows: usize,
    cols: usize,
    max_norm: f32,
) -> Result<()> {
    let mut v = vec![0.0f32; rows * cols];
    backend.download(w, &mut v)?;
    let mut sq = norm::column_squares(&v, rows, cols);
    sum_all(comm, &mut sq)?;
    let factors: Vec<f32> = sq.iter().map(|&s| norm::clip_factor(s, max_norm)).collect();
    norm::scale_columns(&mut v, rows, cols, &factors);
    backend.upload(w, &v)
}

/// The targets of a SoftMax output's rows on this rank, for [`softmax_delta`].
pub(crate) enum SoftmaxTargets<'a> {
    /// Local columns with explicit values (indicator rows already turned into `1/nnz` of
    /// the whole row).
    Sparse(&'a crate::sparse::Csr, bool),
    /// Dense local targets, `rows × cols`.
    Dense(Vec<f32>),
}

/// The delta of a SoftMax output layer split by columns
/// ([`crate::ops::loss::LossSpec::softmax_row_delta`]'s rule, the row sums across ranks):
/// per unit `g = ∂L/∂a` (CrossEntropy: the target), then `δ_i = a_i·Σ_j t_j − t_i`
/// (CrossEntropy) or `δ_i = a_i·(g_i − Σ_j a_j g_j)`, the sums in [`sum_all`]'s fixed point.
#[allow(clippy::too_many_arguments)]
pub(crate) fn softmax_delta<B: Backend, C: Collective>(
    backend: &B,
    comm: &C,
    delta: &mut B::Vector,
    a: &B::Vector,
    rows: usize,
    cols: usize,
    targets: SoftmaxTargets<'_>,
    spec: &crate::ops::loss::LossSpec,
) -> Result<()> {
    use crate::ops::ErrorFunction;
    let ce = spec.error == ErrorFunction::CrossEntropy;
    let mut av = vec![0.0f32; rows * cols];
    backend.download(a, &mut av)?;
    let mut d = vec![0.0f32; rows * cols];
    for b in 0..rows {
        let (ar, dr) = (
            &av[b * cols..(b + 1) * cols],
            &mut d[b * cols..(b + 1) * cols],
        );
        match &targets {
            SoftmaxTargets::Sparse(csr, ignore_zero) => {
                if !(ce || *ignore_zero) {
                    for (d, &a) in dr.iter_mut().zip(ar) {
                        *d = spec.softmax_grad_a(a, 0.0);
                    }
                }
                let (c, v) = csr.view().row(b);
                for (k, &c) in c.iter().enumerate() {
                    let t = v.map_or(1.0, |v| v[k]);
                    let c = c as usize;
                    dr[c] = if ce { t } else { spec.softmax_grad_a(ar[c], t) };
                }
            }
            SoftmaxTargets::Dense(t) => {
                for ((d, &a), &t) in dr.iter_mut().zip(ar).zip(&t[b * cols..(b + 1) * cols]) {
                    *d = if ce { t } else { spec.softmax_grad_a(a, t) };
                }
            }
        }
    }
    let mut sums: Vec<f64> = (0..rows)
        .map(|b| {
            let (ar, dr) = (&av[b * cols..(b + 1) * cols], &d[b * cols..(b + 1) * cols]);
            if ce {
                dr.iter().map(|&t| t as f64).sum()
            } else {
                ar.iter().zip(dr).map(|(&a, &g)| a as f64 * g as f64).sum()
            }
        })
        .collect();
    sum_all(comm, &mut sums)?;
    for (b, &s) in sums.iter().enumerate() {
        let (ar, dr) = (
            &av[b * cols..(b + 1) * cols],
            &mut d[b * cols..(b + 1) * cols],
        );
        for (d, &a) in dr.iter_mut().zip(ar) {
            *d = if ce {
                (a as f64 * s - *d as f64) as f32
            } else {
                (a as f64 * (*d as f64 - s)) as f32
            };
        }
    }
    backend.upload(delta, &d)
}
