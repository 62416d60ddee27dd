//! Invocation records and guest log lines on PostgreSQL: `invocations`
//! (one row per invocation; usage is an exact sum over them: PostgreSQL
//! sums integers as `numeric`, and the cast back raises an error rather
//! than overflow) and `logs` (numbered lines, for paging and following).
//! A batch is one statement (arrays unnested), whatever its size.
//!
//! Log lines are numbered like events (see `outbox.rs`): under a
//! transaction lock per function, so a follower that has read line `n`
//! never sees a lower number commit later, whichever node wrote it.
use crate::{Db, PgStore, Result, stored};
use deadpool_postgres::GenericClient;
use domain::{
    FunctionName, InvocationId, InvocationRecord, LogLine, LogStream, Outcome, ProjectId, Usage,
    UsageFilter,
};
use store::{RecordStore, StoreError, StoredLogLine};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

const RECORD_COLUMNS: &str =
    "id, project, function, version, trigger, start, duration_us, billed_ms,
    memory_mib, peak_memory_bytes, outcome, cold, bytes_in, bytes_out, cpu_us, init_us,
    auth, user_id";

fn record_from_row(row: &Row) -> Result<InvocationRecord> {
    let outcome: String = row.get(10);
    let unsigned = |at: usize| row.get::<_, i64>(at) as u64;
    Ok(InvocationRecord {
        id: InvocationId(row.get(0)),
        project: stored(ProjectId::new(row.get::<_, String>(1)))?,
        function: stored(FunctionName::new(row.get::<_, String>(2)))?,
        version: crate::number(row.get(3))?,
        trigger: row.get(4),
        start: row.get(5),
        duration_us: unsigned(6),
        billed_ms: unsigned(7),
        memory_mib: unsigned(8),
        peak_memory_bytes: unsigned(9),
        outcome: Outcome::from_code(&outcome)
            .ok_or_else(|| StoreError::Corrupt(format!("outcome {outcome}")))?,
        cold: row.get(11),
        bytes_in: unsigned(12),
        bytes_out: unsigned(13),
        cpu_us: row.get::<_, Option<i64>>(14).map(|cpu| cpu as u64),
        init_us: row.get::<_, Option<i64>>(15).map(|init| init as u64),
        auth: row.get(16),
        user_id: row.get(17),
    })
}

/// The WHERE clause and its parameters for a usage filter.
fn filter_clause(
    project: &ProjectId,
    filter: &UsageFilter,
) -> (String, Vec<Box<dyn ToSql + Sync + Send>>) {
    let mut clause = String::from("project = $1");
    let mut values: Vec<Box<dyn ToSql + Sync + Send>> = vec![Box::new(project.to_string())];
    let mut add = |condition: &str, value: Box<dyn ToSql + Sync + Send>| {
        values.push(value);
        clause.push_str(&format!(" AND {condition} ${}", values.len()));
    };
    if let Some(since) = filter.since {
        add("start >=", Box::new(since));
    }
    if let Some(until) = filter.until {
        add("start <", Box::new(until));
    }
    if let Some(function) = &filter.function {
        add("function =", Box::new(function.to_string()));
    }
    if let Some(trigger) = &filter.trigger {
        add("trigger =", Box::new(trigger.clone()));
    }
    (clause, values)
}

fn params(values: &[Box<dyn ToSql + Sync + Send>]) -> Vec<&(dyn ToSql + Sync)> {
    values
        .iter()
        .map(|value| value.as_ref() as &(dyn ToSql + Sync))
        .collect()
}

async fn insert_records(client: &impl GenericClient, records: &[InvocationRecord]) -> Result<()> {
    let column =
        |value: fn(&InvocationRecord) -> i64| records.iter().map(value).collect::<Vec<_>>();
    let text =
        |value: fn(&InvocationRecord) -> String| records.iter().map(value).collect::<Vec<_>>();
    let optional =
        |value: fn(&InvocationRecord) -> Option<i64>| records.iter().map(value).collect::<Vec<_>>();
    let statement = client
        .prepare_cached(&format!(
            "INSERT INTO invocations ({RECORD_COLUMNS})
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[],
                 $6::bigint[], $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[], $11::text[],
                 $12::bool[], $13::bigint[], $14::bigint[], $15::bigint[], $16::bigint[],
                 $17::text[], $18::text[])
             ON CONFLICT (id) DO NOTHING"
        ))
        .await?;
    client
        .execute(
            &statement,
            &[
                &text(|record| record.id.0.clone()),
                &text(|record| record.project.to_string()),
                &text(|record| record.function.to_string()),
                &column(|record| i64::from(record.version)),
                &text(|record| record.trigger.clone()),
                &column(|record| record.start),
                &column(|record| record.duration_us as i64),
                &column(|record| record.billed_ms as i64),
                &column(|record| record.memory_mib as i64),
                &column(|record| record.peak_memory_bytes as i64),
                &text(|record| record.outcome.code().to_owned()),
                &records.iter().map(|record| record.cold).collect::<Vec<_>>(),
                &column(|record| record.bytes_in as i64),
                &column(|record| record.bytes_out as i64),
                &optional(|record| record.cpu_us.map(|cpu| cpu as i64)),
                &optional(|record| record.init_us.map(|init| init as i64)),
                &records
                    .iter()
                    .map(|record| record.auth.clone())
                    .collect::<Vec<_>>(),
                &records
                    .iter()
                    .map(|record| record.user_id.clone())
                    .collect::<Vec<_>>(),
            ],
        )
        .await?;
    Ok(())
}

async fn insert_logs(client: &impl GenericClient, lines: &[LogLine]) -> Result<()> {
    let mut functions: Vec<String> = lines
        .iter()
        .map(|line| format!("{}\n{}", line.project.as_str(), line.function.as_str()))
        .collect();
    functions.sort();
    functions.dedup();
    for function in &functions {
        client
            .execute(
                "SELECT pg_advisory_xact_lock(hashtextextended('logs' || $1, 0))",
                &[function],
            )
            .await?;
    }
    let text = |value: fn(&LogLine) -> String| lines.iter().map(value).collect::<Vec<_>>();
    client
        .execute(
            "INSERT INTO logs (project, function, invocation, instance, time, stream, line)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[],
                                  $6::text[], $7::text[])",
            &[
                &text(|line| line.project.to_string()),
                &text(|line| line.function.to_string()),
                &text(|line| line.invocation.0.clone()),
                &lines
                    .iter()
                    .map(|line| line.instance.clone())
                    .collect::<Vec<_>>(),
                &lines.iter().map(|line| line.time).collect::<Vec<_>>(),
                &text(|line| line.stream.as_str().to_owned()),
                &text(|line| line.line.clone()),
            ],
        )
        .await?;
    Ok(())
}

#[store::async_trait]
impl RecordStore for PgStore {
    async fn insert_records(&self, records: Vec<InvocationRecord>) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let client = self.client().await?;
        insert_records(&client, &records).await.db()
    }

    async fn records(
        &self,
        project: &ProjectId,
        filter: &UsageFilter,
        limit: u32,
    ) -> Result<Vec<InvocationRecord>, StoreError> {
        let (clause, mut values) = filter_clause(project, filter);
        values.push(Box::new(i64::from(limit)));
        let client = self.client().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {RECORD_COLUMNS} FROM invocations WHERE {clause}
                     ORDER BY start DESC, id COLLATE \"C\" DESC LIMIT ${}",
                    values.len()
                ),
                &params(&values),
            )
            .await
            .db()?;
        rows.iter().map(record_from_row).collect::<Result<_>>().db()
    }

    async fn usage(&self, project: &ProjectId, filter: &UsageFilter) -> Result<Usage, StoreError> {
        let (clause, values) = filter_clause(project, filter);
        let errors = Outcome::ALL
            .iter()
            .filter(|outcome| outcome.is_error())
            .map(|outcome| format!("'{}'", outcome.code()))
            .collect::<Vec<_>>()
            .join(", ");
        let client = self.client().await?;
        let row = client
            .query_one(
                &format!(
                    "SELECT COUNT(*), COUNT(*) FILTER (WHERE outcome IN ({errors})),
                            COALESCE(SUM(billed_ms), 0)::bigint,
                            COALESCE(SUM(billed_ms::numeric * memory_mib), 0)::bigint
                     FROM invocations WHERE {clause}"
                ),
                &params(&values),
            )
            .await
            .db()?;
        Ok(Usage {
            requests: row.get::<_, i64>(0) as u64,
            errors: row.get::<_, i64>(1) as u64,
            billed_ms: row.get::<_, i64>(2) as u64,
            mib_ms: row.get::<_, i64>(3) as u64,
        })
    }

    async fn insert_logs(&self, lines: Vec<LogLine>) -> Result<(), StoreError> {
        if lines.is_empty() {
            return Ok(());
        }
        let mut client = self.client().await?;
        let transaction = client.transaction().await.db()?;
        insert_logs(&transaction, &lines).await.db()?;
        transaction.commit().await.db()
    }

    async fn logs(
        &self,
        project: &ProjectId,
        function: &FunctionName,
        after: i64,
        limit: u32,
    ) -> Result<Vec<StoredLogLine>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT seq, invocation, time, stream, line, instance FROM logs
                 WHERE project = $1 AND function = $2 AND seq > $3 ORDER BY seq LIMIT $4",
                &[
                    &project.as_str(),
                    &function.as_str(),
                    &after,
                    &i64::from(limit),
                ],
            )
            .await
            .db()?;
        Ok(rows
            .iter()
            .map(|row| StoredLogLine {
                seq: row.get(0),
                line: LogLine {
                    project: project.clone(),
                    function: function.clone(),
                    invocation: InvocationId(row.get(1)),
                    instance: row.get(5),
                    time: row.get(2),
                    stream: if row.get::<_, &str>(3) == "stderr" {
                        LogStream::Stderr
                    } else {
                        LogStream::Stdout
                    },
                    line: row.get(4),
                },
            })
            .collect())
    }
}
