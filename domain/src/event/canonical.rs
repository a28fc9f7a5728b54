//! Canonical JSON: object keys sorted by their UTF-8 bytes, no whitespace, serde_json's
//! string and number forms. Signatures and hashes cover these bytes, so they must not
//! depend on how a map happens to be ordered (serde_json's `preserve_order` feature could
//! be switched on by any crate in the graph; this writer does not care).

use serde_json::Value;

/// Appends the canonical form of `value` to `out`.
pub fn write(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Number(n) => out.extend_from_slice(n.to_string().as_bytes()),
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(item, out);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(key, out);
                out.push(b':');
                write(item, out);
            }
            out.push(b'}');
        }
    }
}

fn write_string(s: &str, out: &mut Vec<u8>) {
    // serde_json's escaping is deterministic; serialising a &str cannot fail.
    let quoted = serde_json::to_string(s).expect("a string always serialises");
    out.extend_from_slice(quoted.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_are_sorted_at_every_depth_and_whitespace_is_gone() {
        let value = json!({"b": 1, "a": {"z": [true, null], "y": "é\"\n"}});
        let mut out = Vec::new();
        write(&value, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"a":{"y":"é\"\n","z":[true,null]},"b":1}"#
        );
    }
}
