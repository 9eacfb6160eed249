//! MovieLens-style ratings CSV: `userId,movieId,rating,timestamp`, one rating per line.
//!
//! Each line adds the entry `movieId` (feature) to the row of `userId` (sample); a user's
//! lines need not be adjacent (entries are appended in file order). The first line is a
//! header, and skipped, when its rating field is not a number. Empty lines are skipped.
//!
//! - [`ValueColumn`] chooses the value kept in analog mode (rating or timestamp; timestamps
//!   above 2^24 lose precision as `f32`). In indicator mode no value is kept.
//! - `min_rating` drops entries whose rating is below it (counted); a user none of whose
//!   ratings pass gets no row and no sample index entry.
//!
//! Fatal ([`Error::Parse`] naming `file:line`): a line with fewer than 3 fields (4 when the
//! timestamp is the value), an empty user or movie id, a rating (when it is used) or a
//! timestamp (when it is the value) that is not a finite number, invalid UTF-8.

use std::path::Path;

use super::lines::{for_each_line, input_files};
use super::rows::Rows;
use super::text::parse_value;
use crate::error::{Error, Result};

/// Which CSV column becomes the value of an entry in analog mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ValueColumn {
    /// The rating (third column).
    #[default]
    Rating,
    /// The timestamp (fourth column), as `f32`.
    Timestamp,
    /// No value: the data is boolean whatever the mode.
    None,
}

/// Options of the CSV reader.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CsvOptions {
    /// The value kept in analog mode.
    pub value_column: ValueColumn,
    /// Entries with a rating below this are dropped.
    pub min_rating: Option<f32>,
}

/// Parses the ratings CSV `path` (or every file of the directory `path`, in sorted order,
/// each with its own optional header) into `rows`, which should use `Repeat::Append`.
pub fn read(
    path: &Path,
    rows: &mut Rows<'_>,
    options: &CsvOptions,
    progress: &mut dyn FnMut(u64),
) -> Result<()> {
    let mut current: Vec<u8> = Vec::new();
    for file in input_files(path)? {
        let mut first = true;
        for_each_line(&file, progress, |line, line_no| {
            rows.stats.lines += 1;
            if line.is_empty() {
                return Ok(());
            }
            let header = std::mem::replace(&mut first, false);
            parse_line(rows, line, &file, line_no, options, header, &mut current)
        })?;
    }
    rows.end_row();
    Ok(())
}

fn parse_line(
    rows: &mut Rows<'_>,
    line: &[u8],
    file: &Path,
    line_no: u64,
    options: &CsvOptions,
    may_be_header: bool,
    current: &mut Vec<u8>,
) -> Result<()> {
    let bad = |msg: String| Error::parse(file, line_no, msg);
    let mut fields = line.splitn(5, |&b| b == b',');
    let (Some(user), Some(item), Some(rating)) = (fields.next(), fields.next(), fields.next())
    else {
        return Err(bad(
            "expected `userId,movieId,rating[,timestamp]`: fewer than 3 fields".into(),
        ));
    };
    let timestamp = fields.next();
    if may_be_header && parse_value(rating).is_none() {
        return Ok(());
    }
    if user.is_empty() || item.is_empty() {
        return Err(bad("empty user or movie id".into()));
    }
    let number = |what: &str, bytes: &[u8]| {
        parse_value(bytes).ok_or_else(|| {
            bad(format!(
                "{what} `{}` is not a finite number",
                String::from_utf8_lossy(bytes)
            ))
        })
    };
    if let Some(min) = options.min_rating {
        if number("rating", rating)? < min {
            rows.stats.below_min_rating += 1;
            return Ok(());
        }
    }
    let value = if !rows.analog() {
        0.0
    } else {
        match options.value_column {
            ValueColumn::Rating => number("rating", rating)?,
            ValueColumn::None => 1.0,
            ValueColumn::Timestamp => {
                let t = timestamp.ok_or_else(|| {
                    bad("the timestamp is the value but the line has no 4th field".into())
                })?;
                let s = std::str::from_utf8(t).unwrap_or("").trim_ascii();
                s.parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite())
                    .ok_or_else(|| bad(format!("timestamp `{s}` is not a finite number")))?
                    as f32
            }
        }
    };
    let at = |e: Error| Error::parse(file, line_no, e.to_string());
    if rows.open_sample().is_none() || current.as_slice() != user {
        rows.begin_row(user).map_err(at)?;
        current.clear();
        current.extend_from_slice(user);
    }
    rows.push(item, value).map_err(at)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::index::Index;
    use crate::dataset::io::rows::Repeat;

    fn parse(text: &str, analog: bool, options: CsvOptions) -> Result<(crate::sparse::Csr, Index)> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.csv");
        std::fs::write(&p, text).unwrap();
        let (mut s, mut f) = (Index::new(), Index::new());
        let mut rows = Rows::new(&mut s, &mut f, true, analog, Repeat::Append);
        read(&p, &mut rows, &options, &mut |_| {})?;
        Ok((rows.finish(8)?.0, s))
    }

    const CSV: &str = "userId,movieId,rating,timestamp\n1,10,4.0,100\n1,20,2.5,101\n\n2,10,5.0,102\n1,30,3.0,103\n";

    #[test]
    fn ratings_group_by_user_and_filter() {
        let (csr, s) = parse(CSV, true, CsvOptions::default()).unwrap();
        assert_eq!(s.labels(), vec!["1", "2"]);
        assert_eq!(
            csr.row(0),
            (&[0u32, 1, 2][..], Some(&[4.0f32, 2.5, 3.0][..]))
        );
        assert_eq!(csr.row(1), (&[0u32][..], Some(&[5.0f32][..])));
        let opts = CsvOptions {
            value_column: ValueColumn::Timestamp,
            min_rating: Some(3.0),
        };
        let (csr, _) = parse(CSV, true, opts).unwrap();
        assert_eq!(csr.row(0), (&[0u32, 1][..], Some(&[100.0f32, 103.0][..])));
        let (csr, _) = parse(CSV, false, opts).unwrap();
        assert_eq!((csr.nnz(), csr.values()), (3, None));
    }

    #[test]
    fn headerless_files_keep_their_first_line() {
        let (csr, _) = parse("7,1,1.0,0\n", false, CsvOptions::default()).unwrap();
        assert_eq!(csr.nnz(), 1);
    }

    #[test]
    fn malformed_lines_are_fatal_with_file_and_line() {
        for (text, what) in [
            ("1,2,3\n1,2\n", "r.csv:2: expected"),
            ("1,2,3\n1,2,x\n", "r.csv:2: rating `x`"),
            ("1,2,3\n,2,3\n", "r.csv:2: empty user"),
        ] {
            let err = parse(text, true, CsvOptions::default())
                .unwrap_err()
                .to_string();
            assert!(err.contains(what), "{err}");
        }
        let opts = CsvOptions {
            value_column: ValueColumn::Timestamp,
            min_rating: None,
        };
        let err = parse("1,2,3\n", true, opts).unwrap_err().to_string();
        assert!(err.contains("r.csv:1: the timestamp"), "{err}");
    }
}
