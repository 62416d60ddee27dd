//! The `exec` protocol (the OpenFaaS classic watchdog's): a fresh
//! sandboxed process per request, the request body on its stdin, its
//! stdout the response body, its stderr the function's log. The method,
//! path, query and headers are in its environment (`Http_Method`,
//! `Http_Path`, `Http_Query`, `Http_Content_Type`...). The answer is 200
//! once the program writes its first byte; a program that exits non-zero
//! before writing anything fails the request (`function_crashed`, with its
//! status), and one that exits non-zero after cuts the stream. At most
//! `max_instances` processes of a version run at once; more requests wait
//! within their timeout.

use super::*;
use futures::StreamExt;
use tokio::io::AsyncWriteExt;

/// The environment a request is described in.
fn request_env(parts: &http::request::Parts) -> Vec<(String, String)> {
    let mut env = vec![
        ("Http_Method".to_owned(), parts.method.to_string()),
        ("Http_Path".to_owned(), parts.uri.path().to_owned()),
        (
            "Http_Query".to_owned(),
            parts.uri.query().unwrap_or("").to_owned(),
        ),
    ];
    for (name, value) in &parts.headers {
        let Ok(value) = value.to_str() else { continue };
        // content-type -> Http_Content_Type
        let name: String = name
            .as_str()
            .split('-')
            .map(|word| {
                let mut chars = word.chars();
                chars.next().map_or_else(String::new, |first| {
                    first.to_ascii_uppercase().to_string() + chars.as_str()
                })
            })
            .collect::<Vec<_>>()
            .join("_");
        env.push((format!("Http_{name}"), value.to_owned()));
    }
    env
}

/// Why the program ended, for its caller.
fn describe(ended: Option<Ended>) -> (Outcome, String) {
    match ended {
        Some(Ended {
            out_of_memory: true,
            ..
        }) => (
            Outcome::OutOfMemory,
            "the program ran out of memory".to_owned(),
        ),
        Some(Ended {
            status: Some(status),
            ..
        }) if status > 128 => (
            Outcome::Crashed,
            format!("the program was killed by signal {}", status - 128),
        ),
        Some(Ended {
            status: Some(status),
            ..
        }) => (
            Outcome::Crashed,
            format!("the program exited with status {status}; see its logs"),
        ),
        _ => (Outcome::Crashed, "the program was killed".to_owned()),
    }
}

/// One request's process: killed if it outlives its request, and its
/// record finished, however the request ends.
struct Run {
    pool: Arc<Pool>,
    instance: Arc<Instance>,
    meter: Arc<Meter>,
    finished: bool,
    _slot: tokio::sync::OwnedSemaphorePermit,
}

impl Run {
    fn finish(&mut self, outcome: Outcome) {
        if !self.finished {
            self.finished = true;
            // The process was started for this call: all its CPU is the
            // call's (read at its end, before its group is removed).
            let ended = *self.instance.ended.borrow();
            let cpu = ended
                .and_then(|ended| ended.cpu_us)
                .or_else(|| self.instance.group.cpu_micros());
            if let Some(cpu) = cpu {
                self.meter.cpu_time(cpu);
            }
            self.meter
                .finish(outcome, self.instance.peak_memory(), true);
        }
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        // Dropped before its end: the client left (the counting body says
        // so to the meter).
        self.finish(Outcome::Success);
        if self.instance.is_running() {
            self.instance.kill();
        }
        self.pool
            .metrics
            .instance_state(Some(InstanceState::Busy), None);
    }
}

impl Pool {
    pub(super) async fn call_exec(
        self: Arc<Self>,
        invocation: Invocation,
    ) -> Result<http::Response<Body>, Failure> {
        let limits = self.config.limits.clone();
        let deadline = Instant::now() + limits.timeout;
        let Invocation { id, request, meter } = invocation;
        let failed = |failure: Failure| {
            meter.finish(failure.outcome, 0, true);
            failure
        };
        let slot = tokio::time::timeout_at(deadline, self.exec_slots.clone().acquire_owned())
            .await
            .map_err(|_| {
                failed(Failure::new(
                    Outcome::Timeout,
                    "no instance was free within the function's timeout",
                ))
            })?
            .map_err(|_| failed(Failure::new(Outcome::Internal, "the function is closed")))?;
        let permit = self.instance_permit(deadline).await.map_err(failed)?;
        let head_request = request.method() == http::Method::HEAD;
        let (parts, body) = request.into_parts();
        let begun = Instant::now();
        // Launched in a task of its own: a caller that goes mid-way must
        // not leave a process nobody watches.
        let (sent, received) = tokio::sync::oneshot::channel();
        let this = self.clone();
        let env = request_env(&parts);
        tokio::spawn(async move {
            let launched = this.launch(this.sandbox.next_id(), permit, true, env).await;
            if let Err(Ok(launched)) = sent.send(launched) {
                launched.instance.kill();
            }
        });
        let launched = received
            .await
            .unwrap_or_else(|_| Err(Failure::new(Outcome::Internal, "the launch failed")))
            .map_err(failed)?;
        self.metrics
            .instantiated(&self.project, &self.function, begun.elapsed().as_secs_f64());
        meter.init_time(begun.elapsed().as_micros() as u64);
        self.metrics.instance_state(None, Some(InstanceState::Busy));
        // A process per call has no start to boost: its share from the first.
        let millis = self.config.process.cpu_millis_for(limits.memory);
        if let Err(error) = launched.instance.group.cap_cpu(millis) {
            launched.instance.kill();
            return Err(failed(Failure::new(
                Outcome::Internal,
                format!("capping the instance's CPU: {error}"),
            )));
        }
        let Launched {
            instance,
            stdout,
            stderr,
            stdin,
        } = launched;
        *instance.serving.lock().unwrap_or_else(|p| p.into_inner()) = Some(id.clone());
        let mut run = Run {
            pool: self.clone(),
            instance: instance.clone(),
            meter: meter.clone(),
            finished: false,
            _slot: slot,
        };
        tokio::spawn(
            self.clone()
                .read_log(instance.clone(), stderr, LogStream::Stderr),
        );
        // The body goes to stdin as it comes; its end closes stdin.
        if let Some(stdin) = stdin {
            let body = CountingBody::request(body, meter.clone(), limits.max_request_body.bytes());
            let writer = instance.clone();
            tokio::spawn(async move {
                let Ok(mut stdin) = tokio::net::unix::pipe::Sender::from_owned_fd(stdin) else {
                    return;
                };
                let mut body = std::pin::pin!(body);
                while let Some(frame) = body.frame().await {
                    let Ok(frame) = frame else {
                        // The body broke off (the client left, or it grew
                        // past its limit): the program must not answer a
                        // part as if it were the whole.
                        writer.kill();
                        return;
                    };
                    if let Ok(data) = frame.into_data()
                        && stdin.write_all(&data).await.is_err()
                    {
                        // The program stopped reading: what it answers stands.
                        return;
                    }
                }
            });
        }
        let stdout = tokio::net::unix::pipe::Receiver::from_owned_fd(stdout)
            .map_err(|error| Failure::new(Outcome::Internal, error.to_string()))?;
        let mut output = tokio_util::io::ReaderStream::new(stdout);
        let first = match tokio::time::timeout_at(deadline, output.next()).await {
            Err(_) => {
                instance.kill();
                run.finish(Outcome::Timeout);
                return Err(Failure::new(
                    Outcome::Timeout,
                    "the function ran past its timeout",
                ));
            }
            Ok(Some(Ok(bytes))) => Some(bytes),
            Ok(None) | Ok(Some(Err(_))) => None,
        };
        if first.is_none() {
            // Nothing written: the exit status decides.
            let ended = instance.ending(deadline - Instant::now()).await;
            if !matches!(
                ended,
                Some(Ended {
                    status: Some(0),
                    out_of_memory: false,
                    ..
                })
            ) {
                let (outcome, message) = if ended.is_none() {
                    instance.kill();
                    (
                        Outcome::Timeout,
                        "the function ran past its timeout".to_owned(),
                    )
                } else {
                    describe(ended)
                };
                run.finish(outcome);
                return Err(Failure::new(outcome, message));
            }
        }
        let state = (run, first, output);
        let stream = futures::stream::unfold(Some(state), move |state| async move {
            let (mut run, first, mut output) = state?;
            if let Some(bytes) = first {
                return Some((Ok(Frame::data(bytes)), Some((run, None, output))));
            }
            match tokio::time::timeout_at(deadline, output.next()).await {
                Err(_) => {
                    run.instance.kill();
                    run.finish(Outcome::Timeout);
                    Some((
                        Err(BoxError::from("the function ran past its timeout")),
                        None,
                    ))
                }
                Ok(Some(Ok(bytes))) => Some((Ok(Frame::data(bytes)), Some((run, None, output)))),
                Ok(Some(Err(error))) => {
                    run.finish(Outcome::NoResponse);
                    Some((Err(BoxError::from(error)), None))
                }
                Ok(None) => {
                    let ended = run.instance.ending(deadline - Instant::now()).await;
                    if matches!(
                        ended,
                        Some(Ended {
                            status: Some(0),
                            out_of_memory: false,
                            ..
                        })
                    ) {
                        run.finish(Outcome::Success);
                        None
                    } else {
                        let (outcome, message) = describe(ended);
                        run.finish(outcome);
                        Some((Err(BoxError::from(message)), None))
                    }
                }
            }
        });
        let response = http::Response::builder()
            .status(http::StatusCode::OK)
            .header(http::header::CONTENT_TYPE, "application/octet-stream")
            .body(http_body_util::StreamBody::new(stream.boxed()))
            .expect("a valid response");
        Ok(invoke::metered_response(
            response,
            meter,
            limits.max_response_body.bytes(),
            head_request,
        ))
    }
}
