//! `invoke::GuestMessaging` over the event log, bound to one project: the
//! same topics, limits and errors as REST. Messages a function publishes
//! name it as their origin.
use domain::{FunctionName, ProjectId, TopicName, topic_stream};
use invoke::{GuestMessage, GuestMessaging, GuestMessagingError, ServiceFuture};
use std::sync::Arc;
use store::EventStore;
use store::events::{MessageError, NewEvent, check_messages};

pub struct ProjectMessaging {
    pub project: ProjectId,
    pub function: FunctionName,
    pub events: Arc<dyn EventStore>,
}

impl GuestMessaging for ProjectMessaging {
    fn publish<'a>(
        &'a self,
        topic: &'a str,
        messages: Vec<GuestMessage>,
    ) -> ServiceFuture<'a, Vec<String>, GuestMessagingError> {
        Box::pin(async move {
            let topic = TopicName::new(topic)
                .map_err(|error| GuestMessagingError::Invalid(error.to_string()))?;
            let events: Vec<NewEvent> = messages
                .into_iter()
                .map(|message| NewEvent {
                    stream: topic_stream(&topic),
                    kind: "wok.queue.message".to_owned(),
                    subject: message.subject,
                    key: message.key,
                    content_type: message.content_type,
                    data: message.data,
                    origin: Some(self.function.clone()),
                })
                .collect();
            check_messages(&events).map_err(|error| match error {
                MessageError::Invalid(message) => GuestMessagingError::Invalid(message),
                MessageError::TooLarge(message) => GuestMessagingError::TooLarge(message),
            })?;
            let published = self
                .events
                .publish(&self.project, events)
                .await
                .map_err(|error| {
                    tracing::error!("publishing for a guest failed: {error}");
                    GuestMessagingError::Other("publishing failed".to_owned())
                })?;
            Ok(published.into_iter().map(|event| event.id).collect())
        })
    }
}
