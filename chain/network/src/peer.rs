use std::net::SocketAddr;
use std::time::Duration;

use crate::{DisconnectReason, Message};

/// Who is at the other end of a link.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PeerId {
    /// A peer that proved this compressed BLS consensus key in the handshake
    /// (a validator of some epoch, or one hoping to be).
    Key([u8; 48]),
    /// A peer that proved no key (a full node), numbered by this node in
    /// connection order: the number means nothing elsewhere.
    Anonymous(u64),
}

impl std::fmt::Debug for PeerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Key(key) => write!(f, "key:{:02x}{:02x}{:02x}{:02x}..", key[0], key[1], key[2], key[3]),
            Self::Anonymous(number) => write!(f, "anonymous:{number}"),
        }
    }
}

impl std::fmt::Display for PeerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// Which side dialed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Inbound,
    Outbound,
}

/// A connected peer, as [`crate::NetworkHandle::peers`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    pub id: PeerId,
    pub addr: SocketAddr,
    pub direction: Direction,
    /// In the current or next validator set now, so it may send consensus frames.
    pub validator: bool,
    /// Round trip of the last answered ping.
    pub rtt: Option<Duration>,
}

/// A message a peer sent, for the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inbound {
    pub peer: PeerId,
    pub message: Message,
}

/// Links coming and going.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerEvent {
    Connected(PeerInfo),
    Disconnected { peer: PeerId, reason: DisconnectReason },
}
