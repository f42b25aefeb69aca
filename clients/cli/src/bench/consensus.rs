//! `vanna bench consensus`: what consensus costs with real BLS signatures.
//!
//! - CPU per finalized block: the deterministic simulator (no faults) runs
//!   4, 16 and 100 validators on one thread; all validators' work (signing
//!   with the protection store, verifying, aggregating) divided by blocks.
//! - Finality certificate verification against raw blst
//!   `fast_aggregate_verify` over the same signers and message, interleaved in
//!   the same run; the goal is a ratio of at most 1.2.
//! - Vote processing: one aggregate check of a quorum of votes against a
//!   check of each vote, and the fallback cost when one vote is bad.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Instant;

use blst::BLST_ERROR;
use serde::Serialize;
use vanna_consensus::{
    BlockHash, Bls, BlsSecretKey, BlsSignature, Certificate, ChainId, Epoch, Height, Scheme, Signable, SignerBitmap,
    ValidatorEntry, ValidatorIndex, ValidatorSet, View, Vote, VoteKind, hash_bytes, verify_votes,
};
use vanna_sim::{SimConfig, run_seed};

use crate::CliResult;

const SIZES: [usize; 3] = [4, 16, 100];
const CHAIN: ChainId = ChainId(1);

/// `vanna bench consensus` options.
#[derive(clap::Args)]
pub struct Args {
    /// Finalized blocks to simulate per size (fewer for 100 validators; at least 1).
    #[arg(long, default_value_t = 40, allow_negative_numbers = true, value_parser = clap::value_parser!(u64).range(1..))]
    pub blocks: u64,
    /// Repetitions of each verification measurement (at least 1).
    #[arg(long, default_value_t = 200, allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(1..))]
    pub iterations: u32,
    /// Print one JSON object instead of the human summary.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct SizeReport {
    pub validators: usize,
    pub blocks_finalized: u64,
    /// All validators' CPU per finalized block (single-threaded simulation).
    pub cpu_ms_per_block: f64,
    pub cpu_ms_per_block_per_validator: f64,
    pub certificate_signers: usize,
    pub cert_verify_us: f64,
    pub raw_fast_aggregate_verify_us: f64,
    pub cert_verify_ratio_to_raw: f64,
    pub votes_aggregate_then_verify_us: f64,
    pub votes_verify_each_us: f64,
    pub votes_speedup: f64,
    /// One bad vote in the batch: the aggregate fails, then single checks.
    pub votes_with_one_bad_us: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub sizes: Vec<SizeReport>,
    /// The worst ratio over sizes (the figure the goal of 1.2 is about).
    pub cert_verify_ratio_to_raw: f64,
}

pub fn run(args: &Args) -> CliResult {
    let mut sizes = Vec::new();
    for validators in SIZES {
        sizes.push(measure(validators, args)?);
    }
    let worst = sizes.iter().map(|s| s.cert_verify_ratio_to_raw).fold(0.0, f64::max);
    let report = Report { sizes, cert_verify_ratio_to_raw: worst };
    crate::output::emit(args.json, &report, |report| {
        outln!("consensus (BLS12-381 min_pk via blst):");
        for s in &report.sizes {
            outln!(
                "  {:>3} validators: {:.2} ms CPU per finalized block ({:.3} ms per validator, {} blocks)",
                s.validators,
                s.cpu_ms_per_block,
                s.cpu_ms_per_block_per_validator,
                s.blocks_finalized
            );
            outln!(
                "      certificate ({} signers): {:.1} us vs raw fast_aggregate_verify {:.1} us = ratio {:.3}",
                s.certificate_signers,
                s.cert_verify_us,
                s.raw_fast_aggregate_verify_us,
                s.cert_verify_ratio_to_raw
            );
            outln!(
                "      votes: aggregate-then-verify {:.1} us vs each {:.1} us ({:.1}x); one bad vote {:.1} us",
                s.votes_aggregate_then_verify_us,
                s.votes_verify_each_us,
                s.votes_speedup,
                s.votes_with_one_bad_us
            );
        }
        outln!("  worst certificate ratio to raw: {:.3} (goal <= 1.2)", report.cert_verify_ratio_to_raw);
    })
}

fn measure(validators: usize, args: &Args) -> Result<SizeReport, Box<dyn std::error::Error>> {
    // CPU per block through the simulator.
    let mut config = SimConfig::new(validators, 0);
    config.bls = true;
    config.blocks_after_stable = if validators >= 100 { (args.blocks / 4).max(3) } else { args.blocks };
    let started = Instant::now();
    let report = run_seed(&config, 1);
    let elapsed_ms = started.elapsed().as_secs_f64() * 1e3;
    if !report.violations.is_empty() || report.blocks_finalized == 0 {
        return Err(format!("simulation with {validators} validators failed: {:?}", report.violations).into());
    }
    let cpu_ms_per_block = elapsed_ms / report.blocks_finalized as f64;

    // A validator set and a quorum of finalize votes.
    let secrets: Vec<BlsSecretKey> = (0..validators)
        .map(|i| BlsSecretKey::from_seed(&hash_bytes(b"bench", &(i as u64).to_be_bytes())))
        .collect::<Result<_, _>>()?;
    let entries =
        secrets.iter().map(|s| ValidatorEntry { public_key: Bls::public_key(s), operator: vec![], power: 1 }).collect();
    let set = ValidatorSet::<Bls>::new(entries)?;
    let mut ordered: Vec<&BlsSecretKey> = secrets.iter().collect();
    ordered.sort_by_key(|s| set.index_of(&Bls::public_key(s)).map_or(u32::MAX, |i| i.0));
    let quorum = validators * 2 / 3 + 1;
    let vote = Vote {
        epoch: Epoch(0),
        view: View(9),
        kind: VoteKind::Finalize { height: Height(8), block: BlockHash([3; 32]) },
    };
    let message = Signable::Vote(vote).signing_bytes(CHAIN);
    let votes: BTreeMap<ValidatorIndex, BlsSignature> =
        (0..quorum).map(|i| (ValidatorIndex(i as u32), Bls::sign(ordered[i], &message))).collect();
    let mut signers = SignerBitmap::new(validators);
    for index in votes.keys() {
        signers.set(*index);
    }
    let aggregate = Bls::aggregate(&votes.values().collect::<Vec<_>>()).ok_or("empty quorum")?;
    let certificate = Certificate { vote, signers, signature: aggregate.clone() };
    certificate.verify(CHAIN, Epoch(0), &set)?;

    // The raw baseline: blst's own types for the same keys and signature.
    let raw_keys: Vec<blst::min_pk::PublicKey> = votes
        .keys()
        .map(|i| set.get(*i).map(|e| e.public_key.to_bytes()).ok_or("signer"))
        .map(|bytes| bytes.map(|b| blst::min_pk::PublicKey::from_bytes(&b)))
        .collect::<Result<Result<_, _>, _>>()?
        .map_err(|e| format!("{e:?}"))?;
    let raw_key_refs: Vec<&blst::min_pk::PublicKey> = raw_keys.iter().collect();
    let raw_signature = blst::min_pk::Signature::from_bytes(&aggregate.to_bytes()).map_err(|e| format!("{e:?}"))?;
    let dst = vanna_consensus::DST_SIGNATURE;
    if raw_signature.fast_aggregate_verify(false, &message, dst, &raw_key_refs) != BLST_ERROR::BLST_SUCCESS {
        return Err("raw baseline failed to verify".into());
    }

    // Interleaved rounds so that both sides see the same machine state.
    let rounds = 10;
    let per_round = (args.iterations / rounds).max(1);
    let (mut ours, mut raw) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        ours.push(time_us(per_round, || black_box(certificate.verify(CHAIN, Epoch(0), &set)).is_ok())?);
        raw.push(time_us(per_round, || {
            black_box(raw_signature.fast_aggregate_verify(false, &message, dst, &raw_key_refs))
                == BLST_ERROR::BLST_SUCCESS
        })?);
    }
    let cert_verify_us = median(&mut ours);
    let raw_us = median(&mut raw);

    let vote_iterations = (args.iterations / 10).max(3);
    let batch_us = time_us(vote_iterations, || verify_votes(CHAIN, &set, vote, &votes).len() == quorum)?;
    let each_us = time_us(vote_iterations, || {
        votes.iter().all(|(i, s)| set.get(*i).is_some_and(|e| Bls::verify(&e.public_key, &message, s)))
    })?;
    let mut with_bad = votes.clone();
    let wrong = Bls::sign(ordered[0], b"another message");
    with_bad.insert(ValidatorIndex(0), wrong);
    let bad_us = time_us(vote_iterations, || verify_votes(CHAIN, &set, vote, &with_bad).len() == quorum - 1)?;

    Ok(SizeReport {
        validators,
        blocks_finalized: report.blocks_finalized,
        cpu_ms_per_block,
        cpu_ms_per_block_per_validator: cpu_ms_per_block / validators as f64,
        certificate_signers: quorum,
        cert_verify_us,
        raw_fast_aggregate_verify_us: raw_us,
        cert_verify_ratio_to_raw: cert_verify_us / raw_us,
        votes_aggregate_then_verify_us: batch_us,
        votes_verify_each_us: each_us,
        votes_speedup: each_us / batch_us,
        votes_with_one_bad_us: bad_us,
    })
}

/// Mean microseconds per call of `work`, which must answer `true` every time
/// (a benchmark of a check that fails would measure the wrong path).
fn time_us(iterations: u32, mut work: impl FnMut() -> bool) -> Result<f64, String> {
    let started = Instant::now();
    let mut ok = true;
    for _ in 0..iterations {
        ok &= work();
    }
    let elapsed = started.elapsed().as_secs_f64() * 1e6 / f64::from(iterations);
    if ok { Ok(elapsed) } else { Err("a measured verification gave the wrong answer".into()) }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
