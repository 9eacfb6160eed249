//! The CUDA kernel source (cuda/*.cu, embedded in the binary), its compilation by NVRTC for
//! the device's architecture (once per process and architecture), and the kernel names the
//! Rust side launches.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use cudarc::nvrtc::{compile_ptx_with_opts, CompileOptions, Ptx};

use crate::error::{Error, Result};

/// The source files, in the order they are concatenated into one compilation unit.
pub const SOURCES: &[(&str, &str)] = &[
    ("cuda/common.cuh", include_str!("../../../cuda/common.cuh")),
    (
        "cuda/elementwise.cu",
        include_str!("../../../cuda/elementwise.cu"),
    ),
    ("cuda/sparse.cu", include_str!("../../../cuda/sparse.cu")),
    ("cuda/loss.cu", include_str!("../../../cuda/loss.cu")),
];

/// Every kernel the backend launches; each must be an `extern "C" __global__` function of
/// [`SOURCES`] (a test checks this without a GPU).
pub const KERNELS: &[&str] = &[
    "set_rows_to_bias",
    "add_bias",
    "add_assign",
    "scale_rows",
    "scale",
    "bias_gradient",
    "activation_forward",
    "activation_backward",
    "softmax_forward",
    "softmax_backward",
    "dropout_forward",
    "optimizer_step",
    "spmm",
    "spmm_combine",
    "spmm_quads",
    "sparse_weight_gradient",
    "sparse_gradient_absent_rows",
    "csc_count",
    "csc_scan_blocks",
    "csc_scan_totals",
    "csc_scan_finish",
    "csc_fill",
    "topk_keys",
    "topk_select",
    "topk_small",
    "zero_target_delta",
    "sparse_target_delta",
    "softmax_zero_grad",
    "softmax_row_delta",
    "dense_target_delta",
    "loss_partials",
    "sparse_loss_rows",
    "output_zero_pass",
];

/// The whole program: every source file, each preceded by a `#line` directive so that NVRTC's
/// messages name the file and line.
pub fn program_source() -> String {
    let mut src = String::new();
    for (name, text) in SOURCES {
        src.push_str(&format!("#line 1 \"{name}\"\n"));
        src.push_str(text);
        src.push('\n');
    }
    src
}

/// The NVRTC options: no FMA contraction (so the formulas round exactly as on the CPU),
/// IEEE division and square root, no flush to zero, and the target architecture
/// (`compute_XY`, e.g. `compute_90` for the H100).
pub fn compile_options(arch: &'static str) -> CompileOptions {
    CompileOptions {
        ftz: Some(false),
        prec_div: Some(true),
        prec_sqrt: Some(true),
        fmad: Some(false),
        arch: Some(arch),
        options: vec!["--std=c++17".into()],
        ..Default::default()
    }
}

/// Compiles the program for `arch` (e.g. `"sm_90"`); the PTX of each architecture is kept for
/// the life of the process.
pub fn compile(arch: &'static str) -> Result<Ptx> {
    static CACHE: OnceLock<Mutex<HashMap<&'static str, String>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    let mut cache = cache
        .lock()
        .map_err(|_| Error::Device("the PTX cache lock is poisoned".into()))?;
    if let Some(ptx) = cache.get(arch) {
        return Ok(Ptx::from_src(ptx.clone()));
    }
    // SAFETY: probing for the library only dlopens it; it has no other effect.
    if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
        return Err(Error::Device(
            "NVRTC (libnvrtc.so) was not found: install the CUDA toolkit or put its lib \
             directory on LD_LIBRARY_PATH"
                .into(),
        ));
    }
    let ptx = compile_ptx_with_opts(program_source(), compile_options(arch))
        .map_err(|e| Error::Device(format!("compiling cuda/*.cu for {arch}: {e}")))?;
    cache.insert(arch, ptx.to_src());
    Ok(ptx)
}

/// `"sm_XY"` for compute capability `X.Y`, as a `'static` string (NVRTC's option type).
pub fn arch_name(major: i32, minor: i32) -> &'static str {
    static NAMES: OnceLock<Mutex<HashMap<(i32, i32), &'static str>>> = OnceLock::new();
    let names = NAMES.get_or_init(|| Mutex::new(HashMap::new()));
    let mut names = match names.lock() {
        Ok(n) => n,
        Err(p) => p.into_inner(),
    };
    names
        .entry((major, minor))
        .or_insert_with(|| Box::leak(format!("sm_{major}{minor}").into_boxed_str()))
}

/// The names of the `extern "C" __global__` functions defined in `src`.
pub fn defined_kernels(src: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = src;
    while let Some(pos) = rest.find("__global__ void ") {
        rest = &rest[pos + "__global__ void ".len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        names.push(name);
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kernel the Rust side launches is defined in cuda/ (needs no GPU).
    #[test]
    fn every_launched_kernel_exists_in_the_sources() {
        let defined = defined_kernels(&program_source());
        for k in KERNELS {
            assert!(defined.iter().any(|d| d == k), "kernel `{k}` not in cuda/");
        }
        for d in &defined {
            assert!(
                KERNELS.contains(&d.as_str()),
                "kernel `{d}` is never loaded"
            );
        }
    }

    /// The kernels compile to PTX for the H100 with NVRTC, where NVRTC is installed (CI
    /// installs it from PyPI; no GPU needed).
    #[test]
    fn kernels_compile_with_nvrtc() {
        // SAFETY: probing only dlopens the library.
        if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
            // CI sets MOIRA_REQUIRE_NVRTC=1: there a missing NVRTC is a failure, not a skip.
            assert!(
                std::env::var_os("MOIRA_REQUIRE_NVRTC").is_none(),
                "NVRTC not found but MOIRA_REQUIRE_NVRTC is set"
            );
            eprintln!("skipped: NVRTC not found (set LD_LIBRARY_PATH to its lib directory)");
            return;
        }
        let ptx = compile("sm_90").unwrap_or_else(|e| panic!("{e}"));
        let text = ptx.to_src();
        for k in KERNELS {
            assert!(
                text.contains(&format!(".entry {k}(")),
                "no PTX entry for `{k}`"
            );
        }
    }
}
