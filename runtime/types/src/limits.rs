//! Every bound the runtime enforces, in one place (clients check them before
//! sending). Each has a test at its edge.

/// Largest encoded signed transaction accepted, in bytes.
pub const MAX_TRANSACTION_BYTES: usize = 8 * 1024;
/// Actions (orders, cancels, ...) in one transaction.
pub const MAX_ACTIONS_PER_TRANSACTION: usize = 32;
/// Transactions in one block.
pub const MAX_TRANSACTIONS_PER_BLOCK: usize = 20_000;
/// Open orders per account, across all series.
pub const MAX_OPEN_ORDERS_PER_ACCOUNT: usize = 256;
/// Open orders per account in one series.
pub const MAX_OPEN_ORDERS_PER_SERIES: usize = 64;
/// Series in which one account may hold positions or orders at once.
pub const MAX_SERIES_PER_ACCOUNT: usize = 128;
/// Series listed per underlying at once.
pub const MAX_SERIES_PER_UNDERLYING: usize = 2_048;
/// Underlyings at genesis.
pub const MAX_UNDERLYINGS: usize = 64;
/// Highest option price, in USD per contract.
pub const MAX_PRICE_USD: u64 = 10_000_000;
/// Largest order, in contracts.
pub const MAX_ORDER_CONTRACTS: u64 = 1_000_000;
/// Resting orders one incoming order may trade against; the rest of a larger
/// sweep is cancelled, so the work of one order is bounded.
pub const MAX_FILLS_PER_ORDER: u32 = 512;
/// Price levels a market order looks through when sizing itself to the
/// account's funds.
pub const MAX_MARKET_SWEEP_LEVELS: usize = 512;
/// Signed oracle reports in one block: one per active validator is the norm;
/// consensus never builds a block with more.
pub const MAX_ORACLE_REPORTS_PER_BLOCK: usize = 1_024;
