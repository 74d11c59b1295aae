//! The one place that knows numeric Kafka error codes: domain errors from
//! `log` and `topics` are mapped here to what Apache Kafka would return.

use kafka_protocol::ResponseError;

use crate::groups::GroupError;
use crate::log::LogError;
use crate::quotas::QuotaError;
use crate::topics::TopicError;
use crate::txn::TxnError;

pub const NONE: i16 = 0;

pub fn code(e: ResponseError) -> i16 {
    e.code()
}

pub fn log_error(e: &LogError) -> i16 {
    match e {
        LogError::CorruptMessage(_) => ResponseError::CorruptMessage.code(),
        LogError::InvalidRecord(_) => ResponseError::InvalidRecord.code(),
        LogError::MessageTooLarge { .. } => ResponseError::MessageTooLarge.code(),
        LogError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange.code(),
        LogError::InvalidTimestamp(_) => ResponseError::InvalidTimestamp.code(),
        LogError::Storage(_) => ResponseError::KafkaStorageError.code(),
        LogError::InvalidProducerEpoch(_) => ResponseError::InvalidProducerEpoch.code(),
        LogError::OutOfOrderSequence(_) => ResponseError::OutOfOrderSequenceNumber.code(),
        LogError::InvalidTxnState(_) => ResponseError::InvalidTxnState.code(),
        LogError::TransactionCoordinatorFenced(_) => {
            ResponseError::TransactionCoordinatorFenced.code()
        }
    }
}

pub fn topic_error(e: &TopicError) -> i16 {
    match e {
        TopicError::InvalidName(_) => ResponseError::InvalidTopicException.code(),
        TopicError::AlreadyExists(_) => ResponseError::TopicAlreadyExists.code(),
        TopicError::Unknown => ResponseError::UnknownTopicOrPartition.code(),
        TopicError::InvalidPartitions(_) => ResponseError::InvalidPartitions.code(),
        TopicError::InvalidReplicationFactor(_) => ResponseError::InvalidReplicationFactor.code(),
        TopicError::InvalidConfig(_) => ResponseError::InvalidConfig.code(),
        TopicError::InvalidRequest(_) => ResponseError::InvalidRequest.code(),
        TopicError::Log(l) => log_error(l),
        TopicError::Store(_) | TopicError::Io(_) => ResponseError::KafkaStorageError.code(),
    }
}

pub fn group_error(e: &GroupError) -> i16 {
    match e {
        GroupError::InvalidGroupId => ResponseError::InvalidGroupId.code(),
        GroupError::UnknownMemberId => ResponseError::UnknownMemberId.code(),
        GroupError::IllegalGeneration => ResponseError::IllegalGeneration.code(),
        GroupError::RebalanceInProgress => ResponseError::RebalanceInProgress.code(),
        GroupError::InconsistentGroupProtocol => ResponseError::InconsistentGroupProtocol.code(),
        GroupError::InvalidSessionTimeout => ResponseError::InvalidSessionTimeout.code(),
        GroupError::GroupMaxSizeReached => ResponseError::GroupMaxSizeReached.code(),
        GroupError::MemberIdRequired(_) => ResponseError::MemberIdRequired.code(),
        GroupError::FencedInstanceId => ResponseError::FencedInstanceId.code(),
        GroupError::GroupIdNotFound => ResponseError::GroupIdNotFound.code(),
        GroupError::NonEmptyGroup => ResponseError::NonEmptyGroup.code(),
        GroupError::OffsetMetadataTooLarge => ResponseError::OffsetMetadataTooLarge.code(),
        GroupError::GroupSubscribedToTopic => ResponseError::GroupSubscribedToTopic.code(),
        GroupError::InvalidRequest(_) => ResponseError::InvalidRequest.code(),
        GroupError::FencedMemberEpoch => ResponseError::FencedMemberEpoch.code(),
        GroupError::UnreleasedInstanceId(_) => ResponseError::UnreleasedInstanceId.code(),
        GroupError::UnsupportedAssignor(_) => ResponseError::UnsupportedAssignor.code(),
        GroupError::StaleMemberEpoch => ResponseError::StaleMemberEpoch.code(),
        GroupError::InvalidRegularExpression(_) => ResponseError::InvalidRegularExpression.code(),
        GroupError::UnsupportedVersion(_) => ResponseError::UnsupportedVersion.code(),
        GroupError::Store(_) => ResponseError::CoordinatorNotAvailable.code(),
    }
}

/// As [`txn_error`], for a request version that may not know PRODUCER_FENCED
/// (KIP-588: older versions get INVALID_PRODUCER_EPOCH instead).
pub fn txn_error_for(e: &TxnError, knows_fenced: bool) -> i16 {
    match e {
        TxnError::ProducerFenced if !knows_fenced => ResponseError::InvalidProducerEpoch.code(),
        e => txn_error(e),
    }
}

pub fn txn_error(e: &TxnError) -> i16 {
    match e {
        TxnError::InvalidTransactionTimeout => ResponseError::InvalidTransactionTimeout.code(),
        TxnError::InvalidProducerIdMapping => ResponseError::InvalidProducerIdMapping.code(),
        TxnError::ProducerFenced => ResponseError::ProducerFenced.code(),
        TxnError::InvalidProducerEpoch => ResponseError::InvalidProducerEpoch.code(),
        TxnError::InvalidTxnState => ResponseError::InvalidTxnState.code(),
        TxnError::ConcurrentTransactions => ResponseError::ConcurrentTransactions.code(),
        TxnError::UnknownTopicOrPartition => ResponseError::UnknownTopicOrPartition.code(),
        TxnError::OperationNotAttempted => ResponseError::OperationNotAttempted.code(),
        TxnError::InvalidRequest => ResponseError::InvalidRequest.code(),
        TxnError::Storage(_) => ResponseError::CoordinatorNotAvailable.code(),
    }
}

/// Client quota errors (DescribeClientQuotas, AlterClientQuotas).
pub fn quota_error(e: &QuotaError) -> i16 {
    match e {
        QuotaError::InvalidRequest(_) => ResponseError::InvalidRequest.code(),
        QuotaError::UnsupportedVersion(_) => ResponseError::UnsupportedVersion.code(),
        QuotaError::Store(_) => ResponseError::KafkaStorageError.code(),
    }
}

pub const UNSTABLE_OFFSET_COMMIT: i16 = ResponseError::UnstableOffsetCommit.code();
pub const UNKNOWN_PRODUCER_ID: i16 = ResponseError::UnknownProducerId.code();
pub const INVALID_GROUP_ID: i16 = ResponseError::InvalidGroupId.code();
pub const GROUP_ID_NOT_FOUND: i16 = ResponseError::GroupIdNotFound.code();
pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = ResponseError::UnknownTopicOrPartition.code();
pub const UNKNOWN_TOPIC_ID: i16 = ResponseError::UnknownTopicId.code();
pub const UNSUPPORTED_VERSION: i16 = ResponseError::UnsupportedVersion.code();
pub const INVALID_TOPIC: i16 = ResponseError::InvalidTopicException.code();
pub const INVALID_REQUEST: i16 = ResponseError::InvalidRequest.code();
pub const INVALID_CONFIG: i16 = ResponseError::InvalidConfig.code();
pub const INVALID_REQUIRED_ACKS: i16 = ResponseError::InvalidRequiredAcks.code();
pub const INVALID_RECORD: i16 = ResponseError::InvalidRecord.code();
pub const INVALID_TIMESTAMP: i16 = ResponseError::InvalidTimestamp.code();
pub const OFFSET_OUT_OF_RANGE: i16 = ResponseError::OffsetOutOfRange.code();
pub const UNKNOWN_LEADER_EPOCH: i16 = ResponseError::UnknownLeaderEpoch.code();
pub const FENCED_LEADER_EPOCH: i16 = ResponseError::FencedLeaderEpoch.code();
pub const STORAGE_ERROR: i16 = ResponseError::KafkaStorageError.code();
pub const INVALID_PARTITIONS: i16 = ResponseError::InvalidPartitions.code();
pub const TRANSACTIONAL_ID_NOT_FOUND: i16 = ResponseError::TransactionalIdNotFound.code();
pub const COORDINATOR_NOT_AVAILABLE: i16 = ResponseError::CoordinatorNotAvailable.code();

/// The leader epoch of every partition: one broker that never loses leadership.
pub const LEADER_EPOCH: i32 = 0;

/// Kafka's check of a client's `current_leader_epoch` against ours.
pub fn check_leader_epoch(client_epoch: i32) -> i16 {
    if client_epoch < 0 || client_epoch == LEADER_EPOCH {
        NONE
    } else if client_epoch > LEADER_EPOCH {
        UNKNOWN_LEADER_EPOCH
    } else {
        FENCED_LEADER_EPOCH
    }
}
