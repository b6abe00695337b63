//! Keyset paging: `page_size` (1–1000) and an opaque `page_token` that
//! carries the last key seen.
//!
//! A token is `base64url("p1:" + key)` without padding, where the key is
//! a row id (a UUID in its canonical form) or an event number (a decimal
//! integer). Decoding is strict and checks the key's shape, so a token works
//! on every node that shares the database (nothing per process is needed),
//! and anything not built here is refused as `invalid_page_token` before it
//! reaches a query.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Serialize;

use crate::domain::FieldError;

pub const DEFAULT_PAGE_SIZE: u32 = 100;
pub const MAX_PAGE_SIZE: u32 = 1000;

/// A validated page request: rows with id > `after`, at most `size` of them.
#[derive(Debug, Clone, Default)]
pub struct PageRequest {
    pub size: u32,
    pub after: Option<String>,
}

impl PageRequest {
    pub fn parse(page_size: Option<i64>, page_token: Option<&str>) -> Result<Self, FieldError> {
        let size = match page_size {
            None => DEFAULT_PAGE_SIZE,
            Some(n) if (1..=MAX_PAGE_SIZE as i64).contains(&n) => n as u32,
            Some(n) => {
                return Err(FieldError::new(
                    "page_size",
                    format!("must be between 1 and {MAX_PAGE_SIZE}, got {n}"),
                ))
            }
        };
        let after = match page_token {
            None | Some("") => None,
            Some(t) => Some(decode_token(t).ok_or_else(|| {
                FieldError::new(
                    "page_token",
                    "is not a token this server issued; use next_page_token from the previous page as it is",
                )
            })?),
        };
        Ok(PageRequest { size, after })
    }

    /// The lower bound for `id > $n` ("" sorts before every id).
    pub fn after_or_start(&self) -> &str {
        self.after.as_deref().unwrap_or("")
    }

    /// How many rows to fetch: one more than the page, to know whether another follows.
    pub fn fetch_limit(&self) -> i64 {
        self.size as i64 + 1
    }

    /// Cuts the over-fetched rows into a page.
    pub fn finish<T>(&self, mut rows: Vec<T>, key: impl Fn(&T) -> String) -> Page<T> {
        let next = if rows.len() > self.size as usize {
            rows.truncate(self.size as usize);
            rows.last().map(|r| encode_token(&key(r)))
        } else {
            None
        };
        Page {
            items: rows,
            next_page_token: next,
        }
    }
}

const TOKEN_PREFIX: &str = "p1:";
/// Longest token accepted (a UUID key needs 52 characters).
const MAX_TOKEN_LEN: usize = 64;

fn encode_token(key: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{TOKEN_PREFIX}{key}"))
}

/// The key inside a token, if the token is one [`encode_token`] makes.
fn decode_token(token: &str) -> Option<String> {
    if token.len() > MAX_TOKEN_LEN {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(token).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let key = text.strip_prefix(TOKEN_PREFIX)?;
    is_page_key(key).then(|| key.to_string())
}

/// A row id in canonical UUID form, or a non-negative decimal integer without
/// leading zeros.
fn is_page_key(key: &str) -> bool {
    let is_uuid = uuid::Uuid::try_parse(key).is_ok_and(|u| u.hyphenated().to_string() == key);
    let is_number = !key.is_empty()
        && key.len() <= 19
        && key.bytes().all(|b| b.is_ascii_digit())
        && (key == "0" || !key.starts_with('0'))
        && key.parse::<i64>().is_ok();
    is_uuid || is_number
}

/// One page of a list, as every list route answers it.
#[derive(Debug, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_page_token: Option<String>,
}

impl<T> Page<T> {
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            next_page_token: self.next_page_token,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_size_is_bounded_and_named_in_errors() {
        assert_eq!(PageRequest::parse(None, None).unwrap().size, 100);
        assert_eq!(PageRequest::parse(Some(1000), None).unwrap().size, 1000);
        assert_eq!(
            PageRequest::parse(Some(1001), None).unwrap_err().field,
            "page_size"
        );
        assert_eq!(
            PageRequest::parse(Some(0), None).unwrap_err().field,
            "page_size"
        );
        assert_eq!(
            PageRequest::parse(None, Some("!!")).unwrap_err().field,
            "page_token"
        );
    }

    const A: &str = "019b0000-0000-7000-8000-00000000000a";
    const B: &str = "019b0000-0000-7000-8000-00000000000b";
    const C: &str = "019b0000-0000-7000-8000-00000000000c";

    #[test]
    fn finish_sets_a_token_only_when_more_rows_follow() {
        let req = PageRequest::parse(Some(2), None).unwrap();
        let p = req.finish(vec![A.to_string(), B.into(), C.into()], |s| s.clone());
        assert_eq!(p.items, vec![A, B]);
        let next = PageRequest::parse(Some(2), p.next_page_token.as_deref()).unwrap();
        assert_eq!(next.after.as_deref(), Some(B));
        let last = req.finish(vec![C.to_string()], |s| s.clone());
        assert!(last.next_page_token.is_none());
    }

    #[test]
    fn only_tokens_built_here_are_accepted() {
        let raw = |s: &str| URL_SAFE_NO_PAD.encode(s);
        let padded = base64::engine::general_purpose::URL_SAFE.encode("p1:42");
        // (token, accepted)
        let cases: Vec<(String, bool)> = vec![
            (encode_token(A), true),
            (encode_token("42"), true),
            (encode_token("0"), true),
            ("AAAA".into(), false),
            (raw(A), false),
            (raw("p1:"), false),
            (raw("p1:abc"), false),
            (raw("p1:042"), false),
            (raw("p1:-1"), false),
            (raw("p1:99999999999999999999"), false),
            (raw(&format!("p1:{}", A.to_uppercase())), false),
            (raw(&format!("p1:{}", A.replace('-', ""))), false),
            (raw(&format!("p1:{A}\u{0}")), false),
            (raw(&format!("p2:{A}")), false),
            (padded, false),
            (format!("{}=", encode_token(A)), false),
            ("!!".into(), false),
            ("%%".into(), false),
            ("A".repeat(MAX_TOKEN_LEN + 1), false),
        ];
        for (token, ok) in cases {
            let got = PageRequest::parse(None, Some(&token));
            assert_eq!(got.is_ok(), ok, "{token:?}: {got:?}");
            if let Err(e) = got {
                assert_eq!(e.field, "page_token");
            }
        }
    }
}
