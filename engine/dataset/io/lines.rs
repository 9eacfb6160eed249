//! Fast line reading shared by the text parsers: large buffered reads, no per-line allocation,
//! UTF-8 validated per chunk, 1-based line numbers, progress in bytes.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Bytes read per `read` call.
const CHUNK: usize = 8 << 20;

/// The files to read for `path`: the file itself, or every regular file directly inside a
/// directory, in sorted (byte-wise) order, as DSSTNE's `generateNetCDF` does.
pub fn input_files(path: &Path) -> Result<Vec<PathBuf>> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).map_err(|e| Error::io(path, e))? {
        let entry = entry.map_err(|e| Error::io(path, e))?;
        let p = entry.path();
        let m = std::fs::metadata(&p).map_err(|e| Error::io(&p, e))?;
        if m.is_file() {
            files.push(p);
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(Error::invalid_argument(
            "input",
            format!("directory {} holds no files", path.display()),
        ));
    }
    Ok(files)
}

/// Total size in bytes of the files [`input_files`] returns for `path`.
pub fn input_size(path: &Path) -> Result<u64> {
    let mut total = 0;
    for f in input_files(path)? {
        total += std::fs::metadata(&f).map_err(|e| Error::io(&f, e))?.len();
    }
    Ok(total)
}

/// Calls `f(line, line_number)` for every line of `path` (without its `\n` and a trailing
/// `\r`), including a last line without a newline. Fails with an [`Error::Parse`] naming the
/// line if the file is not valid UTF-8, and stops at the first error `f` returns.
/// `progress` receives the number of bytes consumed, chunk by chunk.
pub fn for_each_line(
    path: &Path,
    progress: &mut dyn FnMut(u64),
    mut f: impl FnMut(&[u8], u64) -> Result<()>,
) -> Result<()> {
    let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut buf: Vec<u8> = vec![0; CHUNK];
    let mut filled = 0usize;
    let mut line_no = 0u64;
    let mut eof = false;
    while !eof {
        if filled == buf.len() {
            // A line longer than the buffer: grow it.
            buf.resize(buf.len() * 2, 0);
        }
        let n = read_full(&mut file, &mut buf[filled..]).map_err(|e| Error::io(path, e))?;
        eof = n == 0 || filled + n < buf.len();
        filled += n;
        // Process every complete line (everything, at the end of the file).
        let end = if eof {
            filled
        } else {
            match memchr::memrchr(b'\n', &buf[..filled]) {
                Some(p) => p + 1,
                None => continue,
            }
        };
        let region = &buf[..end];
        if let Err(e) = std::str::from_utf8(region) {
            let ok = e.valid_up_to();
            let line = line_no + memchr::memchr_iter(b'\n', &region[..ok]).count() as u64 + 1;
            return Err(Error::parse(path, line, "not valid UTF-8"));
        }
        let mut start = 0;
        while start < end {
            let stop = memchr::memchr(b'\n', &region[start..]).map_or(end, |p| start + p);
            let mut line = &region[start..stop];
            if let [rest @ .., b'\r'] = line {
                line = rest;
            }
            line_no += 1;
            f(line, line_no)?;
            start = stop + 1;
        }
        progress(end as u64);
        buf.copy_within(end..filled, 0);
        filled -= end;
    }
    Ok(())
}

/// Reads until `buf` is full or the end of the file; returns the bytes read.
fn read_full(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match file.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_of(content: &[u8]) -> Result<Vec<(String, u64)>> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.txt");
        std::fs::write(&p, content).unwrap();
        let mut out = Vec::new();
        let mut bytes = 0;
        for_each_line(&p, &mut |n| bytes += n, |l, n| {
            out.push((String::from_utf8(l.to_vec()).unwrap(), n));
            Ok(())
        })?;
        assert_eq!(bytes, content.len() as u64);
        Ok(out)
    }

    #[test]
    fn splits_lines_and_strips_cr() {
        let got = lines_of(b"a\tb\r\n\nlast").unwrap();
        assert_eq!(
            got,
            vec![("a\tb".into(), 1), ("".into(), 2), ("last".into(), 3)]
        );
        assert!(lines_of(b"").unwrap().is_empty());
    }

    #[test]
    fn long_lines_grow_the_buffer() {
        let mut content = vec![b'x'; CHUNK + 10];
        content.extend_from_slice(b"\ny\n");
        let got = lines_of(&content).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].0.len(), CHUNK + 10);
        assert_eq!(got[1], ("y".into(), 2));
    }

    #[test]
    fn invalid_utf8_names_the_line() {
        let err = lines_of(b"ok\nok\nbad \xff here\n")
            .unwrap_err()
            .to_string();
        assert!(err.ends_with("f.txt:3: not valid UTF-8"), "{err}");
    }
}
