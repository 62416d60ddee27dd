//! Invocation records and guest log lines on SQLite: `invocations` (one
//! row per invocation; usage is an exact sum over them, SQLite's integer
//! sums raising an error rather than overflowing) and `logs` (numbered
//! lines, for paging and following). Both are written by the group-commit
//! writer, so a large batch of records never makes another write wait.
use crate::{Result, SqliteStore, stored};
use domain::{
    FunctionName, InvocationId, InvocationRecord, LogLine, LogStream, Outcome, ProjectId, Usage,
    UsageFilter,
};
use rusqlite::{Connection, Row, params};
use store::{RecordStore, StoreError, StoredLogLine};

fn record_from_row(row: &Row<'_>) -> rusqlite::Result<Result<InvocationRecord>> {
    let project: String = row.get(1)?;
    let function: String = row.get(2)?;
    let outcome: String = row.get(10)?;
    let record = (|| {
        Ok(InvocationRecord {
            id: InvocationId(row.get(0)?),
            project: stored(ProjectId::new(project))?,
            function: stored(FunctionName::new(function))?,
            version: row.get(3)?,
            trigger: row.get(4)?,
            start: row.get(5)?,
            duration_us: row.get::<_, i64>(6)? as u64,
            billed_ms: row.get::<_, i64>(7)? as u64,
            memory_mib: row.get::<_, i64>(8)? as u64,
            peak_memory_bytes: row.get::<_, i64>(9)? as u64,
            cpu_us: row.get::<_, Option<i64>>(14)?.map(|cpu| cpu as u64),
            outcome: Outcome::from_code(&outcome)
                .ok_or_else(|| StoreError::Corrupt(format!("outcome {outcome}")))?,
            cold: row.get(11)?,
            init_us: row.get::<_, Option<i64>>(15)?.map(|init| init as u64),
            bytes_in: row.get::<_, i64>(12)? as u64,
            bytes_out: row.get::<_, i64>(13)? as u64,
            auth: row.get(16)?,
            user_id: row.get(17)?,
        })
    })();
    Ok(record)
}

/// The WHERE clause and its parameters for a usage filter.
fn filter_clause(
    project: &ProjectId,
    filter: &UsageFilter,
) -> (String, Vec<rusqlite::types::Value>) {
    use rusqlite::types::Value;
    let mut clause = String::from("project = ?");
    let mut values = vec![Value::Text(project.to_string())];
    if let Some(since) = filter.since {
        clause.push_str(" AND start >= ?");
        values.push(Value::Integer(since));
    }
    if let Some(until) = filter.until {
        clause.push_str(" AND start < ?");
        values.push(Value::Integer(until));
    }
    if let Some(function) = &filter.function {
        clause.push_str(" AND function = ?");
        values.push(Value::Text(function.to_string()));
    }
    if let Some(trigger) = &filter.trigger {
        clause.push_str(" AND trigger = ?");
        values.push(Value::Text(trigger.clone()));
    }
    (clause, values)
}

/// Appends invocation records (a repeated id is ignored).
fn insert_records(connection: &Connection, records: &[InvocationRecord]) -> Result<()> {
    let mut statement = connection.prepare_cached(
        "INSERT OR IGNORE INTO invocations (id, project, function, version, trigger, start, duration_us,
           billed_ms, memory_mib, peak_memory_bytes, outcome, cold, bytes_in, bytes_out, cpu_us, init_us,
           auth, user_id)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )?;
    for record in records {
        statement.execute(params![
            record.id.0,
            record.project.as_str(),
            record.function.as_str(),
            record.version,
            record.trigger,
            record.start,
            record.duration_us as i64,
            record.billed_ms as i64,
            record.memory_mib as i64,
            record.peak_memory_bytes as i64,
            record.outcome.code(),
            record.cold,
            record.bytes_in as i64,
            record.bytes_out as i64,
            record.cpu_us.map(|cpu| cpu as i64),
            record.init_us.map(|init| init as i64),
            record.auth,
            record.user_id,
        ])?;
    }
    Ok(())
}

/// Appends guest log lines.
fn insert_logs(connection: &Connection, lines: &[LogLine]) -> Result<()> {
    let mut statement = connection.prepare_cached(
        "INSERT INTO logs (project, function, invocation, instance, time, stream, line) VALUES (?, ?, ?, ?, ?, ?, ?)",
    )?;
    for line in lines {
        statement.execute(params![
            line.project.as_str(),
            line.function.as_str(),
            line.invocation.0,
            line.instance,
            line.time,
            line.stream.as_str(),
            line.line,
        ])?;
    }
    Ok(())
}

#[store::async_trait]
impl RecordStore for SqliteStore {
    async fn insert_records(&self, records: Vec<InvocationRecord>) -> Result<(), StoreError> {
        self.writer()
            .transaction(move |transaction| insert_records(transaction, &records))
            .await
    }

    async fn records(
        &self,
        project: &ProjectId,
        filter: &UsageFilter,
        limit: u32,
    ) -> Result<Vec<InvocationRecord>, StoreError> {
        let (clause, mut values) = filter_clause(project, filter);
        values.push(rusqlite::types::Value::Integer(limit as i64));
        self.read(move |connection| {
            let mut statement = connection.prepare(&format!(
                "SELECT id, project, function, version, trigger, start, duration_us, billed_ms, memory_mib,
                        peak_memory_bytes, outcome, cold, bytes_in, bytes_out, cpu_us, init_us,
                        auth, user_id
                 FROM invocations WHERE {clause} ORDER BY start DESC, id DESC LIMIT ?"
            ))?;
            let rows =
                statement.query_map(rusqlite::params_from_iter(values), record_from_row)?;
            rows.map(|row| row?).collect()
        })
        .await
    }

    async fn usage(&self, project: &ProjectId, filter: &UsageFilter) -> Result<Usage, StoreError> {
        let (clause, values) = filter_clause(project, filter);
        let errors = Outcome::ALL
            .iter()
            .filter(|outcome| outcome.is_error())
            .map(|outcome| format!("'{}'", outcome.code()))
            .collect::<Vec<_>>()
            .join(", ");
        self.read(move |connection| {
            // Integer sums in SQLite are exact (it raises an error on overflow).
            Ok(connection.query_row(
                &format!(
                    "SELECT COUNT(*), COALESCE(SUM(outcome IN ({errors})), 0), COALESCE(SUM(billed_ms), 0),
                            COALESCE(SUM(billed_ms * memory_mib), 0)
                     FROM invocations WHERE {clause}"
                ),
                rusqlite::params_from_iter(values),
                |row| {
                    Ok(Usage {
                        requests: row.get::<_, i64>(0)? as u64,
                        errors: row.get::<_, i64>(1)? as u64,
                        billed_ms: row.get::<_, i64>(2)? as u64,
                        mib_ms: row.get::<_, i64>(3)? as u64,
                    })
                },
            )?)
        })
        .await
    }

    async fn insert_logs(&self, lines: Vec<LogLine>) -> Result<(), StoreError> {
        self.writer()
            .transaction(move |transaction| insert_logs(transaction, &lines))
            .await
    }

    async fn logs(
        &self,
        project: &ProjectId,
        function: &FunctionName,
        after: i64,
        limit: u32,
    ) -> Result<Vec<StoredLogLine>, StoreError> {
        let (project, function) = (project.clone(), function.clone());
        self.read(move |connection| {
            let mut statement = connection.prepare(
                "SELECT seq, invocation, time, stream, line, instance FROM logs
                 WHERE project = ? AND function = ? AND seq > ? ORDER BY seq LIMIT ?",
            )?;
            let rows = statement.query_map(
                params![project.as_str(), function.as_str(), after, limit],
                |row| {
                    let stream: String = row.get(3)?;
                    Ok(StoredLogLine {
                        seq: row.get(0)?,
                        line: LogLine {
                            project: project.clone(),
                            function: function.clone(),
                            invocation: InvocationId(row.get(1)?),
                            instance: row.get(5)?,
                            time: row.get(2)?,
                            stream: if stream == "stderr" {
                                LogStream::Stderr
                            } else {
                                LogStream::Stdout
                            },
                            line: row.get(4)?,
                        },
                    })
                },
            )?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }
}
