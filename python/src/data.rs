//! Python matrices as the engine's named datasets: `X` binds to the network's Input layers
//! and `y` to its Output layers by their `DataSet` names, as the trainer binds NetCDF
//! datasets.

use std::collections::HashMap;

use moira::dataset::Dataset;
use moira::descriptor::{Descriptor, LayerKind};
use moira::sparse::Csr;
use pyo3::prelude::*;

use crate::arrays::Parts;
use crate::errors::{invalid, IntoPy};

/// `X` or `y`: one matrix, or a dict `{DataSet name: matrix}` for a network with several
/// Input (or Output) layers.
#[derive(FromPyObject)]
pub enum Matrices<'py> {
    Named(HashMap<String, Parts<'py>>),
    One(Parts<'py>),
}

/// The distinct `DataSet` names of the layers of `kind`, in layer order.
fn names(d: &Descriptor, kind: LayerKind) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    for layer in d.layers.iter().filter(|l| l.kind == kind) {
        if let Some(name) = layer.dataset.as_deref().filter(|n| !out.contains(n)) {
            out.push(name);
        }
    }
    out
}

/// The named CSR matrices of `m` for the layers of `kind` of `d`; `what` (`X`, `y`) names
/// the argument in errors. A single matrix needs a network with one such dataset; a dict's
/// keys must be among the layers' `DataSet` names.
fn named(
    d: &Descriptor,
    kind: LayerKind,
    m: &Matrices<'_>,
    what: &str,
) -> PyResult<Vec<(String, Csr)>> {
    let wanted = names(d, kind);
    let layers = if kind == LayerKind::Input {
        "Input"
    } else {
        "Output"
    };
    match m {
        Matrices::One(parts) => match wanted.as_slice() {
            [name] => Ok(vec![(name.to_string(), parts.to_csr(what, true)?)]),
            _ => Err(invalid(
                what,
                format!(
                    "the network's {layers} layers read the datasets {wanted:?}: pass {what} \
                     as a dict {{dataset name: matrix}}"
                ),
            )),
        },
        Matrices::Named(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            keys.into_iter()
                .map(|name| {
                    if !wanted.contains(&name.as_str()) {
                        return Err(invalid(
                            what,
                            format!(
                                "no {layers} layer reads a dataset `{name}`; the network's \
                                 {layers} layers read {wanted:?}"
                            ),
                        ));
                    }
                    Ok((
                        name.clone(),
                        map[name].to_csr(&format!("{what}[{name:?}]"), true)?,
                    ))
                })
                .collect()
        }
    }
}

/// The input datasets of `x` for the network `d` (prediction).
pub fn inputs(d: &Descriptor, x: &Matrices<'_>) -> PyResult<Vec<Dataset>> {
    named(d, LayerKind::Input, x, "X")?
        .into_iter()
        .map(|(name, csr)| sparse(name, csr))
        .collect()
}

/// The input and target datasets of `x` and `y` for training `d`. `y = None`: an
/// autoencoder, each Output layer's dataset is `X` (a single matrix, or a dict of one).
pub fn training(
    d: &Descriptor,
    x: &Matrices<'_>,
    y: Option<&Matrices<'_>>,
) -> PyResult<Vec<Dataset>> {
    let mut sets = named(d, LayerKind::Input, x, "X")?;
    let targets = match y {
        Some(y) => named(d, LayerKind::Output, y, "y")?,
        None => {
            let [(_, csr)] = sets.as_slice() else {
                return Err(invalid(
                    "y",
                    "None (an autoencoder, X its own target) needs a single input matrix; pass y",
                ));
            };
            names(d, LayerKind::Output)
                .into_iter()
                .filter(|name| !sets.iter().any(|(n, _)| n == name))
                .map(|name| (name.to_owned(), csr.clone()))
                .collect()
        }
    };
    for (name, csr) in targets {
        if sets.iter().any(|(n, _)| *n == name) {
            return Err(invalid(
                "y",
                format!("dataset `{name}` is an input of the network: give it in X only"),
            ));
        }
        sets.push((name, csr));
    }
    sets.into_iter()
        .map(|(name, csr)| sparse(name, csr))
        .collect()
}

/// A one-dimensional sparse dataset (`[width]`) named `name`.
fn sparse(name: String, csr: Csr) -> PyResult<Dataset> {
    let width = csr.n_cols();
    Dataset::sparse(name, vec![width], csr).py()
}
