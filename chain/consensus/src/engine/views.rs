//! Moving through views: entering one, its timers, and what a stuck node rebroadcasts.

use crate::messages::{Message, Signable, Vote, VoteKind};
use crate::scheme::Scheme;
use crate::types::View;

use super::{Action, Consensus, TimerKind};

/// Nullifications rebroadcast at most per retry tick (the ones since the
/// highest certified block, which a peer needs to validate new proposals).
const REBROADCAST_NULLIFICATIONS: usize = 256;

impl<S: Scheme> Consensus<S> {
    pub(super) fn enter_view(&mut self, view: View, after_notarization: bool) {
        if view <= self.view {
            return;
        }
        self.view = view;
        self.consecutive_nullified = if after_notarization { 0 } else { self.consecutive_nullified.saturating_add(1) };
        let exponent = self.consecutive_nullified.min(self.config.timing.max_backoff_exponent);
        let after_ms = self.config.timing.leader_timeout_ms.saturating_mul(1u64 << exponent.min(20));
        self.rounds.entry(view).or_default();
        self.out.push(Action::ScheduleTimeout { view, kind: TimerKind::Leader, after_ms });
        // Views advance while blocks are missing; ask again (another peer) as they do.
        self.retry_block_requests();
    }

    pub(super) fn on_timeout(&mut self, view: View, kind: TimerKind) {
        match kind {
            TimerKind::Leader => {
                if view != self.view {
                    return;
                }
                let epoch = self.config.epoch;
                let is_validator = self.config.me.is_some();
                let round = self.round(view);
                if is_validator && !round.voted_nullify {
                    round.voted_nullify = true;
                    let vote = Vote { epoch, view, kind: VoteKind::Nullify };
                    self.request_signature(Signable::Vote(vote));
                }
            }
            TimerKind::Retry => {
                // A periodic tick, whatever the view: rebroadcast only when
                // finality made no progress since the previous tick.
                let finalized = self.finalized.header.height;
                if self.finalized_at_last_tick == Some(finalized) {
                    self.rebroadcast(self.view);
                    let unsigned: Vec<Signable> =
                        self.rounds.values().flat_map(|r| r.unsigned.iter().copied()).collect();
                    self.out.extend(unsigned.into_iter().map(Action::Sign));
                }
                self.finalized_at_last_tick = Some(finalized);
                let after_ms = self.config.timing.retry_ms;
                self.out.push(Action::ScheduleTimeout { view: self.view, kind: TimerKind::Retry, after_ms });
            }
        }
    }

    /// What a stuck peer may be missing: our votes in the current view, the
    /// highest certified block, every nullification after it (needed to
    /// validate proposals extending it), our latest finalization, our status.
    fn rebroadcast(&mut self, view: View) {
        let mut messages = Vec::new();
        if let Some(round) = self.rounds.get(&view) {
            messages.extend(round.my_votes.iter().cloned().map(Message::Vote));
        }
        let mut nullifications = Vec::new();
        for (_, round) in self.rounds.range(..view).rev() {
            if let Some(certificate) = round.finalization.as_ref().or(round.notarization.as_ref()) {
                let header = match certificate.vote.kind {
                    VoteKind::Notarize { block, .. } | VoteKind::Finalize { block, .. } => {
                        self.blocks.get(&block).map(|b| b.header.clone())
                    }
                    VoteKind::Nullify => None,
                };
                messages.push(Message::Certified { header, certificate: certificate.clone() });
                break;
            }
            match &round.nullification {
                Some(certificate) if nullifications.len() < REBROADCAST_NULLIFICATIONS => {
                    nullifications.push(Message::Nullification(certificate.clone()));
                }
                _ => break,
            }
        }
        messages.extend(nullifications);
        if let Some(certificate) = self.finalized.certificate.clone() {
            messages.push(Message::Certified { header: Some(self.finalized.header.clone()), certificate });
        }
        let (epoch, finalized) = (self.config.epoch, self.finalized.header.height);
        messages.push(Message::Status { epoch, view, finalized });
        self.out.extend(messages.into_iter().map(Action::Broadcast));
        self.retry_block_requests();
    }
}
