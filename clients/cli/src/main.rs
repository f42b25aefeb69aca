//! `vanna`: the one command-line tool. Each subcommand lives in its own module
//! with a clap `Args` struct and a `run` function. Everything it prints on
//! stdout goes through `outln!` (see `output`).

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

#[macro_use]
mod output;
mod args;
#[cfg(feature = "dev-tools")]
mod bench;
#[cfg(feature = "dev-tools")]
mod demo;
mod feeder;
mod genesis;
mod localnet;
mod node;
mod price;
mod signals;
mod simulate;

/// The error type every subcommand returns; the message is printed as is.
pub type CliResult = Result<(), Box<dyn std::error::Error>>;

#[derive(Parser)]
#[command(name = "vanna", version, about = "Vanna: a proof-of-stake chain that settles crypto options")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a scripted trading session through the runtime and print what happened.
    #[cfg(feature = "dev-tools")]
    Demo(demo::Args),
    /// Genesis files.
    #[command(subcommand)]
    Genesis(genesis::Genesis),
    /// Reproducible benchmarks; add --json for machine-readable output.
    #[cfg(feature = "dev-tools")]
    #[command(subcommand)]
    Bench(bench::Bench),
    /// Black-Scholes price and greeks of one option, as the chain computes them; add --json for machine-readable output.
    Price(price::Args),
    /// Deterministic consensus simulation over many seeds; add --json for machine-readable output.
    Simulate(simulate::Args),
    /// The validator's price feeder sidecar: signed oracle reports as JSON lines.
    Feeder(feeder::Args),
    /// Run a node: `vanna node init`, then `vanna node start`.
    #[command(subcommand)]
    Node(node::Node),
    /// A chain on this machine: validators with price feeds and traffic, in ./.vanna-localnet.
    Localnet(localnet::Args),
}

fn main() {
    let mut command = args::negative_numbers_are_values(Cli::command());
    let matches = command.get_matches_mut();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|error| error.format(&mut command).exit());
    let result = match cli.command {
        #[cfg(feature = "dev-tools")]
        Command::Demo(args) => demo::run(&args),
        #[cfg(feature = "dev-tools")]
        Command::Bench(bench) => bench::run(bench),
        Command::Simulate(args) => simulate::run(&args),
        Command::Price(args) => price::run(&args),
        Command::Genesis(command) => genesis::run(&command),
        Command::Feeder(args) => feeder::run(&args),
        Command::Node(command) => node::run(command),
        Command::Localnet(args) => localnet::run(&args),
    };
    if let Err(error) = result {
        eprintln!("error: {error}");
        std::process::exit(1);
    }
}
