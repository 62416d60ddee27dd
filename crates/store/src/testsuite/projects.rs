//! The projects contract: projects, keys and access rules.
use super::{name, new_version};
use crate::{FunctionStore, ProjectStore, StoreError};
use domain::{AccessRule, ApiKey, KeyKind, ProjectId, ResourceKind};

fn key(project: &ProjectId, id: &str, kind: KeyKind) -> ApiKey {
    ApiKey {
        id: id.to_owned(),
        project: project.clone(),
        kind,
        name: format!("{id} key"),
        secret_sha256: [id.len() as u8; 32],
        created_at: 1,
        revoked_at: None,
        s3_secret: Some(vec![id.len() as u8; 44]),
    }
}

/// Projects and their keys.
pub async fn contract<S: ProjectStore + FunctionStore>(store: &S) {
    let default = ProjectId::default_project();
    let shop = ProjectId::new("shop").unwrap();
    let ids = async |store: &S| -> Vec<String> {
        store
            .list_projects()
            .await
            .unwrap()
            .into_iter()
            .map(|project| project.id.to_string())
            .collect()
    };
    assert_eq!(ids(store).await, ["default"]);
    assert!(store.project(&shop).await.unwrap().is_none());

    // Access rules: per project, kind and name; set again, replaced.
    assert_eq!(
        store
            .access_rule(&default, ResourceKind::Collection, "posts")
            .await
            .unwrap(),
        None
    );
    store
        .set_access_rule(
            &default,
            ResourceKind::Collection,
            "posts",
            AccessRule::PublicRead,
        )
        .await
        .unwrap();
    store
        .set_access_rule(
            &default,
            ResourceKind::Collection,
            "posts",
            AccessRule::PublicReadWrite,
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .access_rule(&default, ResourceKind::Collection, "posts")
            .await
            .unwrap(),
        Some(AccessRule::PublicReadWrite)
    );
    assert_eq!(
        store
            .access_rule(&default, ResourceKind::Bucket, "posts")
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .access_rule(&shop, ResourceKind::Collection, "posts")
            .await
            .unwrap(),
        None
    );
    assert!(matches!(
        store.create_key(&key(&shop, "a1", KeyKind::Service)).await,
        Err(StoreError::NoSuchProject(_))
    ));
    store.create_project(&shop).await.unwrap();
    assert!(matches!(
        store.create_project(&shop).await,
        Err(StoreError::ProjectExists(_))
    ));
    assert_eq!(ids(store).await, ["default", "shop"]);

    store
        .create_key(&key(&shop, "a1", KeyKind::Service))
        .await
        .unwrap();
    store
        .create_key(&key(&shop, "b22", KeyKind::Public))
        .await
        .unwrap();
    store
        .create_key(&key(&default, "a1", KeyKind::Public))
        .await
        .unwrap();
    assert_eq!(
        store.key(&shop, "a1").await.unwrap(),
        Some(key(&shop, "a1", KeyKind::Service))
    );
    assert_eq!(store.keys(&shop).await.unwrap().len(), 2);
    // Keys are per project: the same id elsewhere is another key.
    assert_eq!(
        store.key(&default, "a1").await.unwrap().unwrap().kind,
        KeyKind::Public
    );
    assert!(store.key(&default, "b22").await.unwrap().is_none());
    // A live key's sealed S3 secret is replaced alone.
    assert!(
        store
            .set_key_s3_secret(&shop, "b22", b"sealed")
            .await
            .unwrap()
    );
    let b22 = store.key(&shop, "b22").await.unwrap().unwrap();
    assert_eq!(b22.s3_secret.as_deref(), Some(&b"sealed"[..]));
    assert_eq!(
        b22.secret_sha256,
        key(&shop, "b22", KeyKind::Public).secret_sha256
    );
    assert!(
        !store
            .set_key_s3_secret(&shop, "nope", b"sealed")
            .await
            .unwrap()
    );

    assert!(store.revoke_key(&shop, "a1").await.unwrap());
    assert!(
        !store
            .set_key_s3_secret(&shop, "a1", b"sealed")
            .await
            .unwrap()
    );
    assert!(!store.revoke_key(&shop, "a1").await.unwrap());
    assert!(
        store
            .key(&shop, "a1")
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_some()
    );
    assert!(
        store
            .key(&default, "a1")
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_none()
    );

    // A project with live functions stays; an empty one goes, keys revoked,
    // and its name is never given out again.
    store
        .create_version(&shop, &name("api"), new_version("x"))
        .await
        .unwrap();
    assert!(matches!(
        store.remove_project(&shop).await,
        Err(StoreError::ProjectNotEmpty(_))
    ));
    store.remove(&shop, &name("api")).await.unwrap();
    assert!(store.remove_project(&shop).await.unwrap());
    assert!(!store.remove_project(&shop).await.unwrap());
    assert_eq!(ids(store).await, ["default"]);
    assert!(
        store
            .key(&shop, "b22")
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_some()
    );
    assert!(matches!(
        store.create_project(&shop).await,
        Err(StoreError::ProjectExists(_))
    ));
}
