//! Leases: one node at a time works a trigger. A lease is a row (holder,
//! fencing epoch, expiry), taken when free or expired, kept by renewing it
//! before it expires, and taken under a new epoch whenever it changes
//! hands. Times are the database's clock (`clock_timestamp()`), so the
//! nodes' clocks need not agree.
//!
//! Fencing: the writes a lease guards (a cursor move, a retry's outcome, a
//! tick, an asynchronous result) run under `store::events::with_fence`
//! and check the lease in their own transaction ([`check`]), locking its
//! row `FOR SHARE`: a node paused past its lease (SIGSTOP, a long GC, a
//! lost network) commits nothing once it wakes, and a takeover waits for
//! a write that checked before it.
use crate::Result;
use deadpool_postgres::GenericClient;
use std::time::Duration;
use store::StoreError;
use store::events::Fence;

/// The database's time, in Unix milliseconds.
const NOW: &str = "(extract(epoch FROM clock_timestamp()) * 1000)::bigint";

/// Takes or renews the lease; its epoch if held.
pub(crate) async fn take(
    client: &impl GenericClient,
    name: &str,
    holder: &str,
    ttl: Duration,
) -> Result<Option<i64>> {
    let ttl = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 2);
    let statement = client
        .prepare_cached(&format!(
            "INSERT INTO leases (name, holder, epoch, expires_at) VALUES ($1, $2, 1, {NOW} + $3)
             ON CONFLICT (name) DO UPDATE
               SET holder = excluded.holder,
                   epoch = CASE WHEN leases.holder = excluded.holder AND leases.expires_at > {NOW}
                                THEN leases.epoch ELSE leases.epoch + 1 END,
                   expires_at = excluded.expires_at
               WHERE leases.holder = excluded.holder OR leases.expires_at <= {NOW}
             RETURNING epoch"
        ))
        .await?;
    Ok(client
        .query_opt(&statement, &[&name, &holder, &ttl])
        .await?
        .map(|row| row.get(0)))
}

/// Gives the lease up, if `holder` has it: expires it now. (The row
/// stays, so that the next holder's epoch is higher than every one
/// before: an epoch is never given out twice.)
pub(crate) async fn release(client: &impl GenericClient, name: &str, holder: &str) -> Result<()> {
    client
        .execute(
            "UPDATE leases SET expires_at = 0 WHERE name = $1 AND holder = $2",
            &[&name, &holder],
        )
        .await?;
    Ok(())
}

/// In a write's transaction: refuses it with [`StoreError::LeaseLost`]
/// unless the fence's lease is still held, unexpired, under its epoch;
/// keeps the lease row locked until the commit.
pub(crate) async fn check(client: &impl GenericClient, fence: Option<&Fence>) -> Result<()> {
    let Some(fence) = fence else {
        return Ok(());
    };
    let statement = client
        .prepare_cached(&format!(
            "SELECT 1 FROM leases WHERE name = $1 AND holder = $2 AND epoch = $3
               AND expires_at > {NOW} FOR SHARE"
        ))
        .await?;
    let held = client
        .query_opt(&statement, &[&fence.lease, &fence.holder, &fence.epoch])
        .await?
        .is_some();
    if held {
        Ok(())
    } else {
        Err(StoreError::LeaseLost(fence.lease.clone()).into())
    }
}
