//! Signing in to the console: an API key becomes a session.
//!
//! The key is typed once; the browser keeps only the session's random token, in an `HttpOnly`,
//! `SameSite=Strict` cookie (`Secure` when the request came over TLS, as a TLS proxy says with
//! `X-Forwarded-Proto: https`), limited to `/console`. Postgres keeps the token's SHA-256, the
//! key it acts as and the token every form of the session must carry (CSRF); the session ends
//! after `api.console_session_hours`, at sign-out, or when its key is revoked or expires. The
//! sign-in form itself carries a token matched against a cookie of its own, so that no other
//! site can sign a browser in with the other site's key.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::Extension;
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;

use super::form::Fields;
use super::page::{self, ConsoleError};
use crate::auth::{self, Principal, Role};
use crate::{Api, ApiError};

const SESSION_COOKIE: &str = "vigil_session";
const SIGN_IN_COOKIE: &str = "vigil_sign_in";

/// A signed-in caller: the key the session acts as, and the token its forms carry.
#[derive(Debug, Clone)]
pub struct Signed {
    pub principal: Arc<Principal>,
    pub csrf: String,
}

impl FromRequestParts<Api> for Signed {
    type Rejection = ConsoleError;

    async fn from_request_parts(parts: &mut Parts, api: &Api) -> Result<Self, ConsoleError> {
        let token = cookie(&parts.headers, SESSION_COOKIE).ok_or(ConsoleError::SignIn)?;
        let (principal, csrf) = api
            .keys
            .by_session(&auth::hash(token))
            .await?
            .ok_or(ConsoleError::SignIn)?;
        api.keys.check_rate(&principal)?;
        Ok(Self { principal, csrf })
    }
}

impl Signed {
    /// Refuses a caller whose role is not `allowed`.
    pub fn require(&self, allowed: &[Role]) -> Result<(), ConsoleError> {
        if allowed.contains(&self.principal.role) {
            return Ok(());
        }
        Err(ApiError::Forbidden(self.principal.role.as_str()).into())
    }

    /// Refuses `form` unless a caller of an `allowed` role sent it from this session's pages:
    /// every form that changes something passes here, so none checks its role without its
    /// token.
    pub fn submitted(&self, allowed: &[Role], form: &Fields) -> Result<(), ConsoleError> {
        self.require(allowed)?;
        self.check(form)
    }

    /// Refuses a form that does not carry this session's token.
    fn check(&self, form: &Fields) -> Result<(), ConsoleError> {
        if form.get("csrf").is_some_and(|t| same(t, &self.csrf)) {
            return Ok(());
        }
        Err(ConsoleError::Csrf)
    }
}

/// Compares the hashes, so that the time taken says nothing of where two tokens differ.
fn same(a: &str, b: &str) -> bool {
    auth::hash(a) == auth::hash(b)
}

/// The value of cookie `name` in `headers`.
fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, value)| value)
}

/// A `Set-Cookie` for `name`, kept `max_age` seconds (0: removed).
fn set_cookie(
    headers: &HeaderMap,
    name: &str,
    value: &str,
    path: &str,
    max_age: u64,
) -> HeaderValue {
    let secure = headers
        .get("x-forwarded-proto")
        .is_some_and(|proto| proto.as_bytes().eq_ignore_ascii_case(b"https"));
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}"
    ))
    .expect("tokens are hex digits")
}

/// The sign-in page, with a new token for its form.
pub async fn sign_in_page(headers: HeaderMap) -> Response {
    sign_in_form(&headers, StatusCode::OK, None)
}

fn sign_in_form(headers: &HeaderMap, status: StatusCode, problem: Option<&str>) -> Response {
    let token = auth::random_hex();
    let body = html! {
        section.sign-in {
            h1 { "Sign in" }
            p { "Paste an investigator or admin API key (" code { "vigil keys create" } ")." }
            @if let Some(problem) = problem { p.problem role="alert" { (problem) } }
            form method="post" action="/console/sign-in" {
                input type="hidden" name="csrf" value=(token);
                label for="key" { "API key" }
                input #key type="password" name="key" autocomplete="off" required autofocus;
                button type="submit" { "Sign in" }
            }
        }
    };
    let mut response = (status, page::shell("Sign in", None, &body)).into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        set_cookie(headers, SIGN_IN_COOKIE, &token, "/console/sign-in", 3600),
    );
    response
}

/// Signs in with the key posted: a new session, then the queue.
pub async fn sign_in(
    State(api): State<Api>,
    connect: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    form: Fields,
) -> Result<Response, ConsoleError> {
    let expected = cookie(&headers, SIGN_IN_COOKIE);
    if !form
        .get("csrf")
        .zip(expected)
        .is_some_and(|(sent, expected)| same(sent, expected))
    {
        return Ok(sign_in_form(
            &headers,
            StatusCode::FORBIDDEN,
            Some("The sign-in form expired: sign in again."),
        ));
    }
    let client: Option<IpAddr> = connect.map(|Extension(ConnectInfo(address))| address.ip());
    let key = form.get("key").unwrap_or_default();
    let principal = match api.keys.authenticate_secret(key, client).await {
        Ok(principal) => principal,
        Err(ApiError::Unauthorized) => {
            return Ok(sign_in_form(
                &headers,
                StatusCode::UNAUTHORIZED,
                Some("That is not a live API key."),
            ));
        }
        Err(e) => return Err(e.into()),
    };
    if principal.role == Role::Ingest {
        return Ok(sign_in_form(
            &headers,
            StatusCode::FORBIDDEN,
            Some("An ingest key has no console pages: sign in with an investigator or admin key."),
        ));
    }
    let token = auth::random_hex();
    let hours = api.config.console_session_hours;
    sqlx::query("DELETE FROM console_sessions WHERE expires_at < now()")
        .execute(&api.pool)
        .await
        .map_err(ApiError::from)?;
    sqlx::query(
        "INSERT INTO console_sessions (token_hash, key_id, csrf, expires_at)
         VALUES ($1, $2, $3, now() + make_interval(hours => $4))",
    )
    .bind(auth::hash(&token).as_slice())
    .bind(principal.key_id)
    .bind(auth::random_hex())
    .bind(i32::try_from(hours).unwrap_or(i32::MAX))
    .execute(&api.pool)
    .await
    .map_err(ApiError::from)?;
    tracing::info!(actor = %principal.actor(), ?client, "console: signed in");
    let mut response = Redirect::to("/console/queue").into_response();
    let cookies = response.headers_mut();
    let max_age = u64::from(hours) * 3600;
    cookies.append(
        header::SET_COOKIE,
        set_cookie(&headers, SESSION_COOKIE, &token, "/console", max_age),
    );
    cookies.append(
        header::SET_COOKIE,
        set_cookie(&headers, SIGN_IN_COOKIE, "", "/console/sign-in", 0),
    );
    Ok(response)
}

/// Ends the session.
pub async fn sign_out(
    State(api): State<Api>,
    signed: Signed,
    headers: HeaderMap,
    form: Fields,
) -> Result<Response, ConsoleError> {
    signed.check(&form)?;
    if let Some(token) = cookie(&headers, SESSION_COOKIE) {
        sqlx::query("DELETE FROM console_sessions WHERE token_hash = $1")
            .bind(auth::hash(token).as_slice())
            .execute(&api.pool)
            .await
            .map_err(ApiError::from)?;
    }
    let mut response = Redirect::to("/console/sign-in").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        set_cookie(&headers, SESSION_COOKIE, "", "/console", 0),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cookie_is_found_among_others_and_headers() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; vigil_session=abc"),
        );
        headers.append(header::COOKIE, HeaderValue::from_static("b=2"));
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&headers, "b"), Some("2"));
        assert_eq!(cookie(&headers, "vigil"), None);
    }

    #[test]
    fn cookies_are_secure_behind_tls() {
        let plain = set_cookie(&HeaderMap::new(), "n", "v", "/console", 60);
        assert_eq!(
            plain,
            "n=v; Path=/console; Max-Age=60; HttpOnly; SameSite=Strict"
        );
        let mut proxied = HeaderMap::new();
        proxied.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        let secure = set_cookie(&proxied, "n", "v", "/console", 60);
        assert!(secure.to_str().unwrap().ends_with("; Secure"));
    }
}
