//! Phone numbers: how a caller id becomes an E.164 number, and how numbers are matched.
//!
//! The one rule for matching a caller to a contact lives here: both sides are normalized with
//! [`E164::parse`] in the organization's default [`Region`], and the normalized strings are compared
//! for equality. Anything that is not a valid, dialable number never matches.

use std::fmt;
use std::str::FromStr;

use phonenumber::Mode;
use phonenumber::country::Id as CountryId;
use serde::{Deserialize, Serialize};

/// Words that telephony providers send instead of a number when the caller withholds it.
const ANONYMOUS_WORDS: &[&str] = &[
    "anonymous",
    "restricted",
    "private",
    "unknown",
    "unavailable",
    "withheld",
];

/// Numbers that carriers put in the caller id of a withheld call (digits only, without `+`).
/// They spell ANONYMOUS, RESTRICTED, BLOCKED and UNKNOWN on a keypad.
const ANONYMOUS_PLACEHOLDERS: &[&str] = &["266696687", "7378742833", "2562533", "8656696"];

/// A region whose numbering plan has no trunk (national) prefix, so reading a number in it never
/// strips digits: Italy's (its numbers keep their leading 0 in E.164).
const NO_TRUNK_PREFIX: CountryId = CountryId::IT;

/// Longest raw caller id we try to parse; real numbers are far shorter (E.164 allows 15 digits).
const MAX_RAW_LEN: usize = 64;

/// A phone number in E.164 form (`+14165550100`), known to be valid.
///
/// Its `Debug` output is masked: a number never appears whole in logs by accident.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct E164(String);

/// Why a raw caller id does not give a number to match on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    /// Nothing was sent, or only whitespace.
    #[error("no number")]
    Empty,
    /// The caller withheld the number (a keyword or a carrier placeholder).
    #[error("the caller withheld the number")]
    Anonymous,
    /// The text is not a valid phone number in the given region.
    #[error("not a valid phone number")]
    Invalid,
}

impl E164 {
    /// Normalizes a raw number. National formats such as `(416) 555-0100` are read in `region`;
    /// numbers starting with `+` (or an international prefix) keep their own country.
    ///
    /// # Errors
    /// [`PhoneError::Empty`] for an empty string, [`PhoneError::Anonymous`] for withheld-number
    /// keywords and carrier placeholders, [`PhoneError::Invalid`] for anything else that is not a
    /// valid number.
    pub fn parse(raw: &str, region: &Region) -> Result<Self, PhoneError> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(PhoneError::Empty);
        }
        if raw.len() > MAX_RAW_LEN {
            return Err(PhoneError::Invalid);
        }
        if is_anonymous(raw) {
            return Err(PhoneError::Anonymous);
        }
        let number = if raw.starts_with(['+', '\u{FF0B}']) {
            // Written with its country code, a number has no trunk prefix, but phonenumber 0.3
            // strips the default region's from it: in a US or CA organization +49 151 1234 5678
            // became another valid number (+49 511 ...), in GB or DE every Italian landline
            // (+39 0...) became invalid, in RU +7 800 did. So it is read in a region without a
            // trunk prefix, and in the organization's only when that is not a valid number (as
            // before: Mexico's former mobile form +52 1 55... becomes +52 55... in US and CA).
            phonenumber::parse(Some(NO_TRUNK_PREFIX), raw)
                .ok()
                .filter(phonenumber::is_valid)
                .or_else(|| phonenumber::parse(Some(region.country), raw).ok())
        } else {
            phonenumber::parse(Some(region.country), raw).ok()
        };
        let number = number
            .filter(phonenumber::is_valid)
            .ok_or(PhoneError::Invalid)?;
        let e164 = number.format().mode(Mode::E164).to_string();
        // E.164 allows 15 digits. The metadata calls some longer German numbers valid, and
        // parse_e164 (every number read back from the store or the cache) refuses them.
        if e164.len() > 1 + 15 {
            return Err(PhoneError::Invalid);
        }
        // The placeholder may also arrive in a national form that only normalization reveals.
        if ANONYMOUS_PLACEHOLDERS.contains(&&e164[1..]) {
            return Err(PhoneError::Anonymous);
        }
        Ok(Self(e164))
    }

    /// Reads a number that is already E.164 text: one this service normalized with
    /// [`E164::parse`] and stored (in the database, in a cached call context), or one a test
    /// writes out. This is the check every number read back goes through, `Deserialize` included:
    /// `+` followed by 2 to 15 ASCII digits.
    ///
    /// It checks the shape only, not the numbering plan: the number was checked against the
    /// full metadata when it was written, the metadata changes between releases (a number
    /// valid then must still match its contact now), and the webhook reads cached contexts on its
    /// hot path, where a metadata parse per number would cost. The shape is what the API contract
    /// promises for `caller_number` (`^\+[0-9]{2,15}$` in `docs/openapi.yaml`, compared with this
    /// function by relay-http's tests), and what keeps a broken row or cache entry from becoming
    /// a number: anything else is refused.
    ///
    /// # Errors
    /// [`PhoneError::Invalid`] unless `s` is `+` followed by 2 to 15 digits.
    pub fn parse_e164(s: &str) -> Result<Self, PhoneError> {
        let digits = s.strip_prefix('+').ok_or(PhoneError::Invalid)?;
        if (2..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Self(s.to_owned()))
        } else {
            Err(PhoneError::Invalid)
        }
    }

    /// A caller id already written as E.164 (`+` and 2 to 15 digits, surrounding whitespace
    /// ignored) that is not a withheld-number placeholder: the number it names *if* it is valid,
    /// read without the numbering-plan metadata.
    ///
    /// This is the webhook's fast path. Every stored number is an output of [`E164::parse`],
    /// and [`E164::parse`] is idempotent (an output parses back to itself in every region, which
    /// the property tests check for every region's numbers), so a caller id that *equals* a
    /// stored number is exactly what the full parser would make of it. A caller id that equals
    /// no stored number may still be invalid, or name another number (`+44 0 20...`, whose
    /// trunk prefix the parser drops): only the full parser can tell, so the caller falls back
    /// to it then.
    pub fn written(raw: &str) -> Option<Self> {
        let raw = raw.trim();
        let number = Self::parse_e164(raw).ok()?;
        (!ANONYMOUS_PLACEHOLDERS.contains(&&raw[1..])).then_some(number)
    }

    /// The E.164 text, e.g. `+14165550100`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The number masked to its last four digits (`***0100`), the only form logs may carry.
    pub fn masked(&self) -> String {
        mask_phone(&self.0)
    }
}

fn is_anonymous(raw: &str) -> bool {
    if ANONYMOUS_WORDS.iter().any(|w| raw.eq_ignore_ascii_case(w)) {
        return true;
    }
    let digits: String = raw.chars().filter(char::is_ascii_digit).collect();
    ANONYMOUS_PLACEHOLDERS.contains(&digits.as_str())
}

/// Masks any phone-like text to its last four characters: `+14165550100` → `***0100`.
/// Short or empty input is masked entirely so that nothing identifying is left.
pub fn mask_phone(raw: &str) -> String {
    let chars: Vec<char> = raw.chars().filter(|c| !c.is_whitespace()).collect();
    if chars.len() <= 4 {
        return "***".to_owned();
    }
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("***{tail}")
}

impl fmt::Debug for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("E164").field(&self.masked()).finish()
    }
}

impl AsRef<str> for E164 {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for E164 {
    type Error = PhoneError;

    /// [`E164::parse_e164`]: how `Deserialize` reads a number (`#[serde(try_from = "String")]`).
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse_e164(&value)
    }
}

impl From<E164> for String {
    fn from(value: E164) -> Self {
        value.0
    }
}

/// What the caller id of one call says, after normalization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallerNumber {
    /// A valid number to look up.
    Known(E164),
    /// No usable number: none sent, withheld, or invalid. Never matches a contact.
    Unusable(PhoneError),
}

impl CallerNumber {
    /// Reads an optional raw caller id in the organization's region.
    pub fn from_caller_id(raw: Option<&str>, region: &Region) -> Self {
        match raw.map(|r| E164::parse(r, region)) {
            None => Self::Unusable(PhoneError::Empty),
            Some(Ok(n)) => Self::Known(n),
            Some(Err(e)) => Self::Unusable(e),
        }
    }

    /// The number to look up, if any.
    pub fn number(&self) -> Option<&E164> {
        match self {
            Self::Known(n) => Some(n),
            Self::Unusable(_) => None,
        }
    }
}

/// An organization's default region: the ISO 3166-1 alpha-2 country in which national numbers are
/// read (`CA`, `US`, `GB`, ...). Only regions the phone-number metadata knows are accepted.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Region {
    country: CountryId,
}

/// The region code is not a known ISO 3166-1 alpha-2 country.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown region {0:?}: expected an ISO 3166-1 alpha-2 country code such as CA or US")]
pub struct RegionError(String);

impl Region {
    /// Parses a two-letter country code, case-insensitively.
    ///
    /// # Errors
    /// [`RegionError`] when the code is not a known country.
    pub fn parse(code: &str) -> Result<Self, RegionError> {
        let upper = code.trim().to_ascii_uppercase();
        if upper.len() != 2 {
            return Err(RegionError(code.to_owned()));
        }
        CountryId::from_str(&upper)
            .map(|country| Self { country })
            .map_err(|_| RegionError(code.to_owned()))
    }

    /// The upper-case two-letter code, e.g. `CA`.
    pub fn code(&self) -> &str {
        self.country.as_ref()
    }
}

impl fmt::Debug for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Region({})", self.code())
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl FromStr for Region {
    type Err = RegionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn ca() -> Region {
        Region::parse("CA").unwrap()
    }

    #[test]
    fn national_format_is_read_in_the_default_region() {
        for raw in [
            "(416) 555-0100",
            "416-555-0100",
            "416.555.0100",
            "4165550100",
            "1 416 555 0100",
            "+1 (416) 555-0100",
            "+14165550100",
            "  +14165550100  ",
        ] {
            assert_eq!(
                E164::parse(raw, &ca()).unwrap().as_str(),
                "+14165550100",
                "{raw}"
            );
        }
    }

    #[test]
    fn international_number_keeps_its_own_country() {
        let gb = E164::parse("+44 20 7946 0958", &ca()).unwrap();
        assert_eq!(gb.as_str(), "+442079460958");
        let gb_national = E164::parse("020 7946 0958", &Region::parse("gb").unwrap()).unwrap();
        assert_eq!(gb_national, gb);
    }

    #[test]
    fn a_number_is_e164_whatever_the_region_or_the_metadata_says() {
        for (raw, e164) in [
            ("+39 011 2000 0000", "+3901120000000"),
            ("+390612345678", "+390612345678"),
            ("+225 07 08 09 10 11", "+2250708091011"),
            ("+49 151 12345678", "+4915112345678"),
            ("+33 1 23 45 67 89", "+33123456789"),
            ("+36 1 234 5678", "+3612345678"),
            ("+7 800 555 3535", "+78005553535"),
            ("+7 495 123 4567", "+74951234567"),
            ("+52 55 1234 5678", "+525512345678"),
            ("+54 9 11 1234 5678", "+5491112345678"),
        ] {
            for region in REGIONS.iter().chain(&["MX"]) {
                let n = E164::parse(raw, &Region::parse(region).unwrap());
                assert_eq!(n.as_ref().map(E164::as_str), Ok(e164), "{raw} in {region}");
            }
        }
        // Not valid as written, a number is read in the organization's region as it always was:
        // Mexico's former mobile form loses its 1 where the trunk prefix is 1.
        for (region, read) in [
            ("US", Ok("+525512345678")),
            ("CA", Ok("+525512345678")),
            ("GB", Err(PhoneError::Invalid)),
        ] {
            let n = E164::parse("+52 1 55 1234 5678", &Region::parse(region).unwrap());
            assert_eq!(
                n.as_ref().map(E164::as_str).map_err(|e| *e),
                read,
                "{region}"
            );
        }
        // More than E.164's 15 digits, though the metadata says valid: refused, as parse_e164
        // would refuse it once stored.
        let de = Region::parse("DE").unwrap();
        assert_eq!(E164::parse("18000000000000", &de), Err(PhoneError::Invalid));
        // Dialled with an international prefix, the crate still loses the zero: refused (never
        // a wrong number). Caller ids arrive in E.164.
        let gb = Region::parse("GB").unwrap();
        assert_eq!(
            E164::parse("0039 011 2000 0000", &gb),
            Err(PhoneError::Invalid)
        );
    }

    #[test]
    fn withheld_numbers_are_anonymous() {
        for raw in [
            "anonymous",
            "Anonymous",
            "RESTRICTED",
            "private",
            "unknown",
            "+266696687",
            "266696687",
            "+7378742833",
            "+2562533",
            "+8656696",
        ] {
            assert_eq!(E164::parse(raw, &ca()), Err(PhoneError::Anonymous), "{raw}");
        }
    }

    #[test]
    fn empty_and_invalid_numbers_are_rejected() {
        assert_eq!(E164::parse("", &ca()), Err(PhoneError::Empty));
        assert_eq!(E164::parse("   ", &ca()), Err(PhoneError::Empty));
        for raw in [
            "abc",
            "123",
            "+1 000 000 0000",
            "555-0100",
            "+999 1234",
            &"9".repeat(80),
        ] {
            assert_eq!(E164::parse(raw, &ca()), Err(PhoneError::Invalid), "{raw}");
        }
    }

    #[test]
    fn caller_number_without_caller_id_is_unusable() {
        assert_eq!(
            CallerNumber::from_caller_id(None, &ca()),
            CallerNumber::Unusable(PhoneError::Empty)
        );
        assert!(
            CallerNumber::from_caller_id(Some("4165550100"), &ca())
                .number()
                .is_some()
        );
    }

    #[test]
    fn debug_output_masks_the_number() {
        let n = E164::parse("+14165550100", &ca()).unwrap();
        let debug = format!("{n:?}");
        assert!(!debug.contains("4165550100"), "{debug}");
        assert!(debug.contains("***0100"), "{debug}");
    }

    #[test]
    fn mask_keeps_only_last_four() {
        assert_eq!(mask_phone("+14165550100"), "***0100");
        assert_eq!(mask_phone("0100"), "***");
        assert_eq!(mask_phone(""), "***");
    }

    #[test]
    fn parse_e164_accepts_only_e164_text() {
        assert!(E164::parse_e164("+14165550100").is_ok());
        for bad in [
            "14165550100",
            "+",
            "+1",
            "+1416555010099999",
            "+1416a550100",
        ] {
            assert!(E164::parse_e164(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn deserializing_goes_through_the_same_check() {
        let n: E164 = serde_json::from_str(r#""+14165550100""#).unwrap();
        assert_eq!(n, E164::parse_e164("+14165550100").unwrap());
        assert_eq!(serde_json::to_string(&n).unwrap(), r#""+14165550100""#);
        for bad in [
            r#""14165550100""#,
            r#""+1""#,
            r#""+1416555010099999""#,
            r#""+1416a550100""#,
            r#""""#,
        ] {
            assert!(serde_json::from_str::<E164>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn region_parsing() {
        assert_eq!(Region::parse("ca").unwrap().code(), "CA");
        assert_eq!(Region::parse(" US ").unwrap().to_string(), "US");
        assert!(Region::parse("XX").is_err());
        assert!(Region::parse("CAN").is_err());
        assert!(Region::parse("").is_err());
    }

    /// Regions with long and short national numbers, trunk prefixes 1 (US, CA), 0 and 8 (RU)
    /// or none (IT, whose leading 0 stays in E.164), and the shortest numbering plans (NU, TK).
    const REGIONS: [&str; 13] = [
        "CA", "US", "GB", "DE", "FR", "IT", "IN", "BR", "JP", "AU", "NU", "TK", "RU",
    ];

    /// The fewest digits an E.164 number the metadata calls valid has: Niue and Tokelau have
    /// four-digit subscriber numbers behind a three-digit country code.
    const MIN_E164_DIGITS: usize = 7;

    fn region() -> impl Strategy<Value = Region> {
        prop::sample::select(&REGIONS[..]).prop_map(|code| Region::parse(code).unwrap())
    }

    /// Caller ids: any text at all, any bytes read as text, and digit groups with the prefixes
    /// and separators real ones come with (the only way to reach valid numbers often).
    fn caller_id() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            prop::collection::vec(any::<u8>(), 0..80)
                .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
            (
                "[+]?(00|011)?",
                prop::collection::vec("[0-9]{1,4}", 1..6),
                "[ .()-]{0,2}",
                "[ ]*(ext\\. ?[0-9]{1,4})?",
            )
                .prop_map(|(prefix, groups, sep, tail)| {
                    format!("{prefix}{}{tail}", groups.join(&sep))
                }),
        ]
    }

    #[test]
    fn the_shortest_valid_numbers_have_seven_digits() {
        for (raw, region) in [("+683 7012", "NU"), ("+690 3010", "TK")] {
            let n = E164::parse(raw, &Region::parse(region).unwrap()).unwrap();
            assert_eq!(n.as_str().len() - 1, MIN_E164_DIGITS, "{raw}");
        }
    }

    /// The webhook's fast path ([`E164::written`]) is exact: a number the parser gives (what
    /// every stored number is) is its own written form, and parses back to itself in every
    /// region it could be read in; so a caller id equal to a stored number is what the parser
    /// would make of it. Over every region's example numbers in every written form.
    #[test]
    fn every_regions_numbers_are_their_own_fast_path() {
        let all_regions: Vec<Region> = phonenumber::metadata::DATABASE
            .iter()
            .filter_map(|meta| Region::parse(meta.id()).ok())
            .collect();
        let readers: Vec<Region> = examples::READING_REGIONS
            .iter()
            .map(|code| Region::parse(code).unwrap())
            .collect();
        let cases = examples::caller_ids();
        assert!(cases.len() > 2_000, "{} cases", cases.len());
        let mut parsed = 0;
        for (i, case) in cases.iter().enumerate() {
            let raw = &case.raw;
            let regions: Vec<Region> = case.region.iter().chain(&readers).copied().collect();
            for region in &regions {
                let Ok(n) = E164::parse(raw, region) else {
                    continue;
                };
                parsed += 1;
                assert_eq!(
                    E164::written(n.as_str()),
                    Some(n.clone()),
                    "{raw} in {region}"
                );
                // Read back in its own region, the fixed ones, and one more of every region in
                // turn (every region is a reader of some number).
                let other = all_regions[i % all_regions.len()];
                for again in regions.iter().chain([&other]) {
                    assert_eq!(
                        E164::parse(n.as_str(), again).as_ref(),
                        Ok(&n),
                        "{raw} read in {region} as {}, read again in {again}",
                        n.as_str()
                    );
                }
            }
        }
        assert!(parsed > 2_000, "only {parsed} example numbers parsed");
    }

    #[test]
    fn a_caller_id_written_as_e164_is_its_own_candidate_and_nothing_else_is() {
        for (raw, written) in [
            ("+14165550100", Some("+14165550100")),
            ("  +14165550100 ", Some("+14165550100")),
            // The shape only: whether it is valid, and which number it names, is the parser's.
            ("+4402079460958", Some("+4402079460958")),
            ("+10000000000", Some("+10000000000")),
            ("+1 416 555 0100", None),
            ("14165550100", None),
            ("(416) 555-0100", None),
            ("+1416555010099999", None),
            ("+266696687", None),
            ("anonymous", None),
            ("", None),
        ] {
            assert_eq!(
                E164::written(raw).as_ref().map(E164::as_str),
                written,
                "{raw:?}"
            );
        }
        // The trunk prefix after the country code is the parser's to drop.
        let gb = Region::parse("GB").unwrap();
        assert_eq!(
            E164::parse("+4402079460958", &gb).unwrap().as_str(),
            "+442079460958"
        );
    }

    proptest! {
        // Normalization is idempotent: an E.164 result parses back to itself in any region.
        #[test]
        fn normalization_is_idempotent(area in 200u32..999, exchange in 200u32..999, line in 0u32..10_000) {
            let raw = format!("({area}) {exchange}-{line:04}");
            if let Ok(n) = E164::parse(&raw, &ca()) {
                let again = E164::parse(n.as_str(), &Region::parse("GB").unwrap()).unwrap();
                prop_assert_eq!(&again, &n);
                prop_assert!(E164::parse_e164(n.as_str()).is_ok());
            }
        }

        // Formatting noise never changes the result: the same digits give the same number.
        #[test]
        fn separators_do_not_change_the_number(sep in "[ .()-]{0,3}") {
            let raw = format!("416{sep}555{sep}0100");
            let n = E164::parse(&raw, &ca()).unwrap();
            prop_assert_eq!(n.as_str(), "+14165550100");
        }

        // Any input at all gives a result or an error, never a panic; an accepted one is E.164
        // that normalizes to itself in every region, and the caller id reads the same.
        #[test]
        fn any_input_gives_e164_or_an_error(raw in caller_id(), region in region()) {
            let parsed = E164::parse(&raw, &region);
            let caller = CallerNumber::from_caller_id(Some(&raw), &region);
            prop_assert_eq!(caller.number(), parsed.as_ref().ok());
            if let Ok(n) = parsed {
                let digits = n.as_str().strip_prefix('+').unwrap_or_default();
                prop_assert!(
                    (MIN_E164_DIGITS..=15).contains(&digits.len())
                        && digits.bytes().all(|b| b.is_ascii_digit()),
                    "{raw:?} gave {}", n.as_str()
                );
                prop_assert_eq!(E164::parse_e164(n.as_str()), Ok(n.clone()));
                for other in REGIONS {
                    let again = E164::parse(n.as_str(), &Region::parse(other).unwrap());
                    prop_assert_eq!(again, Ok(n.clone()), "normalized again in {}", other);
                }
            }
        }

        #[test]
        fn mask_never_reveals_more_than_four_digits(digits in "[0-9]{5,15}") {
            let masked = mask_phone(&digits);
            prop_assert_eq!(masked.chars().filter(char::is_ascii_digit).count(), 4);
        }
    }
}

/// Caller ids made from the numbering-plan metadata, for tests of anything that reads numbers
/// (the fast path's exactness is checked over them here and in the use case's tests).
#[cfg(any(test, feature = "test-helpers"))]
pub mod examples {
    use super::Region;

    /// Regions to read every example in besides its own: trunk prefixes none (`IT`), `1`
    /// (`US`), `0` (`GB`), `8` (`RU`) and Mexico's, the ones the parser treats differently.
    pub const READING_REGIONS: [&str; 5] = ["IT", "US", "GB", "RU", "MX"];

    /// One written caller id and the region its number belongs to (`None` for the
    /// non-geographic entities: `+800`, `+882`, ...).
    #[derive(Debug, Clone)]
    pub struct CallerId {
        /// As a caller id would arrive.
        pub raw: String,
        /// The number's own region.
        pub region: Option<Region>,
    }

    /// Every region's example numbers (each kind the metadata has: fixed line, mobile, toll
    /// free, premium, shared cost, personal, VoIP, pager, UAN, voicemail), the non-geographic
    /// entities' included, each written the ways caller ids arrive: E.164, with the trunk
    /// prefix kept after the country code (`+44 0 20...`, spaced and not), and national.
    pub fn caller_ids() -> Vec<CallerId> {
        let mut cases = Vec::new();
        for meta in phonenumber::metadata::DATABASE.iter() {
            let d = meta.descriptors();
            let kinds = [
                d.fixed_line(),
                d.mobile(),
                d.toll_free(),
                d.premium_rate(),
                d.shared_cost(),
                d.personal_number(),
                d.voip(),
                d.pager(),
                d.uan(),
                d.voicemail(),
            ];
            let region = Region::parse(meta.id()).ok();
            let cc = meta.country_code();
            let trunk = meta.national_prefix().unwrap_or_default();
            for nsn in kinds.into_iter().flatten().filter_map(|k| k.example()) {
                let mut forms = vec![format!("+{cc}{nsn}")];
                if !trunk.is_empty() {
                    forms.push(format!("+{cc} {trunk}{nsn}"));
                    forms.push(format!("+{cc}{trunk}{nsn}"));
                }
                if region.is_some() {
                    forms.push(format!("{trunk}{nsn}"));
                }
                cases.extend(forms.into_iter().map(|raw| CallerId { raw, region }));
            }
        }
        cases
    }
}
