//! [`CudaChoices`]: optional paths of the CUDA backend that wait for their first GPU run.

#[cfg(doc)]
use crate::backend::Backend;

/// The environment variable that, set to `1`, makes every backend start with
/// [`CudaChoices::all`] (the default is [`CudaChoices::default`]).
pub const NEW_KERNELS_ENV: &str = "MOIRA_CUDA_NEW_KERNELS";

/// Optional paths of the backend, each giving the same bits as the path it replaces, and
/// each off by default until it has run on a GPU (benches/gpu/NOTES.md says which have): a
/// backend starts with all of them on when the environment sets `MOIRA_CUDA_NEW_KERNELS=1`
/// ([`NEW_KERNELS_ENV`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CudaChoices {
    /// [`Backend::sparse_output_forward`] for non-SoftMax outputs in one pass over the output
    /// (`output_zero_pass` in cuda/loss.cu: activation, zero-target deltas and loss terms)
    /// instead of the activation, loss and delta kernels one after the other.
    pub fused_output: bool,
    /// [`Backend::sparse_weight_gradient`] writes the rows of features absent from the batch
    /// (`dw ← β·dw`, or 0) in a bandwidth-bound pass of their own, four floats at a time
    /// (`sparse_gradient_absent_rows`; none at all when `β = 1`), and the fixed-point kernel
    /// visits only the present features.
    pub split_sparse_gradient: bool,
    /// [`Backend::spmm`] loads four columns of `W` at a time (`spmm_quads`) when the width is
    /// a multiple of four; each column's sum keeps its order.
    pub spmm_quads: bool,
    /// [`Backend::upload_sparse`] copies through a ring of pinned host buffers, so the host
    /// does not wait for the queued kernels (`staging.rs`).
    pub pinned_uploads: bool,
}

impl CudaChoices {
    /// The names of the paths that are on.
    pub fn names_on(&self) -> Vec<&'static str> {
        [
            (self.fused_output, "fused_output"),
            (self.split_sparse_gradient, "split_sparse_gradient"),
            (self.spmm_quads, "spmm_quads"),
            (self.pinned_uploads, "pinned_uploads"),
        ]
        .iter()
        .filter_map(|&(on, name)| on.then_some(name))
        .collect()
    }

    /// What a new backend starts with: [`CudaChoices::all`] when the environment sets
    /// `MOIRA_CUDA_NEW_KERNELS=1` ([`NEW_KERNELS_ENV`]), else [`CudaChoices::default`].
    pub fn from_environment() -> Self {
        if std::env::var_os(NEW_KERNELS_ENV).is_some_and(|v| v == "1") {
            Self::all()
        } else {
            Self::default()
        }
    }

    /// Every optional path on.
    pub fn all() -> Self {
        CudaChoices {
            fused_output: true,
            split_sparse_gradient: true,
            spmm_quads: true,
            pinned_uploads: true,
        }
    }
}
