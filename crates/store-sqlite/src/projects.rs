//! Projects, keys and access rules on SQLite: `projects` (a removed
//! project keeps its row, so its name is never given out again),
//! `api_keys` (the SHA-256 of each secret, the sealed S3 secret) and
//! `access_rules`.
use crate::{Result, SqliteStore, stored};
use domain::{AccessRule, ApiKey, KeyKind, Project, ProjectId, ResourceKind, now_millis};
use rusqlite::{OptionalExtension, Row, params};
use store::{ProjectStore, StoreError};

const KEY_COLUMNS: &str =
    "project, id, kind, name, secret_sha256, created_at, revoked_at, s3_secret";

fn key_from_row(row: &Row<'_>) -> rusqlite::Result<Result<ApiKey>> {
    let project: String = row.get(0)?;
    let kind: String = row.get(2)?;
    let secret: Vec<u8> = row.get(4)?;
    let key = (|| {
        Ok(ApiKey {
            project: stored(ProjectId::new(project))?,
            id: row.get(1)?,
            kind: KeyKind::parse(&kind)
                .ok_or_else(|| StoreError::Corrupt(format!("key kind {kind:?}")))?,
            name: row.get(3)?,
            secret_sha256: secret
                .try_into()
                .map_err(|_| StoreError::Corrupt("key hash is not 32 bytes".to_owned()))?,
            created_at: row.get(5)?,
            revoked_at: row.get(6)?,
            s3_secret: row.get(7)?,
        })
    })();
    Ok(key)
}

#[store::async_trait]
impl ProjectStore for SqliteStore {
    async fn create_project(&self, project: &ProjectId) -> Result<Project, StoreError> {
        let project = project.clone();
        self.meta(move |connection| {
            let created_at = now_millis();
            let inserted = connection.execute(
                "INSERT OR IGNORE INTO projects (name, created_at) VALUES (?, ?)",
                params![project.as_str(), created_at],
            )?;
            if inserted == 0 {
                return Err(StoreError::ProjectExists(project.to_string()).into());
            }
            Ok(Project {
                id: project,
                created_at,
            })
        })
        .await
    }

    async fn list_projects(&self) -> Result<Vec<Project>, StoreError> {
        self.meta(|connection| {
            let mut statement = connection.prepare(
                "SELECT name, created_at FROM projects WHERE removed_at IS NULL ORDER BY name",
            )?;
            let rows = statement.query_map([], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
            })?;
            rows.map(|row| {
                let (name, created_at) = row?;
                Ok(Project {
                    id: stored(ProjectId::new(name))?,
                    created_at,
                })
            })
            .collect()
        })
        .await
    }

    async fn project(&self, project: &ProjectId) -> Result<Option<Project>, StoreError> {
        let project = project.clone();
        self.meta(move |connection| {
            let created_at = connection
                .query_row(
                    "SELECT created_at FROM projects WHERE name = ? AND removed_at IS NULL",
                    params![project.as_str()],
                    |row| row.get::<_, i64>(0),
                )
                .optional()?;
            Ok(created_at.map(|created_at| Project {
                id: project,
                created_at,
            }))
        })
        .await
    }

    async fn remove_project(&self, project: &ProjectId) -> Result<bool, StoreError> {
        // Key-value entries still in the journal count too.
        self.kv_checkpoint().await?;
        let project = project.clone();
        self.meta(move |connection| {
            let transaction =
                connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            // Functions, data or app users left would be unreachable for
            // good: a removed project's name is never given out again.
            let busy: bool = transaction.query_row(
                "SELECT EXISTS (SELECT 1 FROM functions WHERE project = ?1 AND current_version IS NOT NULL)
                     OR EXISTS (SELECT 1 FROM kv WHERE project = ?1)
                     OR EXISTS (SELECT 1 FROM doc_collections WHERE project = ?1 AND documents > 0)
                     OR EXISTS (SELECT 1 FROM buckets WHERE project = ?1)
                     OR EXISTS (SELECT 1 FROM users WHERE project = ?1)",
                params![project.as_str()],
                |row| row.get(0),
            )?;
            if busy {
                return Err(StoreError::ProjectNotEmpty(project.to_string()).into());
            }
            let now = now_millis();
            let removed = transaction.execute(
                "UPDATE projects SET removed_at = ? WHERE name = ? AND removed_at IS NULL",
                params![now, project.as_str()],
            )?;
            transaction.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE project = ? AND revoked_at IS NULL",
                params![now, project.as_str()],
            )?;
            transaction.commit()?;
            Ok(removed > 0)
        })
        .await
    }

    async fn access_rule(
        &self,
        project: &ProjectId,
        kind: ResourceKind,
        name: &str,
    ) -> Result<Option<AccessRule>, StoreError> {
        let (project, name) = (project.clone(), name.to_owned());
        self.meta(move |connection| {
            let rule: Option<String> = connection
                .prepare_cached(
                    "SELECT rule FROM access_rules WHERE project = ? AND kind = ? AND name = ?",
                )?
                .query_row(params![project.as_str(), kind.as_str(), name], |row| {
                    row.get(0)
                })
                .optional()?;
            Ok(rule
                .map(|rule| {
                    AccessRule::parse(&rule)
                        .ok_or_else(|| StoreError::Corrupt(format!("access rule {rule:?}")))
                })
                .transpose()?)
        })
        .await
    }

    async fn set_access_rule(
        &self,
        project: &ProjectId,
        kind: ResourceKind,
        name: &str,
        rule: AccessRule,
    ) -> Result<(), StoreError> {
        let (project, name) = (project.clone(), name.to_owned());
        self.meta(move |connection| {
            connection.execute(
                "INSERT INTO access_rules (project, kind, name, rule) VALUES (?, ?, ?, ?)
                 ON CONFLICT (project, kind, name) DO UPDATE SET rule = excluded.rule",
                params![project.as_str(), kind.as_str(), name, rule.as_str()],
            )?;
            Ok(())
        })
        .await
    }

    async fn access_rules(
        &self,
    ) -> Result<Vec<(ProjectId, ResourceKind, String, AccessRule)>, StoreError> {
        self.meta(|connection| {
            let mut statement =
                connection.prepare_cached("SELECT project, kind, name, rule FROM access_rules")?;
            let rows = statement.query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, String>(3)?,
                ))
            })?;
            let mut rules = Vec::new();
            for row in rows {
                let (project, kind, name, rule) = row?;
                let parsed = (
                    ProjectId::new(&project).ok(),
                    ResourceKind::parse(&kind),
                    AccessRule::parse(&rule),
                );
                let (Some(project), Some(kind), Some(rule)) = parsed else {
                    return Err(StoreError::Corrupt(format!(
                        "access rule {project}/{kind}/{name}"
                    ))
                    .into());
                };
                rules.push((project, kind, name, rule));
            }
            Ok(rules)
        })
        .await
    }

    async fn create_key(&self, key: &ApiKey) -> Result<(), StoreError> {
        let key = key.clone();
        self.meta(move |connection| {
            let transaction =
                connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let live: i64 = transaction.query_row(
                "SELECT COUNT(*) FROM projects WHERE name = ? AND removed_at IS NULL",
                params![key.project.as_str()],
                |row| row.get(0),
            )?;
            if live == 0 {
                return Err(StoreError::NoSuchProject(key.project.to_string()).into());
            }
            transaction.execute(
                "INSERT INTO api_keys (project, id, kind, name, secret_sha256, created_at, revoked_at, s3_secret)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                params![
                    key.project.as_str(),
                    key.id,
                    key.kind.as_str(),
                    key.name,
                    key.secret_sha256.as_slice(),
                    key.created_at,
                    key.revoked_at,
                    key.s3_secret
                ],
            )?;
            transaction.commit()?;
            Ok(())
        })
        .await
    }

    async fn set_key_s3_secret(
        &self,
        project: &ProjectId,
        id: &str,
        sealed: &[u8],
    ) -> Result<bool, StoreError> {
        let (project, id, sealed) = (project.clone(), id.to_owned(), sealed.to_vec());
        self.meta(move |connection| {
            let changed = connection.execute(
                "UPDATE api_keys SET s3_secret = ? WHERE project = ? AND id = ? AND revoked_at IS NULL",
                params![sealed, project.as_str(), id],
            )?;
            Ok(changed == 1)
        })
        .await
    }

    async fn key(&self, project: &ProjectId, id: &str) -> Result<Option<ApiKey>, StoreError> {
        let (project, id) = (project.clone(), id.to_owned());
        self.meta(move |connection| {
            let mut statement = connection.prepare_cached(&format!(
                "SELECT {KEY_COLUMNS} FROM api_keys WHERE project = ? AND id = ?"
            ))?;
            statement
                .query_row(params![project.as_str(), id], key_from_row)
                .optional()?
                .transpose()
        })
        .await
    }

    async fn keys(&self, project: &ProjectId) -> Result<Vec<ApiKey>, StoreError> {
        let project = project.clone();
        self.meta(move |connection| {
            let mut statement = connection.prepare(&format!(
                "SELECT {KEY_COLUMNS} FROM api_keys WHERE project = ? ORDER BY created_at, id"
            ))?;
            let rows = statement.query_map(params![project.as_str()], key_from_row)?;
            rows.map(|row| row?).collect()
        })
        .await
    }

    async fn revoke_key(&self, project: &ProjectId, id: &str) -> Result<bool, StoreError> {
        let (project, id) = (project.clone(), id.to_owned());
        self.meta(move |connection| {
            let changed = connection.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE project = ? AND id = ? AND revoked_at IS NULL",
                params![now_millis(), project.as_str(), id],
            )?;
            Ok(changed > 0)
        })
        .await
    }
}
