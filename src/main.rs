//! `kairos`: the command line over the broker library.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use kairos::config::FileConfig;
use kairos::{Broker, BrokerConfig, FsyncPolicy};

#[global_allocator]
static ALLOCATOR: kairos::alloc::Allocator = kairos::alloc::Allocator;

#[derive(Parser)]
#[command(
    name = "kairos",
    version,
    about = "A Kafka-compatible broker with delayed delivery, views and a console"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the broker.
    Serve(ServeArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Kafka listener address [default: 127.0.0.1:9092]
    #[arg(long, env = "KAIROS_LISTEN")]
    listen: Option<SocketAddr>,
    /// Console (HTTP) address [default: 127.0.0.1:8080]
    #[arg(long, env = "KAIROS_CONSOLE")]
    console: Option<SocketAddr>,
    /// Data directory [default: ./data]
    #[arg(long, env = "KAIROS_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// host:port advertised to clients [default: the listen address]
    #[arg(long, env = "KAIROS_ADVERTISE")]
    advertise: Option<String>,
    /// Partitions of auto-created topics [default: 1]
    #[arg(long, env = "KAIROS_PARTITIONS")]
    partitions: Option<i32>,
    /// Do not create topics on first use
    #[arg(long, env = "KAIROS_NO_AUTO_CREATE")]
    no_auto_create: bool,
    /// When acknowledged writes are fsynced [default: interval]
    #[arg(long, env = "KAIROS_FSYNC", value_enum)]
    fsync: Option<FsyncPolicy>,
    /// Longest delay a delay record may ask for, in ms [default: 365 days]
    #[arg(long, env = "KAIROS_DELAY_MAX_MS")]
    delay_max_ms: Option<i64>,
    /// Bearer token required on the console's mutating calls (POST/PUT/DELETE) [default: none]
    #[arg(long, env = "KAIROS_CONSOLE_TOKEN", hide_env_values = true)]
    console_token: Option<String>,
    /// TOML file with the same settings plus [topic_defaults]
    #[arg(long, env = "KAIROS_CONFIG")]
    config: Option<PathBuf>,
}

impl ServeArgs {
    fn into_config(self) -> anyhow::Result<BrokerConfig> {
        let mut cfg = BrokerConfig::default();
        if let Some(path) = &self.config {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            FileConfig::parse(&text)
                .with_context(|| format!("parsing {}", path.display()))?
                .apply(&mut cfg);
        }
        if let Some(v) = self.listen {
            cfg.listen = v;
        }
        if let Some(v) = self.console {
            cfg.console = v;
        }
        if let Some(v) = self.data_dir {
            cfg.data_dir = v;
        }
        if let Some(v) = self.advertise {
            cfg.advertise = Some(v);
        }
        if let Some(v) = self.partitions {
            anyhow::ensure!(v >= 1, "--partitions must be at least 1");
            cfg.default_partitions = v;
        }
        if self.no_auto_create {
            cfg.auto_create_topics = false;
        }
        if let Some(v) = self.fsync {
            cfg.fsync = v;
        }
        if let Some(v) = self.delay_max_ms {
            anyhow::ensure!(v >= 0, "--delay-max-ms must not be negative");
            cfg.delay_max_ms = v;
        }
        if let Some(v) = self.console_token {
            anyhow::ensure!(!v.is_empty(), "--console-token must not be empty");
            cfg.console_token = Some(v);
        }
        for (k, v) in &cfg.topic_defaults {
            kairos::topics::config::validate(k, v)
                .map_err(|e| anyhow::anyhow!("topic_defaults: {e}"))?;
        }
        Ok(cfg)
    }
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KAIROS_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            let cfg = args.into_config()?;
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            rt.block_on(serve(cfg))
        }
    }
}

async fn serve(cfg: BrokerConfig) -> anyhow::Result<()> {
    let handle = Broker::start(cfg).await?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
    }
    handle.shutdown().await;
    Ok(())
}
