//! `fake-saas`: runs the fake SaaS server for the local environment and benchmarks, serving every
//! service of the saga on one loopback listener until interrupted.

use anyhow::Context;
use clap::Parser;
use sagaform_fake_saas::FakeSaas;
use sagaform_saga::PURCHASE;
use std::io::Write;
use tracing_subscriber::EnvFilter;

/// Fake SaaS server of the sagaform example saga (inventory, payments, entitlements).
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Loopback address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:9320")]
    listen: String,
    /// Seed of the random draws of fault rules with a `rate`.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // Logs go to stderr as JSON; stdout carries only the ready line that scripts wait for.
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let fake = FakeSaas::start_with(&args.listen, &PURCHASE, args.seed).await?;
    let mut stdout = std::io::stdout();
    writeln!(stdout, "listening on {}", fake.base_url()).context("writing the ready line")?;
    stdout.flush().context("writing the ready line")?;
    tracing::info!(url = %fake.base_url(), seed = args.seed, "fake saas ready");
    wait_for_stop().await?;
    tracing::info!("stopping");
    fake.shutdown().await;
    Ok(())
}

/// Waits for Ctrl-C or SIGTERM (what a test harness or a process supervisor sends).
async fn wait_for_stop() -> anyhow::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("listening for SIGTERM")?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.context("listening for Ctrl-C"),
        _ = terminate.recv() => Ok(()),
    }
}
