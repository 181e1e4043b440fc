//! The broker assembled: the runtime's shards with the listeners of the
//! protocols it serves, Kafka clients on `--listen` (`net::connection`, which
//! hands each request to `kafka`), AMQP clients on `--amqp-listen`
//! (`net::amqp`, with the AMQP broker as a per-shard service) and the
//! metrics endpoint on `--metrics` (`net::metrics_http`). The one module that knows every protocol; the
//! runtime knows none.

use std::time::Instant;

use crate::config::ServeConfig;
use crate::net;
use crate::runtime::{self, StartError};

/// Runs the broker until SIGTERM/SIGINT (see `runtime::serve`).
pub fn serve(config: ServeConfig) -> Result<(), StartError> {
    let started = Instant::now();
    // The client listener comes first: its address is the one advertised
    // and printed in the ready line.
    let mut listeners = vec![net::connection::listener(config.listen)];
    let mut services = Vec::new();
    if let Some(amqp) = &config.amqp {
        listeners.push(net::amqp::listener(amqp.listen));
        services.push(net::amqp::service(amqp.clone()));
    }
    if let Some(addr) = config.metrics {
        listeners.push(net::metrics_http::listener(addr, started));
    }
    runtime::serve(config, listeners, services)
}
