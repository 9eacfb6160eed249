//! Prediction: the prediction loop, top-K selection with exclusion filters, and ranking
//! metrics.
//!
//! - [`run`](mod@run): the prediction loop ([`run()`]): a trained network's forward pass batch by
//!   batch, the top-K of each example ([`PredictConfig`]) without its own input items
//!   ([`input_items`]) and with a per-example filter ([`FilterMode`]: exclude, or DSSTNE's
//!   multiply), a layer's activations, metrics against held-out items; each batch's results
//!   to a callback ([`PredictedBatch`]). The `predictor` CLI and the Python package call it.
//! - top-K selection ([`crate::topk`], re-exported here): exact top-K of score rows (one row
//!   with [`TopK`], a batch in parallel with [`top_k_batch`]) excluding each user's input
//!   items, and the global top-K from per-shard lists ([`merge_top_k`], [`merge_top_k_batch`]).
//! - [`metrics`]: P@K, Recall@K and NDCG@K over many users and several K at once
//!   ([`RankingMetrics`]), as defined in the project's evaluation protocol.
//! - [`recs`]: one user's recommendations as a line of DSSTNE's recs format, TSV or JSON
//!   lines ([`format_user`]).

pub mod metrics;
pub mod recs;
pub mod run;

pub use crate::topk::{
    merge_top_k, merge_top_k_batch, top_k_batch, ShardTopK, ShardTopKBatch, TopK, NO_ITEM,
};
pub use metrics::{AtK, RankingMetrics};
pub use recs::{format_user, RecsFormat};
pub use run::{
    exclusions, input_items, model_shapes, multiply, run, FilterMode, PredictConfig, PredictedBatch,
};
