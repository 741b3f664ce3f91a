//! The `Authorization: Bearer <token>` header.

use actix_web::HttpRequest;
use actix_web::http::header::AUTHORIZATION;
use relay_domain::ToolToken;
use secrecy::SecretString;

/// Longest token we bother hashing; ours are 43 characters.
const MAX_TOKEN_LEN: usize = 512;

/// The presented token, if the header is a well-formed Bearer credential. The scheme is
/// case-insensitive (RFC 9110); anything else (missing, another scheme, empty) is `None`.
pub(crate) fn bearer_token(req: &HttpRequest) -> Option<ToolToken> {
    let value = req.headers().get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = token.trim();
    if token.len() > MAX_TOKEN_LEN {
        return None;
    }
    ToolToken::from_presented(SecretString::from(token.to_owned()))
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    fn with(value: &str) -> Option<ToolToken> {
        bearer_token(
            &TestRequest::default()
                .insert_header((AUTHORIZATION, value))
                .to_http_request(),
        )
    }

    #[test]
    fn scheme_is_case_insensitive() {
        for v in ["Bearer abc", "bearer abc", "BEARER abc", "  Bearer   abc  "] {
            assert_eq!(
                with(v).map(|t| t.expose().to_owned()).as_deref(),
                Some("abc"),
                "{v}"
            );
        }
    }

    #[test]
    fn other_schemes_and_empty_tokens_are_refused() {
        for v in [
            "Basic abc",
            "Bearer",
            "Bearer ",
            "Bearer    ",
            "abc",
            "Token abc",
            "",
        ] {
            assert!(with(v).is_none(), "{v:?}");
        }
        assert!(bearer_token(&TestRequest::default().to_http_request()).is_none());
        assert!(with(&format!("Bearer {}", "a".repeat(600))).is_none());
    }

    mod properties {
        use actix_web::http::header::HeaderValue;
        use proptest::prelude::*;

        use super::*;

        fn header() -> impl Strategy<Value = Vec<u8>> {
            prop_oneof![
                prop::collection::vec(any::<u8>(), 0..80),
                "[ \t]*(Bearer|bearer|BEARER|Basic|Bear)?[ \t]{0,3}[ -~]{0,20}[ \t]*"
                    .prop_map(String::into_bytes),
                (500usize..520).prop_map(|n| format!("Bearer {}", "x".repeat(n)).into_bytes()),
            ]
        }

        proptest! {
            // Whatever the header holds, a token or nothing (the routes' 401), never a panic;
            // a token is what follows the scheme, trimmed, not empty and not over the limit.
            #[test]
            fn any_header_gives_a_token_or_none(bytes in header()) {
                let Ok(value) = HeaderValue::from_bytes(&bytes) else {
                    // Not a header value at all: the HTTP parser refuses it before any route.
                    return Ok(());
                };
                let req = TestRequest::default().insert_header((AUTHORIZATION, value)).to_http_request();
                let Some(token) = bearer_token(&req) else {
                    return Ok(());
                };
                let text = std::str::from_utf8(&bytes).unwrap().trim();
                let (scheme, rest) = text.split_once(' ').unwrap();
                prop_assert!(scheme.eq_ignore_ascii_case("bearer"));
                prop_assert_eq!(token.expose(), rest.trim());
                prop_assert!(!token.expose().is_empty() && token.expose().len() <= MAX_TOKEN_LEN);
            }
        }
    }
}
