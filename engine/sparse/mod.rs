//! Compressed sparse row (CSR) matrices: the structure (row offsets, column indices) kept apart
//! from the optional values.
//!
//! Row `r` holds the non-zeros `row_offsets[r]..row_offsets[r + 1]` of `col_indices` (and of
//! `values`, when present). A matrix without values is an *indicator* (boolean) matrix: every
//! stored entry is 1. Offsets are `u64` so that a dataset may hold more than 2³² non-zeros;
//! column indices are `u32` (DSSTNE's `sparseIndex` type).
//!
//! Constructors:
//! - [`Csr::try_new`] validates everything and returns an error naming what is wrong: use it
//!   for data that came from a user or a file.
//! - [`Csr::new_checked`] is for data the library built itself; it validates in debug builds.

use crate::error::{Error, Result};

/// An owned CSR matrix with optional `f32` values.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Csr {
    n_cols: u32,
    row_offsets: Vec<u64>,
    col_indices: Vec<u32>,
    values: Option<Vec<f32>>,
}

/// A borrowed CSR matrix (or a range of rows of one).
///
/// `row_offsets` are absolute positions into `col_indices`/`values`, so a view of rows
/// `a..b` shares the parent's index arrays; `row_offsets[0]` need not be 0.
#[derive(Clone, Copy, Debug)]
pub struct CsrView<'a> {
    n_cols: u32,
    row_offsets: &'a [u64],
    col_indices: &'a [u32],
    values: Option<&'a [f32]>,
}

/// Checks the CSR invariants listed on [`Csr::try_new`].
fn validate(
    n_cols: u32,
    row_offsets: &[u64],
    col_indices: &[u32],
    values: Option<&[f32]>,
) -> Result<()> {
    let Some(&first) = row_offsets.first() else {
        return Err(Error::InvalidData(
            "CSR row offsets are empty: expected n_rows + 1 entries".into(),
        ));
    };
    if first != 0 {
        return Err(Error::InvalidData(format!(
            "CSR row offsets start at {first}: expected 0"
        )));
    }
    for (row, pair) in row_offsets.windows(2).enumerate() {
        if pair[1] < pair[0] {
            return Err(Error::InvalidData(format!(
                "CSR row {row} ends at {} before it starts at {}",
                pair[1], pair[0]
            )));
        }
    }
    let nnz = *row_offsets.last().unwrap_or(&0);
    if nnz != col_indices.len() as u64 {
        return Err(Error::InvalidData(format!(
            "CSR row offsets end at {nnz} but there are {} column indices",
            col_indices.len()
        )));
    }
    if let Some(values) = values {
        if values.len() != col_indices.len() {
            return Err(Error::InvalidData(format!(
                "CSR has {} values for {} column indices",
                values.len(),
                col_indices.len()
            )));
        }
    }
    if let Some((pos, &col)) = col_indices.iter().enumerate().find(|(_, &c)| c >= n_cols) {
        return Err(Error::InvalidData(format!(
            "CSR column index {col} at position {pos} is out of range: the matrix has {n_cols} columns"
        )));
    }
    Ok(())
}

impl Csr {
    /// Builds a CSR matrix from user-supplied parts, checking every invariant:
    /// `row_offsets` has `n_rows + 1` non-decreasing entries starting at 0 and ending at
    /// `col_indices.len()`; every column index is `< n_cols`; `values`, if any, has one entry
    /// per column index.
    pub fn try_new(
        n_cols: u32,
        row_offsets: Vec<u64>,
        col_indices: Vec<u32>,
        values: Option<Vec<f32>>,
    ) -> Result<Self> {
        validate(n_cols, &row_offsets, &col_indices, values.as_deref())?;
        Ok(Csr {
            n_cols,
            row_offsets,
            col_indices,
            values,
        })
    }

    /// Builds a CSR matrix from parts the library constructed itself. The invariants of
    /// [`Csr::try_new`] are the caller's responsibility; they are checked in debug builds.
    pub fn new_checked(
        n_cols: u32,
        row_offsets: Vec<u64>,
        col_indices: Vec<u32>,
        values: Option<Vec<f32>>,
    ) -> Self {
        debug_assert!(
            validate(n_cols, &row_offsets, &col_indices, values.as_deref()).is_ok(),
            "internal CSR invariant violated"
        );
        Csr {
            n_cols,
            row_offsets,
            col_indices,
            values,
        }
    }

    /// An empty matrix with `n_cols` columns and no rows.
    pub fn empty(n_cols: u32, with_values: bool) -> Self {
        Csr {
            n_cols,
            row_offsets: vec![0],
            col_indices: Vec::new(),
            values: with_values.then(Vec::new),
        }
    }

    /// Number of rows.
    pub fn n_rows(&self) -> usize {
        self.row_offsets.len() - 1
    }

    /// Number of columns.
    pub fn n_cols(&self) -> u32 {
        self.n_cols
    }

    /// Number of stored entries.
    pub fn nnz(&self) -> usize {
        self.col_indices.len()
    }

    /// Row offsets (`n_rows + 1` entries).
    pub fn row_offsets(&self) -> &[u64] {
        &self.row_offsets
    }

    /// Column indices of all stored entries, row after row.
    pub fn col_indices(&self) -> &[u32] {
        &self.col_indices
    }

    /// Values of all stored entries, or `None` for an indicator matrix.
    pub fn values(&self) -> Option<&[f32]> {
        self.values.as_deref()
    }

    /// Changes the number of columns (e.g. to DSSTNE's width rounded up to 128).
    /// Fails if a stored column index would fall outside.
    pub fn set_n_cols(&mut self, n_cols: u32) -> Result<()> {
        if let Some(&max) = self.col_indices.iter().max() {
            if max >= n_cols {
                return Err(Error::InvalidData(format!(
                    "cannot set the width to {n_cols}: column {max} is in use"
                )));
            }
        }
        self.n_cols = n_cols;
        Ok(())
    }

    /// The matrix with each row scaled to unit L2 norm: `v / ‖row‖₂` (indicator rows: every
    /// entry `1/√nnz`). Empty rows and rows of zeros stay as they are. Norms are taken in `f64`.
    pub fn l2_normalized(&self) -> Csr {
        let mut values = Vec::with_capacity(self.nnz());
        for r in 0..self.n_rows() {
            let (cols, vals) = self.row(r);
            match vals {
                Some(v) => {
                    let norm = v.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt();
                    let scale = if norm > 0.0 { 1.0 / norm } else { 1.0 };
                    values.extend(v.iter().map(|&x| (x as f64 * scale) as f32));
                }
                None => {
                    let value = (1.0 / (cols.len() as f64).sqrt()) as f32;
                    values.extend(std::iter::repeat_n(value, cols.len()));
                }
            }
        }
        Csr {
            n_cols: self.n_cols,
            row_offsets: self.row_offsets.clone(),
            col_indices: self.col_indices.clone(),
            values: Some(values),
        }
    }

    /// Rows `range` as a matrix of their own (offsets re-based to 0).
    pub fn slice_rows(&self, range: std::ops::Range<usize>) -> Csr {
        let offsets = &self.row_offsets[range.start..=range.end];
        let (lo, hi) = (offsets[0] as usize, offsets[offsets.len() - 1] as usize);
        Csr::new_checked(
            self.n_cols,
            offsets.iter().map(|&o| o - lo as u64).collect(),
            self.col_indices[lo..hi].to_vec(),
            self.values.as_ref().map(|v| v[lo..hi].to_vec()),
        )
    }

    /// Consumes the matrix into its parts `(n_cols, row_offsets, col_indices, values)`.
    pub fn into_parts(self) -> (u32, Vec<u64>, Vec<u32>, Option<Vec<f32>>) {
        (self.n_cols, self.row_offsets, self.col_indices, self.values)
    }

    /// A view of the whole matrix.
    pub fn view(&self) -> CsrView<'_> {
        CsrView {
            n_cols: self.n_cols,
            row_offsets: &self.row_offsets,
            col_indices: &self.col_indices,
            values: self.values.as_deref(),
        }
    }

    /// The column indices and values (if any) of row `row`.
    ///
    /// Panics if `row >= n_rows()` (an internal indexing error, never user input).
    pub fn row(&self, row: usize) -> (&[u32], Option<&[f32]>) {
        self.view().row(row)
    }
}

impl<'a> CsrView<'a> {
    /// Number of rows.
    pub fn n_rows(&self) -> usize {
        self.row_offsets.len() - 1
    }

    /// Number of columns.
    pub fn n_cols(&self) -> u32 {
        self.n_cols
    }

    /// Number of stored entries in the rows of this view.
    pub fn nnz(&self) -> usize {
        (self.row_offsets[self.n_rows()] - self.row_offsets[0]) as usize
    }

    /// Absolute row offsets (`n_rows + 1` entries, first one not necessarily 0).
    pub fn row_offsets(&self) -> &'a [u64] {
        self.row_offsets
    }

    /// The column indices and values (if any) of row `row` of this view.
    pub fn row(&self, row: usize) -> (&'a [u32], Option<&'a [f32]>) {
        let start = self.row_offsets[row] as usize;
        let end = self.row_offsets[row + 1] as usize;
        (
            &self.col_indices[start..end],
            self.values.map(|v| &v[start..end]),
        )
    }

    /// Rows `start..end` of this view, sharing its storage.
    pub fn rows(&self, start: usize, end: usize) -> CsrView<'a> {
        CsrView {
            n_cols: self.n_cols,
            row_offsets: &self.row_offsets[start..=end],
            col_indices: self.col_indices,
            values: self.values,
        }
    }

    /// Whether the matrix carries values (`false`: indicator data, every entry is 1).
    pub fn has_values(&self) -> bool {
        self.values.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn try_new_accepts_valid_and_rows_are_sliced() {
        let m = Csr::try_new(
            4,
            vec![0, 2, 2, 3],
            vec![0, 3, 1],
            Some(vec![1.0, 2.0, 3.0]),
        )
        .unwrap();
        assert_eq!(m.n_rows(), 3);
        assert_eq!(m.nnz(), 3);
        assert_eq!(m.row(0), (&[0u32, 3][..], Some(&[1.0f32, 2.0][..])));
        assert_eq!(m.row(1).0.len(), 0);
        let tail = m.view().rows(1, 3);
        assert_eq!(tail.n_rows(), 2);
        assert_eq!(tail.nnz(), 1);
        assert_eq!(tail.row(1).0, &[1]);
    }

    #[test]
    fn try_new_rejects_each_broken_invariant() {
        type Case = (Vec<u64>, Vec<u32>, Option<Vec<f32>>, &'static str);
        let cases: Vec<Case> = vec![
            (vec![], vec![], None, "empty"),
            (vec![1, 1], vec![0], None, "start at 1"),
            (vec![0, 2, 1], vec![0, 1], None, "ends at 1 before"),
            (vec![0, 1], vec![0, 1], None, "2 column indices"),
            (vec![0, 1], vec![9], None, "out of range"),
            (vec![0, 1], vec![0], Some(vec![]), "0 values"),
        ];
        for (offsets, cols, values, expected) in cases {
            let err = Csr::try_new(4, offsets, cols, values)
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{err} should mention {expected}");
        }
    }

    #[test]
    fn l2_normalized_rows_have_unit_norm() {
        let m = Csr::try_new(
            4,
            vec![0, 2, 2, 4],
            vec![0, 3, 1, 2],
            Some(vec![3.0, 4.0, 0.0, 0.0]),
        )
        .unwrap();
        let n = m.l2_normalized();
        assert_eq!(n.values().unwrap(), &[0.6, 0.8, 0.0, 0.0]);
        let ind = Csr::try_new(4, vec![0, 4], vec![0, 1, 2, 3], None).unwrap();
        assert_eq!(ind.l2_normalized().values().unwrap(), &[0.5; 4]);
        assert_eq!(ind.l2_normalized().col_indices(), ind.col_indices());
    }

    #[test]
    fn set_n_cols_refuses_to_cut_used_columns() {
        let mut m = Csr::try_new(10, vec![0, 1], vec![7], None).unwrap();
        m.set_n_cols(128).unwrap();
        assert_eq!(m.n_cols(), 128);
        assert!(m.set_n_cols(7).is_err());
    }
}
