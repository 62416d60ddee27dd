//! `wok:auth@0.1.0` for guests (`wit/auth`): who called the invocation
//! that runs now, as the gateway verified it and set it in the request's
//! `x-wok-*` headers (`invoke::CallerIdentity`). Set on the store at the
//! start of every invocation, so a reused instance never sees its
//! previous caller.
use crate::host::HostState;
use invoke::{AuthKind, CallerIdentity};
use wasmtime::component::{HasSelf, Linker};

mod generated {
    wasmtime::component::bindgen!({
        path: "../../wit/auth",
        world: "wok:auth/imports",
    });
}

use generated::wok::auth::caller::{self as wit, Host, Identity};

impl Host for HostState {
    fn current(&mut self) -> Identity {
        let CallerIdentity {
            auth,
            user_id,
            session_id,
            claims,
            aal,
            key_id,
        } = self.caller.clone();
        Identity {
            auth: match auth {
                AuthKind::None => wit::AuthKind::None,
                AuthKind::PublicKey => wit::AuthKind::PublicKey,
                AuthKind::ServiceKey => wit::AuthKind::ServiceKey,
                AuthKind::Admin => wit::AuthKind::Admin,
                AuthKind::Function => wit::AuthKind::Function,
                AuthKind::User => wit::AuthKind::User,
            },
            user_id,
            session_id,
            claims,
            aal,
            key_id,
        }
    }
}

pub fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    wit::add_to_linker::<HostState, HasSelf<HostState>>(linker, |state| state)
}
