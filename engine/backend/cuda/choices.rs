//! [`CudaChoices`]: optional paths of the CUDA backend that wait for their first GPU run.

#[cfg(doc)]
use crate::backend::Backend;

/// The environment variable that chooses the paths a backend starts with: `1` for
/// [`CudaChoices::all`], a comma-separated list of names ([`CudaChoices::NAMES`]) for those
/// alone (to measure each on its own), unset, empty or `0` for [`CudaChoices::default`].
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
    /// The name of each path, in field order.
    pub const NAMES: [&'static str; 4] = [
        "fused_output",
        "split_sparse_gradient",
        "spmm_quads",
        "pinned_uploads",
    ];

    fn flags(&mut self) -> [&mut bool; 4] {
        [
            &mut self.fused_output,
            &mut self.split_sparse_gradient,
            &mut self.spmm_quads,
            &mut self.pinned_uploads,
        ]
    }

    /// The names of the paths that are on.
    pub fn names_on(&self) -> Vec<&'static str> {
        let mut copy = *self;
        Self::NAMES
            .iter()
            .zip(copy.flags())
            .filter_map(|(&name, on)| on.then_some(name))
            .collect()
    }

    /// The paths `spec` names: `1` for all, a comma-separated list of names for those, empty
    /// or `0` for none. Errors ([`crate::Error::InvalidArgument`] naming
    /// [`NEW_KERNELS_ENV`]) on an unknown name, listing the known ones.
    pub fn parse(spec: &str) -> crate::Result<Self> {
        match spec.trim() {
            "1" => return Ok(Self::all()),
            "" | "0" => return Ok(Self::default()),
            _ => {}
        }
        let mut choices = Self::default();
        for name in spec.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let i = Self::NAMES.iter().position(|&n| n == name).ok_or_else(|| {
                crate::Error::invalid_argument(
                    NEW_KERNELS_ENV,
                    format!(
                        "`{name}` is not a CUDA path; the paths are {} (or 1 for all)",
                        Self::NAMES.join(", ")
                    ),
                )
            })?;
            *choices.flags()[i] = true;
        }
        Ok(choices)
    }

    /// What a new backend starts with: the paths [`NEW_KERNELS_ENV`] names
    /// ([`CudaChoices::parse`]), else [`CudaChoices::default`].
    pub fn from_environment() -> crate::Result<Self> {
        match std::env::var(NEW_KERNELS_ENV) {
            Ok(spec) => Self::parse(&spec),
            Err(_) => Ok(Self::default()),
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

#[cfg(test)]
mod tests {
    use super::CudaChoices;

    #[test]
    fn the_environment_names_all_some_or_no_paths() {
        assert_eq!(CudaChoices::parse("1").unwrap(), CudaChoices::all());
        assert_eq!(CudaChoices::parse("0").unwrap(), CudaChoices::default());
        assert_eq!(CudaChoices::parse("").unwrap(), CudaChoices::default());
        let two = CudaChoices::parse("spmm_quads, fused_output").unwrap();
        assert_eq!(two.names_on(), ["fused_output", "spmm_quads"]);
        for name in CudaChoices::NAMES {
            assert_eq!(CudaChoices::parse(name).unwrap().names_on(), [name]);
        }
        let e = CudaChoices::parse("fused_output,quads")
            .unwrap_err()
            .to_string();
        assert!(e.contains("`quads`") && e.contains("spmm_quads"), "{e}");
    }
}
