//! The topics a "consumer"-protocol member subscribes to, read from its
//! ConsumerProtocolSubscription metadata (version i16, then an array of
//! topic names: i32 count, each an i16 length and UTF-8 bytes). Later
//! versions only append fields, so every version starts the same way.
//! Member metadata is untrusted: never panic, never allocate from the count.

/// `None` when the metadata is not a valid subscription.
pub(crate) fn subscribed_topics(metadata: &[u8]) -> Option<Vec<String>> {
    let mut r = metadata;
    let version = read_i16(&mut r)?;
    if version < 0 {
        return None;
    }
    let count = read_i32(&mut r)?;
    let mut topics = Vec::new();
    // Each topic consumes at least two bytes, so garbage counts end quickly.
    for _ in 0..count.max(0) {
        let len = read_i16(&mut r)?;
        let len = usize::try_from(len).ok()?;
        if r.len() < len {
            return None;
        }
        let (name, rest) = r.split_at(len);
        topics.push(std::str::from_utf8(name).ok()?.to_string());
        r = rest;
    }
    Some(topics)
}

fn read_i16(r: &mut &[u8]) -> Option<i16> {
    let (head, rest) = r.split_first_chunk::<2>()?;
    *r = rest;
    Some(i16::from_be_bytes(*head))
}

fn read_i32(r: &mut &[u8]) -> Option<i32> {
    let (head, rest) = r.split_first_chunk::<4>()?;
    *r = rest;
    Some(i32::from_be_bytes(*head))
}

/// Encodes a v0 subscription (tests and tools).
#[cfg(test)]
pub(crate) fn encode_subscription(topics: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&0i16.to_be_bytes());
    out.extend_from_slice(&(topics.len() as i32).to_be_bytes());
    for t in topics {
        out.extend_from_slice(&(t.len() as i16).to_be_bytes());
        out.extend_from_slice(t.as_bytes());
    }
    out.extend_from_slice(&(-1i32).to_be_bytes()); // null user data
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_subscription() {
        let m = encode_subscription(&["a", "bc"]);
        assert_eq!(
            subscribed_topics(&m),
            Some(vec!["a".to_string(), "bc".to_string()])
        );
    }

    #[test]
    fn garbage_is_rejected_without_panicking() {
        assert_eq!(subscribed_topics(&[]), None);
        assert_eq!(subscribed_topics(&[0, 0, 0x7f, 0xff, 0xff, 0xff]), None);
        assert_eq!(subscribed_topics(&[0, 0, 0, 0, 0, 1, 0, 9, b'a']), None);
        assert_eq!(subscribed_topics(&[0, 0, 0, 0, 0, 1, 0xff, 0xff]), None);
        assert_eq!(subscribed_topics(&[0xff, 0xff, 0, 0, 0, 0]), None);
        assert_eq!(subscribed_topics(&[0, 0, 0, 0, 0, 1, 0, 1, 0xff]), None);
        assert_eq!(
            subscribed_topics(&[0, 0, 0xff, 0xff, 0xff, 0xff]),
            Some(vec![])
        );
    }
}
