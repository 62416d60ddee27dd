//! A trigger's target: records every CloudEvent delivered to it in the
//! key-value store `received`, so tests can check what arrived, how often
//! and in which order:
//! - `received/<ce-id>`: `attempt`, `type`, `source`, `subject`,
//!   `partitionkey`, `content-type`, `time`, `authtype`, `authid` and the
//!   body, one a line;
//! - `received/log-<n>` (n counts deliveries from 1, zero-padded):
//!   `<ce-id> <partitionkey> <body>`; `received/count` is n.
//!
//! A body containing `fail-always` is refused (500); `fail-until-N` is
//! refused while the attempt (`ce-wokattempt`) is below N (unless `HEALED`
//! is set); `slow-MS` sleeps that long first. With `ECHO_COLLECTION` set, a `wok.document.created`
//! event makes it create a document in that collection, and with
//! `ECHO_BUCKET` set, a `wok.object.created` event makes it write
//! `echo-<key>` to that bucket, to check that a function does not trigger
//! itself. With `FORWARD_TOPIC` set, it publishes each body it gets to that
//! topic (`wok:messaging`).
use wstd::http::{Body, Request, Response, StatusCode};

mod kv {
    wit_bindgen::generate!({
        path: "../../../../wit/deps/keyvalue",
        world: "wasi:keyvalue/imports",
        generate_all,
    });
}

mod objects {
    wit_bindgen::generate!({
        path: "../../../../wit/objects",
        world: "wok:objects/imports",
        generate_all,
    });
}

mod messaging {
    wit_bindgen::generate!({
        path: "../../../../wit/messaging",
        world: "wok:messaging/imports",
        generate_all,
    });
}

mod docs {
    wit_bindgen::generate!({
        path: "../../../../wit/documents",
        world: "wok:documents/imports",
        generate_all,
    });
}

use kv::wasi::keyvalue::{atomics, store};

fn answer(status: StatusCode, body: impl Into<Body>) -> wstd::http::Result<Response<Body>> {
    Ok(Response::builder().status(status).body(body.into())?)
}

/// The number after `marker` in `text`, if the marker is there.
fn number_after(text: &str, marker: &str) -> Option<u64> {
    let rest = &text[text.find(marker)? + marker.len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

#[wstd::http_server]
async fn main(mut request: Request<Body>) -> wstd::http::Result<Response<Body>> {
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let id = header("ce-id");
    let kind = header("ce-type");
    let source = header("ce-source");
    let subject = header("ce-subject");
    let key = header("ce-partitionkey");
    let content_type = header("content-type");
    let time = header("ce-time");
    let auth_type = header("ce-authtype");
    let auth_id = header("ce-authid");
    let attempt: u64 = header("ce-wokattempt").parse().unwrap_or(0);
    let body = request.body_mut().contents().await?.to_vec();
    let text = String::from_utf8_lossy(&body).into_owned();

    // A log line per delivery (`wok logs` shows them).
    println!("received {kind} {id} attempt {attempt}");
    if let Some(millis) = number_after(&text, "slow-") {
        wstd::task::sleep(wstd::time::Duration::from_millis(millis)).await;
    }
    // A fixed deploy (`HEALED` set) accepts what the broken one refused.
    let healed = std::env::var("HEALED").is_ok();
    if text.contains("fail-always") && !healed {
        return answer(StatusCode::INTERNAL_SERVER_ERROR, "failing as asked");
    }
    if let Some(until) = number_after(&text, "fail-until-")
        && attempt < until
        && !healed
    {
        return answer(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("attempt {attempt} fails until {until}"),
        );
    }

    // Echo first, then record: once a delivery is recorded, its echo's
    // change event is in the log.
    if kind == "wok.document.created"
        && let Ok(collection) = std::env::var("ECHO_COLLECTION")
    {
        let write = docs::wok::documents::documents::Write {
            op: docs::wok::documents::documents::Op::Create,
            collection,
            id: None,
            data: Some(format!("{{\"echo\": {subject:?}}}")),
            if_version: None,
        };
        if let Err(error) = docs::wok::documents::documents::batch(&[write]) {
            return answer(StatusCode::INTERNAL_SERVER_ERROR, format!("{error:?}"));
        }
    }
    if kind == "wok.object.created"
        && let Ok(bucket) = std::env::var("ECHO_BUCKET")
    {
        let written = objects::wok::objects::objects::write(
            &bucket,
            &format!("echo-{subject}"),
            b"echo",
            None,
        );
        if let Err(error) = written {
            return answer(StatusCode::INTERNAL_SERVER_ERROR, format!("{error:?}"));
        }
    }

    if let Ok(topic) = std::env::var("FORWARD_TOPIC") {
        let message = messaging::wok::messaging::topics::Message {
            data: body.clone(),
            content_type: Some(content_type.clone()).filter(|value| !value.is_empty()),
            key: Some(key.clone()).filter(|value| !value.is_empty()),
            subject: Some(subject.clone()).filter(|value| !value.is_empty()),
        };
        if let Err(error) = messaging::wok::messaging::topics::publish(&topic, &[message]) {
            return answer(StatusCode::INTERNAL_SERVER_ERROR, format!("{error:?}"));
        }
    }

    let received = match store::open("received") {
        Ok(bucket) => bucket,
        Err(error) => return answer(StatusCode::INTERNAL_SERVER_ERROR, format!("{error:?}")),
    };
    let name = if id.is_empty() { "batch".to_owned() } else { id.clone() };
    let record =
        format!("{attempt}\n{kind}\n{source}\n{subject}\n{key}\n{content_type}\n{time}\n{auth_type}\n{auth_id}\n{text}");
    let logged = received
        .set(&name, record.as_bytes())
        .and_then(|()| atomics::increment(&received, "count", 1))
        .and_then(|count| {
            received.set(
                &format!("log-{count:08}"),
                format!("{name} {key} {text}").as_bytes(),
            )
        });
    if let Err(error) = logged {
        return answer(StatusCode::INTERNAL_SERVER_ERROR, format!("{error:?}"));
    }

    answer(StatusCode::OK, "ok")
}
