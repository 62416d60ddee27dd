//! The periodic chores of a server: aborting abandoned multipart uploads,
//! pruning old events, and, when nodes share a database, deleting expired
//! key-value entries and sweeping blobs that nothing names.
//!
//! Each chore runs on one node of those sharing a store: the node holding
//! the lease `maintenance/NAME`, taken before every run (so renewed by its
//! holder) and taken over by another node once its holder has left it
//! for three periods, or at once when its holder stops ([`release`]). A
//! store of one node grants every lease.
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use store::events::EventStore;

/// A blob that no object or part names is swept only once it is this old:
/// an upload in flight on some node (written, not yet named by its
/// commit) is younger.
pub(crate) const SWEEP_GRACE: Duration = Duration::from_secs(3600);
/// How often the sweep and the key-value purge run in cluster mode.
const CLUSTER_CHORES_EVERY: Duration = Duration::from_secs(600);

/// The chores' names (their leases are `maintenance/NAME`).
pub(crate) const UPLOAD_EXPIRY: &str = "upload-expiry";
pub(crate) const EVENT_PRUNING: &str = "event-pruning";
const KV_EXPIRY: &str = "kv-expiry";
const BLOB_SWEEP: &str = "blob-sweep";
const CHORES: [&str; 4] = [UPLOAD_EXPIRY, EVENT_PRUNING, KV_EXPIRY, BLOB_SWEEP];

/// Gives up this node's chores, for the other nodes to take at once (at a
/// stop, once the chores' tasks are stopped).
pub(crate) async fn release(events: &dyn EventStore, holder: &str) {
    for name in CHORES {
        if let Err(error) = events.release(&format!("maintenance/{name}"), holder).await {
            tracing::warn!("{name}: giving up the lease of the chore: {error}");
        }
    }
}

/// Runs `chore` at start and then every `every`, whenever this node holds
/// the chore's lease.
pub(crate) async fn on_one_node<F>(
    events: Arc<dyn EventStore>,
    holder: String,
    name: &'static str,
    every: Duration,
    mut chore: impl FnMut() -> F,
) where
    F: Future<Output = ()>,
{
    let lease = format!("maintenance/{name}");
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match events.lease(&lease, &holder, every * 3).await {
            Ok(Some(_)) => chore().await,
            Ok(None) => {}
            Err(error) => tracing::warn!("{name}: taking the lease of the chore: {error}"),
        }
    }
}

/// Every `age / 4` (at most hourly, at least every 100 ms).
pub(crate) fn quarter(age: Duration) -> Duration {
    (age / 4).clamp(Duration::from_millis(100), Duration::from_secs(3600))
}

/// Aborts the multipart uploads begun more than `age` ago.
pub(crate) async fn expire_uploads(objects: &objects::Objects, age: Duration) {
    match objects.expire_uploads(age).await {
        Ok(0) => {}
        Ok(expired) => tracing::info!("aborted {expired} abandoned multipart uploads"),
        Err(error) => tracing::warn!("expiring abandoned multipart uploads: {error}"),
    }
}

/// Deletes old events every trigger has passed, project by project.
pub(crate) async fn prune_events(
    store: &dyn store::ProjectStore,
    events: &dyn EventStore,
    retention: Duration,
) {
    let projects = match store.list_projects().await {
        Ok(projects) => projects,
        Err(error) => {
            tracing::warn!("pruning events: listing projects: {error}");
            return;
        }
    };
    let before = domain::now_millis() - retention.as_millis() as i64;
    for project in projects {
        match events.prune_events(&project.id, before).await {
            Ok(0) => {}
            Ok(pruned) => {
                tracing::info!("pruned {pruned} old events of project {}", project.id)
            }
            Err(error) => tracing::warn!("pruning events of project {}: {error}", project.id),
        }
    }
}

/// The chores of a node that shares its database: expired key-value
/// entries deleted (they read as absent already; this gives their room
/// back) and blobs that nothing names swept, both on one node.
pub(crate) fn cluster_chores(
    shared: Arc<store_postgres::PgStore>,
    events: Arc<dyn EventStore>,
    holder: &str,
    objects: Arc<objects::Objects>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let purge = tokio::spawn(on_one_node(
        events.clone(),
        holder.to_owned(),
        KV_EXPIRY,
        CLUSTER_CHORES_EVERY,
        move || {
            let shared = shared.clone();
            async move {
                // In bounded batches, until a batch is not full.
                loop {
                    match shared.purge_expired(domain::now_millis()).await {
                        Ok(purged) if purged < store_postgres::PURGE_BATCH => break,
                        Ok(_) => {}
                        Err(error) => {
                            tracing::warn!("deleting expired key-value entries: {error}");
                            break;
                        }
                    }
                }
            }
        },
    ));
    let sweep = tokio::spawn(on_one_node(
        events,
        holder.to_owned(),
        BLOB_SWEEP,
        CLUSTER_CHORES_EVERY,
        move || {
            let objects = objects.clone();
            async move {
                let before = std::time::SystemTime::now() - SWEEP_GRACE;
                if let Err(error) = objects.sweep_unnamed(before).await {
                    tracing::warn!("sweeping blobs that nothing names: {error}");
                }
            }
        },
    ));
    vec![purge, sweep]
}
