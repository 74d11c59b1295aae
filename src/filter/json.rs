//! A record value as the `json` a script sees: the document converted to a rhai map, or
//! `()` when the value is not a JSON object; and [`scan`], the same document read for the
//! native predicates (`super::native`) without building any rhai value.
//!
//! Converting a whole 1 KiB document costs several times more than running a typical
//! filter, so when a script reads only some top-level fields ([`super::uses::JsonUse`])
//! the document is still parsed in full (an invalid one is still `()`) but every other
//! field is skipped without being built. Values are deserialized straight into rhai
//! values (rhai's `Deserialize for Dynamic`), which gives what converting a
//! `serde_json::Value` gives, without building the `Value` first.

use std::borrow::Cow;
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

/// A number's text, which [`Scanner::number`] checked to be ASCII.
fn ascii(b: &[u8]) -> &str {
    std::str::from_utf8(b).unwrap_or_default()
}

/// A top-level field as [`scan`] reads it. What [`whole`] would make of it, for the
/// kinds the native predicates compare; `Other` stands for anything else (an array, an
/// object) and is never compared natively.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Scalar<'a> {
    /// `null`, or a field that is absent (rhai reads a missing property as `()`).
    #[default]
    Unit,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Cow<'a, str>),
    Other,
}

/// Deepest nesting [`scan`] follows; serde_json stops at 128.
const MAX_SCAN_DEPTH: usize = 100;

/// Reads the top-level `fields` of `value` into `out` (`out[i]` for `fields[i]`, `Unit`
/// when absent; `out` must hold `fields.len()` entries) when `value` is a JSON object that
/// [`whole`] accepts; the last of repeated keys wins, as there. None: not an object, not
/// valid, or a case left to serde_json (an escaped key, a number whose value is out of
/// range, very deep nesting); the caller then takes the slow path, which decides.
///
/// Made for speed on typical records: strings are skipped with `memchr`, nothing is
/// allocated unless a wanted string has escapes.
pub fn scan<'a>(value: &'a [u8], fields: &[String], out: &mut [Scalar<'a>]) -> Option<()> {
    let mut s = Scanner { b: value, i: 0 };
    s.ws();
    s.eat(b'{')?;
    s.ws();
    if s.peek() == Some(b'}') {
        s.i += 1;
    } else {
        loop {
            let (start, escaped) = s.string()?;
            if escaped {
                return None;
            }
            let key = &value[start + 1..s.i - 1];
            s.ws();
            s.eat(b':')?;
            s.ws();
            match fields.iter().position(|f| f.as_bytes() == key) {
                Some(k) => out[k] = s.scalar()?,
                None => s.skip(0)?,
            }
            s.ws();
            match s.next()? {
                b',' => s.ws(),
                b'}' => break,
                _ => return None,
            }
        }
    }
    s.ws();
    (s.i == value.len()).then_some(())
}

/// Outside strings, JSON is ASCII and the grammar admits no other byte; inside, each run
/// of bytes between escapes is checked for UTF-8 (a character never spans an escape or a
/// quote): so the whole value is UTF-8 when the scan succeeds.
struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        (self.next()? == c).then_some(())
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.i + word.len();
        (self.b.get(self.i..end)? == word).then(|| self.i = end)
    }

    /// A string at the cursor: its start (the quote) and whether it has escapes.
    fn string(&mut self) -> Option<(usize, bool)> {
        let start = self.i;
        self.eat(b'"')?;
        let mut escaped = false;
        loop {
            let rest = &self.b[self.i..];
            let n = memchr::memchr2(b'"', b'\\', rest)?;
            let run = &rest[..n];
            // Control characters must be escaped; anything not ASCII must be UTF-8. Bit 7
            // of `b | (b - 0x20)` is set for both kinds: one pass, which vectorizes, finds
            // out whether the run is plain (the usual case).
            let plain = run.iter().fold(0u8, |a, &b| a | b | b.wrapping_sub(0x20)) < 0x80;
            if !plain && (run.iter().any(|&b| b < 0x20) || std::str::from_utf8(run).is_err()) {
                return None;
            }
            self.i += n + 1;
            if rest[n] == b'"' {
                return Some((start, escaped));
            }
            escaped = true;
            match self.next()? {
                b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                b'u' => {
                    let hex = self.b.get(self.i..self.i + 4)?;
                    if !hex.iter().all(u8::is_ascii_hexdigit) {
                        return None;
                    }
                    self.i += 4;
                }
                _ => return None,
            }
        }
    }

    /// A number at the cursor: whether it is an integer (no fraction, no exponent).
    fn number(&mut self) -> Option<bool> {
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.next()? {
            b'0' => {}
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        let mut integer = true;
        if self.peek() == Some(b'.') {
            self.i += 1;
            self.digit()?;
            integer = false;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            self.digit()?;
            integer = false;
        }
        Some(integer)
    }

    fn digit(&mut self) -> Option<()> {
        self.next()?.is_ascii_digit().then_some(())?;
        self.digits();
        Some(())
    }

    fn digits(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
    }

    /// A wanted field's value.
    fn scalar(&mut self) -> Option<Scalar<'a>> {
        let start = self.i;
        Some(match self.peek()? {
            b'"' => {
                let (_, escaped) = self.string()?;
                let raw = std::str::from_utf8(&self.b[start..self.i]).ok()?;
                if escaped {
                    // serde_json decodes escapes (and refuses lone surrogates).
                    Scalar::Str(Cow::Owned(serde_json::from_str::<String>(raw).ok()?))
                } else {
                    Scalar::Str(Cow::Borrowed(&raw[1..raw.len() - 1]))
                }
            }
            b't' => self.literal(b"true").map(|_| Scalar::Bool(true))?,
            b'f' => self.literal(b"false").map(|_| Scalar::Bool(false))?,
            b'n' => self.literal(b"null").map(|_| Scalar::Unit)?,
            b'{' | b'[' => {
                self.skip(0)?;
                Scalar::Other
            }
            _ => {
                let integer = self.number()?;
                let raw = ascii(&self.b[start..self.i]);
                match raw.parse::<i64>() {
                    Ok(n) if integer => Scalar::Int(n),
                    // As serde_json reads it (and refuses it when out of range).
                    _ => Scalar::Float(serde_json::from_str::<f64>(raw).ok()?),
                }
            }
        })
    }

    /// Skips a value, checking that it is valid.
    fn skip(&mut self, depth: usize) -> Option<()> {
        let start = self.i;
        match self.peek()? {
            b'"' => {
                self.string()?;
            }
            b't' => self.literal(b"true")?,
            b'f' => self.literal(b"false")?,
            b'n' => self.literal(b"null")?,
            open @ (b'{' | b'[') => {
                if depth >= MAX_SCAN_DEPTH {
                    return None;
                }
                let close = if open == b'{' { b'}' } else { b']' };
                self.i += 1;
                self.ws();
                if self.peek() == Some(close) {
                    self.i += 1;
                    return Some(());
                }
                loop {
                    if open == b'{' {
                        self.string()?;
                        self.ws();
                        self.eat(b':')?;
                        self.ws();
                    }
                    self.skip(depth + 1)?;
                    self.ws();
                    match self.next()? {
                        b',' => self.ws(),
                        c if c == close => return Some(()),
                        _ => return None,
                    }
                }
            }
            _ => {
                // A number: plain integers cannot be out of range (serde_json reads long
                // ones as floats); any other is checked as serde_json reads it.
                if !self.number()? || self.i - start > 18 {
                    serde_json::from_str::<f64>(ascii(&self.b[start..self.i])).ok()?;
                }
            }
        }
        Some(())
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

#[cfg(test)]
mod scan_tests {
    use super::*;

    /// What [`scan`] reads is what [`fields`] converts, for every kind it reads.
    #[test]
    fn scan_reads_what_fields_converts() {
        let want: Vec<String> = ["s", "e", "i", "big", "f", "t", "n", "o", "missing"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let doc = r#" { "s":"plain", "e":"a\"\u00e9\n", "i":-42, "big":18446744073709551615,
            "f":2.5e-3, "t":true, "n":null, "o":{"x":[1,{"y":"z"}]}, "skip":[1e5,"q",false] } "#;
        let mut out: Vec<Scalar> = vec![Scalar::Unit; want.len()];
        assert_eq!(scan(doc.as_bytes(), &want, &mut out), Some(()));
        assert_eq!(
            out,
            [
                Scalar::Str(Cow::Borrowed("plain")),
                Scalar::Str(Cow::Owned("a\"é\n".into())),
                Scalar::Int(-42),
                Scalar::Float(18446744073709551615.0),
                Scalar::Float(2.5e-3),
                Scalar::Bool(true),
                Scalar::Unit,
                Scalar::Other,
                Scalar::Unit,
            ]
        );
        let m = fields(doc.as_bytes(), &want).try_cast::<Map>().unwrap();
        assert_eq!(m["i"].as_int(), Ok(-42));
        assert_eq!(m["big"].as_float(), Ok(18446744073709551615.0));
        assert_eq!(m["f"].as_float(), Ok(2.5e-3));
        assert_eq!(m["e"].clone().into_string().unwrap(), "a\"é\n");
    }

    /// Every document [`whole`] refuses, [`scan`] refuses too.
    #[test]
    fn scan_refuses_what_is_not_an_object() {
        let want = vec!["a".to_string()];
        for d in [
            "",
            "[1]",
            "{",
            r#"{"a":1"#,
            r#"{"a":1}}"#,
            r#"{"a":"x\u00"}"#,
            r#"{"a":1,"b":[}"#,
            r#"{"b":1e999,"a":1}"#,
            "{\"a\":\"\u{1}\"}",
            r#"{"a":+1}"#,
            r#"{"a":-01}"#,
        ] {
            let mut out = vec![Scalar::Unit];
            assert!(whole(d.as_bytes()).is_unit(), "{d}");
            assert_eq!(scan(d.as_bytes(), &want, &mut out), None, "{d}");
        }
    }
}
