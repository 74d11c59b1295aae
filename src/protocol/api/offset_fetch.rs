//! OffsetFetch: one group (v1-v7) or several (v8+). A partition with no
//! commit answers offset -1 and empty metadata, as Kafka does. v9 carries a
//! member id and epoch, which a consumer group checks.

use bytes::Bytes;
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponse, OffsetFetchResponseGroup, OffsetFetchResponsePartition,
    OffsetFetchResponsePartitions, OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::OffsetFetchRequest;

use super::{str, topic_name};
use crate::groups::Committed;
use crate::protocol::dispatch::Ctx;
use crate::protocol::errors::{self, NONE};

/// Per topic: (partition, committed offset, error code).
type Fetched = Result<Vec<(String, Vec<(i32, Option<Committed>, i16)>)>, i16>;

/// `require_stable` (v7+): a partition with an offset in an ongoing
/// transaction answers UNSTABLE_OFFSET_COMMIT, so the client retries.
fn fetch(
    ctx: &Ctx,
    group: &str,
    wanted: Option<Vec<(String, Vec<i32>)>>,
    require_stable: bool,
) -> Fetched {
    let pairs: Option<Vec<(String, i32)>> = wanted.map(|ts| {
        ts.into_iter()
            .flat_map(|(t, ps)| ps.into_iter().map(move |p| (t.clone(), p)))
            .collect()
    });
    let rows = ctx
        .broker
        .groups
        .fetch_offsets(group, pairs.as_deref())
        .map_err(|e| errors::group_error(&e))?;
    let pending = if require_stable {
        ctx.broker.txns.pending_offsets(group)
    } else {
        Vec::new()
    };
    // Group rows by topic, keeping first-seen order.
    let mut out: Vec<(String, Vec<(i32, Option<Committed>, i16)>)> = Vec::new();
    for (t, p, c) in rows {
        let code = if pending.iter().any(|(pt, pp)| *pt == t && *pp == p) {
            errors::UNSTABLE_OFFSET_COMMIT
        } else {
            NONE
        };
        match out.iter_mut().find(|(name, _)| *name == t) {
            Some((_, ps)) => ps.push((p, c, code)),
            None => out.push((t, vec![(p, c, code)])),
        }
    }
    Ok(out)
}

pub fn handle(ctx: &Ctx, req: OffsetFetchRequest) -> Bytes {
    let v = ctx.version;
    let mut resp = OffsetFetchResponse::default();
    if v < 8 {
        let wanted = req.topics.map(|ts| {
            ts.into_iter()
                .map(|t| (t.name.to_string(), t.partition_indexes))
                .collect()
        });
        match fetch(
            ctx,
            req.group_id.as_str(),
            wanted,
            v >= 7 && req.require_stable,
        ) {
            Ok(topics) => {
                resp.topics = topics
                    .into_iter()
                    .map(|(t, ps)| {
                        OffsetFetchResponseTopic::default()
                            .with_name(topic_name(&t))
                            .with_partitions(
                                ps.into_iter()
                                    .map(|(p, c, code)| {
                                        let mut rp = OffsetFetchResponsePartition::default()
                                            .with_partition_index(p)
                                            .with_committed_offset(
                                                c.as_ref().map(|c| c.offset).unwrap_or(-1),
                                            )
                                            .with_metadata(Some(str(c
                                                .as_ref()
                                                .and_then(|c| c.metadata.as_deref())
                                                .unwrap_or(""))))
                                            .with_error_code(code);
                                        if v >= 5 {
                                            rp.committed_leader_epoch =
                                                c.as_ref().map(|c| c.leader_epoch).unwrap_or(-1);
                                        }
                                        rp
                                    })
                                    .collect(),
                            )
                    })
                    .collect();
            }
            Err(code) if v >= 2 => resp.error_code = code,
            Err(_) => {}
        }
    } else {
        for g in req.groups {
            let wanted = g.topics.map(|ts| {
                ts.into_iter()
                    .map(|t| (t.name.to_string(), t.partition_indexes))
                    .collect()
            });
            let mut rg = OffsetFetchResponseGroup::default().with_group_id(g.group_id.clone());
            if v >= 9 {
                let member = g.member_id.as_ref().map(|m| m.as_str());
                let groups = &ctx.broker.groups;
                if let Err(e) =
                    groups.validate_fetch_member(g.group_id.as_str(), member, g.member_epoch)
                {
                    rg.error_code = errors::group_error(&e);
                    resp.groups.push(rg);
                    continue;
                }
            }
            match fetch(ctx, g.group_id.as_str(), wanted, req.require_stable) {
                Ok(topics) => {
                    rg.topics = topics
                        .into_iter()
                        .map(|(t, ps)| {
                            OffsetFetchResponseTopics::default()
                                .with_name(topic_name(&t))
                                .with_partitions(
                                    ps.into_iter()
                                        .map(|(p, c, code)| {
                                            OffsetFetchResponsePartitions::default()
                                                .with_partition_index(p)
                                                .with_committed_offset(
                                                    c.as_ref().map(|c| c.offset).unwrap_or(-1),
                                                )
                                                .with_committed_leader_epoch(
                                                    c.as_ref()
                                                        .map(|c| c.leader_epoch)
                                                        .unwrap_or(-1),
                                                )
                                                .with_metadata(Some(str(c
                                                    .as_ref()
                                                    .and_then(|c| c.metadata.as_deref())
                                                    .unwrap_or(""))))
                                                .with_error_code(code)
                                        })
                                        .collect(),
                                )
                        })
                        .collect();
                }
                Err(code) => rg.error_code = code,
            }
            resp.groups.push(rg);
        }
    }
    ctx.encode(&resp)
}
