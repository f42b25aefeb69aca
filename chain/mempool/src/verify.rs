//! Signature verification on several cores without an async runtime.

use std::thread;

use vanna_types::{Envelope, TxError, open_envelope};

/// More threads than this buys nothing on any machine a validator runs on.
pub const MAX_VERIFY_THREADS: usize = 256;

/// [`open_envelope`] of each transaction, in order, on up to `threads`
/// scoped threads (at least one, at most [`MAX_VERIFY_THREADS`]; each takes
/// a contiguous share). If the system refuses a thread, its share is
/// verified on the calling thread instead. Blocks until every result is in:
/// a node calls it from a blocking task, never from its event loop.
pub fn verify_batch(transactions: &[Vec<u8>], chain_id: &str, threads: usize) -> Vec<Result<Envelope, TxError>> {
    let open_all = |share: &[Vec<u8>]| share.iter().map(|bytes| open_envelope(bytes, chain_id)).collect::<Vec<_>>();
    let threads = threads.clamp(1, MAX_VERIFY_THREADS).min(transactions.len());
    if threads <= 1 {
        return open_all(transactions);
    }
    let share = transactions.len().div_ceil(threads);
    thread::scope(|scope| {
        let parts: Vec<_> = transactions
            .chunks(share)
            .map(|part| {
                (part, thread::Builder::new().name("verify".into()).spawn_scoped(scope, move || open_all(part)))
            })
            .collect();
        parts
            .into_iter()
            .flat_map(|(part, spawned)| match spawned {
                Ok(handle) => handle.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
                Err(_) => open_all(part),
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use vanna_types::tx::{Signer, cancel};

    #[test]
    fn results_come_back_in_order_whatever_the_thread_count() {
        let signer = Signer::from_seed("alice");
        let mut transactions: Vec<Vec<u8>> = (0..9).map(|nonce| signer.sign("c", nonce, vec![cancel(nonce)])).collect();
        transactions[4] = vec![0xff; 3];
        transactions[7] = signer.sign("other", 7, vec![cancel(7)]);
        let single = verify_batch(&transactions, "c", 1);
        for threads in [0, 2, 3, 8, 100, usize::MAX] {
            assert_eq!(verify_batch(&transactions, "c", threads), single, "{threads} threads");
        }
        for (nonce, result) in single.iter().enumerate() {
            match nonce {
                4 => assert!(matches!(result, Err(TxError::Malformed(_)))),
                7 => assert!(matches!(result, Err(TxError::WrongChainId { .. }))),
                _ => assert_eq!(result.as_ref().unwrap().nonce, nonce as u64),
            }
        }
        assert!(verify_batch(&[], "c", 4).is_empty());
    }
}
