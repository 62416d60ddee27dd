//! The `ObjectStore` contract.
use crate::StoreError;
use crate::objects::{
    Bucket, ObjectCondition, ObjectMeta, ObjectOp, ObjectStore, Part, Segment, Upload,
};
use domain::{BucketName, ProjectId};

fn bucket_name(name: &str) -> BucketName {
    BucketName::new(name).unwrap()
}

fn meta(key: &str, blobs: &[&str]) -> ObjectMeta {
    ObjectMeta {
        key: key.to_owned(),
        size: 10 * blobs.len() as u64,
        etag: format!("etag-of-{key}"),
        content_type: Some("text/plain".to_owned()),
        metadata: vec![("owner".to_owned(), "ada".to_owned())],
        headers: vec![("cache-control".to_owned(), "max-age=60".to_owned())],
        checksums: vec![("CRC32".to_owned(), "AAAAAA==".to_owned())],
        last_modified: 1_000,
        segments: blobs
            .iter()
            .map(|blob| Segment {
                blob: (*blob).to_owned(),
                size: 10,
            })
            .collect(),
    }
}

async fn write(
    store: &dyn ObjectStore,
    op: ObjectOp,
) -> Result<crate::objects::ObjectDone, StoreError> {
    store.object_write(op).await
}

pub async fn objects_contract(store: &dyn ObjectStore) {
    let project = ProjectId::new("objects").unwrap();
    let other = ProjectId::new("objects-other").unwrap();
    let photos = bucket_name("photos");
    let create = |name: &BucketName| ObjectOp::CreateBucket {
        project: project.clone(),
        bucket: Bucket {
            name: name.clone(),
            created_at: 5,
            max_object_bytes: Some(1 << 20),
            content_types: vec!["image/".to_owned()],
        },
    };
    write(store, create(&photos)).await.unwrap();
    assert!(matches!(
        write(store, create(&photos)).await,
        Err(StoreError::BucketExists(_))
    ));
    let found = store.bucket(&project, &photos).await.unwrap().unwrap();
    assert_eq!(found.content_types, ["image/"]);
    assert_eq!(found.max_object_bytes, Some(1 << 20));
    assert!(store.bucket(&other, &photos).await.unwrap().is_none());

    // Put, replace (the old blob goes to trash), conditions.
    let put = |key: &str, blobs: &[&str], condition: ObjectCondition| ObjectOp::Put {
        project: project.clone(),
        bucket: photos.clone(),
        object: meta(key, blobs),
        condition,
    };
    let first = write(store, put("a/1.png", &["b1"], ObjectCondition::Always))
        .await
        .unwrap();
    assert!(!first.existed && first.trash.is_empty());
    assert!(matches!(
        write(store, put("a/1.png", &["b9"], ObjectCondition::Absent)).await,
        Err(StoreError::ConditionFailed)
    ));
    assert!(matches!(
        write(
            store,
            put("a/1.png", &["b9"], ObjectCondition::ETag("nope".to_owned()))
        )
        .await,
        Err(StoreError::ConditionFailed)
    ));
    let replaced = write(
        store,
        put(
            "a/1.png",
            &["b2"],
            ObjectCondition::ETag("etag-of-a/1.png".to_owned()),
        ),
    )
    .await
    .unwrap();
    assert_eq!(
        (replaced.existed, replaced.trash.clone()),
        (true, vec!["b1".to_owned()])
    );
    assert_eq!(store.trash().await.unwrap(), ["b1"]);
    store.trash_emptied(&["b1".to_owned()]).await.unwrap();
    assert!(store.trash().await.unwrap().is_empty());
    let stored = store
        .object(&project, &photos, "a/1.png")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored, meta("a/1.png", &["b2"]));
    assert!(
        store
            .object(&other, &photos, "a/1.png")
            .await
            .unwrap()
            .is_none()
    );
    assert!(matches!(
        write(
            store,
            ObjectOp::Put {
                project: project.clone(),
                bucket: bucket_name("nowhere"),
                object: meta("x", &["b0"]),
                condition: ObjectCondition::Always,
            }
        )
        .await,
        Err(StoreError::NoSuchBucket(_))
    ));

    // Listing: prefix, delimiter, pages.
    for key in ["a/2.png", "a/3.png", "b/1.png", "b/deep/2.png", "c.png"] {
        write(
            store,
            put(key, &[&format!("blob-{key}")], ObjectCondition::Always),
        )
        .await
        .unwrap();
    }
    let keys = |listing: &crate::objects::ObjectListing| {
        listing
            .objects
            .iter()
            .map(|object| object.key.clone())
            .collect::<Vec<_>>()
    };
    let all = store
        .objects(&project, &photos, "", None, None, 100)
        .await
        .unwrap();
    assert_eq!(
        keys(&all),
        [
            "a/1.png",
            "a/2.png",
            "a/3.png",
            "b/1.png",
            "b/deep/2.png",
            "c.png"
        ]
    );
    assert_eq!(all.next_after, None);
    let top = store
        .objects(&project, &photos, "", Some("/"), None, 100)
        .await
        .unwrap();
    assert_eq!(keys(&top), ["c.png"]);
    assert_eq!(top.common_prefixes, ["a/", "b/"]);
    let under_b = store
        .objects(&project, &photos, "b/", Some("/"), None, 100)
        .await
        .unwrap();
    assert_eq!(keys(&under_b), ["b/1.png"]);
    assert_eq!(under_b.common_prefixes, ["b/deep/"]);
    // Page by page, common prefixes count once each.
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store
            .objects(&project, &photos, "", Some("/"), after.as_deref(), 1)
            .await
            .unwrap();
        seen.extend(page.common_prefixes.clone());
        seen.extend(keys(&page));
        match page.next_after {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, ["a/", "b/", "c.png"]);
    let after_a2 = store
        .objects(&project, &photos, "a/", None, Some("a/2.png"), 100)
        .await
        .unwrap();
    assert_eq!(keys(&after_a2), ["a/3.png"]);

    // Multipart: parts replace parts; complete keeps the chosen ones.
    let upload = Upload {
        upload_id: "u1".to_owned(),
        key: "big.png".to_owned(),
        initiated: 7,
        content_type: Some("image/png".to_owned()),
        metadata: Vec::new(),
        headers: vec![("content-language".to_owned(), "nb".to_owned())],
        checksum_algorithm: Some("CRC32".to_owned()),
    };
    write(
        store,
        ObjectOp::CreateUpload {
            project: project.clone(),
            bucket: photos.clone(),
            upload: upload.clone(),
        },
    )
    .await
    .unwrap();
    let part = |number: u32, blob: &str| ObjectOp::PutPart {
        project: project.clone(),
        bucket: photos.clone(),
        upload_id: "u1".to_owned(),
        part: Part {
            number,
            size: 10,
            etag: format!("p{number}"),
            checksums: Vec::new(),
            blob: blob.to_owned(),
            last_modified: 9,
        },
    };
    write(store, part(1, "p1-a")).await.unwrap();
    let again = write(store, part(1, "p1-b")).await.unwrap();
    assert_eq!(again.trash, ["p1-a"]);
    write(store, part(2, "p2")).await.unwrap();
    write(store, part(3, "p3")).await.unwrap();
    let parts = store.parts(&project, &photos, "u1", 0, 100).await.unwrap();
    assert_eq!(
        parts
            .iter()
            .map(|part| part.blob.as_str())
            .collect::<Vec<_>>(),
        ["p1-b", "p2", "p3"]
    );
    assert_eq!(
        store.parts(&project, &photos, "u1", 1, 1).await.unwrap()[0].number,
        2
    );
    assert_eq!(
        store
            .uploads(&project, &photos, "", None, 100)
            .await
            .unwrap(),
        std::slice::from_ref(&upload)
    );
    assert!(matches!(
        write(
            store,
            ObjectOp::DeleteBucket {
                project: project.clone(),
                bucket: photos.clone()
            }
        )
        .await,
        Err(StoreError::BucketNotEmpty(_))
    ));
    let completed = write(
        store,
        ObjectOp::Complete {
            project: project.clone(),
            bucket: photos.clone(),
            upload_id: "u1".to_owned(),
            object: meta("big.png", &["p1-b", "p2"]),
            condition: ObjectCondition::Always,
        },
    )
    .await
    .unwrap();
    assert_eq!(completed.trash, ["p3"]);
    assert!(
        store
            .upload(&project, &photos, "u1")
            .await
            .unwrap()
            .is_none()
    );
    assert!(matches!(
        write(store, part(4, "p4")).await,
        Err(StoreError::NoSuchUpload(_))
    ));
    let big = store
        .object(&project, &photos, "big.png")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(big.segments.len(), 2);

    // Abort drops every part.
    let mut second = upload.clone();
    second.upload_id = "u2".to_owned();
    write(
        store,
        ObjectOp::CreateUpload {
            project: project.clone(),
            bucket: photos.clone(),
            upload: second,
        },
    )
    .await
    .unwrap();
    let mut p = part(1, "q1");
    if let ObjectOp::PutPart { upload_id, .. } = &mut p {
        *upload_id = "u2".to_owned();
    }
    write(store, p).await.unwrap();
    // The uploads begun before a time, for expiry: u2 began at 7.
    assert_eq!(
        store.stale_uploads(8, 10).await.unwrap(),
        [(project.clone(), photos.clone(), "u2".to_owned())]
    );
    assert!(store.stale_uploads(7, 10).await.unwrap().is_empty());
    let aborted = write(
        store,
        ObjectOp::Abort {
            project: project.clone(),
            bucket: photos.clone(),
            upload_id: "u2".to_owned(),
        },
    )
    .await
    .unwrap();
    assert_eq!(aborted.trash, ["q1"]);

    // Delete every object, then the bucket.
    for key in [
        "a/1.png",
        "a/2.png",
        "a/3.png",
        "b/1.png",
        "b/deep/2.png",
        "c.png",
        "big.png",
    ] {
        let done = write(
            store,
            ObjectOp::Delete {
                project: project.clone(),
                bucket: photos.clone(),
                key: key.to_owned(),
                condition: ObjectCondition::Always,
            },
        )
        .await
        .unwrap();
        assert!(done.existed && !done.trash.is_empty(), "{key}");
    }
    let missing = write(
        store,
        ObjectOp::Delete {
            project: project.clone(),
            bucket: photos.clone(),
            key: "a/1.png".to_owned(),
            condition: ObjectCondition::Always,
        },
    )
    .await
    .unwrap();
    assert!(!missing.existed);
    write(
        store,
        ObjectOp::DeleteBucket {
            project: project.clone(),
            bucket: photos.clone(),
        },
    )
    .await
    .unwrap();
    assert!(store.buckets(&project).await.unwrap().is_empty());
}
