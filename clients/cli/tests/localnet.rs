//! The chain as processes: `vanna node` validators on 127.0.0.1 ports,
//! driven and checked over their gRPC API.
//!
//! CI runs a short version of each test; `VANNA_LONG_TESTS=1` runs the
//! issue's full lengths (200 blocks, 20 kills, a full node 500 blocks
//! behind). Every process a test starts is killed when the test ends, pass
//! or fail, and every wait is bounded.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tonic::transport::Channel;
use vanna_node::config::NodeConfig;
use vanna_node::home::{Home, KeySource, Keys};
use vanna_node::localnet::{LocalnetDir, free_port};
use vanna_proto::v1 as wire;

/// The tests share two cores: one chain at a time.
static ONE_CHAIN: Mutex<()> = Mutex::new(());

fn long() -> bool {
    std::env::var("VANNA_LONG_TESTS").is_ok_and(|value| value == "1")
}

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_vanna"))
}

/// A fresh directory under the system's temporary directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let dir = std::env::temp_dir().join(format!("vanna-{name}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Node processes, killed and reaped on drop.
struct Processes(Vec<Option<Child>>);

impl Drop for Processes {
    fn drop(&mut self) {
        for child in self.0.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Processes {
    /// SIGKILL: nothing gets a chance to flush.
    fn kill(&mut self, index: usize) {
        if let Some(mut child) = self.0[index].take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    fn assert_running(&mut self, localnet: &Path) {
        for (index, child) in self.0.iter_mut().enumerate() {
            if let Some(child) = child
                && let Some(status) = child.try_wait().unwrap()
            {
                let log = std::fs::read_to_string(localnet.join(format!("node-{index}")).join("node.log"))
                    .unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(30).collect();
                panic!(
                    "node {index} exited with {status}; its log ends:\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
        }
    }
}

/// A small deterministic generator, seeded per run (the seed is printed).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % bound.max(1)
    }
}

fn client(api: std::net::SocketAddr) -> wire::node_client::NodeClient<Channel> {
    let endpoint = Channel::from_shared(format!("http://{api}")).unwrap().timeout(Duration::from_secs(2));
    wire::node_client::NodeClient::new(endpoint.connect_lazy())
}

async fn status(client: &wire::node_client::NodeClient<Channel>) -> Option<wire::StatusResponse> {
    client.clone().status(wire::StatusRequest {}).await.ok().map(|response| response.into_inner())
}

async fn finalized(client: &wire::node_client::NodeClient<Channel>) -> u64 {
    status(client).await.map_or(0, |status| status.finalized_height)
}

/// Waits until `ready` holds, polling every 200 ms; fails after `limit`.
async fn wait_until<F: AsyncFnMut() -> bool>(what: &str, limit: Duration, mut ready: F) {
    let started = Instant::now();
    while !ready().await {
        assert!(started.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The state roots of every node at heights 1 to `to` must be equal.
async fn assert_roots_agree(clients: &[wire::node_client::NodeClient<Channel>], to: u64) {
    for height in 1..=to {
        let mut roots = Vec::new();
        for client in clients {
            let response = client.clone().get_state_root(wire::GetStateRootRequest { height }).await;
            let response = response.unwrap_or_else(|status| panic!("height {height}: {status}"));
            roots.push(response.into_inner().state_root);
        }
        assert!(roots.windows(2).all(|pair| pair[0] == pair[1]), "roots differ at height {height}");
    }
}

/// Four validators of a fresh localnet as processes, with clients of their APIs.
struct Chain {
    localnet: LocalnetDir,
    ports: Vec<vanna_node::localnet::NodePorts>,
    genesis: vanna_runtime::Genesis,
    clients: Vec<wire::node_client::NodeClient<Channel>>,
    nodes: Processes,
    runtime: tokio::runtime::Runtime,
}

impl Chain {
    fn start(scratch: &Scratch) -> Chain {
        Chain::start_with(scratch, None)
    }

    /// A fresh localnet whose validator `equivocator`, if any, runs in the
    /// test-only equivocating mode.
    fn start_with(scratch: &Scratch, equivocator: Option<usize>) -> Chain {
        let localnet = LocalnetDir::new(scratch.0.join("net"));
        localnet.create(4, 50, vanna_node::now_ms()).unwrap();
        let ports = localnet.assign_ports().unwrap();
        for index in 0..4 {
            // Snapshots often, and at every epoch's last block, so that
            // restarts resume from them (and from one at an epoch change).
            let home = localnet.home(index);
            let mut config = home.config().unwrap();
            config.storage.snapshot_interval_blocks = 10;
            home.write_config(&config).unwrap();
        }
        let spawn = |index: usize| {
            let mut command = localnet.command(binary(), index).unwrap();
            if equivocator == Some(index) {
                command.env(vanna_node::shell::EQUIVOCATE_ENV, "1");
            }
            Some(command.spawn().unwrap())
        };
        let nodes = Processes((0..4).map(spawn).collect());
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        // Lazy gRPC channels are made inside the runtime.
        let clients = {
            let _entered = runtime.enter();
            ports.iter().map(|node| client(node.api)).collect()
        };
        let genesis = localnet.home(0).genesis().unwrap();
        Chain { localnet, ports, genesis, clients, nodes, runtime }
    }
}

/// A node outside the localnet's directory, with `keys`, peered with the
/// localnet's validators; its API client.
fn start_extra_node(
    scratch: &Scratch,
    moniker: &str,
    ports: &[vanna_node::localnet::NodePorts],
    genesis: &vanna_runtime::Genesis,
    keys: &Keys,
    nodes: &mut Processes,
) -> wire::node_client::NodeClient<Channel> {
    let home = Home::new(scratch.0.join(moniker));
    let mut config = NodeConfig { moniker: moniker.into(), ..NodeConfig::default() };
    config.network.listen = free_port().unwrap();
    config.api.listen = free_port().unwrap();
    config.network.peers = ports.iter().map(|node| node.network).collect();
    config.feeder.enabled = false;
    home.init(&config, genesis, keys).unwrap();
    let log = std::fs::File::create(home.dir().join("node.log")).unwrap();
    let child = Command::new(binary())
        .args(["node", "start", "--stop-with-stdin", "--home"])
        .arg(home.dir())
        .stdin(Stdio::piped())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    nodes.0.push(Some(child));
    client(config.api.listen)
}

/// The built-in traffic at `rate` transactions a second until the sender is set.
fn chain_traffic(
    runtime: &tokio::runtime::Runtime,
    genesis: &vanna_runtime::Genesis,
    ports: &[vanna_node::localnet::NodePorts],
    rate: f64,
) -> (tokio::sync::watch::Sender<bool>, tokio::task::JoinHandle<vanna_node::traffic::TrafficStats>) {
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let apis: Vec<_> = ports.iter().map(|port| port.api).collect();
    let _entered = runtime.enter();
    let traffic = vanna_node::traffic::Traffic::new(genesis, &apis).unwrap();
    (stop_tx, runtime.spawn(traffic.run(rate, stop)))
}

#[test]
fn four_validators_finalize_with_traffic_and_agree_at_every_height() {
    let _one = ONE_CHAIN.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let scratch = Scratch::new("localnet");
    let blocks = if long() { 200 } else { 60 };
    let output = Command::new(binary())
        .args(["localnet", "--json", "--load", "40", "--timeout-secs", "240"])
        .arg("--dir")
        .arg(scratch.0.join("net"))
        .arg("--blocks")
        .arg(blocks.to_string())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}\n{stdout}", String::from_utf8_lossy(&output.stderr));
    let summary: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(summary["finalized"], blocks);
    assert_eq!(summary["heights_checked"], blocks);
    assert_eq!(summary["roots_equal"], true);
    assert_eq!(summary["usd_conserved"], true);
    assert_eq!(summary["state_roots"].as_array().unwrap().len(), 4);
    assert!(summary["traffic"]["admitted"].as_u64().unwrap() > 0, "{summary}");
    assert!(summary["fills"].as_u64().unwrap() > 0, "no trade filled: {summary}");
}

#[test]
fn validators_killed_at_random_moments_restart_catch_up_and_never_double_sign() {
    let _one = ONE_CHAIN.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let scratch = Scratch::new("kill");
    let kills = if long() { 20 } else { 3 };
    // VANNA_KILL_SEED replays a failed run's schedule (timing still varies).
    let seed = std::env::var("VANNA_KILL_SEED").ok().and_then(|seed| seed.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    });
    eprintln!("kill schedule seed {seed}");
    let mut random = Lcg(seed);
    let Chain { localnet, ports, genesis, clients, mut nodes, runtime } = Chain::start(&scratch);
    let genesis_usd = genesis.build().unwrap().total_usd().to_string();
    let (stop_tx, traffic) = chain_traffic(&runtime, &genesis, &ports, 20.0);
    runtime.block_on(async {
        wait_until("the first blocks", Duration::from_secs(60), async || finalized(&clients[0]).await >= 5).await;
        for round in 0..kills {
            let victim = random.below(4) as usize;
            tokio::time::sleep(Duration::from_millis(200 + random.below(1_500))).await;
            nodes.assert_running(localnet.root());
            nodes.kill(victim);
            let others: Vec<_> = (0..4).filter(|index| *index != victim).map(|index| clients[index].clone()).collect();
            let mut before = 0;
            for other in &others {
                before = before.max(finalized(other).await);
            }
            tokio::time::sleep(Duration::from_millis(random.below(1_000))).await;
            nodes.0[victim] = Some(localnet.spawn(binary(), victim).unwrap());
            // Three of four keep finalizing while the fourth is down or catching up.
            wait_until(&format!("finality after kill {round} of node {victim}"), Duration::from_secs(30), async || {
                nodes.assert_running(localnet.root());
                let mut now = 0;
                for other in &others {
                    now = now.max(finalized(other).await);
                }
                now > before
            })
            .await;
        }
        nodes.assert_running(localnet.root());
        let mut tip = 0;
        for client in &clients {
            tip = tip.max(finalized(client).await);
        }
        let target = tip + 5;
        for (index, client) in clients.iter().enumerate() {
            wait_until(&format!("node {index} at height {target}"), Duration::from_secs(120), async || {
                nodes.assert_running(localnet.root());
                finalized(client).await >= target
            })
            .await;
        }
        let _ = stop_tx.send(true);
        let _ = traffic.await;
        assert_roots_agree(&clients, target).await;
        for client in &clients {
            let status = status(client).await.unwrap();
            assert_eq!(status.total_usd, genesis_usd, "USD not conserved on {}", status.moniker);
            // A validator that signed two conflicting messages would be caught and tombstoned.
            for validator in &status.validators {
                assert!(!validator.tombstoned, "{} was tombstoned: it signed twice", validator.moniker);
            }
        }
    });
    nodes.assert_running(localnet.root());
}

#[test]
fn a_full_node_started_late_catches_up_from_genesis_and_follows_the_tip() {
    let _one = ONE_CHAIN.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let scratch = Scratch::new("catch-up");
    let behind = if long() { 500 } else { 80 };
    let Chain { localnet, ports, genesis, clients, mut nodes, runtime } = Chain::start(&scratch);
    let (stop_tx, traffic) = chain_traffic(&runtime, &genesis, &ports, 20.0);
    runtime.block_on(async {
        wait_until(&format!("{behind} blocks"), Duration::from_secs(240), async || {
            finalized(&clients[0]).await >= behind
        })
        .await;
        nodes.assert_running(localnet.root());

        // A node with keys no validator set holds: it follows and serves.
        let follower =
            start_extra_node(&scratch, "full-node", &ports, &genesis, &Keys::generate(&KeySource::Random), &mut nodes);
        let tip = finalized(&clients[0]).await;
        wait_until("the full node to catch up", Duration::from_secs(240), async || finalized(&follower).await >= tip)
            .await;
        let status = status(&follower).await.unwrap();
        assert!(!status.validator, "a full node");
        // Following: it keeps up with blocks finalized after it caught up.
        let later = finalized(&clients[0]).await + 10;
        wait_until("the full node to follow the tip", Duration::from_secs(120), async || {
            finalized(&follower).await >= later
        })
        .await;
        let _ = stop_tx.send(true);
        let _ = traffic.await;
        assert_roots_agree(&[clients[0].clone(), follower], later).await;
    });
    nodes.assert_running(localnet.root());
}

#[test]
fn an_equivocating_validator_is_slashed_jailed_tombstoned_and_the_chain_goes_on() {
    let _one = ONE_CHAIN.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let scratch = Scratch::new("equivocate");
    let Chain { localnet, ports, genesis, clients, nodes, runtime } = Chain::start_with(&scratch, Some(3));
    let genesis_usd = genesis.build().unwrap().total_usd().to_string();
    let (stop_tx, traffic) = chain_traffic(&runtime, &genesis, &ports, 10.0);
    let honest = &clients[..3];
    runtime.block_on(async {
        let mut first = None;
        wait_until("the first status", Duration::from_secs(60), async || {
            first = status(&clients[3]).await;
            first.is_some()
        })
        .await;
        let offender = first.unwrap().moniker;
        let stake_of = |status: &wire::StatusResponse| {
            let summary = status.validators.iter().find(|validator| validator.moniker == offender).unwrap().clone();
            (summary.stake.parse::<rust_decimal::Decimal>().unwrap(), summary)
        };
        let (stake_before, _) = stake_of(&status(&honest[0]).await.unwrap());
        let mut caught = None;
        wait_until("the equivocator to be tombstoned", Duration::from_secs(120), async || {
            caught = status(&honest[0]).await.filter(|status| stake_of(status).1.tombstoned);
            caught.is_some()
        })
        .await;
        let caught = caught.unwrap();
        let (stake_after, summary) = stake_of(&caught);
        assert!(summary.jailed, "tombstoned but not jailed: {summary:?}");
        assert!(stake_after < stake_before, "not slashed: {stake_before} before, {stake_after} after");
        // It leaves the set at the next epoch, and the three others go on.
        let epoch = caught.epoch;
        wait_until("the next epoch without the equivocator", Duration::from_secs(120), async || {
            status(&honest[0]).await.is_some_and(|status| status.epoch > epoch && !stake_of(&status).1.active)
        })
        .await;
        let target = finalized(&honest[0]).await + 10;
        for (index, client) in honest.iter().enumerate() {
            wait_until(&format!("node {index} at height {target}"), Duration::from_secs(60), async || {
                finalized(client).await >= target
            })
            .await;
        }
        let _ = stop_tx.send(true);
        let _ = traffic.await;
        assert_roots_agree(honest, target).await;
        for client in honest {
            let status = status(client).await.unwrap();
            assert_eq!(status.total_usd, genesis_usd, "USD not conserved on {}", status.moniker);
            for validator in status.validators.iter().filter(|validator| validator.moniker != offender) {
                assert!(!validator.tombstoned && !validator.jailed, "an honest validator was punished: {validator:?}");
            }
        }
    });
    let mut nodes = nodes;
    nodes.assert_running(localnet.root());
}

/// A validator's operator account sends `actions` with its next nonce.
async fn send_from(
    client: &wire::node_client::NodeClient<Channel>,
    signer: &vanna_runtime::tx::Signer,
    chain_id: &str,
    actions: Vec<wire::Action>,
) {
    let address = signer.address().as_bytes().to_vec();
    let nonce =
        client.clone().get_account(wire::GetAccountRequest { address }).await.map_or(0, |a| a.into_inner().nonce);
    let transaction = signer.sign(chain_id, nonce, actions);
    let hash = client
        .clone()
        .submit_transaction(wire::SubmitTransactionRequest { transaction })
        .await
        .unwrap_or_else(|status| panic!("refused: {status}"))
        .into_inner()
        .hash;
    wait_until("the transaction to be final", Duration::from_secs(60), async || {
        let request = wire::GetTransactionRequest { hash: hash.clone() };
        match client.clone().get_transaction(request).await {
            Ok(found) if !found.get_ref().pending => {
                let receipt = &found.get_ref().receipt_json;
                assert!(receipt.contains("\"Included\"") && !receipt.contains("\"Failed\""), "{receipt}");
                true
            }
            _ => false,
        }
    })
    .await;
}

#[test]
fn a_silent_validator_is_jailed_and_a_newly_registered_one_joins_and_votes() {
    use vanna_proto::v1::action::Kind;
    let _one = ONE_CHAIN.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let scratch = Scratch::new("join");
    let Chain { localnet, ports, genesis, clients, mut nodes, runtime } = Chain::start(&scratch);
    let (stop_tx, traffic) = chain_traffic(&runtime, &genesis, &ports, 10.0);
    runtime.block_on(async {
        wait_until("the first blocks", Duration::from_secs(60), async || finalized(&clients[0]).await >= 3).await;
        // Validator 3 stops voting.
        nodes.kill(3);

        // A new validator: a node with fresh keys, following as a full node.
        let keys = Keys::generate(&KeySource::Random);
        let newcomer = start_extra_node(&scratch, "newcomer", &ports, &genesis, &keys, &mut nodes);

        // Validator 0 funds it; it registers through a transaction.
        let operator = keys.signer();
        let stake = vanna_node::localnet::VALIDATOR_STAKE.to_string();
        let funder = vanna_node::localnet::validator_keys(0).signer();
        let fund = vanna_runtime::tx::transfer(operator.address(), wire::Asset::Vanna, &stake);
        send_from(&clients[0], &funder, &genesis.chain_id, vec![fund]).await;
        let register = vanna_runtime::tx::action(Kind::RegisterValidator(wire::RegisterValidator {
            consensus_key: vanna_crypto::bls::public_key(&keys.consensus).to_bytes().to_vec(),
            proof_of_possession: vanna_crypto::bls::proof_of_possession(&keys.consensus).to_bytes().to_vec(),
            moniker: "newcomer".into(),
            commission_rate: "0.1".into(),
            max_commission_rate: "0.5".into(),
            max_commission_change: "0.02".into(),
            self_stake: stake.clone(),
        }));
        send_from(&clients[0], &operator, &genesis.chain_id, vec![register]).await;

        let summary = |status: &wire::StatusResponse, moniker: &str| {
            status.validators.iter().find(|validator| validator.moniker == moniker).cloned()
        };
        let silent = vanna_node::localnet::validator_name(3);
        wait_until("the silent validator to be jailed", Duration::from_secs(180), async || {
            status(&clients[0]).await.and_then(|status| summary(&status, &silent)).is_some_and(|v| v.jailed)
        })
        .await;
        wait_until("the newcomer to validate, the silent one gone", Duration::from_secs(180), async || {
            let Some(status) = status(&newcomer).await else { return false };
            let joined = summary(&status, "newcomer").is_some_and(|v| v.active);
            let left = summary(&status, &silent).is_some_and(|v| !v.active);
            status.validator && joined && left
        })
        .await;
        // With validator 2 stopped too, finality needs the newcomer's votes:
        // validators 0, 1 and the newcomer are three of the four.
        nodes.kill(2);
        let target = finalized(&clients[0]).await + 10;
        wait_until(&format!("height {target} with the newcomer voting"), Duration::from_secs(120), async || {
            finalized(&clients[0]).await >= target && finalized(&newcomer).await >= target
        })
        .await;
        let _ = stop_tx.send(true);
        let _ = traffic.await;
        assert_roots_agree(&[clients[0].clone(), clients[1].clone(), newcomer], target).await;
    });
    nodes.assert_running(localnet.root());
}
