//! Serving one request: instance creation or reuse, limits, outcome.
//!
//! An instance is made fresh for each request, or, for a function that
//! opted into reuse, taken from its pool of idle ones (one request at a
//! time per instance; dropped after its request count or idle timeout, or
//! after any failure). A new one waits for a slot of the instance pool.
//!
//! Limits: a `ResourceLimiter` caps the guest's linear memory and tracks
//! its peak. At every epoch tick the deadline callback either interrupts
//! the guest (past its deadline) or yields with tokio's `yield_now`, which
//! puts the task behind every other ready task and the I/O driver, so
//! busy guests do not starve new requests. A guest blocked in a host call
//! sees no epochs: its `Watchdog` deadline (a little later) ends it.
//!
//! A p2 call runs in the request's own task, not a task of its own: most
//! guests answer and return within one poll. If the guest answers before
//! it returns, the response body (`DriveCall`) carries the rest of the
//! call and polls it; a body dropped early hands the call to a task of its
//! own, so that it still ends, is recorded and frees its slot. A p3 call
//! runs on a task of its own, whose store keeps running until the
//! response body is done with.
use crate::host::{GuestOutput, HostState, MemoryLimiter, OutboundPolicy, OutputTarget};
use domain::{FunctionConfig, InvocationId, Isolation, LogStream, Outcome};
use http_body_util::BodyExt;
use invoke::{
    Body, BoxFuture, CountingBody, Failure, Invocation, LoadSpec, Meter, PreparedFunction,
    RuntimeMetrics,
};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use wasmtime::component::ResourceTable;
use wasmtime::{Engine, Store, Trap, UpdateDeadline};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi_config::WasiConfigVariables;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpView};

/// Runs `work` unless the deadline fires first.
async fn within<T>(
    expired: &mut oneshot::Receiver<()>,
    work: impl Future<Output = T>,
) -> Result<T, ()> {
    tokio::select! {
        biased;
        output = work => Ok(output),
        _ = expired => Err(()),
    }
}

/// A guest blocked in a host call does not see epochs; the host-side timer
/// catches it this long after the deadline.
const HOST_TIMEOUT_GRACE: Duration = Duration::from_millis(50);

pub enum Pre {
    P2(wasmtime_wasi_http::p2::bindings::ProxyPre<HostState>),
    P3(wasmtime_wasi_http::p3::bindings::ServicePre<HostState>),
}

/// An instance's exported handler.
enum Handler {
    P2(wasmtime_wasi_http::p2::bindings::Proxy),
    P3(wasmtime_wasi_http::p3::bindings::Service),
}

/// An instance serving a request, kept afterwards for functions that opted
/// into reuse.
struct IdleInstance {
    store: Store<HostState>,
    handler: Handler,
    served: u32,
    idle_since: Instant,
    /// Its slot in the instance pool, held as long as the instance lives.
    /// Declared last: fields drop in order, and the slot must be freed only
    /// after the store has returned its memory to the pool.
    _slot: tokio::sync::OwnedSemaphorePermit,
}

pub struct FunctionInner {
    engine: Engine,
    pre: Pre,
    spec: LoadSpec,
    config: Arc<FunctionConfig>,
    config_vars: Arc<WasiConfigVariables>,
    output: Arc<OutputTarget>,
    metrics: Arc<dyn RuntimeMetrics>,
    watchdog: Arc<crate::watchdog::Watchdog>,
    slots: Arc<tokio::sync::Semaphore>,
    idle: Mutex<Vec<IdleInstance>>,
}

pub struct WasmFunction(pub Arc<FunctionInner>);

impl PreparedFunction for WasmFunction {
    fn invoke(
        &self,
        invocation: Invocation,
    ) -> BoxFuture<'static, Result<http::Response<Body>, Failure>> {
        let inner = self.0.clone();
        Box::pin(async move {
            match &inner.pre {
                Pre::P2(_) => inner.invoke_p2(invocation).await,
                Pre::P3(_) => inner.invoke_p3(invocation).await,
            }
        })
    }

    fn idle_instances(&self) -> usize {
        self.0.idle.lock().map(|idle| idle.len()).unwrap_or(0)
    }

    fn maintain(&self) {
        self.0.reap_idle();
    }
}

/// Names how a guest run ended, from the error and what the store saw.
fn classify(error: &wasmtime::Error, state: &HostState) -> Failure {
    if state.limiter.hit_limit {
        return Failure::new(
            Outcome::OutOfMemory,
            format!(
                "the function tried to use more than its memory limit of {}",
                domain::ByteSize(state.limiter.limit as u64)
            ),
        );
    }
    if state.timed_out {
        return Failure::new(Outcome::Timeout, "the function ran past its timeout");
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::StackOverflow) => Failure::new(
            Outcome::StackOverflow,
            "the function overflowed its call stack",
        ),
        Some(Trap::Interrupt) => {
            Failure::new(Outcome::Timeout, "the function ran past its timeout")
        }
        Some(trap) => Failure::new(Outcome::Trap, format!("the function trapped: {trap}")),
        None => Failure::new(
            Outcome::Trap,
            format!("the function failed: {}", error.root_cause()),
        ),
    }
}

/// What the guest sees when reading the request body fails.
fn request_body_error(error: invoke::BoxError) -> wasmtime_wasi_http::Error {
    match error.downcast_ref::<invoke::BodyTooLarge>() {
        Some(too_large) => wasmtime_wasi_http::Error::HttpRequestBodySize(Some(too_large.limit)),
        None => wasmtime_wasi_http::Error::InternalError(Some(error.to_string())),
    }
}

fn timeout_failure() -> Failure {
    Failure::new(Outcome::Timeout, "the function ran past its timeout")
}

impl FunctionInner {
    pub fn new(
        engine: Engine,
        pre: Pre,
        spec: LoadSpec,
        output: Arc<OutputTarget>,
        metrics: Arc<dyn RuntimeMetrics>,
        watchdog: Arc<crate::watchdog::Watchdog>,
        slots: Arc<tokio::sync::Semaphore>,
    ) -> Self {
        let mut config_vars = WasiConfigVariables::new();
        for (key, value) in &spec.config.env {
            config_vars.insert(key.clone(), value.clone());
        }
        Self {
            engine,
            pre,
            config: Arc::new(spec.config.clone()),
            spec,
            config_vars: Arc::new(config_vars),
            output,
            metrics,
            watchdog,
            slots,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// A free slot in the instance pool. When the pool is full, waits until
    /// the invocation's deadline (a timer only on this slow path).
    async fn slot(&self, deadline: Instant) -> Result<tokio::sync::OwnedSemaphorePermit, Failure> {
        if let Ok(permit) = self.slots.clone().try_acquire_owned() {
            return Ok(permit);
        }
        match tokio::time::timeout_at(deadline.into(), self.slots.clone().acquire_owned()).await {
            Ok(permit) => Ok(permit.expect("the slot semaphore is never closed")),
            Err(_) => Err(Failure::new(
                Outcome::Timeout,
                "no instance slot became free before the timeout (the server is at --max-instances)",
            )),
        }
    }

    fn new_store(&self, deadline: Instant, invocation: &InvocationId) -> Store<HostState> {
        let invocation = Arc::new(Mutex::new(invocation.clone()));
        let output = |stream| GuestOutput {
            target: self.output.clone(),
            invocation: invocation.clone(),
            stream,
        };
        let mut wasi = WasiCtxBuilder::new();
        // No preopened directories and no socket addresses: an empty
        // filesystem and no network besides the allow-listed outbound HTTP.
        wasi.envs(&self.spec.config.env)
            .stdout(output(LogStream::Stdout))
            .stderr(output(LogStream::Stderr));
        let state = HostState {
            table: ResourceTable::new(),
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            hooks: OutboundPolicy {
                config: self.config.clone(),
            },
            limiter: MemoryLimiter::new(self.spec.config.limits.memory.bytes() as usize),
            config_vars: self.config_vars.clone(),
            deadline,
            timed_out: false,
            invocation,
            key_value: self.spec.key_value.clone(),
            documents: self.spec.documents.clone(),
            messaging: self.spec.messaging.clone(),
            objects: self.spec.objects.clone(),
            caller: invoke::CallerIdentity::default(),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limiter);
        store.epoch_deadline_callback(|mut context| {
            let state = context.data_mut();
            if Instant::now() >= state.deadline {
                state.timed_out = true;
                Ok(UpdateDeadline::Interrupt)
            } else {
                // Yield every tick so a busy guest shares its thread, with
                // tokio's yield: the task goes behind every other ready
                // task and the I/O driver's news (new requests), where a
                // plain self-wake would let busy guests take turns among
                // themselves while the driver is polled only every 61
                // polls (seconds, at 10 ms a poll).
                Ok(UpdateDeadline::YieldCustom(
                    1,
                    Box::pin(tokio::task::yield_now()),
                ))
            }
        });
        store.set_epoch_deadline(1);
        store
    }

    fn reuse_limits(&self) -> Option<&domain::ReuseLimits> {
        match &self.spec.config.isolation {
            Isolation::Reuse(reuse) => Some(reuse),
            Isolation::Fresh => None,
        }
    }

    fn take_idle(&self) -> Option<IdleInstance> {
        let reuse = self.reuse_limits()?;
        let mut idle = self
            .idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // The newest instance is at the end; if it has been idle too long,
        // so have all the others. The maintenance task reaps the rest.
        let newest = idle.pop()?;
        if newest.idle_since.elapsed() < reuse.idle_timeout {
            Some(newest)
        } else {
            idle.clear();
            None
        }
    }

    /// Drops kept instances idle for longer than the idle timeout.
    pub fn reap_idle(&self) {
        if let Some(reuse) = self.reuse_limits() {
            let mut idle = self
                .idle
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            idle.retain(|instance| instance.idle_since.elapsed() < reuse.idle_timeout);
        }
    }

    /// An instance for one request: a kept one when the function reuses
    /// instances and one is idle, else a new one (`true`: a cold start).
    /// A failure is recorded on `meter` before it is returned.
    async fn instance(
        &self,
        deadline: Instant,
        id: &InvocationId,
        meter: &Meter,
    ) -> Result<(IdleInstance, bool), Failure> {
        self.take_or_create(deadline, id)
            .await
            .map_err(|(failure, peak)| {
                meter.finish(failure.outcome, peak, true);
                failure
            })
    }

    /// [`Self::instance`], with the peak memory reached on failure.
    async fn take_or_create(
        &self,
        deadline: Instant,
        id: &InvocationId,
    ) -> Result<(IdleInstance, bool), (Failure, u64)> {
        if let Some(mut instance) = self.take_idle() {
            let state = instance.store.data_mut();
            state.deadline = deadline;
            state.timed_out = false;
            *state
                .invocation
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()) = id.clone();
            return Ok((instance, false));
        }
        let slot = self.slot(deadline).await.map_err(|failure| (failure, 0))?;
        let started = Instant::now();
        let mut store = self.new_store(deadline, id);
        // Instantiation runs guest code too (start functions): the epoch
        // ticker must be awake for it to be sliced and timed out, and a
        // registered deadline keeps it so.
        let running = self.watchdog.register(deadline + HOST_TIMEOUT_GRACE);
        let handler = match &self.pre {
            Pre::P2(pre) => pre.instantiate_async(&mut store).await.map(Handler::P2),
            Pre::P3(pre) => pre.instantiate_async(&mut store).await.map(Handler::P3),
        };
        drop(running);
        let handler = handler.map_err(|error| {
            let failure = classify(&error, store.data());
            (failure, store.data().limiter.peak as u64)
        })?;
        self.metrics.instantiated(
            &self.spec.project,
            &self.spec.function,
            started.elapsed().as_secs_f64(),
        );
        let instance = IdleInstance {
            store,
            handler,
            served: 0,
            idle_since: started,
            _slot: slot,
        };
        Ok((instance, true))
    }

    /// Keeps an instance that served a request well, if the function reuses
    /// instances and this one has requests left; otherwise it is dropped,
    /// giving its memory and slot back.
    fn give_back(&self, mut instance: IdleInstance) {
        let Some(reuse) = self.reuse_limits() else {
            return;
        };
        instance.served += 1;
        if instance.served < reuse.max_requests {
            instance.idle_since = Instant::now();
            self.idle
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .push(instance);
        }
    }

    fn wrap_request(
        &self,
        request: http::Request<Body>,
        meter: &Arc<Meter>,
    ) -> http::Request<
        impl http_body::Body<Data = bytes::Bytes, Error = wasmtime_wasi_http::Error> + Send + 'static,
    > {
        let limit = self.spec.config.limits.max_request_body.bytes();
        request.map(|body| {
            CountingBody::request(body, meter.clone(), limit).map_err(request_body_error)
        })
    }

    fn wrap_response<B>(
        &self,
        response: http::Response<B>,
        meter: Arc<Meter>,
        head_request: bool,
    ) -> http::Response<Body>
    where
        B: http_body::Body<Data = bytes::Bytes> + Unpin + Send + 'static,
        B::Error: Into<invoke::BoxError>,
    {
        let limit = self.spec.config.limits.max_response_body.bytes();
        invoke::metered_response(response, meter, limit, head_request)
    }

    async fn invoke_p2(
        self: Arc<Self>,
        invocation: Invocation,
    ) -> Result<http::Response<Body>, Failure> {
        let deadline = Instant::now() + self.spec.config.limits.timeout;
        let Invocation { id, request, meter } = invocation;

        let (mut instance, cold) = self.instance(deadline, &id, &meter).await?;
        instance.store.data_mut().caller = invoke::CallerIdentity::from_headers(request.headers());
        let credential = invoke::Credential::from_headers(request.headers());
        let head_request = request.method() == http::Method::HEAD;
        let request = self.wrap_request(request, &meter);
        let prepared = (|| -> wasmtime::Result<_> {
            let mut http = instance.store.data_mut().http();
            let request = http.new_incoming_request(Scheme::Http, request)?;
            let (sender, receiver) = oneshot::channel();
            let outparam = http.new_response_outparam(sender)?;
            Ok((request, outparam, receiver))
        })();
        let (request, outparam, receiver) = match prepared {
            Ok(prepared) => prepared,
            Err(error) => {
                let failure = Failure::new(
                    Outcome::Internal,
                    format!("preparing the request: {error:#}"),
                );
                meter.finish(failure.outcome, 0, cold);
                return Err(failure);
            }
        };

        let this = self.clone();
        let task_meter = meter.clone();
        // The guest's writes name its caller in the change events they log.
        let actor = instance.store.data().caller.actor();
        let call: GuestCall = Box::pin(invoke::local::with_credential(
            credential,
            domain::actor::with_actor(actor, async move {
                this.metrics.instances_in_flight(1);
                let Handler::P2(proxy) = &instance.handler else {
                    unreachable!("a p2 function has p2 instances")
                };
                let handler = proxy.wasi_http_incoming_handler();
                let mut watch = this.watchdog.register(deadline + HOST_TIMEOUT_GRACE);
                let result = within(
                    &mut watch.expired,
                    handler.call_handle(&mut instance.store, request, outparam),
                )
                .await;
                drop(watch);
                this.metrics.instances_in_flight(-1);
                let peak = instance.store.data().limiter.peak as u64;
                let failure = match result {
                    Ok(Ok(())) => None,
                    Ok(Err(error)) => Some(classify(&error, instance.store.data())),
                    Err(_elapsed) => Some(timeout_failure()),
                };
                task_meter.finish(
                    failure.as_ref().map_or(Outcome::Success, |f| f.outcome),
                    peak,
                    cold,
                );
                drop(task_meter);
                if failure.is_none() {
                    this.give_back(instance);
                }
                failure
            }),
        ));

        // The call runs in the caller's task, not a task of its own: most
        // guests answer and return within one poll, and a spawn would cost
        // a hand-off per request. If the guest answers before returning, the
        // response body carries the rest of the call and drives it.
        match first_of(call, receiver).await {
            Head::Answered(Ok(response), call) => {
                let response = response.map(|body| DriveCall::new(body, call));
                Ok(self.wrap_response(response, meter, head_request))
            }
            Head::Answered(Err(code), call) => {
                meter.answered_with(Outcome::NoResponse);
                if let Some(call) = call {
                    finish_in_background(call);
                }
                Err(Failure::new(
                    Outcome::NoResponse,
                    format!("the function answered with error code {code:?}"),
                ))
            }
            Head::Returned(failure) => {
                drop(meter);
                Err(failure.unwrap_or_else(|| {
                    Failure::new(
                        Outcome::NoResponse,
                        "the function returned without sending a response",
                    )
                }))
            }
        }
    }

    async fn invoke_p3(
        self: Arc<Self>,
        invocation: Invocation,
    ) -> Result<http::Response<Body>, Failure> {
        let deadline = Instant::now() + self.spec.config.limits.timeout;
        let Invocation { id, request, meter } = invocation;
        let (mut instance, cold) = self.instance(deadline, &id, &meter).await?;
        instance.store.data_mut().caller = invoke::CallerIdentity::from_headers(request.headers());
        let credential = invoke::Credential::from_headers(request.headers());
        let head_request = request.method() == http::Method::HEAD;
        let request = self.wrap_request(request, &meter);
        let (request, request_io) = wasmtime_wasi_http::p3::Request::from_http(
            &mut instance.store.data_mut().hooks,
            request,
        );
        let (sender, receiver) = oneshot::channel::<Result<http::Response<Body>, Failure>>();

        let this = self.clone();
        let task_meter = meter.clone();
        let actor = instance.store.data().caller.actor();
        let task = tokio::spawn(invoke::local::with_credential(
            credential,
            domain::actor::with_actor(actor, async move {
                let Handler::P3(service) = &instance.handler else {
                    unreachable!("a p3 function has p3 instances")
                };
                this.metrics.instances_in_flight(1);
                let mut watch = this.watchdog.register(deadline + HOST_TIMEOUT_GRACE);
                let result = within(
                    &mut watch.expired,
                    instance.store.run_concurrent(async |accessor| {
                        let response = match service.handle(accessor, request).await? {
                            Ok(response) => response,
                            Err(code) => {
                                let message =
                                    format!("the function answered with error code {code:?}");
                                task_meter.answered_with(Outcome::NoResponse);
                                let _ =
                                    sender.send(Err(Failure::new(Outcome::NoResponse, message)));
                                return wasmtime::Result::Ok(());
                            }
                        };
                        let response =
                            accessor.with(|store| response.into_http(store, async { Ok(()) }))?;
                        // The store's event loop must keep running while the body
                        // streams: wait until the client side is done with it.
                        let (done, finished) = oneshot::channel::<()>();
                        let response = response.map(|body| NotifyOnDrop { body, _done: done });
                        let response =
                            this.wrap_response(response, task_meter.clone(), head_request);
                        let _ = sender.send(Ok(response));
                        let _ = finished.await;
                        let _ = request_io.await;
                        Ok(())
                    }),
                )
                .await;
                drop(watch);
                this.metrics.instances_in_flight(-1);
                let peak = instance.store.data().limiter.peak as u64;
                let failure = match result {
                    Ok(Ok(Ok(()))) => None,
                    Ok(Ok(Err(error))) | Ok(Err(error)) => {
                        Some(classify(&error, instance.store.data()))
                    }
                    Err(_elapsed) => Some(timeout_failure()),
                };
                task_meter.finish(
                    failure.as_ref().map_or(Outcome::Success, |f| f.outcome),
                    peak,
                    cold,
                );
                if failure.is_none() {
                    this.give_back(instance);
                } else {
                    // The store gives its memory back to the pool before the slot frees.
                    drop(instance);
                }
                drop(task_meter);
                failure
            }),
        ));

        match receiver.await {
            Ok(result) => result,
            Err(_) => {
                drop(meter);
                match task.await {
                    Ok(Some(failure)) => Err(failure),
                    Ok(None) => Err(Failure::new(
                        Outcome::NoResponse,
                        "the function returned without a response",
                    )),
                    Err(error) => Err(Failure::new(
                        Outcome::Internal,
                        format!("the invocation task failed: {error}"),
                    )),
                }
            }
        }
    }
}

/// A guest's `handle` call in progress; it ends with how the run went.
type GuestCall = Pin<Box<dyn Future<Output = Option<Failure>> + Send>>;

type P2Answer = Result<
    http::Response<wasmtime_wasi_http::p2::body::HyperOutgoingBody>,
    wasmtime_wasi_http::p2::bindings::http::types::ErrorCode,
>;

/// What came first: the guest's answer (with the call, if it is still
/// running) or the end of the call without an answer.
enum Head {
    Answered(P2Answer, Option<GuestCall>),
    Returned(Option<Failure>),
}

/// Drives `call` until the guest has either answered or returned.
async fn first_of(call: GuestCall, mut answer: oneshot::Receiver<P2Answer>) -> Head {
    let mut call = Some(call);
    std::future::poll_fn(|cx| {
        if let Some(running) = call.as_mut()
            && let Poll::Ready(failure) = running.as_mut().poll(cx)
        {
            call = None;
            // The call is over: the answer was sent by now or never will be.
            return Poll::Ready(match answer.try_recv() {
                Ok(answer) => {
                    if let Some(failure) = failure {
                        tracing::debug!(?failure, "the function failed after answering");
                    }
                    Head::Answered(answer, None)
                }
                Err(_) => Head::Returned(failure),
            });
        }
        match Pin::new(&mut answer).poll(cx) {
            Poll::Ready(Ok(answer)) => Poll::Ready(Head::Answered(answer, call.take())),
            // The guest dropped its outparam but runs on: wait for the call,
            // whose waker is registered.
            Poll::Ready(Err(_)) | Poll::Pending => Poll::Pending,
        }
    })
    .await
}

/// Runs what is left of a guest call on a task of its own, so that it ends,
/// is recorded and gives its instance back even when nobody waits for it.
fn finish_in_background(call: GuestCall) {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            runtime.spawn(call);
        }
        // Outside a runtime there is nothing to drive it: dropping the call
        // cancels the guest, and the meter records that it never finished.
        Err(_) => drop(call),
    }
}

/// A response body that also drives the guest call producing it, for guests
/// that answer before they return. If the body is dropped first (sent in
/// full, or the client went away), the call finishes in the background.
struct DriveCall<B> {
    body: B,
    call: Option<GuestCall>,
}

impl<B> DriveCall<B> {
    fn new(body: B, call: Option<GuestCall>) -> Self {
        Self { body, call }
    }
}

impl<B> Drop for DriveCall<B> {
    fn drop(&mut self) {
        if let Some(call) = self.call.take() {
            finish_in_background(call);
        }
    }
}

impl<B: http_body::Body + Unpin> http_body::Body for DriveCall<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<B::Data>, B::Error>>> {
        if let Some(call) = self.call.as_mut()
            && call.as_mut().poll(cx).is_ready()
        {
            self.call = None;
        }
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// A response body that signals when it is dropped (fully sent or abandoned).
struct NotifyOnDrop<B> {
    body: B,
    _done: oneshot::Sender<()>,
}

impl<B: http_body::Body + Unpin> http_body::Body for NotifyOnDrop<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<B::Data>, B::Error>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
