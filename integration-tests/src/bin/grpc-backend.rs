//! `grpc-backend`: the tonic `echo.v1.Echo` service of the gRPC tests, over h2c, for
//! `bench/h2-passthrough.sh --grpc`. Flags: `--listen ADDR` (default `127.0.0.1:18180`).
//! Prints `listening grpc=<addr>` once bound; exits on SIGINT or SIGTERM.

use std::net::SocketAddr;

use integration_tests::GrpcBackend;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut listen: SocketAddr = ([127, 0, 0, 1], 18180).into();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => {
                let value = args
                    .next()
                    .ok_or_else(|| anyhow::anyhow!("--listen needs a value"))?;
                listen = value.parse()?;
            }
            other => anyhow::bail!("unknown argument {other}; usage: grpc-backend [--listen ADDR]"),
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let backend = GrpcBackend::listen("bench", listen).await;
        println!("listening grpc={}", backend.addr());
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
        Ok(())
    })
}
