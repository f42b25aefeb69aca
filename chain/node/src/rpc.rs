//! The node's public gRPC endpoint: submit a signed transaction, the node's
//! status, the standard health service and server reflection (v1 and
//! v1alpha), on one address.

use std::net::SocketAddr;

use tokio::sync::{mpsc, oneshot, watch};
use tonic::{Request, Response, Status};
use vanna_proto::v1 as wire;

/// Requests in flight to the node at most; beyond, callers are told to retry.
pub const MAX_PENDING_REQUESTS: usize = 4_096;
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

/// A request the node answers from its state, with where the answer goes.
#[derive(Debug)]
pub enum NodeRequest {
    /// A transaction for the mempool: its hash once admitted.
    Submit {
        bytes: Vec<u8>,
        reply: oneshot::Sender<Result<[u8; 32], Refusal>>,
    },
    Account {
        address: vanna_runtime::Address,
        reply: oneshot::Sender<Option<wire::GetAccountResponse>>,
    },
    StateRoot {
        height: u64,
        reply: oneshot::Sender<Option<[u8; 32]>>,
    },
    Transaction {
        hash: [u8; 32],
        reply: oneshot::Sender<Option<wire::GetTransactionResponse>>,
    },
}

/// What the status call reports, kept current by the node.
pub type StatusWatch = watch::Receiver<wire::StatusResponse>;

#[derive(Debug, Clone)]
struct NodeApi {
    requests: mpsc::Sender<NodeRequest>,
    status: StatusWatch,
}

impl NodeApi {
    /// Hands a request to the node and waits for its answer.
    async fn ask<T>(&self, request: impl FnOnce(oneshot::Sender<T>) -> NodeRequest) -> Result<T, Status> {
        let (reply, answer) = oneshot::channel();
        self.requests.try_send(request(reply)).map_err(|error| match error {
            mpsc::error::TrySendError::Full(_) => {
                Status::resource_exhausted("the node has too many requests in flight; retry shortly")
            }
            mpsc::error::TrySendError::Closed(_) => Status::unavailable("the node is stopping"),
        })?;
        answer.await.map_err(|_| Status::unavailable("the node is stopping"))
    }
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
        let hash = self.ask(|reply| NodeRequest::Submit { bytes, reply }).await??;
        Ok(Response::new(wire::SubmitTransactionResponse { hash: hash.to_vec() }))
    }

    async fn get_account(
        &self,
        request: Request<wire::GetAccountRequest>,
    ) -> Result<Response<wire::GetAccountResponse>, Status> {
        let bytes = request.into_inner().address;
        let address = vanna_runtime::Address::from_slice(&bytes)
            .map_err(|_| Status::invalid_argument(format!("address: {} bytes, an address is 20", bytes.len())))?;
        match self.ask(|reply| NodeRequest::Account { address, reply }).await? {
            Some(account) => Ok(Response::new(account)),
            None => Err(Status::not_found(format!("account {address} does not exist: it holds nothing yet"))),
        }
    }

    async fn get_state_root(
        &self,
        request: Request<wire::GetStateRootRequest>,
    ) -> Result<Response<wire::GetStateRootResponse>, Status> {
        let height = request.into_inner().height;
        match self.ask(|reply| NodeRequest::StateRoot { height, reply }).await? {
            Some(root) => Ok(Response::new(wire::GetStateRootResponse { height, state_root: root.to_vec() })),
            None => Err(Status::not_found(format!("this node has no state root for height {height}"))),
        }
    }

    async fn get_transaction(
        &self,
        request: Request<wire::GetTransactionRequest>,
    ) -> Result<Response<wire::GetTransactionResponse>, Status> {
        let bytes = request.into_inner().hash;
        let hash: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| Status::invalid_argument(format!("hash: {} bytes, a transaction hash is 32", bytes.len())))?;
        match self.ask(|reply| NodeRequest::Transaction { hash, reply }).await? {
            Some(found) => Ok(Response::new(found)),
            None => Err(Status::not_found(format!(
                "transaction {} is neither waiting here nor in a finalized block this node stores",
                hex::encode(hash)
            ))),
        }
    }

    async fn status(&self, _: Request<wire::StatusRequest>) -> Result<Response<wire::StatusResponse>, Status> {
        Ok(Response::new(self.status.borrow().clone()))
    }
}

/// Serves the API on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    requests: mpsc::Sender<NodeRequest>,
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
    let api =
        wire::node_server::NodeServer::new(NodeApi { requests, status }).max_decoding_message_size(MAX_REQUEST_BYTES);
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
