//! The demo's synthetic people: names, numbers in eight time zones, and an
//! appointment tomorrow in each one's own local time. Pure: the same count
//! and `now` give the same list.

use chrono::{DateTime, Duration, TimeZone as _, Utc};
use serde_json::{json, Value};

/// Time zones, each with an E.164 prefix of a fictional-use range there;
/// a four-digit serial completes the number.
const ZONES: [(&str, &str, &str); 8] = [
    ("America/New_York", "+1212555", "Midtown"),
    ("America/Chicago", "+1312555", "Lakeside"),
    ("America/Denver", "+1303555", "Foothills"),
    ("America/Los_Angeles", "+1213555", "Harbor"),
    ("Europe/London", "+44207946", "Southbank"),
    ("Europe/Berlin", "+4930901820", "Mitte"),
    ("Asia/Tokyo", "+8135550", "Shibuya"),
    ("Australia/Sydney", "+6125550", "Circular Quay"),
];

const FIRST: [&str; 16] = [
    "Ada", "Ben", "Chloe", "Dev", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kemi",
    "Liam", "Maya", "Noor", "Oscar", "Priya",
];
const LAST: [&str; 12] = [
    "Okafor",
    "Lindqvist",
    "Tanaka",
    "Moreau",
    "Schmidt",
    "Garcia",
    "Nguyen",
    "Kowalski",
    "Rossi",
    "Haddad",
    "Silva",
    "Walsh",
];

/// As many people as there are distinct numbers (10,000 serials per zone).
pub const MAX_PEOPLE: u32 = 80_000;

/// `n` people, spread evenly over the zones.
pub fn synthetic(n: u32, now: DateTime<Utc>) -> Vec<Value> {
    (0..n)
        .map(|i| {
            let (tz_name, prefix, clinic) = ZONES[(i as usize) % ZONES.len()];
            let serial = i / ZONES.len() as u32;
            let name = format!(
                "{} {}",
                FIRST[(i as usize) % FIRST.len()],
                LAST[(i as usize / FIRST.len()) % LAST.len()]
            );
            let tz: chrono_tz::Tz = tz_name.parse().expect("known zone");
            // Tomorrow, local time, on the half hour between 08:00 and 17:30.
            let local_day = now.with_timezone(&tz).date_naive() + Duration::days(1);
            let minutes = 8 * 60 + 30 * (i % 20);
            let at = local_day
                .and_hms_opt(minutes / 60, minutes % 60, 0)
                .and_then(|t| tz.from_local_datetime(&t).earliest())
                .map(|t| t.to_rfc3339())
                .unwrap_or_default();
            json!({
                "name": name,
                "destination": {"type": "tel", "target": format!("{prefix}{serial:04}")},
                "timezone": tz_name,
                "variables": {"name": name, "appointment": at, "clinic": clinic,
                              "email": format!("patient{i}@example.com")},
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_distinct_e164_and_zones_are_spread() {
        let people = synthetic(MAX_PEOPLE, Utc::now());
        let numbers: std::collections::HashSet<_> = people
            .iter()
            .map(|p| p["destination"]["target"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(numbers.len(), MAX_PEOPLE as usize);
        for n in &numbers {
            crate::domain::destination::validate_e164(n).unwrap();
        }
        let zones: std::collections::HashSet<_> =
            people[..8].iter().map(|p| p["timezone"].clone()).collect();
        assert_eq!(zones.len(), 8);
        assert!(people[0]["variables"]["appointment"]
            .as_str()
            .unwrap()
            .contains('T'));
    }
}
