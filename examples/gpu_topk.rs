//! Top-K throughput on the GPU (benches/gpu/run.sh runs it there): exact top-100 of
//! 100,000 users × 27,278 items, scores already on the device (as after a forward pass), in
//! batches of 4,096 users; median of 5 timed passes after a warm-up. Prints one JSON line.
//!
//!   cargo run --release --features cuda --example gpu_topk [users] [items] [k]

#[cfg(feature = "cuda")]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    use moira::backend::cuda::Cuda;
    use moira::backend::traits::Mat;
    use moira::backend::Backend;
    use std::time::Instant;

    let arg = |i: usize, d: usize| {
        std::env::args()
            .nth(i)
            .and_then(|a| a.parse().ok())
            .unwrap_or(d)
    };
    let (users, items, k) = (arg(1, 100_000), arg(2, 27_278), arg(3, 100));
    let batch = 4096.min(users);
    let cuda = Cuda::new(0, false)?;
    let mut host = vec![0.0f32; batch * items];
    moira::rng::fill_uniform(&mut host, 7, 0, 0);
    let mut scores = cuda.zeros(host.len())?;
    cuda.upload(&mut scores, &host)?;
    let (mut idx, mut out) = (vec![0u32; batch * k], vec![0.0f32; batch * k]);
    let mut pass = || -> Result<f64, Box<dyn std::error::Error>> {
        let t = Instant::now();
        let mut done = 0;
        while done < users {
            let rows = batch.min(users - done);
            let m = Mat::new(&scores, rows, items);
            cuda.top_k(
                m,
                items,
                k,
                None,
                &mut idx[..rows * k],
                &mut out[..rows * k],
            )?;
            done += rows;
        }
        Ok(t.elapsed().as_secs_f64())
    };
    pass()?;
    let mut times: Vec<f64> = (0..5).map(|_| pass()).collect::<Result<_, _>>()?;
    times.sort_by(f64::total_cmp);
    let median = times[2];
    println!(
        "{{\"impl\": \"moira-topk\", \"users\": {users}, \"items\": {items}, \"k\": {k}, \
         \"seconds\": {median:.6}, \"users_per_s\": {:.0}}}",
        users as f64 / median
    );
    Ok(())
}

#[cfg(not(feature = "cuda"))]
fn main() {
    eprintln!("gpu_topk needs --features cuda");
    std::process::exit(2);
}
