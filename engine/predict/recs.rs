//! Formatting recommendations: one user's ranked items as one output line.
//!
//! Three formats ([`RecsFormat`]):
//! - `recs`, DSSTNE's: `sample\tlabel,score:label,score:…:` (note the trailing `:`), one line
//!   per user;
//! - `tsv`: one `sample\trank\tlabel\tscore` line per item, ranks from 1;
//! - `jsonl`: `{"sample":…,"items":[{"label":…,"score":…},…]}`, one line per user.
//!
//! Scores are printed with a fixed number of decimals (DSSTNE's `%.3f` by default). Slots
//! without an item ([`NO_ITEM`](super::NO_ITEM), fewer eligible items than K) are skipped by
//! the caller passing only real items; a non-finite score is written as `nan`/`inf`/`-inf` in
//! the text formats and as `null` in JSON.

use std::fmt::Write as _;

use crate::error::{Error, Result};

/// The output format of a recommendations file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecsFormat {
    /// DSSTNE's `sample\tlabel,score:label,score:…:`.
    Recs,
    /// `sample\trank\tlabel\tscore`, one line per item.
    Tsv,
    /// One JSON object per user.
    Jsonl,
}

impl RecsFormat {
    /// Parses `recs`, `tsv` or `jsonl`.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "recs" => Some(RecsFormat::Recs),
            "tsv" => Some(RecsFormat::Tsv),
            "jsonl" => Some(RecsFormat::Jsonl),
            _ => None,
        }
    }
}

/// A score with `precision` decimals (`{:.p}`), as in the text formats.
fn push_score(out: &mut String, score: f32, precision: usize) {
    if score.is_finite() {
        let _ = write!(out, "{score:.precision$}");
    } else {
        let _ = write!(out, "{score}");
    }
}

/// Appends the line(s) of one user to `out`, each ending in `\n`: `sample`'s `items`
/// (label, score), best first. A user with no items still gets a line in `recs` and `jsonl`
/// (none in `tsv`).
pub fn format_user<'a>(
    out: &mut String,
    format: RecsFormat,
    sample: &str,
    items: impl IntoIterator<Item = (&'a str, f32)>,
    precision: usize,
) {
    match format {
        RecsFormat::Recs => {
            out.push_str(sample);
            out.push('\t');
            for (label, score) in items {
                out.push_str(label);
                out.push(',');
                push_score(out, score, precision);
                out.push(':');
            }
            out.push('\n');
        }
        RecsFormat::Tsv => {
            for (rank, (label, score)) in items.into_iter().enumerate() {
                let _ = write!(out, "{sample}\t{}\t{label}\t", rank + 1);
                push_score(out, score, precision);
                out.push('\n');
            }
        }
        RecsFormat::Jsonl => {
            out.push_str("{\"sample\":");
            out.push_str(&serde_json::Value::from(sample).to_string());
            out.push_str(",\"items\":[");
            for (i, (label, score)) in items.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str("{\"label\":");
                out.push_str(&serde_json::Value::from(label).to_string());
                out.push_str(",\"score\":");
                if score.is_finite() {
                    push_score(out, score, precision);
                } else {
                    out.push_str("null");
                }
                out.push('}');
            }
            out.push_str("]}\n");
        }
    }
}

/// Names for indices `0..n`: `labels[i]` where given, else the decimal index. Errors when
/// `labels` has more than `n` entries (an index file for other data), naming `what`.
pub fn names(labels: Option<Vec<String>>, n: usize, what: &str) -> Result<Vec<String>> {
    let mut names = labels.unwrap_or_default();
    if names.len() > n {
        return Err(Error::InvalidData(format!(
            "{what} has {} entries but the data has {n}: it belongs to other data",
            names.len()
        )));
    }
    let start = names.len();
    names.extend((start..n).map(|i| i.to_string()));
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(format: RecsFormat, items: &[(&str, f32)], p: usize) -> String {
        let mut s = String::new();
        format_user(&mut s, format, "u1", items.iter().copied(), p);
        s
    }

    #[test]
    fn recs_is_dsstnes_format_with_trailing_colon() {
        let items = [("i3", 0.98765), ("i10", 0.5), ("i2", 0.0)];
        assert_eq!(
            line(RecsFormat::Recs, &items, 3),
            "u1\ti3,0.988:i10,0.500:i2,0.000:\n"
        );
        assert_eq!(line(RecsFormat::Recs, &items[..1], 1), "u1\ti3,1.0:\n");
        assert_eq!(line(RecsFormat::Recs, &[], 3), "u1\t\n");
    }

    #[test]
    fn tsv_has_one_ranked_line_per_item() {
        let items = [("a", 0.25), ("b", 0.125)];
        assert_eq!(
            line(RecsFormat::Tsv, &items, 2),
            "u1\t1\ta\t0.25\nu1\t2\tb\t0.12\n"
        );
        assert_eq!(line(RecsFormat::Tsv, &[], 2), "");
    }

    #[test]
    fn jsonl_parses_and_escapes() {
        let mut s = String::new();
        let items = [("say \"hi\"", 0.5f32), ("x", f32::NAN)];
        format_user(&mut s, RecsFormat::Jsonl, "u\\1", items, 3);
        assert!(s.ends_with('\n') && s.matches('\n').count() == 1);
        let v: serde_json::Value = serde_json::from_str(s.trim_end()).unwrap();
        assert_eq!(v["sample"], "u\\1");
        assert_eq!(v["items"][0]["label"], "say \"hi\"");
        assert_eq!(v["items"][0]["score"].as_f64(), Some(0.5));
        assert!(v["items"][1]["score"].is_null());
        assert_eq!(
            line(RecsFormat::Jsonl, &[], 3),
            "{\"sample\":\"u1\",\"items\":[]}\n"
        );
    }

    #[test]
    fn non_finite_scores_in_text_formats() {
        let items = [("a", f32::NEG_INFINITY)];
        assert_eq!(line(RecsFormat::Recs, &items, 3), "u1\ta,-inf:\n");
    }

    #[test]
    fn format_names() {
        assert_eq!(RecsFormat::from_name("recs"), Some(RecsFormat::Recs));
        assert_eq!(RecsFormat::from_name("tsv"), Some(RecsFormat::Tsv));
        assert_eq!(RecsFormat::from_name("jsonl"), Some(RecsFormat::Jsonl));
        assert_eq!(RecsFormat::from_name("csv"), None);
    }

    #[test]
    fn names_fill_missing_labels_with_indices() {
        let n = names(Some(vec!["a".into(), "b".into()]), 4, "idx").unwrap();
        assert_eq!(n, ["a", "b", "2", "3"]);
        assert_eq!(names(None, 2, "idx").unwrap(), ["0", "1"]);
        let err = names(Some(vec!["a".into(); 3]), 2, "f.idx").unwrap_err();
        assert!(err.to_string().contains("f.idx"), "{err}");
    }
}
