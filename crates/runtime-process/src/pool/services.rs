//! What wok serves a program inside its instance, on the instance's own
//! loopback, besides its requests: wok's API (`WOK_API`, relayed to the
//! server as any client's connection) and the outbound proxy
//! (`HTTP_PROXY`, `HTTPS_PROXY`), the only way out of the namespace, to
//! the hosts the function's `--allow-outbound` list names. The helper
//! listens on their ports before the program starts; each accept loop
//! ends with its instance, and each bounds the connections it holds.

use super::*;
use http_body_util::{Empty, Full, combinators::UnsyncBoxBody};

/// Where `WOK_API` listens inside an instance.
pub(super) const API_PORT: u16 = 9002;

/// Where the outbound proxy listens inside an instance.
pub(super) const PROXY_PORT: u16 = 9003;

/// Connections to wok's API one instance may hold at once; a program
/// that opens more waits for one to close.
const MAX_API_CONNECTIONS: usize = 64;

/// Connections through the outbound proxy one instance may hold at once.
const MAX_PROXY_CONNECTIONS: usize = 64;

/// How long the proxy waits for an outside host to accept.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Accepts on `listener` until `instance` ends, at most `max` connections
/// held at once, and gives each to `serve` with its permit.
pub(super) fn accept_until_ended(
    listener: tokio::net::TcpListener,
    instance: &Arc<Instance>,
    max: usize,
    serve: impl Fn(tokio::net::TcpStream, tokio::sync::OwnedSemaphorePermit) + Send + 'static,
) {
    let instance = instance.clone();
    let connections = Arc::new(tokio::sync::Semaphore::new(max));
    tokio::spawn(async move {
        let ended = instance.ending(std::time::Duration::MAX);
        tokio::pin!(ended);
        loop {
            let accepted = tokio::select! {
                _ = &mut ended => break,
                accepted = async {
                    let permit = connections.clone().acquire_owned().await;
                    (permit, listener.accept().await)
                } => accepted,
            };
            let (Ok(permit), accepted) = accepted else {
                break;
            };
            match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    serve(stream, permit);
                }
                // Out of fds, say: not a reason to spin.
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
            }
        }
    });
}

/// A listener the helper made, on the async threads.
pub(super) fn tokio_listener(fd: OwnedFd) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::from_std(std::net::TcpListener::from(fd))
}

/// Relays connections to `WOK_API` to the server, which serves them as
/// any client's (its limits, its authentication).
pub(super) fn serve_api(
    listener: tokio::net::TcpListener,
    instance: &Arc<Instance>,
    platform: Arc<dyn crate::Platform>,
) {
    accept_until_ended(
        listener,
        instance,
        MAX_API_CONNECTIONS,
        move |stream, permit| {
            platform.serve(stream, Box::new(permit));
        },
    );
}

type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

fn answer(status: http::StatusCode, message: String) -> http::Response<ProxyBody> {
    let mut response = http::Response::new(
        Full::new(Bytes::from(format!("wok outbound proxy: {message}\n")))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Serves the outbound proxy: `CONNECT host:port` (HTTPS, or any TCP) and
/// absolute-form HTTP requests, each to a host `config` allows, else 403.
pub(super) fn serve_proxy(
    listener: tokio::net::TcpListener,
    instance: &Arc<Instance>,
    config: Arc<FunctionConfig>,
    function: FunctionName,
) {
    let owner = instance.clone();
    accept_until_ended(
        listener,
        instance,
        MAX_PROXY_CONNECTIONS,
        move |stream, permit| {
            let (config, function, instance) = (config.clone(), function.clone(), owner.clone());
            tokio::spawn(async move {
                // Shared with a tunnel the connection becomes: held until
                // both end.
                let permit = Arc::new(permit);
                let service = hyper::service::service_fn(move |request| {
                    let (config, function) = (config.clone(), function.clone());
                    let (instance, permit) = (instance.clone(), permit.clone());
                    async move {
                        Ok::<_, std::convert::Infallible>(
                            proxy(request, &config, &function, instance, permit).await,
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .with_upgrades()
                    .await;
            });
        },
    );
}

/// Headers that belong to one hop, not passed on.
const HOP_HEADERS: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
];

/// Removes the headers of one hop: the fixed ones, and those `Connection`
/// names.
fn remove_hop_headers(headers: &mut http::HeaderMap) {
    let named: Vec<String> = headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .filter(|name| !name.is_empty())
        .collect();
    for name in named.iter().map(String::as_str).chain(HOP_HEADERS) {
        headers.remove(name);
    }
}

async fn proxy(
    request: http::Request<hyper::body::Incoming>,
    config: &FunctionConfig,
    function: &FunctionName,
    instance: Arc<Instance>,
    permit: Arc<tokio::sync::OwnedSemaphorePermit>,
) -> http::Response<ProxyBody> {
    let connect = request.method() == http::Method::CONNECT;
    let Some(authority) = request.uri().authority().cloned() else {
        return answer(
            http::StatusCode::BAD_REQUEST,
            "send requests for other hosts here (absolute URLs, or CONNECT host:port)".to_owned(),
        );
    };
    if !connect && request.uri().scheme() != Some(&http::uri::Scheme::HTTP) {
        return answer(
            http::StatusCode::BAD_REQUEST,
            "only http:// URLs are proxied as requests; https goes through CONNECT".to_owned(),
        );
    }
    // The host and port alone (no userinfo), for the allow list, the
    // connection and the Host header alike.
    let host = authority.host().to_owned();
    let port = authority.port_u16();
    let authority = match port {
        Some(port) => format!("{host}:{port}"),
        None => host.clone(),
    };
    if !config.allows_outbound(&authority) {
        return answer(
            http::StatusCode::FORBIDDEN,
            format!(
                "function {function} may not reach {authority}: deploy it with --allow-outbound {host}"
            ),
        );
    }
    let port = port.unwrap_or(if connect { 443 } else { 80 });
    // An IPv6 literal without its brackets.
    let address = host.trim_start_matches('[').trim_end_matches(']');
    let upstream = match tokio::time::timeout(
        CONNECT_TIMEOUT,
        tokio::net::TcpStream::connect((address, port)),
    )
    .await
    {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => {
            return answer(
                http::StatusCode::BAD_GATEWAY,
                format!("connecting to {authority}: {error}"),
            );
        }
        Err(_) => {
            return answer(
                http::StatusCode::GATEWAY_TIMEOUT,
                format!("{authority} did not accept within {CONNECT_TIMEOUT:?}"),
            );
        }
    };
    let _ = upstream.set_nodelay(true);
    if connect {
        // The tunnel keeps the connection's place, and ends with the
        // instance at the latest.
        tokio::spawn(async move {
            let _permit = permit;
            let Ok(upgraded) = hyper::upgrade::on(request).await else {
                return;
            };
            let mut upgraded = hyper_util::rt::TokioIo::new(upgraded);
            let mut upstream = upstream;
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut upgraded, &mut upstream) => {}
                _ = instance.ending(std::time::Duration::MAX) => {}
            }
        });
        return http::Response::new(Empty::new().map_err(|never| match never {}).boxed_unsync());
    }
    let (mut sender, connection) =
        match hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(upstream)).await {
            Ok(pair) => pair,
            Err(error) => {
                return answer(
                    http::StatusCode::BAD_GATEWAY,
                    format!("talking to {authority}: {error}"),
                );
            }
        };
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let (mut parts, body) = request.into_parts();
    remove_hop_headers(&mut parts.headers);
    // The URL's host, whatever Host the program sent (RFC 9112 §3.2.2):
    // the allow list checked that one.
    match http::HeaderValue::from_str(&authority) {
        Ok(host) => {
            parts.headers.insert(http::header::HOST, host);
        }
        Err(_) => {
            return answer(
                http::StatusCode::BAD_REQUEST,
                format!("{authority} is not a host"),
            );
        }
    }
    parts.uri = origin_form(&parts.uri);
    match sender
        .send_request(http::Request::from_parts(parts, body))
        .await
    {
        Ok(response) => {
            let (mut head, body) = response.into_parts();
            remove_hop_headers(&mut head.headers);
            http::Response::from_parts(head, body.map_err(BoxError::from).boxed_unsync())
        }
        Err(error) => answer(
            http::StatusCode::BAD_GATEWAY,
            format!("{authority} did not answer: {error}"),
        ),
    }
}
