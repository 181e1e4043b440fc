//! The Kafka error code for each error of the broker's own layers: storage
//! (produce, fetch, offsets), idempotent producers, catalog changes.

use super::codes::*;
use crate::catalog::TopicError;
use crate::runtime::shard::TopicOpError;
use crate::storage::batch::BatchError;
use crate::storage::producer_state::ProducerError;
use crate::storage::StorageError;

/// The Kafka error code a producer or consumer gets for a storage error.
pub fn for_storage(e: &StorageError) -> i16 {
    match e {
        StorageError::Batch(BatchError::TooLarge { .. }) | StorageError::TooLarge { .. } => MESSAGE_TOO_LARGE,
        StorageError::Batch(_) => CORRUPT_MESSAGE,
        StorageError::OffsetOutOfRange { .. } => OFFSET_OUT_OF_RANGE,
        StorageError::Closed => NOT_LEADER_OR_FOLLOWER,
        StorageError::Io { .. } | StorageError::DiskFull { .. } => KAFKA_STORAGE_ERROR,
        StorageError::Producer(e) => for_producer(e),
    }
}

/// The Kafka error code of a rejected idempotent batch.
pub fn for_producer(e: &ProducerError) -> i16 {
    match e {
        ProducerError::FencedEpoch { .. } => INVALID_PRODUCER_EPOCH,
        ProducerError::OutOfOrder { .. } | ProducerError::NewEpochNotAtZero { .. } => OUT_OF_ORDER_SEQUENCE_NUMBER,
        ProducerError::MultipleBatches { .. }
        | ProducerError::Transactional { .. }
        | ProducerError::InvalidFields { .. } => INVALID_RECORD,
        ProducerError::OriginalFailed { .. } => KAFKA_STORAGE_ERROR,
    }
}

/// The Kafka error code for a failed catalog change.
pub fn for_topic_op(e: &TopicOpError) -> i16 {
    match e {
        TopicOpError::AlreadyExists(_) => TOPIC_ALREADY_EXISTS,
        TopicOpError::Unknown(_) => UNKNOWN_TOPIC_OR_PARTITION,
        TopicOpError::Invalid(TopicError::InvalidName(_)) => INVALID_TOPIC_EXCEPTION,
        TopicOpError::Invalid(TopicError::InvalidPartitions(_) | TopicError::PartitionsNotIncreased { .. }) => {
            INVALID_PARTITIONS
        }
        TopicOpError::Invalid(TopicError::InvalidConfig { .. }) => INVALID_CONFIG,
        TopicOpError::Storage(e) => for_storage(e),
        TopicOpError::Catalog(_) => KAFKA_STORAGE_ERROR,
        TopicOpError::ShardGone(_) => UNKNOWN_SERVER_ERROR,
    }
}
