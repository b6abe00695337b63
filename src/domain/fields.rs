//! A reader over a JSON object that knows its own path, so every validation
//! error names the exact field (`targets[3].destinations[0].target`).

use serde_json::{Map, Value};

use super::FieldError;

pub struct Fields<'a> {
    obj: &'a Map<String, Value>,
    path: String,
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl<'a> Fields<'a> {
    /// `v` must be an object; `path` is its own name ("" at the top).
    pub fn new(v: &'a Value, path: impl Into<String>) -> Result<Self, FieldError> {
        let path = path.into();
        match v {
            Value::Object(obj) => Ok(Fields { obj, path }),
            other => Err(FieldError::new(
                if path.is_empty() {
                    "(body)".to_string()
                } else {
                    path
                },
                format!("must be a JSON object, got {}", type_name(other)),
            )),
        }
    }

    /// The full path of `key` under this object.
    pub fn path_of(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    pub fn err(&self, key: &str, reason: impl Into<String>) -> FieldError {
        FieldError::new(self.path_of(key), reason)
    }

    /// The raw value; JSON `null` counts as absent.
    pub fn get(&self, key: &str) -> Option<&'a Value> {
        self.obj.get(key).filter(|v| !v.is_null())
    }

    pub fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Fails on any key not in `allowed`, naming it.
    pub fn deny_unknown(&self, allowed: &[&str]) -> Result<(), FieldError> {
        match self.obj.keys().find(|k| !allowed.contains(&k.as_str())) {
            Some(k) => Err(self.err(
                k,
                format!("unknown field; expected one of: {}", allowed.join(", ")),
            )),
            None => Ok(()),
        }
    }

    pub fn str_opt(&self, key: &str) -> Result<Option<&'a str>, FieldError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(other) => {
                Err(self.err(key, format!("must be a string, got {}", type_name(other))))
            }
        }
    }

    pub fn str_req(&self, key: &str) -> Result<&'a str, FieldError> {
        self.str_opt(key)?
            .ok_or_else(|| self.err(key, "is required"))
    }

    /// A required, trimmed, non-empty string of at most `max` characters.
    pub fn name(&self, key: &str, max: usize) -> Result<String, FieldError> {
        let s = self.str_req(key)?.trim();
        if s.is_empty() {
            return Err(self.err(key, "must not be empty"));
        }
        if s.chars().count() > max {
            return Err(self.err(key, format!("must be at most {max} characters")));
        }
        Ok(s.to_string())
    }

    /// An integer in `lo..=hi`; a string of digits is accepted too (CSV cells).
    pub fn int_opt(&self, key: &str, lo: i64, hi: i64) -> Result<Option<i64>, FieldError> {
        let n = match self.get(key) {
            None => return Ok(None),
            Some(Value::Number(n)) => n.as_i64(),
            Some(Value::String(s)) => s.trim().parse::<i64>().ok(),
            Some(other) => {
                return Err(self.err(key, format!("must be an integer, got {}", type_name(other))))
            }
        };
        match n {
            Some(n) if (lo..=hi).contains(&n) => Ok(Some(n)),
            Some(n) => Err(self.err(key, format!("must be between {lo} and {hi}, got {n}"))),
            None => Err(self.err(key, "must be a whole number")),
        }
    }

    pub fn int_or(&self, key: &str, lo: i64, hi: i64, default: i64) -> Result<i64, FieldError> {
        Ok(self.int_opt(key, lo, hi)?.unwrap_or(default))
    }

    /// A number in `lo..=hi` (`lo` exclusive when `lo_exclusive`).
    pub fn num_or(
        &self,
        key: &str,
        lo: f64,
        hi: f64,
        lo_exclusive: bool,
        default: f64,
    ) -> Result<f64, FieldError> {
        let n = match self.get(key) {
            None => return Ok(default),
            Some(Value::Number(n)) => n.as_f64().unwrap_or(f64::NAN),
            Some(other) => {
                return Err(self.err(key, format!("must be a number, got {}", type_name(other))))
            }
        };
        let low_ok = if lo_exclusive { n > lo } else { n >= lo };
        if !(low_ok && n <= hi) {
            let op = if lo_exclusive {
                "greater than"
            } else {
                "at least"
            };
            return Err(self.err(key, format!("must be {op} {lo} and at most {hi}, got {n}")));
        }
        Ok(n)
    }

    pub fn bool_or(&self, key: &str, default: bool) -> Result<bool, FieldError> {
        match self.get(key) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(other) => Err(self.err(
                key,
                format!("must be true or false, got {}", type_name(other)),
            )),
        }
    }

    /// One of `choices`, else `default`.
    pub fn choice_or(
        &self,
        key: &str,
        choices: &[&str],
        default: &str,
    ) -> Result<String, FieldError> {
        match self.str_opt(key)? {
            None => Ok(default.to_string()),
            Some(s) if choices.contains(&s) => Ok(s.to_string()),
            Some(s) => Err(self.err(
                key,
                format!("must be one of {}, got {s:?}", choices.join(", ")),
            )),
        }
    }

    pub fn obj_opt(&self, key: &str) -> Result<Option<Fields<'a>>, FieldError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => Fields::new(v, self.path_of(key)).map(Some),
        }
    }

    /// A JSON object of free-form values (variables, parameters).
    pub fn map_opt(&self, key: &str, max_bytes: usize) -> Result<Map<String, Value>, FieldError> {
        match self.get(key) {
            None => Ok(Map::new()),
            Some(Value::Object(m)) => {
                if Value::Object(m.clone()).to_string().len() > max_bytes {
                    return Err(self.err(key, format!("must be at most {max_bytes} bytes of JSON")));
                }
                Ok(m.clone())
            }
            Some(other) => {
                Err(self.err(key, format!("must be an object, got {}", type_name(other))))
            }
        }
    }

    pub fn array_opt(&self, key: &str) -> Result<Option<&'a Vec<Value>>, FieldError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(a)) => Ok(Some(a)),
            Some(other) => {
                Err(self.err(key, format!("must be an array, got {}", type_name(other))))
            }
        }
    }

    /// An RFC 3339 timestamp, as epoch milliseconds.
    pub fn timestamp_opt(&self, key: &str) -> Result<Option<i64>, FieldError> {
        match self.str_opt(key)? {
            None => Ok(None),
            Some(s) => chrono::DateTime::parse_from_rfc3339(s.trim())
                .map(|t| Some(t.timestamp_millis()))
                .map_err(|_| {
                    self.err(
                        key,
                        format!(
                            "must be an RFC 3339 timestamp like 2026-11-21T14:00:00Z, got {s:?}"
                        ),
                    )
                }),
        }
    }
}

/// RFC 7396 JSON merge patch: `patch` over `target`; `null` removes a key.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn errors_carry_the_full_path() {
        let v = json!({"retry": {"busy_s": -1}});
        let f = Fields::new(&v, "").unwrap();
        let retry = f.obj_opt("retry").unwrap().unwrap();
        let e = retry.int_opt("busy_s", 0, 10).unwrap_err();
        assert_eq!(e.field, "retry.busy_s");
        assert!(e.reason.contains("between 0 and 10"));
    }

    #[test]
    fn merge_patch_replaces_and_removes() {
        let mut t = json!({"a": 1, "b": {"c": 2, "d": 3}});
        merge_patch(&mut t, &json!({"a": null, "b": {"c": 5}}));
        assert_eq!(t, json!({"b": {"c": 5, "d": 3}}));
    }
}
