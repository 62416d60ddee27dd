//! The smallest useful hyper HTTP/1 server: answers every request with
//! `hello from wok\n`. The ceiling wok's function path is compared with.
//!
//! `hyper-hello [ADDRESS] [SPIN_MICROS]`: with SPIN_MICROS, every request
//! first keeps the CPU busy that long, standing in for work a real server
//! must do per request (`bench/run.sh` passes raw wasmtime's cost of one
//! fresh-instance request, to find the most a wasmtime-based server can
//! answer on this machine).
use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::time::{Duration, Instant};

fn spin(duration: Duration) {
    let started = Instant::now();
    while started.elapsed() < duration {
        std::hint::spin_loop();
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let address = args.next().unwrap_or_else(|| "127.0.0.1:9090".to_owned());
    let work = match args.next().map(|micros| micros.parse::<u64>()) {
        None => Duration::ZERO,
        Some(Ok(micros)) => Duration::from_micros(micros),
        Some(Err(_)) => {
            eprintln!("error: SPIN_MICROS must be a whole number of microseconds");
            std::process::exit(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&address)
            .await
            .expect("binding");
        println!(
            "hyper-hello listening on http://{}",
            listener.local_addr().unwrap()
        );
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let service = service_fn(|_request| async move {
                    spin(work);
                    Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(
                        b"hello from wok\n",
                    ))))
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
}
