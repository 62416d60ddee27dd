//! The event log on PostgreSQL (being written).
use crate::PgStore;
use domain::{FunctionName, ProjectId, TriggerName, UnixMillis};
use store::StoreError;
use store::events::*;

fn unwritten() -> StoreError {
    StoreError::backend("events are not written yet", false)
}

#[store::async_trait]
impl EventStore for PgStore {
    async fn publish(
        &self,
        _project: &ProjectId,
        _events: Vec<NewEvent>,
    ) -> Result<Vec<Event>, StoreError> {
        Err(unwritten())
    }

    async fn events(
        &self,
        _project: &ProjectId,
        _stream: &str,
        _after: i64,
        _limit: u32,
    ) -> Result<Vec<Event>, StoreError> {
        Err(unwritten())
    }

    async fn backlog(
        &self,
        _project: &ProjectId,
        _stream: &str,
        _after: i64,
    ) -> Result<u64, StoreError> {
        Err(unwritten())
    }

    async fn position_at(
        &self,
        _project: &ProjectId,
        _stream: &str,
        _time: UnixMillis,
    ) -> Result<i64, StoreError> {
        Err(unwritten())
    }

    async fn subscriptions(
        &self,
        _project: &ProjectId,
        _function: &FunctionName,
    ) -> Result<Vec<Subscription>, StoreError> {
        Err(unwritten())
    }

    async fn advance(
        &self,
        _project: &ProjectId,
        _function: &FunctionName,
        _trigger: &TriggerName,
        _cursor: i64,
        _failed: Vec<FailedEvent>,
    ) -> Result<(), StoreError> {
        Err(unwritten())
    }

    async fn schedule(
        &self,
        _project: &ProjectId,
        _function: &FunctionName,
        _trigger: &TriggerName,
        _event: NewEvent,
        _at: UnixMillis,
    ) -> Result<Event, StoreError> {
        Err(unwritten())
    }

    async fn set_cursor(
        &self,
        _project: &ProjectId,
        _function: &FunctionName,
        _trigger: &TriggerName,
        _cursor: i64,
    ) -> Result<bool, StoreError> {
        Err(unwritten())
    }

    async fn failures_due(
        &self,
        _project: &ProjectId,
        _function: &FunctionName,
        _trigger: &TriggerName,
        _now: UnixMillis,
        _limit: u32,
    ) -> Result<Vec<FailedEvent>, StoreError> {
        Err(unwritten())
    }

    async fn retry_state(
        &self,
        _project: &ProjectId,
        _function: &FunctionName,
        _trigger: &TriggerName,
    ) -> Result<(Option<UnixMillis>, Vec<String>), StoreError> {
        Err(unwritten())
    }

    async fn settle(
        &self,
        _project: &ProjectId,
        _function: &FunctionName,
        _trigger: &TriggerName,
        _seq: i64,
        _settle: Settle,
    ) -> Result<(), StoreError> {
        Err(unwritten())
    }

    async fn dead_letters(
        &self,
        _project: &ProjectId,
        _filter: &FailedFilter,
        _after: i64,
        _limit: u32,
    ) -> Result<Vec<FailedEvent>, StoreError> {
        Err(unwritten())
    }

    async fn failure_counts(
        &self,
        _project: &ProjectId,
    ) -> Result<Vec<(FunctionName, TriggerName, u64, u64)>, StoreError> {
        Err(unwritten())
    }

    async fn redrive(&self, _project: &ProjectId, _filter: FailedFilter) -> Result<u64, StoreError> {
        Err(unwritten())
    }

    async fn purge_dead(
        &self,
        _project: &ProjectId,
        _filter: FailedFilter,
    ) -> Result<u64, StoreError> {
        Err(unwritten())
    }

    async fn prune_events(
        &self,
        _project: &ProjectId,
        _before: UnixMillis,
    ) -> Result<u64, StoreError> {
        Err(unwritten())
    }

    async fn enqueue_async(
        &self,
        _project: &ProjectId,
        _function: &FunctionName,
        _request: AsyncRequest,
    ) -> Result<(AsyncInvocation, bool), StoreError> {
        Err(unwritten())
    }

    async fn record_async(
        &self,
        _project: &ProjectId,
        _id: &str,
        _attempt: AsyncAttempt,
    ) -> Result<(), StoreError> {
        Err(unwritten())
    }

    async fn async_invocation(
        &self,
        _project: &ProjectId,
        _id: &str,
    ) -> Result<Option<AsyncInvocation>, StoreError> {
        Err(unwritten())
    }

    async fn watch_stream(&self, _project: &ProjectId, _stream: &str) -> Result<(), StoreError> {
        Err(unwritten())
    }

    fn on_events(&self, hook: Hook) {
        crate::set_hook(self, hook);
    }
}
