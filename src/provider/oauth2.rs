//! OAuth2 client credentials (RFC 6749 §4.4) for a metric's `authentication.oauth2`, as Go's
//! `clientcredentials` (which Argo uses) does it: the client authenticates with HTTP basic auth
//! and, if the server refuses that, with `client_id`/`client_secret` in the form.
//!
//! The token endpoint's answer is never quoted: it may carry credentials. An error names the
//! status and, when the server sent one, its RFC 6749 `error` code.

use serde::Deserialize;

use super::{MAX_RESPONSE_BYTES, ProviderError, describe, read_limited};
use crate::api::OAuth2;

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
}

#[derive(Deserialize)]
struct ErrorResponse {
    error: String,
}

/// An access token for `config`, fetched with `http` (which carries no credentials of its own).
pub async fn client_credentials(
    http: &reqwest::Client,
    config: &OAuth2,
) -> Result<String, ProviderError> {
    let scope = config.scopes.as_deref().unwrap_or_default().join(" ");
    let mut form = vec![("grant_type", "client_credentials")];
    if !scope.is_empty() {
        form.push(("scope", scope.as_str()));
    }
    let fail = |why: String| {
        ProviderError::Query(format!(
            "oauth2: token request to {} failed: {why}",
            config.token_url
        ))
    };
    let send = |in_form: bool| {
        let mut fields = form.clone();
        let request = http.post(&config.token_url);
        let request = if in_form {
            fields.push(("client_id", config.client_id.as_str()));
            fields.push(("client_secret", config.client_secret.as_str()));
            request
        } else {
            // RFC 6749 §2.3.1: both are form-urlencoded before they are joined.
            request.basic_auth(
                form_encode(&config.client_id),
                Some(form_encode(&config.client_secret)),
            )
        };
        request
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&fields)
            .send()
    };
    let mut response = send(false)
        .await
        .map_err(|e| fail(describe(&e.without_url())))?;
    if matches!(response.status().as_u16(), 400 | 401) {
        response = send(true)
            .await
            .map_err(|e| fail(describe(&e.without_url())))?;
    }
    let status = response.status();
    let body = read_limited(response, MAX_RESPONSE_BYTES)
        .await
        .map_err(|e| fail(e.to_string()))?;
    if !status.is_success() {
        let code = serde_json::from_slice::<ErrorResponse>(&body)
            .ok()
            .map(|e| e.error)
            .filter(|c| {
                !c.is_empty()
                    && c.len() <= 64
                    && c.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
            });
        return Err(fail(match code {
            Some(code) => format!("{status} ({code})"),
            None => status.to_string(),
        }));
    }
    let token = serde_json::from_slice::<TokenResponse>(&body)
        .map_err(|_| fail("the answer holds no access_token (it is not shown)".into()))?
        .access_token;
    if token.is_empty()
        || reqwest::header::HeaderValue::from_str(&format!("Bearer {token}")).is_err()
    {
        return Err(fail(
            "the access_token cannot be sent in a header (it is not shown)".into(),
        ));
    }
    Ok(token)
}

/// `application/x-www-form-urlencoded` of one value.
fn form_encode(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}
