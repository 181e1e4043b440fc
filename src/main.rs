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
    Serve(ServeArgs),
}

fn main() {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("RINGMQ_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::registry()
        .with(ringmq::runtime::registration::RegistrationWatch)
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).with_filter(filter))
        .init();
    match cli.command {
        Command::Serve(args) => {
            let config = match ServeConfig::resolve(args) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("ringmq: {e}");
                    std::process::exit(2);
                }
            };
            if let Err(e) = ringmq::runtime::serve(config) {
                eprintln!("ringmq: {e}");
                std::process::exit(1);
            }
        }
    }
}
