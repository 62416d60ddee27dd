//! Projects, keys and access rules on PostgreSQL: `projects` (a removed
//! project keeps its row, so its name is never given out again),
//! `api_keys` (the SHA-256 of each secret, the sealed S3 secret) and
//! `access_rules`.
use crate::{Db, PgStore, Result, stored};
use deadpool_postgres::GenericClient;
use domain::{AccessRule, ApiKey, KeyKind, Project, ProjectId, ResourceKind, now_millis};
use store::{ProjectStore, StoreError};
use tokio_postgres::Row;

const KEY_COLUMNS: &str =
    "project, id, kind, name, secret_sha256, created_at, revoked_at, s3_secret";

fn key_from_row(row: &Row) -> Result<ApiKey> {
    let kind: String = row.get(2);
    let secret: Vec<u8> = row.get(4);
    Ok(ApiKey {
        project: stored(ProjectId::new(row.get::<_, String>(0)))?,
        id: row.get(1),
        kind: KeyKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("key kind {kind:?}")))?,
        name: row.get(3),
        secret_sha256: secret
            .try_into()
            .map_err(|_| StoreError::Corrupt("key hash is not 32 bytes".to_owned()))?,
        created_at: row.get(5),
        revoked_at: row.get(6),
        s3_secret: row.get(7),
    })
}

#[store::async_trait]
impl ProjectStore for PgStore {
    async fn create_project(&self, project: &ProjectId) -> Result<Project, StoreError> {
        let client = self.client().await?;
        let created_at = now_millis();
        let inserted = client
            .execute(
                "WITH changed AS (UPDATE control_changes SET version = version + 1)
                 INSERT INTO projects (name, created_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&project.as_str(), &created_at],
            )
            .await
            .db()?;
        if inserted == 0 {
            return Err(StoreError::ProjectExists(project.to_string()));
        }
        Ok(Project {
            id: project.clone(),
            created_at,
        })
    }

    async fn list_projects(&self) -> Result<Vec<Project>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT name, created_at FROM projects WHERE removed_at IS NULL
                 ORDER BY name COLLATE \"C\"",
                &[],
            )
            .await
            .db()?;
        rows.iter()
            .map(|row| {
                Ok(Project {
                    id: stored(ProjectId::new(row.get::<_, String>(0)))?,
                    created_at: row.get(1),
                })
            })
            .collect::<Result<_>>()
            .db()
    }

    async fn project(&self, project: &ProjectId) -> Result<Option<Project>, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "SELECT created_at FROM projects WHERE name = $1 AND removed_at IS NULL",
            )
            .await
            .db()?;
        Ok(client
            .query_opt(&statement, &[&project.as_str()])
            .await
            .db()?
            .map(|row| Project {
                id: project.clone(),
                created_at: row.get(0),
            }))
    }

    async fn remove_project(&self, project: &ProjectId) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await.db()?;
        // The project's row is locked first: a key or a write that checks
        // the project waits for the removal, then finds it gone.
        let live = transaction
            .query_opt(
                "SELECT 1 FROM projects WHERE name = $1 AND removed_at IS NULL FOR UPDATE",
                &[&project.as_str()],
            )
            .await
            .db()?
            .is_some();
        if !live {
            return Ok(false);
        }
        // Functions, data or app users left would be unreachable for good:
        // a removed project's name is never given out again.
        let busy: bool = transaction
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM functions WHERE project = $1 AND current_version IS NOT NULL)
                     OR EXISTS (SELECT 1 FROM kv WHERE project = $1)
                     OR EXISTS (SELECT 1 FROM docs d JOIN doc_collections c ON c.cid = d.cid
                                WHERE c.project = $1)
                     OR EXISTS (SELECT 1 FROM buckets WHERE project = $1)
                     OR EXISTS (SELECT 1 FROM users WHERE project = $1)",
                &[&project.as_str()],
            )
            .await
            .db()?
            .get(0);
        if busy {
            return Err(StoreError::ProjectNotEmpty(project.to_string()));
        }
        let now = now_millis();
        transaction
            .execute(
                "WITH changed AS (UPDATE control_changes SET version = version + 1)
                 UPDATE projects SET removed_at = $1 WHERE name = $2",
                &[&now, &project.as_str()],
            )
            .await
            .db()?;
        transaction
            .execute(
                "UPDATE api_keys SET revoked_at = $1 WHERE project = $2 AND revoked_at IS NULL",
                &[&now, &project.as_str()],
            )
            .await
            .db()?;
        transaction.commit().await.db()?;
        Ok(true)
    }

    async fn access_rule(
        &self,
        project: &ProjectId,
        kind: ResourceKind,
        name: &str,
    ) -> Result<Option<AccessRule>, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "SELECT rule FROM access_rules WHERE project = $1 AND kind = $2 AND name = $3",
            )
            .await
            .db()?;
        let rule: Option<String> = client
            .query_opt(&statement, &[&project.as_str(), &kind.as_str(), &name])
            .await
            .db()?
            .map(|row| row.get(0));
        rule.map(|rule| {
            AccessRule::parse(&rule)
                .ok_or_else(|| StoreError::Corrupt(format!("access rule {rule:?}")))
        })
        .transpose()
    }

    async fn set_access_rule(
        &self,
        project: &ProjectId,
        kind: ResourceKind,
        name: &str,
        rule: AccessRule,
    ) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute(
                "WITH changed AS (UPDATE control_changes SET version = version + 1)
                 INSERT INTO access_rules (project, kind, name, rule) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (project, kind, name) DO UPDATE SET rule = excluded.rule",
                &[&project.as_str(), &kind.as_str(), &name, &rule.as_str()],
            )
            .await
            .db()?;
        Ok(())
    }

    async fn access_rules(
        &self,
    ) -> Result<Vec<(ProjectId, ResourceKind, String, AccessRule)>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query("SELECT project, kind, name, rule FROM access_rules", &[])
            .await
            .db()?;
        let mut rules = Vec::with_capacity(rows.len());
        for row in rows {
            let (project, kind, name, rule): (String, String, String, String) =
                (row.get(0), row.get(1), row.get(2), row.get(3));
            let parsed = (
                ProjectId::new(&project).ok(),
                ResourceKind::parse(&kind),
                AccessRule::parse(&rule),
            );
            let (Some(project), Some(kind), Some(rule)) = parsed else {
                return Err(StoreError::Corrupt(format!(
                    "access rule {project}/{kind}/{name}"
                )));
            };
            rules.push((project, kind, name, rule));
        }
        Ok(rules)
    }

    async fn create_key(&self, key: &ApiKey) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await.db()?;
        // Locks the project's row: a removal waits, or has happened.
        let live = transaction
            .query_opt(
                "SELECT 1 FROM projects WHERE name = $1 AND removed_at IS NULL FOR SHARE",
                &[&key.project.as_str()],
            )
            .await
            .db()?
            .is_some();
        if !live {
            return Err(StoreError::NoSuchProject(key.project.to_string()));
        }
        transaction
            .execute(
                &format!(
                    "WITH changed AS (UPDATE control_changes SET version = version + 1)
                 INSERT INTO api_keys ({KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
                ),
                &[
                    &key.project.as_str(),
                    &key.id,
                    &key.kind.as_str(),
                    &key.name,
                    &key.secret_sha256.as_slice(),
                    &key.created_at,
                    &key.revoked_at,
                    &key.s3_secret,
                ],
            )
            .await
            .db()?;
        transaction.commit().await.db()?;
        Ok(())
    }

    async fn set_key_s3_secret(
        &self,
        project: &ProjectId,
        id: &str,
        sealed: &[u8],
    ) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let changed = client
            .execute(
                "WITH changed AS (UPDATE control_changes SET version = version + 1)
                 UPDATE api_keys SET s3_secret = $1 WHERE project = $2 AND id = $3 AND revoked_at IS NULL",
                &[&sealed, &project.as_str(), &id],
            )
            .await
            .db()?;
        Ok(changed == 1)
    }

    async fn key(&self, project: &ProjectId, id: &str) -> Result<Option<ApiKey>, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&format!(
                "SELECT {KEY_COLUMNS} FROM api_keys WHERE project = $1 AND id = $2"
            ))
            .await
            .db()?;
        let row = client
            .query_opt(&statement, &[&project.as_str(), &id])
            .await
            .db()?;
        row.as_ref().map(key_from_row).transpose().db()
    }

    async fn keys(&self, project: &ProjectId) -> Result<Vec<ApiKey>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {KEY_COLUMNS} FROM api_keys WHERE project = $1 ORDER BY created_at, id COLLATE \"C\""
                ),
                &[&project.as_str()],
            )
            .await
            .db()?;
        rows.iter().map(key_from_row).collect::<Result<_>>().db()
    }

    async fn revoke_key(&self, project: &ProjectId, id: &str) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let changed = client
            .execute(
                "WITH changed AS (UPDATE control_changes SET version = version + 1)
                 UPDATE api_keys SET revoked_at = $1 WHERE project = $2 AND id = $3 AND revoked_at IS NULL",
                &[&now_millis(), &project.as_str(), &id],
            )
            .await
            .db()?;
        Ok(changed > 0)
    }
}
