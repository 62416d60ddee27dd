//! Functions and versions on SQLite: `functions` (one row per name, with
//! its current and last version numbers; a removed function keeps its row
//! with no current version, so numbering continues) and `versions`
//! (immutable rows, the configuration as JSON, see `api_types::stored`). A deploy,
//! rollback or removal syncs the function's subscriptions in its own
//! transaction.
use crate::{Result, SqliteStore, stored};
use api_types::stored::{config_from_json, config_to_json, runtime_from_column, runtime_to_column};
use domain::{FunctionName, ProjectId, now_millis};
use rusqlite::{Connection, OptionalExtension, Row, params};
use store::{FunctionStore, FunctionVersion, NewVersion, StoreError};

const VERSION_COLUMNS: &str =
    "project, name, version, artifact, size_bytes, world, config, created_at";

/// The same columns, of `versions v` joined with its function's row.
const CURRENT_VERSION: &str = "SELECT v.project, v.name, v.version, v.artifact, v.size_bytes,
            v.world, v.config, v.created_at
     FROM functions f JOIN versions v
       ON v.project = f.project AND v.name = f.name AND v.version = f.current_version";

fn version_from_row(row: &Row<'_>) -> rusqlite::Result<Result<FunctionVersion>> {
    let project: String = row.get(0)?;
    let name: String = row.get(1)?;
    let world: String = row.get(5)?;
    let config: String = row.get(6)?;
    let version = (|| {
        Ok(FunctionVersion {
            project: stored(ProjectId::new(project))?,
            function: stored(FunctionName::new(name))?,
            version: row.get::<_, u32>(2)?,
            artifact: row.get(3)?,
            size_bytes: row.get::<_, i64>(4)? as u64,
            runtime: stored(runtime_from_column(&world))?,
            config: stored(config_from_json(&config))?,
            created_at: row.get(7)?,
        })
    })();
    Ok(version)
}

/// Whether the function is live (has a current version).
fn is_live(connection: &Connection, project: &ProjectId, function: &FunctionName) -> Result<bool> {
    let live: Option<Option<u32>> = connection
        .query_row(
            "SELECT current_version FROM functions WHERE project = ? AND name = ?",
            params![project.as_str(), function.as_str()],
            |row| row.get(0),
        )
        .optional()?;
    Ok(matches!(live, Some(Some(_))))
}

#[store::async_trait]
impl FunctionStore for SqliteStore {
    async fn create_version(
        &self,
        project: &ProjectId,
        function: &FunctionName,
        new: NewVersion,
    ) -> Result<FunctionVersion, StoreError> {
        let (project, function) = (project.clone(), function.clone());
        self.meta(move |connection| {
            let transaction =
                connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let now = now_millis();
            let last: Option<u32> = transaction
                .query_row(
                    "SELECT last_version FROM functions WHERE project = ? AND name = ?",
                    params![project.as_str(), function.as_str()],
                    |row| row.get(0),
                )
                .optional()?;
            let version = last.unwrap_or(0) + 1;
            transaction.execute(
                &format!(
                    "INSERT INTO versions ({VERSION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                ),
                params![
                    project.as_str(),
                    function.as_str(),
                    version,
                    new.artifact,
                    new.size_bytes as i64,
                    runtime_to_column(new.runtime),
                    config_to_json(&new.config, new.runtime.kind()),
                    now
                ],
            )?;
            transaction.execute(
                "INSERT INTO functions (project, name, current_version, last_version, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?3, ?4, ?4)
                 ON CONFLICT (project, name) DO UPDATE SET current_version = ?3, last_version = ?3, updated_at = ?4",
                params![project.as_str(), function.as_str(), version, now],
            )?;
            crate::events::sync_subscriptions(
                &transaction,
                &project,
                &function,
                &new.config.all_triggers(),
            )?;
            transaction.commit()?;
            Ok(FunctionVersion {
                project,
                function,
                version,
                artifact: new.artifact,
                size_bytes: new.size_bytes,
                runtime: new.runtime,
                config: new.config,
                created_at: now,
            })
        })
        .await
    }

    async fn set_current(
        &self,
        project: &ProjectId,
        function: &FunctionName,
        version: u32,
    ) -> Result<FunctionVersion, StoreError> {
        let (project, function) = (project.clone(), function.clone());
        self.meta(move |connection| {
            let transaction =
                connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            if !is_live(&transaction, &project, &function)? {
                return Err(StoreError::NoSuchFunction(function.to_string()).into());
            }
            let stored = transaction
                .query_row(
                    &format!(
                        "SELECT {VERSION_COLUMNS} FROM versions WHERE project = ? AND name = ? AND version = ?"
                    ),
                    params![project.as_str(), function.as_str(), version],
                    version_from_row,
                )
                .optional()?
                .ok_or_else(|| StoreError::NoSuchVersion {
                    function: function.to_string(),
                    version,
                })??;
            transaction.execute(
                "UPDATE functions SET current_version = ?, updated_at = ? WHERE project = ? AND name = ?",
                params![version, now_millis(), project.as_str(), function.as_str()],
            )?;
            crate::events::sync_subscriptions(
                &transaction,
                &project,
                &function,
                &stored.config.all_triggers(),
            )?;
            transaction.commit()?;
            Ok(stored)
        })
        .await
    }

    async fn current(
        &self,
        project: &ProjectId,
        function: &FunctionName,
    ) -> Result<Option<FunctionVersion>, StoreError> {
        let (project, function) = (project.clone(), function.clone());
        self.meta(move |connection| {
            connection
                .query_row(
                    &format!("{CURRENT_VERSION} WHERE f.project = ? AND f.name = ?"),
                    params![project.as_str(), function.as_str()],
                    version_from_row,
                )
                .optional()?
                .transpose()
        })
        .await
    }

    async fn versions(
        &self,
        project: &ProjectId,
        function: &FunctionName,
    ) -> Result<Vec<FunctionVersion>, StoreError> {
        let (project, function) = (project.clone(), function.clone());
        self.meta(move |connection| {
            if !is_live(connection, &project, &function)? {
                return Err(StoreError::NoSuchFunction(function.to_string()).into());
            }
            let mut statement = connection.prepare(&format!(
                "SELECT {VERSION_COLUMNS} FROM versions WHERE project = ? AND name = ? ORDER BY version"
            ))?;
            let rows = statement.query_map(
                params![project.as_str(), function.as_str()],
                version_from_row,
            )?;
            rows.map(|row| row?).collect()
        })
        .await
    }

    async fn list(&self, project: &ProjectId) -> Result<Vec<FunctionVersion>, StoreError> {
        let project = project.clone();
        self.meta(move |connection| {
            let mut statement = connection.prepare(&format!(
                "{CURRENT_VERSION} WHERE f.project = ? ORDER BY f.name"
            ))?;
            let rows = statement.query_map(params![project.as_str()], version_from_row)?;
            rows.map(|row| row?).collect()
        })
        .await
    }

    async fn remove(
        &self,
        project: &ProjectId,
        function: &FunctionName,
    ) -> Result<bool, StoreError> {
        let (project, function) = (project.clone(), function.clone());
        // The row stays with no current version so that version numbers keep
        // increasing if the name is deployed again: records stay unambiguous.
        self.meta(move |connection| {
            let transaction =
                connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let changed = transaction.execute(
                "UPDATE functions SET current_version = NULL, updated_at = ?
                 WHERE project = ? AND name = ? AND current_version IS NOT NULL",
                params![now_millis(), project.as_str(), function.as_str()],
            )?;
            crate::events::sync_subscriptions(&transaction, &project, &function, &[])?;
            transaction.commit()?;
            Ok(changed > 0)
        })
        .await
    }

    async fn artifacts_in_use(&self) -> Result<std::collections::HashSet<String>, StoreError> {
        self.meta(|connection| {
            let mut statement = connection.prepare(
                "SELECT DISTINCT v.artifact FROM versions v JOIN functions f
                   ON f.project = v.project AND f.name = v.name
                 WHERE f.current_version IS NOT NULL",
            )?;
            let rows = statement.query_map([], |row| row.get::<_, String>(0))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn projects_with_functions(&self) -> Result<Vec<ProjectId>, StoreError> {
        self.meta(|connection| {
            let mut statement = connection.prepare(
                "SELECT DISTINCT project FROM functions WHERE current_version IS NOT NULL ORDER BY project",
            )?;
            let rows = statement.query_map([], |row| row.get::<_, String>(0))?;
            rows.map(|row| stored(ProjectId::new(row?))).collect()
        })
        .await
    }
}
