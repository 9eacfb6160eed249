//! The multi-rank GPU path inside one process: `RANKS` ranks (the `Threads` collective), each
//! with its own CUDA backend on GPU 0, train `NET` on the given datasets; prints each epoch's
//! time and loss. With `RANKS=1` it runs the one-rank instructions (the trainer's); against
//! `mpirun -np RANKS` on one GPU it separates the cost of the cross-rank steps from the cost of
//! several CUDA contexts sharing the GPU.
//!
//!   sharded_gpu NET.json INPUT.nc OUTPUT.nc [RANKS] [EPOCHS] [BATCH]

#[cfg(feature = "cuda")]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    use moira::backend::cuda::Cuda;
    use moira::collective::Threads;
    use moira::dataset::io::netcdf;
    use moira::descriptor::Descriptor;
    use moira::graph::Graph;
    use moira::network::Network;
    use moira::ops::optimizer::{Hyper, LrSchedule};
    use moira::ops::Optimizer;
    use moira::train::{shapes, train, DataBinding, Quiet, TrainConfig};

    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        return Err(
            "usage: sharded_gpu NET.json INPUT.nc OUTPUT.nc [RANKS] [EPOCHS] [BATCH]".into(),
        );
    }
    let arg = |i: usize, default: usize| args.get(i).map_or(Ok(default), |s| s.parse());
    let (ranks, epochs, batch) = (arg(4, 2)?, arg(5, 2)? as u32, arg(6, 256)?);
    let descriptor = Descriptor::from_file(&args[1])?;
    let mut datasets = netcdf::read(std::path::Path::new(&args[2]))?;
    datasets.extend(netcdf::read(std::path::Path::new(&args[3]))?);
    let config = TrainConfig {
        epochs,
        batch,
        optimizer: Optimizer::Sgd,
        hyper: Hyper::default(),
        schedule: LrSchedule::Constant,
        seed: 12134,
        shuffle: descriptor.shuffle_indices,
        first_epoch: 0,
        brake: true,
    };
    let reports = Threads::run(ranks, |comm| {
        let graph = Graph::compile(&descriptor, &shapes(&datasets))?;
        let binding = DataBinding::new(&graph, &datasets, false)?;
        let mut net = Network::build_with(
            Cuda::new(0, false)?,
            comm,
            graph,
            batch,
            config.optimizer,
            config.seed,
        )?;
        train(&mut net, &binding, &config, None, &mut Quiet)
    })?;
    for r in &reports[0] {
        println!(
            "{{\"impl\": \"sharded-threads-{ranks}\", \"epoch\": {}, \"seconds\": {:.3}, \"loss\": {:.6}}}",
            r.epoch, r.seconds, r.loss
        );
    }
    Ok(())
}

#[cfg(not(feature = "cuda"))]
fn main() {
    eprintln!("sharded_gpu needs the `cuda` feature");
}
