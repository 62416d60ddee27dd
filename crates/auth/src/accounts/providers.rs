//! Sign-in with an external OpenID Connect provider: the authorization
//! code flow with PKCE and a nonce toward the provider, and GoTrue's PKCE
//! (or implicit) flow toward the app's client.
//!
//! `start_provider_sign_in` (`GET /authorize`) checks the client's
//! `redirect_to` against the project's allow-list first (an unlisted one is
//! refused, never redirected to), discovers the provider (its metadata and
//! JWKS cached for [`DISCOVERY_TTL_MS`]), and stores a single-use
//! [`PendingKind::ProviderState`] keyed by the SHA-256 of a fresh `state`,
//! holding the nonce and the PKCE verifier toward the provider (sealed),
//! for [`PROVIDER_FLOW_LIFETIME_MS`]. `finish_provider_sign_in`
//! (`GET /callback`) takes that state once, trades the code with the
//! verifier, and has `openidconnect` verify the ID token: its signature by
//! the provider's JWKS (asymmetric algorithms only), issuer, audience (the
//! client id, no other), nonce and expiry against wok's clock. One user per
//! issuer and subject: a known pair signs its user in; a new one makes a
//! user, unless the provider's verified email is some user's already, which
//! is refused ([`AccountError::AccountExists`]): an email never merges two
//! accounts silently. An unverified email is kept on the identity only.
//! With a client `code_challenge` the client gets a single-use
//! [`PendingKind::AuthCode`] (its SHA-256 kept, for
//! [`AUTH_CODE_LIFETIME_MS`]) that `exchange_auth_code`
//! (`POST /token?grant_type=pkce`) trades for a session with the matching
//! verifier; without one, a session at once (the implicit flow). A mailed
//! link followed by a client that asked for it with a challenge gets the
//! same kind of code (`email.rs`).
//!
//! Linking is explicit: with the project's `manual_linking`, a signed-in
//! user (at `aal2` if it has a verified factor) starts the same flow with
//! `start_provider_link`, and the callback links the identity to it,
//! unless the pair is another user's; `unlink_identity` never removes a
//! user's only way of signing in.
//!
//! Every call to a provider goes through [`IdpClient`]: https only, to
//! public addresses only (a name that resolves to a loopback, private or
//! link-local address, a cloud's metadata service among them, is refused;
//! the server's explicit flag allows http and such addresses, for tests),
//! no redirects followed, a timeout and a size bound on each answer.
use super::*;
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreIdToken, CoreIdTokenClaims, CoreIdTokenVerifier,
    CoreJwsSigningAlgorithm, CoreProviderMetadata,
};
use openidconnect::{
    AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret, CsrfToken, IssuerUrl,
    Nonce, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope,
    SignatureVerificationError, TokenResponse,
};
use store::accounts::{LinkedIdentity, PendingFlow, PendingKind};

/// How long a sign-in sent to a provider waits for its callback.
pub const PROVIDER_FLOW_LIFETIME_MS: i64 = 10 * 60 * 1000;
/// How long an authorization code given to a client waits to be traded.
pub const AUTH_CODE_LIFETIME_MS: i64 = 5 * 60 * 1000;
/// How long a provider's discovered metadata and JWKS are used.
pub const DISCOVERY_TTL_MS: i64 = 10 * 60 * 1000;
/// A provider's keys are fetched again for an ID token signed by a key
/// they lack (a rotation), if they are older than this.
const KEYS_REFETCH_AFTER_MS: i64 = 60_000;
/// Providers whose discovery is kept at once (beyond: forgotten).
const DISCOVERY_CACHE: usize = 256;
/// Longest a provider takes to answer one request.
pub const IDP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Largest answer read from a provider.
pub const IDP_MAX_BYTES: usize = 1 << 20;
/// Most providers of a project.
pub const MAX_PROVIDERS: usize = 20;
/// Names a provider may not take: GoTrue's own ways of signing in.
const RESERVED_PROVIDER_NAMES: [&str; 4] = ["email", "phone", "anonymous", "sso"];

/// One OpenID Connect provider of a project, as stored: its client secret
/// sealed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSettings {
    /// What clients name it by (`signInWithOAuth({ provider })`):
    /// lowercase letters, digits, `-` and `_`.
    pub name: String,
    /// Its issuer URL (discovery is at `ISSUER/.well-known/openid-configuration`).
    pub issuer: String,
    pub client_id: String,
    /// Given in a request only: sealed before it is stored, never shown.
    /// Left out, the secret set before for this name stays; `""` removes it.
    #[serde(default, skip_serializing)]
    pub client_secret: Option<String>,
    /// The secret, sealed under a key derived from the server key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed_client_secret: Option<String>,
    /// Whether a secret is set (shown; ignored in a request).
    #[serde(default)]
    pub client_secret_set: bool,
    /// Scopes asked for beside `openid`.
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
}

fn default_scopes() -> Vec<String> {
    vec!["email".to_owned(), "profile".to_owned()]
}

impl ProviderSettings {
    /// Why this provider cannot be, if it cannot (whether its issuer may
    /// be plain http is the server's to say).
    pub(super) fn validate(&self) -> Result<(), String> {
        let name = &self.name;
        if name.is_empty()
            || name.len() > 32
            || !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        {
            return Err(format!(
                "providers: name {name:?} must be 1 to 32 lowercase letters, digits, `-` or `_`"
            ));
        }
        if RESERVED_PROVIDER_NAMES.contains(&name.as_str()) {
            return Err(format!("providers: name {name:?} is reserved"));
        }
        let issuer = openidconnect::url::Url::parse(&self.issuer).map_err(|error| {
            format!(
                "providers: {name}: issuer {:?} is not a URL: {error}",
                self.issuer
            )
        })?;
        if !matches!(issuer.scheme(), "https" | "http")
            || issuer.host_str().is_none()
            || issuer.query().is_some()
            || issuer.fragment().is_some()
            || !issuer.username().is_empty()
            || self.issuer.len() > 2048
        {
            return Err(format!(
                "providers: {name}: issuer {:?} must be an https URL with no query, fragment or user",
                self.issuer
            ));
        }
        if self.client_id.trim().is_empty()
            || self.client_id.len() > 512
            || self.client_id.chars().any(char::is_control)
        {
            return Err(format!(
                "providers: {name}: client_id must be 1 to 512 characters"
            ));
        }
        if let Some(secret) = &self.client_secret
            && secret.len() > 1024
        {
            return Err(format!(
                "providers: {name}: client_secret must be at most 1024 bytes"
            ));
        }
        if self.scopes.len() > 20
            || self.scopes.iter().any(|scope| {
                scope.is_empty()
                    || scope.len() > 128
                    || scope
                        .chars()
                        .any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == '\\')
            })
        {
            return Err(format!(
                "providers: {name}: scopes must be at most 20 words without spaces"
            ));
        }
        Ok(())
    }
}

/// What a redirect (a provider's callback, a mailed link followed) gives
/// the client.
#[derive(Debug)]
pub enum RedirectOutcome {
    /// An authorization code for `POST /token?grant_type=pkce`.
    Code(String),
    /// A session at once (the client sent no `code_challenge`).
    Session(Box<Issued>),
}

/// A client's PKCE challenge, if it sent one: S256 only, 43 to 128
/// base64url characters.
pub fn client_code_challenge(
    challenge: Option<&str>,
    method: Option<&str>,
) -> Result<Option<String>, AccountError> {
    let Some(challenge) = challenge.filter(|challenge| !challenge.is_empty()) else {
        return Ok(None);
    };
    let method = method.unwrap_or("plain");
    if !method.eq_ignore_ascii_case("s256") {
        return Err(AccountError::Invalid(format!(
            "code_challenge_method {method:?} is not supported: s256"
        )));
    }
    if !pkce_shaped(challenge) {
        return Err(AccountError::Invalid(
            "code_challenge must be 43 to 128 base64url characters".to_owned(),
        ));
    }
    Ok(Some(challenge.to_owned()))
}

/// Where a provider's callback sends the browser, and with what.
#[derive(Debug)]
pub struct ProviderLanding {
    /// The client's allowed `redirect_to` (or the site URL).
    pub redirect_to: String,
    /// Whether the client asked for the PKCE flow (its answers go in the
    /// query; the implicit flow's in the fragment).
    pub pkce: bool,
    pub outcome: Result<RedirectOutcome, AccountError>,
}

/// What a provider flow keeps between `/authorize` and `/callback`.
#[derive(Debug, Serialize, Deserialize)]
struct StateData {
    provider: String,
    issuer: String,
    nonce: String,
    /// The PKCE verifier toward the provider, sealed.
    sealed_verifier: String,
    redirect_to: String,
    /// The client's own PKCE challenge (S256), if it asked for a code.
    code_challenge: Option<String>,
    /// The signed-in user that asked to link the identity to itself.
    #[serde(default)]
    link_to: Option<String>,
    /// wok's callback, the `redirect_uri` sent to the provider.
    callback: String,
}

/// What an authorization code keeps until it is traded.
#[derive(Debug, Serialize, Deserialize)]
struct CodeData {
    user_id: String,
    code_challenge: String,
    /// The provider's tokens ([`ProviderTokens`] as JSON), sealed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sealed_provider_tokens: Option<String>,
    /// How the user signed in (the session's `amr`): `oauth`,
    /// `magiclink`, `recovery`...
    method: String,
}

/// The HTTP client of calls to identity providers.
pub(super) struct IdpClient {
    /// Resolves names to public addresses only.
    client: reqwest::Client,
    /// Resolves names to any address (with `allow_http`).
    any_address: reqwest::Client,
    /// Plain http and non-public addresses allowed (tests on loopback).
    allow_http: bool,
}

/// Resolves a provider's name to its public addresses only, so that a
/// project's settings cannot make the server call what only it can
/// reach.
struct PublicAddresses;

impl reqwest::dns::Resolve for PublicAddresses {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addresses: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|address| is_public(address.ip()))
                .collect();
            if addresses.is_empty() {
                return Err(format!("{host} resolves to no public address").into());
            }
            Ok(Box::new(addresses.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Whether `address` is on the public internet: not loopback, private,
/// link-local (169.254.169.254, the metadata services), shared (CGNAT),
/// unspecified, multicast or for documentation.
fn is_public(address: std::net::IpAddr) -> bool {
    match address {
        std::net::IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b)))
        }
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public(std::net::IpAddr::V4(v4)),
            None => {
                !(v6.is_loopback()
                    || v6.is_unspecified()
                    || v6.is_multicast()
                    || v6.is_unique_local()
                    || v6.is_unicast_link_local())
            }
        },
    }
}

/// A call to a provider that failed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct IdpHttpError(String);

impl IdpClient {
    pub(super) fn new() -> Result<Self, StoreError> {
        let builder = || {
            reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(IDP_TIMEOUT)
                .connect_timeout(IDP_TIMEOUT)
        };
        let built = |built: reqwest::Result<reqwest::Client>| {
            built.map_err(|error| {
                StoreError::backend(format!("the identity providers' client: {error}"), false)
            })
        };
        Ok(Self {
            client: built(builder().dns_resolver(Arc::new(PublicAddresses)).build())?,
            any_address: built(builder().build())?,
            allow_http: false,
        })
    }

    /// One request to a provider: https only (unless allowed), no
    /// redirect followed, at most [`IDP_MAX_BYTES`] read.
    async fn fetch(
        &self,
        request: openidconnect::HttpRequest,
    ) -> Result<openidconnect::HttpResponse, IdpHttpError> {
        let (parts, body) = request.into_parts();
        let url = parts.uri.to_string();
        if !(url.starts_with("https://") || self.allow_http && url.starts_with("http://")) {
            return Err(IdpHttpError(format!(
                "{url} is not an https URL (the server allows only https identity providers)"
            )));
        }
        // An address given as such is never resolved: checked here.
        let literal = parts
            .uri
            .host()
            .map(|host| host.trim_start_matches('[').trim_end_matches(']'))
            .and_then(|host| host.parse::<std::net::IpAddr>().ok());
        if !self.allow_http
            && let Some(address) = literal
            && !is_public(address)
        {
            return Err(IdpHttpError(format!(
                "{url} is not a public address (the server calls only public identity providers)"
            )));
        }
        let client = if self.allow_http {
            &self.any_address
        } else {
            &self.client
        };
        let mut response = client
            .request(parts.method, &url)
            .headers(parts.headers)
            .body(body)
            .send()
            .await
            .map_err(|error| IdpHttpError(format!("{url}: {}", error_chain(&error))))?;
        let status = response.status();
        let headers = response.headers().clone();
        let mut bytes = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|error| IdpHttpError(format!("{url}: {}", error_chain(&error))))?
        {
            if bytes.len() + chunk.len() > IDP_MAX_BYTES {
                return Err(IdpHttpError(format!(
                    "{url} answered more than {IDP_MAX_BYTES} bytes"
                )));
            }
            bytes.extend_from_slice(&chunk);
        }
        let mut answer = openidconnect::http::Response::new(bytes);
        *answer.status_mut() = status;
        *answer.headers_mut() = headers;
        Ok(answer)
    }
}

/// The future of one call: boxed and `Send`, so that the request
/// handlers that await it are `Send` too.
type IdpCall<'c> = std::pin::Pin<
    Box<
        dyn std::future::Future<Output = Result<openidconnect::HttpResponse, IdpHttpError>>
            + Send
            + 'c,
    >,
>;

impl<'c> openidconnect::AsyncHttpClient<'c> for IdpClient {
    type Error = IdpHttpError;
    type Future = IdpCall<'c>;

    fn call(&'c self, request: openidconnect::HttpRequest) -> Self::Future {
        Box::pin(self.fetch(request))
    }
}

/// Algorithms an ID token may be signed with: asymmetric ones only (never
/// HMAC keyed with the client secret, never `none`).
fn allowed_algorithms() -> Vec<CoreJwsSigningAlgorithm> {
    use CoreJwsSigningAlgorithm::*;
    vec![
        RsaSsaPkcs1V15Sha256,
        RsaSsaPkcs1V15Sha384,
        RsaSsaPkcs1V15Sha512,
        RsaSsaPssSha256,
        RsaSsaPssSha384,
        RsaSsaPssSha512,
        EcdsaP256Sha256,
        EcdsaP384Sha384,
        EdDsa,
    ]
}

/// 256 random bits, base64url.
fn random_token() -> String {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).expect("the OS random number generator");
    URL_SAFE_NO_PAD.encode(secret)
}

/// Whether `text` is a PKCE verifier or S256 challenge: 43 to 128
/// unreserved characters (RFC 7636).
fn pkce_shaped(text: &str) -> bool {
    (43..=128).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

/// Equality that takes the same time wherever the bytes differ.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

/// What a project's sealed provider secret is bound to.
pub(super) fn provider_sealing_context(project: &ProjectId, name: &str) -> Vec<u8> {
    format!("wok-provider-secret:{project}:{name}").into_bytes()
}

fn flow_sealing_context(project: &ProjectId) -> Vec<u8> {
    format!("wok-provider-flow:{project}").into_bytes()
}

fn code_sealing_context(project: &ProjectId) -> Vec<u8> {
    format!("wok-auth-code:{project}").into_bytes()
}

impl Accounts {
    /// Lets providers' issuers (and endpoints) be plain http, and at
    /// loopback or private addresses: for tests on loopback, never in
    /// production.
    pub fn allow_http_issuers(mut self, allow: bool) -> Self {
        self.idp.allow_http = allow;
        self
    }

    /// Why `providers` cannot be the project's, beyond their own shape.
    pub(super) fn check_providers(&self, providers: &[ProviderSettings]) -> Result<(), String> {
        if providers.len() > MAX_PROVIDERS {
            return Err(format!(
                "providers may hold at most {MAX_PROVIDERS} providers"
            ));
        }
        let mut names = std::collections::HashSet::new();
        for provider in providers {
            provider.validate()?;
            if !names.insert(provider.name.as_str()) {
                return Err(format!(
                    "providers: name {:?} is given twice",
                    provider.name
                ));
            }
            if provider.issuer.starts_with("http://") && !self.idp.allow_http {
                return Err(format!(
                    "providers: {}: issuer {:?} must be https (the server allows http issuers only with --allow-http-issuers)",
                    provider.name, provider.issuer
                ));
            }
        }
        Ok(())
    }

    /// Seals the secrets given in `providers`; a provider given none keeps
    /// the one its name had.
    pub(super) fn seal_provider_secrets(
        &self,
        project: &ProjectId,
        providers: &mut [ProviderSettings],
    ) {
        let before = self.settings(project).providers;
        for provider in providers {
            let kept = before
                .iter()
                .find(|old| old.name == provider.name)
                .and_then(|old| old.sealed_client_secret.clone());
            let context = provider_sealing_context(project, &provider.name);
            provider.sealed_client_secret = match provider.client_secret.take() {
                Some(secret) if secret.is_empty() => None,
                Some(secret) => Some(self.seal_secret(&context, secret.as_bytes())),
                None => kept,
            };
            provider.client_secret_set = provider.sealed_client_secret.is_some();
        }
    }

    /// The provider's metadata and keys: discovered, or from the cache
    /// while younger than [`DISCOVERY_TTL_MS`].
    async fn discovered(
        &self,
        issuer: &str,
        now: UnixMillis,
    ) -> Result<Arc<CoreProviderMetadata>, AccountError> {
        if let Some((at, metadata)) = self
            .discoveries
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(issuer)
            && now - at < DISCOVERY_TTL_MS
            && *at <= now
        {
            return Ok(metadata.clone());
        }
        let issuer_url = IssuerUrl::new(issuer.to_owned())
            .map_err(|error| AccountError::Provider(format!("issuer {issuer:?}: {error}")))?;
        let metadata = CoreProviderMetadata::discover_async(issuer_url, &self.idp)
            .await
            .map_err(|error| {
                AccountError::Provider(format!("discovering {issuer}: {}", error_chain(&error)))
            })?;
        let metadata = Arc::new(metadata);
        let mut cache = self.discoveries.write().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= DISCOVERY_CACHE {
            cache.clear();
        }
        cache.insert(issuer.to_owned(), (now, metadata.clone()));
        Ok(metadata)
    }

    /// Forgets a provider's discovery if it is older than
    /// [`KEYS_REFETCH_AFTER_MS`]; whether it did.
    fn forget_discovery(&self, issuer: &str, now: UnixMillis) -> bool {
        let mut cache = self.discoveries.write().unwrap_or_else(|p| p.into_inner());
        match cache.get(issuer) {
            Some((at, _)) if now - at >= KEYS_REFETCH_AFTER_MS || *at > now => {
                cache.remove(issuer);
                true
            }
            _ => false,
        }
    }

    /// `GET /authorize?provider=`: where to send the browser (the
    /// provider's authorization endpoint), after storing the flow.
    /// `callback` is wok's `/callback` of the project as clients reach it.
    pub async fn start_provider_sign_in(
        &self,
        project: &ProjectId,
        provider: &str,
        redirect_to: Option<&str>,
        code_challenge: Option<(&str, &str)>,
        callback: &str,
        now: UnixMillis,
    ) -> Result<String, AccountError> {
        self.start_provider_flow(
            project,
            provider,
            redirect_to,
            code_challenge,
            callback,
            None,
            now,
        )
        .await
    }

    /// `GET /user/identities/authorize?provider=` (`linkIdentity`): as
    /// [`Accounts::start_provider_sign_in`], but the callback links the
    /// provider's identity to the signed-in user (if the project allows
    /// it, and from an `aal2` session if the user has a verified factor).
    pub async fn start_provider_link(
        &self,
        identity: &Identity,
        provider: &str,
        redirect_to: Option<&str>,
        code_challenge: Option<(&str, &str)>,
        callback: &str,
        now: UnixMillis,
    ) -> Result<String, AccountError> {
        self.linking_allowed(identity).await?;
        self.start_provider_flow(
            &identity.project,
            provider,
            redirect_to,
            code_challenge,
            callback,
            Some(&identity.user_id),
            now,
        )
        .await
    }

    /// Whether the signed-in user may link or unlink identities now.
    async fn linking_allowed(&self, identity: &Identity) -> Result<(), AccountError> {
        if !self.settings(&identity.project).manual_linking {
            return Err(AccountError::ManualLinkingDisabled);
        }
        let factors = self
            .store
            .factors(&identity.project, &identity.user_id)
            .await?;
        if identity.aal < 2
            && factors
                .iter()
                .any(|factor| factor.status == store::accounts::FactorStatus::Verified)
        {
            return Err(AccountError::InsufficientAal);
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn start_provider_flow(
        &self,
        project: &ProjectId,
        provider: &str,
        redirect_to: Option<&str>,
        code_challenge: Option<(&str, &str)>,
        callback: &str,
        link_to: Option<&str>,
        now: UnixMillis,
    ) -> Result<String, AccountError> {
        let settings = self.settings(project);
        let Some(provider) = settings
            .providers
            .iter()
            .find(|known| known.name == provider)
        else {
            return Err(AccountError::ProviderUnknown(provider.to_owned()));
        };
        let Some(redirect_to) = self.redirect_target(project, redirect_to)? else {
            return Err(AccountError::Invalid(
                "redirect_to is required: the project has no site_url to land on".to_owned(),
            ));
        };
        let code_challenge = client_code_challenge(
            code_challenge.map(|(challenge, _)| challenge),
            code_challenge.map(|(_, method)| method),
        )?;
        let metadata = self.discovered(&provider.issuer, now).await?;
        let client = CoreClient::from_provider_metadata(
            (*metadata).clone(),
            ClientId::new(provider.client_id.clone()),
            None,
        )
        .set_redirect_uri(
            RedirectUrl::new(callback.to_owned())
                .map_err(|error| AccountError::Provider(format!("the callback URL: {error}")))?,
        );
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (state, nonce) = (random_token(), random_token());
        let mut request = client.authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            {
                let state = state.clone();
                move || CsrfToken::new(state)
            },
            {
                let nonce = nonce.clone();
                move || Nonce::new(nonce)
            },
        );
        for scope in provider.scopes.iter().filter(|scope| *scope != "openid") {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let (url, _, _) = request.set_pkce_challenge(challenge).url();
        let data = StateData {
            provider: provider.name.clone(),
            issuer: provider.issuer.clone(),
            nonce,
            sealed_verifier: self
                .seal_secret(&flow_sealing_context(project), verifier.secret().as_bytes()),
            redirect_to,
            code_challenge,
            callback: callback.to_owned(),
            link_to: link_to.map(str::to_owned),
        };
        self.store
            .put_pending_flow(&PendingFlow {
                project: project.clone(),
                kind: PendingKind::ProviderState,
                hash: Sha256::digest(state.as_bytes()).into(),
                data: serde_json::to_value(&data).expect("flow data serializes"),
                created_at: now,
                expires_at: now + PROVIDER_FLOW_LIFETIME_MS,
            })
            .await?;
        Ok(url.to_string())
    }

    /// `GET /callback?state=&code=` (or `error=`): the provider's answer.
    /// An unknown, used or expired `state` is an error (nowhere known to
    /// land); past it, where to land and with what.
    pub async fn finish_provider_sign_in(
        &self,
        project: &ProjectId,
        state: &str,
        code: Option<&str>,
        provider_error: Option<String>,
        now: UnixMillis,
    ) -> Result<ProviderLanding, AccountError> {
        let hash: [u8; 32] = Sha256::digest(state.as_bytes()).into();
        let Some(flow) = self
            .store
            .take_pending_flow(project, PendingKind::ProviderState, &hash, now)
            .await?
        else {
            return Err(AccountError::FlowStateInvalid);
        };
        let data: StateData = serde_json::from_value(flow.data)
            .map_err(|error| StoreError::Corrupt(format!("a provider flow: {error}")))?;
        let outcome = match (provider_error, code) {
            (Some(error), _) => Err(AccountError::ProviderRefused(error)),
            (None, None) => Err(AccountError::ProviderRefused(
                "the provider's callback holds no code".to_owned(),
            )),
            (None, Some(code)) => self.sign_in_with_provider(project, &data, code, now).await,
        };
        Ok(ProviderLanding {
            redirect_to: data.redirect_to,
            pkce: data.code_challenge.is_some(),
            outcome,
        })
    }

    /// The code traded, the ID token verified, the user found or made;
    /// then a code for the client, or a session.
    async fn sign_in_with_provider(
        &self,
        project: &ProjectId,
        data: &StateData,
        code: &str,
        now: UnixMillis,
    ) -> Result<RedirectOutcome, AccountError> {
        let settings = self.settings(project);
        let Some(provider) = settings
            .providers
            .iter()
            .find(|known| known.name == data.provider && known.issuer == data.issuer)
        else {
            return Err(AccountError::ProviderUnknown(data.provider.clone()));
        };
        let secret = provider.sealed_client_secret.as_ref().and_then(|sealed| {
            self.open_secret(&provider_sealing_context(project, &provider.name), sealed)
                .and_then(|bytes| String::from_utf8(bytes).ok())
        });
        let verifier = self
            .open_secret(&flow_sealing_context(project), &data.sealed_verifier)
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or_else(|| StoreError::Corrupt("a provider flow's verifier".to_owned()))?;
        let metadata = self.discovered(&provider.issuer, now).await?;
        let client = CoreClient::from_provider_metadata(
            (*metadata).clone(),
            ClientId::new(provider.client_id.clone()),
            secret.map(ClientSecret::new),
        )
        .set_redirect_uri(
            RedirectUrl::new(data.callback.clone())
                .map_err(|error| AccountError::Provider(format!("the callback URL: {error}")))?,
        );
        let tokens = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|error| AccountError::Provider(error.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(verifier))
            .request_async(&self.idp)
            .await
            .map_err(|error| {
                AccountError::ProviderRefused(format!(
                    "the provider did not trade the code: {}",
                    error_chain(&error)
                ))
            })?;
        let provider_tokens = ProviderTokens {
            access_token: tokens.access_token().secret().clone(),
            refresh_token: tokens.refresh_token().map(|token| token.secret().clone()),
        };
        let Some(id_token) = tokens.id_token() else {
            return Err(AccountError::ProviderRefused(
                "the provider gave no ID token".to_owned(),
            ));
        };
        let nonce = Nonce::new(data.nonce.clone());
        let claims = match id_token_claims(id_token, &metadata, provider, &nonce, now) {
            // Signed by a key the cached set lacks: the provider rotated
            // its keys; fetch them again (not more than once a minute).
            Err(ClaimsVerificationError::SignatureVerification(
                SignatureVerificationError::NoMatchingKey,
            )) if self.forget_discovery(&provider.issuer, now) => {
                let fresh = self.discovered(&provider.issuer, now).await?;
                id_token_claims(id_token, &fresh, provider, &nonce, now)
            }
            other => other,
        }
        .map_err(|error| AccountError::IdTokenInvalid(error_chain(&error)))?;
        let subject = claims.subject().as_str().to_owned();
        let email = claims
            .email()
            .map(|email| email.as_str().trim().to_lowercase());
        let email_verified = claims.email_verified() == Some(true);
        let mut identity_data = serde_json::json!({
            "iss": provider.issuer,
            "sub": subject,
            "provider_id": subject,
            "email_verified": email_verified,
        });
        if let Some(email) = &email {
            identity_data["email"] = serde_json::json!(email);
        }
        if let Some(name) = claims.name().and_then(|name| name.get(None)) {
            identity_data["name"] = serde_json::json!(name.as_str());
            identity_data["full_name"] = serde_json::json!(name.as_str());
        }
        if let Some(username) = claims.preferred_username() {
            identity_data["preferred_username"] = serde_json::json!(username.as_str());
        }
        if let Some(picture) = claims.picture().and_then(|picture| picture.get(None)) {
            identity_data["picture"] = serde_json::json!(picture.as_str());
            identity_data["avatar_url"] = serde_json::json!(picture.as_str());
        }
        let user = match &data.link_to {
            Some(user_id) => {
                self.link_identity(
                    project,
                    user_id,
                    provider,
                    &subject,
                    email,
                    identity_data,
                    now,
                )
                .await?
            }
            None => {
                self.provider_user(
                    project,
                    provider,
                    &subject,
                    email,
                    email_verified,
                    identity_data,
                    &settings,
                    now,
                )
                .await?
            }
        };
        match &data.code_challenge {
            None => {
                let mut issued = self.open_session(&user, "oauth", now).await?;
                issued.provider_tokens = Some(provider_tokens);
                Ok(RedirectOutcome::Session(Box::new(issued)))
            }
            Some(challenge) => Ok(RedirectOutcome::Code(
                self.mint_auth_code(
                    project,
                    &user,
                    challenge,
                    "oauth",
                    Some(&provider_tokens),
                    now,
                )
                .await?,
            )),
        }
    }

    /// A single-use authorization code for `user`, bound to the client's
    /// PKCE `challenge`, living [`AUTH_CODE_LIFETIME_MS`]; only its
    /// SHA-256 is kept.
    pub(super) async fn mint_auth_code(
        &self,
        project: &ProjectId,
        user: &User,
        challenge: &str,
        method: &str,
        provider_tokens: Option<&ProviderTokens>,
        now: UnixMillis,
    ) -> Result<String, StoreError> {
        let code = random_token();
        let data = CodeData {
            user_id: user.id.clone(),
            code_challenge: challenge.to_owned(),
            sealed_provider_tokens: provider_tokens.map(|tokens| {
                self.seal_secret(
                    &code_sealing_context(project),
                    &serde_json::to_vec(tokens).expect("tokens serialize"),
                )
            }),
            method: method.to_owned(),
        };
        self.store
            .put_pending_flow(&PendingFlow {
                project: project.clone(),
                kind: PendingKind::AuthCode,
                hash: Sha256::digest(code.as_bytes()).into(),
                data: serde_json::to_value(&data).expect("code data serializes"),
                created_at: now,
                expires_at: now + AUTH_CODE_LIFETIME_MS,
            })
            .await?;
        Ok(code)
    }

    /// The user of an issuer and subject, signed in now: found, or made
    /// (unless its verified email is another user's).
    #[allow(clippy::too_many_arguments)]
    async fn provider_user(
        &self,
        project: &ProjectId,
        provider: &ProviderSettings,
        subject: &str,
        email: Option<String>,
        email_verified: bool,
        identity_data: serde_json::Value,
        settings: &AuthSettings,
        now: UnixMillis,
    ) -> Result<User, AccountError> {
        // Twice at most: a new identity made meanwhile by another request
        // is found the second time.
        for _ in 0..2 {
            if let Some(mut identity) = self
                .store
                .linked_identity(project, &provider.issuer, subject)
                .await?
            {
                let Some(mut user) = self.store.user(project, &identity.user_id).await? else {
                    return Err(AccountError::UserNotFound);
                };
                if user.banned_until.is_some_and(|until| until > now) {
                    return Err(AccountError::Banned);
                }
                identity.email = email.clone();
                identity.data = identity_data.clone();
                identity.updated_at = now;
                identity.last_sign_in_at = Some(now);
                self.store.update_linked_identity(&identity).await?;
                user.last_sign_in_at = Some(now);
                self.store.update_user(&user).await?;
                return Ok(user);
            }
            // Only a verified email becomes the user's; one some user has
            // already is never merged into that account.
            let user_email = email.clone().filter(|_| email_verified);
            if let Some(email) = &user_email
                && self.store.user_by_email(project, email).await?.is_some()
            {
                return Err(AccountError::AccountExists(provider.name.clone()));
            }
            if !settings.signup {
                return Err(AccountError::SignupDisabled);
            }
            let metadata = match &identity_data {
                serde_json::Value::Object(map) => map.clone(),
                _ => serde_json::Map::new(),
            };
            let user = User {
                email_confirmed_at: user_email.as_ref().map(|_| now),
                last_sign_in_at: Some(now),
                app_metadata: serde_json::json!({
                    "provider": provider.name,
                    "providers": [provider.name],
                }),
                ..new_user(project, user_email, metadata, now)
            };
            let identity = LinkedIdentity {
                project: project.clone(),
                id: uuid::Uuid::new_v4().to_string(),
                user_id: user.id.clone(),
                provider: provider.name.clone(),
                issuer: provider.issuer.clone(),
                subject: subject.to_owned(),
                email: email.clone(),
                data: identity_data.clone(),
                created_at: now,
                updated_at: now,
                last_sign_in_at: Some(now),
            };
            match self.store.create_user_with_identity(&user, &identity).await {
                Ok(true) => return Ok(user),
                Ok(false) => continue,
                Err(StoreError::EmailTaken) => {
                    return Err(AccountError::AccountExists(provider.name.clone()));
                }
                Err(error) => return Err(error.into()),
            }
        }
        Err(AccountError::Provider(
            "the identity was linked and unlinked meanwhile; try again".to_owned(),
        ))
    }

    /// Links the identity of an issuer and subject to the user that asked
    /// for it (it signs in as that user from then on), unless it is
    /// another user's; the user, signed in now.
    #[allow(clippy::too_many_arguments)]
    async fn link_identity(
        &self,
        project: &ProjectId,
        user_id: &str,
        provider: &ProviderSettings,
        subject: &str,
        email: Option<String>,
        identity_data: serde_json::Value,
        now: UnixMillis,
    ) -> Result<User, AccountError> {
        let Some(mut user) = self.store.user(project, user_id).await? else {
            return Err(AccountError::UserNotFound);
        };
        if user.banned_until.is_some_and(|until| until > now) {
            return Err(AccountError::Banned);
        }
        match self
            .store
            .linked_identity(project, &provider.issuer, subject)
            .await?
        {
            Some(mut linked) if linked.user_id == user.id => {
                linked.email = email;
                linked.data = identity_data;
                linked.updated_at = now;
                linked.last_sign_in_at = Some(now);
                self.store.update_linked_identity(&linked).await?;
            }
            Some(_) => return Err(AccountError::IdentityTaken),
            None => {
                let linked = LinkedIdentity {
                    project: project.clone(),
                    id: uuid::Uuid::new_v4().to_string(),
                    user_id: user.id.clone(),
                    provider: provider.name.clone(),
                    issuer: provider.issuer.clone(),
                    subject: subject.to_owned(),
                    email,
                    data: identity_data,
                    created_at: now,
                    updated_at: now,
                    last_sign_in_at: Some(now),
                };
                if !self.store.create_linked_identity(&linked).await? {
                    return Err(AccountError::IdentityTaken);
                }
            }
        }
        let linked = self.store.linked_identities(project, &user.id).await?;
        user.app_metadata = with_providers(&user, &linked);
        user.last_sign_in_at = Some(now);
        user.updated_at = now;
        self.store.update_user(&user).await?;
        Ok(user)
    }

    /// `DELETE /user/identities/ID` (`unlinkIdentity`): the signed-in
    /// user's identity goes, unless it is its only way of signing in.
    pub async fn unlink_identity(
        &self,
        identity: &Identity,
        identity_id: &str,
        now: UnixMillis,
    ) -> Result<(), AccountError> {
        self.linking_allowed(identity).await?;
        let mut user = self.user(identity).await?;
        let linked = self
            .store
            .linked_identities(&identity.project, &user.id)
            .await?;
        if !linked.iter().any(|linked| linked.id == identity_id) {
            return Err(AccountError::IdentityNotFound);
        }
        if user.password_hash.is_none() && linked.len() == 1 {
            return Err(AccountError::SingleIdentity);
        }
        if !self
            .store
            .delete_linked_identity(&identity.project, &user.id, identity_id)
            .await?
        {
            return Err(AccountError::IdentityNotFound);
        }
        let left: Vec<_> = linked
            .into_iter()
            .filter(|linked| linked.id != identity_id)
            .collect();
        user.app_metadata = with_providers(&user, &left);
        user.updated_at = now;
        self.store.update_user(&user).await?;
        Ok(())
    }

    /// `POST /token?grant_type=pkce`: the code a provider's callback gave,
    /// traded once for a session, with the verifier of its challenge.
    pub async fn exchange_auth_code(
        &self,
        project: &ProjectId,
        auth_code: &str,
        code_verifier: &str,
        now: UnixMillis,
    ) -> Result<Issued, AccountError> {
        let hash: [u8; 32] = Sha256::digest(auth_code.trim().as_bytes()).into();
        let Some(flow) = self
            .store
            .take_pending_flow(project, PendingKind::AuthCode, &hash, now)
            .await?
        else {
            return Err(AccountError::FlowStateInvalid);
        };
        let data: CodeData = serde_json::from_value(flow.data)
            .map_err(|error| StoreError::Corrupt(format!("an authorization code: {error}")))?;
        let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(code_verifier.as_bytes()));
        if !pkce_shaped(code_verifier)
            || !same_bytes(computed.as_bytes(), data.code_challenge.as_bytes())
        {
            return Err(AccountError::BadCodeVerifier);
        }
        let Some(user) = self.store.user(project, &data.user_id).await? else {
            return Err(AccountError::FlowStateInvalid);
        };
        if user.banned_until.is_some_and(|until| until > now) {
            return Err(AccountError::Banned);
        }
        let mut issued = self.open_session(&user, &data.method, now).await?;
        issued.provider_tokens = data.sealed_provider_tokens.and_then(|sealed| {
            self.open_secret(&code_sealing_context(project), &sealed)
                .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        });
        Ok(issued)
    }

    /// A user's identities at providers, oldest first.
    pub async fn identities_of(
        &self,
        project: &ProjectId,
        user_id: &str,
    ) -> Result<Vec<LinkedIdentity>, StoreError> {
        self.store.linked_identities(project, user_id).await
    }
}

/// A user's `app_metadata` naming the ways it signs in (GoTrue's
/// `provider` and `providers`): `email` if it has a password, then its
/// identities' providers; the rest of it kept.
fn with_providers(user: &User, linked: &[LinkedIdentity]) -> serde_json::Value {
    let mut providers: Vec<String> = Vec::new();
    if user.password_hash.is_some() {
        providers.push("email".to_owned());
    }
    for identity in linked {
        if !providers.contains(&identity.provider) {
            providers.push(identity.provider.clone());
        }
    }
    let mut metadata = match &user.app_metadata {
        serde_json::Value::Object(map) => map.clone(),
        _ => serde_json::Map::new(),
    };
    let current = metadata
        .get("provider")
        .and_then(serde_json::Value::as_str)
        .filter(|current| providers.iter().any(|known| known == current))
        .map(str::to_owned);
    let provider = current.or_else(|| providers.first().cloned());
    metadata.insert("provider".to_owned(), serde_json::json!(provider));
    metadata.insert("providers".to_owned(), serde_json::json!(providers));
    serde_json::Value::Object(metadata)
}

/// The claims of a provider's ID token, verified: its signature by the
/// provider's keys (asymmetric algorithms only), issuer, audience (the
/// client id and no other), nonce, and expiry at `now`.
fn id_token_claims(
    id_token: &CoreIdToken,
    metadata: &CoreProviderMetadata,
    provider: &ProviderSettings,
    nonce: &Nonce,
    now: UnixMillis,
) -> Result<CoreIdTokenClaims, ClaimsVerificationError> {
    let checks = CoreIdTokenVerifier::new_public_client(
        ClientId::new(provider.client_id.clone()),
        metadata.issuer().clone(),
        metadata.jwks().clone(),
    )
    .set_allowed_algs(allowed_algorithms())
    .set_time_fn(move || chrono::DateTime::from_timestamp_millis(now).unwrap_or_default());
    id_token.claims(&checks, nonce).cloned()
}

/// An error and its causes, on one line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use store::ProjectStore;
    use store_sqlite::SqliteStore;

    const NOW: UnixMillis = 1_800_000_000_000;

    async fn accounts() -> (tempfile::TempDir, Accounts, ProjectId) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(&dir.path().join("wok.db")).unwrap());
        let shop = ProjectId::new("shop").unwrap();
        store.create_project(&shop).await.unwrap();
        let accounts = Accounts::open(store, [5; 32], NOW).await.unwrap();
        (dir, accounts, shop)
    }

    fn provider(issuer: &str) -> ProviderSettings {
        ProviderSettings {
            name: "corp".to_owned(),
            issuer: issuer.to_owned(),
            client_id: "wok".to_owned(),
            client_secret: Some("s3cret".to_owned()),
            sealed_client_secret: None,
            client_secret_set: false,
            scopes: default_scopes(),
        }
    }

    /// A code for `user`, bound to the challenge of `verifier`, as a
    /// provider's callback leaves it.
    async fn code_for(
        accounts: &Accounts,
        project: &ProjectId,
        user: &User,
        verifier: &str,
    ) -> String {
        let code = random_token();
        let data = CodeData {
            user_id: user.id.clone(),
            code_challenge: URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())),
            sealed_provider_tokens: None,
            method: "oauth".to_owned(),
        };
        accounts
            .store
            .put_pending_flow(&PendingFlow {
                project: project.clone(),
                kind: PendingKind::AuthCode,
                hash: Sha256::digest(code.as_bytes()).into(),
                data: serde_json::to_value(&data).unwrap(),
                created_at: NOW,
                expires_at: NOW + AUTH_CODE_LIFETIME_MS,
            })
            .await
            .unwrap();
        code
    }

    #[tokio::test]
    async fn a_code_is_traded_once_with_its_verifier_before_it_expires() {
        let (_dir, accounts, shop) = accounts().await;
        let user = new_user(&shop, None, Default::default(), NOW);
        accounts.store.create_user(&user).await.unwrap();
        let verifier = random_token();

        let code = code_for(&accounts, &shop, &user, &verifier).await;
        let issued = accounts
            .exchange_auth_code(&shop, &code, &verifier, NOW + 1)
            .await
            .unwrap();
        assert_eq!(issued.user.id, user.id);
        assert!(matches!(
            accounts
                .exchange_auth_code(&shop, &code, &verifier, NOW + 2)
                .await,
            Err(AccountError::FlowStateInvalid)
        ));

        // A wrong verifier, or none shaped like one, uses the code up.
        for wrong in [random_token(), "short".to_owned()] {
            let code = code_for(&accounts, &shop, &user, &verifier).await;
            assert!(matches!(
                accounts
                    .exchange_auth_code(&shop, &code, &wrong, NOW + 1)
                    .await,
                Err(AccountError::BadCodeVerifier)
            ));
            assert!(matches!(
                accounts
                    .exchange_auth_code(&shop, &code, &verifier, NOW + 1)
                    .await,
                Err(AccountError::FlowStateInvalid)
            ));
        }

        // Expired at its lifetime; of its project only.
        let code = code_for(&accounts, &shop, &user, &verifier).await;
        assert!(matches!(
            accounts
                .exchange_auth_code(&shop, &code, &verifier, NOW + AUTH_CODE_LIFETIME_MS)
                .await,
            Err(AccountError::FlowStateInvalid)
        ));
        let code = code_for(&accounts, &shop, &user, &verifier).await;
        let blog = ProjectId::new("blog").unwrap();
        assert!(matches!(
            accounts
                .exchange_auth_code(&blog, &code, &verifier, NOW + 1)
                .await,
            Err(AccountError::FlowStateInvalid)
        ));

        // A banned user's code gives no session.
        let mut banned = user.clone();
        banned.banned_until = Some(NOW + 3_600_000);
        accounts.store.update_user(&banned).await.unwrap();
        let code = code_for(&accounts, &shop, &user, &verifier).await;
        assert!(matches!(
            accounts
                .exchange_auth_code(&shop, &code, &verifier, NOW + 1)
                .await,
            Err(AccountError::Banned)
        ));
    }

    #[tokio::test]
    async fn a_provider_callback_is_refused_once_its_state_expired() {
        let (_dir, accounts, shop) = accounts().await;
        let state = random_token();
        let data = StateData {
            provider: "corp".to_owned(),
            issuer: "https://idp.example".to_owned(),
            nonce: random_token(),
            sealed_verifier: accounts.seal_secret(&flow_sealing_context(&shop), b"verifier"),
            redirect_to: "https://app.example/done".to_owned(),
            code_challenge: None,
            callback: "https://wok.example/p/shop/auth/v1/callback".to_owned(),
            link_to: None,
        };
        accounts
            .store
            .put_pending_flow(&PendingFlow {
                project: shop.clone(),
                kind: PendingKind::ProviderState,
                hash: Sha256::digest(state.as_bytes()).into(),
                data: serde_json::to_value(&data).unwrap(),
                created_at: NOW,
                expires_at: NOW + PROVIDER_FLOW_LIFETIME_MS,
            })
            .await
            .unwrap();
        assert!(matches!(
            accounts
                .finish_provider_sign_in(
                    &shop,
                    &state,
                    Some("code"),
                    None,
                    NOW + PROVIDER_FLOW_LIFETIME_MS
                )
                .await,
            Err(AccountError::FlowStateInvalid)
        ));
    }

    #[tokio::test]
    async fn a_sign_in_is_refused_before_any_call_to_the_provider() {
        let (_dir, accounts, shop) = accounts().await;
        // Only https issuers, unless the server allows http.
        let mut settings = AuthSettings {
            site_url: Some("https://app.example/".to_owned()),
            redirect_urls: vec!["https://app.example/*".to_owned()],
            providers: vec![provider("http://127.0.0.1:9")],
            ..AuthSettings::default()
        };
        assert!(matches!(
            accounts.set_settings(&shop, settings.clone()).await,
            Err(AccountError::Invalid(why)) if why.contains("https")
        ));
        // An issuer at a loopback address: nothing below may get as far
        // as calling it, and past the checks, it is refused.
        settings.providers = vec![provider("https://127.0.0.1:9")];
        let shown = accounts.set_settings(&shop, settings).await.unwrap();
        assert!(shown.providers[0].client_secret_set);
        assert_eq!(shown.providers[0].sealed_client_secret, None);
        let start = |provider: &'static str, redirect_to: &'static str, challenge| {
            let (accounts, shop) = (&accounts, &shop);
            async move {
                accounts
                    .start_provider_sign_in(
                        shop,
                        provider,
                        Some(redirect_to),
                        challenge,
                        "https://wok.example/p/shop/auth/v1/callback",
                        NOW,
                    )
                    .await
            }
        };
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(b"a verifier"));
        assert!(matches!(
            start("nobody", "https://app.example/done", None).await,
            Err(AccountError::ProviderUnknown(_))
        ));
        for unlisted in ["https://evil.example/", "https://app.example.evil.example/"] {
            assert!(matches!(
                start("corp", unlisted, None).await,
                Err(AccountError::Invalid(why)) if why.contains("redirect_to")
            ));
        }
        assert!(matches!(
            start("corp", "https://app.example/done", Some((challenge.as_str(), "plain"))).await,
            Err(AccountError::Invalid(why)) if why.contains("s256")
        ));
        assert!(matches!(
            start("corp", "https://app.example/done", Some(("short", "s256"))).await,
            Err(AccountError::Invalid(why)) if why.contains("code_challenge")
        ));
        // Past the checks, a provider at an address that is not public is
        // never called, given as such or by a name.
        assert!(matches!(
            start("corp", "https://app.example/done", Some((challenge.as_str(), "S256"))).await,
            Err(AccountError::Provider(why)) if why.contains("not a public address")
        ));
        let mut settings = accounts.settings(&shop);
        settings.providers = vec![provider("https://localhost:9")];
        accounts.set_settings(&shop, settings).await.unwrap();
        assert!(matches!(
            start("corp", "https://app.example/done", None).await,
            Err(AccountError::Provider(why)) if why.contains("no public address")
        ));
    }

    #[test]
    fn only_public_addresses_are_called() {
        for public in [
            "8.8.8.8",
            "1.1.1.1",
            "2001:4860:4860::8888",
            "::ffff:8.8.8.8",
        ] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
        for inside in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
        ] {
            assert!(!is_public(inside.parse().unwrap()), "{inside}");
        }
    }
}
