//! The training log's table of a [`ShardPlan`]: per edge its split, the collectives of each
//! pass and the bytes they move.

use std::fmt;

use super::plan::{DataLayout, Layout};
use super::transfer::Transfer;
use super::ShardPlan;

impl ShardPlan {
    /// The table: one line per edge (sharding, rank 0's weight block, collectives), and, with
    /// `batch`, the busiest rank's bytes per minibatch forward and backward and a total line.
    pub fn table(&self, batch: Option<usize>) -> String {
        let mut header = vec![
            "edge",
            "in x out",
            "sharded by",
            "W on rank 0",
            "forward",
            "backward",
        ];
        if batch.is_some() {
            header.extend(["fwd bytes", "bwd bytes"]);
        }
        let mut rows: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
        let describe = |ts: &[Transfer]| -> String {
            ts.iter()
                .map(|t| {
                    let rows = if t.by_rows { " (by rows)" } else { "" };
                    format!("{} {} {}{rows}", t.kind, t.what, self.names[t.layer.0])
                })
                .collect::<Vec<_>>()
                .join("; ")
        };
        for e in &self.edges {
            let w = &self.weights[e.weight.0];
            let (r, c) = w.local_shape(0);
            let (r, c) = if e.transposed { (c, r) } else { (r, c) };
            // A replicated weight's gradient sum, counted with its owning edge.
            let owner = !e.transposed
                && w.replicated
                && self.edges[..e.edge.0].iter().all(|o| o.weight != e.weight);
            let mut backward = describe(&e.backward);
            let mut backward_bytes = batch.map_or(0, |b| e.backward_bytes(b));
            if owner {
                if !backward.is_empty() {
                    backward.push_str("; ");
                }
                backward.push_str("sum of the weight's gradients");
                backward_bytes += self.gradient_bytes(e.weight.0);
            }
            let mut row = vec![
                format!(
                    "{}->{}{}",
                    self.names[e.source.0],
                    self.names[e.target.0],
                    if e.transposed { " (shared, W^T)" } else { "" }
                ),
                format!("{}x{}", e.input_units, e.output_units),
                match e.replicated {
                    true => "replicated".to_owned(),
                    false => e.sharding.to_string(),
                },
                format!("{r}x{c}"),
                or_dash(describe(&e.forward)),
                or_dash(backward),
            ];
            if let Some(b) = batch {
                row.push(group(e.forward_bytes(b)));
                row.push(group(backward_bytes));
            }
            rows.push(row);
        }
        let mut out = format!(
            "shard plan: {} rank{}; units split evenly (the first N mod {} ranks get one more)\n",
            self.ranks,
            if self.ranks == 1 { "" } else { "s" },
            self.ranks
        );
        if self.splits_rows() {
            let named = |want: Layout| {
                let names: Vec<&str> = (0..self.names.len())
                    .filter(|&i| self.layouts[i] == want)
                    .map(|i| self.names[i].as_str())
                    .collect();
                or_dash(names.join(", "))
            };
            out.push_str(&format!(
                "layers split by units: {}; by examples (each rank its rows, all units): {}\n",
                named(Layout::Units),
                named(Layout::Rows)
            ));
        }
        for (id, layout) in &self.inputs {
            out.push_str(&format!(
                "input {}: {}\n",
                self.names[id.0],
                match layout {
                    DataLayout::Columns => "data split by column",
                    DataLayout::Replicated => "data rows replicated on every rank",
                }
            ));
        }
        out.push_str(&align(&rows));
        if let Some(b) = batch {
            let coupled = self.coupled_bytes(b);
            if coupled > 0 {
                out.push_str(&format!(
                    "rows gathered for batch normalisation and sparseness penalties: {} bytes\n",
                    group(coupled)
                ));
            }
            out.push_str(&format!(
                "per minibatch of {b} on the busiest rank: {} bytes; largest weight share {} parameters\n",
                group(self.step_bytes(b)),
                group(self.max_local_parameters())
            ));
        }
        out
    }
}

impl fmt::Display for ShardPlan {
    /// The [table](ShardPlan::table) without byte counts.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.table(None))
    }
}

fn or_dash(s: String) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        s
    }
}

/// `1234567` → `1,234,567`.
fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// Rows of cells as aligned columns, two spaces apart, one line each.
fn align(rows: &[Vec<String>]) -> String {
    let columns = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            line.push_str(&" ".repeat(widths[c] - cell.chars().count()));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grouping() {
        assert_eq!(group(0), "0");
        assert_eq!(group(1_048_576), "1,048,576");
        assert_eq!(group(999), "999");
    }
}
