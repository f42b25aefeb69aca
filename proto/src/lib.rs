//! Vanna's wire types: everything that crosses a process boundary, in protobuf
//! package `vanna.v1`. Owns no logic; the runtime and clients give these types
//! meaning. With the default `grpc` feature it also carries the tonic service
//! stubs; the pure cores use the messages only.

#[allow(clippy::all, missing_docs)]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/vanna.v1.rs"));
}

/// The encoded `FileDescriptorSet` of every `vanna.v1` file, for gRPC server
/// reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/vanna_descriptor.bin"));
