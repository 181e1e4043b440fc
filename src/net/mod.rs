//! Network: the connection handlers the runtime's listeners hand accepted
//! streams to. `connection` serves Kafka clients (one task pair per
//! connection, reader and writer, request framing and back-pressure),
//! `metrics_http` the Prometheus endpoint.

pub mod amqp;
pub mod connection;
pub mod framing;
pub mod metrics_http;

pub use connection::serve_connection;
