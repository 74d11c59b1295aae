//! `/api/v1/views`: view definitions (list, create, get, replace, delete) and
//! `POST /api/v1/views/test`, a dry run of a script over given records or over real
//! records of a topic (DESIGN.md "Console"). Views themselves are `crate::filter::views`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::json;

use crate::broker::Broker;
use crate::filter::views::{View, ViewDef, ViewError};
use crate::filter::{Input, Outcome, Script};
use crate::log::records;

/// Records a dry run may take, given or read.
const MAX_RECORDS: usize = 1000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestRequest {
    script: String,
    /// Records to run the script on...
    #[serde(default)]
    records: Vec<TestRecord>,
    /// ...or real records: this topic's partition from an offset.
    topic: Option<String>,
    #[serde(default)]
    partition: i32,
    offset: Option<i64>,
    limit: Option<usize>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TestRecord {
    key: Option<String>,
    value: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    timestamp: i64,
    #[serde(default)]
    partition: i32,
    #[serde(default)]
    offset: i64,
}

fn error(status: StatusCode, body: serde_json::Value) -> Response {
    (status, Json(body)).into_response()
}

pub async fn test(
    State(broker): State<Arc<Broker>>,
    body: Result<Json<TestRequest>, JsonRejection>,
) -> Response {
    let req = match body {
        Ok(Json(r)) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, json!({"error": e.body_text()})),
    };
    let script = match Script::compile(&req.script) {
        Ok(s) => s,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                json!({"error": e.to_string(), "line": e.line, "column": e.column}),
            )
        }
    };
    let input: Vec<records::Record> = match &req.topic {
        Some(topic) => {
            let limit = req.limit.unwrap_or(20).clamp(1, MAX_RECORDS);
            let Some(t) = broker.topics.get(topic) else {
                return error(
                    StatusCode::NOT_FOUND,
                    json!({"error": format!("no topic {topic}")}),
                );
            };
            let (offset, partition) = (req.offset.unwrap_or(0), req.partition);
            match tokio::task::spawn_blocking(move || {
                super::topics::read_records(&t, partition, offset, limit, None)
            })
            .await
            {
                Ok(Ok((r, _))) => r,
                Ok(Err(e)) => return e.into_response(),
                Err(e) => {
                    return error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        json!({"error": e.to_string()}),
                    )
                }
            }
        }
        None => {
            if req.records.len() > MAX_RECORDS {
                return error(
                    StatusCode::BAD_REQUEST,
                    json!({"error": format!("at most {MAX_RECORDS} records")}),
                );
            }
            req.records
                .iter()
                .map(|r| records::Record {
                    offset: r.offset,
                    timestamp: r.timestamp,
                    key: r.key.clone().map(Bytes::from),
                    value: r.value.clone().map(Bytes::from),
                    headers: r
                        .headers
                        .iter()
                        .map(|(k, v)| (Bytes::from(k.clone()), Some(Bytes::from(v.clone()))))
                        .collect(),
                })
                .collect()
        }
    };
    let partition = req.partition;
    let given: Vec<i32> = req.records.iter().map(|r| r.partition).collect();
    let results = tokio::task::spawn_blocking(move || {
        input
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let out = script.run(&Input {
                    key: r.key.as_deref(),
                    value: r.value.as_deref(),
                    headers: &r.headers,
                    timestamp: r.timestamp,
                    partition: given.get(i).copied().unwrap_or(partition),
                    offset: r.offset,
                });
                let text =
                    |b: &Option<Bytes>| b.as_ref().map(|b| String::from_utf8_lossy(b).into_owned());
                match out {
                    Ok(Outcome::Keep) => {
                        json!({"offset": r.offset, "outcome": "keep", "value": text(&r.value)})
                    }
                    Ok(Outcome::Drop) => json!({"offset": r.offset, "outcome": "drop"}),
                    Ok(Outcome::Replace(v)) => json!({
                        "offset": r.offset, "outcome": "replace",
                        "value": String::from_utf8_lossy(&v),
                    }),
                    Err(e) => json!({"offset": r.offset, "outcome": "error", "error": e}),
                }
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    Json(json!({ "results": results })).into_response()
}

fn view_json(v: &View) -> serde_json::Value {
    json!({
        "name": v.name,
        "id": v.id.to_string(),
        "source": v.source,
        "script": v.script_source,
        "on_error": v.on_error,
    })
}

fn view_error(e: ViewError) -> Response {
    match e {
        ViewError::Script(c) => error(
            StatusCode::BAD_REQUEST,
            json!({"error": format!("script: {c}"), "line": c.line, "column": c.column}),
        ),
        ViewError::Invalid(m) => error(StatusCode::BAD_REQUEST, json!({ "error": m })),
        ViewError::Exists(m) => error(
            StatusCode::CONFLICT,
            json!({ "error": format!("{m} already exists") }),
        ),
        ViewError::NotFound(m) => error(
            StatusCode::NOT_FOUND,
            json!({ "error": format!("no view {m}") }),
        ),
        ViewError::Store(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({ "error": e.to_string() }),
        ),
    }
}

/// `GET /api/v1/views`
pub async fn list(State(broker): State<Arc<Broker>>) -> Response {
    let views: Vec<_> = broker.views.list().iter().map(|v| view_json(v)).collect();
    Json(json!({ "views": views })).into_response()
}

/// `GET /api/v1/views/{name}`
pub async fn get(State(broker): State<Arc<Broker>>, Path(name): Path<String>) -> Response {
    match broker.views.get(&name) {
        Some(v) => Json(view_json(&v)).into_response(),
        None => view_error(ViewError::NotFound(name)),
    }
}

fn put_view(broker: &Broker, def: ViewDef, create: bool) -> Result<Arc<View>, ViewError> {
    let r = broker
        .views
        .put(def, create, |n| broker.topics.get(n).is_some());
    if let Ok(v) = &r {
        tracing::info!(view = %v.name, source = %v.source, created = create, "console: view saved");
    }
    r
}

/// `POST /api/v1/views` `{"name","source","script","on_error"}`: create (201).
pub async fn create(
    State(broker): State<Arc<Broker>>,
    body: Result<Json<ViewDef>, JsonRejection>,
) -> Response {
    let def = match body {
        Ok(Json(d)) => d,
        Err(e) => return error(StatusCode::BAD_REQUEST, json!({"error": e.body_text()})),
    };
    match put_view(&broker, def, true) {
        Ok(v) => (StatusCode::CREATED, Json(view_json(&v))).into_response(),
        Err(e) => view_error(e),
    }
}

/// `PUT /api/v1/views/{name}`: replace the source, script or error policy.
pub async fn update(
    State(broker): State<Arc<Broker>>,
    Path(name): Path<String>,
    body: Result<Json<serde_json::Value>, JsonRejection>,
) -> Response {
    let mut body = match body {
        Ok(Json(b)) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, json!({"error": e.body_text()})),
    };
    if let Some(m) = body.as_object_mut() {
        m.entry("name").or_insert(json!(name));
    }
    let def: ViewDef = match serde_json::from_value(body) {
        Ok(d) => d,
        Err(e) => return error(StatusCode::BAD_REQUEST, json!({"error": e.to_string()})),
    };
    if def.name != name {
        return error(
            StatusCode::BAD_REQUEST,
            json!({"error": "the body's name differs from the path's"}),
        );
    }
    match put_view(&broker, def, false) {
        Ok(v) => Json(view_json(&v)).into_response(),
        Err(e) => view_error(e),
    }
}

/// `DELETE /api/v1/views/{name}`
pub async fn delete(State(broker): State<Arc<Broker>>, Path(name): Path<String>) -> Response {
    match broker.views.delete(&name) {
        Ok(()) => {
            tracing::info!(view = %name, "console: view deleted");
            Json(json!({ "deleted": name })).into_response()
        }
        Err(e) => view_error(e),
    }
}
