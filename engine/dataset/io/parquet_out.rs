//! Parquet outputs of the predictor, readable by pandas, pyarrow and Spark:
//!
//! - [`RecsWriter`]: recommendations, one row per (sample, item): columns `sample` (string),
//!   `rank` (int32, from 1, best first), `item` (string), `score` (float32, as computed:
//!   no rounding).
//! - [`LayerWriter`]: a layer's activations, one row per sample: `sample` (string) and
//!   `values` (list of float32, the layer's units in order).
//!
//! Both write snappy-compressed row groups as rows arrive (memory holds one row group), to
//! a temporary file beside the target that `finish` renames onto it: a failed or abandoned
//! write leaves no output (the temporary file is removed when the writer is dropped).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::{Float32Builder, Int32Builder, ListBuilder, StringBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use crate::error::{Error, Result};

/// Rows buffered before they are written as a batch.
const BATCH_ROWS: usize = 64 * 1024;

/// An Arrow writer on a temporary file beside `path`.
struct Target {
    path: PathBuf,
    tmp: Option<tempfile::NamedTempFile>,
    writer: Option<ArrowWriter<File>>,
    schema: SchemaRef,
}

impl Target {
    fn create(path: &Path, schema: Schema) -> Result<Self> {
        let tmp = crate::dataset::index::temp_beside(path)?;
        let file = tmp.reopen().map_err(|e| Error::io(path, e))?;
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .build();
        let schema = Arc::new(schema);
        let writer = ArrowWriter::try_new(file, schema.clone(), Some(props))
            .map_err(|e| Error::parquet(path, None, e.to_string()))?;
        Ok(Target {
            path: path.to_owned(),
            tmp: Some(tmp),
            writer: Some(writer),
            schema,
        })
    }

    fn write(&mut self, columns: Vec<ArrayRef>) -> Result<()> {
        let path = &self.path;
        let batch = RecordBatch::try_new(self.schema.clone(), columns)
            .map_err(|e| Error::parquet(path, None, e.to_string()))?;
        let writer = self.writer.as_mut().expect("open until finished");
        writer.write(&batch).map_err(|e| {
            crate::storage::name_full_disk(path, Error::parquet(path, None, e.to_string()))
        })
    }

    fn finish(&mut self) -> Result<()> {
        let path = &self.path;
        let writer = self.writer.take().expect("open until finished");
        let file = writer.into_inner().map_err(|e| {
            crate::storage::name_full_disk(path, Error::parquet(path, None, e.to_string()))
        })?;
        file.sync_all().map_err(|e| Error::io(path, e))?;
        let tmp = self.tmp.take().expect("present until finished");
        tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
        Ok(())
    }
}

/// Recommendations in Parquet (see the module documentation).
pub struct RecsWriter {
    target: Target,
    sample: StringBuilder,
    rank: Int32Builder,
    item: StringBuilder,
    score: Float32Builder,
    rows: usize,
}

impl RecsWriter {
    /// Starts the file `path` (written to a temporary file until [`RecsWriter::finish`]).
    pub fn create(path: &Path) -> Result<Self> {
        let schema = Schema::new(vec![
            Field::new("sample", DataType::Utf8, false),
            Field::new("rank", DataType::Int32, false),
            Field::new("item", DataType::Utf8, false),
            Field::new("score", DataType::Float32, false),
        ]);
        Ok(RecsWriter {
            target: Target::create(path, schema)?,
            sample: StringBuilder::new(),
            rank: Int32Builder::new(),
            item: StringBuilder::new(),
            score: Float32Builder::new(),
            rows: 0,
        })
    }

    /// Appends `sample`'s ranked `items` (label, score), best first: ranks 1, 2, …
    pub fn write_user<'a>(
        &mut self,
        sample: &str,
        items: impl IntoIterator<Item = (&'a str, f32)>,
    ) -> Result<()> {
        for (rank, (label, score)) in items.into_iter().enumerate() {
            self.sample.append_value(sample);
            self.rank.append_value(rank as i32 + 1);
            self.item.append_value(label);
            self.score.append_value(score);
            self.rows += 1;
        }
        if self.rows >= BATCH_ROWS {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.rows == 0 {
            return Ok(());
        }
        self.rows = 0;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.sample.finish()),
            Arc::new(self.rank.finish()),
            Arc::new(self.item.finish()),
            Arc::new(self.score.finish()),
        ];
        self.target.write(columns)
    }

    /// Writes the buffered rows, closes the file and renames it onto the target.
    pub fn finish(mut self) -> Result<()> {
        self.flush()?;
        self.target.finish()
    }
}

/// A layer's activations in Parquet (see the module documentation).
pub struct LayerWriter {
    target: Target,
    units: usize,
    sample: StringBuilder,
    values: ListBuilder<Float32Builder>,
    rows: usize,
}

impl LayerWriter {
    /// Starts the file `path` for rows of `units` values.
    pub fn create(path: &Path, units: usize) -> Result<Self> {
        let item = Field::new("item", DataType::Float32, false);
        let schema = Schema::new(vec![
            Field::new("sample", DataType::Utf8, false),
            Field::new("values", DataType::List(Arc::new(item.clone())), false),
        ]);
        Ok(LayerWriter {
            target: Target::create(path, schema)?,
            units,
            sample: StringBuilder::new(),
            values: ListBuilder::new(Float32Builder::new()).with_field(Arc::new(item)),
            rows: 0,
        })
    }

    /// Appends the rows `values` (`samples.len()` rows of `units` values), named `samples`.
    pub fn write(&mut self, samples: &[&str], values: &[f32]) -> Result<()> {
        if values.len() != samples.len() * self.units {
            return Err(Error::InvalidData(format!(
                "{}: {} values for {} rows of {} units",
                self.target.path.display(),
                values.len(),
                samples.len(),
                self.units
            )));
        }
        for (sample, row) in samples.iter().zip(values.chunks(self.units.max(1))) {
            self.sample.append_value(sample);
            self.values.values().append_slice(row);
            self.values.append(true);
            self.rows += 1;
        }
        if self.rows * self.units.max(1) >= BATCH_ROWS * 16 {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.rows == 0 {
            return Ok(());
        }
        self.rows = 0;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.sample.finish()),
            Arc::new(self.values.finish()),
        ];
        self.target.write(columns)
    }

    /// Writes the buffered rows, closes the file and renames it onto the target.
    pub fn finish(mut self) -> Result<()> {
        self.flush()?;
        self.target.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float32Type, Int32Type};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    fn read_back(path: &Path) -> Vec<RecordBatch> {
        let f = File::open(path).unwrap();
        let r = ParquetRecordBatchReaderBuilder::try_new(f)
            .unwrap()
            .build()
            .unwrap();
        r.map(|b| b.unwrap()).collect()
    }

    #[test]
    fn recs_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("recs.parquet");
        let mut w = RecsWriter::create(&p).unwrap();
        w.write_user("u1", [("a", 0.5f32), ("b", 0.25)]).unwrap();
        w.write_user("u2", []).unwrap();
        w.write_user("u3", [("c", f32::NAN)]).unwrap();
        assert!(!p.exists());
        w.finish().unwrap();
        let b = &read_back(&p)[0];
        assert_eq!(b.num_rows(), 3);
        let s = b.column(0).as_string::<i32>();
        let rank = b.column(1).as_primitive::<Int32Type>();
        let score = b.column(3).as_primitive::<Float32Type>();
        assert_eq!((s.value(0), s.value(2)), ("u1", "u3"));
        assert_eq!(rank.values().as_ref(), &[1, 2, 1]);
        assert_eq!(b.column(2).as_string::<i32>().value(1), "b");
        assert_eq!(score.value(1), 0.25);
        assert!(score.value(2).is_nan());
    }

    #[test]
    fn layer_round_trip_and_abandoned_writes_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("layer.parquet");
        let mut w = LayerWriter::create(&p, 2).unwrap();
        w.write(&["x", "y"], &[1.0, 2.0, 3.0, 4.0]).unwrap();
        assert!(w.write(&["z"], &[1.0]).is_err());
        w.finish().unwrap();
        let b = &read_back(&p)[0];
        let lists = b.column(1).as_list::<i32>();
        let row1 = lists.value(1);
        assert_eq!(
            row1.as_primitive::<Float32Type>().values().as_ref(),
            &[3.0, 4.0]
        );
        let q = dir.path().join("abandoned.parquet");
        drop(RecsWriter::create(&q).unwrap());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
