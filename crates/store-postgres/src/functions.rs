//! Functions and versions on PostgreSQL: `functions` (one row per name,
//! with its current and last version numbers; a removed function keeps
//! its row with no current version, so numbering continues) and
//! `versions` (immutable rows, the configuration as JSON, see
//! `api_types::stored`). A deploy, rollback or removal syncs the
//! function's subscriptions in its own transaction; the function's row is
//! locked for it, so two nodes deploying the same function at once get
//! two versions, one after the other.
use crate::outbox::sync_subscriptions;
use crate::{Db, PgStore, Result, number, stored};
use api_types::stored::{config_from_json, config_to_json, runtime_from_column, runtime_to_column};
use deadpool_postgres::GenericClient;
use domain::{FunctionName, ProjectId, now_millis};
use store::{FunctionStore, FunctionVersion, NewVersion, StoreError};
use tokio_postgres::Row;

const VERSION_COLUMNS: &str =
    "project, name, version, artifact, size_bytes, world, config, created_at";

/// The same columns, of `versions v` joined with its function's row.
const CURRENT_VERSION: &str = "SELECT v.project, v.name, v.version, v.artifact, v.size_bytes,
            v.world, v.config, v.created_at
     FROM functions f JOIN versions v
       ON v.project = f.project AND v.name = f.name AND v.version = f.current_version";

fn version_from_row(row: &Row) -> Result<FunctionVersion> {
    Ok(FunctionVersion {
        project: stored(ProjectId::new(row.get::<_, String>(0)))?,
        function: stored(FunctionName::new(row.get::<_, String>(1)))?,
        version: number(row.get(2))?,
        artifact: row.get(3),
        size_bytes: number(row.get(4))?,
        runtime: stored(runtime_from_column(row.get(5)))?,
        config: stored(config_from_json(row.get(6)))?,
        created_at: row.get(7),
    })
}

/// The function's current version number, locking its row (`None`: no
/// such function; `Some(None)`: removed).
async fn lock_function(
    client: &impl GenericClient,
    project: &ProjectId,
    function: &FunctionName,
) -> Result<Option<Option<i64>>> {
    Ok(client
        .query_opt(
            "SELECT current_version FROM functions WHERE project = $1 AND name = $2 FOR UPDATE",
            &[&project.as_str(), &function.as_str()],
        )
        .await?
        .map(|row| row.get(0)))
}

#[store::async_trait]
impl FunctionStore for PgStore {
    async fn create_version(
        &self,
        project: &ProjectId,
        function: &FunctionName,
        new: NewVersion,
    ) -> Result<FunctionVersion, StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await.db()?;
        let now = now_millis();
        let version: i64 = transaction
            .query_one(
                "WITH changed AS (UPDATE control_changes SET version = version + 1)
                 INSERT INTO functions (project, name, current_version, last_version, created_at, updated_at)
                 VALUES ($1, $2, 1, 1, $3, $3)
                 ON CONFLICT (project, name) DO UPDATE
                   SET current_version = functions.last_version + 1,
                       last_version = functions.last_version + 1,
                       updated_at = $3
                 RETURNING last_version",
                &[&project.as_str(), &function.as_str(), &now],
            )
            .await
            .db()?
            .get(0);
        transaction
            .execute(
                &format!(
                    "INSERT INTO versions ({VERSION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
                ),
                &[
                    &project.as_str(),
                    &function.as_str(),
                    &version,
                    &new.artifact,
                    &(new.size_bytes as i64),
                    &runtime_to_column(new.runtime),
                    &config_to_json(&new.config, new.runtime.kind()),
                    &now,
                ],
            )
            .await
            .db()?;
        sync_subscriptions(&transaction, project, function, &new.config.all_triggers()).await?;
        transaction.commit().await.db()?;
        Ok(FunctionVersion {
            project: project.clone(),
            function: function.clone(),
            version: number(version)?,
            artifact: new.artifact,
            size_bytes: new.size_bytes,
            runtime: new.runtime,
            config: new.config,
            created_at: now,
        })
    }

    async fn set_current(
        &self,
        project: &ProjectId,
        function: &FunctionName,
        version: u32,
    ) -> Result<FunctionVersion, StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await.db()?;
        if !matches!(
            lock_function(&transaction, project, function).await?,
            Some(Some(_))
        ) {
            return Err(StoreError::NoSuchFunction(function.to_string()));
        }
        let row = transaction
            .query_opt(
                &format!(
                    "SELECT {VERSION_COLUMNS} FROM versions WHERE project = $1 AND name = $2 AND version = $3"
                ),
                &[&project.as_str(), &function.as_str(), &i64::from(version)],
            )
            .await
            .db()?
            .ok_or_else(|| StoreError::NoSuchVersion {
                function: function.to_string(),
                version,
            })?;
        let stored = version_from_row(&row)?;
        transaction
            .execute(
                "WITH changed AS (UPDATE control_changes SET version = version + 1)
                 UPDATE functions SET current_version = $1, updated_at = $2 WHERE project = $3 AND name = $4",
                &[
                    &i64::from(version),
                    &now_millis(),
                    &project.as_str(),
                    &function.as_str(),
                ],
            )
            .await
            .db()?;
        sync_subscriptions(
            &transaction,
            project,
            function,
            &stored.config.all_triggers(),
        )
        .await?;
        transaction.commit().await.db()?;
        Ok(stored)
    }

    async fn current(
        &self,
        project: &ProjectId,
        function: &FunctionName,
    ) -> Result<Option<FunctionVersion>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                &format!("{CURRENT_VERSION} WHERE f.project = $1 AND f.name = $2"),
                &[&project.as_str(), &function.as_str()],
            )
            .await
            .db()?;
        Ok(row.as_ref().map(version_from_row).transpose()?)
    }

    async fn versions(
        &self,
        project: &ProjectId,
        function: &FunctionName,
    ) -> Result<Vec<FunctionVersion>, StoreError> {
        let client = self.client().await?;
        let live = client
            .query_opt(
                "SELECT current_version FROM functions WHERE project = $1 AND name = $2",
                &[&project.as_str(), &function.as_str()],
            )
            .await
            .db()?
            .is_some_and(|row| row.get::<_, Option<i64>>(0).is_some());
        if !live {
            return Err(StoreError::NoSuchFunction(function.to_string()));
        }
        let rows = client
            .query(
                &format!(
                    "SELECT {VERSION_COLUMNS} FROM versions WHERE project = $1 AND name = $2 ORDER BY version"
                ),
                &[&project.as_str(), &function.as_str()],
            )
            .await
            .db()?;
        Ok(rows.iter().map(version_from_row).collect::<Result<_>>()?)
    }

    async fn list(&self, project: &ProjectId) -> Result<Vec<FunctionVersion>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!("{CURRENT_VERSION} WHERE f.project = $1 ORDER BY f.name COLLATE \"C\""),
                &[&project.as_str()],
            )
            .await
            .db()?;
        Ok(rows.iter().map(version_from_row).collect::<Result<_>>()?)
    }

    async fn remove(
        &self,
        project: &ProjectId,
        function: &FunctionName,
    ) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await.db()?;
        // The row stays with no current version so that version numbers
        // keep increasing if the name is deployed again: records stay
        // unambiguous.
        let changed = transaction
            .execute(
                "WITH changed AS (UPDATE control_changes SET version = version + 1)
                 UPDATE functions SET current_version = NULL, updated_at = $1
                 WHERE project = $2 AND name = $3 AND current_version IS NOT NULL",
                &[&now_millis(), &project.as_str(), &function.as_str()],
            )
            .await
            .db()?;
        sync_subscriptions(&transaction, project, function, &[]).await?;
        transaction.commit().await.db()?;
        Ok(changed > 0)
    }

    async fn artifacts_in_use(&self) -> Result<std::collections::HashSet<String>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT DISTINCT v.artifact FROM versions v JOIN functions f
                   ON f.project = v.project AND f.name = v.name
                 WHERE f.current_version IS NOT NULL",
                &[],
            )
            .await
            .db()?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    async fn projects_with_functions(&self) -> Result<Vec<ProjectId>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT DISTINCT project COLLATE \"C\" FROM functions
                 WHERE current_version IS NOT NULL ORDER BY 1",
                &[],
            )
            .await
            .db()?;
        Ok(rows
            .iter()
            .map(|row| stored(ProjectId::new(row.get::<_, String>(0))))
            .collect::<Result<_>>()?)
    }
}
