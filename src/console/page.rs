//! The web page at `/`: a single-page app (`page/index.html`, `page/app.js`,
//! `page/app.css`) compiled into the binary, so the console needs nothing from
//! outside. The page talks to `/api/v1/...` only; every file is served with
//! `cache-control: no-cache` and an ETag (a reload revalidates, answered 304), and a
//! content security policy that allows only this origin (no inline script).

use std::sync::{Arc, OnceLock};

use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, IF_NONE_MATCH,
    X_CONTENT_TYPE_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::broker::Broker;

const INDEX_HTML: &str = include_str!("page/index.html");
const APP_JS: &str = include_str!("page/app.js");
const APP_CSS: &str = include_str!("page/app.css");

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                   img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
                   form-action 'none'; frame-ancestors 'none'";

pub fn routes() -> Router<Arc<Broker>> {
    Router::new()
        .route(
            "/",
            get(|h: HeaderMap| async move { serve(&h, Asset::Index) }),
        )
        .route(
            "/index.html",
            get(|h: HeaderMap| async move { serve(&h, Asset::Index) }),
        )
        .route(
            "/app.js",
            get(|h: HeaderMap| async move { serve(&h, Asset::Js) }),
        )
        .route(
            "/app.css",
            get(|h: HeaderMap| async move { serve(&h, Asset::Css) }),
        )
}

#[derive(Clone, Copy)]
enum Asset {
    Index,
    Js,
    Css,
}

impl Asset {
    fn body(self) -> &'static str {
        match self {
            Asset::Index => INDEX_HTML,
            Asset::Js => APP_JS,
            Asset::Css => APP_CSS,
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Asset::Index => "text/html; charset=utf-8",
            Asset::Js => "text/javascript; charset=utf-8",
            Asset::Css => "text/css; charset=utf-8",
        }
    }

    /// A strong ETag: FNV-1a of the file, computed once per process.
    fn etag(self) -> &'static str {
        static TAGS: OnceLock<[String; 3]> = OnceLock::new();
        let tags = TAGS.get_or_init(|| {
            [Asset::Index, Asset::Js, Asset::Css].map(|a| {
                let h = a.body().bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                    (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
                });
                format!("\"{h:016x}\"")
            })
        });
        &tags[self as usize]
    }
}

fn serve(req: &HeaderMap, asset: Asset) -> Response {
    let etag = asset.etag();
    let fresh = req
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let headers = [
        (CONTENT_TYPE, HeaderValue::from_static(asset.content_type())),
        (CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (ETAG, HeaderValue::from_static(etag)),
        (X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        (CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP)),
    ];
    if fresh {
        (StatusCode::NOT_MODIFIED, headers).into_response()
    } else {
        (headers, asset.body()).into_response()
    }
}
