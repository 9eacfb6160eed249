//! The trainer's model selection (`--select-by METRIC@K [--patience N]`): settles the
//! [`Selection`] from the flags, checks the best model file against `--force` and
//! `--resume`, and at the end renames the best epoch's model over the output.

use std::path::Path;

use anyhow::{bail, Result};
use moira::backend::Backend;
use moira::collective::Collective;
use moira::network::Network;
use moira::train::{self, Best, SelectBy, Selection, TrainState, Validation};

/// The selection the flags ask for (`None` without `--select-by`); the best model sits
/// beside `out` ([`Selection::beside`]). Errors: a malformed METRIC@K, `--patience` without
/// `--select-by`, a patience of 0.
pub fn selection(
    select_by: Option<&str>,
    patience: Option<u32>,
    out: &Path,
) -> Result<Option<Selection>> {
    let Some(text) = select_by else {
        if patience.is_some() {
            bail!("--patience needs --select-by METRIC@K (and --validation)");
        }
        return Ok(None);
    };
    let by: SelectBy = text.parse()?;
    if patience == Some(0) {
        bail!("--patience 0: expected at least 1 epoch without improvement");
    }
    Ok(Some(Selection {
        by,
        patience,
        best_model: Selection::beside(out),
    }))
}

/// Attaches `selection` to `validation` (adding its cutoff to the validation cutoffs), after
/// checking its best model file: a fresh run refuses an existing one without `force`; a run
/// resumed from `checkpoint` (with `state` and `epochs_done` from it) needs the one the
/// interrupted run kept ([`train::check_best_model`]). Collective: the outcome is agreed.
pub fn prepare<B: Backend, C: Collective>(
    network: &Network<B, C>,
    validation: &mut Validation,
    selection: Selection,
    checkpoint: Option<&Path>,
    state: &TrainState,
    epochs_done: u32,
    force: bool,
) -> Result<()> {
    let checked = match checkpoint {
        Some(c) => train::check_best_model(&selection, state.best, epochs_done, c),
        None if selection.best_model.exists() && !force => Err(moira::Error::InvalidData(format!(
            "{} exists (the best model of --select-by); pass --force to overwrite it",
            selection.best_model.display()
        ))),
        None => Ok(()),
    };
    network.agree(checked)?;
    if !validation.ks.contains(&selection.by.k) {
        validation.ks.push(selection.by.k);
    }
    validation.select = Some(selection);
    Ok(())
}

/// At the end of a run with `selection`: rank 0 renames the best epoch's model (`best`) over
/// `out` ([`train::keep_best`]) and logs the choice; `None` without a selection or a
/// selected epoch (the caller saves the network as usual). Every rank returns its outcome
/// (make it common with [`Network::agree`]).
pub fn finish<B: Backend, C: Collective>(
    network: &Network<B, C>,
    selection: Option<&Selection>,
    best: Option<Best>,
    out: &Path,
) -> Option<moira::Result<()>> {
    let (selection, best) = (selection?, best?);
    if !network.is_root() {
        return Some(Ok(()));
    }
    Some(train::keep_best(selection, best, out).map(|b| {
        tracing::info!(
            "kept epoch {} ({} {:.4} on the validation data): {}",
            b.epoch,
            selection.by,
            b.value,
            out.display()
        );
    }))
}
