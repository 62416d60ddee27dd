//! The functions and records contracts: versions, the current one,
//! removal; invocation records, usage as their exact sum, log lines.
use super::{name, new_version, record};
use crate::{FunctionStore, RecordStore, StoreError};
use domain::{InvocationId, LogLine, LogStream, Outcome, ProjectId, UsageFilter};

pub async fn contract<S: FunctionStore + RecordStore>(store: &S) {
    let project = ProjectId::default_project();
    let other = ProjectId::new("other").unwrap();

    // Versions: each deploy is a new version and becomes current.
    let v1 = store
        .create_version(&project, &name("app"), new_version("aaa"))
        .await
        .unwrap();
    let v2 = store
        .create_version(&project, &name("app"), new_version("bbb"))
        .await
        .unwrap();
    assert_eq!((v1.version, v2.version), (1, 2));
    assert_eq!(
        store
            .current(&project, &name("app"))
            .await
            .unwrap()
            .unwrap()
            .artifact,
        "bbb"
    );
    assert_eq!(
        store
            .set_current(&project, &name("app"), 1)
            .await
            .unwrap()
            .artifact,
        "aaa"
    );
    assert_eq!(
        store
            .current(&project, &name("app"))
            .await
            .unwrap()
            .unwrap()
            .version,
        1
    );
    assert!(matches!(
        store.set_current(&project, &name("app"), 7).await,
        Err(StoreError::NoSuchVersion { .. })
    ));
    assert_eq!(
        store.versions(&project, &name("app")).await.unwrap().len(),
        2
    );

    // Projects do not see each other.
    assert!(store.current(&other, &name("app")).await.unwrap().is_none());
    assert!(store.list(&other).await.unwrap().is_empty());
    store
        .create_version(&other, &name("app"), new_version("ccc"))
        .await
        .unwrap();
    assert_eq!(store.list(&project).await.unwrap().len(), 1);
    assert_eq!(
        store.projects_with_functions().await.unwrap(),
        vec![project.clone(), other.clone()]
    );
    let in_use = |names: &[&str]| -> std::collections::HashSet<String> {
        names.iter().map(|name| name.to_string()).collect()
    };
    assert_eq!(
        store.artifacts_in_use().await.unwrap(),
        in_use(&["aaa", "bbb", "ccc"])
    );

    // Removal keeps numbering going.
    assert!(store.remove(&project, &name("app")).await.unwrap());
    assert!(!store.remove(&project, &name("app")).await.unwrap());
    assert!(
        store
            .current(&project, &name("app"))
            .await
            .unwrap()
            .is_none()
    );
    assert!(matches!(
        store.versions(&project, &name("app")).await,
        Err(StoreError::NoSuchFunction(_))
    ));
    // A removed function's code is in use no more...
    assert_eq!(store.artifacts_in_use().await.unwrap(), in_use(&["ccc"]));
    assert_eq!(
        store
            .create_version(&project, &name("app"), new_version("ddd"))
            .await
            .unwrap()
            .version,
        3
    );
    // ...until it is deployed again: its earlier versions may be rolled back to.
    assert_eq!(
        store.artifacts_in_use().await.unwrap(),
        in_use(&["aaa", "bbb", "ccc", "ddd"])
    );

    // Records and exact usage.
    let records = vec![
        record(&project, "app", "r1", 1000, 3, 128, Outcome::Success),
        record(&project, "app", "r2", 2000, 1, 128, Outcome::Trap),
        record(&project, "other-fn", "r3", 3000, 7, 64, Outcome::Timeout),
        record(&other, "app", "r4", 3000, 100, 1024, Outcome::Success),
    ];
    store.insert_records(records.clone()).await.unwrap();
    store.insert_records(records[..1].to_vec()).await.unwrap(); // a repeated record is not counted twice
    let usage = store
        .usage(&project, &UsageFilter::default())
        .await
        .unwrap();
    assert_eq!((usage.requests, usage.errors, usage.billed_ms), (3, 2, 11));
    assert_eq!(usage.mib_ms, 3 * 128 + 128 + 7 * 64);
    let filtered = store
        .usage(
            &project,
            &UsageFilter {
                since: Some(1500),
                until: Some(3000),
                ..UsageFilter::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(filtered.requests, 1);
    let by_function = UsageFilter {
        function: Some(name("app")),
        ..UsageFilter::default()
    };
    assert_eq!(
        store.usage(&project, &by_function).await.unwrap().requests,
        2
    );
    let listed = store
        .records(&project, &UsageFilter::default(), 10)
        .await
        .unwrap();
    assert_eq!(
        listed.iter().map(|r| r.id.0.as_str()).collect::<Vec<_>>(),
        ["r3", "r2", "r1"]
    );
    assert_eq!(listed[2], records[0]);

    // Logs page by position and stay within their project.
    let line = |text: &str| LogLine {
        project: project.clone(),
        function: name("app"),
        invocation: InvocationId("r1".to_owned()),
        instance: Some("instance-7".to_owned()),
        time: 5,
        stream: LogStream::Stderr,
        line: text.to_owned(),
    };
    store
        .insert_logs(vec![line("one"), line("two"), line("three")])
        .await
        .unwrap();
    let first = store.logs(&project, &name("app"), 0, 2).await.unwrap();
    assert_eq!(
        first
            .iter()
            .map(|l| l.line.line.as_str())
            .collect::<Vec<_>>(),
        ["one", "two"]
    );
    let rest = store
        .logs(&project, &name("app"), first[1].seq, 10)
        .await
        .unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].line, line("three"));
    assert!(
        store
            .logs(&other, &name("app"), 0, 10)
            .await
            .unwrap()
            .is_empty()
    );
}
