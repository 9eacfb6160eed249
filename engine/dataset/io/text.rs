//! DSSTNE's text format: one sample per line,
//! `sample<TAB>feature[,value]:feature[,value]:...`.
//!
//! Behaviour (DSSTNE's, except where noted):
//! - the line is split at the first TAB; entries are separated by `:`, a value follows `,`;
//! - empty lines, and empty entries or entries with an empty feature name, are skipped;
//! - a line without a TAB, or with an empty sample name (Moira), is skipped with a warning;
//! - an entry with more than one `,value` keeps the first, with a warning;
//! - a missing value is 0.0 (it matters only in analog mode); in indicator mode values are
//!   not parsed at all (DSSTNE parsed them and crashed on a non-number);
//! - a repeated sample replaces its earlier row, with a warning;
//! - features unknown to a fixed features index are dropped and counted.
//!
//! Fatal ([`Error::Parse`] naming `file:line`): invalid UTF-8; in analog mode, a value that is
//! empty, not a number, or not finite; a feature or sample name that cannot be stored in an
//! index file (containing TAB or CR). Unreadable files are [`Error::Io`].

use std::path::Path;

use memchr::memchr;

use super::lines::{for_each_line, input_files};
use super::rows::Rows;
use crate::error::{Error, Result};

/// Parses the text file `path`, or every file of the directory `path` in sorted order,
/// into `rows`. `progress` receives the bytes consumed.
pub fn read(path: &Path, rows: &mut Rows<'_>, progress: &mut dyn FnMut(u64)) -> Result<()> {
    for file in input_files(path)? {
        for_each_line(&file, progress, |line, line_no| {
            parse_line(rows, line, &file, line_no)
        })?;
    }
    rows.end_row();
    Ok(())
}

/// Parses an analog value: optional surrounding ASCII spaces, a finite decimal number.
#[inline]
pub(crate) fn parse_value(bytes: &[u8]) -> Option<f32> {
    let s = std::str::from_utf8(bytes).ok()?.trim_ascii();
    s.parse::<f32>().ok().filter(|v| v.is_finite())
}

/// Parses one line of the text format into `rows`.
fn parse_line(rows: &mut Rows<'_>, line: &[u8], file: &Path, line_no: u64) -> Result<()> {
    rows.stats.lines += 1;
    if line.is_empty() {
        return Ok(());
    }
    let Some(tab) = memchr(b'\t', line) else {
        rows.stats.skipped_lines += 1;
        tracing::warn!(
            "{}:{line_no}: no TAB after the sample name; line skipped",
            file.display()
        );
        return Ok(());
    };
    let sample = &line[..tab];
    if sample.is_empty() {
        rows.stats.skipped_lines += 1;
        tracing::warn!(
            "{}:{line_no}: empty sample name; line skipped",
            file.display()
        );
        return Ok(());
    }
    let at = |e: Error| Error::parse(file, line_no, e.to_string());
    if rows.begin_row(sample).map_err(at)? {
        tracing::warn!(
            "{}:{line_no}: sample `{}` appeared before; this row replaces the earlier one",
            file.display(),
            String::from_utf8_lossy(sample)
        );
    }
    for item in line[tab + 1..].split(|&b| b == b':') {
        let (label, rest) = match memchr(b',', item) {
            Some(c) => (&item[..c], Some(&item[c + 1..])),
            None => (item, None),
        };
        if label.is_empty() {
            continue;
        }
        let mut value = 0.0;
        if let Some(rest) = rest {
            let first = match memchr(b',', rest) {
                Some(c) => {
                    rows.stats.extra_values += 1;
                    tracing::warn!(
                        "{}:{line_no}: feature `{}` has more than one value; the first is kept",
                        file.display(),
                        String::from_utf8_lossy(label)
                    );
                    &rest[..c]
                }
                None => rest,
            };
            if rows.analog() {
                value = parse_value(first).ok_or_else(|| {
                    Error::parse(
                        file,
                        line_no,
                        format!(
                            "value `{}` of feature `{}` is not a finite number",
                            String::from_utf8_lossy(first),
                            String::from_utf8_lossy(label)
                        ),
                    )
                })?;
            }
        }
        rows.push(label, value).map_err(at)?;
    }
    rows.end_row();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::index::Index;
    use crate::dataset::io::rows::Repeat;

    fn parse(text: &str, analog: bool) -> Result<(crate::sparse::Csr, super::super::Stats, Index)> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("in.txt");
        std::fs::write(&p, text).unwrap();
        let (mut s, mut f) = (Index::new(), Index::new());
        let mut rows = Rows::new(&mut s, &mut f, true, analog, Repeat::Replace);
        read(&p, &mut rows, &mut |_| {})?;
        let (csr, stats) = rows.finish(16)?;
        Ok((csr, stats, f))
    }

    #[test]
    fn parses_dsstne_lines_with_their_quirks() {
        let text = "u1\ta,1.5:b:c,2,9\n\nnotab\nu2\t:b,0.5::\n\tx\nu1\tc,4\n";
        let (csr, stats, f) = parse(text, true).unwrap();
        assert_eq!(f.labels(), vec!["a", "b", "c"]);
        assert_eq!(csr.n_rows(), 2);
        assert_eq!(csr.row(0), (&[2u32][..], Some(&[4.0f32][..])));
        assert_eq!(csr.row(1), (&[1u32][..], Some(&[0.5f32][..])));
        assert_eq!(stats.lines, 6);
        assert_eq!(stats.skipped_lines, 2);
        assert_eq!(stats.extra_values, 1);
        assert_eq!(stats.duplicate_samples, 1);
    }

    #[test]
    fn indicator_mode_ignores_values() {
        let (csr, _, _) = parse("u\ta,zz:b\n", false).unwrap();
        assert_eq!(csr.row(0), (&[0u32, 1][..], None));
    }

    #[test]
    fn analog_errors_name_file_and_line() {
        for bad in ["u\ta,1\nv\tb,x\n", "u\ta,1\nv\tb,\n", "u\ta,1\nv\tb,inf\n"] {
            let err = parse(bad, true).unwrap_err().to_string();
            assert!(err.contains("in.txt:2: value"), "{err}");
        }
        let err = parse("u\ta\tb\n", true).unwrap_err().to_string();
        assert!(err.contains("in.txt:1:") && err.contains("TAB"), "{err}");
    }

    #[test]
    fn directories_are_read_in_sorted_order() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.txt"), "u2\ty\n").unwrap();
        std::fs::write(dir.path().join("a.txt"), "u1\tx\n").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let (mut s, mut f) = (Index::new(), Index::new());
        let mut rows = Rows::new(&mut s, &mut f, true, false, Repeat::Replace);
        read(dir.path(), &mut rows, &mut |_| {}).unwrap();
        rows.finish(2).unwrap();
        assert_eq!(s.labels(), vec!["u1", "u2"]);
        assert_eq!(f.labels(), vec!["x", "y"]);
    }
}
