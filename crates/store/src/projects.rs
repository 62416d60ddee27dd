//! The projects contract: projects (soft-removed, names never reused),
//! their keys, and the access rules of their collections, buckets and
//! topics.
use crate::StoreError;
use domain::{AccessRule, ApiKey, Project, ProjectId, ResourceKind};

#[async_trait::async_trait]
pub trait ProjectStore: Send + Sync + 'static {
    /// Creates a project. A name in use, or used before, is refused: the
    /// records of a removed project must never show up in a new one.
    async fn create_project(&self, project: &ProjectId) -> Result<Project, StoreError>;
    /// Live projects, by name. `default` always exists.
    async fn list_projects(&self) -> Result<Vec<Project>, StoreError>;
    async fn project(&self, project: &ProjectId) -> Result<Option<Project>, StoreError>;
    /// Removes an empty project and revokes its keys. Refused while it has
    /// live functions, key-value entries, documents or buckets. Returns
    /// whether it existed.
    async fn remove_project(&self, project: &ProjectId) -> Result<bool, StoreError>;

    /// The access rule of a collection or bucket (`None`: never set, which
    /// means [`AccessRule::Private`]).
    async fn access_rule(
        &self,
        project: &ProjectId,
        kind: ResourceKind,
        name: &str,
    ) -> Result<Option<AccessRule>, StoreError>;
    async fn set_access_rule(
        &self,
        project: &ProjectId,
        kind: ResourceKind,
        name: &str,
        rule: AccessRule,
    ) -> Result<(), StoreError>;
    /// Every access rule set, of every project (loaded once at start).
    async fn access_rules(
        &self,
    ) -> Result<Vec<(ProjectId, ResourceKind, String, AccessRule)>, StoreError>;
    /// Stores a new key of an existing project.
    async fn create_key(&self, key: &ApiKey) -> Result<(), StoreError>;
    /// Replaces a live key's sealed S3 secret; whether there was one to change.
    async fn set_key_s3_secret(
        &self,
        project: &ProjectId,
        id: &str,
        sealed: &[u8],
    ) -> Result<bool, StoreError>;
    /// A key of the project, revoked or not.
    async fn key(&self, project: &ProjectId, id: &str) -> Result<Option<ApiKey>, StoreError>;
    /// The project's keys, oldest first, revoked ones included.
    async fn keys(&self, project: &ProjectId) -> Result<Vec<ApiKey>, StoreError>;
    /// Revokes a key. Returns whether a live key was revoked.
    async fn revoke_key(&self, project: &ProjectId, id: &str) -> Result<bool, StoreError>;
}
