//! SMS text: which encoding a text needs (GSM-7 or UCS-2), how many units and
//! segments it costs, the parts of a long text, and the bytes of each
//! encoding.
//!
//! GSM-7 is the GSM 03.38 default alphabet plus its extension table; an
//! extension character (`€ [ ] { } ~ \ ^ |` and form feed) costs 2 septets
//! (escape + code). A text with any other character is UCS-2, counted in
//! UTF-16 units, so a character outside the BMP (most emoji) costs 2. A
//! single message holds 160 septets or 70 units; the parts of a concatenated
//! message hold 153 or 67 (the rest is the UDH). Parts are cut between
//! characters: an escape and its code, or a surrogate pair, are never split,
//! so segment counts come from the actual cut, not from a division.
//!
//! Owns: the alphabet and the counting. Must not: know a transport (UDH
//! bytes, SMPP fields and reference numbers belong to the transport), or
//! refuse a long text (callers compare `segments` with [`MAX_SEGMENTS`]).

use serde::{Deserialize, Serialize};

/// The most segments herald sends for one message.
pub const MAX_SEGMENTS: usize = 10;

/// Septets in a single GSM-7 message.
const GSM7_SINGLE: usize = 160;
/// Septets in each part of a concatenated GSM-7 message.
const GSM7_PART: usize = 153;
/// UTF-16 units in a single UCS-2 message.
const UCS2_SINGLE: usize = 70;
/// UTF-16 units in each part of a concatenated UCS-2 message.
const UCS2_PART: usize = 67;

/// The GSM 03.38 escape to the extension table.
const ESCAPE: u8 = 0x1B;

/// The GSM 03.38 default alphabet, indexed by septet value. Index 0x1B is the
/// escape and never matches a character of a text.
const BASIC: [char; 128] = [
    '@', '£', '$', '¥', 'è', 'é', 'ù', 'ì', 'ò', 'Ç', '\n', 'Ø', 'ø', '\r', 'Å', 'å', //
    'Δ', '_', 'Φ', 'Γ', 'Λ', 'Ω', 'Π', 'Ψ', 'Σ', 'Θ', 'Ξ', '\u{1B}', 'Æ', 'æ', 'ß', 'É', //
    ' ', '!', '"', '#', '¤', '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', '/', //
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', ':', ';', '<', '=', '>', '?', //
    '¡', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O', //
    'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', 'Ä', 'Ö', 'Ñ', 'Ü', '§', //
    '¿', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', //
    'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 'ä', 'ö', 'ñ', 'ü', 'à', //
];

/// The GSM 03.38 extension table: a character and its code after the escape.
const EXTENSION: [(char, u8); 10] = [
    ('\u{0C}', 0x0A),
    ('^', 0x14),
    ('{', 0x28),
    ('}', 0x29),
    ('\\', 0x2F),
    ('[', 0x3C),
    ('~', 0x3D),
    (']', 0x3E),
    ('|', 0x40),
    ('€', 0x65),
];

/// How a text is encoded on the air.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// The GSM 03.38 default alphabet and extension table (SMPP data_coding 0).
    Gsm7,
    /// UTF-16BE (SMPP data_coding 8).
    Ucs2,
}

impl Encoding {
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Gsm7 => "gsm7",
            Encoding::Ucs2 => "ucs2",
        }
    }

    /// Units in a single (unconcatenated) message.
    fn single_capacity(self) -> usize {
        match self {
            Encoding::Gsm7 => GSM7_SINGLE,
            Encoding::Ucs2 => UCS2_SINGLE,
        }
    }

    /// Units in each part of a concatenated message.
    fn part_capacity(self) -> usize {
        match self {
            Encoding::Gsm7 => GSM7_PART,
            Encoding::Ucs2 => UCS2_PART,
        }
    }

    /// What one character costs in this encoding: septets or UTF-16 units.
    fn units_of(self, c: char) -> usize {
        match self {
            Encoding::Gsm7 => match gsm7_code(c) {
                Some(Gsm7Code::Extension(_)) => 2,
                _ => 1,
            },
            Encoding::Ucs2 => c.len_utf16(),
        }
    }
}

/// What a text costs: its encoding, its length in that encoding's units
/// (septets or UTF-16 units) and the segments it is sent as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmsInfo {
    pub encoding: Encoding,
    pub units: usize,
    pub segments: usize,
}

/// One segment of a text, for a transport that encodes by itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    pub text: String,
    pub encoding: Encoding,
    /// Septets or UTF-16 units in this part.
    pub units: usize,
}

/// A character's place in GSM 03.38.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gsm7Code {
    Basic(u8),
    Extension(u8),
}

fn gsm7_code(c: char) -> Option<Gsm7Code> {
    if c == '\u{1B}' {
        return None;
    }
    if let Some(i) = BASIC.iter().position(|&b| b == c) {
        // BASIC has 128 entries, so the index fits a septet.
        return Some(Gsm7Code::Basic(i as u8));
    }
    EXTENSION
        .iter()
        .find(|(e, _)| *e == c)
        .map(|&(_, code)| Gsm7Code::Extension(code))
}

/// The encoding a text needs: GSM-7 when every character is in the default
/// alphabet or its extension table, UCS-2 otherwise.
pub fn encoding_of(text: &str) -> Encoding {
    if text.chars().all(|c| gsm7_code(c).is_some()) {
        Encoding::Gsm7
    } else {
        Encoding::Ucs2
    }
}

/// The encoding, units and segments of a text. The empty text is one
/// segment.
pub fn analyse(text: &str) -> SmsInfo {
    let encoding = encoding_of(text);
    let units = text.chars().map(|c| encoding.units_of(c)).sum();
    let segments = if units <= encoding.single_capacity() {
        1
    } else {
        cut(text, encoding).len()
    };
    SmsInfo {
        encoding,
        units,
        segments,
    }
}

/// The parts a text is sent as: the whole text when it fits a single
/// message, else parts of at most 153 septets or 67 units, cut between
/// characters. The empty text is one empty part.
pub fn split(text: &str) -> Vec<Part> {
    let encoding = encoding_of(text);
    let units: usize = text.chars().map(|c| encoding.units_of(c)).sum();
    if units <= encoding.single_capacity() {
        return vec![Part {
            text: text.to_string(),
            encoding,
            units,
        }];
    }
    cut(text, encoding)
        .into_iter()
        .map(|(range, units)| Part {
            text: text[range].to_string(),
            encoding,
            units,
        })
        .collect()
}

/// Cuts a text into concatenated parts: each a byte range of `text` and its
/// units. Greedy: a part takes characters while the next one still fits.
fn cut(text: &str, encoding: Encoding) -> Vec<(std::ops::Range<usize>, usize)> {
    let capacity = encoding.part_capacity();
    let mut parts = Vec::new();
    let mut start = 0;
    let mut units = 0;
    for (i, c) in text.char_indices() {
        let cost = encoding.units_of(c);
        if units + cost > capacity {
            parts.push((start..i, units));
            start = i;
            units = 0;
        }
        units += cost;
    }
    if units > 0 || parts.is_empty() {
        parts.push((start..text.len(), units));
    }
    parts
}

/// GSM-7, one septet value per byte (unpacked, as SMPP data_coding 0
/// carries it); an extension character is the escape 0x1B then its code. A
/// character outside the alphabet is written as `?` (0x3F): callers encode
/// as GSM-7 only what [`encoding_of`] says is GSM-7.
pub fn encode_gsm7_unpacked(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        match gsm7_code(c) {
            Some(Gsm7Code::Basic(b)) => out.push(b),
            Some(Gsm7Code::Extension(b)) => {
                out.push(ESCAPE);
                out.push(b);
            }
            None => out.push(b'?'),
        }
    }
    out
}

/// UCS-2 as SMSCs take it: UTF-16 big-endian (a character outside the BMP is
/// its surrogate pair).
pub fn encode_ucs2(text: &str) -> Vec<u8> {
    text.encode_utf16().flat_map(|u| u.to_be_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repeat(s: &str, n: usize) -> String {
        s.repeat(n)
    }

    #[test]
    fn texts_are_counted_in_the_right_encoding_units_and_segments() {
        let a153 = repeat("a", 153);
        let cases: Vec<(&str, String, Encoding, usize, usize)> = vec![
            ("empty", String::new(), Encoding::Gsm7, 0, 1),
            ("hello", "hello".into(), Encoding::Gsm7, 5, 1),
            ("160 a", repeat("a", 160), Encoding::Gsm7, 160, 1),
            ("161 a", repeat("a", 161), Encoding::Gsm7, 161, 2),
            ("306 a", repeat("a", 306), Encoding::Gsm7, 306, 2),
            ("307 a", repeat("a", 307), Encoding::Gsm7, 307, 3),
            ("euro alone", "€".into(), Encoding::Gsm7, 2, 1),
            ("80 euros fill one", repeat("€", 80), Encoding::Gsm7, 160, 1),
            (
                "79 euros and 3 a",
                repeat("€", 79) + "aaa",
                Encoding::Gsm7,
                161,
                2,
            ),
            // 152 septets then '€': the escape would be the 153rd septet and
            // its code the 154th, so the '€' moves to part two.
            (
                "euro across the first boundary",
                repeat("a", 152) + "€" + &repeat("a", 152),
                Encoding::Gsm7,
                306,
                3,
            ),
            (
                "euro ending the first part",
                repeat("a", 151) + "€" + &repeat("a", 153),
                Encoding::Gsm7,
                306,
                2,
            ),
            (
                "euro across the second boundary",
                a153.clone() + &repeat("a", 152) + "€",
                Encoding::Gsm7,
                307,
                3,
            ),
            ("brackets cost 2", "[]{}~\\^|".into(), Encoding::Gsm7, 16, 1),
            ("form feed costs 2", "\u{0C}".into(), Encoding::Gsm7, 2, 1),
            ("70 é stay gsm7", repeat("é", 70), Encoding::Gsm7, 70, 1),
            ("161 é", repeat("é", 161), Encoding::Gsm7, 161, 2),
            ("á is not gsm7", "á".into(), Encoding::Ucs2, 1, 1),
            ("backtick is not gsm7", "`".into(), Encoding::Ucs2, 1, 1),
            ("ç is not gsm7", "ç".into(), Encoding::Ucs2, 1, 1),
            (
                "greek capitals are gsm7",
                "ΔΦΓΛΩΠΨΣΘΞ".into(),
                Encoding::Gsm7,
                10,
                1,
            ),
            ("70 ucs2", repeat("á", 70), Encoding::Ucs2, 70, 1),
            ("71 ucs2", repeat("á", 71), Encoding::Ucs2, 71, 2),
            ("134 ucs2", repeat("á", 134), Encoding::Ucs2, 134, 2),
            ("135 ucs2", repeat("á", 135), Encoding::Ucs2, 135, 3),
            ("one emoji", "😀".into(), Encoding::Ucs2, 2, 1),
            ("35 emoji fill one", repeat("😀", 35), Encoding::Ucs2, 70, 1),
            // 66 units then an emoji: the pair would straddle the boundary.
            (
                "emoji across the boundary",
                repeat("á", 66) + "😀" + &repeat("á", 66),
                Encoding::Ucs2,
                134,
                3,
            ),
            (
                "emoji ending the first part",
                repeat("á", 65) + "😀" + &repeat("á", 67),
                Encoding::Ucs2,
                134,
                2,
            ),
            (
                "gsm7 text with one emoji",
                "hello 😀".into(),
                Encoding::Ucs2,
                8,
                1,
            ),
            ("euro in ucs2 costs 1", "€á".into(), Encoding::Ucs2, 2, 1),
        ];
        for (name, text, encoding, units, segments) in cases {
            let info = analyse(&text);
            assert_eq!(
                info,
                SmsInfo {
                    encoding,
                    units,
                    segments
                },
                "{name}"
            );
            assert_eq!(split(&text).len(), segments, "{name}: split");
        }
    }

    #[test]
    fn parts_join_back_to_the_text_and_never_exceed_their_capacity() {
        let texts = [
            String::new(),
            repeat("a", 161),
            repeat("a", 152) + "€" + &repeat("a", 152),
            repeat("€", 400),
            repeat("á", 66) + "😀" + &repeat("á", 66),
            repeat("😀", 200),
            repeat("x😀", 101),
        ];
        for text in texts {
            let parts = split(&text);
            let joined: String = parts.iter().map(|p| p.text.as_str()).collect();
            assert_eq!(joined, text);
            let info = analyse(&text);
            for part in &parts {
                assert_eq!(part.encoding, info.encoding);
                assert_eq!(analyse(&part.text).encoding, info.encoding);
                let limit = if parts.len() == 1 {
                    info.encoding.single_capacity()
                } else {
                    info.encoding.part_capacity()
                };
                assert!(part.units <= limit, "{} > {limit}", part.units);
                let counted: usize = part.text.chars().map(|c| info.encoding.units_of(c)).sum();
                assert_eq!(part.units, counted);
            }
        }
    }

    #[test]
    fn the_euro_straddling_a_boundary_starts_the_next_part() {
        let text = repeat("a", 152) + "€" + &repeat("b", 10);
        let parts = split(&text);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].text, repeat("a", 152));
        assert_eq!(parts[0].units, 152);
        assert_eq!(parts[1].text, "€".to_string() + &repeat("b", 10));
        assert_eq!(parts[1].units, 12);
    }

    #[test]
    fn gsm7_is_one_septet_per_byte_with_escaped_extensions() {
        let cases: [(&str, &[u8]); 8] = [
            ("@", &[0x00]),
            ("$", &[0x02]),
            ("é", &[0x05]),
            ("_", &[0x11]),
            ("Hi!", &[0x48, 0x69, 0x21]),
            ("€", &[0x1B, 0x65]),
            ("[~]", &[0x1B, 0x3C, 0x1B, 0x3D, 0x1B, 0x3E]),
            ("à\n", &[0x7F, 0x0A]),
        ];
        for (text, bytes) in cases {
            assert_eq!(encode_gsm7_unpacked(text), bytes, "{text:?}");
        }
        assert_eq!(encode_gsm7_unpacked("á"), b"?");
    }

    #[test]
    fn ucs2_is_utf16_big_endian_with_surrogate_pairs() {
        let cases: [(&str, &[u8]); 3] = [
            ("A", &[0x00, 0x41]),
            ("á€", &[0x00, 0xE1, 0x20, 0xAC]),
            ("😀", &[0xD8, 0x3D, 0xDE, 0x00]),
        ];
        for (text, bytes) in cases {
            assert_eq!(encode_ucs2(text), bytes, "{text:?}");
        }
    }

    #[test]
    fn the_escape_character_itself_is_not_gsm7() {
        assert_eq!(encoding_of("\u{1B}"), Encoding::Ucs2);
    }

    #[test]
    fn encodings_serialise_as_their_codes() {
        for e in [Encoding::Gsm7, Encoding::Ucs2] {
            let json = serde_json::to_string(&e).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", e.as_str()));
        }
    }
}
