//! DescribeCluster v0-2: this single node (also the controller), the cluster
//! id. Asking for controller endpoints (v1 endpoint type 2) answers
//! UNSUPPORTED_ENDPOINT_TYPE, as a Kafka broker does.

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use kafka_protocol::protocol::StrBytes;

use super::metadata::CLUSTER_AUTHORIZED_OPERATIONS;
use super::{codes, decode_body, encode_response, Reply, RequestContext, RequestError, CLUSTER_ID, NODE_ID};
use crate::runtime::shard::Shard;

const ENDPOINT_BROKERS: i8 = 1;

pub async fn handle(shard: &Rc<Shard>, ctx: &RequestContext, body: Bytes) -> Result<Reply, RequestError> {
    let req: DescribeClusterRequest = decode_body(ctx, body)?;
    let mut resp = DescribeClusterResponse::default()
        .with_cluster_id(StrBytes::from_static_str(CLUSTER_ID))
        .with_controller_id(BrokerId(NODE_ID));
    if ctx.api_version >= 1 {
        resp.endpoint_type = req.endpoint_type;
    }
    if ctx.api_version >= 1 && req.endpoint_type != ENDPOINT_BROKERS {
        resp.error_code = codes::UNSUPPORTED_ENDPOINT_TYPE;
        resp.error_message =
            Some(StrBytes::from_string(format!("endpoint type {} is not served (brokers only)", req.endpoint_type)));
        resp.controller_id = BrokerId(-1);
    } else {
        let (host, port) = shard.advertised.borrow().clone();
        resp.brokers = vec![DescribeClusterBroker::default()
            .with_broker_id(BrokerId(NODE_ID))
            .with_host(StrBytes::from_string(host))
            .with_port(i32::from(port))];
    }
    if req.include_cluster_authorized_operations {
        resp.cluster_authorized_operations = CLUSTER_AUTHORIZED_OPERATIONS;
    }
    shard.counters.error(resp.error_code);
    encode_response(ctx, &resp)
}
