//! The per-store host state: WASI contexts, the memory limiter, the outbound
//! HTTP policy and the guest's stdout/stderr.
use bytes::Bytes;
use domain::{
    FunctionConfig, FunctionName, InvocationId, LogLine, LogStream, ProjectId, now_millis,
};
use invoke::LogSink;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_config::WasiConfigVariables;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

pub struct HostState {
    pub table: ResourceTable,
    pub wasi: WasiCtx,
    pub http: WasiHttpCtx,
    pub hooks: OutboundPolicy,
    pub limiter: MemoryLimiter,
    pub config_vars: Arc<WasiConfigVariables>,
    /// When the running invocation must stop; checked on every epoch tick.
    pub deadline: Instant,
    /// Set when the epoch callback stopped the guest for its deadline.
    pub timed_out: bool,
    /// The invocation this store serves now; tags its output lines.
    pub invocation: Arc<Mutex<InvocationId>>,
    /// The function's project's key-value stores (`wasi:keyvalue`).
    pub key_value: Arc<dyn invoke::GuestKeyValue>,
    /// The function's project's document collections (`wok:documents`).
    pub documents: Arc<dyn invoke::GuestDocuments>,
    /// The function's project's buckets (`wok:objects`).
    pub objects: Arc<dyn invoke::GuestObjects>,
    /// The function's project's topics (`wok:messaging`).
    pub messaging: Arc<dyn invoke::GuestMessaging>,
    /// Who called the invocation this store serves now (`wok:auth`).
    pub caller: invoke::CallerIdentity,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// Caps the total linear memory of all the instance's memories and tracks
/// its peak. Denied growth fails `memory.grow` and, because the engine traps
/// on grow failure, ends the guest; `hit_limit` tells the outcome apart.
pub struct MemoryLimiter {
    pub limit: usize,
    pub total: usize,
    pub peak: usize,
    pub hit_limit: bool,
}

impl MemoryLimiter {
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            total: 0,
            peak: 0,
            hit_limit: false,
        }
    }
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let next = self.total.saturating_sub(current).saturating_add(desired);
        if next > self.limit {
            self.hit_limit = true;
            return Ok(false);
        }
        self.total = next;
        self.peak = self.peak.max(next);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

/// Outbound HTTP is allowed only to the function's allow-listed hosts; any
/// other request fails inside the guest with `HTTP-request-denied`.
pub struct OutboundPolicy {
    pub config: Arc<FunctionConfig>,
}

impl WasiHttpHooks for OutboundPolicy {
    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<
        dyn Future<
                Output = Result<
                    (
                        http::Response<wasmtime_wasi_http::WasiBody>,
                        Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
                    ),
                    wasmtime_wasi_http::Error,
                >,
            > + Send,
    > {
        drop(fut);
        let authority = request
            .uri()
            .authority()
            .map(|a| a.as_str().to_owned())
            .unwrap_or_default();
        if !self.config.allows_outbound(&authority) {
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        Box::new(async move {
            use http_body_util::BodyExt;
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((
                response.map(BodyExt::boxed_unsync),
                Box::new(io)
                    as Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
            ))
        })
    }
}

/// Where one function's guest output goes.
pub struct OutputTarget {
    pub sink: Arc<dyn LogSink>,
    pub project: ProjectId,
    pub function: FunctionName,
}

/// Longest line kept whole; longer output is split.
const MAX_LINE: usize = 16 * 1024;

/// One store's stdout or stderr. The invocation cell belongs to the store:
/// a reused instance updates it for each request it serves.
#[derive(Clone)]
pub struct GuestOutput {
    pub target: Arc<OutputTarget>,
    pub invocation: Arc<Mutex<InvocationId>>,
    pub stream: LogStream,
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(LineWriter {
            output: self.clone(),
            buffer: Vec::new(),
        })
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(LineWriter {
            output: self.clone(),
            buffer: Vec::new(),
        })
    }
}

/// Splits guest output into lines and hands each to the log sink.
struct LineWriter {
    output: GuestOutput,
    buffer: Vec<u8>,
}

impl LineWriter {
    fn push(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            if byte == b'\n' {
                self.emit();
            } else {
                self.buffer.push(byte);
                if self.buffer.len() >= MAX_LINE {
                    self.emit();
                }
            }
        }
    }

    fn emit(&mut self) {
        let mut text = String::from_utf8_lossy(&self.buffer).into_owned();
        self.buffer.clear();
        if text.ends_with('\r') {
            text.pop();
        }
        let target = &self.output.target;
        let invocation = self
            .output
            .invocation
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        target.sink.log(LogLine {
            project: target.project.clone(),
            function: target.function.clone(),
            invocation,
            instance: None,
            time: now_millis(),
            stream: self.output.stream,
            line: text,
        });
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if !self.buffer.is_empty() {
            self.emit();
        }
    }
}

#[async_trait::async_trait]
impl Pollable for LineWriter {
    async fn ready(&mut self) {}
}

impl OutputStream for LineWriter {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

impl tokio::io::AsyncWrite for LineWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.push(bytes);
        Poll::Ready(Ok(bytes.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
