//! What the coordinator keeps in the metadata store, and how.
//!
//! Column family `groups` (`store::CF_GROUPS`):
//!   key   = the group id, verbatim (UTF-8 bytes);
//!   value = JSON [`GroupRecord`]: generation, protocol type and name, leader,
//!           the time the group entered its current state, and every member
//!           with its ids, client id and host, timeouts, metadata for the chosen
//!           protocol and assignment (both as lowercase hex strings).
//!   Written when the group becomes Stable (the leader's SyncGroup), becomes
//!   Empty, or a static member is replaced; deleted when the group is deleted
//!   or expires. A group that was rebalancing is restored from its last record.
//!   A KIP-848 consumer group is written whenever a heartbeat or a timer
//!   changes a member's epoch, subscription or assignment (not on plain
//!   heartbeats) under `consumer`.
//!
//! Column family `offsets` (`store::CF_OFFSETS`):
//!   key   = `<group id> NUL <topic> NUL <partition as decimal>`; topic names
//!           cannot contain NUL, so the key parses from the right even if a
//!           group id does;
//!   value = JSON [`OffsetRecord`]: group, topic, partition (repeated so the
//!           value stands alone), offset, leader epoch, metadata (`null` and
//!           `""` are distinct), commit timestamp (Unix ms).
//!   One key per committed partition, written (synced) before the commit is
//!   acknowledged; deleted by OffsetDelete, DeleteGroups and retention.

use serde::{Deserialize, Serialize};

/// The persisted form of a group (see the module doc).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct GroupRecord {
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: Option<String>,
    /// When the group entered its state (Unix ms): the Empty state's start
    /// is the base of offset retention.
    pub state_timestamp_ms: i64,
    pub members: Vec<MemberRecord>,
    /// A KIP-848 consumer group (then `members` is empty): epochs, members
    /// with their subscriptions and assignments, subscribed topics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer: Option<super::consumer::ConsumerGroupRecord>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct MemberRecord {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    /// Metadata for the group's chosen protocol (hex).
    #[serde(with = "hex_bytes")]
    pub metadata: Vec<u8>,
    #[serde(with = "hex_bytes")]
    pub assignment: Vec<u8>,
}

/// The persisted form of one committed offset (see the module doc).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct OffsetRecord {
    pub group: String,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
    pub commit_timestamp_ms: i64,
}

pub(crate) fn offset_key(group: &str, topic: &str, partition: i32) -> String {
    format!("{group}\0{topic}\0{partition}")
}

/// Bytes as lowercase hex in JSON: readable with `ldb`, and no serde feature
/// of `bytes` needed.
mod hex_bytes {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = String::with_capacity(b.len() * 2);
        for &x in b {
            out.push(DIGITS[(x >> 4) as usize] as char);
            out.push(DIGITS[(x & 15) as usize] as char);
        }
        s.serialize_str(&out)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        let s = s.as_bytes();
        if s.len() % 2 != 0 {
            return Err(D::Error::custom("odd hex length"));
        }
        let nibble = |c: u8| -> Result<u8, D::Error> {
            match c {
                b'0'..=b'9' => Ok(c - b'0'),
                b'a'..=b'f' => Ok(c - b'a' + 10),
                b'A'..=b'F' => Ok(c - b'A' + 10),
                _ => Err(D::Error::custom("bad hex digit")),
            }
        };
        s.chunks(2)
            .map(|p| Ok(nibble(p[0])? << 4 | nibble(p[1])?))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_record_bytes_round_trip_as_hex() {
        let m = MemberRecord {
            member_id: "m".into(),
            group_instance_id: None,
            client_id: "c".into(),
            client_host: "/h".into(),
            session_timeout_ms: 1,
            rebalance_timeout_ms: 2,
            metadata: vec![0, 1, 0xab, 0xff],
            assignment: vec![],
        };
        let json = serde_json::to_string(&m).unwrap();
        assert!(json.contains("\"0001abff\""), "{json}");
        let back: MemberRecord = serde_json::from_str(&json).unwrap();
        assert_eq!(back.metadata, vec![0, 1, 0xab, 0xff]);
        assert!(serde_json::from_str::<MemberRecord>(&json.replace("0001abff", "0g")).is_err());
    }
}
