//! Lenient reading of Azure JSON: Defender's rows mix key casing (`CvesDetails`, `cveId`),
//! nest JSON inside strings (`resourceAdditionalData`), and leave fields null or out.
//!
//! [`normalize`] rewrites a value once (keys lowercased, JSON-in-strings parsed); the getters
//! then take lowercase paths and treat null, empty and missing alike.

use serde_json::{Map, Value};

/// Lowercases every object key and parses strings that hold a JSON object or array. When keys
/// differ only in case, the first non-null one wins. Takes the value: strings and keys already
/// in lowercase are moved, not copied (a Resource Graph page holds megabytes of them).
pub(crate) fn normalize(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut out = Map::new();
            for (k, v) in map {
                let key = if k.bytes().any(|b| b.is_ascii_uppercase()) {
                    k.to_ascii_lowercase()
                } else {
                    k
                };
                let v = normalize(v);
                match out.get(&key) {
                    Some(existing) if !existing.is_null() => {}
                    _ => {
                        out.insert(key, v);
                    }
                }
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.into_iter().map(normalize).collect()),
        Value::String(s) => {
            let trimmed = s.trim_start();
            if trimmed.starts_with('{') || trimmed.starts_with('[') {
                match serde_json::from_str::<Value>(&s) {
                    Ok(inner @ (Value::Object(_) | Value::Array(_))) => normalize(inner),
                    _ => Value::String(s),
                }
            } else {
                Value::String(s)
            }
        }
        other => other,
    }
}

/// Parses and normalises a body; anything that is not JSON is `Null`.
pub(crate) fn parse(body: &[u8]) -> Value {
    serde_json::from_slice::<Value>(body).map_or(Value::Null, normalize)
}

/// A non-negative whole number at `path` (fractions cut, negatives refused).
pub(crate) fn unsigned(value: &Value, path: &[&str]) -> Option<u64> {
    let n = number(value, path)?;
    // Checked non-negative and finite, so the cast only drops the fraction.
    #[allow(clippy::cast_sign_loss)]
    (n.is_finite() && n >= 0.0).then_some(n as u64)
}

/// The value at `path` (lowercase keys), or `None` when missing or null.
pub(crate) fn at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    let mut current = value;
    for key in path {
        current = current.as_object()?.get(*key)?;
    }
    (!current.is_null()).then_some(current)
}

/// A trimmed, non-empty string at `path`; numbers and booleans are written out.
pub(crate) fn text(value: &Value, path: &[&str]) -> Option<String> {
    as_text(at(value, path)?)
}

/// The first path with a non-empty text.
pub(crate) fn first_text(value: &Value, paths: &[&[&str]]) -> Option<String> {
    paths.iter().find_map(|p| text(value, p))
}

/// A value as trimmed, non-empty text.
pub(crate) fn as_text(value: &Value) -> Option<String> {
    let s = match value {
        Value::String(s) => s.trim().to_owned(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => return None,
    };
    (!s.is_empty()).then_some(s)
}

/// A number at `path`; numeric strings count.
pub(crate) fn number(value: &Value, path: &[&str]) -> Option<f64> {
    match at(value, path)? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A boolean at `path`; `"true"`/`"false"` in any case count. Missing is `false`.
pub(crate) fn flag(value: &Value, path: &[&str]) -> bool {
    match at(value, path) {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s.trim().eq_ignore_ascii_case("true"),
        _ => false,
    }
}

/// The items of the array at `path` (empty when missing or not an array).
pub(crate) fn items<'a>(value: &'a Value, path: &[&str]) -> &'a [Value] {
    match at(value, path) {
        Some(Value::Array(items)) => items,
        _ => &[],
    }
}

/// The texts of the array at `path`; a single text counts as a one-item list.
pub(crate) fn texts(value: &Value, path: &[&str]) -> Vec<String> {
    match at(value, path) {
        Some(Value::Array(items)) => items.iter().filter_map(as_text).collect(),
        Some(other) => as_text(other).into_iter().collect(),
        None => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn normalize_lowercases_keys_and_parses_json_strings() {
        let raw = json!({
            "Properties": {
                "ResourceAdditionalData": "{\"Digest\":\"sha256:ab\",\"Tags\":[\"v1\"]}",
                "Text": "[Preview] not json",
                "Empty": null,
                "empty": "kept"
            }
        });
        let n = normalize(raw);
        assert_eq!(
            text(&n, &["properties", "resourceadditionaldata", "digest"]).as_deref(),
            Some("sha256:ab")
        );
        assert_eq!(
            texts(&n, &["properties", "resourceadditionaldata", "tags"]),
            vec!["v1".to_owned()]
        );
        assert_eq!(
            text(&n, &["properties", "text"]).as_deref(),
            Some("[Preview] not json")
        );
        assert_eq!(text(&n, &["properties", "empty"]).as_deref(), Some("kept"));
    }

    #[test]
    fn getters_treat_null_empty_and_missing_alike() {
        let n =
            normalize(json!({"a": null, "b": "  ", "c": 7.5, "d": "8", "e": "TRUE", "f": true}));
        assert_eq!(at(&n, &["a"]), None);
        assert_eq!(text(&n, &["b"]), None);
        assert_eq!(text(&n, &["zz", "y"]), None);
        assert_eq!(number(&n, &["c"]), Some(7.5));
        assert_eq!(number(&n, &["d"]), Some(8.0));
        assert_eq!(text(&n, &["c"]).as_deref(), Some("7.5"));
        assert!(flag(&n, &["e"]) && flag(&n, &["f"]) && !flag(&n, &["a"]));
        assert!(items(&n, &["c"]).is_empty());
        assert_eq!(
            first_text(&n, &[&["a"], &["b"], &["d"]]).as_deref(),
            Some("8")
        );
    }
}
