//! The functions contract: functions of a project and their immutable
//! versions, one of which is current.
use crate::StoreError;
use domain::{FunctionConfig, FunctionName, ProjectId, Runtime, UnixMillis};

/// One immutable deployed version of a function.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionVersion {
    pub project: ProjectId,
    pub function: FunctionName,
    pub version: u32,
    /// Content hash of the uploaded component (hex sha256).
    pub artifact: String,
    pub size_bytes: u64,
    /// What runs it, as its runtime found it at deploy.
    pub runtime: Runtime,
    pub config: FunctionConfig,
    pub created_at: UnixMillis,
}

/// What a deploy stores besides the bytes.
#[derive(Debug, Clone)]
pub struct NewVersion {
    pub artifact: String,
    pub size_bytes: u64,
    pub runtime: Runtime,
    pub config: FunctionConfig,
}

/// Functions and their versions. Versions are immutable; a removed
/// function keeps its row so that numbering continues if the name comes
/// back. Deploys, rollbacks and removals keep the function's event
/// subscriptions in step with its current version's triggers, in the same
/// transaction.
#[async_trait::async_trait]
pub trait FunctionStore: Send + Sync + 'static {
    /// Adds a new version and makes it current, in one transaction.
    async fn create_version(
        &self,
        project: &ProjectId,
        function: &FunctionName,
        new: NewVersion,
    ) -> Result<FunctionVersion, StoreError>;
    /// Makes an existing version current again.
    async fn set_current(
        &self,
        project: &ProjectId,
        function: &FunctionName,
        version: u32,
    ) -> Result<FunctionVersion, StoreError>;
    async fn current(
        &self,
        project: &ProjectId,
        function: &FunctionName,
    ) -> Result<Option<FunctionVersion>, StoreError>;
    async fn versions(
        &self,
        project: &ProjectId,
        function: &FunctionName,
    ) -> Result<Vec<FunctionVersion>, StoreError>;
    /// The current version of every live function of the project.
    async fn list(&self, project: &ProjectId) -> Result<Vec<FunctionVersion>, StoreError>;
    /// Removes a function; its records and logs stay. Returns whether it existed.
    async fn remove(
        &self,
        project: &ProjectId,
        function: &FunctionName,
    ) -> Result<bool, StoreError>;
    /// Projects that have any live function (start-up loads them).
    async fn projects_with_functions(&self) -> Result<Vec<ProjectId>, StoreError>;
    /// The artifacts of every version of every live function, in all
    /// projects (maintenance: names of code, for what a node may drop).
    async fn artifacts_in_use(&self) -> Result<std::collections::HashSet<String>, StoreError>;
}
