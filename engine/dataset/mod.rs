//! Datasets in DSSTNE's model: a named matrix of examples, sparse (CSR, never densified) or
//! dense, boolean (indicator) or analog, optionally weighted per example and optionally
//! indexed (several examples sharing one stored row).
//!
//! - [`io::netcdf`] reads and writes DSSTNE's NetCDF dataset schema (several datasets per file).
//! - [`io::text`], [`io::csv`] and [`io::lists`] parse text inputs into rows.
//! - [`index`] holds the `label\tindex` feature and sample index files.
//! - [`convert`] is DSSTNE's `generateNetCDF` pipeline as a library function.
//!
//! Contract of a [`Dataset`]: its data has `unique_examples()` rows of
//! `width · height · length` columns each (the *stride*). Without an index, every row is an
//! example; with one, example `i` uses row `index[i]`. Sparse data is boolean exactly when the
//! CSR carries no values.

pub mod convert;
pub mod index;
pub mod io;

use crate::error::{Error, Result};
use crate::sparse::Csr;

/// DSSTNE's dataset attribute bitmask (`NNDataSetEnums::Attributes`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Attributes(pub u32);

impl Attributes {
    pub const SPARSE: u32 = 1;
    pub const BOOLEAN: u32 = 2;
    pub const COMPRESSED: u32 = 4;
    pub const RECURRENT: u32 = 8;
    pub const MUTABLE: u32 = 16;
    pub const SPARSE_IGNORE_ZERO: u32 = 32;
    pub const INDEXED: u32 = 64;
    pub const WEIGHTED: u32 = 128;
    /// The bits whose meaning follows from the data itself (set by [`Dataset::attributes`]).
    pub const STRUCTURAL: u32 = Self::SPARSE | Self::BOOLEAN | Self::INDEXED | Self::WEIGHTED;
    /// Every bit DSSTNE defines.
    pub const ALL: u32 = 255;

    /// Whether every bit of `mask` is set.
    pub fn contains(self, mask: u32) -> bool {
        self.0 & mask == mask
    }
}

/// DSSTNE's dataset kind (`NNDataSetEnums::Kind`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Kind {
    #[default]
    Numeric = 0,
    Image = 1,
    Audio = 2,
}

impl Kind {
    /// The kind with DSSTNE's numeric value `v`.
    pub fn from_u32(v: u32) -> Option<Self> {
        [Kind::Numeric, Kind::Image, Kind::Audio]
            .into_iter()
            .find(|k| *k as u32 == v)
    }
}

/// DSSTNE's element type (`NNDataSetEnums::DataType`): the type values have in a file.
/// In memory, values are always `f32` (UChar/RGB8 scaled by 1/256 and Char by 1/128 on load,
/// as DSSTNE's input kernels do).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum DataType {
    #[default]
    UInt = 0,
    Int = 1,
    LLInt = 2,
    ULLInt = 3,
    Float = 4,
    Double = 5,
    RGB8 = 6,
    RGB16 = 7,
    UChar = 8,
    Char = 9,
}

impl DataType {
    /// The type with DSSTNE's numeric value `v`.
    pub fn from_u32(v: u32) -> Option<Self> {
        use DataType::*;
        [
            UInt, Int, LLInt, ULLInt, Float, Double, RGB8, RGB16, UChar, Char,
        ]
        .into_iter()
        .find(|t| *t as u32 == v)
    }

    /// The factor DSSTNE applies to stored values of this type when loading them
    /// (1/256 for UChar and RGB8, 1/128 for Char, 1 otherwise).
    pub fn load_scale(self) -> f32 {
        match self {
            DataType::UChar | DataType::RGB8 => 1.0 / 256.0,
            DataType::Char => 1.0 / 128.0,
            _ => 1.0,
        }
    }
}

/// The stored rows of a dataset.
#[derive(Clone, Debug, PartialEq)]
pub enum Data {
    /// Sparse rows; `n_cols` equals the stride. No values: boolean (indicator) data.
    Sparse(Csr),
    /// Dense rows, row-major, `rows · stride` values. `one_hot` marks DSSTNE's Dense+Boolean
    /// data (stored in files as one hot index per row; each row here holds a single 1).
    Dense { values: Vec<f32>, one_hot: bool },
}

/// One dataset: see the module documentation for the contract.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    name: String,
    extra_attributes: u32,
    kind: Kind,
    data_type: DataType,
    dims: Vec<u32>,
    data: Data,
    rows: usize,
    weights: Option<Vec<f32>>,
    index: Option<Vec<u32>>,
}

/// Checks the dimensions (1 to 3 of them, none zero) and returns the stride.
fn stride_of(dims: &[u32]) -> Result<u64> {
    if dims.is_empty() || dims.len() > 3 {
        return Err(Error::InvalidData(format!(
            "a dataset has 1 to 3 dimensions, not {}",
            dims.len()
        )));
    }
    if dims.contains(&0) {
        return Err(Error::InvalidData(format!(
            "dataset dimensions {dims:?} contain a zero"
        )));
    }
    Ok(dims.iter().map(|&d| d as u64).product())
}

impl Dataset {
    /// A sparse dataset of `csr.n_rows()` examples with dimensions `dims` (width[, height[,
    /// length]]). `csr.n_cols()` must equal the product of `dims`. Boolean when `csr` has no
    /// values; its data type is then UInt (as `generateNetCDF` writes), otherwise Float.
    pub fn sparse(name: impl Into<String>, dims: Vec<u32>, csr: Csr) -> Result<Self> {
        let stride = stride_of(&dims)?;
        if stride != csr.n_cols() as u64 {
            return Err(Error::InvalidData(format!(
                "sparse data has {} columns but dimensions {dims:?} need {stride}",
                csr.n_cols()
            )));
        }
        let data_type = if csr.values().is_some() {
            DataType::Float
        } else {
            DataType::UInt
        };
        Ok(Dataset {
            name: name.into(),
            extra_attributes: 0,
            kind: Kind::Numeric,
            data_type,
            dims,
            rows: csr.n_rows(),
            data: Data::Sparse(csr),
            weights: None,
            index: None,
        })
    }

    /// A dense analog dataset: `values` holds `rows · stride` values, row-major.
    pub fn dense(name: impl Into<String>, dims: Vec<u32>, values: Vec<f32>) -> Result<Self> {
        let stride = stride_of(&dims)?;
        if !(values.len() as u64).is_multiple_of(stride) {
            return Err(Error::InvalidData(format!(
                "{} dense values are not a whole number of rows of {stride}",
                values.len()
            )));
        }
        Ok(Dataset {
            name: name.into(),
            extra_attributes: 0,
            kind: Kind::Numeric,
            data_type: DataType::Float,
            dims,
            rows: (values.len() as u64 / stride) as usize,
            data: Data::Dense {
                values,
                one_hot: false,
            },
            weights: None,
            index: None,
        })
    }

    /// A dense boolean (one-hot) dataset: row `r` has a single 1 at column `hot[r]`.
    /// Expanded to dense rows, as DSSTNE does on load.
    pub fn one_hot(name: impl Into<String>, dims: Vec<u32>, hot: &[u32]) -> Result<Self> {
        let stride = stride_of(&dims)?;
        let total = stride
            .checked_mul(hot.len() as u64)
            .filter(|&t| t <= isize::MAX as u64 / 4)
            .ok_or_else(|| Error::InvalidData("one-hot dataset too large".into()))?;
        let mut values = vec![0.0f32; total as usize];
        for (row, &h) in hot.iter().enumerate() {
            if h as u64 >= stride {
                return Err(Error::InvalidData(format!(
                    "one-hot row {row} has index {h}, outside the stride {stride}"
                )));
            }
            values[row * stride as usize + h as usize] = 1.0;
        }
        let mut ds = Dataset::dense(name, dims, values)?;
        ds.data_type = DataType::UInt;
        if let Data::Dense { one_hot, .. } = &mut ds.data {
            *one_hot = true;
        }
        Ok(ds)
    }

    /// Adds per-example weights (DSSTNE `dataWeightN`; sets the Weighted attribute).
    /// There must be one weight per example.
    pub fn with_weights(mut self, weights: Vec<f32>) -> Result<Self> {
        if weights.len() != self.examples() {
            return Err(Error::InvalidData(format!(
                "{} weights for {} examples",
                weights.len(),
                self.examples()
            )));
        }
        self.weights = Some(weights);
        Ok(self)
    }

    /// Makes the dataset indexed (DSSTNE `indexN`; sets the Indexed attribute): example `i`
    /// uses row `index[i]`. Every entry must be a valid row; weights already set must have one
    /// entry per index entry (set the index first).
    pub fn with_index(mut self, index: Vec<u32>) -> Result<Self> {
        if let Some((i, &r)) = index
            .iter()
            .enumerate()
            .find(|(_, &r)| r as usize >= self.rows)
        {
            return Err(Error::InvalidData(format!(
                "index entry {i} points at row {r}, but there are {} rows",
                self.rows
            )));
        }
        if let Some(w) = self.weights.as_ref().filter(|w| w.len() != index.len()) {
            return Err(Error::InvalidData(format!(
                "{} weights for {} indexed examples",
                w.len(),
                index.len()
            )));
        }
        self.index = Some(index);
        Ok(self)
    }

    /// Sets the attribute bits that do not follow from the data (Compressed, Recurrent,
    /// Mutable, SparseIgnoreZero); the structural bits of `bits` are ignored.
    pub fn with_extra_attributes(mut self, bits: u32) -> Self {
        self.extra_attributes = bits & Attributes::ALL & !Attributes::STRUCTURAL;
        self
    }

    /// Sets the kind (DSSTNE stores it; Moira only uses Numeric data).
    pub fn with_kind(mut self, kind: Kind) -> Self {
        self.kind = kind;
        self
    }

    /// Records the element type the values had in their file (see [`DataType`]).
    pub fn with_data_type(mut self, data_type: DataType) -> Self {
        self.data_type = data_type;
        self
    }

    /// Renames the dataset.
    pub fn set_name(&mut self, name: impl Into<String>) {
        self.name = name.into();
    }

    /// The dataset's name (matched against a layer's `DataSet`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The full DSSTNE attribute bitmask: the structural bits derived from the data plus the
    /// extra bits.
    pub fn attributes(&self) -> Attributes {
        let mut bits = self.extra_attributes;
        match &self.data {
            Data::Sparse(csr) => {
                bits |= Attributes::SPARSE;
                if csr.values().is_none() {
                    bits |= Attributes::BOOLEAN;
                }
            }
            Data::Dense { one_hot: true, .. } => bits |= Attributes::BOOLEAN,
            Data::Dense { .. } => {}
        }
        if self.index.is_some() {
            bits |= Attributes::INDEXED;
        }
        if self.weights.is_some() {
            bits |= Attributes::WEIGHTED;
        }
        Attributes(bits)
    }

    /// The kind.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The element type the values had in their file.
    pub fn data_type(&self) -> DataType {
        self.data_type
    }

    /// The dimensions: width[, height[, length]].
    pub fn dims(&self) -> &[u32] {
        &self.dims
    }

    /// Width (first dimension).
    pub fn width(&self) -> u32 {
        self.dims[0]
    }

    /// Height (1 for 1-D data).
    pub fn height(&self) -> u32 {
        self.dims.get(1).copied().unwrap_or(1)
    }

    /// Length (1 for data of fewer than 3 dimensions).
    pub fn length(&self) -> u32 {
        self.dims.get(2).copied().unwrap_or(1)
    }

    /// Values per row: width · height · length.
    pub fn stride(&self) -> u64 {
        self.dims.iter().map(|&d| d as u64).product()
    }

    /// Number of examples (entries of the index when indexed, rows otherwise).
    pub fn examples(&self) -> usize {
        self.index.as_ref().map_or(self.rows, Vec::len)
    }

    /// Number of stored rows (DSSTNE's unique examples).
    pub fn unique_examples(&self) -> usize {
        self.rows
    }

    /// Whether the data is sparse.
    pub fn is_sparse(&self) -> bool {
        matches!(self.data, Data::Sparse(_))
    }

    /// Whether the data is boolean (indicator).
    pub fn is_boolean(&self) -> bool {
        self.attributes().contains(Attributes::BOOLEAN)
    }

    /// The stored rows.
    pub fn data(&self) -> &Data {
        &self.data
    }

    /// Keeps only the non-zeros of a sparse dataset whose columns lie in `range` (global
    /// column numbers and the width are kept): what a model-parallel rank holds of a dataset
    /// split by column. Returns the number of non-zeros kept. Dense data is left whole.
    /// Errors: `range` ends past the width.
    pub fn retain_columns(&mut self, range: std::ops::Range<usize>) -> Result<usize> {
        let width = self.stride() as usize;
        if range.end > width || range.start > range.end {
            return Err(Error::invalid_argument(
                "columns",
                format!(
                    "{range:?} is not a column range of dataset `{}` ({width} wide)",
                    self.name
                ),
            ));
        }
        let Data::Sparse(csr) = &mut self.data else {
            return Ok(self.nnz());
        };
        let (lo, hi) = (range.start as u32, range.end as u32);
        let view = csr.view();
        let mut offsets = Vec::with_capacity(csr.n_rows() + 1);
        offsets.push(0u64);
        let (mut cols, mut values) = (Vec::new(), csr.values().map(|_| Vec::new()));
        for r in 0..csr.n_rows() {
            let (c, v) = view.row(r);
            for (k, &col) in c.iter().enumerate() {
                if (lo..hi).contains(&col) {
                    cols.push(col);
                    if let (Some(out), Some(v)) = (values.as_mut(), v) {
                        out.push(v[k]);
                    }
                }
            }
            offsets.push(cols.len() as u64);
        }
        let kept = cols.len();
        *csr = Csr::new_checked(csr.n_cols(), offsets, cols, values);
        Ok(kept)
    }

    /// The sparse rows, if the data is sparse.
    pub fn sparse_data(&self) -> Option<&Csr> {
        match &self.data {
            Data::Sparse(csr) => Some(csr),
            Data::Dense { .. } => None,
        }
    }

    /// The dense values (`rows · stride`, row-major), if the data is dense.
    pub fn dense_data(&self) -> Option<&[f32]> {
        match &self.data {
            Data::Dense { values, .. } => Some(values),
            Data::Sparse(_) => None,
        }
    }

    /// Per-example weights, if weighted.
    pub fn weights(&self) -> Option<&[f32]> {
        self.weights.as_deref()
    }

    /// Per-example row index, if indexed.
    pub fn index(&self) -> Option<&[u32]> {
        self.index.as_deref()
    }

    /// The stored row used by example `example` (no bounds check beyond the index's).
    pub fn row_of(&self, example: usize) -> usize {
        self.index
            .as_ref()
            .map_or(example, |ix| ix[example] as usize)
    }

    /// Number of stored non-zeros (sparse) or stored values (dense).
    pub fn nnz(&self) -> usize {
        match &self.data {
            Data::Sparse(csr) => csr.nnz(),
            Data::Dense { values, .. } => values.len(),
        }
    }

    /// The dataset's shape for graph compilation: `(name, dims, examples, sparse)` with
    /// `dims` = width[, height[, length]] (the fields of `graph::DataShape`).
    pub fn shape_parts(&self) -> (String, Vec<u32>, usize, bool) {
        (
            self.name.clone(),
            self.dims.clone(),
            self.examples(),
            self.is_sparse(),
        )
    }

    /// Consumes the dataset into its stored rows.
    pub fn into_data(self) -> Data {
        self.data
    }
}

/// DSSTNE's width rounding: up to the next multiple of 128 (`((n + 127) >> 7) << 7`).
pub fn round_up_width(n: u32) -> Option<u32> {
    n.checked_add(127).map(|v| v & !127)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_follow_the_data() {
        let csr = Csr::try_new(4, vec![0, 1, 2], vec![0, 3], None).unwrap();
        let ds = Dataset::sparse("in", vec![4], csr).unwrap();
        assert_eq!(ds.attributes().0, 3);
        assert_eq!(ds.shape_parts(), ("in".into(), vec![4], 2, true));
        assert!(ds.clone().with_weights(vec![1.0]).is_err());
        assert!(ds
            .clone()
            .with_weights(vec![1.0, 2.0])
            .unwrap()
            .with_index(vec![0, 0, 1])
            .is_err());
        let ds = ds.with_index(vec![1, 1, 0]).unwrap();
        let ds = ds.with_weights(vec![1.0, 2.0, 0.5]).unwrap();
        assert_eq!(ds.examples(), 3);
        assert_eq!(ds.unique_examples(), 2);
        assert_eq!(ds.row_of(0), 1);
        assert_eq!(ds.attributes().0, 3 | 64 | 128);
        assert!(ds.clone().with_index(vec![2]).is_err());
        assert_eq!(
            ds.with_extra_attributes(4 | 1).attributes().0,
            3 | 64 | 128 | 4
        );
    }

    #[test]
    fn dense_and_one_hot_shapes_are_checked() {
        assert!(Dataset::dense("d", vec![2, 2], vec![0.0; 6]).is_err());
        let d = Dataset::dense("d", vec![2, 3], vec![0.0; 12]).unwrap();
        assert_eq!((d.examples(), d.stride(), d.height()), (2, 6, 3));
        let h = Dataset::one_hot("h", vec![3], &[2, 0]).unwrap();
        assert_eq!(h.dense_data().unwrap(), &[0.0, 0.0, 1.0, 1.0, 0.0, 0.0]);
        assert_eq!(h.attributes().0, Attributes::BOOLEAN);
        assert!(Dataset::one_hot("h", vec![3], &[3]).is_err());
        assert!(Dataset::dense("d", vec![], vec![]).is_err());
        assert!(Dataset::dense("d", vec![1, 0], vec![]).is_err());
    }

    #[test]
    fn width_rounds_like_dsstne() {
        assert_eq!(round_up_width(0), Some(0));
        assert_eq!(round_up_width(1), Some(128));
        assert_eq!(round_up_width(128), Some(128));
        assert_eq!(round_up_width(26_744), Some(26_752));
        assert_eq!(round_up_width(u32::MAX), None);
    }
}
