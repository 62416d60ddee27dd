//! The platform's Prometheus registry, served at `/metrics`: invocations
//! by outcome, durations and instantiation times (counted from records, on
//! the recorder's thread), the instances in flight and cold starts (as
//! `invoke::RuntimeMetrics`), event deliveries, their latency, retries and
//! dead letters, and per trigger the gauges of backlog, retrying events
//! and dead letters (as `events::DeliveryMetrics`), and the gateway's
//! counts: connections open, shed and timed out, throttled calls, refused
//! asynchronous requests, closed realtime sockets, dropped log lines.
use domain::{FunctionName, InvocationRecord, ProjectId};
use invoke::RuntimeMetrics;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    project: String,
    function: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FunctionLabels {
    function: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ScaleLabels {
    function: String,
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ShedLabels {
    how: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TimeoutLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TriggerLabels {
    function: String,
    trigger: String,
    kind: &'static str,
}

impl TriggerLabels {
    fn of(target: &events::Target) -> Self {
        Self {
            function: Metrics::function_label(&target.project, &target.function),
            trigger: target.trigger.name.to_string(),
            kind: target.trigger.kind(),
        }
    }
}

/// The platform's Prometheus metrics.
pub struct Metrics {
    event_deliveries: Family<TriggerLabels, Counter>,
    event_latency: Family<TriggerLabels, Histogram>,
    event_retries: Family<TriggerLabels, Counter>,
    event_dead_letters: Family<TriggerLabels, Counter>,
    event_backlog: Family<TriggerLabels, Gauge>,
    event_retrying: Family<TriggerLabels, Gauge>,
    event_dead: Family<TriggerLabels, Gauge>,
    registry: Registry,
    invocations: Family<OutcomeLabels, Counter>,
    duration: Family<FunctionLabels, Histogram>,
    instantiation: Family<FunctionLabels, Histogram>,
    in_flight: Gauge,
    response_head: Histogram,
    process_instances: Family<StateLabels, Gauge>,
    scale_events: Family<ScaleLabels, Counter>,
    throttled: Family<FunctionLabels, Counter>,
    log_lines_dropped: Counter,
    async_refused: Family<FunctionLabels, Counter>,
    realtime_closed: Family<TimeoutLabels, Counter>,
    connections_open: Gauge,
    connections_shed: Family<ShedLabels, Counter>,
    connections_timed_out: Family<TimeoutLabels, Counter>,
}

/// Fine below a millisecond, where the platform's own overhead shows.
fn response_head_buckets() -> impl Iterator<Item = f64> {
    [
        10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 125, 150, 200, 250, 300, 400, 500, 750, 1_000,
        2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
        10_000_000, 60_000_000,
    ]
    .into_iter()
    .map(|micros| micros as f64 / 1e6)
}

/// Event times are whole milliseconds: buckets from 1 ms to 5 min.
fn event_latency_buckets() -> impl Iterator<Item = f64> {
    [
        1, 2, 3, 4, 5, 7, 10, 15, 20, 30, 40, 50, 75, 100, 150, 200, 300, 500, 750, 1_000, 2_000,
        5_000, 10_000, 30_000, 60_000, 300_000,
    ]
    .into_iter()
    .map(|millis| millis as f64 / 1e3)
}

fn latency_buckets() -> impl Iterator<Item = f64> {
    // 10 µs to ~84 s.
    prometheus_client::metrics::histogram::exponential_buckets(0.00001, 2.5, 18)
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("wok");
        let invocations = Family::<OutcomeLabels, Counter>::default();
        let duration = Family::<FunctionLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(latency_buckets())
        });
        let instantiation = Family::<FunctionLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(latency_buckets())
        });
        let in_flight = Gauge::default();
        let process_instances = Family::<StateLabels, Gauge>::default();
        let scale_events = Family::<ScaleLabels, Counter>::default();
        registry.register(
            "process_instances",
            "Instances of native functions by state (starting, busy, idle)",
            process_instances.clone(),
        );
        registry.register(
            "scale_events",
            "Instances of native functions started for waiting requests (out) or stopped when idle (in)",
            scale_events.clone(),
        );
        let response_head = Histogram::new(response_head_buckets());
        let throttled = Family::<FunctionLabels, Counter>::default();
        let log_lines_dropped = Counter::default();
        let event_deliveries = Family::<TriggerLabels, Counter>::default();
        let event_latency = Family::<TriggerLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(event_latency_buckets())
        });
        let event_retries = Family::<TriggerLabels, Counter>::default();
        let event_dead_letters = Family::<TriggerLabels, Counter>::default();
        let event_backlog = Family::<TriggerLabels, Gauge>::default();
        let event_retrying = Family::<TriggerLabels, Gauge>::default();
        let event_dead = Family::<TriggerLabels, Gauge>::default();
        registry.register(
            "event_backlog",
            "Events of a trigger's stream not yet read (queue depth)",
            event_backlog.clone(),
        );
        registry.register(
            "event_retrying",
            "Events of a trigger waiting for a retry",
            event_retrying.clone(),
        );
        registry.register(
            "event_dead_letter_size",
            "Dead letters of a trigger",
            event_dead.clone(),
        );
        registry.register(
            "event_deliveries",
            "Events delivered to functions by trigger",
            event_deliveries.clone(),
        );
        registry.register(
            "event_delivery_latency_seconds",
            "Time from an event being logged to its acknowledged delivery",
            event_latency.clone(),
        );
        registry.register(
            "event_retries",
            "Failed deliveries that will be tried again",
            event_retries.clone(),
        );
        registry.register(
            "event_dead_letters",
            "Events that became dead letters",
            event_dead_letters.clone(),
        );
        registry.register(
            "invocations",
            "Invocations by function and outcome",
            invocations.clone(),
        );
        registry.register(
            "invocation_duration_seconds",
            "Invocation wall-clock duration",
            duration.clone(),
        );
        registry.register(
            "instantiation_seconds",
            "Time to create a new instance (cold start)",
            instantiation.clone(),
        );
        registry.register(
            "instances_in_flight",
            "Instances serving an invocation now",
            in_flight.clone(),
        );
        registry.register(
            "response_head_seconds",
            "Time from a function request reaching wok to its response head being ready",
            response_head.clone(),
        );
        registry.register(
            "throttled",
            "Invocations refused for concurrency (429)",
            throttled.clone(),
        );
        registry.register(
            "log_lines_dropped",
            "Guest log lines dropped because the writer fell behind",
            log_lines_dropped.clone(),
        );
        let async_refused = Family::<FunctionLabels, Counter>::default();
        registry.register(
            "async_refused",
            "Asynchronous requests refused because the function's queue was full (429)",
            async_refused.clone(),
        );
        let realtime_closed = Family::<TimeoutLabels, Counter>::default();
        registry.register(
            "realtime_closed",
            "Realtime connections closed by the server: slow_consumer, write_timeout, revoked, protocol",
            realtime_closed.clone(),
        );
        let connections_open = Gauge::default();
        let connections_shed = Family::<ShedLabels, Counter>::default();
        let connections_timed_out = Family::<TimeoutLabels, Counter>::default();
        registry.register(
            "connections_open",
            "HTTP connections open now",
            connections_open.clone(),
        );
        registry.register(
            "connections_shed",
            "Connections shed at the connection limit: idle ones closed to make room (closed_idle), new ones refused (refused)",
            connections_shed.clone(),
        );
        registry.register(
            "connections_timed_out",
            "Connections closed for a timeout: header, idle, body (too slow) or write (a client not reading)",
            connections_timed_out.clone(),
        );
        Self {
            async_refused,
            realtime_closed,
            connections_open,
            connections_shed,
            connections_timed_out,
            event_deliveries,
            event_latency,
            event_retries,
            event_dead_letters,
            event_backlog,
            event_retrying,
            event_dead,
            registry,
            invocations,
            duration,
            instantiation,
            in_flight,
            response_head,
            process_instances,
            scale_events,
            throttled,
            log_lines_dropped,
        }
    }

    fn function_label(project: &ProjectId, function: &FunctionName) -> String {
        format!("{project}/{function}")
    }

    pub fn observe(&self, record: &InvocationRecord) {
        let function = Self::function_label(&record.project, &record.function);
        self.invocations
            .get_or_create(&OutcomeLabels {
                project: record.project.to_string(),
                function: record.function.to_string(),
                outcome: record.outcome.code(),
            })
            .inc();
        self.duration
            .get_or_create(&FunctionLabels { function })
            .observe(record.duration_us as f64 / 1e6);
    }

    /// How long a function request took to get its response head.
    pub fn response_head(&self, seconds: f64) {
        self.response_head.observe(seconds);
    }

    pub fn throttled(&self, project: &ProjectId, function: &FunctionName) {
        self.throttled
            .get_or_create(&FunctionLabels {
                function: Self::function_label(project, function),
            })
            .inc();
    }

    pub fn async_refused(&self, project: &ProjectId, function: &FunctionName) {
        self.async_refused
            .get_or_create(&FunctionLabels {
                function: Self::function_label(project, function),
            })
            .inc();
    }

    /// A realtime connection the server closed, and why.
    pub fn realtime_closed(&self, reason: &'static str) {
        self.realtime_closed
            .get_or_create(&TimeoutLabels { reason })
            .inc();
    }

    pub fn log_line_dropped(&self) {
        self.log_lines_dropped.inc();
    }

    pub fn connection_opened(&self) {
        self.connections_open.inc();
    }

    pub fn connection_closed(&self) {
        self.connections_open.dec();
    }

    /// A connection shed at the limit: `closed_idle` or `refused`.
    pub fn connection_shed(&self, how: &'static str) {
        self.connections_shed
            .get_or_create(&ShedLabels { how })
            .inc();
    }

    /// A connection closed for a timeout (`header`, `idle`, `body`, `write`).
    pub fn connection_timed_out(&self, reason: &'static str) {
        self.connections_timed_out
            .get_or_create(&TimeoutLabels { reason })
            .inc();
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String");
        text
    }
}

impl RuntimeMetrics for Metrics {
    fn instantiated(&self, project: &ProjectId, function: &FunctionName, seconds: f64) {
        let function = Self::function_label(project, function);
        self.instantiation
            .get_or_create(&FunctionLabels { function })
            .observe(seconds);
    }

    fn instances_in_flight(&self, delta: i64) {
        self.in_flight.inc_by(delta);
    }

    fn instance_state(
        &self,
        from: Option<invoke::InstanceState>,
        to: Option<invoke::InstanceState>,
    ) {
        if let Some(from) = from {
            self.process_instances
                .get_or_create(&StateLabels {
                    state: from.as_str(),
                })
                .dec();
        }
        if let Some(to) = to {
            self.process_instances
                .get_or_create(&StateLabels { state: to.as_str() })
                .inc();
        }
    }

    fn scaled(&self, project: &ProjectId, function: &FunctionName, scale: invoke::Scale) {
        let labels = ScaleLabels {
            function: Self::function_label(project, function),
            direction: match scale {
                invoke::Scale::Out => "out",
                invoke::Scale::In => "in",
            },
        };
        self.scale_events.get_or_create(&labels).inc();
    }
}

impl events::DeliveryMetrics for Metrics {
    fn delivered(&self, target: &events::Target, latency: std::time::Duration) {
        let labels = TriggerLabels::of(target);
        self.event_latency
            .get_or_create(&labels)
            .observe(latency.as_secs_f64());
        self.event_deliveries.get_or_create(&labels).inc();
    }

    fn retried(&self, target: &events::Target) {
        self.event_retries
            .get_or_create(&TriggerLabels::of(target))
            .inc();
    }

    fn standing(&self, target: &events::Target, backlog: u64, retrying: u64, dead: u64) {
        let labels = TriggerLabels::of(target);
        self.event_backlog
            .get_or_create(&labels)
            .set(backlog as i64);
        self.event_retrying
            .get_or_create(&labels)
            .set(retrying as i64);
        self.event_dead.get_or_create(&labels).set(dead as i64);
    }

    fn dead_lettered(&self, target: &events::Target) {
        self.event_dead_letters
            .get_or_create(&TriggerLabels::of(target))
            .inc();
    }
}
