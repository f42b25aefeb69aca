//! `vanna node init` writes a node's home; `vanna node start` runs it until
//! Ctrl-C (or SIGTERM), or until its standard input closes when asked to
//! (the localnet's nodes end with the localnet that started them).

use std::path::PathBuf;

use clap::Args as ClapArgs;
use vanna_node::config::NodeConfig;
use vanna_node::home::{Home, KeySource, Keys};

use crate::CliResult;

#[derive(clap::Subcommand, Debug)]
pub enum Node {
    /// Write a node's home: commented config.toml, the chain's genesis, fresh keys, an empty data directory.
    Init(InitArgs),
    /// Run the node in a home until Ctrl-C.
    Start(StartArgs),
}

#[derive(ClapArgs, Debug)]
pub struct InitArgs {
    /// The home directory to create; it must not hold a node yet.
    #[arg(long)]
    home: PathBuf,
    /// The chain's genesis file (JSON, as `vanna genesis demo` prints).
    #[arg(long)]
    genesis: PathBuf,
    /// A name for this node in logs and status.
    #[arg(long, default_value = "node")]
    moniker: String,
    /// Derive the keys from this name as the localnet does (anyone who knows
    /// the name has them: test chains only). Default: fresh random keys.
    #[arg(long)]
    key_seed: Option<String>,
}

#[derive(ClapArgs, Debug)]
pub struct StartArgs {
    /// The node's home directory (`vanna node init` writes one).
    #[arg(long)]
    home: PathBuf,
    /// Stop when standard input closes, so the node never outlives the
    /// process that started it.
    #[arg(long, hide = true)]
    stop_with_stdin: bool,
    /// Log level on stderr: error, warn, info, debug or trace.
    #[arg(long, default_value = "info")]
    log_level: tracing::Level,
}

pub fn run(command: Node) -> CliResult {
    match command {
        Node::Init(args) => init(&args),
        Node::Start(args) => start(&args),
    }
}

fn init(args: &InitArgs) -> CliResult {
    let path = &args.genesis;
    let text = std::fs::read_to_string(path).map_err(|error| format!("{}: {error}", path.display()))?;
    let genesis = vanna_runtime::Genesis::from_json(&text).map_err(|error| format!("{}: {error}", path.display()))?;
    genesis.build().map_err(|error| format!("{}: the genesis does not build: {error}", path.display()))?;
    let keys = Keys::generate(&match &args.key_seed {
        Some(name) => KeySource::Seeded(name.clone()),
        None => KeySource::Random,
    });
    let config = NodeConfig { moniker: args.moniker.clone(), ..NodeConfig::default() };
    let home = Home::new(&args.home);
    home.init(&config, &genesis, &keys)?;
    outln!("initialised {} for chain {}", args.home.display(), genesis.chain_id);
    outln!("account  {}", keys.signer().address());
    outln!("consensus key {}", hex::encode(vanna_crypto::bls::public_key(&keys.consensus).to_bytes()));
    outln!(
        "edit {} (listen addresses, peers), then: vanna node start --home {}",
        home.config_path().display(),
        args.home.display()
    );
    Ok(())
}

fn start(args: &StartArgs) -> CliResult {
    tracing_subscriber::fmt().with_writer(std::io::stderr).with_max_level(args.log_level).init();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let home = Home::new(&args.home);
    let stop_with_stdin = args.stop_with_stdin;
    let result = runtime.block_on(async move {
        let (stop_tx, stop) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            crate::signals::stopped(stop_with_stdin).await;
            let _ = stop_tx.send(true);
        });
        vanna_node::shell::run(home, stop).await
    });
    // The stdin watcher blocks in a read that nothing can cancel: dropping
    // the runtime would wait for it forever, and the process would neither
    // exit nor report why the node stopped.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    result?;
    Ok(())
}
