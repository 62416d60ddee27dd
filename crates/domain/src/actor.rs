//! Who a write is made for, so that the change events it logs can say so
//! (the CloudEvents `authtype` and `authid` a triggered function reads).
//!
//! The gateway runs each request's handling under the caller
//! ([`with_actor`]); a guest's invocation runs under its caller the same
//! way. A store that logs a change reads [`current_actor`] where the write
//! is asked for (a store that makes the write on a thread of its own takes
//! the actor along with [`Captured`]).
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Who a write is made for: how it proved who it is (`none`,
/// `public-key`, `service-key`, `admin`, `function`, `user`) and its id
/// (the user's, the key's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub kind: String,
    pub id: Option<String>,
}

impl Actor {
    /// `KIND` or `KIND:ID`, as stored.
    pub fn to_text(&self) -> String {
        match &self.id {
            Some(id) => format!("{}:{id}", self.kind),
            None => self.kind.clone(),
        }
    }

    pub fn from_text(text: &str) -> Self {
        match text.split_once(':') {
            Some((kind, id)) => Actor {
                kind: kind.to_owned(),
                id: Some(id.to_owned()),
            },
            None => Actor {
                kind: text.to_owned(),
                id: None,
            },
        }
    }
}

thread_local! {
    static ACTOR: std::cell::RefCell<Option<Actor>> = const { std::cell::RefCell::new(None) };
}

/// The actor the current poll writes for, if any.
pub fn current_actor() -> Option<Actor> {
    ACTOR.with(|current| current.borrow().clone())
}

/// A future that runs on behalf of an actor.
pub struct WithActor<F> {
    actor: Option<Actor>,
    inner: Pin<Box<F>>,
}

/// Runs `future` on behalf of `actor`.
pub fn with_actor<F: Future>(actor: Actor, future: F) -> WithActor<F> {
    WithActor {
        actor: Some(actor),
        inner: Box::pin(future),
    }
}

impl<F: Future> Future for WithActor<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let previous = ACTOR.with(|current| current.replace(self.actor.clone()));
        let result = self.inner.as_mut().poll(cx);
        ACTOR.with(|current| *current.borrow_mut() = previous);
        result
    }
}

/// The actor of the current poll, taken along to run work elsewhere.
pub struct Captured(Option<Actor>);

impl Captured {
    pub fn now() -> Self {
        Self(current_actor())
    }

    /// Runs `work` with the captured actor as the current one.
    pub fn enter<T>(&self, work: impl FnOnce() -> T) -> T {
        let previous = ACTOR.with(|current| current.replace(self.0.clone()));
        let result = work();
        ACTOR.with(|current| *current.borrow_mut() = previous);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_actor_is_current_within_its_future_and_captured_work_only() {
        let ann = Actor::from_text("user:ann");
        assert_eq!(ann.id.as_deref(), Some("ann"));
        assert_eq!(Actor::from_text(&ann.to_text()), ann);
        let seen = futures_lite_block_on(with_actor(ann.clone(), async { current_actor() }));
        assert_eq!(seen, Some(ann.clone()));
        assert_eq!(current_actor(), None);
        let captured = futures_lite_block_on(with_actor(ann.clone(), async { Captured::now() }));
        assert_eq!(captured.enter(current_actor), Some(ann));
        assert_eq!(current_actor(), None);
    }

    /// Polls a future that never waits.
    fn futures_lite_block_on<F: Future>(future: F) -> F::Output {
        let mut future = std::pin::pin!(future);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match future.as_mut().poll(&mut cx) {
            Poll::Ready(output) => output,
            Poll::Pending => panic!("the future waited"),
        }
    }
}
