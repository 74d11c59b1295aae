//! A record value as the `json` a script sees: the document converted to a rhai map, or
//! `()` when the value is not a JSON object.
//!
//! Converting a whole 1 KiB document costs several times more than running a typical
//! filter, so when a script reads only some top-level fields ([`super::uses::JsonUse`])
//! the document is still parsed in full (an invalid one is still `()`) but every other
//! field is skipped without being built. Values are deserialized straight into rhai
//! values (rhai's `Deserialize for Dynamic`), which gives what converting a
//! `serde_json::Value` gives, without building the `Value` first.

use std::fmt;

use rhai::{Dynamic, Map};
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};

/// The whole document as a rhai value; `()` unless `value` is a JSON object.
pub fn whole(value: &[u8]) -> Dynamic {
    let Some(text) = object_text(value) else {
        return Dynamic::UNIT;
    };
    serde_json::from_str::<Dynamic>(text).unwrap_or(Dynamic::UNIT)
}

/// A map of only the top-level `fields` of the document that are present; `()` unless
/// `value` is a JSON object. Each field is converted as [`whole`] converts it.
pub fn fields(value: &[u8], fields: &[String]) -> Dynamic {
    let Some(text) = object_text(value) else {
        return Dynamic::UNIT;
    };
    let mut de = serde_json::Deserializer::from_str(text);
    match Doc(fields)
        .deserialize(&mut de)
        .and_then(|m| de.end().map(|_| m))
    {
        Ok(m) => Dynamic::from_map(m),
        Err(_) => Dynamic::UNIT,
    }
}

/// The value as text if it may be a JSON object. UTF-8 is checked here, for the whole
/// document at once (much faster than string by string, and serde_json skips the strings
/// of the fields left out without checking them).
fn object_text(value: &[u8]) -> Option<&str> {
    if !value.trim_ascii_start().starts_with(b"{") {
        return None;
    }
    std::str::from_utf8(value).ok()
}

/// The top-level object, keeping the wanted fields.
struct Doc<'w>(&'w [String]);

impl<'de> DeserializeSeed<'de> for Doc<'_> {
    type Value = Map;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Map, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Doc<'_> {
    type Value = Map;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Map, A::Error> {
        let mut m = Map::new();
        while let Some(wanted) = a.next_key_seed(Key(self.0))? {
            match wanted {
                Some(i) => {
                    let v: Dynamic = a.next_value()?;
                    // A repeated key: the last one wins, as in serde_json's own maps.
                    m.insert(self.0[i].as_str().into(), v);
                }
                None => {
                    a.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(m)
    }
}

/// An object key: the index of the wanted field it names, compared without allocating.
struct Key<'w>(&'w [String]);

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = Option<usize>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Option<usize>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key<'_> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, k: &str) -> Result<Option<usize>, E> {
        Ok(self.0.iter().position(|f| f == k))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn want(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    /// The conversion through `serde_json::Value` that [`whole`] replaces.
    fn through_value(d: &str) -> Dynamic {
        serde_json::from_str::<serde_json::Value>(d)
            .ok()
            .filter(|v| v.is_object())
            .and_then(|v| rhai::serde::to_dynamic(v).ok())
            .unwrap_or(Dynamic::UNIT)
    }

    #[test]
    fn fields_match_the_whole_conversion() {
        let docs = [
            r#"{"city":"beijing","price":12,"pad":"xxxx"}"#,
            r#" {"a":{"b":[1,2.5,null,true]},"city":"x\"y\u00e9","city":"last"}"#,
            r#"{"price":18446744073709551615,"neg":-3,"f":1e10}"#,
            r#"{"ci\u0074y":"escaped key"}"#,
            r#"{}"#,
        ];
        for d in docs {
            assert_eq!(
                format!("{:?}", whole(d.as_bytes())),
                format!("{:?}", through_value(d)),
                "{d}"
            );
            let whole = whole(d.as_bytes()).try_cast::<Map>().expect(d);
            for f in [
                want(&["city"]),
                want(&["price", "a", "nope"]),
                want(&["neg", "f"]),
            ] {
                let got = fields(d.as_bytes(), &f).try_cast::<Map>().expect(d);
                for k in &f {
                    let (w, g) = (whole.get(k.as_str()), got.get(k.as_str()));
                    assert_eq!(format!("{w:?}"), format!("{g:?}"), "{d} {k}");
                }
                assert!(got.len() <= f.len());
            }
        }
    }

    #[test]
    fn not_an_object_is_unit() {
        for d in [
            "",
            "not json",
            "[1,2]",
            "12",
            r#"{"a":1"#,
            r#"{"a":1} trailing"#,
            r#"{"a":tru}"#,
            r#"{"a":1,"b":"unterminated}"#,
            "{\"a\":1,\"b\":\"x\u{1}\"}",
        ] {
            assert!(whole(d.as_bytes()).is_unit(), "{d}");
            assert!(fields(d.as_bytes(), &want(&["a"])).is_unit(), "{d}");
        }
        // Invalid UTF-8 in a field the script does not read: still not JSON.
        let bad = b"{\"a\":1,\"b\":\"x\xffx\"}";
        assert!(whole(bad).is_unit());
        assert!(fields(bad, &want(&["a"])).is_unit());
    }
}
