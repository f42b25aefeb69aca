//! Decodes arbitrary bytes as a consensus message: it must never panic, and
//! what it accepts must be the canonical encoding of what it decodes to.
//! `cargo +nightly fuzz run consensus_decode`; keep findings as tests in
//! chain/consensus/tests/wire.rs.

#![no_main]

use libfuzzer_sys::fuzz_target;
use vanna_consensus::wire::{decode, encode};

fuzz_target!(|bytes: &[u8]| {
    if let Ok(message) = decode(bytes) {
        assert_eq!(encode(&message), bytes, "accepted a non-canonical encoding");
    }
});
