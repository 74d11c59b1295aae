//! `/api/v1/topics`: list, create, detail, delete, configs, partitions and the
//! record browser (DESIGN.md "Console"). Topics themselves are `crate::topics`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, JsonBody};
use crate::broker::Broker;
use crate::filter::views::View;
use crate::log::{batch, records};
use crate::topics::{config, Topic, TopicError};

/// Records one browse may return.
pub const MAX_RECORDS: usize = 1000;
const DEFAULT_RECORDS: usize = 20;
/// Source bytes one browse reads at most (a view may drop almost everything).
const MAX_SCAN_BYTES: usize = 64 << 20;

fn topic_error(e: TopicError) -> ApiError {
    match e {
        TopicError::AlreadyExists(_) => ApiError::conflict(e.to_string()),
        TopicError::Unknown => ApiError::not_found("no such topic"),
        TopicError::InvalidName(_)
        | TopicError::InvalidPartitions(_)
        | TopicError::InvalidReplicationFactor(_)
        | TopicError::InvalidConfig(_)
        | TopicError::InvalidRequest(_) => ApiError::bad_request(e.to_string()),
        e => ApiError::internal(e.to_string()),
    }
}

fn topic(broker: &Broker, name: &str) -> Result<Arc<Topic>, ApiError> {
    broker
        .topics
        .get(name)
        .ok_or_else(|| ApiError::not_found(format!("no topic {name}")))
}

/// Records (high watermark minus log start, so gaps from compaction or
/// transaction markers count) and bytes of a topic.
fn totals(t: &Topic) -> (i64, u64) {
    t.partitions().iter().fold((0, 0), |(r, b), p| {
        (
            r + (p.log.high_watermark() - p.log.log_start_offset()),
            b + p.log.size_bytes(),
        )
    })
}

fn summary(t: &Topic) -> serde_json::Value {
    let (records, bytes) = totals(t);
    json!({
        "name": t.name,
        "id": t.id.to_string(),
        "partitions": t.partition_count(),
        "records": records,
        "bytes": bytes,
        "internal": t.name.ends_with(crate::delay::SUFFIX),
    })
}

fn detail_json(broker: &Broker, t: &Topic) -> serde_json::Value {
    let overrides = t.overrides();
    let resolver = broker.topics.resolver();
    let configs: BTreeMap<&str, serde_json::Value> = config::TOPIC_CONFIGS
        .iter()
        .map(|d| {
            let (value, source) = resolver.value(&overrides, d.name);
            (d.name, json!({"value": value, "source": source.as_str()}))
        })
        .collect();
    let partitions: Vec<serde_json::Value> = t
        .partitions()
        .iter()
        .map(|p| {
            json!({
                "partition": p.index,
                "log_start_offset": p.log.log_start_offset(),
                "high_watermark": p.log.high_watermark(),
                "last_stable_offset": p.log.last_stable_offset(),
                "size_bytes": p.log.size_bytes(),
                "segments": p.log.segment_count(),
            })
        })
        .collect();
    let (records, bytes) = totals(t);
    let views: Vec<String> = broker
        .views
        .list()
        .iter()
        .filter(|v| v.source == t.name)
        .map(|v| v.name.clone())
        .collect();
    json!({
        "name": t.name,
        "id": t.id.to_string(),
        "internal": t.name.ends_with(crate::delay::SUFFIX),
        "records": records,
        "bytes": bytes,
        "configs": configs,
        "partitions": partitions,
        "views": views,
    })
}

/// `GET /api/v1/topics`: every topic with partitions, records and bytes.
pub async fn list(State(broker): State<Arc<Broker>>) -> Response {
    let topics: Vec<_> = broker.topics.list().iter().map(|t| summary(t)).collect();
    Json(json!({ "topics": topics })).into_response()
}

/// `GET /api/v1/topics/{name}`: configs (effective value and source) and per
/// partition log start, high watermark, last stable offset and size.
pub async fn detail(
    State(broker): State<Arc<Broker>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let t = topic(&broker, &name)?;
    Ok(Json(detail_json(&broker, &t)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    name: String,
    /// Default: the broker's `--partitions`.
    partitions: Option<i32>,
    #[serde(default)]
    configs: BTreeMap<String, String>,
}

/// `POST /api/v1/topics`: creates a topic (201 with its detail; 409 if it or a
/// view of that name exists). Names, partitions and configs follow Kafka's rules.
pub async fn create(
    State(broker): State<Arc<Broker>>,
    JsonBody(req): JsonBody<CreateRequest>,
) -> Result<Response, ApiError> {
    if broker.views.get(&req.name).is_some() {
        return Err(ApiError::conflict(format!(
            "a view named {} exists",
            req.name
        )));
    }
    let partitions = req.partitions.unwrap_or(broker.config.default_partitions);
    let b = broker.clone();
    let t = tokio::task::spawn_blocking(move || {
        b.topics
            .create(&req.name, partitions, -1, req.configs, partitions)
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?
    .map_err(topic_error)?;
    Ok((StatusCode::CREATED, Json(detail_json(&broker, &t))).into_response())
}

/// `DELETE /api/v1/topics/{name}`: deletes the topic and its committed offsets (204).
pub async fn delete(
    State(broker): State<Arc<Broker>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    topic(&broker, &name)?;
    let b = broker.clone();
    tokio::task::spawn_blocking(move || b.delete_topic(&name))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(topic_error)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigsRequest {
    /// Config name to a new value, or `null` to return to the default.
    configs: BTreeMap<String, Option<String>>,
}

/// `PUT /api/v1/topics/{name}/configs`: sets or removes overrides (as
/// IncrementalAlterConfigs SET/DELETE); the other overrides stay.
pub async fn set_configs(
    State(broker): State<Arc<Broker>>,
    Path(name): Path<String>,
    JsonBody(req): JsonBody<ConfigsRequest>,
) -> Result<Response, ApiError> {
    let t = topic(&broker, &name)?;
    let mut overrides = t.overrides();
    for (k, v) in req.configs {
        if config::def(&k).is_none() {
            return Err(ApiError::bad_request(format!(
                "Unknown topic config name: {k}"
            )));
        }
        match v {
            Some(v) => overrides.insert(k, v),
            None => overrides.remove(&k),
        };
    }
    broker
        .topics
        .set_configs(&name, overrides, false)
        .map_err(topic_error)?;
    Ok(Json(detail_json(&broker, &t)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartitionsRequest {
    /// The new total partition count (as CreatePartitions).
    count: i32,
}

/// `POST /api/v1/topics/{name}/partitions` `{"count": n}`: grows the topic.
pub async fn add_partitions(
    State(broker): State<Arc<Broker>>,
    Path(name): Path<String>,
    JsonBody(req): JsonBody<PartitionsRequest>,
) -> Result<Response, ApiError> {
    let t = topic(&broker, &name)?;
    let b = broker.clone();
    tokio::task::spawn_blocking(move || b.add_partitions(&name, req.count, false))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(topic_error)?;
    Ok(Json(detail_json(&broker, &t)).into_response())
}

/// `GET /api/v1/topics/{name}/records?partition=&offset=|timestamp=&limit=`: records
/// from an offset, or from the first record at or after a timestamp (ms). A view's
/// name shows the records its consumers get. Keys and values are UTF-8 text when
/// they are, base64 otherwise (`key_encoding`/`value_encoding` say which).
pub async fn records(
    State(broker): State<Arc<Broker>>,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let num = |k: &str| -> Result<Option<i64>, ApiError> {
        q.get(k)
            .map(|v| {
                v.parse::<i64>()
                    .map_err(|_| ApiError::bad_request(format!("{k} must be an integer")))
            })
            .transpose()
    };
    if let Some(k) = q
        .keys()
        .find(|k| !["partition", "offset", "timestamp", "limit"].contains(&k.as_str()))
    {
        return Err(ApiError::bad_request(format!("unknown parameter {k}")));
    }
    let partition = num("partition")?.unwrap_or(0);
    let limit = num("limit")?.unwrap_or(DEFAULT_RECORDS as i64);
    if !(1..=MAX_RECORDS as i64).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit must be in 1..={MAX_RECORDS}"
        )));
    }
    let (offset, timestamp) = (num("offset")?, num("timestamp")?);
    if offset.is_some() && timestamp.is_some() {
        return Err(ApiError::bad_request("give offset or timestamp, not both"));
    }
    let (t, view) = broker
        .read_topic(&name)
        .ok_or_else(|| ApiError::not_found(format!("no topic or view {name}")))?;
    let p = i32::try_from(partition)
        .ok()
        .and_then(|i| t.partition(i))
        .ok_or_else(|| ApiError::not_found(format!("no partition {partition} of {name}")))?;
    let hw = p.log.high_watermark();
    let from = match (offset, timestamp) {
        (_, Some(ts)) => match p.log.offset_for_timestamp(ts) {
            Ok(Some((o, _))) => o,
            Ok(None) => hw,
            Err(e) => return Err(ApiError::internal(e.to_string())),
        },
        (Some(o), None) => o,
        (None, None) => p.log.log_start_offset(),
    };
    let (recs, next) = tokio::task::spawn_blocking(move || {
        read_records(&t, partition as i32, from, limit as usize, view.as_deref())
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))??;
    let records: Vec<serde_json::Value> = recs.iter().map(record_json).collect();
    Ok(Json(json!({
        "topic": name,
        "partition": partition,
        "records": records,
        "next_offset": next,
        "high_watermark": hw,
    }))
    .into_response())
}

fn text_or_base64(b: &Option<Bytes>) -> (serde_json::Value, &'static str) {
    match b {
        None => (serde_json::Value::Null, "utf8"),
        Some(b) => match std::str::from_utf8(b) {
            Ok(s) => (json!(s), "utf8"),
            Err(_) => (
                json!(base64::engine::general_purpose::STANDARD.encode(b)),
                "base64",
            ),
        },
    }
}

fn record_json(r: &records::Record) -> serde_json::Value {
    let (key, key_encoding) = text_or_base64(&r.key);
    let (value, value_encoding) = text_or_base64(&r.value);
    let headers: Vec<serde_json::Value> = r
        .headers
        .iter()
        .map(|(k, v)| {
            json!({
                "key": String::from_utf8_lossy(k),
                "value": v.as_ref().map(|v| String::from_utf8_lossy(v).into_owned()),
            })
        })
        .collect();
    json!({
        "offset": r.offset,
        "timestamp": r.timestamp,
        "key": key,
        "key_encoding": key_encoding,
        "value": value,
        "value_encoding": value_encoding,
        "headers": headers,
    })
}

/// Up to `limit` committed-or-not records of a partition from `from` (clamped to
/// the log start), through `view` if given; and the offset to continue from.
/// Control batches are skipped. Blocking (reads files).
pub fn read_records(
    t: &Topic,
    partition: i32,
    from: i64,
    limit: usize,
    view: Option<&View>,
) -> Result<(Vec<records::Record>, i64), ApiError> {
    let p = t
        .partition(partition)
        .ok_or_else(|| ApiError::not_found(format!("no partition {partition}")))?;
    let hw = p.log.high_watermark();
    let mut at = from.clamp(p.log.log_start_offset(), hw);
    let mut out = Vec::new();
    let mut scanned = 0usize;
    while out.len() < limit && at < hw && scanned < MAX_SCAN_BYTES {
        let read = p
            .log
            .read(at, 1 << 20, hw)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        if read.bytes.is_empty() {
            break;
        }
        scanned += read.bytes.len();
        let bytes = match view {
            Some(v) => v.filter(&read.bytes, partition),
            None => read.bytes,
        };
        let mut pos = 0;
        while pos < bytes.len() && out.len() < limit {
            let Ok((h, size)) = batch::frame(&bytes[pos..]) else {
                break;
            };
            let b = bytes.slice(pos..pos + size);
            pos += size;
            if h.is_control() {
                at = h.next_offset();
                continue;
            }
            let (_, recs) = records::decode(&b).map_err(ApiError::internal)?;
            let mut taken_all = true;
            let start = at;
            for r in recs.into_iter().filter(|r| r.offset >= start) {
                if out.len() == limit {
                    taken_all = false;
                    break;
                }
                at = r.offset + 1;
                out.push(r);
            }
            if taken_all {
                at = at.max(h.next_offset());
            }
        }
    }
    Ok((out, at))
}
