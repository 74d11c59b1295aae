//! Quota throttling on the wire (KIP-219): a request that takes its client
//! over a byte-rate quota is answered at once with `throttle_time_ms`, and its
//! connection is muted, that is, the connection's reader handles no further
//! request until the throttle time has passed. The rates and throttle times
//! themselves are `crate::quotas`'.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::time::Instant;

use super::dispatch::Ctx;
use crate::quotas::{self, QuotaKind};

/// One connection's mute: until when it must not handle requests. Shared by
/// the connection's reader and the handlers of its requests (a fetch finishes
/// on the writer's side).
#[derive(Clone, Debug, Default)]
pub struct Mute(Arc<Mutex<Option<Instant>>>);

impl Mute {
    /// Mutes until `until` (a later mute already in place is kept).
    pub fn until(&self, until: Instant) {
        let mut m = self.0.lock();
        if m.is_none_or(|t| t < until) {
            *m = Some(until);
        }
    }

    /// When the mute ends, if it has not yet.
    pub fn muted_until(&self) -> Option<Instant> {
        let mut m = self.0.lock();
        match *m {
            Some(t) if t > Instant::now() => Some(t),
            _ => {
                *m = None;
                None
            }
        }
    }

    /// Waits out the mute (a mute set while waiting is waited for too).
    /// False when the broker shuts down meanwhile.
    pub async fn wait(&self, shutdown: &mut watch::Receiver<bool>) -> bool {
        while let Some(t) = self.muted_until() {
            tokio::select! {
                _ = tokio::time::sleep_until(t) => {}
                _ = shutdown.wait_for(|s| *s) => return false,
            }
        }
        true
    }
}

/// Records `bytes` against the client's quota of `kind`; when over it, mutes
/// the connection and answers the throttle time to put in the response.
pub fn record(ctx: &Ctx, kind: QuotaKind, bytes: usize) -> i32 {
    let client_id = ctx.client_id.as_deref();
    let v = ctx
        .broker
        .quotas
        .record(kind, client_id, bytes, quotas::now_ms());
    if v.throttle_ms == 0 {
        return 0;
    }
    ctx.mute
        .until(Instant::now() + Duration::from_millis(v.throttle_ms as u64));
    // The label is the quota entity (bounded by the entities there are), not
    // every client id the default quota throttles.
    let entity = if v.default_entity {
        "<default>"
    } else {
        client_id.unwrap_or_default()
    };
    ctx.broker
        .probe
        .quota_throttled(entity, kind.as_str(), v.throttle_ms as u64);
    tracing::debug!(
        client_id = client_id.unwrap_or_default(),
        kind = kind.as_str(),
        bytes,
        throttle_ms = v.throttle_ms,
        "quota exceeded: connection muted"
    );
    v.throttle_ms.min(i32::MAX as u32) as i32
}

/// Takes back bytes recorded for a response that is replaced by an empty one.
pub fn unrecord(ctx: &Ctx, kind: QuotaKind, bytes: usize) {
    ctx.broker
        .quotas
        .unrecord(kind, ctx.client_id.as_deref(), bytes, quotas::now_ms());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_mute_is_waited_out_and_the_later_one_wins() {
        let m = Mute::default();
        let (_tx, mut rx) = watch::channel(false);
        let start = Instant::now();
        assert!(m.wait(&mut rx).await);
        assert!(start.elapsed() < Duration::from_millis(50));
        m.until(start + Duration::from_millis(300));
        m.until(start + Duration::from_millis(100));
        assert!(m.wait(&mut rx).await);
        assert!(start.elapsed() >= Duration::from_millis(300));
        assert_eq!(m.muted_until(), None);
    }

    #[tokio::test]
    async fn shutdown_ends_a_mute() {
        let m = Mute::default();
        let (tx, mut rx) = watch::channel(false);
        m.until(Instant::now() + Duration::from_secs(3600));
        tx.send(true).unwrap();
        let waited = tokio::time::timeout(Duration::from_secs(5), m.wait(&mut rx)).await;
        assert_eq!(waited, Ok(false));
    }
}
