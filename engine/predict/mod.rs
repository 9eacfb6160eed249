//! Prediction: top-K selection with exclusion filters, and ranking metrics.
//!
//! - [`topk`]: exact top-K of score rows (one row with [`TopK`], a batch in parallel with
//!   [`top_k_batch`]), excluding each user's input items.
//! - [`merge`]: the global top-K from per-shard lists, for model-parallel prediction
//!   ([`merge_top_k`], [`merge_top_k_batch`]).
//! - [`metrics`]: P@K, Recall@K and NDCG@K over many users and several K at once
//!   ([`RankingMetrics`]), as defined in the project's evaluation protocol.
//! - [`recs`]: one user's recommendations as a line of DSSTNE's recs format, TSV or JSON
//!   lines ([`format_user`]).

pub mod merge;
pub mod metrics;
pub mod recs;
pub mod topk;

pub use merge::{merge_top_k, merge_top_k_batch, ShardTopK, ShardTopKBatch};
pub use metrics::{AtK, RankingMetrics};
pub use recs::{format_user, RecsFormat};
pub use topk::{top_k_batch, TopK, NO_ITEM};
