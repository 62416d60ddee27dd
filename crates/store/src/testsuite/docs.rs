//! The `DocStore` contract.
use crate::StoreError;
use crate::docs::{
    DocCondition, DocStore, DocWrite, Index, MAX_DOCUMENT_DEPTH, Query, SCAN_LIMIT,
    parse_index_fields, parse_query,
};
use domain::{CollectionName, ProjectId};
use serde_json::{Map, Value, json};

fn collection(name: &str) -> CollectionName {
    CollectionName::new(name).unwrap()
}

fn object(value: Value) -> Map<String, Value> {
    value.as_object().unwrap().clone()
}

async fn set(store: &dyn DocStore, project: &ProjectId, coll: &str, id: &str, data: Value) -> u64 {
    let write = DocWrite::Set {
        collection: collection(coll),
        id: Some(id.to_owned()),
        data: object(data),
        condition: DocCondition::Always,
    };
    store.doc_write(project, None, vec![write]).await.unwrap()[0]
        .version
        .unwrap()
}

fn inner(error: StoreError) -> StoreError {
    match error {
        StoreError::BatchFailed { error, .. } => *error,
        other => other,
    }
}

fn query(text: Value) -> Query {
    parse_query(&text).unwrap()
}

/// Every page of the query, following cursors; ids in order.
async fn all_pages(
    store: &dyn DocStore,
    project: &ProjectId,
    coll: &str,
    mut q: Query,
) -> Vec<String> {
    let mut ids = Vec::new();
    loop {
        let page = store
            .doc_query(project, &collection(coll), &q)
            .await
            .unwrap();
        ids.extend(page.documents.into_iter().map(|document| document.id));
        match page.next_cursor {
            Some(cursor) => q.cursor = Some(cursor),
            None => return ids,
        }
    }
}

fn index(name: &str, fields: Value) -> Index {
    Index {
        name: name.to_owned(),
        fields: parse_index_fields(&fields).unwrap(),
    }
}

pub async fn crud_contract(store: &dyn DocStore) {
    let project = ProjectId::new("docs-crud").unwrap();
    let other = ProjectId::new("docs-other").unwrap();
    let users = collection("users");

    // Create with a server-chosen id, then with the client's.
    let created = store
        .doc_write(
            &project,
            None,
            vec![DocWrite::Set {
                collection: users.clone(),
                id: None,
                data: object(json!({"name": "ada"})),
                condition: DocCondition::Absent,
            }],
        )
        .await
        .unwrap();
    let generated = created[0].id.clone();
    assert!(!generated.is_empty() && !created[0].existed);
    let fetched = store
        .doc_get(&project, &users, &generated)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(fetched.data, object(json!({"name": "ada"})));
    assert_eq!(Some(fetched.version), created[0].version);

    let v1 = set(
        store,
        &project,
        "users",
        "bob",
        json!({"name": "bob", "address": {"city": "Oslo", "zip": "0150"}}),
    )
    .await;
    let duplicate = store
        .doc_write(
            &project,
            None,
            vec![DocWrite::Set {
                collection: users.clone(),
                id: Some("bob".to_owned()),
                data: object(json!({})),
                condition: DocCondition::Absent,
            }],
        )
        .await;
    assert!(matches!(inner(duplicate.unwrap_err()), StoreError::DocumentExists(id) if id == "bob"));

    // Optimistic concurrency: the current version passes, a stale one fails.
    let replace = async |version: u64, data: Value| {
        store
            .doc_write(
                &project,
                None,
                vec![DocWrite::Set {
                    collection: users.clone(),
                    id: Some("bob".to_owned()),
                    data: object(data),
                    condition: DocCondition::Version(version),
                }],
            )
            .await
    };
    let v2 = replace(
        v1,
        json!({"name": "bob", "address": {"city": "Oslo", "zip": "0150"}, "age": 40}),
    )
    .await
    .unwrap()[0]
        .version
        .unwrap();
    assert!(v2 > v1);
    assert!(matches!(
        inner(replace(v1, json!({})).await.unwrap_err()),
        StoreError::ConditionFailed
    ));

    // Merge patch (RFC 7396): nested merge, null removes.
    let patched = store
        .doc_write(
            &project,
            None,
            vec![DocWrite::Patch {
                collection: users.clone(),
                id: "bob".to_owned(),
                patch: json!({"address": {"zip": null, "street": "Storgata"}, "age": 41}),
                condition: DocCondition::Always,
            }],
        )
        .await
        .unwrap();
    assert!(patched[0].existed);
    let bob = store
        .doc_get(&project, &users, "bob")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        bob.data,
        object(
            json!({"name": "bob", "address": {"city": "Oslo", "street": "Storgata"}, "age": 41})
        )
    );
    let missing_patch = store
        .doc_write(
            &project,
            None,
            vec![DocWrite::Patch {
                collection: users.clone(),
                id: "nobody".to_owned(),
                patch: json!({"a": 1}),
                condition: DocCondition::Always,
            }],
        )
        .await;
    assert!(matches!(
        inner(missing_patch.unwrap_err()),
        StoreError::NoSuchDocument(_)
    ));

    // Delete, then re-create: the version is never reused.
    let deleted = store
        .doc_write(
            &project,
            None,
            vec![DocWrite::Delete {
                collection: users.clone(),
                id: "bob".to_owned(),
                condition: DocCondition::Version(bob.version),
            }],
        )
        .await
        .unwrap();
    assert!(deleted[0].existed && deleted[0].version.is_none());
    assert_eq!(store.doc_get(&project, &users, "bob").await.unwrap(), None);
    let again = set(store, &project, "users", "bob", json!({"name": "bob"})).await;
    assert!(again > bob.version);

    // A batch commits all or nothing.
    let batch = vec![
        DocWrite::Set {
            collection: users.clone(),
            id: Some("carol".to_owned()),
            data: object(json!({"name": "carol"})),
            condition: DocCondition::Absent,
        },
        DocWrite::Set {
            collection: collection("audit"),
            id: Some("e1".to_owned()),
            data: object(json!({"what": "carol joined"})),
            condition: DocCondition::Always,
        },
        DocWrite::Delete {
            collection: users.clone(),
            id: "bob".to_owned(),
            condition: DocCondition::Version(1),
        },
    ];
    match store
        .doc_write(&project, None, batch.clone())
        .await
        .unwrap_err()
    {
        StoreError::BatchFailed { write, error } => {
            assert_eq!(write, 2);
            assert!(matches!(*error, StoreError::ConditionFailed));
        }
        other => panic!("expected a failed batch, got {other:?}"),
    }
    assert_eq!(
        store.doc_get(&project, &users, "carol").await.unwrap(),
        None
    );
    assert_eq!(
        store
            .doc_get(&project, &collection("audit"), "e1")
            .await
            .unwrap(),
        None
    );
    let mut batch = batch;
    batch.pop();
    let done = store.doc_write(&project, None, batch).await.unwrap();
    assert_eq!(done.len(), 2);
    assert!(
        store
            .doc_get(&project, &users, "carol")
            .await
            .unwrap()
            .is_some()
    );

    // Bad documents and ids are refused with what is wrong.
    let mut deep = json!(1);
    for _ in 0..=MAX_DOCUMENT_DEPTH {
        deep = json!({ "d": deep });
    }
    let too_deep = store
        .doc_write(
            &project,
            None,
            vec![DocWrite::Set {
                collection: users.clone(),
                id: Some("deep".to_owned()),
                data: object(deep),
                condition: DocCondition::Always,
            }],
        )
        .await;
    assert!(
        matches!(inner(too_deep.unwrap_err()), StoreError::InvalidDocument(m) if m.contains("levels deep"))
    );
    let big = json!({"blob": "x".repeat(crate::docs::MAX_DOCUMENT_BYTES)});
    let too_big = store
        .doc_write(
            &project,
            None,
            vec![DocWrite::Set {
                collection: users.clone(),
                id: Some("big".to_owned()),
                data: object(big),
                condition: DocCondition::Always,
            }],
        )
        .await;
    assert!(
        matches!(inner(too_big.unwrap_err()), StoreError::InvalidDocument(m) if m.contains("bytes"))
    );
    for bad in ["", "_hidden", "a/b", "sp ace"] {
        let result = store
            .doc_write(
                &project,
                None,
                vec![DocWrite::Set {
                    collection: users.clone(),
                    id: Some(bad.to_owned()),
                    data: object(json!({})),
                    condition: DocCondition::Always,
                }],
            )
            .await;
        assert!(
            matches!(inner(result.unwrap_err()), StoreError::InvalidDocument(_)),
            "{bad:?}"
        );
    }

    // Another project sees none of it.
    assert_eq!(store.doc_get(&other, &users, "carol").await.unwrap(), None);
    assert!(store.doc_collections(&other).await.unwrap().is_empty());
    let everything = store
        .doc_query(&other, &users, &query(json!({})))
        .await
        .unwrap();
    assert!(everything.documents.is_empty());
    let names: Vec<String> = store
        .doc_collections(&project)
        .await
        .unwrap()
        .into_iter()
        .map(|info| info.name.to_string())
        .collect();
    assert_eq!(names, ["audit", "users"]);

    // Dropping a collection deletes its documents; versions go on.
    let before = set(store, &project, "users", "zed", json!({})).await;
    assert!(store.doc_drop_collection(&project, &users).await.unwrap());
    assert_eq!(store.doc_get(&project, &users, "zed").await.unwrap(), None);
    assert!(
        store
            .doc_query(&project, &users, &query(json!({})))
            .await
            .unwrap()
            .documents
            .is_empty()
    );
    let listed = async |store: &dyn DocStore| -> Vec<String> {
        store
            .doc_collections(&project)
            .await
            .unwrap()
            .into_iter()
            .map(|info| info.name.to_string())
            .collect()
    };
    assert_eq!(listed(store).await, ["audit"]);
    assert!(!store.doc_drop_collection(&project, &users).await.unwrap());
    assert!(
        !store
            .doc_drop_collection(&other, &collection("audit"))
            .await
            .unwrap()
    );
    let after = set(store, &project, "users", "zed", json!({})).await;
    assert!(after > before, "version {after} after {before}");
    assert_eq!(listed(store).await, ["audit", "users"]);
}

/// People with ages, cities, tags and nested fields; ids p00..p29.
async fn people(store: &dyn DocStore, project: &ProjectId) {
    let cities = ["Oslo", "Bergen", "Lima"];
    let writes = (0..30)
        .map(|n: i64| {
            let mut data = json!({
                "name": format!("person {n:02}"),
                "age": 20 + (n * 7) % 40,
                "city": cities[(n % 3) as usize],
                "tags": if n % 4 == 0 { json!(["admin", "staff"]) } else { json!(["staff"]) },
                "address": {"zip": format!("{:04}", 1000 + n * 10)},
            });
            if n % 5 == 0 {
                data.as_object_mut().unwrap().remove("age");
            }
            if n == 7 {
                data["age"] = json!("unknown");
            }
            DocWrite::Set {
                collection: collection("people"),
                id: Some(format!("p{n:02}")),
                data: object(data),
                condition: DocCondition::Always,
            }
        })
        .collect();
    store.doc_write(project, None, writes).await.unwrap();
}

/// The expected ids, computed by brute force from the same data.
fn expected(filter: impl Fn(i64) -> bool) -> Vec<String> {
    (0..30)
        .filter(|&n| filter(n))
        .map(|n| format!("p{n:02}"))
        .collect()
}

fn age(n: i64) -> Option<i64> {
    if n % 5 == 0 || n == 7 {
        None
    } else {
        Some(20 + (n * 7) % 40)
    }
}

fn city(n: i64) -> &'static str {
    ["Oslo", "Bergen", "Lima"][(n % 3) as usize]
}

pub async fn query_contract(store: &dyn DocStore) {
    let project = ProjectId::new("docs-query").unwrap();
    people(store, &project).await;
    let ids = async |q: Value| all_pages(store, &project, "people", query(q)).await;
    let sorted = |mut ids: Vec<String>| {
        ids.sort();
        ids
    };

    // Each operator, with no index (a small collection is read whole).
    let cases: Vec<(Value, Vec<String>)> = vec![
        (
            json!({"where": ["city", "==", "Oslo"]}),
            expected(|n| city(n) == "Oslo"),
        ),
        (
            json!({"where": ["city", "!=", "Oslo"]}),
            expected(|n| city(n) != "Oslo"),
        ),
        (
            json!({"where": ["age", ">", 40]}),
            expected(|n| age(n).is_some_and(|a| a > 40)),
        ),
        (
            json!({"where": ["age", ">=", 41]}),
            expected(|n| age(n).is_some_and(|a| a >= 41)),
        ),
        (
            json!({"where": ["age", "<", 30]}),
            expected(|n| age(n).is_some_and(|a| a < 30)),
        ),
        (
            json!({"where": ["age", "<=", 27]}),
            expected(|n| age(n).is_some_and(|a| a <= 27)),
        ),
        (
            json!({"where": ["city", "in", ["Lima", "Bergen"]]}),
            expected(|n| city(n) != "Oslo"),
        ),
        (
            json!({"where": ["city", "not-in", ["Lima", "Bergen"]]}),
            expected(|n| city(n) == "Oslo"),
        ),
        (
            json!({"where": ["tags", "array-contains", "admin"]}),
            expected(|n| n % 4 == 0),
        ),
        (
            json!({"where": ["age", "exists", false]}),
            expected(|n| n % 5 == 0),
        ),
        (
            json!({"where": ["address.zip", "prefix", "11"]}),
            expected(|n| (10..20).contains(&n)),
        ),
        (
            json!({"where": ["address.zip", "==", "1050"]}),
            expected(|n| n == 5),
        ),
        (
            json!({"where": {"and": [["city", "==", "Oslo"], ["age", ">=", 30]]}}),
            expected(|n| city(n) == "Oslo" && age(n).is_some_and(|a| a >= 30)),
        ),
        (
            json!({"where": {"or": [["city", "==", "Lima"], {"field": "age", "op": "<", "value": 25}]}}),
            expected(|n| city(n) == "Lima" || age(n).is_some_and(|a| a < 25)),
        ),
    ];
    for (q, want) in &cases {
        assert_eq!(sorted(ids(q.clone()).await), *want, "{q}");
    }

    // Ordering: a missing field sorts first, a string after numbers; ties
    // by id.
    let mut all: Vec<i64> = (0..30).collect();
    all.sort_by_key(|&n| {
        let rank = match (n % 5 == 0, n == 7) {
            (true, _) => 0,
            (_, true) => 2,
            _ => 1,
        };
        (rank, age(n).unwrap_or(0), n)
    });
    let by_age: Vec<String> = all.iter().map(|n| format!("p{n:02}")).collect();
    assert_eq!(ids(json!({"order_by": ["age"], "limit": 4})).await, by_age);

    // The same queries through indexes give the same documents, and say so.
    store
        .doc_create_index(
            &project,
            &collection("people"),
            index("by-city-age", json!(["city", "age"])),
        )
        .await
        .unwrap();
    store
        .doc_create_index(
            &project,
            &collection("people"),
            index("by-age", json!(["age"])),
        )
        .await
        .unwrap();
    store
        .doc_create_index(
            &project,
            &collection("people"),
            index("by-zip", json!(["address.zip"])),
        )
        .await
        .unwrap();
    for (q, want) in &cases {
        assert_eq!(sorted(ids(q.clone()).await), *want, "indexed: {q}");
    }
    let plan = store
        .doc_explain(
            &project,
            &collection("people"),
            &query(json!({"where": {"and": [["city", "==", "Oslo"], ["age", ">=", 30], ["tags", "array-contains", "admin"]]}})),
        ).await
        .unwrap();
    assert_eq!(plan.strategy, "index");
    assert_eq!(plan.index.as_deref(), Some("by-city-age"));
    assert_eq!(plan.index_terms.len(), 2);
    assert_eq!(plan.residual_terms, ["tags array-contains \"admin\""]);

    // Ordered through an index, forwards and backwards, in small pages.
    let oslo_by_age = {
        let mut all: Vec<i64> = (0..30)
            .filter(|&n| city(n) == "Oslo" && age(n).is_some())
            .collect();
        all.sort_by_key(|&n| (age(n), n));
        all.iter().map(|n| format!("p{n:02}")).collect::<Vec<_>>()
    };
    let forward = ids(
        json!({"where": {"and": [["city", "==", "Oslo"], ["age", ">", 0]]}, "order_by": ["age"], "limit": 2}),
    ).await;
    assert_eq!(forward, oslo_by_age);
    let backward = ids(
        json!({"where": {"and": [["city", "==", "Oslo"], ["age", ">", 0]]}, "order_by": ["-age"], "limit": 3}),
    ).await;
    let ages_backward: Vec<Option<i64>> = backward
        .iter()
        .map(|id| age(id[1..].parse().unwrap()))
        .collect();
    let mut ages_sorted = ages_backward.clone();
    ages_sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(ages_backward, ages_sorted);
    assert_eq!(sorted(backward), sorted(oslo_by_age.clone()));

    // Count uses the same plans.
    let count = store
        .doc_count(
            &project,
            &collection("people"),
            &query(json!({"where": ["city", "==", "Oslo"]})),
        )
        .await
        .unwrap();
    assert_eq!(count as usize, expected(|n| city(n) == "Oslo").len());
    let count_all = store
        .doc_count(&project, &collection("people"), &query(json!({})))
        .await
        .unwrap();
    assert_eq!(count_all, 30);

    // Writes keep indexes current: a moved document leaves its old range.
    set(
        store,
        &project,
        "people",
        "p03",
        json!({"city": "Oslo", "age": 99}),
    )
    .await;
    let oldest =
        ids(json!({"where": ["city", "==", "Oslo"], "order_by": ["-age"], "limit": 1})).await;
    assert_eq!(oldest[0], "p03");
    store
        .doc_write(
            &project,
            None,
            vec![DocWrite::Delete {
                collection: collection("people"),
                id: "p03".to_owned(),
                condition: DocCondition::Always,
            }],
        )
        .await
        .unwrap();
    let oldest =
        ids(json!({"where": ["city", "==", "Oslo"], "order_by": ["-age"], "limit": 1})).await;
    assert_ne!(oldest[0], "p03");

    // A cursor of another query is refused.
    let page = store
        .doc_query(
            &project,
            &collection("people"),
            &query(json!({"order_by": ["age"], "limit": 2})),
        )
        .await
        .unwrap();
    let mut other = query(json!({"where": ["city", "==", "Lima"], "limit": 2}));
    other.cursor = page.next_cursor;
    assert!(matches!(
        store
            .doc_query(&project, &collection("people"), &other)
            .await,
        Err(StoreError::InvalidQuery(_))
    ));

    // Dropping an index: queries fall back to reading the collection.
    assert!(
        store
            .doc_drop_index(&project, &collection("people"), "by-age")
            .await
            .unwrap()
    );
    assert!(
        !store
            .doc_drop_index(&project, &collection("people"), "by-age")
            .await
            .unwrap()
    );
    assert!(matches!(
        store
            .doc_create_index(
                &project,
                &collection("people"),
                index("by-zip", json!(["name"]))
            )
            .await,
        Err(StoreError::IndexExists(_))
    ));
    let infos = store.doc_collections(&project).await.unwrap();
    assert_eq!(infos[0].indexes.len(), 2);
}

pub async fn large_collection_contract(store: &dyn DocStore) {
    let project = ProjectId::new("docs-large").unwrap();
    let total = SCAN_LIMIT + 200;
    let writes: Vec<DocWrite> = (0..total)
        .map(|n| {
            let kind = ["click", "view"][(n % 2) as usize];
            DocWrite::Set {
                collection: collection("events"),
                id: Some(format!("e{n:05}")),
                data: object(json!({"kind": kind, "at": n})),
                condition: DocCondition::Always,
            }
        })
        .collect();
    store.doc_write(&project, None, writes).await.unwrap();
    let events = collection("events");

    // Listing by id is paging, not a scan: allowed.
    let first = store
        .doc_query(&project, &events, &query(json!({"limit": 3})))
        .await
        .unwrap();
    assert_eq!(first.documents[0].id, "e00000");
    // A filter no index serves is refused, and the error names the index.
    let filtered = query(
        json!({"where": {"and": [["kind", "==", "view"], ["at", ">=", 1000]]}, "order_by": ["at"]}),
    );
    match store.doc_query(&project, &events, &filtered).await {
        Err(StoreError::UnindexedQuery(message)) => {
            assert!(message.contains("[\"kind\", \"at\"]"), "{message}");
        }
        other => panic!("expected an unindexed query error, got {other:?}"),
    }
    store
        .doc_create_index(&project, &events, index("kind-at", json!(["kind", "at"])))
        .await
        .unwrap();
    let found = all_pages(store, &project, "events", filtered.clone()).await;
    let want: Vec<String> = (1000..total)
        .filter(|n| n % 2 == 1)
        .map(|n| format!("e{n:05}"))
        .collect();
    assert_eq!(found, want);
    assert_eq!(
        store.doc_count(&project, &events, &filtered).await.unwrap(),
        want.len() as u64
    );
}

/// An index filled while writes go on ends exactly like the documents.
pub async fn index_filled_during_writes_contract(store: std::sync::Arc<dyn DocStore>) {
    let project = ProjectId::new("docs-filling").unwrap();
    let items = collection("items");
    let writes: Vec<DocWrite> = (0..3000)
        .map(|n| DocWrite::Set {
            collection: items.clone(),
            id: Some(format!("i{n:05}")),
            data: object(json!({"group": n % 7, "n": n})),
            condition: DocCondition::Always,
        })
        .collect();
    store.doc_write(&project, None, writes).await.unwrap();
    let writer = tokio::spawn({
        let (store, project, items) = (store.clone(), project.clone(), items.clone());
        async move {
            // Updates, deletes and new documents across the whole id range
            // while the index fills chunk by chunk.
            for n in (0..3000).step_by(13) {
                let write = if n % 2 == 0 {
                    DocWrite::Set {
                        collection: items.clone(),
                        id: Some(format!("i{n:05}")),
                        data: object(json!({"group": 100, "n": n})),
                        condition: DocCondition::Always,
                    }
                } else {
                    DocWrite::Delete {
                        collection: items.clone(),
                        id: format!("i{n:05}"),
                        condition: DocCondition::Always,
                    }
                };
                let added = DocWrite::Set {
                    collection: items.clone(),
                    id: Some(format!("new{n:05}")),
                    data: object(json!({"group": 100, "n": n})),
                    condition: DocCondition::Always,
                };
                store
                    .doc_write(&project, None, vec![write, added])
                    .await
                    .unwrap();
            }
        }
    });
    store
        .doc_create_index(&project, &items, index("by-group", json!(["group", "n"])))
        .await
        .unwrap();
    writer.await.unwrap();
    let store = &*store;
    // What the index answers = what reading every document by id says.
    let mut everything = Vec::new();
    let mut q = query(json!({"limit": 1000}));
    loop {
        let page = store.doc_query(&project, &items, &q).await.unwrap();
        everything.extend(page.documents);
        match page.next_cursor {
            Some(cursor) => q.cursor = Some(cursor),
            None => break,
        }
    }
    for group in [0, 3, 100] {
        let mut want: Vec<(i64, String)> = everything
            .iter()
            .filter(|document| document.data["group"] == json!(group))
            .map(|document| (document.data["n"].as_i64().unwrap(), document.id.clone()))
            .collect();
        want.sort();
        let want: Vec<String> = want.into_iter().map(|(_, id)| id).collect();
        let q = query(json!({"where": ["group", "==", group], "order_by": ["n"]}));
        let plan = store.doc_explain(&project, &items, &q).await.unwrap();
        assert_eq!(plan.index.as_deref(), Some("by-group"));
        assert_eq!(
            all_pages(store, &project, "items", q).await,
            want,
            "group {group}"
        );
    }
}

/// An index whose creation the caller stopped waiting for is still made
/// whole: listed, used by queries, its name taken.
pub async fn index_made_for_a_caller_that_left_contract(store: &dyn DocStore) {
    let project = ProjectId::new("docs-left").unwrap();
    let items = collection("items");
    let writes: Vec<DocWrite> = (0..3000)
        .map(|n| DocWrite::Set {
            collection: items.clone(),
            id: Some(format!("i{n:05}")),
            data: object(json!({"group": n % 7, "n": n})),
            condition: DocCondition::Always,
        })
        .collect();
    store.doc_write(&project, None, writes).await.unwrap();
    let by_group = || index("by-group", json!(["group", "n"]));
    {
        let mut creating = Box::pin(store.doc_create_index(&project, &items, by_group()));
        // Begun, then dropped, as a handler is when its client goes.
        let _ = futures::poll!(creating.as_mut());
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        let _ = futures::poll!(creating.as_mut());
    }
    let q = query(json!({"where": ["group", "==", 3], "order_by": ["n"]}));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    // Until it is full, no index serves the query (and the collection is
    // too large to read whole).
    while !matches!(
        store.doc_explain(&project, &items, &q).await,
        Ok(plan) if plan.index.as_deref() == Some("by-group")
    ) {
        assert!(
            std::time::Instant::now() < deadline,
            "the index was never finished"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let listed = store.doc_collections(&project).await.unwrap();
    assert_eq!(listed[0].indexes, vec![by_group()]);
    assert!(matches!(
        store
            .doc_create_index(&project, &items, by_group())
            .await
            .unwrap_err(),
        StoreError::IndexExists(_)
    ));
    assert_eq!(all_pages(store, &project, "items", q).await.len(), 429);
}

/// Adding an index never changes a page: the same queries, paged, with no
/// index and with each index that might serve them, give the same ids in
/// the same order (ties broken by id), or the query is refused the index
/// (and still answers the same, read whole).
pub async fn plans_agree_contract(store: &dyn DocStore) {
    let project = ProjectId::new("docs-plans").unwrap();
    // Many ties: 60 people over 3 cities and 4 ages, names shared by pairs.
    let cities = ["Oslo", "Bergen", "Lima"];
    let writes = (0..60)
        .map(|n: i64| DocWrite::Set {
            collection: collection("ties"),
            id: Some(format!("t{:02}", (n * 37) % 60)),
            data: object(json!({
                "city": cities[(n % 3) as usize],
                "age": 30 + (n % 4) * 10,
                "name": format!("n{}", n / 2),
            })),
            condition: DocCondition::Always,
        })
        .collect();
    store.doc_write(&project, None, writes).await.unwrap();
    let queries = [
        json!({"order_by": ["-age"], "limit": 7}),
        json!({"order_by": ["age"], "limit": 7}),
        json!({"where": ["city", "==", "Oslo"], "order_by": ["-age"], "limit": 3}),
        json!({"where": ["city", "==", "Oslo"], "order_by": ["age"], "limit": 3}),
        json!({"where": ["city", "==", "Lima"], "order_by": ["-age", "name"], "limit": 4}),
        json!({"where": ["city", "==", "Lima"], "order_by": ["age", "-name"], "limit": 4}),
        json!({"where": ["age", ">=", 40], "order_by": ["age"], "limit": 5}),
        json!({"where": {"and": [["city", "==", "Bergen"], ["age", "==", 50]]}, "limit": 2}),
    ];
    let run = async || -> Vec<Vec<String>> {
        let mut pages = Vec::new();
        for q in &queries {
            pages.push(all_pages(store, &project, "ties", query(q.clone())).await);
        }
        pages
    };
    let unindexed = run().await;
    // The scan itself: ties by id.
    assert_eq!(unindexed[0].len(), 60);
    for index_fields in [
        json!(["city", "age"]),
        json!(["city", "-age"]),
        json!(["age"]),
        json!(["-age"]),
        json!(["city"]),
        json!(["city", "age", "name"]),
        json!(["city", "-age", "name"]),
        json!(["city", "age", "-name"]),
        json!(["age", "name"]),
        json!(["city", "age", "id"]),
    ] {
        let created = index("probe", index_fields.clone());
        store
            .doc_create_index(&project, &collection("ties"), created)
            .await
            .unwrap();
        assert_eq!(run().await, unindexed, "with an index on {index_fields}");
        store
            .doc_drop_index(&project, &collection("ties"), "probe")
            .await
            .unwrap();
    }
}

/// A live query's start: a change committing while its stream becomes
/// watched is in the snapshot read after `watch_stream`, or logged after
/// the snapshot's position; never in neither.
pub async fn watch_while_writing_contract<S>(store: std::sync::Arc<S>)
where
    S: DocStore + crate::events::EventStore,
{
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicBool, Ordering};
    let project = ProjectId::new("docs-watch").unwrap();
    for round in 0..40 {
        let items = collection(&format!("items-{round}"));
        let stream = domain::documents_stream(&items);
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let writers = (0..8)
            .map(|writer| {
                let (store, project, items, stop) =
                    (store.clone(), project.clone(), items.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut n = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let write = DocWrite::Set {
                            collection: items.clone(),
                            id: Some(format!("w{writer}-{}", n % 10)),
                            data: object(json!({ "n": n })),
                            condition: DocCondition::Always,
                        };
                        store.doc_write(&project, None, vec![write]).await.unwrap();
                        n += 1;
                    }
                })
            })
            .collect::<Vec<_>>();
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        store.watch_stream(&project, &stream).await.unwrap();
        let (snapshot, position) = store
            .doc_snapshot(&project, &items, &query(json!({})))
            .await
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        stop.store(true, Ordering::Relaxed);
        for writer in writers {
            writer.await.unwrap();
        }
        // The snapshot with the logged changes applied = the documents now.
        let mut state: BTreeMap<String, Option<u64>> = snapshot
            .into_iter()
            .map(|document| (document.id, Some(document.version)))
            .collect();
        let mut after = position;
        loop {
            let events = store.events(&project, &stream, after, 1000).await.unwrap();
            let Some(last) = events.last() else { break };
            after = last.seq;
            for event in &events {
                let change: Value = serde_json::from_slice(&event.data).unwrap();
                let version = change["after"]
                    .is_object()
                    .then(|| change["version"].as_u64().unwrap());
                state.insert(change["id"].as_str().unwrap().to_owned(), version);
            }
        }
        state.retain(|_, version| version.is_some());
        let (now, _) = store
            .doc_snapshot(&project, &items, &query(json!({})))
            .await
            .unwrap();
        let now: BTreeMap<String, Option<u64>> = now
            .into_iter()
            .map(|document| (document.id, Some(document.version)))
            .collect();
        assert_eq!(
            state, now,
            "round {round}: a change is in neither the snapshot nor the log"
        );
    }
}

/// Post `n` of the `or` contract's collection: public, private or
/// friends in turn, owned by u0..u4 in turn (so some are public and u1's),
/// with a `created` many posts share and a few lack; ids out of that order.
fn post(n: u64, total: u64) -> (String, Value) {
    let visibility = ["public", "private", "friends"][(n % 3) as usize];
    let mut data = json!({
        "visibility": visibility,
        "owner": format!("u{}", n % 5),
        "kind": if n.is_multiple_of(2) { "note" } else { "photo" },
        "created": (n * 7) % 97,
    });
    if n.is_multiple_of(11) {
        data.as_object_mut().unwrap().remove("created");
    }
    (format!("x{:04}", (n * 389) % total), data)
}

/// Ids of the posts that pass `keep`, by `created` (missing first; or
/// descending, missing last), then id.
fn posts_by_created(
    posts: &[(String, Value)],
    keep: impl Fn(&Value) -> bool,
    descending: bool,
) -> Vec<String> {
    let mut kept: Vec<(Option<u64>, &String)> = posts
        .iter()
        .filter(|(_, data)| keep(data))
        .map(|(id, data)| (data["created"].as_u64(), id))
        .collect();
    kept.sort_by(|(left, left_id), (right, right_id)| {
        let by_created = if descending {
            right.cmp(left)
        } else {
            left.cmp(right)
        };
        by_created.then(left_id.cmp(right_id))
    });
    kept.into_iter().map(|(_, id)| id.clone()).collect()
}

/// Every page of the query, following cursors: the ids of each page. A
/// cursor that does not move on fails the test (rather than page forever).
async fn pages(
    store: &dyn DocStore,
    project: &ProjectId,
    coll: &str,
    q: Value,
) -> Vec<Vec<String>> {
    let mut q = query(q);
    let mut pages: Vec<Vec<String>> = Vec::new();
    loop {
        assert!(pages.len() < 300, "still paging after 300 pages: {pages:?}");
        let page = store
            .doc_query(project, &collection(coll), &q)
            .await
            .unwrap();
        pages.push(
            page.documents
                .into_iter()
                .map(|document| document.id)
                .collect(),
        );
        match page.next_cursor {
            Some(cursor) => q.cursor = Some(cursor),
            None => return pages,
        }
    }
}

/// An `or` whose every branch an index serves (with the other terms, in
/// the query's order) is read as a union of those ranges: on a collection
/// too large to read whole, "public or mine" pages in the order a sorted
/// read gives, each post once (those both public and mine too), whatever
/// the page size, and counts each once; `_explain` names the ranges. On a
/// small collection the pages are the very pages of a read sorted in
/// memory. An `or` with a branch no index serves is refused as before.
pub async fn or_union_contract(store: &dyn DocStore) {
    let project = ProjectId::new("docs-or").unwrap();
    let posts_name = collection("posts");
    let total = SCAN_LIMIT + 200;
    let posts: Vec<(String, Value)> = (0..total).map(|n| post(n, total)).collect();
    let writes = posts
        .iter()
        .map(|(id, data)| DocWrite::Set {
            collection: posts_name.clone(),
            id: Some(id.clone()),
            data: object(data.clone()),
            condition: DocCondition::Always,
        })
        .collect();
    store.doc_write(&project, None, writes).await.unwrap();
    let public_or_mine = json!({"or": [["visibility", "==", "public"], ["owner", "==", "u1"]]});
    let is_public_or_mine = |data: &Value| data["visibility"] == "public" || data["owner"] == "u1";
    let by_created = json!({"where": public_or_mine, "order_by": ["created"], "limit": 7});

    // No index serves a branch yet: refused, as before.
    assert!(matches!(
        store
            .doc_query(&project, &posts_name, &query(by_created.clone()))
            .await,
        Err(StoreError::UnindexedQuery(_))
    ));
    for (name, fields) in [
        ("by-visibility", json!(["visibility", "created"])),
        ("by-owner", json!(["owner", "created"])),
    ] {
        store
            .doc_create_index(&project, &posts_name, index(name, fields))
            .await
            .unwrap();
    }

    let want = posts_by_created(&posts, is_public_or_mine, false);
    let both = posts
        .iter()
        .filter(|(_, data)| data["visibility"] == "public" && data["owner"] == "u1")
        .count();
    assert!(both > 0 && want.len() < 1000, "the data has what it should");
    let paged = pages(store, &project, "posts", by_created.clone())
        .await
        .concat();
    assert_eq!(paged, want, "pages of 7");
    let mut whole = by_created.clone();
    whole["limit"] = json!(1000);
    let one_page = store
        .doc_query(&project, &posts_name, &query(whole))
        .await
        .unwrap();
    let one_page_ids: Vec<String> = one_page.documents.into_iter().map(|d| d.id).collect();
    assert_eq!(one_page_ids, want, "one page");
    assert_eq!(one_page.next_cursor, None);
    assert_eq!(
        store
            .doc_count(&project, &posts_name, &query(by_created.clone()))
            .await
            .unwrap(),
        want.len() as u64
    );
    let plan = store
        .doc_explain(&project, &posts_name, &query(by_created.clone()))
        .await
        .unwrap();
    assert_eq!(plan.strategy, "union");
    let ranges: Vec<(&str, &[String])> = plan
        .branches
        .iter()
        .map(|branch| (branch.index.as_str(), branch.index_terms.as_slice()))
        .collect();
    assert_eq!(
        ranges,
        [
            (
                "by-visibility",
                &["visibility == \"public\"".to_owned()][..]
            ),
            ("by-owner", &["owner == \"u1\"".to_owned()][..]),
        ]
    );
    assert!(plan.residual_terms.is_empty(), "{plan:?}");

    // With the query's own terms beside the `or`: checked on each read.
    let notes = json!({
        "where": {"and": [["kind", "==", "note"], public_or_mine]},
        "order_by": ["created"],
        "limit": 5,
    });
    let want_notes = posts_by_created(
        &posts,
        |data| data["kind"] == "note" && is_public_or_mine(data),
        false,
    );
    assert_eq!(
        pages(store, &project, "posts", notes.clone())
            .await
            .concat(),
        want_notes
    );
    assert_eq!(
        store
            .doc_count(&project, &posts_name, &query(notes.clone()))
            .await
            .unwrap(),
        want_notes.len() as u64
    );
    let plan = store
        .doc_explain(&project, &posts_name, &query(notes))
        .await
        .unwrap();
    assert_eq!(
        (plan.strategy, plan.residual_terms),
        ("union", vec!["kind == \"note\"".to_owned()])
    );

    // Descending, through descending indexes.
    for (name, fields) in [
        ("by-visibility-newest", json!(["visibility", "-created"])),
        ("by-owner-newest", json!(["owner", "-created"])),
    ] {
        store
            .doc_create_index(&project, &posts_name, index(name, fields))
            .await
            .unwrap();
    }
    let newest = json!({"where": public_or_mine, "order_by": ["-created"], "limit": 9});
    assert_eq!(
        pages(store, &project, "posts", newest.clone())
            .await
            .concat(),
        posts_by_created(&posts, is_public_or_mine, true)
    );
    let plan = store
        .doc_explain(&project, &posts_name, &query(newest))
        .await
        .unwrap();
    assert_eq!(plan.branches[0].index, "by-visibility-newest");

    // A branch no index serves: refused, as before.
    let unserved = json!({
        "where": {"or": [["visibility", "==", "public"], ["tags", "array-contains", "x"]]},
        "order_by": ["created"],
    });
    assert!(matches!(
        store
            .doc_query(&project, &posts_name, &query(unserved))
            .await,
        Err(StoreError::UnindexedQuery(_))
    ));

    // On a small collection, read whole without indexes: the same pages.
    let cities = ["Oslo", "Bergen", "Lima"];
    let writes = (0..60)
        .map(|n: i64| DocWrite::Set {
            collection: collection("ties"),
            id: Some(format!("t{:02}", (n * 37) % 60)),
            data: object(json!({
                "city": cities[(n % 3) as usize],
                "age": 30 + (n % 4) * 10,
                "name": format!("n{}", n % 7),
            })),
            condition: DocCondition::Always,
        })
        .collect();
    store.doc_write(&project, None, writes).await.unwrap();
    let queries = [
        json!({"where": {"or": [["city", "==", "Oslo"], ["name", "==", "n3"]]}, "order_by": ["age"], "limit": 3}),
        json!({"where": {"or": [["city", "==", "Oslo"], ["name", "==", "n3"]]}, "order_by": ["-age"], "limit": 4}),
        json!({"where": {"or": [["city", "==", "Oslo"], ["city", "==", "Lima"], ["name", "==", "n1"]]}, "order_by": ["age"], "limit": 5}),
        json!({"where": {"or": [{"and": [["city", "==", "Bergen"], ["age", ">=", 40]]}, ["name", "==", "n5"]]}, "order_by": ["age"], "limit": 2}),
        json!({"where": {"or": [["age", "<", 50], ["city", "==", "Lima"]]}, "order_by": ["age"], "limit": 6}),
        json!({"where": {"and": [["age", ">", 30], {"or": [["city", "==", "Lima"], ["name", "==", "n2"]]}]}, "limit": 4}),
    ];
    let mut scanned = Vec::new();
    for q in &queries {
        scanned.push(pages(store, &project, "ties", q.clone()).await);
    }
    for (name, fields) in [
        ("by-city", json!(["city", "age"])),
        ("by-name", json!(["name", "age"])),
        ("by-city-oldest", json!(["city", "-age"])),
        ("by-name-oldest", json!(["name", "-age"])),
        ("by-age", json!(["age"])),
    ] {
        store
            .doc_create_index(&project, &collection("ties"), index(name, fields))
            .await
            .unwrap();
    }
    for (q, scanned) in queries.iter().zip(&scanned) {
        let plan = store
            .doc_explain(&project, &collection("ties"), &query(q.clone()))
            .await
            .unwrap();
        assert_eq!(plan.strategy, "union", "{q}");
        assert_eq!(
            pages(store, &project, "ties", q.clone()).await,
            *scanned,
            "{q}"
        );
        let matched: usize = scanned.iter().map(Vec::len).sum();
        assert_eq!(
            store
                .doc_count(&project, &collection("ties"), &query(q.clone()))
                .await
                .unwrap(),
            matched as u64,
            "{q}"
        );
    }
}
