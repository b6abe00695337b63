//! Validation of one target as an integrator sends it (JSON, or a CSV row
//! turned into the same shape). Accepts the `destinations` list and the
//! single-`destination` form of the VoIPBIN outdial API.

use serde_json::Value;

use super::destination::MAX_DESTINATIONS;
use super::fields::{Fields, MAX_DETAIL_CHARS};
use super::{parse_timezone, Destination, FieldError};

/// A validated target, ready to be stored.
#[derive(Debug, Clone)]
pub struct NewTarget {
    pub id: String,
    pub name: String,
    pub destinations: Vec<Destination>,
    pub try_count_max: Option<u32>,
    pub not_before: Option<i64>,
    pub expires_at: Option<i64>,
    pub timezone: Option<String>,
    /// The `variables` object as JSON text (validated, at most MAX_VARIABLES_BYTES).
    pub variables_json: String,
    pub client_token: Option<String>,
    /// `none`, `express` or `express_written`: the consent on record.
    pub consent: Option<String>,
    /// When the consent was given.
    pub consent_at: Option<i64>,
}

/// The consent levels a target may carry, weakest first.
pub const CONSENT_LEVELS: [&str; 3] = ["none", "express", "express_written"];

/// Largest `variables` object, in bytes of JSON.
pub const MAX_VARIABLES_BYTES: usize = 16 * 1024;

const FIELDS: &[&str] = &[
    "name",
    "destinations",
    "destination",
    "try_count_max",
    "variables",
    "timezone",
    "not_before",
    "expires_at",
    "client_token",
    "detail",
    "consent",
    "consent_at",
];

/// Validates one target; `id` is the id it will be stored under.
pub fn parse_target(v: &Value, id: String) -> Result<NewTarget, FieldError> {
    let f = Fields::new(v, "")?;
    f.deny_unknown(FIELDS)?;
    let name = f.str_opt("name")?.unwrap_or("").trim().to_string();
    if name.chars().count() > 200 {
        return Err(f.err("name", "must be at most 200 characters"));
    }
    let raw_dests: Vec<(String, &Value)> = match (f.get("destinations"), f.get("destination")) {
        (Some(_), Some(_)) => {
            return Err(f.err(
                "destination",
                "give either destination or destinations, not both",
            ))
        }
        (Some(_), None) => f
            .array_opt("destinations")?
            .into_iter()
            .flatten()
            .enumerate()
            .map(|(i, d)| (format!("destinations[{i}]"), d))
            .collect(),
        (None, Some(d)) => vec![("destination".to_string(), d)],
        (None, None) => return Err(f.err("destinations", "is required (at least one destination)")),
    };
    if raw_dests.is_empty() {
        return Err(f.err("destinations", "must hold at least one destination"));
    }
    if raw_dests.len() > MAX_DESTINATIONS {
        return Err(f.err(
            "destinations",
            format!(
                "at most {MAX_DESTINATIONS} destinations, got {}",
                raw_dests.len()
            ),
        ));
    }
    let mut destinations = Vec::with_capacity(raw_dests.len());
    for (path, d) in raw_dests {
        let df = Fields::new(d, path.clone())?;
        df.deny_unknown(&["type", "target", "try_count_max"])?;
        let kind = df.str_req("type")?;
        let target = df.str_req("target")?;
        let budget = df.int_opt("try_count_max", i64::MIN, i64::MAX)?;
        let dest = Destination::new(kind, target, budget).map_err(|e| e.within(&path))?;
        destinations.push(dest);
    }
    // CSV cells are text, so a target's own budget may come as digits.
    let try_count_max = f
        .int_or_digits_opt("try_count_max", 1, 100)?
        .map(|n| n as u32);
    f.text_opt("detail", MAX_DETAIL_CHARS)?;
    let timezone = match f.str_opt("timezone")? {
        None => None,
        Some(tz) => Some(parse_timezone("timezone", tz.trim())?.name().to_string()),
    };
    let not_before = f.timestamp_opt("not_before")?;
    let expires_at = f.timestamp_opt("expires_at")?;
    if let (Some(nb), Some(ex)) = (not_before, expires_at) {
        if ex <= nb {
            return Err(f.err("expires_at", "must be after not_before"));
        }
    }
    let variables_json = match f.get("variables") {
        None => "{}".to_string(),
        Some(v @ Value::Object(_)) => {
            let text = v.to_string();
            if text.len() > MAX_VARIABLES_BYTES {
                return Err(f.err(
                    "variables",
                    format!("must be at most {MAX_VARIABLES_BYTES} bytes of JSON"),
                ));
            }
            text
        }
        Some(_) => return Err(f.err("variables", "must be an object of name: value pairs")),
    };
    let client_token = match f.str_opt("client_token")? {
        None => None,
        Some(t) if t.is_empty() || t.len() > 200 => {
            return Err(f.err("client_token", "must be 1 to 200 characters"))
        }
        Some(t) => Some(t.to_string()),
    };
    let consent = match f.str_opt("consent")? {
        None => None,
        Some(c) => {
            let c = c.trim();
            if !CONSENT_LEVELS.contains(&c) {
                return Err(f.err(
                    "consent",
                    format!("must be one of {}, got {c:?}", CONSENT_LEVELS.join(", ")),
                ));
            }
            Some(c.to_string())
        }
    };
    let consent_at = f.timestamp_opt("consent_at")?;
    if consent_at.is_some() && consent.is_none() {
        return Err(f.err("consent_at", "needs consent (the level given then)"));
    }
    Ok(NewTarget {
        consent,
        consent_at,
        id,
        name,
        destinations,
        try_count_max,
        not_before,
        expires_at,
        timezone,
        variables_json,
        client_token,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn err(v: Value) -> FieldError {
        parse_target(&v, "t".into()).unwrap_err()
    }

    #[test]
    fn full_target_is_accepted() {
        let t = parse_target(
            &json!({
                "name": "Jane Doe",
                "destinations": [
                    {"type": "tel", "target": "+15551234567"},
                    {"type": "sip", "target": "sip:jane@pbx.example.com", "try_count_max": 1}
                ],
                "try_count_max": 3,
                "variables": {"clinic": "North"},
                "timezone": "America/New_York",
                "not_before": "2026-11-21T14:00:00Z",
                "expires_at": "2026-11-22T18:00:00Z",
                "client_token": "booking-8812"
            }),
            "t1".into(),
        )
        .unwrap();
        assert_eq!(t.destinations.len(), 2);
        assert_eq!(t.destinations[1].budget(3), 1);
        assert_eq!(t.try_count_max, Some(3));
        assert_eq!(t.client_token.as_deref(), Some("booking-8812"));
    }

    #[test]
    fn single_destination_form_is_accepted() {
        let t = parse_target(
            &json!({"destination": {"type": "tel", "target": "+15551234567"}, "try_count_max": 3}),
            "t".into(),
        )
        .unwrap();
        assert_eq!(t.destinations[0].target, "+15551234567");
    }

    #[test]
    fn each_mistake_names_its_field() {
        let tel = json!({"type": "tel", "target": "+15551234567"});
        assert_eq!(err(json!({})).field, "destinations");
        assert_eq!(err(json!({"destinations": []})).field, "destinations");
        assert_eq!(
            err(json!({"destinations": [tel, {"type": "tel", "target": "12"}]})).field,
            "destinations[1].target"
        );
        assert_eq!(
            err(json!({"destinations": [tel, tel, tel, tel, tel, tel]})).field,
            "destinations"
        );
        assert_eq!(
            err(json!({"destination": {"type": "fax", "target": "x"}})).field,
            "destination.type"
        );
        assert_eq!(
            err(json!({"destination": tel, "timezone": "Nowhere/Land"})).field,
            "timezone"
        );
        assert_eq!(
            err(json!({"destination": tel, "not_before": "tomorrow"})).field,
            "not_before"
        );
        assert_eq!(
            err(json!({"destination": tel, "not_before": "2026-11-22T00:00:00Z", "expires_at": "2026-11-21T00:00:00Z"})).field,
            "expires_at"
        );
        assert_eq!(
            err(json!({"destination": tel, "try_count_max": 0})).field,
            "try_count_max"
        );
        assert_eq!(
            err(json!({"destination": tel, "variables": [1]})).field,
            "variables"
        );
        assert_eq!(
            err(json!({"destination": tel, "colour": "red"})).field,
            "colour"
        );
        assert_eq!(err(json!("just a string")).field, "(body)");
        assert_eq!(
            err(json!({"destination": tel, "name": "a\u{0}b"})).field,
            "name"
        );
        assert_eq!(
            err(json!({"destination": tel, "client_token": "t\u{1b}"})).field,
            "client_token"
        );
        assert_eq!(
            err(json!({"destination": {"type": "tel", "target": "+1555\u{0}1234567"}})).field,
            "destination.target"
        );
        assert_eq!(
            err(json!({"destination": {"type": "tel", "target": "+15551234567", "try_count_max": "2"}}))
                .field,
            "destination.try_count_max"
        );
    }
}
