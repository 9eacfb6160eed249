//! The printable layer table of a graph.

use super::Graph;

/// One line per layer, in topological order, columns aligned:
/// `#  name  kind  dims  units  activation  sparse  dropout  dataset  sources  skips`.
pub(super) fn layer_table(g: &Graph) -> String {
    let header = [
        "#",
        "name",
        "kind",
        "dims",
        "units",
        "activation",
        "sparse",
        "dropout",
        "dataset",
        "sources",
        "skips",
    ];
    let names = |ids: &[super::LayerId]| -> String {
        if ids.is_empty() {
            "-".to_owned()
        } else {
            ids.iter()
                .map(|&id| g.layer(id).name.as_str())
                .collect::<Vec<_>>()
                .join(",")
        }
    };
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    for l in g.layers() {
        let dims: Vec<String> = l.dims.iter().map(u32::to_string).collect();
        let activation = match &l.variational {
            _ if l.kind == crate::descriptor::LayerKind::Input => "-".to_owned(),
            // The mean of a variational bottleneck: sampled while training.
            Some(v) => format!(
                "{}, sampled (log variance {})",
                l.activation,
                g.layer(v.log_variance).name
            ),
            None => l.activation.to_string(),
        };
        rows.push(vec![
            l.id.0.to_string(),
            l.name.clone(),
            l.kind.to_string(),
            dims.join("x"),
            l.units.to_string(),
            activation,
            if l.sparse { "yes" } else { "no" }.to_owned(),
            if l.p_dropout > 0.0 {
                l.p_dropout.to_string()
            } else {
                "-".to_owned()
            },
            l.dataset.clone().unwrap_or_else(|| "-".to_owned()),
            names(&l.sources),
            names(&l.skips),
        ]);
    }
    let columns = header.len();
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            if c + 1 < columns {
                line.push_str(&" ".repeat(widths[c] - cell.chars().count()));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
