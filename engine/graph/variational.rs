//! The checks of a variational bottleneck (descriptor `Variational`, a Moira extension): the
//! log-variance layer it names exists and is a Hidden layer of the same units, both layers are
//! plain Linear layers (no dropout, batch normalisation or sparseness penalty: the sample is
//! their only non-linearity), and nothing but the sampling reads the log-variance layer.

use std::collections::HashMap;

use crate::descriptor::json::suggest;
use crate::descriptor::{Descriptor, LayerKind};
use crate::error::Result;
use crate::ops::Activation;

use super::compile::Errors;
use super::{Layer, LayerId, VariationalLayer};

/// Per layer (descriptor index): the descriptor index of its log-variance layer, when it is
/// the mean of a variational bottleneck. Errors when the name is not a layer, is the layer
/// itself, or is named by two variational layers.
pub(super) fn resolve(
    d: &Descriptor,
    by_name: &HashMap<&str, usize>,
    err: &Errors<'_>,
) -> Result<Vec<Option<usize>>> {
    let mut named_by: HashMap<usize, usize> = HashMap::new();
    let mut out = vec![None; d.layers.len()];
    for (i, l) in d.layers.iter().enumerate() {
        let Some(v) = &l.variational else { continue };
        let name = v.log_variance.as_str();
        let Some(&lv) = by_name.get(name) else {
            let hint = suggest(name, by_name.keys().copied())
                .map(|s| format!("; did you mean `{s}`?"))
                .unwrap_or_default();
            return Err(err.at(
                &l.name,
                format!("Variational.LogVariance `{name}` is not a layer of the network{hint}"),
            ));
        };
        if lv == i {
            return Err(err.at(
                &l.name,
                "Variational.LogVariance names the layer itself; it must name another Hidden layer",
            ));
        }
        if let Some(other) = named_by.insert(lv, i) {
            return Err(err.at(
                &l.name,
                format!(
                    "log-variance layer `{name}` is already the log variance of `{}`",
                    d.layers[other].name
                ),
            ));
        }
        out[i] = Some(lv);
    }
    Ok(out)
}

/// Sets [`Layer::variational`] and [`Layer::log_variance_of`] (`layers` in topological order,
/// `id_of` maps descriptor indices to ids) and checks both layers of every bottleneck.
pub(super) fn attach(
    d: &Descriptor,
    layers: &mut [Layer],
    log_variance: &[Option<usize>],
    id_of: &[LayerId],
    err: &Errors<'_>,
) -> Result<()> {
    for (i, lv) in log_variance.iter().enumerate() {
        let Some(lv) = *lv else { continue };
        let (mean, var) = (id_of[i], id_of[lv]);
        let schedule = d.layers[i]
            .variational
            .clone()
            .expect("resolve found a Variational key");
        let (m, v) = (&layers[mean.0], &layers[var.0]);
        for layer in [m, v] {
            plain_linear(layer, err)?;
        }
        if v.units != m.units {
            return Err(err.at(
                &m.name,
                format!(
                    "log-variance layer `{}` has {} units but this layer has {}; they must match",
                    v.name, v.units, m.units
                ),
            ));
        }
        if v.variational.is_some() || d.layers[lv].variational.is_some() {
            return Err(err.at(&v.name, "a log-variance layer cannot itself be Variational"));
        }
        let readers: Vec<&str> = d
            .layers
            .iter()
            .filter(|o| {
                o.sources.iter().chain(&o.skips).any(|s| *s == v.name)
                    || o.shared_weights
                        .iter()
                        .any(|w| w.source_input_layer == v.name || w.source_output_layer == v.name)
            })
            .map(|o| o.name.as_str())
            .collect();
        if !readers.is_empty() {
            return Err(err.at(
                &v.name,
                format!(
                    "log-variance layer of `{}` is read by `{}`; only the sampling may read it \
                     (the mean layer `{}` carries the sample)",
                    m.name,
                    readers.join("`, `"),
                    m.name
                ),
            ));
        }
        layers[mean.0].variational = Some(VariationalLayer {
            log_variance: var,
            schedule,
        });
        layers[var.0].log_variance_of = Some(mean);
    }
    Ok(())
}

/// A layer of a variational bottleneck: Hidden, Linear, dense, without dropout, batch
/// normalisation or sparseness penalty.
fn plain_linear(l: &Layer, err: &Errors<'_>) -> Result<()> {
    let problem = if l.kind != LayerKind::Hidden {
        Some(format!("is {} {} layer", article(l.kind), l.kind))
    } else if l.activation != Activation::Linear {
        Some(format!("has activation {}", l.activation))
    } else if l.p_dropout > 0.0 {
        Some(format!("has pDropout {}", l.p_dropout))
    } else if l.batch_normalization {
        Some("has batch normalisation".to_string())
    } else if l.sparseness_penalty.is_some() || l.sparse {
        Some("is sparse or has a sparseness penalty".to_string())
    } else {
        None
    };
    match problem {
        Some(p) => Err(err.at(
            &l.name,
            format!(
                "a layer of a variational bottleneck must be a Hidden Linear layer without \
                 pDropout, BatchNormalization, Sparse or SparsenessPenalty; this one {p}"
            ),
        )),
        None => Ok(()),
    }
}

fn article(kind: LayerKind) -> &'static str {
    match kind {
        LayerKind::Input | LayerKind::Output => "an",
        _ => "a",
    }
}
