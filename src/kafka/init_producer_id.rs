//! InitProducerId v0-4: producer ids for idempotent producers.
//!
//! - No transactional id: a new id (unique across shards and restarts, see
//!   `catalog::producer_ids`) with epoch 0. From v3 a request may carry the
//!   producer's current id and epoch (KIP-360): if that id was handed out by
//!   this broker, the answer is the same id with the epoch plus one (a new id
//!   when the epoch would overflow); an id this shard cannot vouch for gets a
//!   new id, which clients accept the same way.
//! - A transactional id: TRANSACTIONAL_ID_AUTHORIZATION_FAILED (fatal for
//!   librdkafka and the Java client): ringmq has no transactions, and the
//!   transaction APIs are not advertised.
//!
//! The sequence checks themselves are per partition, in
//! `storage::producer_state`.

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use super::{codes, decode_body, encode_response, Reply, RequestContext, RequestError};
use crate::runtime::shard::Shard;

pub async fn handle(shard: &Rc<Shard>, ctx: &RequestContext, body: Bytes) -> Result<Reply, RequestError> {
    let req: InitProducerIdRequest = decode_body(ctx, body)?;
    let mut resp = InitProducerIdResponse::default().with_producer_id(ProducerId(-1)).with_producer_epoch(-1);
    if let Some(txn) = req.transactional_id.as_ref() {
        tracing::info!(transactional_id = %txn.0, client = ?ctx.client_id, "InitProducerId with a transactional id refused: transactions are not supported");
        resp.error_code = codes::TRANSACTIONAL_ID_AUTHORIZATION_FAILED;
    } else {
        let (current_id, current_epoch) = (req.producer_id.0, req.producer_epoch);
        let bump = current_id >= 0
            && (0..i16::MAX - 1).contains(&current_epoch)
            && shard.producer_ids.was_allocated(current_id);
        if bump {
            resp.producer_id = ProducerId(current_id);
            resp.producer_epoch = current_epoch + 1;
            tracing::debug!(producer_id = current_id, epoch = current_epoch + 1, "bumped producer epoch");
        } else {
            match shard.new_producer_id().await {
                Ok(id) => {
                    resp.producer_id = ProducerId(id);
                    resp.producer_epoch = 0;
                    tracing::debug!(producer_id = id, shard = shard.id, "new producer id");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "no producer id to hand out");
                    resp.error_code = codes::COORDINATOR_NOT_AVAILABLE;
                }
            }
        }
    }
    shard.counters.error(resp.error_code);
    encode_response(ctx, &resp)
}
