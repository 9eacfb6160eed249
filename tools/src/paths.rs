//! Output paths that must not replace an input: every tool checks its outputs against its
//! inputs before it writes anything.

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
