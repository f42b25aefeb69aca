//! Any bytes a peer sends as one frame: decoding never panics, and whatever
//! it accepts keeps every limit of its kind.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vanna_network::wire::{Received, decode};

fuzz_target!(|data: &[u8]| {
    if let Ok(Received::Message(message)) = decode(bytes::Bytes::copy_from_slice(data)) {
        assert_eq!(message.check(), Ok(()));
    }
});
