//! Signature checks of submitted and gossiped transactions, off the event
//! loop, on a fixed pool of threads (one per core). A fixed pool, not a
//! blocking task per transaction: under load that spawned hundreds of
//! threads fighting for two cores, and the spawning alone cost more than
//! the check. A gossiped transaction this node verified meanwhile (a block
//! carrying it was executed first) is skipped, so none is checked twice.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};
use vanna_types::Envelope;

use crate::rpc::Refusal;

/// Transactions a thread takes from the queue at once.
const BATCH: usize = 64;

/// A transaction to check, and where its submitter waits (none for gossip).
pub struct Job {
    pub bytes: Vec<u8>,
    pub reply: Option<oneshot::Sender<Result<[u8; 32], Refusal>>>,
}

/// A transaction whose envelope was checked.
pub struct Opened {
    pub bytes: Vec<u8>,
    pub envelope: Result<Envelope, vanna_types::TxError>,
    pub reply: Option<oneshot::Sender<Result<[u8; 32], Refusal>>>,
}

/// Whether this node verified a transaction's signature already.
pub type Known = Arc<dyn Fn(&[u8; 32]) -> bool + Send + Sync>;

/// The pool's queue. Dropping it stops the threads once the queue is empty.
pub struct Verifiers {
    jobs: SyncSender<Job>,
    /// Jobs queued or being checked.
    queued: Arc<AtomicUsize>,
}

impl Verifiers {
    /// Starts `threads` threads that check at most `capacity` queued
    /// transactions against `chain_id` and hand each result to `done`;
    /// gossip that is `known` by then is dropped unchecked.
    pub fn start(
        threads: usize,
        capacity: usize,
        chain_id: String,
        done: mpsc::Sender<Opened>,
        known: Known,
    ) -> std::io::Result<Verifiers> {
        let (jobs, queue) = sync_channel::<Job>(capacity);
        let queue = Arc::new(Mutex::new(queue));
        let queued = Arc::new(AtomicUsize::new(0));
        for index in 0..threads.max(1) {
            let worker = Worker {
                queue: queue.clone(),
                chain_id: chain_id.clone(),
                done: done.clone(),
                known: known.clone(),
                queued: queued.clone(),
            };
            std::thread::Builder::new().name(format!("verify-{index}")).spawn(move || worker.run())?;
        }
        Ok(Verifiers { jobs, queued })
    }

    /// Queues a check; a full queue gives the job back.
    pub fn submit(&self, job: Job) -> Result<(), Job> {
        self.queued.fetch_add(1, Ordering::Relaxed);
        self.jobs.try_send(job).map_err(|error| {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            match error {
                TrySendError::Full(job) | TrySendError::Disconnected(job) => job,
            }
        })
    }

    /// Jobs queued or being checked.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }
}

struct Worker {
    queue: Arc<Mutex<Receiver<Job>>>,
    chain_id: String,
    done: mpsc::Sender<Opened>,
    known: Known,
    queued: Arc<AtomicUsize>,
}

impl Worker {
    fn run(self) {
        let mut batch = Vec::with_capacity(BATCH);
        while self.take(&mut batch) {
            for Job { bytes, reply } in batch.drain(..) {
                self.queued.fetch_sub(1, Ordering::Relaxed);
                if reply.is_none() && (self.known)(&vanna_types::tx::transaction_hash(&bytes)) {
                    continue;
                }
                let envelope = vanna_types::open_envelope(&bytes, &self.chain_id);
                if self.done.blocking_send(Opened { bytes, envelope, reply }).is_err() {
                    return;
                }
            }
        }
    }

    /// Waits for a job, then takes up to a batch; false once the queue is closed.
    fn take(&self, batch: &mut Vec<Job>) -> bool {
        // A poisoned lock means another verifier panicked; the queue is still sound.
        let queue = self.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match queue.recv() {
            Ok(job) => batch.push(job),
            Err(_) => return false,
        }
        while batch.len() < BATCH
            && let Ok(job) = queue.try_recv()
        {
            batch.push(job);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vanna_runtime::tx::{Signer, limit_order, place};

    fn transaction(chain_id: &str, nonce: u64) -> Vec<u8> {
        let order = place(limit_order("BTC-25DEC26-100000-C", vanna_proto::v1::Side::Buy, "5000", "0.1"));
        Signer::from_seed("vanna-test/verifier").sign(chain_id, nonce, vec![order])
    }

    #[test]
    fn a_full_queue_gives_the_job_back() {
        // No thread drains this one: a queue of two holds two.
        let (jobs, _queue) = sync_channel::<Job>(2);
        let full = Verifiers { jobs, queued: Arc::default() };
        let job = || Job { bytes: transaction("vanna-test", 0), reply: None };
        assert!(full.submit(job()).is_ok());
        assert!(full.submit(job()).is_ok());
        assert!(full.submit(job()).is_err());
        assert_eq!(full.queued(), 2);
    }

    #[test]
    fn each_transaction_comes_back_checked_once_and_known_gossip_is_dropped() {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let (done, mut opened) = mpsc::channel(16);
        let known_one = transaction("vanna-test", 7);
        let known_hash = vanna_types::tx::transaction_hash(&known_one);
        let known: Known = Arc::new(move |hash| *hash == known_hash);
        let verifiers = Verifiers::start(2, 16, "vanna-test".into(), done, known).unwrap();
        let (reply, answer) = oneshot::channel();
        // Known, but a submitter waits: checked and answered all the same.
        assert!(verifiers.submit(Job { bytes: known_one.clone(), reply: Some(reply) }).is_ok());
        assert!(verifiers.submit(Job { bytes: known_one, reply: None }).is_ok());
        assert!(verifiers.submit(Job { bytes: transaction("vanna-test", 0), reply: None }).is_ok());
        assert!(verifiers.submit(Job { bytes: transaction("another-chain", 1), reply: None }).is_ok());
        let mut results: Vec<(bool, bool)> = runtime.block_on(async {
            let mut results = Vec::new();
            for _ in 0..3 {
                let opened = opened.recv().await.expect("a result");
                results.push((opened.envelope.is_ok(), opened.reply.is_some()));
            }
            results
        });
        results.sort();
        assert_eq!(results, vec![(false, false), (true, false), (true, true)]);
        drop(answer);
        drop(verifiers);
        // The known gossip never came back, and the threads stop with the queue.
        assert!(runtime.block_on(opened.recv()).is_none());
    }
}
