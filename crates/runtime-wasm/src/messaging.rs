//! `wok:messaging@0.1.0` for guests (`wit/messaging`): publishing to the
//! function's project's topics (`invoke::GuestMessaging`), the same topics
//! as REST. The call is async (it waits for the write to be durable).
use crate::host::HostState;
use invoke::{GuestMessage, GuestMessagingError};
use wasmtime::component::{HasSelf, Linker};

mod generated {
    wasmtime::component::bindgen!({
        path: "../../wit/messaging",
        world: "wok:messaging/imports",
        imports: { default: async | trappable },
    });
}

use generated::wok::messaging::topics::{self as wit, Error, Host, Message};

fn guest_error(error: GuestMessagingError) -> Error {
    match error {
        GuestMessagingError::Invalid(message) => Error::Invalid(message),
        GuestMessagingError::TooLarge(message) => Error::TooLarge(message),
        GuestMessagingError::Other(message) => Error::Other(message),
    }
}

impl Host for HostState {
    async fn publish(
        &mut self,
        topic: String,
        messages: Vec<Message>,
    ) -> wasmtime::Result<Result<Vec<String>, Error>> {
        let messaging = self.messaging.clone();
        let messages = messages
            .into_iter()
            .map(|message| GuestMessage {
                data: message.data,
                content_type: message.content_type,
                key: message.key,
                subject: message.subject,
            })
            .collect();
        Ok(messaging
            .publish(&topic, messages)
            .await
            .map_err(guest_error))
    }
}

pub fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    wit::add_to_linker::<HostState, HasSelf<HostState>>(linker, |state| state)
}
