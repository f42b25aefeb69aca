//! The store's figures: commit latency (each `commit`, flush included, of
//! blocks with a 64 KiB payload), and the size and times of a snapshot of a
//! large state (accounts with option positions and resting orders, built
//! through `vanna_runtime::tools::place_order`, the path of a signed order).
//!
//! `cargo run --release -p vanna-store --example bench -- [BLOCKS] [ACCOUNTS] [DIR]`
//! (defaults: 1,000 blocks, 100,000 accounts, a directory under the system's
//! temporary one, removed at the end). Prints one JSON object.

use std::time::{Duration, Instant};

use vanna_proto::v1::{PlaceOrder, Side, TimeInForce};
use vanna_runtime::genesis::GenesisAccount;
use vanna_runtime::money::Amount;
use vanna_runtime::sandbox::demo_genesis;
use vanna_runtime::tx::limit_order;
use vanna_runtime::{Address, State};
use vanna_store::{BlockStore, StoredBlock};

/// Positions per account: each account trades five series with its partner.
const POSITIONS: usize = 5;
/// The demo's series and a price near their value at its genesis index.
const SERIES: [(&str, &str); 6] = [
    ("BTC-25DEC26-90000-P", "3000"),
    ("BTC-25DEC26-100000-P", "7500"),
    ("BTC-25DEC26-110000-C", "2500"),
    ("BTC-25DEC26-90000-C", "10000"),
    ("BTC-25DEC26-100000-C", "4500"),
    ("BTC-25DEC26-110000-P", "14000"),
];

fn argument(at: usize, default: u64) -> u64 {
    std::env::args().nth(at).map_or(default, |text| text.parse().expect("a whole number"))
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1_000.0
}

fn percentile(sorted: &[Duration], fraction: f64) -> f64 {
    millis(sorted[((sorted.len() as f64 * fraction) as usize).min(sorted.len() - 1)])
}

fn address(index: u64) -> Address {
    let mut bytes = [0xb5; 20];
    bytes[..8].copy_from_slice(&index.to_be_bytes());
    Address(bytes)
}

fn order(series: usize, side: Side, price: &str, time_in_force: TimeInForce) -> PlaceOrder {
    PlaceOrder { time_in_force: time_in_force as i32, ..limit_order(SERIES[series].0, side, price, "0.01") }
}

/// `accounts` accounts in pairs: in five series, one rests a sell and the
/// other takes it; each also rests a bid far below the market.
fn large_state(accounts: u64) -> State {
    let (mut genesis, _) = demo_genesis(&[]);
    let usd = Amount::from_micro(1_000_000 * 1_000_000);
    genesis.accounts.extend((0..accounts).map(|i| GenesisAccount { address: address(i), usd, vanna: Amount::ZERO }));
    let mut state = genesis.build().expect("a valid genesis");
    let mut events = Vec::new();
    let mut place = |state: &mut State, account: u64, order: PlaceOrder| {
        vanna_runtime::tools::place_order(state, &address(account), &order, &mut events).expect("an accepted order");
        events.clear();
    };
    for pair in 0..accounts / 2 {
        let (seller, buyer) = (2 * pair, 2 * pair + 1);
        for position in 0..POSITIONS {
            let series = (pair as usize + position) % SERIES.len();
            let price = SERIES[series].1;
            place(&mut state, seller, order(series, Side::Sell, price, TimeInForce::Gtc));
            place(&mut state, buyer, order(series, Side::Buy, price, TimeInForce::Ioc));
        }
        for account in [seller, buyer] {
            let series = account as usize % SERIES.len();
            place(&mut state, account, order(series, Side::Buy, "100", TimeInForce::Gtc));
        }
    }
    state.state_root();
    state
}

fn main() {
    let blocks = argument(1, 1_000);
    let accounts = argument(2, 100_000);
    let dir = std::env::args()
        .nth(3)
        .map_or_else(|| std::env::temp_dir().join(format!("vanna-store-bench-{}", std::process::id())), Into::into);
    let _ = std::fs::remove_dir_all(&dir);
    let store = BlockStore::open(&dir).expect("the store opens");

    let mut latencies = Vec::new();
    for height in 1..=blocks {
        let block = StoredBlock {
            height,
            hash: {
                let mut hash = [7; 32];
                hash[..8].copy_from_slice(&height.to_be_bytes());
                hash
            },
            header: vec![1; 200],
            payload: vec![height as u8; 64 * 1024],
            certificate: vec![3; 200],
            receipts: vec![4; 8 * 1024],
            state_root: [5; 32],
        };
        let started = Instant::now();
        store.commit(&block).expect("a commit");
        latencies.push(started.elapsed());
    }
    latencies.sort();

    let started = Instant::now();
    let state = large_state(accounts);
    let build = started.elapsed();
    let started = Instant::now();
    let snapshot = state.snapshot();
    let encode = started.elapsed();
    let started = Instant::now();
    store.put_snapshot(state.height, &snapshot).expect("a snapshot put");
    let put = started.elapsed();
    let started = Instant::now();
    let (_, read) = store.latest_snapshot().expect("a read").expect("the snapshot");
    let get = started.elapsed();
    let started = Instant::now();
    let restored = State::from_snapshot(&read).expect("the snapshot loads");
    let load = started.elapsed();
    assert_eq!(restored.state_root_from_scratch(), state.state_root_from_scratch());

    println!(
        "{{\"commit_blocks\":{blocks},\"commit_payload_bytes\":65536,\"commit_ms_p50\":{:.3},\"commit_ms_p99\":{:.3},\
\"commit_ms_max\":{:.3},\"snapshot_accounts\":{accounts},\"snapshot_positions_per_account\":{POSITIONS},\
\"snapshot_orders\":{},\"snapshot_bytes\":{},\"state_build_ms\":{:.0},\"snapshot_encode_ms\":{:.1},\
\"snapshot_put_ms\":{:.1},\"snapshot_get_ms\":{:.1},\"snapshot_load_ms\":{:.1}}}",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        millis(latencies[latencies.len() - 1]),
        state.orders.len(),
        snapshot.len(),
        millis(build),
        millis(encode),
        millis(put),
        millis(get),
        millis(load),
    );
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}
