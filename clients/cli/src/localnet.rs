//! `vanna localnet`: a chain on this machine. It writes (once) a directory of
//! validator homes, starts one `vanna node` process per validator on free
//! 127.0.0.1 ports, sends built-in traffic through their APIs and prints a
//! status line a second. Ctrl-C stops everything; the nodes also stop on
//! their own when this process dies, since each watches its standard input.
//! With `--blocks N` it stops once every node has finalized N blocks and
//! checks that all of them computed the same state root at N.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use clap::Args as ClapArgs;
use tonic::transport::Channel;
use vanna_node::localnet::{LocalnetDir, NodePorts};
use vanna_proto::v1 as wire;

use crate::CliResult;
use crate::args::whole;

/// The most validators a localnet runs (each is a process).
const MAX_VALIDATORS: u64 = 16;
/// The most transactions a second the built-in traffic sends.
const MAX_LOAD: u64 = 100_000;
/// Time the nodes get to stop on their own before they are killed.
const STOP_GRACE: Duration = Duration::from_secs(5);

#[derive(ClapArgs, Debug)]
pub struct Args {
    /// Directory of the validators' homes; created on first use and reused after.
    #[arg(long, default_value = ".vanna-localnet")]
    dir: PathBuf,
    /// Validators of a new localnet.
    #[arg(long, default_value_t = 4, value_parser = whole::<usize>(1, MAX_VALIDATORS))]
    validators: usize,
    /// Delete the directory first and start a new chain from genesis.
    #[arg(long)]
    reset: bool,
    /// Transactions a second the built-in traders and makers send (0: none).
    #[arg(long, default_value_t = 20, value_parser = whole::<u64>(0, MAX_LOAD))]
    load: u64,
    /// Blocks an epoch lasts in a new localnet.
    #[arg(long, default_value_t = 100, value_parser = whole::<u64>(2, 1_000_000))]
    epoch_blocks: u64,
    /// Stop once every node has finalized this many blocks, and check their state roots agree.
    #[arg(long, value_parser = whole::<u64>(1, 100_000_000))]
    blocks: Option<u64>,
    /// With --blocks: give up (exit 1) after this many seconds.
    #[arg(long, default_value_t = 600, value_parser = whole::<u64>(1, 86_400))]
    timeout_secs: u64,
    /// Print one JSON summary at the end instead of status lines.
    #[arg(long)]
    json: bool,
}

/// What a run with `--blocks` measured and checked.
#[derive(Debug, serde::Serialize)]
struct Summary {
    validators: usize,
    /// The height every node finalized (and was checked at).
    finalized: u64,
    seconds: f64,
    blocks_per_second: f64,
    mean_block_interval_ms: f64,
    /// Each node's state root at `finalized`.
    state_roots: Vec<String>,
    /// Heights 1 to `finalized` at which every node reported the same root.
    heights_checked: u64,
    roots_equal: bool,
    /// USD on the chain at genesis and on every node at the end.
    genesis_usd: String,
    total_usd: Vec<String>,
    usd_conserved: bool,
    transactions: u64,
    orders: u64,
    fills: u64,
    liquidations: u64,
    transactions_per_second: f64,
    traffic: vanna_node::traffic::TrafficStats,
}

pub fn run(args: &Args) -> CliResult {
    let binary = std::env::current_exe()?;
    let localnet = prepare(args)?;
    let ports = localnet.assign_ports()?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let mut nodes = Nodes { children: Vec::new() };
    for index in 0..ports.len() {
        nodes.children.push(localnet.spawn(&binary, index)?);
    }
    if !args.json {
        for (index, node) in ports.iter().enumerate() {
            let log = localnet.home(index).dir().join("node.log");
            outln!("validator-{index}  api {}  network {}  log {}", node.api, node.network, log.display());
        }
        outln!("{} validators running; Ctrl-C stops them", ports.len());
    }
    let result = runtime.block_on(drive(args, &localnet, &ports, &mut nodes));
    nodes.stop();
    result
}

/// Opens the localnet directory, writing a new chain into it when it is empty or `--reset`.
fn prepare(args: &Args) -> Result<LocalnetDir, Box<dyn std::error::Error>> {
    if args.reset && args.dir.exists() {
        std::fs::remove_dir_all(&args.dir).map_err(|error| format!("{}: {error}", args.dir.display()))?;
    }
    let localnet = LocalnetDir::new(&args.dir);
    let existing = localnet.nodes();
    if existing == 0 {
        localnet.create(args.validators, args.epoch_blocks, vanna_node::now_ms())?;
        if !args.json {
            outln!("new localnet of {} validators in {}", args.validators, args.dir.display());
        }
    } else if !args.json {
        outln!("resuming the localnet in {} ({existing} validators; --reset starts a new one)", args.dir.display());
    }
    Ok(localnet)
}

/// The node processes; stopped (and reaped) whatever happens.
struct Nodes {
    children: Vec<Child>,
}

impl Nodes {
    /// The first node that exited, with how.
    fn exited(&mut self) -> Option<(usize, std::process::ExitStatus)> {
        self.children.iter_mut().enumerate().find_map(|(index, child)| Some((index, child.try_wait().ok()??)))
    }

    /// Closes every node's standard input (their signal to stop), waits a
    /// little, then kills what still runs.
    fn stop(&mut self) {
        for child in &mut self.children {
            drop(child.stdin.take());
        }
        let deadline = Instant::now() + STOP_GRACE;
        for child in &mut self.children {
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        self.children.clear();
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn drive(args: &Args, localnet: &LocalnetDir, ports: &[NodePorts], nodes: &mut Nodes) -> CliResult {
    let genesis = localnet.home(0).genesis()?;
    let clients: Vec<_> = ports.iter().map(|node| client(node.api)).collect::<Result<_, _>>()?;
    let apis: Vec<_> = ports.iter().map(|node| node.api).collect();
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let traffic = vanna_node::traffic::Traffic::new(&genesis, &apis)?;
    let traffic = tokio::spawn(traffic.run(args.load as f64, stop));
    let interrupted = crate::signals::stopped(false);
    tokio::pin!(interrupted);
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut first: Option<(Instant, u64)> = None;
    let mut previous: Option<Sample> = None;
    let outcome: Result<Option<(u64, Vec<wire::StatusResponse>)>, String> = loop {
        tokio::select! {
            _ = &mut interrupted => break Ok(None),
            _ = tick.tick() => {}
        }
        if let Some((index, status)) = nodes.exited() {
            let log = localnet.home(index).dir().join("node.log");
            break Err(format!("validator-{index} exited ({status}); the end of its log:\n{}", tail(&log, 20)));
        }
        let statuses = statuses(&clients).await;
        let Some(lead) = statuses.iter().flatten().max_by_key(|status| status.finalized_height) else {
            if let Some(limit) = args.blocks
                && started.elapsed() > Duration::from_secs(args.timeout_secs)
            {
                break Err(format!("no node answered within {} s (waiting for {limit} blocks)", args.timeout_secs));
            }
            continue;
        };
        let lowest = statuses.iter().map(|status| status.as_ref().map_or(0, |s| s.finalized_height)).min().unwrap_or(0);
        if first.is_none() && lead.finalized_height > 0 {
            first = Some((Instant::now(), lead.finalized_height));
        }
        if !args.json
            && let Some((index, reference)) = statuses.iter().enumerate().find_map(|(i, s)| Some((i, s.as_ref()?)))
        {
            // Rates from one node, so that counters restarted by a node's restart do not mix in.
            let sample = Sample { at: Instant::now(), node: index, status: reference.clone() };
            outln!("{}", status_line(&sample, previous.as_ref(), lowest));
            previous = Some(sample);
        }
        if let Some(limit) = args.blocks {
            if lowest >= limit {
                break Ok(Some((limit, statuses.into_iter().flatten().collect())));
            }
            if started.elapsed() > Duration::from_secs(args.timeout_secs) {
                break Err(format!(
                    "after {} s the slowest node has finalized {lowest} of {limit} blocks; see the node.log files in {}",
                    args.timeout_secs,
                    localnet.root().display()
                ));
            }
        }
    };
    let _ = stop_tx.send(true);
    let stats = traffic.await.unwrap_or_default();
    let Some((limit, statuses)) = outcome? else {
        if !args.json {
            outln!("stopping; the chain is kept in {} (vanna localnet resumes it)", localnet.root().display());
        }
        return Ok(());
    };
    let roots = agreed_roots(&clients, limit).await?;
    let state_roots = roots.last().cloned().unwrap_or_default();
    let heights_checked = roots.iter().take_while(|at| at.windows(2).all(|pair| pair[0] == pair[1])).count() as u64;
    let genesis_usd = genesis.build()?.total_usd().to_string();
    let total_usd: Vec<String> = statuses.iter().map(|status| status.total_usd.clone()).collect();
    let usd_conserved = total_usd.iter().all(|total| *total == genesis_usd);
    let lead = statuses.iter().max_by_key(|status| status.finalized_height).cloned().unwrap_or_default();
    let seconds = first.map_or(0.0, |(at, _)| at.elapsed().as_secs_f64());
    let produced = first.map_or(0, |(_, height)| lead.finalized_height.saturating_sub(height));
    let summary = Summary {
        validators: state_roots.len(),
        finalized: limit,
        seconds,
        blocks_per_second: produced as f64 / seconds.max(1e-9),
        mean_block_interval_ms: seconds * 1000.0 / (produced.max(1) as f64),
        roots_equal: heights_checked == limit,
        state_roots,
        heights_checked,
        genesis_usd,
        total_usd,
        usd_conserved,
        transactions: lead.transactions_total,
        orders: lead.orders_total,
        fills: lead.fills_total,
        liquidations: lead.liquidations_total,
        transactions_per_second: lead.transactions_total as f64 / started.elapsed().as_secs_f64(),
        traffic: stats,
    };
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        outln!(
            "{} blocks on {} validators in {:.1} s ({:.0} ms a block); every node's state root agrees at heights 1 to {}: {}; USD conserved: {}",
            summary.finalized,
            summary.validators,
            summary.seconds,
            summary.mean_block_interval_ms,
            summary.heights_checked,
            summary.state_roots.first().map_or("", String::as_str),
            summary.usd_conserved,
        );
    }
    if !summary.roots_equal {
        let height = summary.heights_checked + 1;
        let at: Vec<String> = roots.get(summary.heights_checked as usize).cloned().unwrap_or_default();
        return Err(format!("the nodes' state roots differ at height {height}: {at:?}").into());
    }
    if !summary.usd_conserved {
        return Err(
            format!("USD is not conserved: genesis {}, nodes {:?}", summary.genesis_usd, summary.total_usd).into()
        );
    }
    Ok(())
}

/// Every node's state root at each height from 1 to `limit`.
async fn agreed_roots(
    clients: &[wire::node_client::NodeClient<Channel>],
    limit: u64,
) -> Result<Vec<Vec<String>>, tonic::Status> {
    let mut roots = Vec::with_capacity(limit as usize);
    for height in 1..=limit {
        let mut at = Vec::with_capacity(clients.len());
        for client in clients {
            let response = client.clone().get_state_root(wire::GetStateRootRequest { height }).await?;
            at.push(hex::encode(response.into_inner().state_root));
        }
        roots.push(at);
    }
    Ok(roots)
}

fn client(api: std::net::SocketAddr) -> Result<wire::node_client::NodeClient<Channel>, String> {
    let endpoint = Channel::from_shared(format!("http://{api}")).map_err(|error| error.to_string())?;
    Ok(wire::node_client::NodeClient::new(endpoint.timeout(Duration::from_secs(2)).connect_lazy()))
}

/// Every node's status, `None` for a node that does not answer (yet).
async fn statuses(clients: &[wire::node_client::NodeClient<Channel>]) -> Vec<Option<wire::StatusResponse>> {
    let mut out = Vec::with_capacity(clients.len());
    for client in clients {
        let mut client = client.clone();
        out.push(client.status(wire::StatusRequest {}).await.ok().map(|response| response.into_inner()));
    }
    out
}

/// One node's status when it was asked.
struct Sample {
    at: Instant,
    node: usize,
    status: wire::StatusResponse,
}

/// Height, finality, rates over the last interval, prices and validators.
fn status_line(now: &Sample, previous: Option<&Sample>, lowest: u64) -> String {
    let status = &now.status;
    let previous = previous.filter(|previous| previous.node == now.node);
    let per_second = |field: fn(&wire::StatusResponse) -> u64| {
        previous.map_or(0.0, |previous| {
            field(status).saturating_sub(field(&previous.status)) as f64
                / now.at.duration_since(previous.at).as_secs_f64().max(1e-3)
        })
    };
    let blocks =
        previous.map_or(0, |previous| status.finalized_height.saturating_sub(previous.status.finalized_height));
    let interval = previous.filter(|_| blocks > 0).map_or("-".to_string(), |previous| {
        format!("{:.0}ms", now.at.duration_since(previous.at).as_secs_f64() * 1e3 / blocks as f64)
    });
    let lag_ms = vanna_node::now_ms().saturating_sub(status.block_time_ms);
    let prices: Vec<String> = status
        .prices
        .iter()
        .map(|price| {
            let index = price.index.parse::<f64>().map_or(price.index.clone(), |index| format!("{index:.2}"));
            format!("{} {index}{}", price.underlying, if price.stale { " (stale)" } else { "" })
        })
        .collect();
    let validators: Vec<String> = status
        .validators
        .iter()
        .map(|validator| {
            let flag = if validator.tombstoned {
                " tombstoned"
            } else if validator.jailed {
                " jailed"
            } else if !validator.active {
                " inactive"
            } else {
                ""
            };
            format!("{} {} VANNA +{} USD{flag}", validator.moniker, validator.stake, validator.rewards)
        })
        .collect();
    format!(
        "height {} final {} (slowest {lowest}) | block {interval} | lag {lag_ms}ms | {:.0} tx/s {:.0} orders/s | fills {} liquidations {} | {} | {}",
        status.height,
        status.finalized_height,
        per_second(|s| s.transactions_total),
        per_second(|s| s.orders_total),
        status.fills_total,
        status.liquidations_total,
        prices.join(" "),
        validators.join(", "),
    )
}

/// The last `lines` lines of a log file.
fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
