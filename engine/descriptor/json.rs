//! Hand-written reading of `serde_json::Value`s in DSSTNE's dialect: keys are matched
//! case-insensitively, unknown and repeated keys are rejected, and every error carries the
//! JSON path of the offending value (`Layers[1].Activation`).

use std::path::Path;

use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// A JSON value read with every object's keys distinct: `serde_json::Value` keeps the last of
/// repeated keys silently (`"N": 64, "N": 32` reads as 32), which hides a mistake, so this
/// reading refuses them (an error at the repeated key's line and column).
pub(crate) struct Distinct(pub Value);

impl<'de> serde::Deserialize<'de> for Distinct {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        d.deserialize_any(DistinctVisitor).map(Distinct)
    }
}

struct DistinctVisitor;

impl<'de> serde::de::Visitor<'de> for DistinctVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> std::result::Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> std::result::Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> std::result::Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> std::result::Result<Value, E> {
        serde_json::Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom(format!("{v} is not a JSON number")))
    }

    fn visit_str<E>(self, v: &str) -> std::result::Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> std::result::Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> std::result::Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> std::result::Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> std::result::Result<Value, D::Error> {
        serde::Deserialize::deserialize(d).map(|Distinct(v)| v)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(
        self,
        mut seq: A,
    ) -> std::result::Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Distinct(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(
        self,
        mut map: A,
    ) -> std::result::Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(serde::de::Error::custom(format!(
                    "the key `{key}` appears twice in one object"
                )));
            }
            let Distinct(v) = map.next_value()?;
            object.insert(key, v);
        }
        Ok(Value::Object(object))
    }
}

/// One key an object accepts: its spellings, the canonical (DSSTNE) one first.
pub(crate) type KeyNames = &'static [&'static str];

/// Reads values of one descriptor file, turning every problem into an [`Error::Descriptor`]
/// that names the file.
#[derive(Clone, Copy)]
pub(crate) struct Reader<'a> {
    pub file: &'a Path,
}

/// `path.key`, or `key` at the top level.
pub(crate) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// `path[index]`.
pub(crate) fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

/// How a JSON value is called in error messages ("a string", "an array", ...).
pub(crate) fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Levenshtein distance between two ASCII-lowercased strings.
fn levenshtein(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().flat_map(char::to_lowercase).collect();
    let b: Vec<char> = b.chars().flat_map(char::to_lowercase).collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        current[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

/// The candidate closest to `word` (case-insensitively), if it is close enough to be a likely
/// misspelling: at most 2 edits, or at most a third of the word's length.
pub(crate) fn suggest<'c>(
    word: &str,
    candidates: impl IntoIterator<Item = &'c str>,
) -> Option<&'c str> {
    let len = word.chars().count();
    candidates
        .into_iter()
        .map(|c| (levenshtein(word, c), c))
        .filter(|&(d, _)| d > 0 && (d <= 2 || d * 3 <= len))
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

/// "; did you mean `X`?" or nothing.
pub(crate) fn did_you_mean<'c>(
    word: &str,
    candidates: impl IntoIterator<Item = &'c str>,
) -> String {
    suggest(word, candidates)
        .map(|s| format!("; did you mean `{s}`?"))
        .unwrap_or_default()
}

/// `A, B or C`.
pub(crate) fn list(names: &[&str]) -> String {
    match names {
        [] => String::new(),
        [one] => one.to_string(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

/// Where a parsed float must lie (all are finite).
#[derive(Clone, Copy)]
pub(crate) enum FloatRange {
    /// Any finite value.
    Any,
    /// ≥ 0.
    NonNegative,
    /// In [0, 1].
    Unit,
    /// In [0, 1).
    Probability,
}

impl<'a> Reader<'a> {
    /// An [`Error::Descriptor`] at `path`.
    pub fn error(&self, path: &str, message: impl Into<String>) -> Error {
        Error::Descriptor {
            file: self.file.to_path_buf(),
            json_path: path.to_owned(),
            message: message.into(),
        }
    }

    fn expected(&self, path: &str, what: &str, value: &Value) -> Error {
        self.error(path, format!("expected {what}, found {}", type_name(value)))
    }

    /// The value as an object.
    pub fn object<'v>(&self, value: &'v Value, path: &str) -> Result<&'v Map<String, Value>> {
        value
            .as_object()
            .ok_or_else(|| self.expected(path, "an object", value))
    }

    /// The value as a string.
    pub fn str<'v>(&self, value: &'v Value, path: &str) -> Result<&'v str> {
        value
            .as_str()
            .ok_or_else(|| self.expected(path, "a string", value))
    }

    /// The value as a non-empty string (a name).
    pub fn name(&self, value: &Value, path: &str) -> Result<String> {
        let s = self.str(value, path)?;
        if s.trim().is_empty() {
            return Err(self.error(path, "expected a name, found an empty string"));
        }
        Ok(s.to_owned())
    }

    /// The value as a boolean.
    pub fn bool(&self, value: &Value, path: &str) -> Result<bool> {
        value
            .as_bool()
            .ok_or_else(|| self.expected(path, "a boolean (true or false)", value))
    }

    /// The value as a finite 32-bit float in `range`.
    pub fn f32(&self, value: &Value, path: &str, range: FloatRange) -> Result<f32> {
        let x = value
            .as_f64()
            .ok_or_else(|| self.expected(path, "a number", value))?;
        let y = x as f32;
        if !y.is_finite() {
            return Err(self.error(path, format!("{x} is out of range for a 32-bit float")));
        }
        let (ok, wanted) = match range {
            FloatRange::Any => (true, ""),
            FloatRange::NonNegative => (y >= 0.0, "≥ 0"),
            FloatRange::Unit => ((0.0..=1.0).contains(&y), "in [0, 1]"),
            FloatRange::Probability => ((0.0..1.0).contains(&y), "in [0, 1)"),
        };
        if ok {
            Ok(y)
        } else {
            Err(self.error(path, format!("expected a number {wanted}, found {x}")))
        }
    }

    /// The value as a positive 32-bit integer. A float with an integral value (`128.0`) is
    /// accepted, as jsoncpp's `asInt` does.
    pub fn positive_u32(&self, value: &Value, path: &str) -> Result<u32> {
        let Value::Number(n) = value else {
            return Err(self.expected(path, "an integer", value));
        };
        let int = if let Some(i) = n.as_i64() {
            i as f64
        } else if let Some(u) = n.as_u64() {
            u as f64
        } else {
            let f = n.as_f64().unwrap_or(f64::NAN);
            if f.fract() != 0.0 || !f.is_finite() {
                return Err(self.error(path, format!("expected an integer, found {n}")));
            }
            f
        };
        if int < 1.0 {
            return Err(self.error(path, format!("expected a positive integer, found {n}")));
        }
        if int > f64::from(u32::MAX) {
            return Err(self.error(path, format!("{n} is too large (at most {})", u32::MAX)));
        }
        Ok(int as u32)
    }

    /// A string or an array of strings, each a non-empty name.
    pub fn names(&self, value: &Value, path: &str) -> Result<Vec<String>> {
        match value {
            Value::String(_) => Ok(vec![self.name(value, path)?]),
            Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, v)| self.name(v, &index(path, i)))
                .collect(),
            other => Err(self.expected(path, "a layer name or an array of layer names", other)),
        }
    }

    /// A value that is one object or an array of objects, as `(path, object)` pairs.
    pub fn one_or_many<'v>(
        &self,
        value: &'v Value,
        path: &str,
    ) -> Result<Vec<(String, &'v Map<String, Value>)>> {
        match value {
            Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let p = index(path, i);
                    self.object(v, &p).map(|o| (p, o))
                })
                .collect(),
            Value::Object(o) => Ok(vec![(path.to_owned(), o)]),
            other => Err(self.expected(path, "an object or an array of objects", other)),
        }
    }

    /// A string naming a variant of an enum, matched case-insensitively by `parse`.
    /// An unknown name is an error listing `accepted`.
    pub fn enum_value<T>(
        &self,
        value: &Value,
        path: &str,
        what: &str,
        parse: impl Fn(&str) -> Option<T>,
        accepted: &[&str],
    ) -> Result<T> {
        let s = self.str(value, path)?;
        parse(s).ok_or_else(|| {
            self.error(
                path,
                format!(
                    "unknown {what} `{s}`; expected one of {}{}",
                    accepted.join(", "),
                    did_you_mean(s, accepted.iter().copied())
                ),
            )
        })
    }

    /// Matches every key of `object` case-insensitively against `keys` and returns, in the
    /// object's key order, `(index into keys, key as written, value)`. A key that matches
    /// nothing is an error suggesting the closest known key; a key given twice (in two cases
    /// or two spellings) is an error.
    pub fn keys<'v>(
        &self,
        object: &'v Map<String, Value>,
        path: &str,
        keys: &[KeyNames],
        context: &str,
    ) -> Result<Vec<(usize, &'v str, &'v Value)>> {
        let mut seen: Vec<Option<&str>> = vec![None; keys.len()];
        let mut out = Vec::with_capacity(object.len());
        for (key, value) in object {
            let found = keys
                .iter()
                .position(|names| names.iter().any(|n| n.eq_ignore_ascii_case(key)));
            let Some(k) = found else {
                let all = keys.iter().flat_map(|names| names.iter().copied());
                return Err(self.error(
                    &join(path, key),
                    format!("unknown {context} key `{key}`{}", did_you_mean(key, all)),
                ));
            };
            if let Some(first) = seen[k] {
                return Err(self.error(
                    &join(path, key),
                    format!(
                        "key `{key}` repeats `{first}` (keys are case-insensitive and both spell `{}`)",
                        keys[k][0]
                    ),
                ));
            }
            seen[k] = Some(key);
            out.push((k, key.as_str(), value));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levenshtein_counts_edits() {
        assert_eq!(levenshtein("Activaton", "activation"), 1);
        assert_eq!(levenshtein("kitten", "sitting"), 3);
        assert_eq!(levenshtein("", "abc"), 3);
    }

    #[test]
    fn suggestions_are_close_matches_only() {
        let keys = ["Activation", "Source", "Skip", "Transposed"];
        assert_eq!(suggest("Activaton", keys), Some("Activation"));
        assert_eq!(suggest("Transpose", keys), Some("Transposed"));
        assert_eq!(suggest("Dimensions", keys), None);
    }

    #[test]
    fn integers_accept_integral_floats_only() {
        let r = Reader {
            file: Path::new("x.json"),
        };
        assert_eq!(
            r.positive_u32(&serde_json::json!(128.0), "N").ok(),
            Some(128)
        );
        assert!(r.positive_u32(&serde_json::json!(1.5), "N").is_err());
        assert!(r.positive_u32(&serde_json::json!(0), "N").is_err());
        assert!(r.positive_u32(&serde_json::json!(-3), "N").is_err());
        assert!(r.positive_u32(&serde_json::json!(1u64 << 40), "N").is_err());
    }
}
