//! TCP sockets that the network can kill. Closing an HTTP/2 stream waits for
//! its buffered data to flush, which never happens if the peer stopped
//! reading; failing the socket's IO instead makes hyper drop the connection
//! at once. Every socket, accepted or dialed, carries a kill token (a child of
//! the network's shutdown token), and every accepted one also holds a
//! connection slot until it closes.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tonic::codegen::Service;
use tonic::transport::Uri;
use tonic::transport::server::Connected;
use tracing::debug;

/// What the link handler learns about the socket its stream came on.
#[derive(Debug, Clone)]
pub(crate) struct SocketInfo {
    pub remote: SocketAddr,
    pub kill: CancellationToken,
    /// Set by the first stream accepted on the socket: one link per socket.
    pub claimed: Arc<AtomicBool>,
}

pub(crate) struct Socket {
    stream: TcpStream,
    killed: Pin<Box<WaitForCancellationFutureOwned>>,
    info: SocketInfo,
    _slot: Option<OwnedSemaphorePermit>,
}

impl Socket {
    fn new(stream: TcpStream, remote: SocketAddr, kill: CancellationToken, slot: Option<OwnedSemaphorePermit>) -> Self {
        // Frames are small and latency-bound; Nagle would hold them back.
        let _ = stream.set_nodelay(true);
        let info = SocketInfo { remote, kill: kill.clone(), claimed: Arc::new(AtomicBool::new(false)) };
        Self { stream, killed: Box::pin(kill.cancelled_owned()), info, _slot: slot }
    }

    fn check_alive(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        match self.killed.as_mut().poll(cx) {
            Poll::Ready(()) => Err(io::Error::new(io::ErrorKind::ConnectionAborted, "link closed by the network")),
            Poll::Pending => Ok(()),
        }
    }
}

impl AsyncRead for Socket {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        self.check_alive(cx)?;
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Socket {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.check_alive(cx)?;
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.check_alive(cx)?;
        Pin::new(&mut self.stream).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

impl Connected for Socket {
    type ConnectInfo = SocketInfo;
    fn connect_info(&self) -> SocketInfo {
        self.info.clone()
    }
}

/// Accepts connections while slots last (a connection beyond them is closed
/// at once), and kills any on which no link is claimed within `claim_within`
/// (an idle HTTP/2 connection would otherwise hold its slot forever).
pub(crate) fn accept(
    listener: TcpListener,
    slots: Arc<Semaphore>,
    claim_within: std::time::Duration,
    shutdown: CancellationToken,
    tracker: tokio_util::task::TaskTracker,
) -> mpsc::Receiver<io::Result<Socket>> {
    // A small hand-over queue: hyper takes sockets as fast as they come.
    let (tx, rx) = mpsc::channel(16);
    let accept_shutdown = shutdown.clone();
    let watchdogs = tracker.clone();
    tracker.spawn(async move {
        loop {
            let (stream, remote) = tokio::select! {
                _ = accept_shutdown.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors and the like: wait and go on.
                        debug!(%error, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                debug!(%remote, "no connection slot left; closing");
                continue;
            };
            let socket = Socket::new(stream, remote, shutdown.child_token(), Some(slot));
            let (kill, claimed) = (socket.info.kill.clone(), socket.info.claimed.clone());
            watchdogs.spawn(async move {
                tokio::select! {
                    _ = kill.cancelled() => {}
                    _ = tokio::time::sleep(claim_within) => {
                        if !claimed.load(Ordering::Acquire) {
                            debug!(%remote, "no link claimed in time; closing");
                            kill.cancel();
                        }
                    }
                }
            });
            if tx.send(Ok(socket)).await.is_err() {
                return;
            }
        }
    });
    rx
}

/// Dials one address with a socket killed by `kill`.
#[derive(Debug, Clone)]
pub(crate) struct Connector {
    pub addr: SocketAddr,
    pub kill: CancellationToken,
}

impl Service<Uri> for Connector {
    type Response = TokioIo<Socket>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<TokioIo<Socket>>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), io::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        let (addr, kill) = (self.addr, self.kill.clone());
        Box::pin(async move {
            if kill.is_cancelled() {
                // tonic redials a broken channel on its own; a killed link stays dead.
                return Err(io::Error::new(io::ErrorKind::ConnectionAborted, "link closed by the network"));
            }
            let stream = TcpStream::connect(addr).await?;
            Ok(TokioIo::new(Socket::new(stream, addr, kill, None)))
        })
    }
}
