//! The node's public gRPC endpoint: submit a signed transaction, the node's
//! status, the standard health service and server reflection (v1 and
//! v1alpha), on one address.

use std::net::SocketAddr;

use tokio::sync::{mpsc, oneshot, watch};
use tonic::{Request, Response, Status};
use vanna_proto::v1 as wire;

/// Requests in flight to the node at most; beyond, callers are told to retry.
pub const MAX_PENDING_SUBMISSIONS: usize = 4_096;
/// Largest request the API decodes.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// Why a submitted transaction was not admitted, by the status code it maps to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The bytes are wrong: bad encoding, signature, chain id, size.
    Invalid(String),
    /// Well formed, but the chain's state refuses it now (stale nonce, unknown account).
    Precondition(String),
    /// A limit: the mempool or the account's queue is full.
    Exhausted(String),
    /// The node cannot take transactions now (syncing, stopping).
    Unavailable(String),
}

impl From<Refusal> for Status {
    fn from(refusal: Refusal) -> Status {
        match refusal {
            Refusal::Invalid(why) => Status::invalid_argument(why),
            Refusal::Precondition(why) => Status::failed_precondition(why),
            Refusal::Exhausted(why) => Status::resource_exhausted(why),
            Refusal::Unavailable(why) => Status::unavailable(why),
        }
    }
}

/// A transaction on its way to the mempool, with where the answer goes.
#[derive(Debug)]
pub struct Submission {
    pub bytes: Vec<u8>,
    pub reply: oneshot::Sender<Result<[u8; 32], Refusal>>,
}

/// What the status call reports, kept current by the node.
pub type StatusWatch = watch::Receiver<wire::StatusResponse>;

#[derive(Debug, Clone)]
struct NodeApi {
    submissions: mpsc::Sender<Submission>,
    status: StatusWatch,
}

#[tonic::async_trait]
impl wire::node_server::Node for NodeApi {
    async fn submit_transaction(
        &self,
        request: Request<wire::SubmitTransactionRequest>,
    ) -> Result<Response<wire::SubmitTransactionResponse>, Status> {
        let bytes = request.into_inner().transaction;
        if bytes.is_empty() {
            return Err(Status::invalid_argument("transaction: empty; send an encoded SignedTransaction"));
        }
        let (reply, answer) = oneshot::channel();
        self.submissions.try_send(Submission { bytes, reply }).map_err(|error| match error {
            mpsc::error::TrySendError::Full(_) => {
                Status::resource_exhausted("the node has too many submissions in flight; retry shortly")
            }
            mpsc::error::TrySendError::Closed(_) => Status::unavailable("the node is stopping"),
        })?;
        let hash = answer.await.map_err(|_| Status::unavailable("the node is stopping"))??;
        Ok(Response::new(wire::SubmitTransactionResponse { hash: hash.to_vec() }))
    }

    async fn status(&self, _: Request<wire::StatusRequest>) -> Result<Response<wire::StatusResponse>, Status> {
        Ok(Response::new(self.status.borrow().clone()))
    }
}

/// Serves the API on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    submissions: mpsc::Sender<Submission>,
    status: StatusWatch,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter.set_serving::<wire::node_server::NodeServer<NodeApi>>().await;
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(vanna_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .expect("the descriptor sets are well formed");
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(vanna_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .expect("the descriptor sets are well formed");
    let api = wire::node_server::NodeServer::new(NodeApi { submissions, status })
        .max_decoding_message_size(MAX_REQUEST_BYTES);
    tonic::transport::Server::builder()
        .concurrency_limit_per_connection(64)
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(api)
        .serve_with_incoming_shutdown(tokio_stream::wrappers::TcpListenerStream::new(listener), shutdown)
        .await
}

/// Binds the API's address (port 0 picks a free port).
pub async fn bind(address: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(address).await
}
