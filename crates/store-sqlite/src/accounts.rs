//! App users, sessions, refresh tokens and signing keys on SQLite:
//! `users` (an email is unique per project through a partial index),
//! `sessions` (ended ones kept, with their end), `refresh_tokens` (the
//! SHA-256 of each, with when it was used) and `signing_keys`. Every
//! write goes through the metadata connection, so one refresh is one
//! transaction. `email_codes` holds one live one-time code per project,
//! flow and address (its primary key), with its failures; a use is one
//! transaction on that connection too.
//!
//! `mfa_factors` holds each factor with the last time step a code was
//! accepted for, and `mfa_challenges` its live challenges with their
//! failures: accepting a step is one transaction (an `UPDATE` that holds
//! only for a later step, then the challenge's `DELETE`), on the one
//! metadata connection, so two uses of one step never both win.
//! `login_tickets` holds the SHA-256 of each ticket, used by one `DELETE
//! ... RETURNING`; `pending_flows` the same for the steps of a provider
//! sign-in. `linked_identities` is unique per project, issuer and
//! subject (an index), and a new user with its identity is one
//! transaction.
use crate::{Error, Result, SqliteStore, stored};
use domain::{ProjectId, UnixMillis};
use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};
use store::accounts::{
    Challenge, CodeUse, EmailCode, Ending, Factor, FactorStatus, Flow, LinkedIdentity, LoginTicket,
    PendingFlow, PendingKind, Refreshed, Session, SigningKey, StepUse, User,
};
use store::{AccountStore, StoreError};

const USER_COLUMNS: &str = "project, id, email, phone, password_hash, email_confirmed_at, \
     anonymous, banned_until, app_metadata, user_metadata, created_at, updated_at, last_sign_in_at";

fn user_from_row(row: &Row<'_>) -> rusqlite::Result<Result<User>> {
    let project: String = row.get(0)?;
    let app: String = row.get(8)?;
    let own: String = row.get(9)?;
    let (id, email, phone, password_hash, email_confirmed_at) = (
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
    );
    let (anonymous, banned_until, created_at, updated_at, last_sign_in_at) = (
        row.get(6)?,
        row.get(7)?,
        row.get(10)?,
        row.get(11)?,
        row.get(12)?,
    );
    Ok((|| {
        Ok(User {
            project: stored(ProjectId::new(project))?,
            id,
            email,
            phone,
            password_hash,
            email_confirmed_at,
            anonymous,
            banned_until,
            app_metadata: stored(serde_json::from_str(&app))?,
            user_metadata: stored(serde_json::from_str(&own))?,
            created_at,
            updated_at,
            last_sign_in_at,
        })
    })())
}

const SESSION_COLUMNS: &str = "project, id, user_id, created_at, refreshed_at, aal, ended_at";

fn session_from_row(row: &Row<'_>) -> rusqlite::Result<Result<Session>> {
    let project: String = row.get(0)?;
    let (id, user_id, created_at, refreshed_at, aal, ended_at) = (
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
        row.get(6)?,
    );
    Ok(stored(ProjectId::new(project)).map(|project| Session {
        project,
        id,
        user_id,
        created_at,
        refreshed_at,
        aal,
        ended_at,
    }))
}

/// An email another user has: the unique index refused the write.
fn email_taken(error: rusqlite::Error) -> Error {
    match error.sqlite_error_code() {
        Some(rusqlite::ErrorCode::ConstraintViolation) => Error(StoreError::EmailTaken),
        _ => error.into(),
    }
}

fn user_params(user: &User) -> Result<[Box<dyn rusqlite::ToSql + '_>; 13]> {
    let app = serde_json::to_string(&user.app_metadata).map_err(invalid)?;
    let own = serde_json::to_string(&user.user_metadata).map_err(invalid)?;
    Ok([
        Box::new(user.project.as_str()),
        Box::new(&user.id),
        Box::new(&user.email),
        Box::new(&user.phone),
        Box::new(&user.password_hash),
        Box::new(user.email_confirmed_at),
        Box::new(user.anonymous),
        Box::new(user.banned_until),
        Box::new(app),
        Box::new(own),
        Box::new(user.created_at),
        Box::new(user.updated_at),
        Box::new(user.last_sign_in_at),
    ])
}

const IDENTITY_COLUMNS: &str = "project, id, user_id, provider, issuer, subject, email, data, \
     created_at, updated_at, last_sign_in_at";

fn identity_from_row(row: &Row<'_>) -> rusqlite::Result<Result<LinkedIdentity>> {
    let project: String = row.get(0)?;
    let data: String = row.get(7)?;
    let (id, user_id, provider, issuer, subject, email) = (
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
        row.get(6)?,
    );
    let (created_at, updated_at, last_sign_in_at) = (row.get(8)?, row.get(9)?, row.get(10)?);
    Ok((|| {
        Ok(LinkedIdentity {
            project: stored(ProjectId::new(project))?,
            id,
            user_id,
            provider,
            issuer,
            subject,
            email,
            data: serde_json::from_str(&data).map_err(invalid)?,
            created_at,
            updated_at,
            last_sign_in_at,
        })
    })())
}

fn invalid(error: serde_json::Error) -> Error {
    Error(StoreError::Corrupt(error.to_string()))
}

fn one_user(connection: &Connection, filter: &str, params: [&str; 2]) -> Result<Option<User>> {
    let mut statement =
        connection.prepare_cached(&format!("SELECT {USER_COLUMNS} FROM users WHERE {filter}"))?;
    statement
        .query_row(params, user_from_row)
        .optional()?
        .transpose()
}

/// Ends the live sessions of `user_id` that `which` names and kills their
/// refresh tokens; their ids.
fn end(
    transaction: &Transaction<'_>,
    project: &str,
    user_id: &str,
    which: Ending<'_>,
    now: UnixMillis,
) -> Result<Vec<String>> {
    let (filter, session) = match which {
        Ending::One(id) => ("AND id = ?4", id),
        Ending::All => ("AND ?4 = ?4", ""),
        Ending::Others(id) => ("AND id <> ?4", id),
    };
    let mut statement = transaction.prepare_cached(&format!(
        "UPDATE sessions SET ended_at = ?3
         WHERE project = ?1 AND user_id = ?2 AND ended_at IS NULL {filter} RETURNING id"
    ))?;
    let mut ended = statement
        .query_map(params![project, user_id, now, session], |row| {
            row.get::<_, String>(0)
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    ended.sort();
    let mut forget = transaction
        .prepare_cached("DELETE FROM refresh_tokens WHERE project = ?1 AND session_id = ?2")?;
    for id in &ended {
        forget.execute(params![project, id])?;
    }
    Ok(ended)
}

const CODE_COLUMNS: &str =
    "project, flow, email, user_id, code_hash, link_hash, created_at, expires_at";

fn code_from_row(row: &Row<'_>) -> rusqlite::Result<Result<EmailCode>> {
    let project: String = row.get(0)?;
    let flow: String = row.get(1)?;
    let code_hash: Vec<u8> = row.get(4)?;
    let link_hash: Vec<u8> = row.get(5)?;
    let (email, user_id, created_at, expires_at) =
        (row.get(2)?, row.get(3)?, row.get(6)?, row.get(7)?);
    Ok((|| {
        let corrupt = |what: &str| Error(StoreError::Corrupt(format!("an email code's {what}")));
        Ok(EmailCode {
            project: stored(ProjectId::new(project))?,
            flow: Flow::from_stored(&flow).ok_or_else(|| corrupt("flow"))?,
            email,
            user_id,
            code_hash: code_hash.try_into().map_err(|_| corrupt("code hash"))?,
            link_hash: link_hash.try_into().map_err(|_| corrupt("link hash"))?,
            created_at,
            expires_at,
        })
    })())
}

const FACTOR_COLUMNS: &str = "project, id, user_id, factor_type, friendly_name, sealed_secret, \
     status, last_used_step, created_at, updated_at";

fn factor_from_row(row: &Row<'_>) -> rusqlite::Result<Result<Factor>> {
    let project: String = row.get(0)?;
    let status: String = row.get(6)?;
    let (id, user_id, factor_type, friendly_name, sealed_secret) = (
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
    );
    let (last_used_step, created_at, updated_at) = (row.get(7)?, row.get(8)?, row.get(9)?);
    Ok((|| {
        Ok(Factor {
            project: stored(ProjectId::new(project))?,
            id,
            user_id,
            factor_type,
            friendly_name,
            sealed_secret,
            status: FactorStatus::from_stored(&status).ok_or_else(|| {
                Error(StoreError::Corrupt(format!("a factor's status {status:?}")))
            })?,
            last_used_step,
            created_at,
            updated_at,
        })
    })())
}

const CHALLENGE_COLUMNS: &str = "project, id, factor_id, user_id, created_at, expires_at";

fn challenge_from_row(row: &Row<'_>) -> rusqlite::Result<Result<Challenge>> {
    let project: String = row.get(0)?;
    let (id, factor_id, user_id, created_at, expires_at) = (
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
    );
    Ok(stored(ProjectId::new(project)).map(|project| Challenge {
        project,
        id,
        factor_id,
        user_id,
        created_at,
        expires_at,
    }))
}

/// Counts a wrong code against a live challenge and forgets it at the
/// limit; whether it was live.
fn count_failure(
    transaction: &Transaction<'_>,
    project: &str,
    id: &str,
    now: UnixMillis,
    max_failures: u32,
) -> Result<bool> {
    let counted = transaction
        .prepare_cached(
            "UPDATE mfa_challenges SET failures = failures + 1
             WHERE project = ?1 AND id = ?2 AND expires_at > ?3 AND failures < ?4",
        )?
        .execute(params![project, id, now, max_failures])?;
    transaction
        .prepare_cached(
            "DELETE FROM mfa_challenges WHERE project = ?1 AND id = ?2 AND failures >= ?3",
        )?
        .execute(params![project, id, max_failures])?;
    Ok(counted == 1)
}

/// `flow IN (?N, ?N+1, ...)` for `flows`, numbered from `first`.
fn flows_in(flows: &[Flow], first: usize) -> String {
    let marks: Vec<String> = (0..flows.len().max(1))
        .map(|n| format!("?{}", first + n))
        .collect();
    format!("flow IN ({})", marks.join(", "))
}

/// The flows' stored names, at least one (an empty list matches none).
fn flow_names(flows: &[Flow]) -> Vec<&'static str> {
    if flows.is_empty() {
        vec![""]
    } else {
        flows.iter().map(|flow| flow.as_str()).collect()
    }
}

/// Inserts a linked identity unless its issuer and subject are linked
/// already; how many rows it inserted.
fn insert_identity(connection: &rusqlite::Connection, identity: &LinkedIdentity) -> Result<usize> {
    let data = serde_json::to_string(&identity.data).map_err(invalid)?;
    Ok(connection
        .prepare_cached(&format!(
            "INSERT INTO linked_identities ({IDENTITY_COLUMNS})
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (project, issuer, subject) DO NOTHING"
        ))?
        .execute(params![
            identity.project.as_str(),
            identity.id,
            identity.user_id,
            identity.provider,
            identity.issuer,
            identity.subject,
            identity.email,
            data,
            identity.created_at,
            identity.updated_at,
            identity.last_sign_in_at
        ])?)
}

#[store::async_trait]
impl AccountStore for SqliteStore {
    async fn create_user(&self, user: &User) -> Result<(), StoreError> {
        let user = user.clone();
        self.meta(move |connection| {
            let params = user_params(&user)?;
            connection
                .prepare_cached(&format!(
                    "INSERT INTO users ({USER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                ))?
                .execute(rusqlite::params_from_iter(params.iter()))
                .map_err(email_taken)?;
            Ok(())
        })
        .await
    }

    async fn user(&self, project: &ProjectId, id: &str) -> Result<Option<User>, StoreError> {
        let (project, id) = (project.clone(), id.to_owned());
        self.read(move |connection| {
            one_user(
                connection,
                "project = ? AND id = ?",
                [project.as_str(), &id],
            )
        })
        .await
    }

    async fn user_by_email(
        &self,
        project: &ProjectId,
        email: &str,
    ) -> Result<Option<User>, StoreError> {
        let (project, email) = (project.clone(), email.to_owned());
        self.read(move |connection| {
            one_user(
                connection,
                "project = ? AND email = ?",
                [project.as_str(), &email],
            )
        })
        .await
    }

    async fn update_user(&self, user: &User) -> Result<bool, StoreError> {
        let user = user.clone();
        self.meta(move |connection| {
            let params = user_params(&user)?;
            let changed = connection
                .prepare_cached(
                    "UPDATE users SET email = ?3, phone = ?4, password_hash = ?5,
                       email_confirmed_at = ?6, anonymous = ?7, banned_until = ?8,
                       app_metadata = ?9, user_metadata = ?10, created_at = ?11,
                       updated_at = ?12, last_sign_in_at = ?13
                     WHERE project = ?1 AND id = ?2",
                )?
                .execute(rusqlite::params_from_iter(params.iter()))
                .map_err(email_taken)?;
            Ok(changed == 1)
        })
        .await
    }

    async fn delete_user(
        &self,
        project: &ProjectId,
        id: &str,
        now: UnixMillis,
    ) -> Result<Option<Vec<String>>, StoreError> {
        let (project, id) = (project.clone(), id.to_owned());
        self.meta(move |connection| {
            let transaction = connection.transaction()?;
            let deleted = transaction.execute(
                "DELETE FROM users WHERE project = ? AND id = ?",
                params![project.as_str(), id],
            )?;
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
                    .prepare_cached(&format!(
                        "DELETE FROM {table} WHERE project = ? AND user_id = ?"
                    ))?
                    .execute(params![project.as_str(), id])?;
            }
            let ended = end(&transaction, project.as_str(), &id, Ending::All, now)?;
            transaction.commit()?;
            Ok(Some(ended))
        })
        .await
    }

    async fn users(
        &self,
        project: &ProjectId,
        offset: u64,
        limit: usize,
    ) -> Result<Vec<User>, StoreError> {
        let project = project.clone();
        self.read(move |connection| {
            let mut statement = connection.prepare_cached(&format!(
                "SELECT {USER_COLUMNS} FROM users WHERE project = ? ORDER BY id LIMIT ? OFFSET ?"
            ))?;
            statement
                .query_map(
                    params![project.as_str(), limit as i64, offset as i64],
                    user_from_row,
                )?
                .map(|row| row?)
                .collect()
        })
        .await
    }

    async fn count_users(&self, project: &ProjectId) -> Result<u64, StoreError> {
        let project = project.clone();
        self.read(move |connection| {
            Ok(connection
                .prepare_cached("SELECT count(*) FROM users WHERE project = ?")?
                .query_row([project.as_str()], |row| row.get::<_, i64>(0))? as u64)
        })
        .await
    }

    async fn create_session(
        &self,
        session: &Session,
        refresh: &[u8; 32],
    ) -> Result<(), StoreError> {
        let (session, refresh) = (session.clone(), *refresh);
        self.meta(move |connection| {
            let transaction = connection.transaction()?;
            transaction.execute(
                &format!("INSERT INTO sessions ({SESSION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"),
                params![
                    session.project.as_str(),
                    session.id,
                    session.user_id,
                    session.created_at,
                    session.refreshed_at,
                    session.aal,
                    session.ended_at
                ],
            )?;
            transaction.execute(
                "INSERT INTO refresh_tokens (project, sha256, session_id, created_at)
                 VALUES (?, ?, ?, ?)",
                params![
                    session.project.as_str(),
                    &refresh[..],
                    session.id,
                    session.created_at
                ],
            )?;
            transaction.commit()?;
            Ok(())
        })
        .await
    }

    async fn session(&self, project: &ProjectId, id: &str) -> Result<Option<Session>, StoreError> {
        let (project, id) = (project.clone(), id.to_owned());
        self.read(move |connection| {
            connection
                .prepare_cached(&format!(
                    "SELECT {SESSION_COLUMNS} FROM sessions WHERE project = ? AND id = ?"
                ))?
                .query_row(params![project.as_str(), id], session_from_row)
                .optional()?
                .transpose()
        })
        .await
    }

    async fn live_sessions(
        &self,
        project: &ProjectId,
        user_id: &str,
    ) -> Result<Vec<Session>, StoreError> {
        let (project, user_id) = (project.clone(), user_id.to_owned());
        self.read(move |connection| {
            connection
                .prepare_cached(&format!(
                    "SELECT {SESSION_COLUMNS} FROM sessions
                     WHERE project = ? AND user_id = ? AND ended_at IS NULL
                     ORDER BY created_at, id"
                ))?
                .query_map(params![project.as_str(), user_id], session_from_row)?
                .map(|row| row?)
                .collect()
        })
        .await
    }

    async fn refresh(
        &self,
        project: &ProjectId,
        used: &[u8; 32],
        next: &[u8; 32],
        now: UnixMillis,
        grace_ms: i64,
    ) -> Result<Refreshed, StoreError> {
        let (project, used, next) = (project.clone(), *used, *next);
        self.meta(move |connection| {
            let transaction = connection.transaction()?;
            let project = project.as_str();
            let token: Option<(String, Option<UnixMillis>)> = transaction
                .query_row(
                    "SELECT session_id, used_at FROM refresh_tokens
                     WHERE project = ? AND sha256 = ?",
                    params![project, &used[..]],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .optional()?;
            let Some((session_id, used_at)) = token else {
                return Ok(Refreshed::Refused);
            };
            let session = transaction
                .query_row(
                    &format!(
                        "SELECT {SESSION_COLUMNS} FROM sessions
                         WHERE project = ? AND id = ? AND ended_at IS NULL"
                    ),
                    params![project, session_id],
                    session_from_row,
                )
                .optional()?
                .transpose()?;
            let Some(mut session) = session else {
                return Ok(Refreshed::Refused);
            };
            if used_at.is_some_and(|at| now - at > grace_ms) {
                end(
                    &transaction,
                    project,
                    &session.user_id,
                    Ending::One(&session_id),
                    now,
                )?;
                transaction.commit()?;
                return Ok(Refreshed::Replayed { session_id });
            }
            if used_at.is_none() {
                transaction.execute(
                    "UPDATE refresh_tokens SET used_at = ? WHERE project = ? AND sha256 = ?",
                    params![now, project, &used[..]],
                )?;
            }
            transaction.execute(
                "INSERT INTO refresh_tokens (project, sha256, session_id, created_at)
                 VALUES (?, ?, ?, ?)",
                params![project, &next[..], session_id, now],
            )?;
            transaction.execute(
                "UPDATE sessions SET refreshed_at = ? WHERE project = ? AND id = ?",
                params![now, project, session_id],
            )?;
            transaction.commit()?;
            session.refreshed_at = now;
            Ok(match used_at {
                None => Refreshed::Rotated(session),
                Some(_) => Refreshed::Again(session),
            })
        })
        .await
    }

    async fn add_refresh_token(
        &self,
        project: &ProjectId,
        session_id: &str,
        refresh: &[u8; 32],
        now: UnixMillis,
    ) -> Result<bool, StoreError> {
        let (project, session_id, refresh) = (project.clone(), session_id.to_owned(), *refresh);
        self.meta(move |connection| {
            Ok(connection
                .prepare_cached(
                    "INSERT INTO refresh_tokens (project, sha256, session_id, created_at)
                     SELECT project, ?3, id, ?4 FROM sessions
                     WHERE project = ?1 AND id = ?2 AND ended_at IS NULL",
                )?
                .execute(params![project.as_str(), session_id, &refresh[..], now])?
                == 1)
        })
        .await
    }

    async fn set_session_aal(
        &self,
        project: &ProjectId,
        id: &str,
        aal: u8,
    ) -> Result<bool, StoreError> {
        let (project, id) = (project.clone(), id.to_owned());
        self.meta(move |connection| {
            Ok(connection.execute(
                "UPDATE sessions SET aal = ? WHERE project = ? AND id = ? AND ended_at IS NULL",
                params![aal, project.as_str(), id],
            )? == 1)
        })
        .await
    }

    async fn end_sessions(
        &self,
        project: &ProjectId,
        user_id: &str,
        which: Ending<'_>,
        now: UnixMillis,
    ) -> Result<Vec<String>, StoreError> {
        let (project, user_id) = (project.clone(), user_id.to_owned());
        let (kind, session) = match which {
            Ending::One(id) => (0, id.to_owned()),
            Ending::All => (1, String::new()),
            Ending::Others(id) => (2, id.to_owned()),
        };
        self.meta(move |connection| {
            let which = match kind {
                0 => Ending::One(&session),
                1 => Ending::All,
                _ => Ending::Others(&session),
            };
            let transaction = connection.transaction()?;
            let ended = end(&transaction, project.as_str(), &user_id, which, now)?;
            transaction.commit()?;
            Ok(ended)
        })
        .await
    }

    async fn ended_sessions(
        &self,
        since: UnixMillis,
    ) -> Result<Vec<(ProjectId, String, UnixMillis)>, StoreError> {
        self.read(move |connection| {
            let mut statement = connection
                .prepare_cached("SELECT project, id, ended_at FROM sessions WHERE ended_at >= ?")?;
            let rows = statement.query_map([since], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, i64>(2)?,
                ))
            })?;
            rows.map(|row| {
                let (project, id, at) = row?;
                Ok((stored(ProjectId::new(project))?, id, at))
            })
            .collect()
        })
        .await
    }

    async fn add_signing_key(&self, key: &SigningKey) -> Result<(), StoreError> {
        let key = key.clone();
        self.meta(move |connection| {
            connection.execute(
                "INSERT INTO signing_keys (project, kid, sealed_private, created_at, retired_at)
                 VALUES (?, ?, ?, ?, ?)",
                params![
                    key.project.as_str(),
                    key.kid,
                    key.sealed_private,
                    key.created_at,
                    key.retired_at
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn retire_signing_key(
        &self,
        project: &ProjectId,
        kid: &str,
        now: UnixMillis,
    ) -> Result<bool, StoreError> {
        let (project, kid) = (project.clone(), kid.to_owned());
        self.meta(move |connection| {
            Ok(connection.execute(
                "UPDATE signing_keys SET retired_at = ?
                 WHERE project = ? AND kid = ? AND retired_at IS NULL",
                params![now, project.as_str(), kid],
            )? == 1)
        })
        .await
    }

    async fn signing_keys(&self) -> Result<Vec<SigningKey>, StoreError> {
        self.read(|connection| {
            let mut statement = connection.prepare_cached(
                "SELECT project, kid, sealed_private, created_at, retired_at FROM signing_keys
                 ORDER BY created_at, project, kid",
            )?;
            let rows = statement.query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get(1)?,
                    row.get(2)?,
                    row.get(3)?,
                    row.get(4)?,
                ))
            })?;
            rows.map(|row| {
                let (project, kid, sealed_private, created_at, retired_at) = row?;
                Ok(SigningKey {
                    project: stored(ProjectId::new(project))?,
                    kid,
                    sealed_private,
                    created_at,
                    retired_at,
                })
            })
            .collect()
        })
        .await
    }

    async fn set_auth_settings(
        &self,
        project: &ProjectId,
        settings: &serde_json::Value,
    ) -> Result<(), StoreError> {
        let (project, settings) = (project.clone(), settings.to_string());
        self.meta(move |connection| {
            connection.execute(
                "INSERT INTO auth_settings (project, settings) VALUES (?, ?)
                 ON CONFLICT (project) DO UPDATE SET settings = excluded.settings",
                params![project.as_str(), settings],
            )?;
            Ok(())
        })
        .await
    }

    async fn auth_settings(&self) -> Result<Vec<(ProjectId, serde_json::Value)>, StoreError> {
        self.read(|connection| {
            let mut statement =
                connection.prepare_cached("SELECT project, settings FROM auth_settings")?;
            let rows = statement.query_map([], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
            })?;
            rows.map(|row| {
                let (project, settings) = row?;
                Ok((
                    stored(ProjectId::new(project))?,
                    stored(serde_json::from_str(&settings))?,
                ))
            })
            .collect()
        })
        .await
    }

    async fn put_email_code(&self, code: &EmailCode) -> Result<(), StoreError> {
        let code = code.clone();
        self.meta(move |connection| {
            let transaction = connection.transaction()?;
            transaction
                .prepare_cached("DELETE FROM email_codes WHERE project = ? AND expires_at <= ?")?
                .execute(params![code.project.as_str(), code.created_at])?;
            transaction
                .prepare_cached(&format!(
                    "INSERT OR REPLACE INTO email_codes ({CODE_COLUMNS}, failures)
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0)"
                ))?
                .execute(params![
                    code.project.as_str(),
                    code.flow.as_str(),
                    code.email,
                    code.user_id,
                    &code.code_hash[..],
                    &code.link_hash[..],
                    code.created_at,
                    code.expires_at
                ])?;
            transaction.commit()?;
            Ok(())
        })
        .await
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
        let (project, email, flows, code_hash) = (
            project.clone(),
            email.to_owned(),
            flows.to_vec(),
            *code_hash,
        );
        self.meta(move |connection| {
            let transaction = connection.transaction()?;
            let names = flow_names(&flows);
            let mut values: Vec<Box<dyn rusqlite::ToSql>> = vec![
                Box::new(project.as_str().to_owned()),
                Box::new(email),
                Box::new(now),
                Box::new(max_failures),
                Box::new(code_hash.to_vec()),
            ];
            values.extend(
                names
                    .iter()
                    .map(|name| Box::new(*name) as Box<dyn rusqlite::ToSql>),
            );
            let live = format!(
                "project = ?1 AND email = ?2 AND expires_at > ?3 AND failures < ?4 AND {}",
                flows_in(&flows, 6)
            );
            let used = transaction
                .prepare(&format!(
                    "DELETE FROM email_codes WHERE {live} AND code_hash = ?5 RETURNING {CODE_COLUMNS}"
                ))?
                .query_row(rusqlite::params_from_iter(values.iter()), code_from_row)
                .optional()?
                .transpose()?;
            if let Some(used) = used {
                transaction.commit()?;
                return Ok(CodeUse::Used(used));
            }
            let counted = transaction
                .prepare(&format!(
                    "UPDATE email_codes SET failures = failures + 1
                     WHERE {live} AND code_hash <> ?5"
                ))?
                .execute(rusqlite::params_from_iter(values.iter()))?;
            transaction
                .prepare(&format!(
                    "DELETE FROM email_codes
                     WHERE project = ?1 AND email = ?2 AND failures >= ?4 AND {}",
                    flows_in(&flows, 6)
                ))?
                // (Binds ?3 and ?5 too, unused: numbered parameters are
                // bound up to the highest.)
                .execute(rusqlite::params_from_iter(values.iter()))?;
            transaction.commit()?;
            Ok(if counted > 0 {
                CodeUse::Wrong
            } else {
                CodeUse::None
            })
        })
        .await
    }

    async fn use_email_link(
        &self,
        project: &ProjectId,
        flows: &[Flow],
        link_hash: &[u8; 32],
        now: UnixMillis,
        max_failures: u32,
    ) -> Result<Option<EmailCode>, StoreError> {
        let (project, flows, link_hash) = (project.clone(), flows.to_vec(), *link_hash);
        self.meta(move |connection| {
            let mut values: Vec<Box<dyn rusqlite::ToSql>> = vec![
                Box::new(project.as_str().to_owned()),
                Box::new(link_hash.to_vec()),
                Box::new(now),
                Box::new(max_failures),
            ];
            values.extend(
                flow_names(&flows)
                    .into_iter()
                    .map(|name| Box::new(name) as Box<dyn rusqlite::ToSql>),
            );
            connection
                .prepare(&format!(
                    "DELETE FROM email_codes
                     WHERE project = ?1 AND link_hash = ?2 AND expires_at > ?3
                       AND failures < ?4 AND {}
                     RETURNING {CODE_COLUMNS}",
                    flows_in(&flows, 5)
                ))?
                .query_row(rusqlite::params_from_iter(values.iter()), code_from_row)
                .optional()?
                .transpose()
        })
        .await
    }

    async fn email_code(
        &self,
        project: &ProjectId,
        flow: Flow,
        email: &str,
        now: UnixMillis,
    ) -> Result<Option<EmailCode>, StoreError> {
        let (project, email) = (project.clone(), email.to_owned());
        self.read(move |connection| {
            connection
                .prepare_cached(&format!(
                    "SELECT {CODE_COLUMNS} FROM email_codes
                     WHERE project = ? AND flow = ? AND email = ? AND expires_at > ?"
                ))?
                .query_row(
                    params![project.as_str(), flow.as_str(), email, now],
                    code_from_row,
                )
                .optional()?
                .transpose()
        })
        .await
    }

    async fn create_factor(&self, factor: &Factor) -> Result<(), StoreError> {
        let factor = factor.clone();
        self.meta(move |connection| {
            connection
                .prepare_cached(&format!(
                    "INSERT INTO mfa_factors ({FACTOR_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                ))?
                .execute(params![
                    factor.project.as_str(),
                    factor.id,
                    factor.user_id,
                    factor.factor_type,
                    factor.friendly_name,
                    factor.sealed_secret,
                    factor.status.as_str(),
                    factor.last_used_step,
                    factor.created_at,
                    factor.updated_at
                ])?;
            Ok(())
        })
        .await
    }

    async fn factors(&self, project: &ProjectId, user_id: &str) -> Result<Vec<Factor>, StoreError> {
        let (project, user_id) = (project.clone(), user_id.to_owned());
        self.read(move |connection| {
            connection
                .prepare_cached(&format!(
                    "SELECT {FACTOR_COLUMNS} FROM mfa_factors WHERE project = ? AND user_id = ?
                     ORDER BY created_at, id"
                ))?
                .query_map(params![project.as_str(), user_id], factor_from_row)?
                .map(|row| row?)
                .collect()
        })
        .await
    }

    async fn delete_factor(
        &self,
        project: &ProjectId,
        user_id: &str,
        id: &str,
    ) -> Result<bool, StoreError> {
        let (project, user_id, id) = (project.clone(), user_id.to_owned(), id.to_owned());
        self.meta(move |connection| {
            let transaction = connection.transaction()?;
            let deleted = transaction.execute(
                "DELETE FROM mfa_factors WHERE project = ? AND user_id = ? AND id = ?",
                params![project.as_str(), user_id, id],
            )?;
            if deleted == 0 {
                return Ok(false);
            }
            transaction.execute(
                "DELETE FROM mfa_challenges WHERE project = ? AND factor_id = ?",
                params![project.as_str(), id],
            )?;
            transaction.commit()?;
            Ok(true)
        })
        .await
    }

    async fn create_challenge(&self, challenge: &Challenge) -> Result<(), StoreError> {
        let challenge = challenge.clone();
        self.meta(move |connection| {
            let transaction = connection.transaction()?;
            transaction
                .prepare_cached("DELETE FROM mfa_challenges WHERE project = ? AND expires_at <= ?")?
                .execute(params![challenge.project.as_str(), challenge.created_at])?;
            transaction
                .prepare_cached(&format!(
                    "INSERT INTO mfa_challenges ({CHALLENGE_COLUMNS}, failures)
                     VALUES (?, ?, ?, ?, ?, ?, 0)"
                ))?
                .execute(params![
                    challenge.project.as_str(),
                    challenge.id,
                    challenge.factor_id,
                    challenge.user_id,
                    challenge.created_at,
                    challenge.expires_at
                ])?;
            transaction.commit()?;
            Ok(())
        })
        .await
    }

    async fn challenge(
        &self,
        project: &ProjectId,
        id: &str,
        now: UnixMillis,
        max_failures: u32,
    ) -> Result<Option<Challenge>, StoreError> {
        let (project, id) = (project.clone(), id.to_owned());
        self.read(move |connection| {
            connection
                .prepare_cached(&format!(
                    "SELECT {CHALLENGE_COLUMNS} FROM mfa_challenges
                     WHERE project = ? AND id = ? AND expires_at > ? AND failures < ?"
                ))?
                .query_row(
                    params![project.as_str(), id, now, max_failures],
                    challenge_from_row,
                )
                .optional()?
                .transpose()
        })
        .await
    }

    async fn fail_challenge(
        &self,
        project: &ProjectId,
        id: &str,
        now: UnixMillis,
        max_failures: u32,
    ) -> Result<bool, StoreError> {
        let (project, id) = (project.clone(), id.to_owned());
        self.meta(move |connection| {
            let transaction = connection.transaction()?;
            let live = count_failure(&transaction, project.as_str(), &id, now, max_failures)?;
            transaction.commit()?;
            Ok(live)
        })
        .await
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
        let (project, factor_id, challenge_id) = (
            project.clone(),
            factor_id.to_owned(),
            challenge_id.to_owned(),
        );
        self.meta(move |connection| {
            let transaction = connection.transaction()?;
            let project = project.as_str();
            let live = transaction
                .prepare_cached(
                    "SELECT 1 FROM mfa_challenges
                     WHERE project = ?1 AND id = ?2 AND factor_id = ?3 AND expires_at > ?4
                       AND failures < ?5",
                )?
                .exists(params![project, challenge_id, factor_id, now, max_failures])?;
            if !live {
                return Ok(StepUse::NoChallenge);
            }
            // Holds only for a step later than every one accepted before.
            let factor = transaction
                .prepare_cached(&format!(
                    "UPDATE mfa_factors SET last_used_step = ?3, status = 'verified', updated_at = ?4
                     WHERE project = ?1 AND id = ?2
                       AND (last_used_step IS NULL OR last_used_step < ?3)
                     RETURNING {FACTOR_COLUMNS}"
                ))?
                .query_row(params![project, factor_id, step, now], factor_from_row)
                .optional()?
                .transpose()?;
            let Some(factor) = factor else {
                count_failure(&transaction, project, &challenge_id, now, max_failures)?;
                transaction.commit()?;
                return Ok(StepUse::Replayed);
            };
            transaction
                .prepare_cached("DELETE FROM mfa_challenges WHERE project = ? AND id = ?")?
                .execute(params![project, challenge_id])?;
            transaction.commit()?;
            Ok(StepUse::Used(factor))
        })
        .await
    }

    async fn put_login_ticket(&self, ticket: &LoginTicket) -> Result<(), StoreError> {
        let ticket = ticket.clone();
        self.meta(move |connection| {
            let transaction = connection.transaction()?;
            transaction
                .prepare_cached("DELETE FROM login_tickets WHERE project = ? AND expires_at <= ?")?
                .execute(params![ticket.project.as_str(), ticket.created_at])?;
            transaction
                .prepare_cached(
                    "INSERT INTO login_tickets (project, sha256, user_id, created_at, expires_at)
                     VALUES (?, ?, ?, ?, ?)",
                )?
                .execute(params![
                    ticket.project.as_str(),
                    &ticket.hash[..],
                    ticket.user_id,
                    ticket.created_at,
                    ticket.expires_at
                ])?;
            transaction.commit()?;
            Ok(())
        })
        .await
    }

    async fn use_login_ticket(
        &self,
        project: &ProjectId,
        hash: &[u8; 32],
        now: UnixMillis,
    ) -> Result<Option<LoginTicket>, StoreError> {
        let (project, hash) = (project.clone(), *hash);
        self.meta(move |connection| {
            let used: Option<(String, UnixMillis, UnixMillis)> = connection
                .prepare_cached(
                    "DELETE FROM login_tickets WHERE project = ? AND sha256 = ? AND expires_at > ?
                     RETURNING user_id, created_at, expires_at",
                )?
                .query_row(params![project.as_str(), &hash[..], now], |row| {
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?))
                })
                .optional()?;
            Ok(used.map(|(user_id, created_at, expires_at)| LoginTicket {
                project,
                hash,
                user_id,
                created_at,
                expires_at,
            }))
        })
        .await
    }

    async fn create_user_with_identity(
        &self,
        user: &User,
        identity: &LinkedIdentity,
    ) -> Result<bool, StoreError> {
        let (user, identity) = (user.clone(), identity.clone());
        self.meta(move |connection| {
            let transaction = connection.transaction()?;
            let taken = transaction
                .prepare_cached(
                    "SELECT 1 FROM linked_identities WHERE project = ? AND issuer = ? AND subject = ?",
                )?
                .exists(params![
                    identity.project.as_str(),
                    identity.issuer,
                    identity.subject
                ])?;
            if taken {
                return Ok(false);
            }
            let params = user_params(&user)?;
            transaction
                .prepare_cached(&format!(
                    "INSERT INTO users ({USER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                ))?
                .execute(rusqlite::params_from_iter(params.iter()))
                .map_err(email_taken)?;
            insert_identity(&transaction, &identity)?;
            transaction.commit()?;
            Ok(true)
        })
        .await
    }

    async fn linked_identity(
        &self,
        project: &ProjectId,
        issuer: &str,
        subject: &str,
    ) -> Result<Option<LinkedIdentity>, StoreError> {
        let (project, issuer, subject) = (project.clone(), issuer.to_owned(), subject.to_owned());
        self.read(move |connection| {
            connection
                .prepare_cached(&format!(
                    "SELECT {IDENTITY_COLUMNS} FROM linked_identities
                     WHERE project = ? AND issuer = ? AND subject = ?"
                ))?
                .query_row(
                    params![project.as_str(), issuer, subject],
                    identity_from_row,
                )
                .optional()?
                .transpose()
        })
        .await
    }

    async fn linked_identities(
        &self,
        project: &ProjectId,
        user_id: &str,
    ) -> Result<Vec<LinkedIdentity>, StoreError> {
        let (project, user_id) = (project.clone(), user_id.to_owned());
        self.read(move |connection| {
            connection
                .prepare_cached(&format!(
                    "SELECT {IDENTITY_COLUMNS} FROM linked_identities
                     WHERE project = ? AND user_id = ? ORDER BY created_at, id"
                ))?
                .query_map(params![project.as_str(), user_id], identity_from_row)?
                .map(|row| row?)
                .collect()
        })
        .await
    }

    async fn create_linked_identity(&self, identity: &LinkedIdentity) -> Result<bool, StoreError> {
        let identity = identity.clone();
        self.meta(move |connection| Ok(insert_identity(connection, &identity)? > 0))
            .await
    }

    async fn delete_linked_identity(
        &self,
        project: &ProjectId,
        user_id: &str,
        id: &str,
    ) -> Result<bool, StoreError> {
        let (project, user_id, id) = (project.clone(), user_id.to_owned(), id.to_owned());
        self.meta(move |connection| {
            let deleted = connection
                .prepare_cached(
                    "DELETE FROM linked_identities WHERE project = ? AND user_id = ? AND id = ?",
                )?
                .execute(params![project.as_str(), user_id, id])?;
            Ok(deleted > 0)
        })
        .await
    }

    async fn update_linked_identity(&self, identity: &LinkedIdentity) -> Result<bool, StoreError> {
        let identity = identity.clone();
        self.meta(move |connection| {
            let data = serde_json::to_string(&identity.data).map_err(invalid)?;
            let updated = connection
                .prepare_cached(
                    "UPDATE linked_identities SET email = ?, data = ?, updated_at = ?,
                     last_sign_in_at = ? WHERE project = ? AND id = ?",
                )?
                .execute(params![
                    identity.email,
                    data,
                    identity.updated_at,
                    identity.last_sign_in_at,
                    identity.project.as_str(),
                    identity.id
                ])?;
            Ok(updated > 0)
        })
        .await
    }

    async fn put_pending_flow(&self, flow: &PendingFlow) -> Result<(), StoreError> {
        let flow = flow.clone();
        self.meta(move |connection| {
            let data = serde_json::to_string(&flow.data).map_err(invalid)?;
            let transaction = connection.transaction()?;
            transaction
                .prepare_cached("DELETE FROM pending_flows WHERE project = ? AND expires_at <= ?")?
                .execute(params![flow.project.as_str(), flow.created_at])?;
            transaction
                .prepare_cached(
                    "INSERT INTO pending_flows (project, kind, sha256, data, created_at, expires_at)
                     VALUES (?, ?, ?, ?, ?, ?)",
                )?
                .execute(params![
                    flow.project.as_str(),
                    flow.kind.as_str(),
                    &flow.hash[..],
                    data,
                    flow.created_at,
                    flow.expires_at
                ])?;
            transaction.commit()?;
            Ok(())
        })
        .await
    }

    async fn take_pending_flow(
        &self,
        project: &ProjectId,
        kind: PendingKind,
        hash: &[u8; 32],
        now: UnixMillis,
    ) -> Result<Option<PendingFlow>, StoreError> {
        let (project, hash) = (project.clone(), *hash);
        self.meta(move |connection| {
            let taken: Option<(String, UnixMillis, UnixMillis)> = connection
                .prepare_cached(
                    "DELETE FROM pending_flows
                     WHERE project = ? AND kind = ? AND sha256 = ? AND expires_at > ?
                     RETURNING data, created_at, expires_at",
                )?
                .query_row(
                    params![project.as_str(), kind.as_str(), &hash[..], now],
                    |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
                )
                .optional()?;
            let Some((data, created_at, expires_at)) = taken else {
                return Ok(None);
            };
            Ok(Some(PendingFlow {
                project,
                kind,
                hash,
                data: serde_json::from_str(&data).map_err(invalid)?,
                created_at,
                expires_at,
            }))
        })
        .await
    }
}
