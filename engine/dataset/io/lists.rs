//! Interaction lists: one line per user, `user item item ...`, separated by spaces or TABs
//! (the LightGCN data layout). Boolean data: every listed item is an entry of the user's row.
//!
//! Empty lines are skipped; a line with a user and no items gives the user an empty row; a
//! user on several lines gets the items of all of them, in file order. Fatal: invalid UTF-8
//! ([`Error::Parse`] naming `file:line`), unreadable files.

use std::path::Path;

use super::lines::{for_each_line, input_files};
use super::rows::Rows;
use crate::error::{Error, Result};

/// Parses the lists file `path` (or every file of the directory `path`, in sorted order)
/// into `rows`, which should use `Repeat::Append`. Entries get the value 1.
pub fn read(path: &Path, rows: &mut Rows<'_>, progress: &mut dyn FnMut(u64)) -> Result<()> {
    for file in input_files(path)? {
        for_each_line(&file, progress, |line, line_no| {
            rows.stats.lines += 1;
            let mut tokens = line
                .split(|&b| b == b' ' || b == b'\t')
                .filter(|t| !t.is_empty());
            let Some(user) = tokens.next() else {
                return Ok(());
            };
            let at = |e: Error| Error::parse(&file, line_no, e.to_string());
            rows.begin_row(user).map_err(at)?;
            for item in tokens {
                rows.push(item, 1.0).map_err(at)?;
            }
            rows.end_row();
            Ok(())
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::index::Index;
    use crate::dataset::io::rows::Repeat;

    #[test]
    fn users_and_items_become_rows() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("train.txt");
        std::fs::write(&p, "0 5 6\n\n1\t6  7 \n2\n0 8\n").unwrap();
        let (mut s, mut f) = (Index::new(), Index::new());
        let mut rows = Rows::new(&mut s, &mut f, true, false, Repeat::Append);
        read(&p, &mut rows, &mut |_| {}).unwrap();
        let (csr, stats) = rows.finish(4).unwrap();
        assert_eq!(f.labels(), vec!["5", "6", "7", "8"]);
        assert_eq!(csr.n_rows(), 3);
        assert_eq!(csr.row(0).0, &[0, 1, 3]);
        assert_eq!(csr.row(1).0, &[1, 2]);
        assert_eq!(csr.row(2).0, &[] as &[u32]);
        assert_eq!((stats.lines, stats.entries), (5, 5));
    }
}
