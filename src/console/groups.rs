//! `/api/v1/groups`: consumer groups (both protocols) with members, committed
//! offsets and lag; offset reset and delete for empty groups (DESIGN.md "Console").

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::{group_lags, ApiError, JsonBody, Lag};
use crate::broker::Broker;
use crate::groups::{CommitOffset, GroupError};

/// `GET /api/v1/groups`: every group with its state, type and member count.
pub async fn list(State(broker): State<Arc<Broker>>) -> impl IntoResponse {
    let groups: Vec<serde_json::Value> = broker
        .groups
        .list_groups(&[], &[])
        .into_iter()
        .map(|g| {
            json!({
                "group": g.group_id,
                "type": g.group_type,
                "state": g.state,
                "protocol_type": g.protocol_type,
                "members": g.members,
            })
        })
        .collect();
    Json(json!({ "groups": groups }))
}

/// `GET /api/v1/groups/{id}`: state, members, committed offsets and lag per partition.
pub async fn describe(
    State(broker): State<Arc<Broker>>,
    Path(id): Path<String>,
) -> axum::response::Response {
    let offsets: Vec<Lag> = group_lags(&broker)
        .into_iter()
        .filter(|l| l.group == id)
        .collect();
    let lag = offsets.iter().map(|l| l.lag).sum::<i64>();
    if let Ok(c) = broker.groups.describe_consumer_group(&id) {
        let members: Vec<serde_json::Value> = c
            .members
            .iter()
            .map(|m| {
                let assigned: Vec<serde_json::Value> = m
                    .assignment
                    .iter()
                    .map(|(_, t, ps)| json!({"topic": t, "partitions": ps}))
                    .collect();
                json!({
                    "member_id": m.member_id,
                    "group_instance_id": m.instance_id,
                    "client_id": m.client_id,
                    "client_host": m.client_host,
                    "member_epoch": m.member_epoch,
                    "assignment": assigned,
                })
            })
            .collect();
        return Json(json!({
            "group": id,
            "type": "consumer",
            "state": c.state,
            "group_epoch": c.group_epoch,
            "assignor": c.assignor,
            "members": members,
            "offsets": offsets,
            "lag": lag,
        }))
        .into_response();
    }
    let d = broker.groups.describe_group(&id);
    if d.state == crate::groups::GroupState::Dead && offsets.is_empty() {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"error": format!("group {id} not found")})),
        )
            .into_response();
    }
    let members: Vec<serde_json::Value> = d
        .members
        .iter()
        .map(|m| {
            json!({
                "member_id": m.member_id,
                "group_instance_id": m.group_instance_id,
                "client_id": m.client_id,
                "client_host": m.client_host,
            })
        })
        .collect();
    Json(json!({
        "group": id,
        "type": "classic",
        "state": d.state.as_str(),
        "protocol_type": d.protocol_type,
        "protocol": d.protocol_name,
        "members": members,
        "offsets": offsets,
        "lag": lag,
    }))
    .into_response()
}

/// Where a reset moves a group's offsets (kafka-consumer-groups' --to-*).
#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResetTo {
    Earliest,
    Latest,
    #[serde(untagged)]
    At(ResetAt),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
pub enum ResetAt {
    Timestamp(i64),
    Offset(i64),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResetRequest {
    topic: String,
    to: ResetTo,
    /// Only these partitions (default: all of the topic's).
    partitions: Option<Vec<i32>>,
}

/// `POST /api/v1/groups/{id}/reset`: sets the group's committed offsets on a topic
/// (or view), as `kafka-consumer-groups --reset-offsets --execute` does: only
/// while the group has no members (409 otherwise). A group that does not exist
/// yet gets the offsets, as in Kafka. Offsets are clamped to [log start, high
/// watermark]; a timestamp past the last record resets to the end.
pub async fn reset(
    State(broker): State<Arc<Broker>>,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<ResetRequest>,
) -> Result<Response, ApiError> {
    if id.is_empty() || id.len() > 255 {
        return Err(ApiError::bad_request("group id must be 1 to 255 bytes"));
    }
    let (topic, _) = broker
        .read_topic(&req.topic)
        .ok_or_else(|| ApiError::not_found(format!("no topic or view {}", req.topic)))?;
    let partitions = match req.partitions {
        Some(ps) => ps,
        None => (0..topic.partition_count()).collect(),
    };
    if partitions.len() > crate::topics::MAX_PARTITIONS as usize {
        return Err(ApiError::bad_request("too many partitions"));
    }
    let mut offsets = Vec::with_capacity(partitions.len());
    for p in partitions {
        let part = topic
            .partition(p)
            .ok_or_else(|| ApiError::not_found(format!("no partition {p} of {}", req.topic)))?;
        let (start, end) = (part.log.log_start_offset(), part.log.high_watermark());
        let offset = match &req.to {
            ResetTo::Earliest => start,
            ResetTo::Latest => end,
            ResetTo::At(ResetAt::Offset(o)) => (*o).clamp(start, end),
            ResetTo::At(ResetAt::Timestamp(ts)) => match part.log.offset_for_timestamp(*ts) {
                Ok(Some((o, _))) => o,
                Ok(None) => end,
                Err(e) => return Err(ApiError::internal(e.to_string())),
            },
        };
        offsets.push(CommitOffset {
            topic: req.topic.clone(),
            partition: p,
            offset,
            leader_epoch: -1,
            metadata: Some(String::new()),
        });
    }
    let answer: Vec<serde_json::Value> = offsets
        .iter()
        .map(|o| json!({"partition": o.partition, "offset": o.offset}))
        .collect();
    let results = broker
        .groups
        .commit_offsets(&id, -1, "", None, offsets)
        .map_err(group_error)?;
    if let Some(Err(e)) = results.into_iter().find(Result::is_err) {
        return Err(group_error(e));
    }
    tracing::info!(group = %id, topic = %req.topic, "console: offsets reset");
    Ok(Json(json!({"group": id, "topic": req.topic, "offsets": answer})).into_response())
}

/// `DELETE /api/v1/groups/{id}`: deletes an empty group and its offsets (204).
pub async fn delete(
    State(broker): State<Arc<Broker>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let r = broker.groups.delete_groups(std::slice::from_ref(&id));
    match r.into_iter().next() {
        Some(Ok(())) => Ok(StatusCode::NO_CONTENT.into_response()),
        Some(Err(e)) => Err(group_error(e)),
        None => Err(ApiError::internal("no result")),
    }
}

fn group_error(e: GroupError) -> ApiError {
    match e {
        GroupError::UnknownMemberId
        | GroupError::NonEmptyGroup
        | GroupError::RebalanceInProgress
        | GroupError::IllegalGeneration
        | GroupError::StaleMemberEpoch => ApiError::conflict(format!(
            "the group has active members ({e}); stop its consumers first"
        )),
        GroupError::GroupIdNotFound => ApiError::not_found(e.to_string()),
        GroupError::InvalidGroupId | GroupError::InvalidRequest(_) => {
            ApiError::bad_request(e.to_string())
        }
        e => ApiError::internal(e.to_string()),
    }
}
