use std::net::SocketAddr;
use std::time::Duration;

use vanna_proto::v1::peer_frame::DisconnectReason as WireReason;

use crate::PeerId;

/// Everything the network refuses: a configuration, a peer's frame or
/// handshake, or a send it cannot perform.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetworkError {
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: SocketAddr, reason: String },
    #[error("invalid network configuration: {0}")]
    Config(String),
    #[error("the operating system gave no randomness: {0}")]
    Randomness(String),

    #[error("frame does not decode: {0}")]
    Malformed(String),
    #[error("frame has no kind")]
    EmptyFrame,
    #[error("{what} is {got} bytes, over the limit of {max}")]
    TooLarge { what: &'static str, got: usize, max: usize },
    #[error("{what} has {got} entries, over the limit of {max}")]
    TooMany { what: &'static str, got: usize, max: usize },
    #[error("invalid frame: {0}")]
    Invalid(&'static str),
    #[error("unexpected {frame} frame {when}")]
    Unexpected { frame: &'static str, when: &'static str },
    #[error("frame refused by the transport: {0}")]
    Transport(String),

    #[error("peer is on chain {got:?}, we are on {expected:?}")]
    WrongChain { expected: String, got: String },
    #[error("peer has another genesis hash")]
    WrongGenesis,
    #[error("peer speaks protocol version {got}, we speak {expected}")]
    WrongVersion { expected: u32, got: u32 },
    #[error("handshake {0} is malformed")]
    BadHandshake(&'static str),
    #[error("handshake signature does not verify for the claimed key")]
    BadSignature,
    #[error("the link leads back to this node")]
    SelfConnection,
    #[error("handshake did not finish within {0:?}")]
    HandshakeTimeout(Duration),
    #[error("link closed during the handshake: {0}")]
    Closed(String),

    #[error("no connected peer {0}")]
    UnknownPeer(PeerId),
    #[error("outbound queue of {0} is full; the peer is disconnected")]
    QueueFull(PeerId),
    #[error("already dialing {0} addresses, the most allowed")]
    TooManyDialTargets(usize),
}

/// Why a link ended, as reported in [`crate::PeerEvent::Disconnected`] and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The local node asked for it ([`crate::NetworkHandle::disconnect`]).
    Requested(String),
    /// Another link to the same peer is kept instead.
    Duplicate,
    TooManyPeers,
    /// A consensus frame from a peer outside the current and next validator sets.
    NotAValidator,
    /// A frame or handshake no honest peer sends.
    Violation(NetworkError),
    /// Its outbound queue filled up: it reads slower than we send.
    SlowPeer,
    /// Over its rate limits for half the time or more, over a period of `flood_tolerance`.
    Flood,
    /// Nothing heard from it for the idle timeout.
    Timeout,
    /// The stream ended or the transport failed.
    Closed(String),
    /// The peer said goodbye.
    Remote(WireReason),
    Shutdown,
}

impl DisconnectReason {
    /// What to tell the peer before closing, if anything is worth waiting to
    /// flush; `None` closes the socket at once (a hostile or stuck peer).
    pub(crate) fn goodbye(&self) -> Option<WireReason> {
        match self {
            Self::Requested(_) => Some(WireReason::Requested),
            Self::Duplicate => Some(WireReason::Duplicate),
            Self::TooManyPeers => Some(WireReason::TooManyPeers),
            Self::Shutdown => Some(WireReason::Shutdown),
            Self::NotAValidator | Self::Violation(_) | Self::Flood => Some(WireReason::ProtocolViolation),
            Self::SlowPeer | Self::Timeout | Self::Closed(_) | Self::Remote(_) => None,
        }
    }

    /// Whether the close waits for the goodbye to flush: never for a peer
    /// that misbehaved, whose reading we do not wait for.
    pub(crate) fn lingers(&self) -> bool {
        matches!(self, Self::Requested(_) | Self::Duplicate | Self::TooManyPeers)
    }

    /// A fault of the peer, worth a warning in the log.
    pub(crate) fn is_fault(&self) -> bool {
        matches!(self, Self::NotAValidator | Self::Violation(_) | Self::SlowPeer | Self::Flood | Self::Timeout)
    }
}

impl std::fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Requested(why) => write!(f, "requested: {why}"),
            Self::Duplicate => f.write_str("duplicate link"),
            Self::TooManyPeers => f.write_str("too many peers"),
            Self::NotAValidator => f.write_str("consensus frame from a peer outside the validator sets"),
            Self::Violation(error) => write!(f, "protocol violation: {error}"),
            Self::SlowPeer => f.write_str("outbound queue full"),
            Self::Flood => f.write_str("over its rate limit for too long"),
            Self::Timeout => f.write_str("idle timeout"),
            Self::Closed(why) => write!(f, "closed: {why}"),
            Self::Remote(reason) => write!(f, "peer said goodbye: {}", reason.as_str_name()),
            Self::Shutdown => f.write_str("shutdown"),
        }
    }
}
