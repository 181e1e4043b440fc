//! The `ringmq` command line.

use clap::{Parser, Subcommand};
use ringmq::config::{ServeArgs, ServeConfig};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

#[derive(Parser)]
#[command(name = "ringmq", version, about = "Kafka-compatible thread-per-core message broker")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the broker until SIGTERM or SIGINT.
    Serve(Box<ServeArgs>),
    /// Topics on a running broker, over the Kafka protocol: create, list,
    /// describe, alter-config, delete.
    Topic(ringmq::admin::cli::TopicArgs),
    /// Consumer groups on a running broker, over the Kafka protocol: list,
    /// describe (members, lag), reset-offsets, delete.
    Group(ringmq::admin::cli::GroupArgs),
    /// AMQP queues on a running broker, over its HTTP API (the metrics
    /// address): list, purge, delete.
    Queue(ringmq::admin::cli::QueueArgs),
    /// Read-only checks of this host for ringmq (see tuning/README.md).
    Tune {
        #[command(subcommand)]
        command: TuneCommand,
    },
}

#[derive(Subcommand)]
enum TuneCommand {
    /// Print each setting, its current and recommended value and a verdict;
    /// exit 1 when something would stop ringmq from running.
    Check {
        /// Data directory to check (O_DIRECT, filesystem, device) [default: ./ringmq-data]
        #[arg(long)]
        data_dir: Option<std::path::PathBuf>,
        /// Shards as for `serve --cores` (a count or a CPU list) [default: every usable CPU]
        #[arg(long)]
        cores: Option<String>,
    },
}

fn main() {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("RINGMQ_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::registry()
        .with(ringmq::runtime::registration::RegistrationWatch)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .with_filter(filter),
        )
        .init();
    match cli.command {
        Command::Serve(args) => {
            let config = match ServeConfig::resolve(*args) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("ringmq: {e}");
                    std::process::exit(2);
                }
            };
            if let Err(e) = ringmq::server::serve(config) {
                eprintln!("ringmq: {e}");
                std::process::exit(1);
            }
        }
        Command::Topic(args) => std::process::exit(ringmq::admin::cli::run_topic(args)),
        Command::Group(args) => std::process::exit(ringmq::admin::cli::run_group(args)),
        Command::Queue(args) => std::process::exit(ringmq::admin::cli::run_queue(args)),
        Command::Tune { command: TuneCommand::Check { data_dir, cores } } => {
            let cpus = match ringmq::config::parse_cores(cores.as_deref(), &ringmq::config::usable_cpus()) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("ringmq: {e}");
                    std::process::exit(2);
                }
            };
            let opts = ringmq::tune::CheckOptions {
                data_dir: data_dir.unwrap_or_else(|| ringmq::config::DEFAULT_DATA_DIR.into()),
                shards: cpus.len(),
            };
            let findings = ringmq::tune::check(&opts);
            let mut out = std::io::stdout();
            if let Err(e) = ringmq::tune::print_table(&findings, &mut out) {
                eprintln!("ringmq: {e}");
                std::process::exit(1);
            }
            std::process::exit(ringmq::tune::exit_code(&findings));
        }
    }
}
