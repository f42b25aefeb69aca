//! The localnet's built-in traffic: funded test accounts send signed orders
//! over the public API at a set rate, so the chain trades from the first
//! minute. Makers rest post-only quotes a little either side of the mark;
//! traders cross them with immediate-or-cancel orders. Nonces are tracked
//! per account and recovered from the chain after a refusal.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use rust_decimal::Decimal;
use tonic::transport::Channel;
use vanna_proto::v1::{self as wire, Side, TimeInForce};
use vanna_runtime::instrument::{OptionKind, SeriesSpec};
use vanna_runtime::tx::{Signer, cancel_all, limit_order, place};

use crate::localnet::{MAKERS, TRADERS, maker_name, trader_name};

/// What the traffic did.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct TrafficStats {
    pub submitted: u64,
    pub admitted: u64,
    pub refused: u64,
    pub unavailable: u64,
}

struct Account {
    signer: Signer,
    nonce: Option<u64>,
}

/// One listed series and how to price it.
#[derive(Clone)]
struct Listed {
    name: String,
    spec: SeriesSpec,
    tick: Decimal,
    lot: Decimal,
}

/// Sends orders to the nodes at `apis` at `rate` per second until `stop` is set.
pub struct Traffic {
    chain_id: String,
    clients: Vec<wire::node_client::NodeClient<Channel>>,
    makers: Vec<Account>,
    traders: Vec<Account>,
    series: Vec<Listed>,
    next: usize,
    pub stats: TrafficStats,
}

impl Traffic {
    /// Traffic for the chain of `genesis`, through the APIs at `apis`.
    pub fn new(genesis: &vanna_runtime::Genesis, apis: &[SocketAddr]) -> Result<Traffic, String> {
        let clients = apis
            .iter()
            .map(|api| {
                Channel::from_shared(format!("http://{api}"))
                    .map(|endpoint| wire::node_client::NodeClient::new(endpoint.connect_lazy()))
                    .map_err(|error| error.to_string())
            })
            .collect::<Result<Vec<_>, String>>()?;
        let account = |name: String| Account { signer: Signer::from_seed(&format!("vanna-demo/{name}")), nonce: None };
        let underlyings: BTreeMap<&str, &vanna_runtime::instrument::UnderlyingSpec> =
            genesis.underlyings.iter().map(|u| (u.symbol.as_str(), u)).collect();
        let series = genesis
            .series
            .iter()
            .filter_map(|name| {
                let spec = SeriesSpec::parse(name).ok()?;
                let underlying = underlyings.get(spec.underlying.as_str())?;
                Some(Listed {
                    name: name.clone(),
                    tick: underlying.tick_size.value(),
                    lot: underlying.lot_size.value(),
                    spec,
                })
            })
            .collect();
        Ok(Traffic {
            chain_id: genesis.chain_id.clone(),
            clients,
            makers: (0..MAKERS).map(|i| account(maker_name(i))).collect(),
            traders: (0..TRADERS).map(|i| account(trader_name(i))).collect(),
            series,
            next: 0,
            stats: TrafficStats::default(),
        })
    }

    fn client(&mut self) -> &mut wire::node_client::NodeClient<Channel> {
        self.next = (self.next + 1) % self.clients.len();
        &mut self.clients[self.next]
    }

    /// The price at which to quote `series` at `spot` and `now_ms`: its
    /// Black-Scholes value at 60% volatility, on the tick.
    fn fair(series: &Listed, spot: f64, now_ms: u64) -> Option<Decimal> {
        let inputs = vanna_pricing::OptionInputs {
            kind: match series.spec.kind {
                OptionKind::Call => vanna_pricing::OptionKind::Call,
                OptionKind::Put => vanna_pricing::OptionKind::Put,
            },
            spot,
            strike: vanna_pricing::decimal_to_f64(series.spec.strike.value()),
            volatility: 0.6,
            rate: 0.0,
            years_to_expiry: vanna_pricing::years_between_ms(now_ms, series.spec.expiry_ms),
        };
        let price = vanna_pricing::price(&inputs).ok()?;
        let tick = vanna_pricing::decimal_to_f64(series.tick);
        let ticks = (price / tick).round().max(1.0);
        Some(Decimal::from(ticks as u64) * series.tick)
    }

    async fn submit(&mut self, role: Role, index: usize, actions: Vec<wire::Action>) {
        let account = match role {
            Role::Maker => &mut self.makers[index],
            Role::Trader => &mut self.traders[index],
        };
        let address = account.signer.address();
        let nonce = match account.nonce {
            Some(nonce) => nonce,
            None => {
                let request = wire::GetAccountRequest { address: address.as_bytes().to_vec() };
                let mut client = self.clients[self.next % self.clients.len()].clone();
                match client.get_account(request).await {
                    Ok(response) => response.into_inner().nonce,
                    Err(_) => {
                        self.stats.unavailable += 1;
                        return;
                    }
                }
            }
        };
        let account = match role {
            Role::Maker => &mut self.makers[index],
            Role::Trader => &mut self.traders[index],
        };
        let bytes = account.signer.sign(&self.chain_id, nonce, actions);
        account.nonce = Some(nonce + 1);
        self.stats.submitted += 1;
        let outcome = self.client().submit_transaction(wire::SubmitTransactionRequest { transaction: bytes }).await;
        let account = match role {
            Role::Maker => &mut self.makers[index],
            Role::Trader => &mut self.traders[index],
        };
        match outcome {
            Ok(_) => self.stats.admitted += 1,
            Err(status) => {
                // Whatever went wrong, ask the chain for the nonce next time.
                account.nonce = None;
                if status.code() == tonic::Code::Unavailable {
                    self.stats.unavailable += 1;
                } else {
                    self.stats.refused += 1;
                }
            }
        }
    }

    /// One round: each maker re-quotes one series either side of its mark
    /// (replacing its quotes there), and `takers` traders lift or hit them.
    pub async fn round(&mut self, round: u64, spots: &BTreeMap<String, f64>, now_ms: u64, takers: usize) {
        if self.series.is_empty() {
            return;
        }
        let series = self.series[round as usize % self.series.len()].clone();
        let Some(spot) = spots.get(&series.spec.underlying).copied() else { return };
        let Some(fair) = Self::fair(&series, spot, now_ms) else { return };
        let spread = (fair * Decimal::new(3, 2) / series.tick).ceil().max(Decimal::ONE) * series.tick;
        let bid = (fair - spread).max(series.tick);
        let ask = fair + spread;
        let size = (series.lot * Decimal::from(10)).normalize().to_string();
        let maker = round as usize % self.makers.len().max(1);
        let quote = |side, price: Decimal| {
            place(wire::PlaceOrder {
                post_only: true,
                ..limit_order(&series.name, side, &price.normalize().to_string(), &size)
            })
        };
        let refresh = vec![
            cancel_all(wire::cancel_all::Scope::Series(series.name.clone())),
            quote(Side::Buy, bid),
            quote(Side::Sell, ask),
        ];
        self.submit(Role::Maker, maker, refresh).await;
        let lot = series.lot.normalize().to_string();
        for taker in 0..takers {
            let trader = (round as usize * takers + taker) % self.traders.len().max(1);
            let (side, price) =
                if (round + taker as u64).is_multiple_of(2) { (Side::Buy, ask) } else { (Side::Sell, bid) };
            let order = place(wire::PlaceOrder {
                time_in_force: TimeInForce::Ioc as i32,
                ..limit_order(&series.name, side, &price.normalize().to_string(), &lot)
            });
            self.submit(Role::Trader, trader, vec![order]).await;
        }
    }

    /// Sends `rate` transactions a second until `stop` resolves.
    pub async fn run(mut self, rate: f64, stop: tokio::sync::watch::Receiver<bool>) -> TrafficStats {
        if rate <= 0.0 || self.clients.is_empty() {
            return self.stats;
        }
        // A round is one maker quote and three takers: four transactions.
        let takers = 3;
        let period = Duration::from_secs_f64((1.0 + takers as f64) / rate);
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut round = 0u64;
        let mut spots: BTreeMap<String, f64> = BTreeMap::new();
        while !*stop.borrow() {
            ticker.tick().await;
            if (round.is_multiple_of(50) || spots.is_empty())
                && let Ok(status) = self.client().status(wire::StatusRequest {}).await
            {
                for price in status.into_inner().prices {
                    if let Ok(index) = price.index.parse::<f64>() {
                        spots.insert(price.underlying, index);
                    }
                }
            }
            let now_ms = crate::now_ms();
            self.round(round, &spots, now_ms, takers).await;
            round += 1;
        }
        self.stats
    }
}

#[derive(Clone, Copy)]
enum Role {
    Maker,
    Trader,
}
