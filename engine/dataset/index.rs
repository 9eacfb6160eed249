//! Feature and sample index files in DSSTNE's format: one `label\tindex` line per entry.
//!
//! Contract of [`Index`]:
//! - labels are non-empty byte strings without TAB, CR or LF; the indices of `n` labels are
//!   exactly `0..n` (dense, as DSSTNE writes them);
//! - a new label gets the next index, `len()`, as in DSSTNE (order of first appearance);
//! - [`Index::load`] accepts only well-formed files: every non-empty line has exactly two
//!   TAB-separated fields, a decimal index, unique labels, unique indices and no gaps;
//!   anything else is an [`Error::Parse`] naming `file:line`. Empty lines are skipped.
//!   (DSSTNE only checked the field count and label uniqueness; a gap or a repeated index
//!   would have silently aliased two features.)
//! - [`Index::write`] writes the entries in index order (DSSTNE's order was arbitrary)
//!   atomically: to a temporary file in the same directory, then renamed over the target.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};

/// A small, fast, non-cryptographic hasher for short labels (FxHash-style word mixing with a
/// final avalanche so that the low bits used for bucket selection are well mixed).
#[derive(Clone, Copy, Debug, Default)]
pub struct FastHash;

/// The hasher built by [`FastHash`].
#[derive(Clone, Copy, Debug)]
pub struct FastHasher(u64);

const K: u64 = 0xf135_7aea_2e62_a9c5;

impl BuildHasher for FastHash {
    type Hasher = FastHasher;
    fn build_hasher(&self) -> FastHasher {
        FastHasher(0)
    }
}

impl FastHasher {
    #[inline]
    fn mix(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(23) ^ word).wrapping_mul(K);
    }
}

impl Hasher for FastHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.mix(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.mix(u64::from_le_bytes(w));
        }
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.mix(n as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        let mut h = self.0;
        h ^= h >> 32;
        h = h.wrapping_mul(0xd6e8_feb8_6659_fd93);
        h ^ (h >> 29)
    }
}

/// A label → index map (see the module documentation for its contract).
#[derive(Clone, Debug, Default)]
pub struct Index {
    map: HashMap<Box<[u8]>, u32, FastHash>,
    changed: bool,
}

/// Why a label cannot be stored, if it cannot.
fn label_problem(label: &[u8]) -> Option<&'static str> {
    if label.is_empty() {
        Some("empty label")
    } else if label
        .iter()
        .any(|&b| b == b'\t' || b == b'\n' || b == b'\r')
    {
        Some("label contains a TAB, CR or LF")
    } else if label.iter().any(|&b| b < 0x20 || b == 0x7f) {
        Some("label contains a control character (a NUL byte, say: a damaged or truncated file?)")
    } else {
        None
    }
}

impl Index {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Loads an index file (see the module documentation for what is accepted).
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::parse(path, &bytes)
    }

    /// Parses the contents of an index file; `path` is only used in error messages.
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Self> {
        let mut index = Index::new();
        let mut used: HashMap<u32, u64, FastHash> = HashMap::default();
        let mut largest: Option<(u32, u64)> = None;
        for (n, line) in bytes.split(|&b| b == b'\n').enumerate() {
            let line_no = n as u64 + 1;
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() {
                continue;
            }
            let bad = |msg: String| Error::parse(path, line_no, msg);
            let text = std::str::from_utf8(line)
                .map_err(|_| bad("index line is not valid UTF-8".into()))?;
            let fields: Vec<&str> = text.split('\t').collect();
            if fields.len() != 2 {
                return Err(bad(format!(
                    "expected `label<TAB>index` (2 fields), found {} field(s)",
                    fields.len()
                )));
            }
            let (label, value) = (fields[0], fields[1]);
            if let Some(problem) = label_problem(label.as_bytes()) {
                return Err(bad(problem.into()));
            }
            let idx: u32 = value
                .parse()
                .map_err(|_| bad(format!("index `{value}` is not a number in 0..2^32")))?;
            if let Some(first) = used.insert(idx, line_no) {
                return Err(bad(format!(
                    "index {idx} is used twice (first on line {first})"
                )));
            }
            if index.map.insert(label.as_bytes().into(), idx).is_some() {
                return Err(bad(format!("duplicate label `{label}`")));
            }
            if largest.is_none_or(|(max, _)| idx > max) {
                largest = Some((idx, line_no));
            }
        }
        if let Some((max, line_no)) = largest.filter(|&(max, _)| max as usize >= index.len()) {
            return Err(Error::parse(
                path,
                line_no,
                format!(
                    "index {max} leaves gaps: the {} entries must use indices 0..{}",
                    index.len(),
                    index.len() - 1
                ),
            ));
        }
        Ok(index)
    }

    /// Number of labels.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the index is empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Whether labels were added since the index was created or loaded.
    pub fn is_changed(&self) -> bool {
        self.changed
    }

    /// The index of `label`, if present.
    #[inline]
    pub fn get(&self, label: &[u8]) -> Option<u32> {
        self.map.get(label).copied()
    }

    /// The index of `label`, adding it (with the next free index) if absent. Returns the
    /// index and whether it was added. Fails on a label that cannot be stored (empty, or with
    /// a TAB, CR, LF or another control character such as NUL) or when the `u32` index space
    /// is exhausted.
    #[inline]
    pub fn get_or_insert(&mut self, label: &[u8]) -> Result<(u32, bool)> {
        if let Some(&idx) = self.map.get(label) {
            return Ok((idx, false));
        }
        self.insert_new(label).map(|i| (i, true))
    }

    #[cold]
    fn insert_new(&mut self, label: &[u8]) -> Result<u32> {
        if let Some(problem) = label_problem(label) {
            return Err(Error::InvalidData(format!(
                "cannot index `{}`: {problem}",
                String::from_utf8_lossy(label).escape_debug()
            )));
        }
        let idx = u32::try_from(self.map.len())
            .map_err(|_| Error::InvalidData("index full: more than 2^32 labels".to_string()))?;
        self.map.insert(label.into(), idx);
        self.changed = true;
        Ok(idx)
    }

    /// Adds the labels of `other` that are absent here, in `other`'s index order, with fresh
    /// indices. Returns how many were added.
    pub fn merge(&mut self, other: &Index) -> Result<usize> {
        let mut added = 0;
        for (label, _) in other.entries() {
            if self.get_or_insert(label)?.1 {
                added += 1;
            }
        }
        Ok(added)
    }

    /// All `(label, index)` pairs in index order.
    pub fn entries(&self) -> Vec<(&[u8], u32)> {
        let mut v: Vec<(&[u8], u32)> = self.map.iter().map(|(k, &i)| (&k[..], i)).collect();
        v.sort_unstable_by_key(|&(_, i)| i);
        v
    }

    /// The label of every index `0..len()`.
    pub fn labels(&self) -> Vec<String> {
        let mut out = vec![String::new(); self.map.len()];
        for (label, &i) in &self.map {
            out[i as usize] = String::from_utf8_lossy(label).into_owned();
        }
        out
    }

    /// Writes the index to `path` atomically, entries in index order.
    pub fn write(&self, path: &Path) -> Result<()> {
        let tmp = self.write_temp(path)?;
        tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
        Ok(())
    }

    /// Writes the index to a temporary file beside `path` (removed when dropped); the caller
    /// renames it over `path` with `persist`.
    pub(crate) fn write_temp(&self, path: &Path) -> Result<tempfile::NamedTempFile> {
        write_temp(path, |w| {
            for (label, idx) in self.entries() {
                w.write_all(label)?;
                writeln!(w, "\t{idx}")?;
            }
            Ok(())
        })
    }
}

/// Writes a temporary file in the directory of `path` with `fill`, flushed; it is removed
/// when dropped unless the caller renames it over `path` with `persist`.
fn write_temp(
    path: &Path,
    fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<tempfile::NamedTempFile> {
    let tmp = temp_beside(path)?;
    {
        let mut w = std::io::BufWriter::with_capacity(1 << 20, tmp.as_file());
        fill(&mut w).map_err(|e| Error::io(path, e))?;
        w.flush().map_err(|e| Error::io(path, e))?;
    }
    Ok(tmp)
}

/// A new, empty temporary file in the directory of `path`, readable like a file the user
/// created (mode 0666 less the umask on Unix), removed when dropped unless persisted.
pub(crate) fn temp_beside(path: &Path) -> Result<tempfile::NamedTempFile> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut builder = tempfile::Builder::new();
    builder.prefix(".moira-").suffix(".tmp");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    builder.tempfile_in(dir).map_err(|e| Error::io(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Index> {
        Index::parse(Path::new("ix.txt"), text.as_bytes())
    }

    #[test]
    fn parses_and_extends_like_dsstne() {
        let mut ix = parse("b\t1\na\t0\r\n\n").unwrap();
        assert_eq!((ix.len(), ix.is_changed()), (2, false));
        assert_eq!(ix.get(b"b"), Some(1));
        assert_eq!(ix.get_or_insert(b"a").unwrap(), (0, false));
        assert_eq!(ix.get_or_insert(b"c").unwrap(), (2, true));
        assert!(ix.is_changed());
        assert_eq!(ix.labels(), vec!["a", "b", "c"]);
        assert!(ix.get_or_insert(b"x\ty").is_err());
        let nul = ix.get_or_insert(b"\0\0a").unwrap_err().to_string();
        assert!(
            nul.contains("control character") && nul.contains("\\0\\0a"),
            "{nul}"
        );
        assert!(ix.get_or_insert(b"a\x7fb").is_err());
        assert!(ix.get_or_insert(b"").is_err());
    }

    #[test]
    fn rejects_malformed_lines_with_their_line_number() {
        for (text, line, what) in [
            ("a\t0\nb\n", 2, "2 fields"),
            ("a\t0\tx\n", 1, "found 3"),
            ("a\t0\nb\tx\n", 2, "not a number"),
            ("a\t0\nb\t1\na\t2\n", 3, "duplicate label `a`"),
            ("a\t0\nb\t0\n", 2, "used twice"),
            ("\t0\n", 1, "empty label"),
            ("a\t0\nb\t5\nc\t1\n", 2, "leaves gaps"),
        ] {
            let err = parse(text).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("ix.txt:{line}:")) && err.contains(what),
                "{text:?}: {err}"
            );
        }
    }

    #[test]
    fn merge_adds_missing_labels_in_the_other_index_order() {
        let mut ix = parse("a\t1\nb\t0\n").unwrap();
        let other = parse("z\t1\nb\t0\ny\t2\n").unwrap();
        assert_eq!(ix.merge(&other).unwrap(), 2);
        assert_eq!(ix.get(b"z"), Some(2));
        assert_eq!(ix.get(b"y"), Some(3));
    }

    #[test]
    fn write_then_load_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.idx");
        let mut ix = Index::new();
        for l in ["x", "y", "é"] {
            ix.get_or_insert(l.as_bytes()).unwrap();
        }
        ix.write(&path).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "x\t0\ny\t1\né\t2\n"
        );
        let back = Index::load(&path).unwrap();
        assert_eq!(back.entries(), ix.entries());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn hasher_spreads_similar_labels() {
        let h = |s: &str| FastHash.hash_one(s.as_bytes()) & 1023;
        let buckets: std::collections::HashSet<u64> =
            (0..1000).map(|i| h(&format!("1{i:04}"))).collect();
        assert!(buckets.len() > 550, "{} buckets", buckets.len());
    }
}
