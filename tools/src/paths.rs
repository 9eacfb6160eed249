//! Output paths that must not replace an input (every tool checks its outputs against its
//! inputs before it writes anything), and the room left for them.

use std::path::Path;

use anyhow::{bail, Result};

/// Whether `a` and `b` are the same existing file (the same device and inode, so also
/// through hard or symbolic links and different spellings of the path).
fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => {
            #[cfg(unix)]
            {
                use std::os::unix::fs::MetadataExt;
                x.dev() == y.dev() && x.ino() == y.ino()
            }
            #[cfg(not(unix))]
            {
                let _ = (x, y);
                a.canonicalize().ok() == b.canonicalize().ok()
            }
        }
        _ => false,
    }
}

/// Errors, naming both flags and the path, when the output `output` (the tool's flag
/// `out_flag`) is the same file as one of `inputs` (each with its flag), or is a directory.
pub fn refuse_overwriting_inputs(
    out_flag: &str,
    output: &Path,
    inputs: &[(&str, Option<&Path>)],
) -> Result<()> {
    if output.is_dir() {
        bail!(
            "{out_flag} {}: is a directory; expected a file path",
            output.display()
        );
    }
    for (flag, input) in inputs {
        if let Some(input) = input.filter(|i| same_file(output, i)) {
            bail!(
                "{out_flag} {} is the same file as {flag} {}: the output would replace an \
                 input; write it to another file",
                output.display(),
                input.display()
            );
        }
    }
    Ok(())
}

pub use moira::storage::free_bytes;

/// Errors, naming the directory and both sizes, when the file system of `dir_of` has less
/// than `needed` bytes free for `what`.
pub fn require_room(dir_of: &Path, needed: u64, what: &str) -> Result<()> {
    let Some(free) = free_bytes(dir_of) else {
        return Ok(());
    };
    if free < needed {
        let mib = |b: u64| b as f64 / 1048576.0;
        let dir = dir_of.parent().filter(|p| !p.as_os_str().is_empty());
        bail!(
            "{} has {:.1} MiB free, and {:.1} MiB are needed for {what}: free some space or \
             write elsewhere (otherwise: No space left on device, part of the way through)",
            dir.unwrap_or(Path::new(".")).display(),
            mib(free),
            mib(needed)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_is_checked_against_the_file_system_of_the_output() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("model.nc");
        assert!(free_bytes(&out).is_some_and(|b| b > 0));
        require_room(&out, 1, "a byte").unwrap();
        let e = require_room(&out, u64::MAX / 2, "the network file")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&dir.path().display().to_string()) && e.contains("the network file"),
            "{e}"
        );
    }
}
