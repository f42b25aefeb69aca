//! The runtime's side of the staking ledger (`vanna-staking`): the accounts
//! as its [`Bank`], and the ledger's actions and block steps called with the
//! block's height and time. The ledger itself never sees `State`.

use vanna_proto::v1 as wire;
pub use vanna_staking::*;

use crate::commit::Commitment;
use crate::error::TxError;
use crate::events::{ActionOutcome, Event};
use crate::ids::Address;
use crate::money::Amount;
use crate::state::{Account, State};

/// The accounts as the ledger's bank: liquid VANNA and USD rewards.
pub(crate) struct Accounts<'a> {
    accounts: &'a mut Vec<Account>,
    index: &'a mut std::collections::BTreeMap<Address, u64>,
    commitment: &'a mut Commitment,
}

impl Accounts<'_> {
    fn open(&mut self, address: &Address) -> usize {
        crate::state::account_or_create(self.accounts, self.index, self.commitment, *address) as usize
    }
}

impl Bank for Accounts<'_> {
    fn vanna(&self, account: &Address) -> u64 {
        self.index.get(account).map_or(0, |&owner| self.accounts[owner as usize].vanna.to_micro())
    }

    fn move_vanna(&mut self, account: &Address, delta: i128) {
        let owner = self.open(account);
        let account = &mut self.accounts[owner];
        let balance = u64::try_from(account.vanna.to_micro() as i128 + delta)
            .expect("the ledger checks that liquid VANNA never goes negative");
        account.vanna = Amount::from_micro(balance);
        self.commitment.touch_account(owner as u64);
    }

    fn pay_usd(&mut self, account: &Address, amount: u64) {
        let owner = self.open(account);
        let account = &mut self.accounts[owner];
        account.usd = account.usd.plus(Amount::from_micro(amount));
        self.commitment.touch_account(owner as u64);
    }
}

impl State {
    /// The ledger with the accounts as its bank, and the block's height and time.
    pub(crate) fn staking_parts(&mut self) -> (&mut Staking, Accounts<'_>, Now) {
        let now = Now { height: self.height, time_ms: self.time_ms };
        let bank =
            Accounts { accounts: &mut self.accounts, index: &mut self.account_index, commitment: &mut self.commitment };
        (&mut self.staking, bank, now)
    }

    /// A staking action of the account `owner`.
    pub(crate) fn staking_action(
        &mut self,
        owner: u64,
        action: StakingAction<'_>,
        events: &mut Vec<Event>,
    ) -> Result<ActionOutcome, TxError> {
        let address = self.accounts[owner as usize].address;
        let (staking, mut bank, now) = self.staking_parts();
        match action {
            StakingAction::Register(register) => staking.register_validator(&mut bank, now, address, register, events),
            StakingAction::Edit(edit) => staking.edit_validator(now, address, edit),
            StakingAction::Delegate(delegate) => staking.delegate(&mut bank, now, address, delegate, events),
            StakingAction::Undelegate(undelegate) => staking.undelegate(&mut bank, now, address, undelegate, events),
            StakingAction::Redelegate(redelegate) => staking.redelegate(&mut bank, now, address, redelegate, events),
            StakingAction::WithdrawUnbonded => staking.withdraw_unbonded(&mut bank, now, address, events),
            StakingAction::ClaimRewards(claim) => staking.claim_rewards(&mut bank, address, claim, events),
            StakingAction::Unjail => staking.unjail(now, address, events),
        }
    }

    /// The `ClaimRewards` action alone: public so that benchmarks can time the ledger.
    pub fn claim_rewards(
        &mut self,
        owner: u64,
        claim: &wire::ClaimRewards,
        events: &mut Vec<Event>,
    ) -> Result<ActionOutcome, TxError> {
        self.staking_action(owner, StakingAction::ClaimRewards(claim), events)
    }

    /// Applies verified evidence (slash, jail, tombstone); false when ignored.
    pub fn apply_evidence(&mut self, evidence: &EvidenceRecord, events: &mut Vec<Event>) -> bool {
        let (staking, mut bank, now) = self.staking_parts();
        staking.apply_evidence(&mut bank, now, evidence, events)
    }

    /// The ledger's end of the block: who signed (downtime), the block's
    /// fees to the active set, and at an epoch boundary the next active set.
    pub(crate) fn end_staking_block(&mut self, signers: Option<&[[u8; 48]]>, events: &mut Vec<Event>) {
        let pool = self.fee_pool.to_micro();
        let (staking, mut bank, now) = self.staking_parts();
        if let Some(signers) = signers {
            staking.record_signatures(&mut bank, now, signers, events);
        }
        let paid = staking.distribute_fees(pool, events);
        staking.end_block(now, events);
        if paid > 0 {
            self.fee_pool = self.fee_pool.minus(Amount::from_micro(paid)).expect("paid out at most the pool");
            self.commitment.touch_global();
        }
    }
}

/// The staking actions of a transaction.
pub(crate) enum StakingAction<'a> {
    Register(&'a wire::RegisterValidator),
    Edit(&'a wire::EditValidator),
    Delegate(&'a wire::Delegate),
    Undelegate(&'a wire::Undelegate),
    Redelegate(&'a wire::Redelegate),
    WithdrawUnbonded,
    ClaimRewards(&'a wire::ClaimRewards),
    Unjail,
}
