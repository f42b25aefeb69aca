//! `vanna`: the one command-line tool. Each subcommand lives in its own module
//! with a clap `Args` struct and a `run` function.

use clap::{Parser, Subcommand};

mod bench;
mod demo;
mod genesis;
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
    Demo(demo::Args),
    /// Genesis files.
    #[command(subcommand)]
    Genesis(genesis::Genesis),
    /// Reproducible benchmarks; add --json for machine-readable output.
    #[command(subcommand)]
    Bench(bench::Bench),
    /// Deterministic consensus simulation over many seeds; add --json for machine-readable output.
    Simulate(simulate::Args),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => demo::run(&args),
        Command::Bench(bench) => bench::run(bench),
        Command::Simulate(args) => simulate::run(&args),
        Command::Genesis(command) => genesis::run(&command),
    };
    if let Err(error) = result {
        eprintln!("error: {error}");
        std::process::exit(1);
    }
}
