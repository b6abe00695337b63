//! Which time zone a target is called in: its own, else the zone its E.164
//! number maps to (when it maps to exactly one), else the campaign's.
//!
//! Owns the country-code table and the NANP area-code table. A number range
//! maps to a zone when the area it serves keeps one civil time; it maps to
//! none when part of it keeps another. Two ranges are deliberately mapped
//! despite a tiny remote exception, because the exception holds well under
//! 0.1% of the range's population: 907 (Alaska) → America/Anchorage (the
//! western Aleutians, Adak and Atka, keep Hawaii–Aleutian time), and New
//! Zealand mobiles → Pacific/Auckland (the Chatham Islands keep +45 min;
//! Chatham landlines, +64 3 305, are mapped to Pacific/Chatham).
//! Spain maps only geographic numbers: the Canary Islands (822, 828, 922,
//! 928) to Atlantic/Canary, other geographic ranges to Europe/Madrid;
//! mobiles and service numbers are not mapped (about 5% of Spaniards live on
//! the Canaries, an hour behind Madrid). Must not guess: when unsure, None.

use chrono_tz::Tz;

use crate::domain::destination::validate_e164;

/// Countries (by calling code) that keep one civil time. Calling codes are
/// prefix-free, so the one that prefixes the number is the only match.
const SINGLE_ZONE_COUNTRIES: &[(&str, Tz)] = {
    use chrono_tz::Africa as Af;
    use chrono_tz::America as Am;
    use chrono_tz::Asia as As;
    use chrono_tz::Atlantic as At;
    use chrono_tz::Europe as Eu;
    &[
        ("20", Af::Cairo),
        ("27", Af::Johannesburg),
        ("30", Eu::Athens),
        ("31", Eu::Amsterdam),
        ("32", Eu::Brussels),
        ("33", Eu::Paris),
        ("36", Eu::Budapest),
        ("39", Eu::Rome),
        ("40", Eu::Bucharest),
        ("41", Eu::Zurich),
        ("43", Eu::Vienna),
        ("44", Eu::London),
        ("45", Eu::Copenhagen),
        ("46", Eu::Stockholm),
        ("47", Eu::Oslo),
        ("48", Eu::Warsaw),
        ("49", Eu::Berlin),
        ("51", Am::Lima),
        ("53", Am::Havana),
        ("54", Am::Argentina::Buenos_Aires),
        ("57", Am::Bogota),
        ("58", Am::Caracas),
        ("60", As::Kuala_Lumpur),
        ("63", As::Manila),
        ("65", As::Singapore),
        ("66", As::Bangkok),
        ("81", As::Tokyo),
        ("82", As::Seoul),
        ("84", As::Ho_Chi_Minh),
        ("86", As::Shanghai),
        ("90", Eu::Istanbul),
        ("91", As::Kolkata),
        ("92", As::Karachi),
        ("94", As::Colombo),
        ("98", As::Tehran),
        ("233", Af::Accra),
        ("234", Af::Lagos),
        ("251", Af::Addis_Ababa),
        ("254", Af::Nairobi),
        ("255", Af::Dar_es_Salaam),
        ("256", Af::Kampala),
        ("352", Eu::Luxembourg),
        ("353", Eu::Dublin),
        ("354", At::Reykjavik),
        ("356", Eu::Malta),
        ("358", Eu::Helsinki),
        ("359", Eu::Sofia),
        ("370", Eu::Vilnius),
        ("371", Eu::Riga),
        ("372", Eu::Tallinn),
        ("381", Eu::Belgrade),
        ("385", Eu::Zagreb),
        ("386", Eu::Ljubljana),
        ("420", Eu::Prague),
        ("421", Eu::Bratislava),
        ("502", Am::Guatemala),
        ("503", Am::El_Salvador),
        ("504", Am::Tegucigalpa),
        ("505", Am::Managua),
        ("506", Am::Costa_Rica),
        ("507", Am::Panama),
        ("591", Am::La_Paz),
        ("595", Am::Asuncion),
        ("598", Am::Montevideo),
        ("852", As::Hong_Kong),
        ("853", As::Macau),
        ("880", As::Dhaka),
        ("886", As::Taipei),
        ("961", As::Beirut),
        ("962", As::Amman),
        ("964", As::Baghdad),
        ("965", As::Kuwait),
        ("966", As::Riyadh),
        ("968", As::Muscat),
        ("971", As::Dubai),
        ("972", As::Jerusalem),
        ("973", As::Bahrain),
        ("974", As::Qatar),
    ]
};

/// NANP area codes (the three digits after +1) that lie wholly in one zone.
/// Split codes are absent on purpose, among them: Indiana 219, 574, 765,
/// 812, 930; Kentucky 270, 364, 606; Tennessee 423, 931; Florida panhandle
/// 850, 448; Michigan 906; Texas 432; Kansas 620, 785; Nebraska 308; the
/// Dakotas 605, 701; Oklahoma 580; Idaho 208, 986; Oregon 541, 458; Nevada
/// 775; Arizona 928 (Navajo Nation keeps DST); Alabama 334 (Phenix City);
/// Quebec 418, 581, 367; British Columbia 250, 778, 236, 672; Saskatchewan
/// 306, 639, 474 (Lloydminster); Newfoundland and Labrador 709, 879; the
/// territories 867; non-geographic codes (800, 888, 500, 900…).
const NANP_AREA_CODES: &[(&[u16], Tz)] = {
    use chrono_tz::America as Am;
    use chrono_tz::Atlantic as At;
    use chrono_tz::Pacific as Pa;
    &[
        (
            &[
                // CT, DE, DC, GA, ME, MD, MA, NH, NJ
                203, 475, 860, 959, 302, 202, 771, 229, 404, 470, 478, 678, 706, 762, 770, 912, 943,
                207, 227, 240, 301, 410, 443, 667, 339, 351, 413, 508, 617, 774, 781, 857, 978,
                603, 201, 551, 609, 640, 732, 848, 856, 862, 908, 973, // NY
                212, 315, 332, 347, 363, 516, 518, 585, 607, 631, 646, 680, 716, 718, 838, 845,
                914, 917, 929, 934, // NC, OH
                252, 336, 704, 743, 828, 910, 919, 980, 984, 216, 220, 234, 326, 330, 380, 419,
                440, 513, 567, 614, 740, 937, // PA, RI, SC, VT
                215, 223, 267, 272, 412, 445, 484, 570, 582, 610, 717, 724, 814, 878, 401, 803,
                839, 843, 854, 864, 802, // VA, WV
                276, 434, 540, 571, 703, 757, 804, 948, 304, 681,
                // FL outside the panhandle
                239, 305, 321, 352, 386, 407, 561, 656, 689, 727, 754, 772, 786, 813, 863, 904, 941,
                954, // MI outside the Upper Peninsula, KY, TN east, IN centre and north-east
                231, 248, 269, 313, 517, 586, 616, 679, 734, 810, 947, 989, 502, 859, 865, 317,
                463, 260,
            ],
            Am::New_York,
        ),
        (
            &[
                // IL, WI, MN, IA, MO, AR
                217, 224, 309, 312, 331, 447, 464, 618, 630, 708, 730, 773, 779, 815, 847, 872, 262,
                274, 414, 534, 608, 715, 920, 218, 320, 507, 612, 651, 763, 952, 319, 515, 563,
                641, 712, 314, 417, 557, 573, 636, 660, 816, 975, 479, 501, 870, 327,
                // LA, MS, OK, AL, TN middle and west, KS east, NE east
                225, 318, 337, 504, 985, 228, 601, 662, 769, 405, 539, 572, 918, 205, 251, 256, 659,
                938, 615, 629, 731, 901, 316, 913, 402, 531, // TX outside the far west
                210, 214, 254, 281, 325, 346, 361, 409, 430, 469, 512, 682, 713, 726, 737, 806,
                817, 830, 832, 903, 936, 940, 945, 956, 972, 979,
            ],
            Am::Chicago,
        ),
        (
            // CO, NM, UT, WY, MT, TX El Paso
            &[
                303, 719, 720, 970, 983, 505, 575, 385, 435, 801, 307, 406, 915,
            ],
            Am::Denver,
        ),
        (&[480, 520, 602, 623], Am::Phoenix),
        (
            &[
                // CA, WA, OR Portland, NV Las Vegas
                209, 213, 279, 310, 323, 341, 350, 369, 408, 415, 424, 442, 510, 530, 559, 562, 619,
                626, 628, 650, 657, 661, 669, 707, 714, 747, 760, 805, 818, 820, 831, 837, 840,
                858, 909, 916, 925, 949, 951, 206, 253, 360, 425, 509, 564, 503, 971, 702, 725,
            ],
            Am::Los_Angeles,
        ),
        (&[907], Am::Anchorage),
        (&[808], Pa::Honolulu),
        (
            // Ontario outside the north-west, Quebec outside the east
            &[
                416, 437, 647, 905, 289, 365, 742, 519, 226, 548, 382, 613, 343, 753, 705, 249,
                683, 514, 438, 263, 450, 579, 354, 819, 873, 468,
            ],
            Am::Toronto,
        ),
        (&[204, 431, 584], Am::Winnipeg),
        (&[403, 587, 780, 825, 368], Am::Edmonton),
        (&[604], Am::Vancouver),
        (&[902, 782], Am::Halifax),
        (&[506, 428], Am::Moncton),
        // Caribbean and Pacific members of the plan
        (&[242], Am::Nassau),
        (&[246], Am::Barbados),
        (&[264], Am::Anguilla),
        (&[268], Am::Antigua),
        (&[284], Am::Tortola),
        (&[340], Am::St_Thomas),
        (&[345], Am::Cayman),
        (&[441], At::Bermuda),
        (&[473], Am::Grenada),
        (&[649], Am::Grand_Turk),
        (&[658, 876], Am::Jamaica),
        (&[664], Am::Montserrat),
        (&[670], Pa::Saipan),
        (&[671], Pa::Guam),
        (&[684], Pa::Pago_Pago),
        (&[721], Am::Lower_Princes),
        (&[758], Am::St_Lucia),
        (&[767], Am::Dominica),
        (&[784], Am::St_Vincent),
        (&[787, 939], Am::Puerto_Rico),
        (&[809, 829, 849], Am::Santo_Domingo),
        (&[868], Am::Port_of_Spain),
        (&[869], Am::St_Kitts),
    ]
};

/// The zone of an E.164 number (`+` and digits) when its range maps to
/// exactly one; `None` for multi-zone countries without a table (+7, +61,
/// +55, +52, +62, …), split area codes, unknown codes and malformed input.
pub fn infer_timezone(e164: &str) -> Option<Tz> {
    validate_e164(e164).ok()?;
    let digits = e164.strip_prefix('+')?;
    if let Some(national) = digits.strip_prefix('1') {
        return nanp_zone(national);
    }
    if let Some(national) = digits.strip_prefix("34") {
        return spain_zone(national);
    }
    if let Some(national) = digits.strip_prefix("64") {
        return new_zealand_zone(national);
    }
    SINGLE_ZONE_COUNTRIES
        .iter()
        .filter(|(code, _)| digits.starts_with(code))
        .max_by_key(|(code, _)| code.len())
        .map(|(_, tz)| *tz)
}

fn nanp_zone(national: &str) -> Option<Tz> {
    if national.len() != 10 {
        return None;
    }
    let area: u16 = national.get(..3)?.parse().ok()?;
    NANP_AREA_CODES
        .iter()
        .find(|(codes, _)| codes.contains(&area))
        .map(|(_, tz)| *tz)
}

fn spain_zone(national: &str) -> Option<Tz> {
    let prefix = national.get(..3)?;
    if ["822", "828", "922", "928"].contains(&prefix) {
        return Some(chrono_tz::Atlantic::Canary);
    }
    let b = prefix.as_bytes();
    // Geographic numbers: 8[1-8]x and 9[1-8]x.
    let geographic = (b[0] == b'8' || b[0] == b'9') && (b'1'..=b'8').contains(&b[1]);
    geographic.then_some(chrono_tz::Europe::Madrid)
}

fn new_zealand_zone(national: &str) -> Option<Tz> {
    if national.starts_with("3305") {
        return Some(chrono_tz::Pacific::Chatham);
    }
    // Landlines 3, 4, 6, 7, 9 and mobiles 2x.
    matches!(
        national.as_bytes().first(),
        Some(b'2' | b'3' | b'4' | b'6' | b'7' | b'9')
    )
    .then_some(chrono_tz::Pacific::Auckland)
}

/// The zone a target is called in: its own (`target_tz`, an IANA name), else
/// the one inferred from its first `tel` destination, else the campaign's
/// (its calling window's zone). An unknown `target_tz` name is skipped.
pub fn resolve_timezone(target_tz: Option<&str>, first_tel: Option<&str>, campaign_tz: Tz) -> Tz {
    target_tz
        .and_then(|name| name.parse::<Tz>().ok())
        .or_else(|| first_tel.and_then(infer_timezone))
        .unwrap_or(campaign_tz)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::America;

    #[test]
    fn sample_nanp_area_codes_map_to_their_zone() {
        for (number, tz) in [
            ("+12125550100", America::New_York),
            ("+13125550100", America::Chicago),
            ("+13035550100", America::Denver),
            ("+14155550100", America::Los_Angeles),
            ("+19075550100", America::Anchorage),
            ("+18085550100", chrono_tz::Pacific::Honolulu),
            ("+14165550100", America::Toronto),
            ("+16045550100", America::Vancouver),
            ("+16025550100", America::Phoenix),
            ("+19155550100", America::Denver),
            ("+17875550100", America::Puerto_Rico),
            ("+15145550100", America::Toronto),
        ] {
            assert_eq!(infer_timezone(number), Some(tz), "{number}");
        }
    }

    #[test]
    fn split_and_non_geographic_area_codes_map_to_no_zone() {
        for number in [
            "+18125550100", // Indiana, Evansville Central / rest Eastern
            "+18505550100", // Florida panhandle
            "+19285550100", // Arizona with the Navajo Nation
            "+12505550100", // British Columbia interior
            "+18675550100", // three territories
            "+18005550100", // toll free
            "+14325550100", // Texas, Van Horn Mountain / Midland Central
            "+19065550100", // Michigan Upper Peninsula
        ] {
            assert_eq!(infer_timezone(number), None, "{number}");
        }
    }

    #[test]
    fn no_area_code_is_listed_twice() {
        let mut seen = std::collections::HashSet::new();
        for (codes, _) in NANP_AREA_CODES {
            for c in *codes {
                assert!((200..1000).contains(c), "{c}");
                assert!(seen.insert(*c), "{c} listed twice");
            }
        }
        let mut seen = std::collections::HashSet::new();
        for (code, _) in SINGLE_ZONE_COUNTRIES {
            assert!(seen.insert(*code), "+{code} listed twice");
            assert!(
                !code.starts_with('1') && !code.starts_with('7'),
                "+{code} is shared"
            );
        }
    }

    #[test]
    fn single_zone_countries_map_by_calling_code() {
        for (number, tz) in [
            ("+442079460000", chrono_tz::Europe::London),
            ("+33142685300", chrono_tz::Europe::Paris),
            ("+4930123456", chrono_tz::Europe::Berlin),
            ("+81312345678", chrono_tz::Asia::Tokyo),
            ("+912212345678", chrono_tz::Asia::Kolkata),
            ("+861012345678", chrono_tz::Asia::Shanghai),
            ("+27211234567", chrono_tz::Africa::Johannesburg),
            ("+2348012345678", chrono_tz::Africa::Lagos),
            ("+97221234567", chrono_tz::Asia::Jerusalem),
            ("+35311234567", chrono_tz::Europe::Dublin),
            ("+358912345678", chrono_tz::Europe::Helsinki),
            ("+85221234567", chrono_tz::Asia::Hong_Kong),
            ("+6561234567", chrono_tz::Asia::Singapore),
        ] {
            assert_eq!(infer_timezone(number), Some(tz), "{number}");
        }
    }

    #[test]
    fn spain_maps_mainland_and_canary_landlines_but_not_mobiles() {
        assert_eq!(
            infer_timezone("+34912345678"),
            Some(chrono_tz::Europe::Madrid)
        );
        assert_eq!(
            infer_timezone("+34932345678"),
            Some(chrono_tz::Europe::Madrid)
        );
        assert_eq!(
            infer_timezone("+34928123456"),
            Some(chrono_tz::Atlantic::Canary)
        );
        assert_eq!(
            infer_timezone("+34922123456"),
            Some(chrono_tz::Atlantic::Canary)
        );
        assert_eq!(infer_timezone("+34612345678"), None);
        assert_eq!(infer_timezone("+34900123456"), None);
    }

    #[test]
    fn new_zealand_maps_chatham_landlines_to_chatham() {
        assert_eq!(
            infer_timezone("+6433051234"),
            Some(chrono_tz::Pacific::Chatham)
        );
        assert_eq!(
            infer_timezone("+6493071234"),
            Some(chrono_tz::Pacific::Auckland)
        );
        assert_eq!(
            infer_timezone("+64211234567"),
            Some(chrono_tz::Pacific::Auckland)
        );
        assert_eq!(infer_timezone("+64800123456"), None);
    }

    #[test]
    fn multi_zone_countries_and_bad_input_map_to_no_zone() {
        for number in [
            "+74951234567",  // Russia
            "+61212345678",  // Australia
            "+551112345678", // Brazil
            "+525512345678", // Mexico
            "+62211234567",  // Indonesia
            "+3512123456",   // Portugal (Azores)
            "+99912345678",  // unassigned
            "12125550100",   // no plus
            "+1212555010",   // too short for NANP
            "+1212555010x",
            "",
        ] {
            assert_eq!(infer_timezone(number), None, "{number}");
        }
    }

    #[test]
    fn target_zone_wins_over_the_number_and_the_campaign() {
        let tz = resolve_timezone(
            Some("Europe/Berlin"),
            Some("+12125550100"),
            America::Chicago,
        );
        assert_eq!(tz, chrono_tz::Europe::Berlin);
    }

    #[test]
    fn number_zone_is_used_when_the_target_has_none() {
        let tz = resolve_timezone(None, Some("+12125550100"), America::Chicago);
        assert_eq!(tz, America::New_York);
        let bad_name = resolve_timezone(Some("Not/AZone"), Some("+12125550100"), America::Chicago);
        assert_eq!(bad_name, America::New_York);
    }

    #[test]
    fn campaign_zone_is_the_last_resort() {
        assert_eq!(
            resolve_timezone(None, Some("+61212345678"), America::Chicago),
            America::Chicago
        );
        assert_eq!(
            resolve_timezone(None, None, America::Chicago),
            America::Chicago
        );
    }
}
