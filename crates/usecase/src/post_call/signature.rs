//! `ElevenLabs-Signature: t=<unix seconds>,v0=<hex HMAC-SHA256 of "<t>.<raw body>">`.
//!
//! Verified over the raw bytes, in constant time (`hmac`'s `verify_slice`), within a clock-skew
//! window around the time the delivery was received. Several `v0` values (a secret being
//! rotated on the sender's side) are accepted when any one matches.

use chrono::{DateTime, TimeDelta, Utc};
use hmac::{Hmac, KeyInit as _, Mac as _};
use sha2::Sha256;

/// How old a signature may be: ElevenLabs' own SDKs refuse older than 30 minutes.
pub const MAX_SIGNATURE_AGE: TimeDelta = TimeDelta::minutes(30);

/// How far in the future a signature may be (the sender's clock ahead of ours).
pub const MAX_CLOCK_AHEAD: TimeDelta = TimeDelta::minutes(5);

/// Longest header we read.
const MAX_HEADER_LEN: usize = 1_024;

/// Why a signature was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// Not `t=<digits>,v0=<64 hex>`.
    #[error("malformed signature header")]
    Malformed,
    /// The timestamp is outside the window.
    #[error("signature timestamp outside the allowed window")]
    Stale,
    /// No `v0` matches the body under this secret.
    #[error("signature does not match")]
    Mismatch,
}

/// A header split into its signed timestamp (as sent) and its `v0` MACs.
struct Parsed<'a> {
    t: &'a str,
    signatures: Vec<[u8; 32]>,
}

fn parse(header: &str, received_at: DateTime<Utc>) -> Result<Parsed<'_>, SignatureError> {
    if header.len() > MAX_HEADER_LEN {
        return Err(SignatureError::Malformed);
    }
    let mut timestamp: Option<(&str, i64)> = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        let (name, value) = part
            .trim()
            .split_once('=')
            .ok_or(SignatureError::Malformed)?;
        match name {
            "t" if timestamp.is_none() && !value.is_empty() => {
                if !value.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(SignatureError::Malformed);
                }
                let seconds = value
                    .parse::<i64>()
                    .map_err(|_| SignatureError::Malformed)?;
                timestamp = Some((value, seconds));
            }
            "v0" => {
                let mut mac = [0u8; 32];
                hex::decode_to_slice(value, &mut mac).map_err(|_| SignatureError::Malformed)?;
                signatures.push(mac);
            }
            // Other schemes may appear later; they are not ours to check.
            _ if name != "t" => {}
            _ => return Err(SignatureError::Malformed),
        }
    }
    let (t, seconds) = timestamp.ok_or(SignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(SignatureError::Malformed);
    }
    let signed_at = DateTime::from_timestamp(seconds, 0).ok_or(SignatureError::Stale)?;
    if signed_at < received_at - MAX_SIGNATURE_AGE || signed_at > received_at + MAX_CLOCK_AHEAD {
        return Err(SignatureError::Stale);
    }
    Ok(Parsed { t, signatures })
}

/// Checks what can be checked without the secret: the header is well-formed and its timestamp
/// within the window around `received_at`.
///
/// # Errors
/// [`SignatureError::Malformed`] or [`SignatureError::Stale`].
pub fn check_header(header: &str, received_at: DateTime<Utc>) -> Result<(), SignatureError> {
    parse(header, received_at).map(|_| ())
}

/// Verifies `header` for `body` under `secret`, as received at `received_at`. The MAC covers the
/// timestamp exactly as sent.
///
/// # Errors
/// See [`SignatureError`].
pub fn verify(
    header: &str,
    body: &[u8],
    secret: &[u8],
    received_at: DateTime<Utc>,
) -> Result<(), SignatureError> {
    let Parsed { t, signatures } = parse(header, received_at)?;
    let mac = mac(secret, t, body);
    let matched = signatures
        .iter()
        .any(|candidate| mac.clone().verify_slice(candidate).is_ok());
    if matched {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// HMAC-SHA256 of `"<t>.<body>"`, `t` exactly as it appears in the header.
fn mac(secret: &[u8], t: &str, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256>>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(t.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The header ElevenLabs would send for `body` signed at `t` (for tests and fixtures).
pub fn sign(body: &[u8], secret: &[u8], t: i64) -> String {
    sign_at(body, secret, &t.to_string())
}

fn sign_at(body: &[u8], secret: &[u8], t: &str) -> String {
    let mac = mac(secret, t, body).finalize().into_bytes();
    format!("t={t},v0={}", hex::encode(mac))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"wsec_test";
    const BODY: &[u8] = br#"{"type":"post_call_transcription","data":{}}"#;

    fn at(t: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(t, 0).unwrap()
    }

    #[test]
    fn a_valid_signature_is_accepted() {
        let header = sign(BODY, SECRET, 1_700_000_000);
        assert_eq!(verify(&header, BODY, SECRET, at(1_700_000_010)), Ok(()));
    }

    #[test]
    fn the_wrong_secret_or_a_tampered_body_is_a_mismatch() {
        let header = sign(BODY, SECRET, 1_700_000_000);
        assert_eq!(
            verify(&header, BODY, b"another", at(1_700_000_000)),
            Err(SignatureError::Mismatch)
        );
        let tampered = br#"{"type":"post_call_transcription","data":{"x":1}}"#;
        assert_eq!(
            verify(&header, tampered, SECRET, at(1_700_000_000)),
            Err(SignatureError::Mismatch)
        );
        let other_time = header.replace("t=1700000000", "t=1700000001");
        assert_eq!(
            verify(&other_time, BODY, SECRET, at(1_700_000_000)),
            Err(SignatureError::Mismatch),
            "the timestamp is signed too"
        );
    }

    #[test]
    fn old_and_future_timestamps_are_stale() {
        let t = 1_700_000_000;
        let header = sign(BODY, SECRET, t);
        assert_eq!(verify(&header, BODY, SECRET, at(t + 30 * 60)), Ok(()));
        assert_eq!(
            verify(&header, BODY, SECRET, at(t + 30 * 60 + 1)),
            Err(SignatureError::Stale)
        );
        assert_eq!(verify(&header, BODY, SECRET, at(t - 5 * 60)), Ok(()));
        assert_eq!(
            verify(&header, BODY, SECRET, at(t - 5 * 60 - 1)),
            Err(SignatureError::Stale)
        );
    }

    #[test]
    fn malformed_headers_are_refused() {
        let good = sign(BODY, SECRET, 1_700_000_000);
        let v0 = good.split_once(",v0=").unwrap().1.to_owned();
        for bad in [
            String::new(),
            "t=1700000000".to_owned(),
            format!("v0={v0}"),
            format!("t=abc,v0={v0}"),
            format!("t=-5,v0={v0}"),
            format!("t=1700000000,v0={}", &v0[..10]),
            format!("t=1700000000,v0=zz{}", &v0[2..]),
            format!("t=1700000000;v0={v0}"),
            format!("t=1,t=1700000000,v0={v0}"),
            "x".repeat(2_000),
        ] {
            assert_eq!(
                verify(&bad, BODY, SECRET, at(1_700_000_000)),
                Err(SignatureError::Malformed),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn the_timestamp_is_signed_as_sent() {
        let header = sign_at(BODY, SECRET, "01700000000");
        assert_eq!(verify(&header, BODY, SECRET, at(1_700_000_000)), Ok(()));
        assert_eq!(check_header(&header, at(1_700_000_000)), Ok(()));
        assert_eq!(
            check_header(&header, at(1_800_000_000)),
            Err(SignatureError::Stale)
        );
    }

    #[test]
    fn any_matching_v0_of_several_is_enough() {
        let good = sign(BODY, SECRET, 1_700_000_000);
        let v0 = good.split_once(",v0=").unwrap().1;
        let header = format!("t=1700000000,v0={},v0={v0},v1=ignored", "0".repeat(64));
        assert_eq!(verify(&header, BODY, SECRET, at(1_700_000_000)), Ok(()));
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        /// Headers close to the real shape as well as anything at all, so the parser's every
        /// branch (names, digits, hex, commas, lengths) is reached.
        fn header() -> impl Strategy<Value = String> {
            prop_oneof![
                any::<String>(),
                "[tv0-9=,a-fA-F -]{0,90}",
                (any::<i64>(), "[0-9a-fA-F]{0,70}", "[a-z0-9]{0,3}=[^,]{0,8}")
                    .prop_map(|(t, v0, extra)| format!("t={t},v0={v0},{extra}")),
            ]
        }

        /// A signing time, and a receiving time within the accepted window around it.
        fn times() -> impl Strategy<Value = (i64, DateTime<Utc>)> {
            (
                0i64..=4_102_444_800,
                -MAX_CLOCK_AHEAD.num_seconds()..=MAX_SIGNATURE_AGE.num_seconds(),
            )
                .prop_map(|(t, late)| (t, at(t + late)))
        }

        proptest! {
            #[test]
            fn arbitrary_headers_never_panic(
                header in header(),
                body in prop::collection::vec(any::<u8>(), 0..64),
                received in any::<i64>(),
            ) {
                let received = DateTime::from_timestamp(received % 8_000_000_000, 0).unwrap();
                let checked = check_header(&header, received);
                let verified = verify(&header, &body, SECRET, received);
                // Verifying adds only the MAC comparison to what the header check says.
                match checked {
                    Ok(()) => prop_assert!(matches!(verified, Ok(()) | Err(SignatureError::Mismatch))),
                    Err(e) => prop_assert_eq!(verified, Err(e)),
                }
            }

            #[test]
            fn a_signed_body_always_verifies(
                body in prop::collection::vec(any::<u8>(), 0..256),
                secret in prop::collection::vec(any::<u8>(), 0..80),
                (t, received) in times(),
            ) {
                let header = sign(&body, &secret, t);
                prop_assert_eq!(check_header(&header, received), Ok(()));
                prop_assert_eq!(verify(&header, &body, &secret, received), Ok(()));
            }

            #[test]
            fn any_single_byte_changed_in_the_body_fails(
                body in prop::collection::vec(any::<u8>(), 1..256),
                index in any::<prop::sample::Index>(),
                flip in 1u8..=255,
                (t, received) in times(),
            ) {
                let header = sign(&body, SECRET, t);
                let mut tampered = body.clone();
                tampered[index.index(body.len())] ^= flip;
                prop_assert_eq!(
                    verify(&header, &tampered, SECRET, received),
                    Err(SignatureError::Mismatch)
                );
            }

            #[test]
            fn any_single_byte_changed_in_the_mac_fails(
                body in prop::collection::vec(any::<u8>(), 0..256),
                index in 0usize..32,
                flip in 1u8..=255,
                (t, received) in times(),
            ) {
                let header = sign(&body, SECRET, t);
                let (prefix, v0) = header.split_once(",v0=").unwrap();
                let mut mac = hex::decode(v0).unwrap();
                mac[index] ^= flip;
                let tampered = format!("{prefix},v0={}", hex::encode(mac));
                prop_assert_eq!(
                    verify(&tampered, &body, SECRET, received),
                    Err(SignatureError::Mismatch)
                );
            }
        }
    }
}
