//! What a script can read, found once at compile time so that each record's scope holds
//! only that: a value the script never names is not copied, and a JSON document whose
//! script reads only `json.<field>` has only those fields converted to rhai values.
//!
//! The scan is textual and conservative: a name counts as used wherever it appears as a
//! word, in code, strings or comments alike. A script cannot reach a variable without
//! spelling its name (no `eval`, no modules, functions do not see the caller's scope), so
//! leaving out an unnamed variable never changes what a script computes.

/// How a script uses `json`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JsonUse {
    /// Never named: the value is not parsed.
    No,
    /// Only as `json.<field>` (read, assigned, or followed by more of a chain): a map of
    /// these top-level fields alone gives the same results as the whole document, since a
    /// missing property reads as `()` either way.
    Fields(Vec<String>),
    /// Any other use (`json` passed, returned, compared, indexed with `[]`, shadowed, a
    /// method called on it): the whole document.
    Whole,
}

/// The scope variables a script names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Uses {
    pub key: bool,
    pub value: bool,
    pub headers: bool,
    pub timestamp: bool,
    pub partition: bool,
    pub offset: bool,
    pub json: JsonUse,
}

impl Uses {
    pub fn of(source: &str) -> Uses {
        let named = |name: &str| words(source, name).next().is_some();
        Uses {
            key: named("key"),
            value: named("value"),
            headers: named("headers"),
            timestamp: named("timestamp"),
            partition: named("partition"),
            offset: named("offset"),
            json: json_use(source),
        }
    }

    /// Every variable, the whole document (what a script gets when nothing is known).
    #[cfg(test)]
    pub fn all() -> Uses {
        Uses {
            key: true,
            value: true,
            headers: true,
            timestamp: true,
            partition: true,
            offset: true,
            json: JsonUse::Whole,
        }
    }
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Byte positions where `name` occurs as a whole word.
fn words<'a>(src: &'a str, name: &'a str) -> impl Iterator<Item = usize> + 'a {
    let s = src.as_bytes();
    src.match_indices(name).map(|(i, _)| i).filter(move |&i| {
        let before = i.checked_sub(1).map(|j| s[j]);
        let after = s.get(i + name.len()).copied();
        !before.is_some_and(is_ident) && !after.is_some_and(is_ident)
    })
}

fn json_use(src: &str) -> JsonUse {
    let mut fields: Vec<String> = Vec::new();
    for i in words(src, "json") {
        let rest = &src.as_bytes()[i + "json".len()..];
        let Some(field) = rest.strip_prefix(b".") else {
            return JsonUse::Whole;
        };
        let len = field.iter().take_while(|&&b| is_ident(b)).count();
        if len == 0 || field[0].is_ascii_digit() {
            return JsonUse::Whole;
        }
        let after = field[len..].iter().find(|b| !b.is_ascii_whitespace());
        if after == Some(&b'(') {
            return JsonUse::Whole; // a method call: json.keys(), json.len() ...
        }
        let name = String::from_utf8_lossy(&field[..len]).into_owned();
        if !fields.contains(&name) {
            fields.push(name);
        }
    }
    if fields.is_empty() {
        JsonUse::No
    } else {
        JsonUse::Fields(fields)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(v: &[&str]) -> JsonUse {
        JsonUse::Fields(v.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn json_fields_and_what_defeats_them() {
        let cases = [
            (
                r#"json.city == "beijing" && json.price > 10"#,
                fields(&["city", "price"]),
            ),
            ("json.a.b > 1 && json.a.c", fields(&["a"])),
            ("json.x = 1; json.x", fields(&["x"])),
            ("`${json.name}!`", fields(&["name"])),
            ("value.len() > 3", JsonUse::No),
            ("jsonx + xjson + json_1", JsonUse::No),
            ("json == ()", JsonUse::Whole),
            ("json", JsonUse::Whole),
            (r#"json["city"]"#, JsonUse::Whole),
            ("json.keys().len()", JsonUse::Whole),
            ("json.len ()", JsonUse::Whole),
            ("json?.city", JsonUse::Whole),
            ("json. city", JsonUse::Whole),
            ("json.1", JsonUse::Whole),
            ("let j = json; j.city", JsonUse::Whole),
            ("let json = 1; json", JsonUse::Whole),
            ("fn f(json) { json.a } f(#{a: 1})", JsonUse::Whole),
            ("type_of(json) == \"map\"", JsonUse::Whole),
            ("json.a // json", JsonUse::Whole),
            ("`${json}`", JsonUse::Whole),
            ("|| json.a", fields(&["a"])),
        ];
        for (src, want) in cases {
            assert_eq!(json_use(src), want, "{src}");
        }
    }

    #[test]
    fn variables_named() {
        let u = Uses::of("key == \"k\" && headers.h == \"x\" && offset > 1");
        assert!(u.key && u.headers && u.offset);
        assert!(!u.value && !u.timestamp && !u.partition);
        assert_eq!(u.json, JsonUse::No);
        // A word anywhere counts, even as a property name: conservative.
        assert!(Uses::of("json.value").value);
        assert!(!Uses::of("values + keys").value);
    }
}
