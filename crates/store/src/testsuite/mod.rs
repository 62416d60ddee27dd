//! The contract suite: the assertions every backend passes, area by
//! area. A backend's tests run them all with one line,
//! `store::contract_tests!(async_constructor);`, where the constructor
//! makes a fresh, empty backend for each test.

pub mod accounts;
pub mod docs;
pub mod events;
pub mod functions;
pub mod kv;
pub mod objects;
pub mod projects;

use crate::NewVersion;
use domain::{
    FunctionConfig, FunctionName, HttpWorld, InvocationId, InvocationRecord, Outcome, ProjectId,
};

pub(crate) fn name(text: &str) -> FunctionName {
    FunctionName::new(text).unwrap()
}

pub(crate) fn new_version(artifact: &str) -> NewVersion {
    NewVersion {
        artifact: artifact.to_owned(),
        size_bytes: 10,
        runtime: domain::Runtime::Wasm(HttpWorld::P2),
        config: FunctionConfig::default(),
    }
}

pub(crate) fn record(
    project: &ProjectId,
    function: &str,
    id: &str,
    start: i64,
    billed_ms: u64,
    memory_mib: u64,
    outcome: Outcome,
) -> InvocationRecord {
    InvocationRecord {
        id: InvocationId(id.to_owned()),
        project: project.clone(),
        function: name(function),
        version: 1,
        trigger: "http".to_owned(),
        start,
        duration_us: billed_ms * 1000,
        billed_ms,
        memory_mib,
        peak_memory_bytes: 1,
        cpu_us: Some(billed_ms * 500),
        outcome,
        cold: true,
        init_us: Some(billed_ms * 100),
        bytes_in: 0,
        bytes_out: 0,
        auth: Some("user".to_owned()),
        user_id: Some(format!("user-of-{id}")),
    }
}

/// One test per contract, for a backend: `$new` is an async expression
/// giving `(guard, backend)`, made afresh for each test; the guard (a
/// temporary directory, a database to drop) lives as long as the test.
#[macro_export]
macro_rules! contract_tests {
    ($new:expr) => {
        #[tokio::test]
        async fn keeps_the_functions_and_records_contract() {
            let (_guard, store) = $new.await;
            $crate::testsuite::functions::contract(&store).await;
        }

        #[tokio::test]
        async fn keeps_the_users_contract() {
            let (_guard, store) = $new.await;
            $crate::testsuite::accounts::users_contract(&store).await;
        }

        #[tokio::test]
        async fn keeps_the_sessions_contract() {
            let (_guard, store) = $new.await;
            $crate::testsuite::accounts::sessions_contract(&store).await;
        }

        #[tokio::test]
        async fn keeps_the_auth_settings_contract() {
            let (_guard, store) = $new.await;
            $crate::testsuite::accounts::auth_settings_contract(&store).await;
        }

        #[tokio::test]
        async fn keeps_the_signing_keys_contract() {
            let (_guard, store) = $new.await;
            $crate::testsuite::accounts::signing_keys_contract(&store).await;
        }

        #[tokio::test]
        async fn keeps_the_email_codes_contract() {
            let (_guard, store) = $new.await;
            $crate::testsuite::accounts::email_codes_contract(&store).await;
        }

        #[tokio::test]
        async fn keeps_the_second_factors_contract() {
            let (_guard, store) = $new.await;
            $crate::testsuite::accounts::factors_contract(&store).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn one_use_of_a_totp_step_wins() {
            let (_guard, store) = $new.await;
            $crate::testsuite::accounts::one_step_wins_once_contract(::std::sync::Arc::new(store))
                .await;
        }

        #[tokio::test]
        async fn keeps_the_login_tickets_contract() {
            let (_guard, store) = $new.await;
            $crate::testsuite::accounts::login_tickets_contract(&store).await;
        }

        #[tokio::test]
        async fn keeps_the_linked_identities_contract() {
            let (_guard, store) = $new.await;
            $crate::testsuite::accounts::linked_identities_contract(&store).await;
        }

        #[tokio::test]
        async fn keeps_the_pending_flows_contract() {
            let (_guard, store) = $new.await;
            $crate::testsuite::accounts::pending_flows_contract(&store).await;
        }

        #[tokio::test]
        async fn keeps_the_added_refresh_tokens_contract() {
            let (_guard, store) = $new.await;
            $crate::testsuite::accounts::added_refresh_tokens_contract(&store).await;
        }

        #[tokio::test]
        async fn keeps_the_projects_contract() {
            let (_guard, store) = $new.await;
            $crate::testsuite::projects::contract(&store).await;
        }

        #[tokio::test]
        async fn keeps_the_key_value_contract() {
            let (_guard, store) = $new.await;
            $crate::testsuite::kv::contract(&store).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn concurrent_key_value_writes_each_apply_once() {
            let (_guard, store) = $new.await;
            $crate::testsuite::kv::concurrent_writes_each_apply_once(::std::sync::Arc::new(store))
                .await;
        }

        #[tokio::test]
        async fn keeps_the_document_contract() {
            let (_guard, store) = $new.await;
            $crate::testsuite::docs::crud_contract(&store).await;
        }

        #[tokio::test]
        async fn keeps_the_document_query_contract() {
            let (_guard, store) = $new.await;
            $crate::testsuite::docs::query_contract(&store).await;
            $crate::testsuite::docs::plans_agree_contract(&store).await;
        }

        #[tokio::test]
        async fn serves_an_or_with_a_union_of_index_ranges() {
            let (_guard, store) = $new.await;
            $crate::testsuite::docs::or_union_contract(&store).await;
        }

        #[tokio::test]
        async fn keeps_the_large_collection_contract() {
            let (_guard, store) = $new.await;
            $crate::testsuite::docs::large_collection_contract(&store).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn fills_an_index_while_writes_go_on() {
            let (_guard, store) = $new.await;
            $crate::testsuite::docs::index_filled_during_writes_contract(::std::sync::Arc::new(
                store,
            ))
            .await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn a_stream_being_watched_loses_no_change_in_flight() {
            let (_guard, store) = $new.await;
            $crate::testsuite::docs::watch_while_writing_contract(::std::sync::Arc::new(store))
                .await;
        }

        #[tokio::test]
        async fn finishes_an_index_for_a_caller_that_left() {
            let (_guard, store) = $new.await;
            $crate::testsuite::docs::index_made_for_a_caller_that_left_contract(&store).await;
        }

        #[tokio::test]
        async fn keeps_the_object_contract() {
            let (_guard, store) = $new.await;
            $crate::testsuite::objects::objects_contract(&store).await;
        }

        #[tokio::test]
        async fn keeps_the_event_contract() {
            let (_guard, store) = $new.await;
            $crate::testsuite::events::contract(&store).await;
        }
    };
}
