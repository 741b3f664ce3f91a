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
}
