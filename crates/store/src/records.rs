//! The records contract: one record per invocation (usage is their exact
//! sum) and the guest's log lines.
use crate::StoreError;
use domain::{FunctionName, InvocationRecord, LogLine, ProjectId, Usage, UsageFilter};

/// A stored log line with its position, for paging and following.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredLogLine {
    pub seq: i64,
    pub line: LogLine,
}

#[async_trait::async_trait]
pub trait RecordStore: Send + Sync + 'static {
    /// Appends records in one transaction; a record whose id is stored
    /// already is left out.
    async fn insert_records(&self, records: Vec<InvocationRecord>) -> Result<(), StoreError>;
    /// Records of a project, newest first.
    async fn records(
        &self,
        project: &ProjectId,
        filter: &UsageFilter,
        limit: u32,
    ) -> Result<Vec<InvocationRecord>, StoreError>;
    /// Exact sums over the records the filter selects.
    async fn usage(&self, project: &ProjectId, filter: &UsageFilter) -> Result<Usage, StoreError>;

    async fn insert_logs(&self, lines: Vec<LogLine>) -> Result<(), StoreError>;
    /// Log lines of a function after position `after`, oldest first.
    async fn logs(
        &self,
        project: &ProjectId,
        function: &FunctionName,
        after: i64,
        limit: u32,
    ) -> Result<Vec<StoredLogLine>, StoreError>;
}
