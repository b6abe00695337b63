//! Keyset paging: `page_size` (1–1000) and an opaque `page_token` (the last id seen).

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
            Some(t) => Some(
                URL_SAFE_NO_PAD
                    .decode(t)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or_else(|| {
                        FieldError::new("page_token", "is not a token this server issued")
                    })?,
            ),
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
            rows.last().map(|r| URL_SAFE_NO_PAD.encode(key(r)))
        } else {
            None
        };
        Page {
            items: rows,
            next_page_token: next,
        }
    }
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

    #[test]
    fn finish_sets_a_token_only_when_more_rows_follow() {
        let req = PageRequest::parse(Some(2), None).unwrap();
        let p = req.finish(vec!["a".to_string(), "b".into(), "c".into()], |s| s.clone());
        assert_eq!(p.items, vec!["a", "b"]);
        let next = PageRequest::parse(Some(2), p.next_page_token.as_deref()).unwrap();
        assert_eq!(next.after.as_deref(), Some("b"));
        let last = req.finish(vec!["c".to_string()], |s| s.clone());
        assert!(last.next_page_token.is_none());
    }
}
