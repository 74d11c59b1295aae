//! The ApiVersions table: exactly the APIs and versions Kairos implements.
//!
//! `advertised_min` can be lower than `min` for compatibility: old librdkafka
//! enables compression only when Produce v0 is in the broker's range, so, as
//! Kafka 4 does (KAFKA-18659), Produce is advertised from v0 while v0-v2
//! requests are answered with UNSUPPORTED_VERSION.

use kafka_protocol::messages::ApiKey;

#[derive(Clone, Copy, Debug)]
pub struct ApiRange {
    pub key: ApiKey,
    pub advertised_min: i16,
    pub min: i16,
    pub max: i16,
}

const fn r(key: ApiKey, min: i16, max: i16) -> ApiRange {
    ApiRange {
        key,
        advertised_min: min,
        min,
        max,
    }
}

pub const SUPPORTED: &[ApiRange] = &[
    ApiRange {
        key: ApiKey::Produce,
        advertised_min: 0,
        min: 3,
        max: 11,
    },
    r(ApiKey::Fetch, 4, 16),
    r(ApiKey::ListOffsets, 1, 8),
    r(ApiKey::Metadata, 0, 12),
    r(ApiKey::FindCoordinator, 0, 6),
    r(ApiKey::ApiVersions, 0, 3),
    r(ApiKey::CreateTopics, 2, 7),
    r(ApiKey::DeleteTopics, 1, 6),
    r(ApiKey::DeleteRecords, 0, 2),
    r(ApiKey::OffsetForLeaderEpoch, 2, 4),
    r(ApiKey::DescribeConfigs, 1, 4),
    r(ApiKey::AlterConfigs, 0, 2),
    r(ApiKey::CreatePartitions, 0, 3),
    r(ApiKey::IncrementalAlterConfigs, 0, 1),
    r(ApiKey::DescribeCluster, 0, 1),
    r(ApiKey::DescribeClientQuotas, 0, 1),
    r(ApiKey::AlterClientQuotas, 0, 1),
    r(ApiKey::InitProducerId, 0, 5),
    r(ApiKey::JoinGroup, 0, 9),
    r(ApiKey::SyncGroup, 0, 5),
    r(ApiKey::Heartbeat, 0, 4),
    r(ApiKey::LeaveGroup, 0, 5),
    r(ApiKey::OffsetCommit, 2, 9),
    r(ApiKey::OffsetFetch, 1, 9),
    r(ApiKey::ListGroups, 0, 5),
    r(ApiKey::DescribeGroups, 0, 5),
    r(ApiKey::DeleteGroups, 0, 2),
    r(ApiKey::OffsetDelete, 0, 0),
    r(ApiKey::ConsumerGroupHeartbeat, 0, 1),
    r(ApiKey::ConsumerGroupDescribe, 0, 1),
    // The classic transaction protocol (transaction version 1); the versions
    // above these belong to KIP-890 (transactions v2) or to brokers.
    r(ApiKey::AddPartitionsToTxn, 0, 3),
    r(ApiKey::AddOffsetsToTxn, 0, 3),
    r(ApiKey::EndTxn, 0, 4),
    r(ApiKey::TxnOffsetCommit, 0, 3),
    r(ApiKey::DescribeTransactions, 0, 0),
    r(ApiKey::ListTransactions, 0, 1),
    r(ApiKey::DescribeProducers, 0, 0),
];

pub fn lookup(key: ApiKey) -> Option<&'static ApiRange> {
    SUPPORTED.iter().find(|r| r.key == key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_advertised_range_is_decodable_by_the_crate() {
        for r in SUPPORTED {
            let crate_range = r.key.valid_versions();
            assert!(
                r.min >= crate_range.min && r.max <= crate_range.max,
                "{:?}",
                r.key
            );
            assert!(r.advertised_min <= r.min);
        }
    }

    #[test]
    fn old_librdkafka_feature_probes_are_in_range() {
        // librdkafka < 2.11 enables gzip/snappy/lz4 only with Produce v0 advertised,
        // record batches with Produce 3 + Fetch 4, zstd with Produce 7 + Fetch 10,
        // lz4 additionally with FindCoordinator 0, timestamps with ListOffsets 1.
        let has = |k, v| {
            lookup(k)
                .map(|r| r.advertised_min <= v && v <= r.max)
                .unwrap_or(false)
        };
        assert!(has(ApiKey::Produce, 0) && has(ApiKey::Produce, 3) && has(ApiKey::Produce, 7));
        assert!(has(ApiKey::Fetch, 4) && has(ApiKey::Fetch, 10));
        assert!(has(ApiKey::FindCoordinator, 0) && has(ApiKey::ListOffsets, 1));
    }
}
