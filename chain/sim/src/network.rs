use std::collections::BTreeMap;

use serde::Serialize;
use vanna_consensus::{Epoch, Event, Message, Scheme, TimerKind, View};

use crate::rng::Rng;
use crate::{Attack, SimConfig};

/// Bounds on what the network does to messages in one seed.
#[derive(Debug, Clone, Serialize)]
pub struct NetworkProfile {
    pub min_delay_ms: u64,
    pub max_delay_ms: u64,
    /// Chance (per mille) that a message takes a detour, which reorders it.
    pub slow_per_mille: u64,
    pub slow_extra_ms: u64,
    pub loss_per_mille: u64,
    pub duplicate_per_mille: u64,
    /// After this instant no partitions and no crashes remain (the "GST").
    pub stable_at_ms: u64,
    /// (start, end, nodes on side A as a bitmask over positions).
    pub partitions: Vec<(u64, u64, Vec<bool>)>,
    /// Before stabilisation every vote is held this long, past every timer
    /// of its view (0: no adversarial scheduling).
    pub hold_votes_ms: u64,
}

impl NetworkProfile {
    pub fn draw(rng: &mut Rng, config: &SimConfig) -> Self {
        let n = config.validators;
        let scheduled = config.attacks.contains(Attack::Schedule);
        let faulty = config.partitions || config.crashes || !config.attacks.is_empty();
        let stable_at_ms = if faulty { rng.range(4_000, 7_000) } else { 0 };
        let mut partitions = Vec::new();
        if config.partitions && n >= 2 {
            for _ in 0..rng.range(1, 3) {
                let start = rng.below(stable_at_ms.saturating_sub(2_500));
                let end = (start + rng.range(400, 2_500)).min(stable_at_ms);
                let mut side = vec![false; n];
                let pivot = rng.range(1, n as u64 - 1) as usize;
                for (position, slot) in side.iter_mut().enumerate() {
                    *slot = (rng.below(2) == 0) ^ (position == pivot);
                }
                // Make both sides non-empty.
                side[0] = true;
                side[pivot] = false;
                partitions.push((start, end, side));
            }
        }
        let min_delay_ms = rng.range(2, 10);
        Self {
            min_delay_ms,
            max_delay_ms: min_delay_ms + rng.range(5, 60),
            slow_per_mille: rng.range(0, 80),
            slow_extra_ms: rng.range(50, 400),
            loss_per_mille: rng.range(0, 30),
            duplicate_per_mille: rng.range(0, 30),
            stable_at_ms,
            partitions,
            hold_votes_ms: if scheduled { rng.range(600, 1_500) } else { 0 },
        }
    }
}

#[derive(Debug)]
pub enum SimEvent<S: Scheme> {
    Deliver {
        to: usize,
        from: usize,
        message: Message<S>,
    },
    Timer {
        node: usize,
        incarnation: u64,
        epoch: Epoch,
        view: View,
        kind: TimerKind,
    },
    /// The application's answer to a request, after the time it took.
    Payload {
        node: usize,
        incarnation: u64,
        event: Event<S>,
    },
    Crash {
        node: usize,
    },
    Restart {
        node: usize,
    },
    Stable,
}

/// Virtual time and the in-flight events, ordered by (time, insertion).
#[derive(Debug)]
pub struct Network<S: Scheme> {
    pub profile: NetworkProfile,
    queue: BTreeMap<(u64, u64), SimEvent<S>>,
    sequence: u64,
    pub now_ms: u64,
    pub delivered: u64,
}

impl<S: Scheme> Network<S> {
    pub fn new(profile: NetworkProfile) -> Self {
        Self { profile, queue: BTreeMap::new(), sequence: 0, now_ms: 0, delivered: 0 }
    }

    pub fn schedule(&mut self, at_ms: u64, event: SimEvent<S>) {
        self.sequence += 1;
        self.queue.insert((at_ms.max(self.now_ms), self.sequence), event);
    }

    pub fn next(&mut self) -> Option<(u64, SimEvent<S>)> {
        let ((at, _), event) = self.queue.pop_first()?;
        self.now_ms = at;
        if matches!(event, SimEvent::Deliver { .. }) {
            self.delivered += 1;
        }
        Some((at, event))
    }

    fn partitioned(&self, now: u64, from: usize, to: usize) -> bool {
        self.profile.partitions.iter().any(|(start, end, side)| {
            *start <= now
                && now < *end
                && side.get(from).copied().unwrap_or(false) != side.get(to).copied().unwrap_or(false)
        })
    }

    pub fn send(&mut self, rng: &mut Rng, now: u64, from: usize, to: usize, message: Message<S>) {
        if from == to || self.partitioned(now, from, to) || rng.per_mille(self.profile.loss_per_mille) {
            return;
        }
        let copies = if rng.per_mille(self.profile.duplicate_per_mille) { 2 } else { 1 };
        let held = if now < self.profile.stable_at_ms && matches!(message, Message::Vote(_)) {
            self.profile.hold_votes_ms
        } else {
            0
        };
        for _ in 0..copies {
            let mut delay = held + rng.range(self.profile.min_delay_ms, self.profile.max_delay_ms);
            if rng.per_mille(self.profile.slow_per_mille) {
                delay += rng.range(1, self.profile.slow_extra_ms);
            }
            self.schedule(now + delay, SimEvent::Deliver { to, from, message: message.clone() });
        }
    }

    /// Crash and restart times for up to `budget` honest nodes (positions
    /// `0..honest`), all restarted before the network stabilises. With
    /// `outage`, more than a third of all validators go down together first.
    pub fn plan_faults(
        &self,
        rng: &mut Rng,
        config: &SimConfig,
        budget: usize,
        honest: usize,
    ) -> Vec<(u64, SimEvent<S>)> {
        let mut plan = Vec::new();
        let stable = self.profile.stable_at_ms;
        if config.attacks.contains(Attack::Outage) && honest > 0 {
            let down = (config.validators / 3 + 1).min(honest);
            let at = rng.range(200, stable.saturating_sub(3_000).max(201));
            for node in 0..down {
                let back = (at + rng.range(500, 2_000)).min(stable.saturating_sub(1));
                plan.push((at + rng.below(100), SimEvent::Crash { node }));
                plan.push((back, SimEvent::Restart { node }));
            }
        }
        if !config.crashes || budget == 0 || honest == 0 {
            return plan;
        }
        let mut crashed = Vec::new();
        for _ in 0..rng.range(1, budget as u64) {
            let node = rng.below(honest as u64) as usize;
            if crashed.contains(&node) {
                continue;
            }
            crashed.push(node);
            let at = rng.range(200, stable.saturating_sub(1_800).max(201));
            let back = (at + rng.range(300, 1_500)).min(stable.saturating_sub(1));
            plan.push((at, SimEvent::Crash { node }));
            plan.push((back, SimEvent::Restart { node }));
        }
        plan
    }
}
