//! Network: the listener, one task pair per connection (reader and writer),
//! request framing and back-pressure.

pub mod amqp;
pub mod connection;
pub mod framing;
pub mod metrics_http;

pub use connection::serve_connection;
