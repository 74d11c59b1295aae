//! Frame -> request header -> typed request -> handler -> encoded response.

use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::future::BoxFuture;
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion};

use super::api;
use super::errors::UNSUPPORTED_VERSION;
use super::frame::{ChunkBuf, Frame};
use super::versions;
use crate::broker::Broker;

/// What a request produces on its connection's reply queue.
pub enum Reply {
    /// No response (Produce with acks=0).
    Nothing,
    Now(Bytes),
    /// Computed after waiting (long-poll fetch, fsync); still written in order.
    Later(BoxFuture<'static, Option<Frame>>),
    /// A deferred reply that was ready at once.
    Ready(Frame),
}

/// Why a connection is closed instead of answered.
#[derive(Debug, thiserror::Error)]
pub enum Close {
    #[error("frame too short for a request header ({0} bytes)")]
    ShortFrame(usize),
    #[error("malformed {api:?} v{version} request: {reason}")]
    Malformed {
        api: ApiKey,
        version: i16,
        reason: String,
    },
    #[error("malformed request header: {0}")]
    Header(String),
}

/// The context handlers get: who asked and with which version.
pub struct Ctx {
    pub broker: Arc<Broker>,
    pub api: ApiKey,
    pub version: i16,
    pub correlation_id: i32,
    pub client_id: Option<String>,
    pub peer: Option<std::net::SocketAddr>,
    /// Size of the request (header and body), what a produce quota counts.
    pub request_bytes: usize,
    /// The connection's quota mute (KIP-219), set by a throttled request.
    pub mute: super::throttle::Mute,
}

impl Ctx {
    /// The client's host as Kafka reports it ("/127.0.0.1").
    pub fn client_host(&self) -> String {
        self.peer
            .map(|p| format!("/{}", p.ip()))
            .unwrap_or_default()
    }

    /// Encodes a response with the right header for this request.
    pub fn encode<R: Encodable + HeaderVersion>(&self, resp: &R) -> Bytes {
        encode_response(self.api, self.version, self.correlation_id, resp)
    }

    /// [`Ctx::encode`] for a response that holds large stored buffers (`shared`: a
    /// fetch's records), which the frame references instead of copying.
    pub fn encode_frame<R: Encodable + HeaderVersion>(&self, resp: &R, shared: &[Bytes]) -> Frame {
        let header_version = self.api.response_header_version(self.version);
        let header = ResponseHeader::default().with_correlation_id(self.correlation_id);
        let size = header.compute_size(header_version).unwrap_or(0)
            + resp.compute_size(self.version).unwrap_or(0);
        let copied = size.saturating_sub(shared.iter().map(Bytes::len).sum());
        let mut buf = ChunkBuf::new(shared, 4 + copied);
        buf.put_i32(size as i32);
        let ok = header.encode(&mut buf, header_version).is_ok()
            && resp.encode(&mut buf, self.version).is_ok();
        match buf.finish() {
            Some(frame) if ok && frame.len() == 4 + size => frame,
            _ => self.encode(resp).into(),
        }
    }
}

pub fn encode_response<R: Encodable + HeaderVersion>(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    resp: &R,
) -> Bytes {
    let header_version = api.response_header_version(version);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let size =
        header.compute_size(header_version).unwrap_or(0) + resp.compute_size(version).unwrap_or(0);
    let mut buf = BytesMut::with_capacity(4 + size);
    buf.put_i32(0);
    // Encoding our own well-formed structs at a version we advertise cannot fail;
    // if it ever does, the client sees a closed connection via the empty frame check below.
    let ok =
        header.encode(&mut buf, header_version).is_ok() && resp.encode(&mut buf, version).is_ok();
    if !ok {
        tracing::error!(?api, version, "failed to encode response");
        return Bytes::new();
    }
    let len = (buf.len() - 4) as i32;
    buf[0..4].copy_from_slice(&len.to_be_bytes());
    buf.freeze()
}

pub fn decode<T: Decodable>(api: ApiKey, version: i16, body: &mut Bytes) -> Result<T, Close> {
    T::decode(body, version).map_err(|e| Close::Malformed {
        api,
        version,
        reason: e.to_string(),
    })
}

/// Handles one frame (without its length prefix).
pub async fn handle_frame(
    broker: &Arc<Broker>,
    peer: Option<std::net::SocketAddr>,
    mute: &super::throttle::Mute,
    mut frame: Bytes,
) -> Result<Reply, Close> {
    let request_bytes = frame.len();
    if frame.len() < 8 {
        return Err(Close::ShortFrame(frame.len()));
    }
    let key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let Ok(api) = ApiKey::try_from(key) else {
        tracing::debug!(key, "unknown API key");
        return Ok(Reply::Now(error_only(correlation_id)));
    };
    let range = versions::lookup(api);
    let implemented = range
        .map(|r| r.min <= version && version <= r.max)
        .unwrap_or(false);
    if !implemented {
        tracing::debug!(?api, version, "unsupported API version");
        if api == ApiKey::ApiVersions {
            return Ok(Reply::Now(api::api_versions::unsupported(correlation_id)));
        }
        if api == ApiKey::Produce && (0..=2).contains(&version) {
            return Ok(api::produce::legacy_unsupported(
                correlation_id,
                version,
                frame,
            ));
        }
        return Ok(Reply::Now(error_only(correlation_id)));
    }
    let header_version = api.request_header_version(version);
    let header = RequestHeader::decode(&mut frame, header_version)
        .map_err(|e| Close::Header(e.to_string()))?;
    let ctx = Ctx {
        broker: broker.clone(),
        api,
        version,
        correlation_id,
        client_id: header.client_id.map(|s| s.to_string()),
        peer,
        request_bytes,
        mute: mute.clone(),
    };
    let body = &mut frame;
    use ApiKey::*;
    let reply = match api {
        Produce => api::produce::handle(ctx, decode(api, version, body)?).await,
        Fetch => api::fetch::handle(ctx, decode(api, version, body)?),
        ListOffsets => Reply::Now(api::list_offsets::handle(&ctx, decode(api, version, body)?)),
        Metadata => Reply::Now(api::metadata::handle(&ctx, decode(api, version, body)?)),
        FindCoordinator => Reply::Now(api::find_coordinator::handle(
            &ctx,
            decode(api, version, body)?,
        )),
        ApiVersions => Reply::Now(api::api_versions::handle(&ctx)),
        CreateTopics => Reply::Now(api::create_topics::handle(
            &ctx,
            decode(api, version, body)?,
        )),
        DeleteTopics => Reply::Now(api::delete_topics::handle(
            &ctx,
            decode(api, version, body)?,
        )),
        CreatePartitions => Reply::Now(api::create_partitions::handle(
            &ctx,
            decode(api, version, body)?,
        )),
        DeleteRecords => Reply::Now(api::delete_records::handle(
            &ctx,
            decode(api, version, body)?,
        )),
        OffsetForLeaderEpoch => Reply::Now(api::offset_for_leader_epoch::handle(
            &ctx,
            decode(api, version, body)?,
        )),
        DescribeConfigs => Reply::Now(api::describe_configs::handle(
            &ctx,
            decode(api, version, body)?,
        )),
        AlterConfigs => Reply::Now(api::alter_configs::handle(
            &ctx,
            decode(api, version, body)?,
        )),
        IncrementalAlterConfigs => Reply::Now(api::alter_configs::handle_incremental(
            &ctx,
            decode(api, version, body)?,
        )),
        JoinGroup => api::join_group::handle(ctx, decode(api, version, body)?),
        SyncGroup => api::sync_group::handle(ctx, decode(api, version, body)?),
        Heartbeat => Reply::Now(api::heartbeat::handle(&ctx, decode(api, version, body)?)),
        LeaveGroup => Reply::Now(api::leave_group::handle(&ctx, decode(api, version, body)?)),
        // A synced commit waits for an fsync: off the reactor, but still in order.
        // An unsynced one is a buffered RocksDB write, cheaper than the thread hop.
        OffsetCommit if !broker.groups.syncs_commits() => Reply::Now(api::offset_commit::handle(
            &ctx,
            decode(api, version, body)?,
        )),
        OffsetCommit => {
            let req = decode(api, version, body)?;
            off_reactor(move || api::offset_commit::handle(&ctx, req)).await
        }
        OffsetFetch => Reply::Now(api::offset_fetch::handle(&ctx, decode(api, version, body)?)),
        ListGroups => Reply::Now(api::list_groups::handle(&ctx, decode(api, version, body)?)),
        AddPartitionsToTxn => {
            Reply::Now(api::txn::add_partitions(&ctx, decode(api, version, body)?))
        }
        AddOffsetsToTxn => Reply::Now(api::txn::add_offsets(&ctx, decode(api, version, body)?)),
        // Ending a transaction writes markers and state; with --fsync always it waits for
        // fsyncs, off the reactor (in order). Otherwise it is buffered writes, run inline.
        EndTxn if !broker.txns.syncs() => {
            Reply::Now(api::txn::end_txn(&ctx, decode(api, version, body)?))
        }
        EndTxn => {
            let req = decode(api, version, body)?;
            off_reactor(move || api::txn::end_txn(&ctx, req)).await
        }
        TxnOffsetCommit => Reply::Now(api::txn::txn_offset_commit(
            &ctx,
            decode(api, version, body)?,
        )),
        DescribeTransactions => Reply::Now(api::txn::describe_transactions(
            &ctx,
            decode(api, version, body)?,
        )),
        ListTransactions => Reply::Now(api::txn::list_transactions(
            &ctx,
            decode(api, version, body)?,
        )),
        DescribeProducers => Reply::Now(api::txn::describe_producers(
            &ctx,
            decode(api, version, body)?,
        )),
        ConsumerGroupHeartbeat => Reply::Now(api::consumer_group_heartbeat::handle(
            &ctx,
            decode(api, version, body)?,
        )),
        ConsumerGroupDescribe => Reply::Now(api::consumer_group_describe::handle(
            &ctx,
            decode(api, version, body)?,
        )),
        DescribeGroups => Reply::Now(api::describe_groups::handle(
            &ctx,
            decode(api, version, body)?,
        )),
        DeleteGroups => Reply::Now(api::delete_groups::handle(
            &ctx,
            decode(api, version, body)?,
        )),
        OffsetDelete => Reply::Now(api::offset_delete::handle(
            &ctx,
            decode(api, version, body)?,
        )),
        InitProducerId => Reply::Now(api::init_producer_id::handle(
            &ctx,
            decode(api, version, body)?,
        )),
        DescribeCluster => Reply::Now(api::describe_cluster::handle(
            &ctx,
            decode(api, version, body)?,
        )),
        DescribeClientQuotas => Reply::Now(api::client_quotas::describe(
            &ctx,
            decode(api, version, body)?,
        )),
        AlterClientQuotas => {
            Reply::Now(api::client_quotas::alter(&ctx, decode(api, version, body)?))
        }
        _ => Reply::Now(error_only(correlation_id)),
    };
    Ok(start(reply).await)
}

/// Runs a deferred reply up to its first wait right away, so that what it does
/// (register a group member, start an fsync, read a partition) happens in
/// request order; only the waiting is left to the connection's writer. A
/// deferred handler must therefore do its work before its first `.await`
/// point that can be pending.
async fn start(reply: Reply) -> Reply {
    match reply {
        Reply::Later(mut fut) => match futures::poll!(fut.as_mut()) {
            std::task::Poll::Ready(Some(frame)) => Reply::Ready(frame),
            std::task::Poll::Ready(None) => Reply::Nothing,
            std::task::Poll::Pending => Reply::Later(fut),
        },
        other => other,
    }
}

/// A response for an API or version we cannot encode a real response for:
/// the correlation id followed by UNSUPPORTED_VERSION, like ApiVersions v0's prefix.
fn error_only(correlation_id: i32) -> Bytes {
    let mut b = BytesMut::with_capacity(10);
    b.put_i32(6);
    b.put_i32(correlation_id);
    b.put_i16(UNSUPPORTED_VERSION);
    b.freeze()
}

/// Reads the big-endian length prefix of a frame, if 4 bytes are there.
pub fn frame_len(buf: &[u8]) -> Option<i32> {
    (buf.len() >= 4).then(|| (&buf[..4]).get_i32())
}

/// Runs a handler that may block (an fsync) on the blocking pool; requests of
/// the connection still execute in order because dispatch awaits it.
async fn off_reactor(f: impl FnOnce() -> Bytes + Send + 'static) -> Reply {
    match tokio::task::spawn_blocking(f).await {
        Ok(bytes) => Reply::Now(bytes),
        Err(e) => {
            tracing::error!("blocking handler failed: {e}");
            Reply::Now(Bytes::new())
        }
    }
}
