//! `trainer --tensorboard DIR`: the per-epoch scalars in TensorBoard's event file format, so
//! that `tensorboard --logdir DIR` draws the training curves, live.
//!
//! The file is `DIR/events.out.tfevents.<unix seconds>.<host>`, a sequence of TFRecords:
//! `u64 length (little endian) | u32 masked_crc32c(length bytes) | data | u32
//! masked_crc32c(data)`, where `masked_crc32c(x) = ((c >> 15) | (c << 17)) + 0xa282ead8`
//! with `c` the CRC-32C of `x` (wrapping arithmetic). Each record's data is a protobuf
//! `tensorflow.Event`: field 1 `wall_time` (double), 2 `step` (int64), then either 3
//! `file_version` (string: the first record, `brain.Event:2`) or 5 `summary` (a `Summary`
//! whose repeated field 1 `value` holds `Summary.Value`s of field 1 `tag` (string) and 2
//! `simple_value` (float)).
//!
//! Scalars of epoch `e` (step `e`, the 0-based epoch number of the metrics log): `loss`,
//! `examples_per_second`, `learning_rate`, `epoch_seconds`, and after a validation
//! `validation/precision@K`, `validation/recall@K`, `validation/ndcg@K` for every cutoff.
//!
//! Unlike Moira's other outputs, this file is not written to a temporary file and renamed:
//! it is appended to and flushed after every epoch so that TensorBoard can watch it while
//! training runs (a run that fails leaves the epochs it finished). A resumed run starts a
//! new file in the same directory; TensorBoard reads them together. Only the process that
//! writes the metrics log (rank 0 under mpirun) writes it.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use moira::train::EpochReport;

/// An open event file.
pub struct EventWriter {
    path: PathBuf,
    out: BufWriter<File>,
}

impl EventWriter {
    /// Creates `dir` if needed and a new event file in it, starting with the file-version
    /// record (flushed).
    pub fn create(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("--tensorboard: cannot create {}", dir.display()))?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty() && !h.contains('/'))
            .unwrap_or_else(|| "localhost".into());
        let mut name = format!("events.out.tfevents.{}.{host}", now as u64);
        let mut path = dir.join(&name);
        // Two runs in the same second and directory: add the process id.
        if path.exists() {
            name.push_str(&format!(".{}", std::process::id()));
            path = dir.join(&name);
        }
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(&path)
            .with_context(|| format!("--tensorboard: cannot create {}", path.display()))?;
        let mut w = EventWriter {
            path,
            out: BufWriter::new(file),
        };
        let mut event = Vec::new();
        put_double(&mut event, 1, now);
        put_varint_field(&mut event, 2, 0);
        put_bytes(&mut event, 3, b"brain.Event:2");
        w.record(&event)?;
        w.flush()?;
        Ok(w)
    }

    /// The event file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the scalars of one epoch (see the module documentation) and flushes.
    pub fn epoch(&mut self, r: &EpochReport) -> Result<()> {
        let mut scalars: Vec<(String, f32)> = vec![
            ("loss".into(), r.loss as f32),
            ("examples_per_second".into(), r.examples_per_second as f32),
            ("learning_rate".into(), r.learning_rate),
            ("epoch_seconds".into(), r.seconds as f32),
        ];
        if let Some(v) = &r.validation {
            for m in v.means() {
                let k = m.k;
                scalars.push((format!("validation/precision@{k}"), m.precision as f32));
                scalars.push((format!("validation/recall@{k}"), m.recall as f32));
                scalars.push((format!("validation/ndcg@{k}"), m.ndcg as f32));
            }
        }
        self.scalars(i64::from(r.epoch), &scalars)?;
        self.flush()
    }

    /// Writes one event of `scalars` (tag, value) at `step`.
    pub fn scalars(&mut self, step: i64, scalars: &[(String, f32)]) -> Result<()> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let mut summary = Vec::new();
        for (tag, value) in scalars {
            let mut v = Vec::new();
            put_bytes(&mut v, 1, tag.as_bytes());
            put_key(&mut v, 2, 5);
            v.extend_from_slice(&value.to_le_bytes());
            put_bytes(&mut summary, 1, &v);
        }
        let mut event = Vec::new();
        put_double(&mut event, 1, now);
        put_varint_field(&mut event, 2, step as u64);
        put_bytes(&mut event, 5, &summary);
        self.record(&event)
    }

    fn record(&mut self, data: &[u8]) -> Result<()> {
        let len = (data.len() as u64).to_le_bytes();
        let mut bytes = Vec::with_capacity(data.len() + 16);
        bytes.extend_from_slice(&len);
        bytes.extend_from_slice(&masked_crc(&len).to_le_bytes());
        bytes.extend_from_slice(data);
        bytes.extend_from_slice(&masked_crc(data).to_le_bytes());
        self.out
            .write_all(&bytes)
            .with_context(|| format!("cannot write {}", self.path.display()))
    }

    fn flush(&mut self) -> Result<()> {
        self.out
            .flush()
            .with_context(|| format!("cannot write {}", self.path.display()))
    }
}

/// TFRecord's masked CRC-32C.
pub fn masked_crc(data: &[u8]) -> u32 {
    let c = crc32c::crc32c(data);
    c.rotate_right(15).wrapping_add(0xa282_ead8)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A field key: `field << 3 | wire type`.
fn put_key(out: &mut Vec<u8>, field: u32, wire: u8) {
    put_varint(out, (u64::from(field) << 3) | u64::from(wire));
}

fn put_varint_field(out: &mut Vec<u8>, field: u32, v: u64) {
    put_key(out, field, 0);
    put_varint(out, v);
}

fn put_double(out: &mut Vec<u8>, field: u32, v: f64) {
    put_key(out, field, 1);
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_key(out, field, 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::manual_rotate)] // the mask as TFRecord's specification writes it
    fn crc32c_and_mask_match_known_values() {
        // CRC-32C("123456789") = 0xE3069283 (the standard check value).
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
        let c: u32 = 0xE306_9283;
        assert_eq!(
            masked_crc(b"123456789"),
            ((c >> 15) | (c << 17)).wrapping_add(0xa282_ead8)
        );
    }
}
