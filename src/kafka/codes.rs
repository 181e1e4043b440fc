//! Kafka error codes used by ringmq, and the mapping from storage errors.

use crate::storage::batch::BatchError;
use crate::storage::producer_state::ProducerError;
use crate::storage::StorageError;

pub const NONE: i16 = 0;
pub const OFFSET_OUT_OF_RANGE: i16 = 1;
pub const CORRUPT_MESSAGE: i16 = 2;
pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
pub const NOT_LEADER_OR_FOLLOWER: i16 = 6;
pub const MESSAGE_TOO_LARGE: i16 = 10;
pub const OFFSET_METADATA_TOO_LARGE: i16 = 12;
pub const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
pub const NOT_COORDINATOR: i16 = 16;
pub const INVALID_TOPIC_EXCEPTION: i16 = 17;
pub const INVALID_REQUIRED_ACKS: i16 = 21;
pub const ILLEGAL_GENERATION: i16 = 22;
pub const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
pub const INVALID_GROUP_ID: i16 = 24;
pub const UNKNOWN_MEMBER_ID: i16 = 25;
pub const INVALID_SESSION_TIMEOUT: i16 = 26;
pub const REBALANCE_IN_PROGRESS: i16 = 27;
pub const INVALID_COMMIT_OFFSET_SIZE: i16 = 28;
pub const UNSUPPORTED_VERSION: i16 = 35;
pub const TOPIC_ALREADY_EXISTS: i16 = 36;
pub const INVALID_PARTITIONS: i16 = 37;
pub const INVALID_REPLICATION_FACTOR: i16 = 38;
pub const INVALID_REPLICA_ASSIGNMENT: i16 = 39;
pub const INVALID_CONFIG: i16 = 40;
pub const INVALID_REQUEST: i16 = 42;
pub const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
pub const INVALID_PRODUCER_EPOCH: i16 = 47;
pub const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 = 53;
pub const KAFKA_STORAGE_ERROR: i16 = 56;
pub const UNSUPPORTED_ENDPOINT_TYPE: i16 = 115;
pub const INVALID_RECORD: i16 = 87;
pub const NON_EMPTY_GROUP: i16 = 68;
pub const GROUP_ID_NOT_FOUND: i16 = 69;
pub const MEMBER_ID_REQUIRED: i16 = 79;
pub const GROUP_MAX_SIZE_REACHED: i16 = 81;
pub const FENCED_INSTANCE_ID: i16 = 82;
pub const UNKNOWN_SERVER_ERROR: i16 = -1;

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
pub fn for_topic_op(e: &crate::runtime::shard::TopicOpError) -> i16 {
    use crate::catalog::TopicError;
    use crate::runtime::shard::TopicOpError;
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
