//! E-mail engagement tracking, for templates that opt in: an open pixel
//! appended to the HTML body, and each `http(s)` link's `href` pointed at
//! herald's click redirect, which sends the reader on to the original (pure).
//!
//! Routes: `{base}/t/o/{message}.gif` (the pixel) and `{base}/t/c/{message}/{n}`
//! (the `n`th link of the message, in order of appearance).

/// The HTML with the pixel and rewritten links, and the links' originals
/// (their index is `n`).
pub fn instrument(
    html: &str,
    base: &str,
    id: &str,
    opens: bool,
    clicks: bool,
) -> (String, Vec<String>) {
    let base = base.trim_end_matches('/');
    let mut out = String::with_capacity(html.len() + 128);
    let mut links = Vec::new();
    let mut rest = html;
    if clicks {
        // href="http…" or href='http…' (case-insensitive attribute name).
        loop {
            let lower = rest.to_ascii_lowercase();
            let Some(at) = lower.find("href=") else { break };
            let quote_at = at + 5;
            let Some(&q) = rest.as_bytes().get(quote_at) else {
                break;
            };
            if q != b'"' && q != b'\'' {
                out.push_str(&rest[..quote_at]);
                rest = &rest[quote_at..];
                continue;
            }
            let value_start = quote_at + 1;
            let Some(len) = rest[value_start..].find(q as char) else {
                break;
            };
            let url = &rest[value_start..value_start + len];
            let scheme = url.trim_start().to_ascii_lowercase();
            out.push_str(&rest[..value_start]);
            if scheme.starts_with("http://") || scheme.starts_with("https://") {
                out.push_str(&format!("{base}/t/c/{id}/{}", links.len()));
                links.push(decode_entities(url.trim()));
            } else {
                out.push_str(url);
            }
            rest = &rest[value_start + len..];
        }
    }
    out.push_str(rest);
    if opens {
        let pixel = format!(
            r#"<img src="{base}/t/o/{id}.gif" width="1" height="1" alt="" style="display:none">"#
        );
        match out.to_ascii_lowercase().rfind("</body>") {
            Some(i) => out.insert_str(i, &pixel),
            None => out.push_str(&pixel),
        }
    }
    (out, links)
}

/// `&amp;` in an attribute is `&` in the URL.
fn decode_entities(url: &str) -> String {
    url.replace("&amp;", "&")
}

/// A 1×1 transparent GIF.
pub const PIXEL_GIF: [u8; 43] = [
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xff, 0xff, 0xff, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_go_through_the_redirect_and_the_pixel_goes_before_body_end() {
        let html = r#"<html><body><a href="https://clinic.example/book?a=1&amp;b=2">Book</a> <a HREF='mailto:x@y.z'>Mail</a> <a href="http://x.example">X</a></body></html>"#;
        let (out, links) = instrument(html, "https://h.example/", "M1", true, true);
        assert_eq!(
            links,
            ["https://clinic.example/book?a=1&b=2", "http://x.example"]
        );
        assert!(
            out.contains(r#"href="https://h.example/t/c/M1/0""#),
            "{out}"
        );
        assert!(out.contains(r#"HREF='mailto:x@y.z'"#), "{out}");
        assert!(
            out.contains(r#"href="https://h.example/t/c/M1/1""#),
            "{out}"
        );
        assert!(out.ends_with(r#"<img src="https://h.example/t/o/M1.gif" width="1" height="1" alt="" style="display:none"></body></html>"#), "{out}");
        let (plain, none) = instrument(html, "https://h.example", "M1", false, false);
        assert_eq!(plain, html);
        assert!(none.is_empty());
        let (unterminated, _) = instrument("<a href=\"http://x", "b", "M", false, true);
        assert_eq!(unterminated, "<a href=\"http://x");
    }
}
