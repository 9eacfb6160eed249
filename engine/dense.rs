//! Row-major dense `f32` matrices: an owned [`Matrix`] and borrowed views
//! ([`MatrixRef`], [`MatrixMut`]).
//!
//! Element `(r, c)` lives at `data[r * cols + c]`: rows are contiguous and there is no
//! padding or stride. This is DSSTNE's layout for unit buffers (`[batch][stride]`) and for
//! weights (`[n_in][n_out]`).

use crate::error::{Error, Result};

/// An owned row-major matrix.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Matrix {
    rows: usize,
    cols: usize,
    data: Vec<f32>,
}

/// A borrowed, read-only row-major matrix.
#[derive(Clone, Copy, Debug)]
pub struct MatrixRef<'a> {
    rows: usize,
    cols: usize,
    data: &'a [f32],
}

/// A borrowed, mutable row-major matrix.
#[derive(Debug)]
pub struct MatrixMut<'a> {
    rows: usize,
    cols: usize,
    data: &'a mut [f32],
}

fn check_len(rows: usize, cols: usize, len: usize) -> Result<()> {
    match rows.checked_mul(cols) {
        Some(n) if n == len => Ok(()),
        _ => Err(Error::InvalidData(format!(
            "a {rows} x {cols} matrix needs {} values, got {len}",
            rows as u128 * cols as u128
        ))),
    }
}

impl Matrix {
    /// A `rows x cols` matrix of zeros.
    pub fn zeros(rows: usize, cols: usize) -> Self {
        Matrix {
            rows,
            cols,
            data: vec![0.0; rows * cols],
        }
    }

    /// A `rows x cols` matrix whose every element is `value`.
    pub fn filled(rows: usize, cols: usize, value: f32) -> Self {
        Matrix {
            rows,
            cols,
            data: vec![value; rows * cols],
        }
    }

    /// Wraps row-major `data`; fails unless `data.len() == rows * cols`.
    pub fn from_vec(rows: usize, cols: usize, data: Vec<f32>) -> Result<Self> {
        check_len(rows, cols, data.len())?;
        Ok(Matrix { rows, cols, data })
    }

    /// A matrix whose element `(r, c)` is `f(r, c)`.
    pub fn from_fn(rows: usize, cols: usize, mut f: impl FnMut(usize, usize) -> f32) -> Self {
        let mut data = Vec::with_capacity(rows * cols);
        for r in 0..rows {
            for c in 0..cols {
                data.push(f(r, c));
            }
        }
        Matrix { rows, cols, data }
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// All elements, row after row.
    pub fn data(&self) -> &[f32] {
        &self.data
    }

    /// All elements, row after row, mutably.
    pub fn data_mut(&mut self) -> &mut [f32] {
        &mut self.data
    }

    /// Consumes the matrix into its row-major data.
    pub fn into_vec(self) -> Vec<f32> {
        self.data
    }

    /// Element `(r, c)`; panics when out of range (an internal indexing error).
    pub fn get(&self, r: usize, c: usize) -> f32 {
        self.as_ref().get(r, c)
    }

    /// Row `r`; panics when out of range.
    pub fn row(&self, r: usize) -> &[f32] {
        &self.data[r * self.cols..(r + 1) * self.cols]
    }

    /// Row `r`, mutably; panics when out of range.
    pub fn row_mut(&mut self, r: usize) -> &mut [f32] {
        &mut self.data[r * self.cols..(r + 1) * self.cols]
    }

    /// A read-only view.
    pub fn as_ref(&self) -> MatrixRef<'_> {
        MatrixRef {
            rows: self.rows,
            cols: self.cols,
            data: &self.data,
        }
    }

    /// A mutable view.
    pub fn as_mut(&mut self) -> MatrixMut<'_> {
        MatrixMut {
            rows: self.rows,
            cols: self.cols,
            data: &mut self.data,
        }
    }

    /// The transpose, as a new matrix.
    pub fn transposed(&self) -> Matrix {
        Matrix::from_fn(self.cols, self.rows, |r, c| self.get(c, r))
    }
}

impl<'a> MatrixRef<'a> {
    /// Views row-major `data` as `rows x cols`; fails unless the length matches.
    pub fn new(rows: usize, cols: usize, data: &'a [f32]) -> Result<Self> {
        check_len(rows, cols, data.len())?;
        Ok(MatrixRef { rows, cols, data })
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// All elements, row after row.
    pub fn data(&self) -> &'a [f32] {
        self.data
    }

    /// Element `(r, c)`; panics when out of range.
    pub fn get(&self, r: usize, c: usize) -> f32 {
        assert!(c < self.cols, "column {c} out of range");
        self.data[r * self.cols + c]
    }

    /// Row `r`; panics when out of range.
    pub fn row(&self, r: usize) -> &'a [f32] {
        &self.data[r * self.cols..(r + 1) * self.cols]
    }

    /// Rows `start..end`, sharing the storage; panics when out of range.
    pub fn rows_range(&self, start: usize, end: usize) -> MatrixRef<'a> {
        MatrixRef {
            rows: end - start,
            cols: self.cols,
            data: &self.data[start * self.cols..end * self.cols],
        }
    }

    /// An owned copy.
    pub fn to_matrix(&self) -> Matrix {
        Matrix {
            rows: self.rows,
            cols: self.cols,
            data: self.data.to_vec(),
        }
    }
}

impl<'a> MatrixMut<'a> {
    /// Views row-major `data` as `rows x cols`; fails unless the length matches.
    pub fn new(rows: usize, cols: usize, data: &'a mut [f32]) -> Result<Self> {
        check_len(rows, cols, data.len())?;
        Ok(MatrixMut { rows, cols, data })
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// All elements, row after row.
    pub fn data(&self) -> &[f32] {
        self.data
    }

    /// All elements, row after row, mutably.
    pub fn data_mut(&mut self) -> &mut [f32] {
        self.data
    }

    /// Consumes the view into its mutable data slice.
    pub fn into_data(self) -> &'a mut [f32] {
        self.data
    }

    /// A read-only view of the same elements.
    pub fn as_ref(&self) -> MatrixRef<'_> {
        MatrixRef {
            rows: self.rows,
            cols: self.cols,
            data: self.data,
        }
    }

    /// A shorter-lived mutable view (to pass the view on without giving it away).
    pub fn reborrow(&mut self) -> MatrixMut<'_> {
        MatrixMut {
            rows: self.rows,
            cols: self.cols,
            data: self.data,
        }
    }

    /// Row `r`, mutably; panics when out of range.
    pub fn row_mut(&mut self, r: usize) -> &mut [f32] {
        &mut self.data[r * self.cols..(r + 1) * self.cols]
    }

    /// Sets every element to `value`.
    pub fn fill(&mut self, value: f32) {
        self.data.fill(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_row_major_and_lengths_are_checked() {
        let m = Matrix::from_vec(2, 3, vec![1., 2., 3., 4., 5., 6.]).unwrap();
        assert_eq!(m.get(1, 0), 4.0);
        assert_eq!(m.row(1), &[4., 5., 6.]);
        assert_eq!(m.transposed().row(2), &[3., 6.]);
        assert!(Matrix::from_vec(2, 3, vec![0.0; 5]).is_err());
        assert!(MatrixRef::new(usize::MAX, 2, &[]).is_err());
        let mut data = vec![0.0; 4];
        let mut v = MatrixMut::new(2, 2, &mut data).unwrap();
        v.row_mut(1)[0] = 7.0;
        assert_eq!(v.as_ref().rows_range(1, 2).get(0, 0), 7.0);
    }
}
