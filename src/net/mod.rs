//! Network: the connection handlers the runtime's listeners hand accepted
//! streams to. `connection` serves Kafka clients (one task pair per
//! connection, reader and writer, request framing and back-pressure),
//! `amqp` AMQP 0-9-1 clients (the socket side of `crate::amqp::session`),
//! `metrics_http` the Prometheus endpoint.

pub mod amqp;
pub mod connection;
pub mod framing;
pub mod metrics_http;

pub use connection::serve_connection;
