//! Who called a function, as the function sees it: `x-wok-*` request
//! headers that the gateway sets after removing every `x-wok-*` header the
//! client sent, so a function can trust them. Native functions read the
//! headers; guests read the same through `wok:auth` (the runtime parses
//! them back with [`CallerIdentity::from_headers`]). An asynchronous
//! invocation keeps the headers of the request that queued it.
use http::{HeaderMap, HeaderName, HeaderValue};

/// `none`, `public-key`, `service-key`, `admin`, `function` or `user`.
pub const AUTH_HEADER: &str = "x-wok-auth";
/// A signed-in app user's id.
pub const USER_ID_HEADER: &str = "x-wok-user-id";
/// The app user's session.
pub const SESSION_ID_HEADER: &str = "x-wok-session-id";
/// The app user's verified token claims, as JSON.
pub const CLAIMS_HEADER: &str = "x-wok-claims";
/// The app user's assurance level: `aal1` or `aal2`.
pub const AAL_HEADER: &str = "x-wok-aal";
/// The id of the key (or function credentials) that called.
pub const KEY_ID_HEADER: &str = "x-wok-key-id";

/// How a caller proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthKind {
    /// No credential (or none of wok's).
    #[default]
    None,
    PublicKey,
    ServiceKey,
    Admin,
    /// A native function's own credentials.
    Function,
    /// A signed-in app user.
    User,
}

impl AuthKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthKind::None => "none",
            AuthKind::PublicKey => "public-key",
            AuthKind::ServiceKey => "service-key",
            AuthKind::Admin => "admin",
            AuthKind::Function => "function",
            AuthKind::User => "user",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            AuthKind::None,
            AuthKind::PublicKey,
            AuthKind::ServiceKey,
            AuthKind::Admin,
            AuthKind::Function,
            AuthKind::User,
        ]
        .into_iter()
        .find(|kind| kind.as_str() == text)
    }
}

/// The verified caller of an invocation.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CallerIdentity {
    pub auth: AuthKind,
    pub user_id: Option<String>,
    pub session_id: Option<String>,
    /// The token's claims, as JSON.
    pub claims: Option<String>,
    /// 1 or 2, for a user.
    pub aal: Option<u8>,
    pub key_id: Option<String>,
}

impl CallerIdentity {
    /// Removes every `x-wok-*` header (whoever set it) and sets this
    /// identity's.
    pub fn set_on(&self, headers: &mut HeaderMap) {
        strip_wok_headers(headers);
        let mut set = |name: &'static str, value: &str| {
            if let Ok(value) = HeaderValue::from_str(value) {
                headers.insert(HeaderName::from_static(name), value);
            }
        };
        set(AUTH_HEADER, self.auth.as_str());
        if let Some(id) = &self.user_id {
            set(USER_ID_HEADER, id);
        }
        if let Some(id) = &self.session_id {
            set(SESSION_ID_HEADER, id);
        }
        if let Some(aal) = self.aal {
            set(AAL_HEADER, &format!("aal{aal}"));
        }
        if let Some(id) = &self.key_id {
            set(KEY_ID_HEADER, id);
        }
        // Claims are JSON, which may hold any character: sent as bytes
        // (a header value may not hold control characters, and JSON
        // escapes those).
        if let Some(claims) = &self.claims
            && let Ok(value) = HeaderValue::from_bytes(claims.as_bytes())
        {
            headers.insert(HeaderName::from_static(CLAIMS_HEADER), value);
        }
    }

    /// Who the writes of this caller's invocation are for, as change
    /// events name it.
    pub fn actor(&self) -> domain::Actor {
        domain::Actor {
            kind: self.auth.as_str().to_owned(),
            id: self.user_id.clone().or_else(|| self.key_id.clone()),
        }
    }

    /// The identity the gateway set on a request (none if it set none).
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let text = |name: &str| {
            headers
                .get(name)
                .and_then(|value| std::str::from_utf8(value.as_bytes()).ok())
                .map(str::to_owned)
        };
        Self {
            auth: text(AUTH_HEADER)
                .and_then(|kind| AuthKind::parse(&kind))
                .unwrap_or_default(),
            user_id: text(USER_ID_HEADER),
            session_id: text(SESSION_ID_HEADER),
            claims: text(CLAIMS_HEADER),
            aal: text(AAL_HEADER).and_then(|aal| aal.strip_prefix("aal")?.parse().ok()),
            key_id: text(KEY_ID_HEADER),
        }
    }
}

/// Removes every `x-wok-*` header.
pub fn strip_wok_headers(headers: &mut HeaderMap) {
    let names: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().starts_with("x-wok-"))
        .cloned()
        .collect();
    for name in names {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_identity_replaces_what_a_client_sent_and_reads_back() {
        let mut headers = HeaderMap::new();
        headers.insert("x-wok-auth", HeaderValue::from_static("admin"));
        headers.append("x-wok-user-id", HeaderValue::from_static("forged"));
        headers.append("X-Wok-Anything", HeaderValue::from_static("forged"));
        headers.insert("x-other", HeaderValue::from_static("kept"));
        let identity = CallerIdentity {
            auth: AuthKind::User,
            user_id: Some("u1".to_owned()),
            session_id: Some("s1".to_owned()),
            claims: Some(r#"{"sub":"u1","name":"Zoë"}"#.to_owned()),
            aal: Some(2),
            key_id: None,
        };
        identity.set_on(&mut headers);
        assert_eq!(headers.get_all("x-wok-user-id").iter().count(), 1);
        assert!(headers.get("x-wok-anything").is_none());
        assert_eq!(headers.get("x-other").unwrap(), "kept");
        assert_eq!(CallerIdentity::from_headers(&headers), identity);
        CallerIdentity::default().set_on(&mut headers);
        assert_eq!(
            CallerIdentity::from_headers(&headers),
            CallerIdentity::default()
        );
        assert_eq!(headers.get("x-wok-auth").unwrap(), "none");
    }
}
