//! ApiVersions: the table from `versions`, and the v0 fallback for versions we
//! do not know (the client retries with one we do).

use bytes::Bytes;
use kafka_protocol::messages::api_versions_response::{ApiVersion, ApiVersionsResponse};
use kafka_protocol::messages::ApiKey;

use crate::protocol::dispatch::{encode_response, Ctx};
use crate::protocol::errors::{NONE, UNSUPPORTED_VERSION};
use crate::protocol::versions::SUPPORTED;

fn table(error_code: i16) -> ApiVersionsResponse {
    let api_keys = SUPPORTED
        .iter()
        .map(|r| {
            ApiVersion::default()
                .with_api_key(r.key as i16)
                .with_min_version(r.advertised_min)
                .with_max_version(r.max)
        })
        .collect();
    ApiVersionsResponse::default()
        .with_error_code(error_code)
        .with_api_keys(api_keys)
}

pub fn handle(ctx: &Ctx) -> Bytes {
    ctx.encode(&table(NONE))
}

/// Response to an ApiVersions request of a version we do not implement: v0 format.
pub fn unsupported(correlation_id: i32) -> Bytes {
    encode_response(
        ApiKey::ApiVersions,
        0,
        correlation_id,
        &table(UNSUPPORTED_VERSION),
    )
}
