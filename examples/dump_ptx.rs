//! Writes the PTX that the CUDA backend loads: cuda/*.cu compiled by NVRTC, with the engine's
//! own options (`kernels::compile`), for one architecture (default `sm_90`, the H100). Needs
//! NVRTC on `LD_LIBRARY_PATH`, no GPU; benches/gpu/ptxas-report.sh feeds the file to ptxas.
//!
//!   cargo run --release --features cuda --example dump_ptx OUT.ptx [ARCH]

use std::process::ExitCode;

use moira::backend::cuda::kernels;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(out) = args.next() else {
        eprintln!("usage: dump_ptx OUT.ptx [ARCH (default sm_90)]");
        return ExitCode::from(2);
    };
    // NVRTC's option type wants a `'static` name; the program runs once, so leaking is fine.
    let arch: &'static str = Box::leak(args.next().unwrap_or("sm_90".into()).into_boxed_str());
    match dump(&out, arch) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dump_ptx: {e}");
            ExitCode::FAILURE
        }
    }
}

fn dump(out: &str, arch: &'static str) -> Result<(), Box<dyn std::error::Error>> {
    let ptx = kernels::compile(arch)?;
    std::fs::write(out, ptx.to_src()).map_err(|e| format!("writing {out}: {e}"))?;
    eprintln!(
        "dump_ptx: {} kernels for {arch} -> {out}",
        kernels::KERNELS.len()
    );
    Ok(())
}
