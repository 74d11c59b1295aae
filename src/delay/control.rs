//! The `kairos-*` control headers of a delay record (DESIGN.md "Delay topics"):
//! parsing and validation, shared by produce (refuse bad batches) and the wheel
//! (read them back at ingest). Values are ASCII decimal.

use bytes::Bytes;

pub const DELAY_MS: &str = "kairos-delay-ms";
pub const DELIVER_AT: &str = "kairos-deliver-at";
pub const REPEAT_MS: &str = "kairos-repeat-ms";
pub const REPEAT_COUNT: &str = "kairos-repeat-count";
pub const REPEAT_UNTIL: &str = "kairos-repeat-until";
pub const CANCEL: &str = "kairos-cancel";
/// Added to every delivered record: `<partition>:<offset>` of its delay record.
pub const DELAY_ID: &str = "kairos-delay-id";
/// Every header starting with this is a control header: removed on delivery,
/// refused when unknown.
pub const PREFIX: &str = "kairos-";

/// What a record in a delay topic asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Control {
    Delay(Schedule),
    /// Cancel the delay record at this delay-topic partition and offset.
    Cancel {
        partition: i32,
        offset: i64,
    },
}

/// When to deliver, and how often.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    /// First due time, Unix ms.
    pub due_ms: i64,
    /// Interval between deliveries (0: no repeat).
    pub repeat_ms: i64,
    /// Deliveries left including the first; 0 = unbounded (until `until_ms`).
    pub remaining: u32,
    /// No delivery is due after this (i64::MAX: no bound).
    pub until_ms: i64,
}

impl Schedule {
    /// The schedule after one delivery at `due_ms`, or None when it was the last.
    pub fn next(&self) -> Option<Schedule> {
        if self.repeat_ms <= 0 || self.remaining == 1 {
            return None;
        }
        let due_ms = self.due_ms.checked_add(self.repeat_ms)?;
        if due_ms > self.until_ms {
            return None;
        }
        Some(Schedule {
            due_ms,
            remaining: if self.remaining == 0 {
                0
            } else {
                self.remaining - 1
            },
            ..self.clone()
        })
    }
}

fn decimal(name: &str, v: &Option<Bytes>) -> Result<i64, String> {
    let Some(v) = v else {
        return Err(format!("header {name} has no value"));
    };
    let s = std::str::from_utf8(v).map_err(|_| format!("header {name} is not ASCII"))?;
    if s.is_empty() || s.len() > 19 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "header {name} must be a non-negative decimal integer, was {s:?}"
        ));
    }
    s.parse::<i64>()
        .map_err(|_| format!("header {name} is out of range: {s:?}"))
}

/// Parses `<partition>:<offset>` (a delay id).
pub fn parse_id(s: &str) -> Option<(i32, i64)> {
    let (p, o) = s.split_once(':')?;
    let digits = |x: &str| !x.is_empty() && x.len() <= 19 && x.bytes().all(|b| b.is_ascii_digit());
    if !digits(p) || !digits(o) {
        return None;
    }
    Some((p.parse().ok()?, o.parse().ok()?))
}

/// Reads the control headers of one record received at `received_ms`.
/// `max_delay_ms` bounds how far in the future (from `now_ms`) a delivery may be.
pub fn parse(
    headers: &[(Bytes, Option<Bytes>)],
    received_ms: i64,
    now_ms: i64,
    max_delay_ms: i64,
) -> Result<Control, String> {
    let mut delay_ms = None;
    let mut deliver_at = None;
    let mut repeat_ms = None;
    let mut count = None;
    let mut until = None;
    let mut cancel = None;
    for (k, v) in headers {
        if !k.starts_with(PREFIX.as_bytes()) {
            continue;
        }
        let name = std::str::from_utf8(k).unwrap_or("(not UTF-8)");
        match name {
            DELAY_MS => delay_ms = Some(decimal(name, v)?),
            DELIVER_AT => deliver_at = Some(decimal(name, v)?),
            REPEAT_MS => repeat_ms = Some(decimal(name, v)?),
            REPEAT_COUNT => count = Some(decimal(name, v)?),
            REPEAT_UNTIL => until = Some(decimal(name, v)?),
            CANCEL => {
                let s = v
                    .as_ref()
                    .and_then(|b| std::str::from_utf8(b).ok())
                    .unwrap_or("");
                cancel = Some(parse_id(s).ok_or_else(|| {
                    format!("header {CANCEL} must be <partition>:<offset>, was {s:?}")
                })?);
            }
            other => {
                return Err(format!(
                    "unknown control header {other:?} (known: {DELAY_MS}, {DELIVER_AT}, {REPEAT_MS}, {REPEAT_COUNT}, {REPEAT_UNTIL}, {CANCEL})"
                ))
            }
        }
    }
    if let Some((partition, offset)) = cancel {
        if delay_ms.is_some() || deliver_at.is_some() || repeat_ms.is_some() {
            return Err(format!("a {CANCEL} record carries no delay headers"));
        }
        return Ok(Control::Cancel { partition, offset });
    }
    let due_ms = match (delay_ms, deliver_at) {
        (Some(d), None) => received_ms.saturating_add(d),
        (None, Some(t)) => t,
        (None, None) => {
            return Err(format!(
                "a record in a delay topic needs {DELAY_MS} or {DELIVER_AT} (or {CANCEL})"
            ))
        }
        (Some(_), Some(_)) => return Err(format!("use {DELAY_MS} or {DELIVER_AT}, not both")),
    };
    if due_ms.saturating_sub(now_ms) > max_delay_ms {
        return Err(format!(
            "delay of {} ms exceeds the maximum of {max_delay_ms} ms",
            due_ms - now_ms
        ));
    }
    let repeat_ms = repeat_ms.unwrap_or(0);
    if repeat_ms == 0 && (count.is_some_and(|c| c > 1) || until.is_some()) {
        return Err(format!(
            "{REPEAT_COUNT} above 1 and {REPEAT_UNTIL} need {REPEAT_MS} > 0"
        ));
    }
    let remaining = match (count, until) {
        (Some(0), _) => return Err(format!("{REPEAT_COUNT} must be at least 1")),
        (Some(c), _) => u32::try_from(c).map_err(|_| format!("{REPEAT_COUNT} is too large"))?,
        (None, Some(_)) => 0,
        (None, None) => 1,
    };
    let until_ms = until.unwrap_or(i64::MAX);
    if until_ms < due_ms {
        return Err(format!(
            "{REPEAT_UNTIL} {until_ms} is before the first delivery at {due_ms}"
        ));
    }
    Ok(Control::Delay(Schedule {
        due_ms,
        repeat_ms,
        remaining,
        until_ms,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Vec<(Bytes, Option<Bytes>)> {
        pairs
            .iter()
            .map(|(k, v)| (Bytes::from(k.to_string()), Some(Bytes::from(v.to_string()))))
            .collect()
    }

    const MAX: i64 = 365 * 24 * 3600 * 1000;

    #[test]
    fn delay_and_deliver_at() {
        let c = parse(&h(&[(DELAY_MS, "1500")]), 1000, 1000, MAX).unwrap();
        assert_eq!(
            c,
            Control::Delay(Schedule {
                due_ms: 2500,
                repeat_ms: 0,
                remaining: 1,
                until_ms: i64::MAX
            })
        );
        let c = parse(&h(&[(DELIVER_AT, "5"), ("user", "x")]), 1000, 1000, MAX).unwrap();
        assert!(matches!(c, Control::Delay(Schedule { due_ms: 5, .. })));
    }

    #[test]
    fn refusals() {
        let bad: &[&[(&str, &str)]] = &[
            &[],
            &[("user", "x")],
            &[(DELAY_MS, "1"), (DELIVER_AT, "2")],
            &[(DELAY_MS, "-1")],
            &[(DELAY_MS, "1.5")],
            &[(DELAY_MS, "")],
            &[(DELAY_MS, "99999999999999999999")],
            &[("kairos-delay-sec", "1")],
            &[(DELAY_MS, "1"), (REPEAT_COUNT, "3")],
            &[(DELAY_MS, "1"), (REPEAT_MS, "10"), (REPEAT_COUNT, "0")],
            &[(DELAY_MS, "1"), (REPEAT_UNTIL, "100")],
            &[(CANCEL, "0")],
            &[(CANCEL, "a:1")],
            &[(CANCEL, "0:1"), (DELAY_MS, "1")],
            &[(DELAY_MS, "31536000001")],
        ];
        for b in bad {
            assert!(parse(&h(b), 0, 0, MAX).is_err(), "{b:?} was accepted");
        }
        let null = vec![(Bytes::from_static(DELAY_MS.as_bytes()), None)];
        assert!(parse(&null, 0, 0, MAX).is_err());
    }

    #[test]
    fn cancel_and_ids() {
        assert_eq!(
            parse(&h(&[(CANCEL, "3:42")]), 0, 0, MAX).unwrap(),
            Control::Cancel {
                partition: 3,
                offset: 42
            }
        );
        assert_eq!(parse_id("0:0"), Some((0, 0)));
        assert_eq!(parse_id("-1:0"), None);
        assert_eq!(parse_id("1:"), None);
    }

    #[test]
    fn repeats() {
        let Control::Delay(s) = parse(
            &h(&[(DELAY_MS, "100"), (REPEAT_MS, "50"), (REPEAT_COUNT, "3")]),
            0,
            0,
            MAX,
        )
        .unwrap() else {
            panic!()
        };
        let s2 = s.next().unwrap();
        assert_eq!((s2.due_ms, s2.remaining), (150, 2));
        let s3 = s2.next().unwrap();
        assert_eq!((s3.due_ms, s3.remaining), (200, 1));
        assert!(s3.next().is_none());

        let Control::Delay(u) = parse(
            &h(&[(DELAY_MS, "0"), (REPEAT_MS, "10"), (REPEAT_UNTIL, "25")]),
            0,
            0,
            MAX,
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(u.remaining, 0);
        let dues: Vec<i64> = std::iter::successors(Some(u), |s| s.next())
            .map(|s| s.due_ms)
            .collect();
        assert_eq!(dues, vec![0, 10, 20]);
    }
}
