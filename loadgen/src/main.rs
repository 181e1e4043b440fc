//! `ringmq-loadgen`: the load generator bundled with ringmq. It speaks the
//! Kafka protocol and AMQP 0-9-1 itself (plain threads, blocking sockets) and
//! measures produce-ack and end-to-end latency open-loop, so broker stalls
//! show up in the tail. See `cli` for the flags and `run` for how a run
//! unfolds; `amqp` is the AMQP mode (`ringmq-loadgen amqp …`).
//!
//! Modules: `cli` (flags), `client` (wire protocol), `cluster` (topic setup),
//! `payload` (record contents, keys), `producer`, `consumer`, `shared` (state
//! between threads), `histo` (histograms, .hgrm), `report` (table, JSON),
//! `svg` (chart), `plot` (comparing runs), `baseline` (machine limits).

mod amqp;
mod baseline;
mod cli;
mod client;
mod cluster;
mod consumer;
mod error;
mod histo;
mod payload;
mod plot;
mod producer;
mod report;
mod run;
mod shared;
mod svg;

use clap::Parser;

use amqp::config::AmqpSettings;
use cli::{Cli, Command};
use error::Error;
use report::RunSettings;

fn main() {
    let raw: Vec<String> = std::env::args().collect();
    let cli = match Cli::try_parse_from(&raw) {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let subcommand = raw.get(1).map(String::as_str);
            if code != 0 && !raw.iter().skip(1).any(|a| a == "plot" || a == "baseline") {
                if let Some(dir) = cli::out_dir_from_raw_args(&raw) {
                    let msg = e.to_string();
                    let first =
                        msg.lines().next().unwrap_or("invalid arguments").trim_start_matches("error: ").to_string();
                    let settings = match subcommand {
                        Some("amqp") => RunSettings::Amqp(AmqpSettings::unknown()),
                        _ => RunSettings::default(),
                    };
                    run::write_failure(&dir, settings, &format!("invalid arguments: {first}"));
                }
            }
            let _ = e.print();
            std::process::exit(code);
        }
    };
    let result: Result<(), Error> = match cli.command {
        Some(Command::Plot(args)) => plot::command(&args),
        Some(Command::Baseline(args)) => baseline::command(&args),
        Some(Command::Amqp(args)) => match args.validate() {
            Ok(cfg) => amqp::run::command(cfg),
            Err(e) => {
                run::write_failure(&args.out, RunSettings::Amqp(AmqpSettings::of_args(&args)), &e.to_string());
                Err(e)
            }
        },
        None => match cli.run.validate() {
            Ok(cfg) => run::command(cfg),
            Err(e) => {
                run::write_failure(&cli.run.out, RunSettings::Kafka(run::config_of_args(&cli.run)), &e.to_string());
                Err(e)
            }
        },
    };
    if let Err(e) = result {
        eprintln!("ringmq-loadgen: error: {e}");
        std::process::exit(e.exit_code());
    }
}
