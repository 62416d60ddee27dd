//! App users, sessions, refresh tokens and signing keys on PostgreSQL:
//! `users` (an email is unique per project through the partial unique
//! index `users_by_email`), `sessions` (ended ones kept, with their end),
//! `refresh_tokens` (the SHA-256 of each, with when it was used) and
//! `signing_keys`.
//!
//! A refresh is one transaction that locks its token's row first (`FOR
//! UPDATE`): two nodes refreshing one token at once take turns, and the
//! second finds it used. Locks are taken in one order, so that no two
//! of these transactions deadlock: a token row, then a session row; ending
//! sessions locks the sessions, then deletes their tokens but those a
//! refresh holds at that moment (`SKIP LOCKED`: that refresh then finds its
//! session ended, and the token is dead anyway); `control_changes` last.
//!
//! Every node keeps the ended sessions and the signing keys in memory, so
//! what changes them (a session ended, a user deleted, a replay, a key
//! added or retired) bumps `control_changes` in its transaction, and the
//! other nodes read them again. Signing up, signing in and a rotation do
//! not: they are the hot paths, and no node keeps them.
//!
//! `email_codes` holds one live one-time code per project, flow and
//! address (its primary key). Each use is one statement (`DELETE ...
//! RETURNING`, `UPDATE ... failures + 1`): two nodes using one code at once
//! find one of them winning, and a code at its failure limit is never used
//! whatever the order of the statements.
//!
//! `mfa_factors` holds each factor with the last time step a code was
//! accepted for. Accepting a step is one transaction: an `UPDATE` of the
//! factor that holds only for a later step (it locks the factor's row, and
//! a second one waiting on it re-reads the step once the first commits, so
//! two nodes never both accept one step), then the `DELETE` of the
//! challenge. Locks go factor, then challenge, everywhere. `login_tickets`
//! holds the SHA-256 of each ticket, used by one `DELETE ... RETURNING`,
//! and `pending_flows` the same for the steps of a provider sign-in.
//! `linked_identities` is unique per project, issuer and subject (an
//! index); a new user with its identity is one transaction that inserts
//! the identity first (`ON CONFLICT DO NOTHING`: a second node making the
//! same one waits on the index, then makes nothing).
use crate::{Db, Error, PgStore, Result, number, stored};
use deadpool_postgres::GenericClient;
use domain::{ProjectId, UnixMillis};
use store::accounts::{
    Challenge, CodeUse, EmailCode, Ending, Factor, FactorStatus, Flow, LinkedIdentity, LoginTicket,
    PendingFlow, PendingKind, Refreshed, Session, SigningKey, StepUse, User,
};
use store::{AccountStore, StoreError};
use tokio_postgres::Row;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;

/// The unique index that holds an email to one user per project.
const EMAIL_INDEX: &str = "users_by_email";

const USER_COLUMNS: &str = "project, id, email, phone, password_hash, email_confirmed_at, \
     anonymous, banned_until, app_metadata, user_metadata, created_at, updated_at, last_sign_in_at";

fn user_from_row(row: &Row) -> Result<User> {
    let app: String = row.get(8);
    let own: String = row.get(9);
    Ok(User {
        project: stored(ProjectId::new(row.get::<_, String>(0)))?,
        id: row.get(1),
        email: row.get(2),
        phone: row.get(3),
        password_hash: row.get(4),
        email_confirmed_at: row.get(5),
        anonymous: row.get(6),
        banned_until: row.get(7),
        app_metadata: stored(serde_json::from_str(&app))?,
        user_metadata: stored(serde_json::from_str(&own))?,
        created_at: row.get(10),
        updated_at: row.get(11),
        last_sign_in_at: row.get(12),
    })
}

/// A user's metadata as stored: JSON text (which, unlike `jsonb`, keeps
/// any string, `\u0000` included, and gives back what it was given).
fn metadata(user: &User) -> Result<(String, String), StoreError> {
    let text = |value| {
        serde_json::to_string(value).map_err(|error| StoreError::Corrupt(error.to_string()))
    };
    Ok((text(&user.app_metadata)?, text(&user.user_metadata)?))
}

/// A user's columns in [`USER_COLUMNS`] order (`$1` to `$13`), its
/// metadata as [`metadata`] wrote it.
fn user_params<'a>(
    user: &'a User,
    project: &'a &'a str,
    (app, own): &'a (String, String),
) -> [&'a (dyn ToSql + Sync); 13] {
    [
        project,
        &user.id,
        &user.email,
        &user.phone,
        &user.password_hash,
        &user.email_confirmed_at,
        &user.anonymous,
        &user.banned_until,
        app,
        own,
        &user.created_at,
        &user.updated_at,
        &user.last_sign_in_at,
    ]
}

/// A write the email index refused as [`StoreError::EmailTaken`].
fn email_taken(error: tokio_postgres::Error) -> StoreError {
    let taken = error.code() == Some(&SqlState::UNIQUE_VIOLATION)
        && error
            .as_db_error()
            .and_then(|error| error.constraint())
            .is_some_and(|constraint| constraint == EMAIL_INDEX);
    if taken {
        StoreError::EmailTaken
    } else {
        Error::from(error).0
    }
}

const IDENTITY_COLUMNS: &str = "project, id, user_id, provider, issuer, subject, email, data, \
     created_at, updated_at, last_sign_in_at";

fn identity_from_row(row: &Row) -> Result<LinkedIdentity> {
    let data: String = row.get(7);
    Ok(LinkedIdentity {
        project: stored(ProjectId::new(row.get::<_, String>(0)))?,
        id: row.get(1),
        user_id: row.get(2),
        provider: row.get(3),
        issuer: row.get(4),
        subject: row.get(5),
        email: row.get(6),
        data: stored(serde_json::from_str(&data))?,
        created_at: row.get(8),
        updated_at: row.get(9),
        last_sign_in_at: row.get(10),
    })
}

fn json_text(value: &serde_json::Value) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|error| StoreError::Corrupt(error.to_string()))
}

const SESSION_COLUMNS: &str = "project, id, user_id, created_at, refreshed_at, aal, ended_at";

fn session_from_row(row: &Row) -> Result<Session> {
    Ok(Session {
        project: stored(ProjectId::new(row.get::<_, String>(0)))?,
        id: row.get(1),
        user_id: row.get(2),
        created_at: row.get(3),
        refreshed_at: row.get(4),
        aal: number(row.get(5))?,
        ended_at: row.get(6),
    })
}

async fn one_user(
    client: &impl GenericClient,
    filter: &str,
    params: [&str; 2],
) -> Result<Option<User>> {
    let statement = client
        .prepare_cached(&format!("SELECT {USER_COLUMNS} FROM users WHERE {filter}"))
        .await?;
    client
        .query_opt(&statement, &[&params[0], &params[1]])
        .await?
        .as_ref()
        .map(user_from_row)
        .transpose()
}

/// Tells every node that ended sessions or signing keys changed: the last
/// statement of its transaction, so that the row's lock is held only
/// while committing.
async fn changed(client: &impl GenericClient) -> Result<()> {
    let statement = client
        .prepare_cached("UPDATE control_changes SET version = version + 1")
        .await?;
    client.execute(&statement, &[]).await?;
    Ok(())
}

/// Ends the live sessions of `user_id` that `which` names and forgets
/// their refresh tokens; their ids, sorted. The session rows are locked
/// first; a token that a refresh holds meanwhile is left (that refresh
/// finds the session ended).
async fn end(
    client: &impl GenericClient,
    project: &ProjectId,
    user_id: &str,
    which: Ending<'_>,
    now: UnixMillis,
) -> Result<Vec<String>> {
    let (filter, session) = match which {
        Ending::One(id) => ("AND id = $4", Some(id)),
        Ending::All => ("", None),
        Ending::Others(id) => ("AND id <> $4", Some(id)),
    };
    let statement = client
        .prepare_cached(&format!(
            "UPDATE sessions SET ended_at = $3
             WHERE project = $1 AND user_id = $2 AND ended_at IS NULL {filter} RETURNING id"
        ))
        .await?;
    let project = project.as_str();
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&project, &user_id, &now];
    if let Some(session) = &session {
        params.push(session);
    }
    let mut ended = client
        .query(&statement, &params)
        .await?
        .iter()
        .map(|row| row.get::<_, String>(0))
        .collect::<Vec<_>>();
    ended.sort();
    if !ended.is_empty() {
        let forget = client
            .prepare_cached(
                "DELETE FROM refresh_tokens WHERE (project, sha256) IN (
                     SELECT project, sha256 FROM refresh_tokens
                     WHERE project = $1 AND session_id = ANY($2)
                     FOR UPDATE SKIP LOCKED)",
            )
            .await?;
        client.execute(&forget, &[&project, &ended]).await?;
    }
    Ok(ended)
}

const CODE_COLUMNS: &str =
    "project, flow, email, user_id, code_hash, link_hash, created_at, expires_at";

fn code_from_row(row: &Row) -> Result<EmailCode> {
    let corrupt = |what: &str| Error(StoreError::Corrupt(format!("an email code's {what}")));
    let flow: String = row.get(1);
    let code_hash: Vec<u8> = row.get(4);
    let link_hash: Vec<u8> = row.get(5);
    Ok(EmailCode {
        project: stored(ProjectId::new(row.get::<_, String>(0)))?,
        flow: Flow::from_stored(&flow).ok_or_else(|| corrupt("flow"))?,
        email: row.get(2),
        user_id: row.get(3),
        code_hash: code_hash.try_into().map_err(|_| corrupt("code hash"))?,
        link_hash: link_hash.try_into().map_err(|_| corrupt("link hash"))?,
        created_at: row.get(6),
        expires_at: row.get(7),
    })
}

const FACTOR_COLUMNS: &str = "project, id, user_id, factor_type, friendly_name, sealed_secret, \
     status, last_used_step, created_at, updated_at";

fn factor_from_row(row: &Row) -> Result<Factor> {
    let status: String = row.get(6);
    Ok(Factor {
        project: stored(ProjectId::new(row.get::<_, String>(0)))?,
        id: row.get(1),
        user_id: row.get(2),
        factor_type: row.get(3),
        friendly_name: row.get(4),
        sealed_secret: row.get(5),
        status: FactorStatus::from_stored(&status)
            .ok_or_else(|| Error(StoreError::Corrupt(format!("a factor's status {status:?}"))))?,
        last_used_step: row.get(7),
        created_at: row.get(8),
        updated_at: row.get(9),
    })
}

const CHALLENGE_COLUMNS: &str = "project, id, factor_id, user_id, created_at, expires_at";

fn challenge_from_row(row: &Row) -> Result<Challenge> {
    Ok(Challenge {
        project: stored(ProjectId::new(row.get::<_, String>(0)))?,
        id: row.get(1),
        factor_id: row.get(2),
        user_id: row.get(3),
        created_at: row.get(4),
        expires_at: row.get(5),
    })
}

/// Counts a wrong code against a live challenge and forgets it at the
/// limit; whether it was live.
async fn count_failure(
    client: &impl GenericClient,
    project: &ProjectId,
    id: &str,
    now: UnixMillis,
    max_failures: u32,
) -> Result<bool> {
    let max_failures = i64::from(max_failures);
    let count = client
        .prepare_cached(
            "UPDATE mfa_challenges SET failures = failures + 1
             WHERE project = $1 AND id = $2 AND expires_at > $3 AND failures < $4",
        )
        .await?;
    let counted = client
        .execute(&count, &[&project.as_str(), &id, &now, &max_failures])
        .await?;
    let dead = client
        .prepare_cached(
            "DELETE FROM mfa_challenges WHERE project = $1 AND id = $2 AND failures >= $3",
        )
        .await?;
    client
        .execute(&dead, &[&project.as_str(), &id, &max_failures])
        .await?;
    Ok(counted == 1)
}

fn flow_names(flows: &[Flow]) -> Vec<&'static str> {
    flows.iter().map(|flow| flow.as_str()).collect()
}

/// Inserts a user; a taken email is [`StoreError::EmailTaken`].
async fn insert_user(client: &impl GenericClient, user: &User) -> Result<(), StoreError> {
    let meta = metadata(user)?;
    let statement = client
        .prepare_cached(&format!(
            "INSERT INTO users ({USER_COLUMNS})
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
        ))
        .await
        .db()?;
    client
        .execute(
            &statement,
            &user_params(user, &user.project.as_str(), &meta),
        )
        .await
        .map_err(email_taken)?;
    Ok(())
}

/// Inserts a linked identity unless its issuer and subject are linked
/// already; how many rows it inserted.
async fn insert_identity(
    client: &impl GenericClient,
    identity: &LinkedIdentity,
) -> Result<u64, StoreError> {
    let data = json_text(&identity.data)?;
    let statement = client
        .prepare_cached(&format!(
            "INSERT INTO linked_identities ({IDENTITY_COLUMNS})
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
             ON CONFLICT (project, issuer, subject) DO NOTHING"
        ))
        .await
        .db()?;
    client
        .execute(
            &statement,
            &[
                &identity.project.as_str(),
                &identity.id,
                &identity.user_id,
                &identity.provider,
                &identity.issuer,
                &identity.subject,
                &identity.email,
                &data,
                &identity.created_at,
                &identity.updated_at,
                &identity.last_sign_in_at,
            ],
        )
        .await
        .db()
}

#[store::async_trait]
impl AccountStore for PgStore {
    async fn create_user(&self, user: &User) -> Result<(), StoreError> {
        insert_user(&self.client().await?, user).await
    }

    async fn user(&self, project: &ProjectId, id: &str) -> Result<Option<User>, StoreError> {
        let client = self.client().await?;
        one_user(&client, "project = $1 AND id = $2", [project.as_str(), id])
            .await
            .db()
    }

    async fn user_by_email(
        &self,
        project: &ProjectId,
        email: &str,
    ) -> Result<Option<User>, StoreError> {
        let client = self.client().await?;
        one_user(
            &client,
            "project = $1 AND email = $2",
            [project.as_str(), email],
        )
        .await
        .db()
    }

    async fn update_user(&self, user: &User) -> Result<bool, StoreError> {
        let meta = metadata(user)?;
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "UPDATE users SET email = $3, phone = $4, password_hash = $5,
                   email_confirmed_at = $6, anonymous = $7, banned_until = $8,
                   app_metadata = $9, user_metadata = $10, created_at = $11,
                   updated_at = $12, last_sign_in_at = $13
                 WHERE project = $1 AND id = $2",
            )
            .await
            .db()?;
        let changed = client
            .execute(
                &statement,
                &user_params(user, &user.project.as_str(), &meta),
            )
            .await
            .map_err(email_taken)?;
        Ok(changed == 1)
    }

    async fn delete_user(
        &self,
        project: &ProjectId,
        id: &str,
        now: UnixMillis,
    ) -> Result<Option<Vec<String>>, StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await.db()?;
        let deleted = transaction
            .execute(
                "DELETE FROM users WHERE project = $1 AND id = $2",
                &[&project.as_str(), &id],
            )
            .await
            .db()?;
        if deleted == 0 {
            return Ok(None);
        }
        for table in [
            "mfa_factors",
            "mfa_challenges",
            "login_tickets",
            "linked_identities",
        ] {
            transaction
                .execute(
                    &format!("DELETE FROM {table} WHERE project = $1 AND user_id = $2"),
                    &[&project.as_str(), &id],
                )
                .await
                .db()?;
        }
        let ended = end(&transaction, project, id, Ending::All, now)
            .await
            .db()?;
        changed(&transaction).await.db()?;
        transaction.commit().await.db()?;
        Ok(Some(ended))
    }

    async fn users(
        &self,
        project: &ProjectId,
        offset: u64,
        limit: usize,
    ) -> Result<Vec<User>, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&format!(
                "SELECT {USER_COLUMNS} FROM users WHERE project = $1
                 ORDER BY id LIMIT $2 OFFSET $3"
            ))
            .await
            .db()?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let offset = i64::try_from(offset).unwrap_or(i64::MAX);
        client
            .query(&statement, &[&project.as_str(), &limit, &offset])
            .await
            .db()?
            .iter()
            .map(user_from_row)
            .collect::<Result<_>>()
            .db()
    }

    async fn count_users(&self, project: &ProjectId) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT count(*) FROM users WHERE project = $1",
                &[&project.as_str()],
            )
            .await
            .db()?;
        Ok(row.get::<_, i64>(0) as u64)
    }

    async fn create_session(
        &self,
        session: &Session,
        refresh: &[u8; 32],
    ) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await.db()?;
        let statement = transaction
            .prepare_cached(&format!(
                "INSERT INTO sessions ({SESSION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
            ))
            .await
            .db()?;
        transaction
            .execute(
                &statement,
                &[
                    &session.project.as_str(),
                    &session.id,
                    &session.user_id,
                    &session.created_at,
                    &session.refreshed_at,
                    &i64::from(session.aal),
                    &session.ended_at,
                ],
            )
            .await
            .db()?;
        let statement = transaction
            .prepare_cached(
                "INSERT INTO refresh_tokens (project, sha256, session_id, created_at)
                 VALUES ($1, $2, $3, $4)",
            )
            .await
            .db()?;
        transaction
            .execute(
                &statement,
                &[
                    &session.project.as_str(),
                    &refresh.as_slice(),
                    &session.id,
                    &session.created_at,
                ],
            )
            .await
            .db()?;
        transaction.commit().await.db()?;
        Ok(())
    }

    async fn session(&self, project: &ProjectId, id: &str) -> Result<Option<Session>, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&format!(
                "SELECT {SESSION_COLUMNS} FROM sessions WHERE project = $1 AND id = $2"
            ))
            .await
            .db()?;
        client
            .query_opt(&statement, &[&project.as_str(), &id])
            .await
            .db()?
            .as_ref()
            .map(session_from_row)
            .transpose()
            .db()
    }

    async fn live_sessions(
        &self,
        project: &ProjectId,
        user_id: &str,
    ) -> Result<Vec<Session>, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&format!(
                "SELECT {SESSION_COLUMNS} FROM sessions
                 WHERE project = $1 AND user_id = $2 AND ended_at IS NULL
                 ORDER BY created_at, id"
            ))
            .await
            .db()?;
        client
            .query(&statement, &[&project.as_str(), &user_id])
            .await
            .db()?
            .iter()
            .map(session_from_row)
            .collect::<Result<_>>()
            .db()
    }

    async fn refresh(
        &self,
        project: &ProjectId,
        used: &[u8; 32],
        next: &[u8; 32],
        now: UnixMillis,
        grace_ms: i64,
    ) -> Result<Refreshed, StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await.db()?;
        // The token's row, locked: another refresh of it (from any node)
        // waits for this one's commit, then finds it used (or gone).
        let statement = transaction
            .prepare_cached(
                "SELECT session_id, used_at FROM refresh_tokens
                 WHERE project = $1 AND sha256 = $2 FOR UPDATE",
            )
            .await
            .db()?;
        let Some(token) = transaction
            .query_opt(&statement, &[&project.as_str(), &used.as_slice()])
            .await
            .db()?
        else {
            return Ok(Refreshed::Refused);
        };
        let (session_id, used_at): (String, Option<UnixMillis>) = (token.get(0), token.get(1));

        if used_at.is_some_and(|at| now - at > grace_ms) {
            // A replay: the whole session ends, if it is still live.
            let statement = transaction
                .prepare_cached(
                    "SELECT user_id FROM sessions
                     WHERE project = $1 AND id = $2 AND ended_at IS NULL",
                )
                .await
                .db()?;
            let Some(session) = transaction
                .query_opt(&statement, &[&project.as_str(), &session_id])
                .await
                .db()?
            else {
                return Ok(Refreshed::Refused);
            };
            let user_id: String = session.get(0);
            let ended = end(
                &transaction,
                project,
                &user_id,
                Ending::One(&session_id),
                now,
            )
            .await
            .db()?;
            if ended.is_empty() {
                // Ended meanwhile, by another transaction.
                return Ok(Refreshed::Refused);
            }
            changed(&transaction).await.db()?;
            transaction.commit().await.db()?;
            return Ok(Refreshed::Replayed { session_id });
        }

        // The session turns, if it is live (checked on its newest row:
        // one ended while this waited for it is not refreshed).
        let statement = transaction
            .prepare_cached(&format!(
                "UPDATE sessions SET refreshed_at = $3
                 WHERE project = $1 AND id = $2 AND ended_at IS NULL
                 RETURNING {SESSION_COLUMNS}"
            ))
            .await
            .db()?;
        let Some(session) = transaction
            .query_opt(&statement, &[&project.as_str(), &session_id, &now])
            .await
            .db()?
        else {
            return Ok(Refreshed::Refused);
        };
        let session = session_from_row(&session).db()?;
        if used_at.is_none() {
            let statement = transaction
                .prepare_cached(
                    "UPDATE refresh_tokens SET used_at = $3 WHERE project = $1 AND sha256 = $2",
                )
                .await
                .db()?;
            transaction
                .execute(&statement, &[&project.as_str(), &used.as_slice(), &now])
                .await
                .db()?;
        }
        let statement = transaction
            .prepare_cached(
                "INSERT INTO refresh_tokens (project, sha256, session_id, created_at)
                 VALUES ($1, $2, $3, $4)",
            )
            .await
            .db()?;
        transaction
            .execute(
                &statement,
                &[&project.as_str(), &next.as_slice(), &session_id, &now],
            )
            .await
            .db()?;
        transaction.commit().await.db()?;
        Ok(match used_at {
            None => Refreshed::Rotated(session),
            Some(_) => Refreshed::Again(session),
        })
    }

    async fn add_refresh_token(
        &self,
        project: &ProjectId,
        session_id: &str,
        refresh: &[u8; 32],
        now: UnixMillis,
    ) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "INSERT INTO refresh_tokens (project, sha256, session_id, created_at)
                 SELECT project, $3, id, $4 FROM sessions
                 WHERE project = $1 AND id = $2 AND ended_at IS NULL",
            )
            .await
            .db()?;
        let added = client
            .execute(
                &statement,
                &[&project.as_str(), &session_id, &refresh.as_slice(), &now],
            )
            .await
            .db()?;
        Ok(added == 1)
    }

    async fn set_session_aal(
        &self,
        project: &ProjectId,
        id: &str,
        aal: u8,
    ) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "UPDATE sessions SET aal = $3 WHERE project = $1 AND id = $2 AND ended_at IS NULL",
            )
            .await
            .db()?;
        let changed = client
            .execute(&statement, &[&project.as_str(), &id, &i64::from(aal)])
            .await
            .db()?;
        Ok(changed == 1)
    }

    async fn end_sessions(
        &self,
        project: &ProjectId,
        user_id: &str,
        which: Ending<'_>,
        now: UnixMillis,
    ) -> Result<Vec<String>, StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await.db()?;
        let ended = end(&transaction, project, user_id, which, now).await.db()?;
        if !ended.is_empty() {
            changed(&transaction).await.db()?;
        }
        transaction.commit().await.db()?;
        Ok(ended)
    }

    async fn ended_sessions(
        &self,
        since: UnixMillis,
    ) -> Result<Vec<(ProjectId, String, UnixMillis)>, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached("SELECT project, id, ended_at FROM sessions WHERE ended_at >= $1")
            .await
            .db()?;
        client
            .query(&statement, &[&since])
            .await
            .db()?
            .iter()
            .map(|row| {
                Ok((
                    stored(ProjectId::new(row.get::<_, String>(0)))?,
                    row.get(1),
                    row.get(2),
                ))
            })
            .collect::<Result<_>>()
            .db()
    }

    async fn add_signing_key(&self, key: &SigningKey) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await.db()?;
        transaction
            .execute(
                "INSERT INTO signing_keys (project, kid, sealed_private, created_at, retired_at)
                 VALUES ($1, $2, $3, $4, $5)",
                &[
                    &key.project.as_str(),
                    &key.kid,
                    &key.sealed_private,
                    &key.created_at,
                    &key.retired_at,
                ],
            )
            .await
            .db()?;
        changed(&transaction).await.db()?;
        transaction.commit().await.db()?;
        Ok(())
    }

    async fn retire_signing_key(
        &self,
        project: &ProjectId,
        kid: &str,
        now: UnixMillis,
    ) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await.db()?;
        let retired = transaction
            .execute(
                "UPDATE signing_keys SET retired_at = $3
                 WHERE project = $1 AND kid = $2 AND retired_at IS NULL",
                &[&project.as_str(), &kid, &now],
            )
            .await
            .db()?;
        if retired == 0 {
            return Ok(false);
        }
        changed(&transaction).await.db()?;
        transaction.commit().await.db()?;
        Ok(true)
    }

    async fn signing_keys(&self) -> Result<Vec<SigningKey>, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "SELECT project, kid, sealed_private, created_at, retired_at FROM signing_keys
                 ORDER BY created_at, project COLLATE \"C\", kid COLLATE \"C\"",
            )
            .await
            .db()?;
        client
            .query(&statement, &[])
            .await
            .db()?
            .iter()
            .map(|row| {
                Ok(SigningKey {
                    project: stored(ProjectId::new(row.get::<_, String>(0)))?,
                    kid: row.get(1),
                    sealed_private: row.get(2),
                    created_at: row.get(3),
                    retired_at: row.get(4),
                })
            })
            .collect::<Result<_>>()
            .db()
    }

    async fn set_auth_settings(
        &self,
        project: &ProjectId,
        settings: &serde_json::Value,
    ) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await.db()?;
        transaction
            .execute(
                "INSERT INTO auth_settings (project, settings) VALUES ($1, $2)
                 ON CONFLICT (project) DO UPDATE SET settings = excluded.settings",
                &[&project.as_str(), &settings.to_string()],
            )
            .await
            .db()?;
        changed(&transaction).await.db()?;
        transaction.commit().await.db()?;
        Ok(())
    }

    async fn auth_settings(&self) -> Result<Vec<(ProjectId, serde_json::Value)>, StoreError> {
        let client = self.client().await?;
        client
            .query("SELECT project, settings FROM auth_settings", &[])
            .await
            .db()?
            .iter()
            .map(|row| {
                Ok((
                    stored(ProjectId::new(row.get::<_, String>(0)))?,
                    stored(serde_json::from_str::<serde_json::Value>(row.get(1)))?,
                ))
            })
            .collect::<Result<_>>()
            .db()
    }

    async fn put_email_code(&self, code: &EmailCode) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await.db()?;
        let forget = transaction
            .prepare_cached("DELETE FROM email_codes WHERE project = $1 AND expires_at <= $2")
            .await
            .db()?;
        transaction
            .execute(&forget, &[&code.project.as_str(), &code.created_at])
            .await
            .db()?;
        let statement = transaction
            .prepare_cached(&format!(
                "INSERT INTO email_codes ({CODE_COLUMNS}, failures)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0)
                 ON CONFLICT (project, flow, email) DO UPDATE SET
                   user_id = excluded.user_id, code_hash = excluded.code_hash,
                   link_hash = excluded.link_hash, created_at = excluded.created_at,
                   expires_at = excluded.expires_at, failures = 0"
            ))
            .await
            .db()?;
        transaction
            .execute(
                &statement,
                &[
                    &code.project.as_str(),
                    &code.flow.as_str(),
                    &code.email,
                    &code.user_id,
                    &code.code_hash.as_slice(),
                    &code.link_hash.as_slice(),
                    &code.created_at,
                    &code.expires_at,
                ],
            )
            .await
            .db()?;
        transaction.commit().await.db()?;
        Ok(())
    }

    async fn use_email_code(
        &self,
        project: &ProjectId,
        email: &str,
        flows: &[Flow],
        code_hash: &[u8; 32],
        now: UnixMillis,
        max_failures: u32,
    ) -> Result<CodeUse, StoreError> {
        let client = self.client().await?;
        let flows = flow_names(flows);
        let max_failures = i64::from(max_failures);
        let live = "project = $1 AND email = $2 AND flow = ANY($3) AND expires_at > $4 \
                    AND failures < $5";
        let used = client
            .prepare_cached(&format!(
                "DELETE FROM email_codes WHERE {live} AND code_hash = $6 RETURNING {CODE_COLUMNS}"
            ))
            .await
            .db()?;
        let params: [&(dyn ToSql + Sync); 6] = [
            &project.as_str(),
            &email,
            &flows,
            &now,
            &max_failures,
            &code_hash.as_slice(),
        ];
        if let Some(row) = client.query_opt(&used, &params).await.db()? {
            return Ok(CodeUse::Used(code_from_row(&row).db()?));
        }
        let count = client
            .prepare_cached(&format!(
                "UPDATE email_codes SET failures = failures + 1 WHERE {live} AND code_hash <> $6"
            ))
            .await
            .db()?;
        let counted = client.execute(&count, &params).await.db()?;
        if counted == 0 {
            return Ok(CodeUse::None);
        }
        let dead = client
            .prepare_cached(
                "DELETE FROM email_codes
                 WHERE project = $1 AND email = $2 AND flow = ANY($3) AND failures >= $4",
            )
            .await
            .db()?;
        client
            .execute(&dead, &[&project.as_str(), &email, &flows, &max_failures])
            .await
            .db()?;
        Ok(CodeUse::Wrong)
    }

    async fn use_email_link(
        &self,
        project: &ProjectId,
        flows: &[Flow],
        link_hash: &[u8; 32],
        now: UnixMillis,
        max_failures: u32,
    ) -> Result<Option<EmailCode>, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&format!(
                "DELETE FROM email_codes
                 WHERE project = $1 AND link_hash = $2 AND flow = ANY($3) AND expires_at > $4
                   AND failures < $5
                 RETURNING {CODE_COLUMNS}"
            ))
            .await
            .db()?;
        client
            .query_opt(
                &statement,
                &[
                    &project.as_str(),
                    &link_hash.as_slice(),
                    &flow_names(flows),
                    &now,
                    &i64::from(max_failures),
                ],
            )
            .await
            .db()?
            .as_ref()
            .map(code_from_row)
            .transpose()
            .db()
    }

    async fn email_code(
        &self,
        project: &ProjectId,
        flow: Flow,
        email: &str,
        now: UnixMillis,
    ) -> Result<Option<EmailCode>, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&format!(
                "SELECT {CODE_COLUMNS} FROM email_codes
                 WHERE project = $1 AND flow = $2 AND email = $3 AND expires_at > $4"
            ))
            .await
            .db()?;
        client
            .query_opt(
                &statement,
                &[&project.as_str(), &flow.as_str(), &email, &now],
            )
            .await
            .db()?
            .as_ref()
            .map(code_from_row)
            .transpose()
            .db()
    }

    async fn create_factor(&self, factor: &Factor) -> Result<(), StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&format!(
                "INSERT INTO mfa_factors ({FACTOR_COLUMNS})
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
            ))
            .await
            .db()?;
        client
            .execute(
                &statement,
                &[
                    &factor.project.as_str(),
                    &factor.id,
                    &factor.user_id,
                    &factor.factor_type,
                    &factor.friendly_name,
                    &factor.sealed_secret,
                    &factor.status.as_str(),
                    &factor.last_used_step,
                    &factor.created_at,
                    &factor.updated_at,
                ],
            )
            .await
            .db()?;
        Ok(())
    }

    async fn factors(&self, project: &ProjectId, user_id: &str) -> Result<Vec<Factor>, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&format!(
                "SELECT {FACTOR_COLUMNS} FROM mfa_factors WHERE project = $1 AND user_id = $2
                 ORDER BY created_at, id COLLATE \"C\""
            ))
            .await
            .db()?;
        client
            .query(&statement, &[&project.as_str(), &user_id])
            .await
            .db()?
            .iter()
            .map(factor_from_row)
            .collect::<Result<_>>()
            .db()
    }

    async fn delete_factor(
        &self,
        project: &ProjectId,
        user_id: &str,
        id: &str,
    ) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await.db()?;
        let deleted = transaction
            .execute(
                "DELETE FROM mfa_factors WHERE project = $1 AND user_id = $2 AND id = $3",
                &[&project.as_str(), &user_id, &id],
            )
            .await
            .db()?;
        if deleted == 0 {
            return Ok(false);
        }
        transaction
            .execute(
                "DELETE FROM mfa_challenges WHERE project = $1 AND factor_id = $2",
                &[&project.as_str(), &id],
            )
            .await
            .db()?;
        transaction.commit().await.db()?;
        Ok(true)
    }

    async fn create_challenge(&self, challenge: &Challenge) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await.db()?;
        let forget = transaction
            .prepare_cached("DELETE FROM mfa_challenges WHERE project = $1 AND expires_at <= $2")
            .await
            .db()?;
        transaction
            .execute(
                &forget,
                &[&challenge.project.as_str(), &challenge.created_at],
            )
            .await
            .db()?;
        let statement = transaction
            .prepare_cached(&format!(
                "INSERT INTO mfa_challenges ({CHALLENGE_COLUMNS}, failures)
                 VALUES ($1, $2, $3, $4, $5, $6, 0)"
            ))
            .await
            .db()?;
        transaction
            .execute(
                &statement,
                &[
                    &challenge.project.as_str(),
                    &challenge.id,
                    &challenge.factor_id,
                    &challenge.user_id,
                    &challenge.created_at,
                    &challenge.expires_at,
                ],
            )
            .await
            .db()?;
        transaction.commit().await.db()?;
        Ok(())
    }

    async fn challenge(
        &self,
        project: &ProjectId,
        id: &str,
        now: UnixMillis,
        max_failures: u32,
    ) -> Result<Option<Challenge>, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&format!(
                "SELECT {CHALLENGE_COLUMNS} FROM mfa_challenges
                 WHERE project = $1 AND id = $2 AND expires_at > $3 AND failures < $4"
            ))
            .await
            .db()?;
        client
            .query_opt(
                &statement,
                &[&project.as_str(), &id, &now, &i64::from(max_failures)],
            )
            .await
            .db()?
            .as_ref()
            .map(challenge_from_row)
            .transpose()
            .db()
    }

    async fn fail_challenge(
        &self,
        project: &ProjectId,
        id: &str,
        now: UnixMillis,
        max_failures: u32,
    ) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await.db()?;
        let live = count_failure(&transaction, project, id, now, max_failures)
            .await
            .db()?;
        transaction.commit().await.db()?;
        Ok(live)
    }

    async fn use_totp_step(
        &self,
        project: &ProjectId,
        factor_id: &str,
        challenge_id: &str,
        step: i64,
        now: UnixMillis,
        max_failures: u32,
    ) -> Result<StepUse, StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await.db()?;
        let live = transaction
            .prepare_cached(
                "SELECT 1 FROM mfa_challenges
                 WHERE project = $1 AND id = $2 AND factor_id = $3 AND expires_at > $4
                   AND failures < $5",
            )
            .await
            .db()?;
        if transaction
            .query_opt(
                &live,
                &[
                    &project.as_str(),
                    &challenge_id,
                    &factor_id,
                    &now,
                    &i64::from(max_failures),
                ],
            )
            .await
            .db()?
            .is_none()
        {
            return Ok(StepUse::NoChallenge);
        }
        // Holds only for a step later than every one accepted before; a
        // second use of the step waits for the first one's row lock, then
        // finds the step taken.
        let accept = transaction
            .prepare_cached(&format!(
                "UPDATE mfa_factors SET last_used_step = $3, status = 'verified', updated_at = $4
                 WHERE project = $1 AND id = $2
                   AND (last_used_step IS NULL OR last_used_step < $3)
                 RETURNING {FACTOR_COLUMNS}"
            ))
            .await
            .db()?;
        let Some(row) = transaction
            .query_opt(&accept, &[&project.as_str(), &factor_id, &step, &now])
            .await
            .db()?
        else {
            count_failure(&transaction, project, challenge_id, now, max_failures)
                .await
                .db()?;
            transaction.commit().await.db()?;
            return Ok(StepUse::Replayed);
        };
        let factor = factor_from_row(&row).db()?;
        let used = transaction
            .prepare_cached(
                "DELETE FROM mfa_challenges
                 WHERE project = $1 AND id = $2 AND expires_at > $3 AND failures < $4",
            )
            .await
            .db()?;
        let deleted = transaction
            .execute(
                &used,
                &[
                    &project.as_str(),
                    &challenge_id,
                    &now,
                    &i64::from(max_failures),
                ],
            )
            .await
            .db()?;
        if deleted == 0 {
            // Used or killed meanwhile by another transaction: this one
            // takes nothing (its step is not spent).
            return Ok(StepUse::NoChallenge);
        }
        transaction.commit().await.db()?;
        Ok(StepUse::Used(factor))
    }

    async fn put_login_ticket(&self, ticket: &LoginTicket) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await.db()?;
        let forget = transaction
            .prepare_cached("DELETE FROM login_tickets WHERE project = $1 AND expires_at <= $2")
            .await
            .db()?;
        transaction
            .execute(&forget, &[&ticket.project.as_str(), &ticket.created_at])
            .await
            .db()?;
        let statement = transaction
            .prepare_cached(
                "INSERT INTO login_tickets (project, sha256, user_id, created_at, expires_at)
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .await
            .db()?;
        transaction
            .execute(
                &statement,
                &[
                    &ticket.project.as_str(),
                    &ticket.hash.as_slice(),
                    &ticket.user_id,
                    &ticket.created_at,
                    &ticket.expires_at,
                ],
            )
            .await
            .db()?;
        transaction.commit().await.db()?;
        Ok(())
    }

    async fn use_login_ticket(
        &self,
        project: &ProjectId,
        hash: &[u8; 32],
        now: UnixMillis,
    ) -> Result<Option<LoginTicket>, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "DELETE FROM login_tickets WHERE project = $1 AND sha256 = $2 AND expires_at > $3
                 RETURNING user_id, created_at, expires_at",
            )
            .await
            .db()?;
        Ok(client
            .query_opt(&statement, &[&project.as_str(), &hash.as_slice(), &now])
            .await
            .db()?
            .map(|row| LoginTicket {
                project: project.clone(),
                hash: *hash,
                user_id: row.get(0),
                created_at: row.get(1),
                expires_at: row.get(2),
            }))
    }

    async fn create_user_with_identity(
        &self,
        user: &User,
        identity: &LinkedIdentity,
    ) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await.db()?;
        let inserted = insert_identity(&transaction, identity).await?;
        if inserted == 0 {
            return Ok(false);
        }
        insert_user(&transaction, user).await?;
        transaction.commit().await.db()?;
        Ok(true)
    }

    async fn linked_identity(
        &self,
        project: &ProjectId,
        issuer: &str,
        subject: &str,
    ) -> Result<Option<LinkedIdentity>, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&format!(
                "SELECT {IDENTITY_COLUMNS} FROM linked_identities
                 WHERE project = $1 AND issuer = $2 AND subject = $3"
            ))
            .await
            .db()?;
        client
            .query_opt(&statement, &[&project.as_str(), &issuer, &subject])
            .await
            .db()?
            .as_ref()
            .map(identity_from_row)
            .transpose()
            .db()
    }

    async fn linked_identities(
        &self,
        project: &ProjectId,
        user_id: &str,
    ) -> Result<Vec<LinkedIdentity>, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&format!(
                "SELECT {IDENTITY_COLUMNS} FROM linked_identities
                 WHERE project = $1 AND user_id = $2 ORDER BY created_at, id"
            ))
            .await
            .db()?;
        client
            .query(&statement, &[&project.as_str(), &user_id])
            .await
            .db()?
            .iter()
            .map(identity_from_row)
            .collect::<Result<_>>()
            .db()
    }

    async fn create_linked_identity(&self, identity: &LinkedIdentity) -> Result<bool, StoreError> {
        Ok(insert_identity(&self.client().await?, identity).await? > 0)
    }

    async fn delete_linked_identity(
        &self,
        project: &ProjectId,
        user_id: &str,
        id: &str,
    ) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "DELETE FROM linked_identities WHERE project = $1 AND user_id = $2 AND id = $3",
            )
            .await
            .db()?;
        let deleted = client
            .execute(&statement, &[&project.as_str(), &user_id, &id])
            .await
            .db()?;
        Ok(deleted > 0)
    }

    async fn update_linked_identity(&self, identity: &LinkedIdentity) -> Result<bool, StoreError> {
        let data = json_text(&identity.data)?;
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "UPDATE linked_identities SET email = $1, data = $2, updated_at = $3,
                 last_sign_in_at = $4 WHERE project = $5 AND id = $6",
            )
            .await
            .db()?;
        let updated = client
            .execute(
                &statement,
                &[
                    &identity.email,
                    &data,
                    &identity.updated_at,
                    &identity.last_sign_in_at,
                    &identity.project.as_str(),
                    &identity.id,
                ],
            )
            .await
            .db()?;
        Ok(updated > 0)
    }

    async fn put_pending_flow(&self, flow: &PendingFlow) -> Result<(), StoreError> {
        let data = json_text(&flow.data)?;
        let mut client = self.client().await?;
        let transaction = client.transaction().await.db()?;
        let forget = transaction
            .prepare_cached("DELETE FROM pending_flows WHERE project = $1 AND expires_at <= $2")
            .await
            .db()?;
        transaction
            .execute(&forget, &[&flow.project.as_str(), &flow.created_at])
            .await
            .db()?;
        let statement = transaction
            .prepare_cached(
                "INSERT INTO pending_flows (project, kind, sha256, data, created_at, expires_at)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .await
            .db()?;
        transaction
            .execute(
                &statement,
                &[
                    &flow.project.as_str(),
                    &flow.kind.as_str(),
                    &flow.hash.as_slice(),
                    &data,
                    &flow.created_at,
                    &flow.expires_at,
                ],
            )
            .await
            .db()?;
        transaction.commit().await.db()?;
        Ok(())
    }

    async fn take_pending_flow(
        &self,
        project: &ProjectId,
        kind: PendingKind,
        hash: &[u8; 32],
        now: UnixMillis,
    ) -> Result<Option<PendingFlow>, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "DELETE FROM pending_flows
                 WHERE project = $1 AND kind = $2 AND sha256 = $3 AND expires_at > $4
                 RETURNING data, created_at, expires_at",
            )
            .await
            .db()?;
        let Some(row) = client
            .query_opt(
                &statement,
                &[&project.as_str(), &kind.as_str(), &hash.as_slice(), &now],
            )
            .await
            .db()?
        else {
            return Ok(None);
        };
        let data: String = row.get(0);
        Ok(Some(PendingFlow {
            project: project.clone(),
            kind,
            hash: *hash,
            data: stored(serde_json::from_str(&data)).db()?,
            created_at: row.get(1),
            expires_at: row.get(2),
        }))
    }
}
