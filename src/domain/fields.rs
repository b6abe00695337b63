//! A reader over a JSON object that knows its own path, so every validation
//! error names the exact field (`targets[3].destinations[0].target`).
//!
//! It is also where text is checked, for every resource at once: a string
//! read through [`Fields`] never holds NUL or another C0 control character
//! (only [`Fields::text_opt`] lets tab and line breaks through, for
//! multi-line free text) and never exceeds [`MAX_STRING_CHARS`] unless the
//! reader asks for a tighter limit. Numbers must be JSON numbers.

use serde_json::{Map, Value};

use super::FieldError;

/// Longest string any field accepts when it sets no tighter limit.
pub const MAX_STRING_CHARS: usize = 4096;

/// Longest `detail` (free, multi-line text) of a document.
pub const MAX_DETAIL_CHARS: usize = 2000;

/// Checks text for control characters and length: NUL and the other C0
/// controls (and DEL) are refused; `multiline` lets tab, CR and LF through.
/// The reason names the first offending character and where it is.
pub fn check_text(s: &str, multiline: bool, max_chars: usize) -> Result<(), String> {
    let allowed = |c: char| multiline && matches!(c, '\t' | '\n' | '\r');
    if let Some((i, c)) = s
        .chars()
        .enumerate()
        .find(|&(_, c)| (c < ' ' || c == '\u{7f}') && !allowed(c))
    {
        let what = if multiline {
            "control characters other than tab and line breaks"
        } else {
            "control characters (tab, line breaks, NUL and the like)"
        };
        return Err(format!(
            "must not contain {what}; found U+{:04X} at character {}",
            c as u32,
            i + 1
        ));
    }
    let n = s.chars().count();
    if n > max_chars {
        return Err(format!("must be at most {max_chars} characters, got {n}"));
    }
    Ok(())
}

pub struct Fields<'a> {
    obj: &'a Map<String, Value>,
    path: String,
}

pub(crate) fn type_name(v: &Value) -> &'static str {
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

    /// A single-line string of at most [`MAX_STRING_CHARS`] characters
    /// without control characters.
    pub fn str_opt(&self, key: &str) -> Result<Option<&'a str>, FieldError> {
        self.checked_str(key, false, MAX_STRING_CHARS)
    }

    /// A single-line string of at most `max` characters.
    pub fn str_max(&self, key: &str, max: usize) -> Result<Option<&'a str>, FieldError> {
        self.checked_str(key, false, max)
    }

    /// Free text of at most `max` characters that may hold tabs and line breaks.
    pub fn text_opt(&self, key: &str, max: usize) -> Result<Option<&'a str>, FieldError> {
        self.checked_str(key, true, max)
    }

    fn checked_str(
        &self,
        key: &str,
        multiline: bool,
        max: usize,
    ) -> Result<Option<&'a str>, FieldError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => {
                check_text(s, multiline, max).map_err(|why| self.err(key, why))?;
                Ok(Some(s.as_str()))
            }
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

    /// An integer in `lo..=hi`, given as a JSON number (`"25"` is refused).
    pub fn int_opt(&self, key: &str, lo: i64, hi: i64) -> Result<Option<i64>, FieldError> {
        self.int_in(key, lo, hi, false)
    }

    /// Like [`Fields::int_opt`], and a string of digits is accepted too: for
    /// fields that CSV rows fill in, whose cells are text.
    pub fn int_or_digits_opt(
        &self,
        key: &str,
        lo: i64,
        hi: i64,
    ) -> Result<Option<i64>, FieldError> {
        self.int_in(key, lo, hi, true)
    }

    fn int_in(&self, key: &str, lo: i64, hi: i64, digits: bool) -> Result<Option<i64>, FieldError> {
        let n = match self.get(key) {
            None => return Ok(None),
            Some(Value::Number(n)) => n.as_i64(),
            Some(Value::String(s)) if digits => s.trim().parse::<i64>().ok(),
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

    /// An integer JSON number in `lo..=hi` (as [`Fields::int_opt`]: a string
    /// of digits is refused), `default` when absent.
    pub fn int_or<T: TryFrom<i64>>(
        &self,
        key: &str,
        lo: i64,
        hi: i64,
        default: T,
    ) -> Result<T, FieldError> {
        match self.int_opt(key, lo, hi)? {
            None => Ok(default),
            Some(n) => T::try_from(n)
                .map_err(|_| self.err(key, format!("must be between {lo} and {hi}, got {n}"))),
        }
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
    fn control_characters_are_refused_except_where_text_allows_them() {
        // (text, multiline, accepted)
        let cases: &[(&str, bool, bool)] = &[
            ("plain", false, true),
            ("a\u{0}b", false, false),
            ("a\u{0}b", true, false),
            ("a\tb", false, false),
            ("a\tb", true, true),
            ("line\r\nline", true, true),
            ("line\nline", false, false),
            ("bell\u{7}", true, false),
            ("esc\u{1b}[0m", true, false),
            ("del\u{7f}", false, false),
            ("caf\u{e9} \u{1F600}", false, true),
        ];
        for (text, multiline, ok) in cases {
            assert_eq!(
                check_text(text, *multiline, 100).is_ok(),
                *ok,
                "{text:?} multiline={multiline}"
            );
        }
        let why = check_text("a\u{0}b", false, 100).unwrap_err();
        assert!(why.contains("U+0000 at character 2"), "{why}");
        assert!(check_text("\u{e9}\u{e9}\u{e9}", false, 3).is_ok());
        assert!(check_text("\u{e9}\u{e9}\u{e9}\u{e9}", false, 3)
            .unwrap_err()
            .contains("at most 3 characters"));
    }

    #[test]
    fn every_string_reader_checks_and_names_the_field() {
        let v = json!({"name": "a\u{0}b", "detail": "two\nlines", "note": "x\ny",
            "long": "y".repeat(MAX_STRING_CHARS + 1)});
        let f = Fields::new(&v, "outer").unwrap();
        assert_eq!(f.name("name", 200).unwrap_err().field, "outer.name");
        assert_eq!(f.str_req("name").unwrap_err().field, "outer.name");
        assert_eq!(f.text_opt("detail", 20).unwrap(), Some("two\nlines"));
        assert_eq!(f.text_opt("detail", 3).unwrap_err().field, "outer.detail");
        assert_eq!(f.str_opt("note").unwrap_err().field, "outer.note");
        assert_eq!(f.str_opt("long").unwrap_err().field, "outer.long");
        assert_eq!(f.str_max("note", 2).unwrap_err().field, "outer.note");
    }

    #[test]
    fn numbers_must_be_json_numbers() {
        let v = json!({"n": "25", "b": true, "ok": 25, "f": 2.5});
        let f = Fields::new(&v, "").unwrap();
        assert!(f
            .int_opt("n", 0, 100)
            .unwrap_err()
            .reason
            .contains("a string"));
        assert!(f
            .int_opt("b", 0, 100)
            .unwrap_err()
            .reason
            .contains("a boolean"));
        assert_eq!(f.int_opt("ok", 0, 100).unwrap(), Some(25));
        assert!(f.int_opt("f", 0, 100).is_err());
        assert_eq!(f.int_or_digits_opt("n", 0, 100).unwrap(), Some(25));
        assert!(f.num_or("n", 0.0, 100.0, false, 1.0).is_err());
    }

    #[test]
    fn settings_integers_must_be_json_numbers() {
        let v = json!({"a": "25", "b": 25, "c": 2.5, "d": -1});
        let f = Fields::new(&v, "").unwrap();
        assert_eq!(
            f.int_or::<u32>("a", 0, 100, 7).unwrap_err().reason,
            "must be an integer, got a string"
        );
        assert_eq!(f.int_or::<u32>("b", 0, 100, 7).unwrap(), 25);
        assert_eq!(f.int_or::<u32>("missing", 0, 100, 7).unwrap(), 7);
        assert_eq!(
            f.int_or::<u32>("c", 0, 100, 7).unwrap_err().reason,
            "must be a whole number"
        );
        assert_eq!(
            f.int_or::<u32>("d", 0, 100, 7).unwrap_err().reason,
            "must be between 0 and 100, got -1"
        );
        // The reader of CSV-shaped rows still takes digits in a string.
        assert_eq!(f.int_or_digits_opt("a", 0, 100).unwrap(), Some(25));
    }

    #[test]
    fn merge_patch_replaces_and_removes() {
        let mut t = json!({"a": 1, "b": {"c": 2, "d": 3}});
        merge_patch(&mut t, &json!({"a": null, "b": {"c": 5}}));
        assert_eq!(t, json!({"b": {"c": 5, "d": 3}}));
    }
}
