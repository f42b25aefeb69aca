//! Deterministic simulator for Vanna's consensus core.
//!
//! Owns: a seeded network in virtual time (delay, loss, reordering,
//! duplication, partitions and heals, adversarial scheduling before
//! stabilisation), crash and restart of validators with their persisted
//! slashing-protection store (also more than a third at once, part-way through
//! a batch, and with torn, failed and duplicated writes), validator sets that
//! change between epochs, clock skew up to the drift limit, byzantine
//! validators (silent, double voter, equivocating leader, or an attacker that
//! holds only its own key: `adversary`), and the checks every run makes: no two
//! conflicting blocks finalized, every finalized payload matches its header, no
//! honest validator signs two conflicting messages across restarts or is
//! reported as misbehaving, finality resumes within a bounded number of views
//! after the network stabilises, every observed equivocation produces valid
//! evidence against the right validator.
//!
//! Must not: read the wall clock or any ambient randomness; a seed and a
//! configuration determine a run completely.

mod adversary;
mod network;
mod rng;
mod world;

use serde::{Serialize, Serializer};
use vanna_consensus::ChainId;

pub use network::NetworkProfile;

/// The chain id every simulated signature is bound to.
pub const SIM_CHAIN: ChainId = ChainId(0x5157);
/// Blocks every honest node must finalize after the network stabilises.
const BLOCKS_AFTER_STABLE: u64 = 5;

/// What a byzantine validator does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Byzantine {
    /// Sends nothing at all.
    Silent,
    /// Votes honestly to half the network and for a conflicting block to the
    /// other half; adds a nullify to its finalize votes.
    DoubleVoter,
    /// As leader, sends one proposal to half the network and a different one to the other half.
    EquivocatingLeader,
    /// Runs the protocol and the chosen attacks on top (see [`Attack`]).
    Attacker,
}

/// One thing the adversary does, or one way the world is made harder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attack {
    /// Forged copies of others' votes (also a node's own future votes, sent to it) and certificates.
    Forge,
    /// Old messages sent again, later, to others.
    Replay,
    /// Seen messages with a field or the signature changed.
    Tamper,
    /// Proposals relayed with a swapped payload; as leader, a payload the header does not commit to.
    Payload,
    /// Validly signed votes for views ahead.
    Future,
    /// As leader, validly signed invalid proposals (height, parent, time, proposer, size).
    Invalid,
    /// Block responses that lie (wrong payload, broken chain, unrequested).
    Lying,
    /// Bursts of junk.
    Flood,
    /// Equivocating leader delivering each proposal to a chosen subset (the
    /// first to a near-quorum), byzantine validators voting together for the
    /// second, double votes.
    Equivocate,
    /// Before stabilisation, every vote is held until the view's timers fired.
    Schedule,
    /// More than a third of the validators crash, then recover before stabilisation.
    Outage,
    /// Validator powers change every epoch (epochs of 6 heights unless set).
    Sets,
    /// Clocks skewed up to the allowed drift between any two validators.
    Skew,
    /// Protection-store writes torn (with a crash), failed and duplicated; crashes part-way through a batch.
    Disk,
}

impl Attack {
    pub const ALL: [Attack; 14] = [
        Attack::Forge,
        Attack::Replay,
        Attack::Tamper,
        Attack::Payload,
        Attack::Future,
        Attack::Invalid,
        Attack::Lying,
        Attack::Flood,
        Attack::Equivocate,
        Attack::Schedule,
        Attack::Outage,
        Attack::Sets,
        Attack::Skew,
        Attack::Disk,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Attack::Forge => "forge",
            Attack::Replay => "replay",
            Attack::Tamper => "tamper",
            Attack::Payload => "payload",
            Attack::Future => "future",
            Attack::Invalid => "invalid",
            Attack::Lying => "lying",
            Attack::Flood => "flood",
            Attack::Equivocate => "equivocate",
            Attack::Schedule => "schedule",
            Attack::Outage => "outage",
            Attack::Sets => "sets",
            Attack::Skew => "skew",
            Attack::Disk => "disk",
        }
    }
}

/// A set of [`Attack`]s.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Attacks(u32);

impl Attacks {
    pub fn all() -> Self {
        Attack::ALL.iter().fold(Self::default(), |set, attack| set.with(*attack))
    }
    pub fn with(self, attack: Attack) -> Self {
        Self(self.0 | 1 << attack as u32)
    }
    pub fn contains(self, attack: Attack) -> bool {
        self.0 & (1 << attack as u32) != 0
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    pub fn names(self) -> Vec<&'static str> {
        Attack::ALL.iter().filter(|a| self.contains(**a)).map(|a| a.name()).collect()
    }

    /// `all`, `none`, or names separated by commas.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut set = Self::default();
        for name in text.split(',').map(str::trim) {
            match name {
                "all" => set = Self::all(),
                "none" => {}
                _ => {
                    let attack = Attack::ALL.iter().find(|a| a.name() == name).ok_or_else(|| {
                        let known: Vec<&str> = Attack::ALL.iter().map(|a| a.name()).collect();
                        format!("unknown attack '{name}' (known: all, none, {})", known.join(", "))
                    })?;
                    set = set.with(*attack);
                }
            }
        }
        Ok(set)
    }
}

impl Serialize for Attacks {
    fn serialize<T: Serializer>(&self, serializer: T) -> Result<T::Ok, T::Error> {
        self.names().serialize(serializer)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SimConfig {
    pub validators: usize,
    pub byzantine: usize,
    pub partitions: bool,
    pub crashes: bool,
    /// Heights per epoch; each epoch runs a fresh engine.
    pub epoch_length: Option<u64>,
    /// Real BLS signatures instead of the cheap forge-proof MAC scheme.
    pub bls: bool,
    /// Stop once every honest node finalized this many blocks after stabilisation.
    pub blocks_after_stable: u64,
    /// What the byzantine validators and the world do; empty: the classic behaviours.
    pub attacks: Attacks,
}

impl SimConfig {
    pub fn new(validators: usize, byzantine: usize) -> Self {
        Self {
            validators,
            byzantine,
            partitions: false,
            crashes: false,
            epoch_length: None,
            bls: false,
            blocks_after_stable: BLOCKS_AFTER_STABLE,
            attacks: Attacks::default(),
        }
    }
}

/// The outcome of one seed.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub seed: u64,
    /// Most views any honest node went through.
    pub views: u64,
    /// Length of the finalized chain.
    pub blocks_finalized: u64,
    pub violations: Vec<String>,
    /// Views entered from stabilisation until the slowest honest node finalized
    /// again (a jump over several views counts as one).
    pub recovery_views: u64,
    pub evidence: u64,
    pub signatures_refused: u64,
    /// Times an honest node reported a byzantine peer as misbehaving.
    pub peers_reported: u64,
    pub virtual_ms: u64,
    pub messages: u64,
}

/// Runs one seed under the scheme the configuration asks for.
pub fn run_seed(config: &SimConfig, seed: u64) -> RunReport {
    if config.bls { world::run_bls(config, seed) } else { world::run_mac(config, seed) }
}

/// Totals over many seeds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub seeds: u64,
    pub views: u64,
    pub blocks_finalized: u64,
    pub violations: u64,
    /// `None` until a seed ran.
    pub slowest_recovery: Option<SlowestRecovery>,
    pub evidence: u64,
    pub signatures_refused: u64,
    pub peers_reported: u64,
    pub messages: u64,
    /// The first violations found, with their seeds, to reproduce with `--seed-start`.
    pub violation_samples: Vec<String>,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct SlowestRecovery {
    pub views: u64,
    pub seed: u64,
}

impl Summary {
    pub fn add(&mut self, report: &RunReport) {
        self.seeds += 1;
        self.views += report.views;
        self.blocks_finalized += report.blocks_finalized;
        self.violations += report.violations.len() as u64;
        if self.slowest_recovery.is_none_or(|s| report.recovery_views >= s.views) {
            self.slowest_recovery = Some(SlowestRecovery { views: report.recovery_views, seed: report.seed });
        }
        self.evidence += report.evidence;
        self.signatures_refused += report.signatures_refused;
        self.peers_reported += report.peers_reported;
        self.messages += report.messages;
        for violation in report.violations.iter().take(3) {
            if self.violation_samples.len() < 20 {
                self.violation_samples.push(format!("seed {}: {violation}", report.seed));
            }
        }
    }
}

/// A bound on views to recover after stabilisation: every faulty leader in a
/// row costs a view, plus slack for timeouts still backed off from before.
pub fn liveness_bound_views(config: &SimConfig) -> u64 {
    4 * config.validators as u64 + 24
}
