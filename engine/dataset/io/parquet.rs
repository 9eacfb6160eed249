//! Interaction logs in Parquet (as Spark, Hive or pandas write them): one interaction per
//! row, a user column, an item column and optionally a value column.
//!
//! Each row adds the entry `item` (feature) to the row of `user` (sample), exactly as a line
//! of the ratings CSV does ([`super::csv`]): a user's rows need not be adjacent (entries are
//! appended in file order), and the same [`Rows`] collector builds the dataset.
//!
//! - `path` is a file or a directory of part files (Spark's layout), read in sorted order;
//!   in a directory, names starting with `.` or `_` (`_SUCCESS`, `.part-0.crc`) are skipped.
//! - Ids may be integers (signed or unsigned, any width; written in decimal) or strings
//!   (UTF-8, large and view strings, dictionary-encoded strings or integers).
//! - The value column may be any integer or floating-point type; its value (as `f32`) is
//!   kept in analog mode, and `min_rating` drops rows whose value is below it (counted).
//!   Without a value column the data is boolean.
//! - A row whose user, item or (when used) value is null is skipped and counted
//!   ([`Stats::null_rows`](super::Stats::null_rows)).
//!
//! Reading streams: only the named columns are decoded, a batch of rows at a time, row group
//! by row group, so memory grows with the output (the [`Rows`]), not with the input.
//!
//! Fatal ([`Error::Parquet`] naming the file and, where it applies, the column): a file that
//! is not Parquet or is truncated or corrupt (the parquet crate panics on some corrupt files:
//! the panic is caught and becomes the error, though the panic hook may print it first), a missing column (the message lists the file's
//! columns), a column of another type than expected, a value that is not finite.

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type, UInt16Type, UInt32Type,
    UInt64Type, UInt8Type,
};
use arrow_array::{Array, ArrayRef};
use arrow_schema::DataType;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;

use super::lines::input_files;
use super::rows::Rows;
use crate::error::{Error, Result};

/// Rows decoded at a time.
const BATCH_ROWS: usize = 64 * 1024;

/// Which columns of a Parquet input are read.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ParquetOptions {
    /// The column of the user (sample) ids.
    pub user_column: String,
    /// The column of the item (feature) ids.
    pub item_column: String,
    /// The column of the values (kept in analog mode, filtered by `min_rating`), if any.
    pub value_column: Option<String>,
    /// Rows whose value is below this are dropped (needs `value_column`).
    pub min_rating: Option<f32>,
}

/// The Parquet files of `path`: the file itself, or the files of the directory in sorted
/// order without the hidden ones (`.`/`_` names: `_SUCCESS`, checksums).
pub fn parquet_files(path: &Path) -> Result<Vec<PathBuf>> {
    if !path.is_dir() {
        return input_files(path);
    }
    let files: Vec<PathBuf> = input_files(path)?
        .into_iter()
        .filter(|f| {
            f.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| !n.starts_with('.') && !n.starts_with('_'))
        })
        .collect();
    if files.is_empty() {
        return Err(Error::invalid_argument(
            "input",
            format!(
                "directory {} holds no Parquet part files (only hidden `.`/`_` files)",
                path.display()
            ),
        ));
    }
    Ok(files)
}

thread_local! {
    static CATCHING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether this thread is inside [`read`]'s guard, where a panic of the `parquet` crate is
/// caught and returned as the file's [`Error::Parquet`] (a panic hook may then stay silent).
pub fn catching_panics() -> bool {
    CATCHING.with(|c| c.get())
}

/// Marks this thread as [`catching_panics`] while alive.
struct CatchingPanics;

impl CatchingPanics {
    fn start() -> Self {
        CATCHING.with(|c| c.set(true));
        CatchingPanics
    }
}

impl Drop for CatchingPanics {
    fn drop(&mut self) {
        CATCHING.with(|c| c.set(false));
    }
}

/// Parses the Parquet file `path` (or the part files of the directory `path`) into `rows`,
/// which should use `Repeat::Append`. `progress` receives an estimate of the input bytes
/// consumed (the file's size in proportion to its rows).
pub fn read(
    path: &Path,
    rows: &mut Rows<'_>,
    options: &ParquetOptions,
    progress: &mut dyn FnMut(u64),
) -> Result<()> {
    if options.min_rating.is_some() && options.value_column.is_none() {
        return Err(Error::invalid_argument(
            "min-rating",
            "a minimum rating needs the value column that holds the ratings",
        ));
    }
    let mut current: Vec<u8> = Vec::new();
    let mut labels = [Labels::default(), Labels::default()];
    let mut values: Vec<Option<f32>> = Vec::new();
    for file in parquet_files(path)? {
        // The parquet crate panics on some corrupt files (offsets out of range in the
        // footer): such a panic becomes this file's error.
        let _guard = CatchingPanics::start();
        let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            read_file(
                &file,
                rows,
                options,
                progress,
                &mut current,
                &mut labels,
                &mut values,
            )
        }));
        match read {
            Ok(result) => result?,
            Err(panic) => {
                let why = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                return Err(Error::parquet(
                    &file,
                    None,
                    format!("not a readable Parquet file: corrupt ({why})"),
                ));
            }
        }
    }
    rows.end_row();
    Ok(())
}

fn read_file(
    file: &Path,
    rows: &mut Rows<'_>,
    options: &ParquetOptions,
    progress: &mut dyn FnMut(u64),
    current: &mut Vec<u8>,
    labels: &mut [Labels; 2],
    values: &mut Vec<Option<f32>>,
) -> Result<()> {
    let bad = |column: Option<&str>, message: String| Error::parquet(file, column, message);
    let handle = File::open(file).map_err(|e| Error::io(file, e))?;
    let size = handle.metadata().map_err(|e| Error::io(file, e))?.len();
    let builder = ParquetRecordBatchReaderBuilder::try_new(handle)
        .map_err(|e| bad(None, format!("not a readable Parquet file: {e}")))?;
    let total_rows = builder.metadata().file_metadata().num_rows().max(1) as u64;
    let fields = builder.schema().fields().clone();
    let names: Vec<&str> = fields.iter().map(|f| f.name().as_str()).collect();
    let mut wanted = vec![options.user_column.as_str(), options.item_column.as_str()];
    wanted.extend(options.value_column.as_deref());
    let mut positions = Vec::with_capacity(wanted.len());
    for &name in &wanted {
        let i = names.iter().position(|n| *n == name).ok_or_else(|| {
            bad(
                Some(name),
                format!("no such column; the file's columns are {names:?}"),
            )
        })?;
        let ty = fields[i].data_type();
        let ok = if positions.len() < 2 {
            id_type(ty)
        } else {
            value_type(ty)
        };
        if !ok {
            let expected = if positions.len() < 2 {
                "integer or string ids"
            } else {
                "integer or floating-point values"
            };
            return Err(bad(
                Some(name),
                format!("has type {ty}; expected {expected}"),
            ));
        }
        positions.push(i);
    }
    // The projection keeps the file's column order: find each wanted column in it.
    let mut sorted = positions.clone();
    sorted.sort_unstable();
    sorted.dedup();
    let slot: Vec<usize> = positions
        .iter()
        .map(|p| sorted.iter().position(|s| s == p).unwrap_or(0))
        .collect();
    let mask = ProjectionMask::roots(builder.parquet_schema(), sorted.iter().copied());
    let reader = builder
        .with_projection(mask)
        .with_batch_size(BATCH_ROWS)
        .build()
        .map_err(|e| bad(None, e.to_string()))?;
    let analog = rows.analog();
    let mut row_base = 0u64;
    for batch in reader {
        let batch = batch.map_err(|e| bad(None, format!("cannot be read: {e}")))?;
        let n = batch.num_rows();
        for (k, labels) in labels.iter_mut().enumerate() {
            labels
                .fill(batch.column(slot[k]))
                .map_err(|m| bad(Some(wanted[k]), m))?;
        }
        if options.value_column.is_some() {
            fill_values(batch.column(slot[2]), values).map_err(|m| bad(Some(wanted[2]), m))?;
        }
        let [users, items] = &*labels;
        for r in 0..n {
            rows.stats.lines += 1;
            let (Some(user), Some(item)) = (users.get(r), items.get(r)) else {
                rows.stats.null_rows += 1;
                continue;
            };
            let mut value = 1.0;
            if options.value_column.is_some() {
                let Some(v) = values.get(r).copied().flatten() else {
                    rows.stats.null_rows += 1;
                    continue;
                };
                if !v.is_finite() {
                    return Err(bad(
                        Some(wanted[2]),
                        format!(
                            "row {}: value {v} is not a finite number",
                            row_base + r as u64
                        ),
                    ));
                }
                if options.min_rating.is_some_and(|min| v < min) {
                    rows.stats.below_min_rating += 1;
                    continue;
                }
                value = v;
            }
            let at = |e: Error| bad(None, format!("row {}: {e}", row_base + r as u64));
            if rows.open_sample().is_none() || current.as_slice() != user {
                rows.begin_row(user).map_err(at)?;
                current.clear();
                current.extend_from_slice(user);
            }
            rows.push(item, if analog { value } else { 0.0 })
                .map_err(at)?;
        }
        row_base += n as u64;
        progress(size * n as u64 / total_rows);
    }
    Ok(())
}

/// Whether ids of type `ty` are read: integers, strings, dictionaries of them.
fn id_type(ty: &DataType) -> bool {
    match ty {
        DataType::Dictionary(_, values) => id_type(values),
        t => {
            t.is_integer() || matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
        }
    }
}

/// Whether values of type `ty` are read: integers and floats.
fn value_type(ty: &DataType) -> bool {
    ty.is_integer() || matches!(ty, DataType::Float32 | DataType::Float64)
}

/// One batch's ids as bytes (decimal for integers), with their validity; reused across
/// batches.
#[derive(Debug, Default)]
struct Labels {
    bytes: Vec<u8>,
    ends: Vec<usize>,
    valid: Vec<bool>,
    /// A dictionary's values, when the column is dictionary-encoded.
    dictionary: Option<Box<Labels>>,
}

impl Labels {
    /// The id of row `r`, or `None` when it is null.
    #[inline]
    fn get(&self, r: usize) -> Option<&[u8]> {
        if !self.valid[r] {
            return None;
        }
        let start = if r == 0 { 0 } else { self.ends[r - 1] };
        Some(&self.bytes[start..self.ends[r]])
    }

    fn push(&mut self, id: Option<&[u8]>) {
        if let Some(id) = id {
            self.bytes.extend_from_slice(id);
        }
        self.ends.push(self.bytes.len());
        self.valid.push(id.is_some());
    }

    /// Fills the ids of `column` (a type accepted by [`id_type`]).
    fn fill(&mut self, column: &ArrayRef) -> std::result::Result<(), String> {
        self.bytes.clear();
        self.ends.clear();
        self.valid.clear();
        macro_rules! ints {
            ($t:ty) => {{
                let a = column.as_primitive::<$t>();
                let mut buf = itoa_buf();
                for i in 0..a.len() {
                    let id = a.is_valid(i).then(|| decimal(&mut buf, a.value(i) as i128));
                    self.push(id);
                }
            }};
        }
        match column.data_type() {
            DataType::Int8 => ints!(Int8Type),
            DataType::Int16 => ints!(Int16Type),
            DataType::Int32 => ints!(Int32Type),
            DataType::Int64 => ints!(Int64Type),
            DataType::UInt8 => ints!(UInt8Type),
            DataType::UInt16 => ints!(UInt16Type),
            DataType::UInt32 => ints!(UInt32Type),
            DataType::UInt64 => ints!(UInt64Type),
            DataType::Utf8 => {
                let a = column.as_string::<i32>();
                for i in 0..a.len() {
                    self.push(a.is_valid(i).then(|| a.value(i).as_bytes()));
                }
            }
            DataType::LargeUtf8 => {
                let a = column.as_string::<i64>();
                for i in 0..a.len() {
                    self.push(a.is_valid(i).then(|| a.value(i).as_bytes()));
                }
            }
            DataType::Utf8View => {
                let a = column.as_string_view();
                for i in 0..a.len() {
                    self.push(a.is_valid(i).then(|| a.value(i).as_bytes()));
                }
            }
            DataType::Dictionary(_, _) => {
                let d = column.as_any_dictionary();
                let mut dict = self.dictionary.take().unwrap_or_default();
                dict.fill(d.values())?;
                let keys = d.keys();
                let normalized = if d.values().is_empty() {
                    vec![0; keys.len()]
                } else {
                    d.normalized_keys()
                };
                for (i, &k) in normalized.iter().enumerate() {
                    let id = if keys.is_valid(i) { dict.get(k) } else { None };
                    self.push(id);
                }
                self.dictionary = Some(dict);
            }
            t => return Err(format!("has type {t}; expected integer or string ids")),
        }
        Ok(())
    }
}

/// A buffer for [`decimal`].
fn itoa_buf() -> [u8; 40] {
    [0; 40]
}

/// `v` in decimal, written at the end of `buf`.
#[inline]
fn decimal(buf: &mut [u8; 40], v: i128) -> &[u8] {
    let mut i = buf.len();
    let negative = v < 0;
    let mut u = v.unsigned_abs();
    loop {
        i -= 1;
        buf[i] = b'0' + (u % 10) as u8;
        u /= 10;
        if u == 0 {
            break;
        }
    }
    if negative {
        i -= 1;
        buf[i] = b'-';
    }
    &buf[i..]
}

/// The values of `column` (a type accepted by [`value_type`]) as `f32`, `None` for nulls.
fn fill_values(column: &ArrayRef, out: &mut Vec<Option<f32>>) -> std::result::Result<(), String> {
    out.clear();
    macro_rules! nums {
        ($t:ty) => {{
            let a = column.as_primitive::<$t>();
            out.extend((0..a.len()).map(|i| a.is_valid(i).then(|| a.value(i) as f32)));
        }};
    }
    match column.data_type() {
        DataType::Float32 => nums!(Float32Type),
        DataType::Float64 => nums!(Float64Type),
        DataType::Int8 => nums!(Int8Type),
        DataType::Int16 => nums!(Int16Type),
        DataType::Int32 => nums!(Int32Type),
        DataType::Int64 => nums!(Int64Type),
        DataType::UInt8 => nums!(UInt8Type),
        DataType::UInt16 => nums!(UInt16Type),
        DataType::UInt32 => nums!(UInt32Type),
        DataType::UInt64 => nums!(UInt64Type),
        t => {
            return Err(format!(
                "has type {t}; expected integer or floating-point values"
            ))
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals() {
        let mut b = itoa_buf();
        for v in [0i128, 7, -7, 1234567890, u64::MAX as i128, i64::MIN as i128] {
            assert_eq!(decimal(&mut b, v), v.to_string().as_bytes());
        }
    }
}
