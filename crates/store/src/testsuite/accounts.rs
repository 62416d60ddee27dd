//! The accounts contract: users, sessions, refresh rotation, signing keys,
//! one-time email codes, second factors, login tickets, linked identities
//! and pending flows.
use crate::accounts::{
    Challenge, CodeUse, EmailCode, Ending, Factor, FactorStatus, Flow, LinkedIdentity, LoginTicket,
    PendingFlow, PendingKind, Refreshed, Session, SigningKey, StepUse, User,
};
use crate::{AccountStore, ProjectStore, StoreError};
use domain::ProjectId;

fn user(project: &ProjectId, id: &str, email: Option<&str>) -> User {
    User {
        project: project.clone(),
        id: id.to_owned(),
        email: email.map(str::to_owned),
        phone: None,
        password_hash: Some(format!("$argon2id$hash-of-{id}")),
        email_confirmed_at: None,
        anonymous: false,
        banned_until: None,
        app_metadata: serde_json::json!({"provider": "email"}),
        user_metadata: serde_json::json!({"name": id}),
        created_at: 10,
        updated_at: 10,
        last_sign_in_at: None,
    }
}

fn session(project: &ProjectId, id: &str, user_id: &str, at: i64) -> Session {
    Session {
        project: project.clone(),
        id: id.to_owned(),
        user_id: user_id.to_owned(),
        created_at: at,
        refreshed_at: at,
        aal: 1,
        ended_at: None,
    }
}

fn token(n: u8) -> [u8; 32] {
    [n; 32]
}

/// Users: unique emails per project, updates, listing, deletion.
pub async fn users_contract<S: AccountStore + ProjectStore>(store: &S) {
    let shop = ProjectId::new("shop").unwrap();
    let blog = ProjectId::new("blog").unwrap();
    store.create_project(&shop).await.unwrap();
    store.create_project(&blog).await.unwrap();

    let ann = user(&shop, "a1", Some("ann@example.com"));
    store.create_user(&ann).await.unwrap();
    assert_eq!(store.user(&shop, "a1").await.unwrap(), Some(ann.clone()));
    assert_eq!(
        store.user_by_email(&shop, "ann@example.com").await.unwrap(),
        Some(ann.clone())
    );
    // One project's users are not another's, and the same email may sign
    // up in each.
    assert_eq!(store.user(&blog, "a1").await.unwrap(), None);
    assert_eq!(
        store.user_by_email(&blog, "ann@example.com").await.unwrap(),
        None
    );
    store
        .create_user(&user(&blog, "b1", Some("ann@example.com")))
        .await
        .unwrap();
    // Within one project, an email is one user's.
    assert!(matches!(
        store
            .create_user(&user(&shop, "a2", Some("ann@example.com")))
            .await,
        Err(StoreError::EmailTaken)
    ));
    assert_eq!(store.user(&shop, "a2").await.unwrap(), None);
    // Users without an email (anonymous ones) are many.
    let mut anonymous = user(&shop, "a3", None);
    anonymous.anonymous = true;
    anonymous.password_hash = None;
    store.create_user(&anonymous).await.unwrap();
    store.create_user(&user(&shop, "a4", None)).await.unwrap();

    // An update replaces every field, and is refused an email in use.
    let mut bob = user(&shop, "a2", Some("bob@example.com"));
    store.create_user(&bob).await.unwrap();
    bob.email = Some("ann@example.com".to_owned());
    assert!(matches!(
        store.update_user(&bob).await,
        Err(StoreError::EmailTaken)
    ));
    bob.email = Some("robert@example.com".to_owned());
    bob.phone = Some("+15550100".to_owned());
    bob.email_confirmed_at = Some(20);
    bob.banned_until = Some(99);
    bob.app_metadata = serde_json::json!({"roles": ["editor"]});
    bob.user_metadata = serde_json::json!({"nested": {"a": [1, 2]}});
    bob.password_hash = None;
    bob.updated_at = 20;
    bob.last_sign_in_at = Some(21);
    assert!(store.update_user(&bob).await.unwrap());
    assert_eq!(store.user(&shop, "a2").await.unwrap(), Some(bob.clone()));
    assert_eq!(
        store.user_by_email(&shop, "bob@example.com").await.unwrap(),
        None
    );
    // An anonymous user becomes a permanent one, keeping its id.
    anonymous.anonymous = false;
    anonymous.email = Some("carl@example.com".to_owned());
    assert!(store.update_user(&anonymous).await.unwrap());
    assert_eq!(
        store
            .user_by_email(&shop, "carl@example.com")
            .await
            .unwrap()
            .map(|user| user.id),
        Some("a3".to_owned())
    );
    assert!(
        !store
            .update_user(&user(&blog, "a2", Some("x@example.com")))
            .await
            .unwrap(),
        "a user of another project is not there to update"
    );

    // Listing: by id, in pages, one project's only.
    let ids = |users: Vec<User>| users.into_iter().map(|user| user.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.users(&shop, 0, 10).await.unwrap()),
        ["a1", "a2", "a3", "a4"]
    );
    assert_eq!(ids(store.users(&shop, 0, 2).await.unwrap()), ["a1", "a2"]);
    assert_eq!(ids(store.users(&shop, 2, 2).await.unwrap()), ["a3", "a4"]);
    assert_eq!(ids(store.users(&blog, 0, 10).await.unwrap()), ["b1"]);
    assert_eq!(store.count_users(&shop).await.unwrap(), 4);
    assert_eq!(store.count_users(&blog).await.unwrap(), 1);

    // Deleting a user ends its sessions and frees its email.
    store
        .create_session(&session(&shop, "s1", "a1", 30), &token(1))
        .await
        .unwrap();
    store
        .create_session(&session(&shop, "s2", "a1", 31), &token(2))
        .await
        .unwrap();
    store
        .create_session(&session(&shop, "s3", "a2", 32), &token(3))
        .await
        .unwrap();
    let mut ended = store.delete_user(&shop, "a1", 40).await.unwrap().unwrap();
    ended.sort();
    assert_eq!(ended, ["s1", "s2"]);
    assert_eq!(store.user(&shop, "a1").await.unwrap(), None);
    assert_eq!(store.delete_user(&shop, "a1", 41).await.unwrap(), None);
    assert_eq!(
        store
            .refresh(&shop, &token(1), &token(9), 42, 0)
            .await
            .unwrap(),
        Refreshed::Refused,
        "a deleted user's refresh token is dead"
    );
    assert!(store.live_sessions(&shop, "a1").await.unwrap().is_empty());
    assert_eq!(
        store.session(&shop, "s3").await.unwrap().unwrap().ended_at,
        None
    );
    store
        .create_user(&user(&shop, "a5", Some("ann@example.com")))
        .await
        .unwrap();
    assert_eq!(store.user(&blog, "b1").await.unwrap().unwrap().id, "b1");

    // A project keeps its users: removing it waits until they are gone
    // (its name is never given out again, so they would be unreachable).
    assert!(matches!(
        store.remove_project(&blog).await,
        Err(StoreError::ProjectNotEmpty(_))
    ));
    store.delete_user(&blog, "b1", 50).await.unwrap();
    assert!(store.remove_project(&blog).await.unwrap());
}

/// Sessions: refresh rotation with a grace, replay ending the session,
/// ending one, all or the others, and the list of ended sessions.
pub async fn sessions_contract<S: AccountStore + ProjectStore>(store: &S) {
    let shop = ProjectId::new("shop").unwrap();
    let blog = ProjectId::new("blog").unwrap();
    store.create_project(&shop).await.unwrap();
    store.create_project(&blog).await.unwrap();
    store
        .create_user(&user(&shop, "u1", Some("u1@example.com")))
        .await
        .unwrap();
    let first = session(&shop, "s1", "u1", 100);
    store.create_session(&first, &token(1)).await.unwrap();
    assert_eq!(
        store.session(&shop, "s1").await.unwrap(),
        Some(first.clone())
    );
    assert_eq!(store.session(&blog, "s1").await.unwrap(), None);

    // A token of another project, or unknown, is refused.
    assert_eq!(
        store
            .refresh(&blog, &token(1), &token(2), 110, 10)
            .await
            .unwrap(),
        Refreshed::Refused
    );
    assert_eq!(
        store
            .refresh(&shop, &token(7), &token(2), 110, 10)
            .await
            .unwrap(),
        Refreshed::Refused
    );
    // The newest token turns into the next one.
    let Refreshed::Rotated(turned) = store
        .refresh(&shop, &token(1), &token(2), 110, 10)
        .await
        .unwrap()
    else {
        panic!("the newest token did not turn");
    };
    assert_eq!((turned.id.as_str(), turned.refreshed_at), ("s1", 110));
    // Used again within the grace: answered again (a client that lost the
    // answer), and that token stands too.
    assert!(matches!(
        store.refresh(&shop, &token(1), &token(3), 115, 10).await.unwrap(),
        Refreshed::Again(session) if session.id == "s1"
    ));
    assert!(matches!(
        store
            .refresh(&shop, &token(3), &token(4), 116, 10)
            .await
            .unwrap(),
        Refreshed::Rotated(_)
    ));
    // Used again after the grace: a replay, which ends the whole session,
    // so that even its newest token is dead.
    assert_eq!(
        store
            .refresh(&shop, &token(1), &token(6), 125, 10)
            .await
            .unwrap(),
        Refreshed::Replayed {
            session_id: "s1".to_owned()
        }
    );
    assert_eq!(
        store.session(&shop, "s1").await.unwrap().unwrap().ended_at,
        Some(125)
    );
    for newest in [2, 4, 6] {
        assert_eq!(
            store
                .refresh(&shop, &token(newest), &token(8), 126, 10)
                .await
                .unwrap(),
            Refreshed::Refused
        );
    }

    // Ending sessions: one, the others, all; only live ones count.
    for (id, n) in [("s2", 12), ("s3", 13), ("s4", 14)] {
        store
            .create_session(&session(&shop, id, "u1", 200), &token(n))
            .await
            .unwrap();
    }
    assert!(store.set_session_aal(&shop, "s2", 2).await.unwrap());
    assert!(!store.set_session_aal(&shop, "s1", 2).await.unwrap());
    assert_eq!(store.session(&shop, "s2").await.unwrap().unwrap().aal, 2);
    let live = async |store: &S| {
        store
            .live_sessions(&shop, "u1")
            .await
            .unwrap()
            .into_iter()
            .map(|session| session.id)
            .collect::<Vec<_>>()
    };
    assert_eq!(live(store).await, ["s2", "s3", "s4"]);
    assert_eq!(
        store
            .end_sessions(&shop, "u1", Ending::One("s3"), 300)
            .await
            .unwrap(),
        ["s3"]
    );
    assert!(
        store
            .end_sessions(&shop, "u1", Ending::One("s3"), 301)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .end_sessions(&blog, "u1", Ending::All, 301)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .refresh(&shop, &token(13), &token(20), 302, 10)
            .await
            .unwrap(),
        Refreshed::Refused,
        "an ended session's refresh token is dead"
    );
    assert_eq!(
        store
            .end_sessions(&shop, "u1", Ending::Others("s2"), 310)
            .await
            .unwrap(),
        ["s4"]
    );
    assert_eq!(live(store).await, ["s2"]);
    assert_eq!(
        store
            .end_sessions(&shop, "u1", Ending::All, 320)
            .await
            .unwrap(),
        ["s2"]
    );
    assert!(live(store).await.is_empty());

    let mut ended = store.ended_sessions(300).await.unwrap();
    ended.sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!(
        ended,
        [
            (shop.clone(), "s2".to_owned(), 320),
            (shop.clone(), "s3".to_owned(), 300),
            (shop.clone(), "s4".to_owned(), 310),
        ]
    );
    assert_eq!(store.ended_sessions(121).await.unwrap().len(), 4);
}

/// Auth settings: per project, replaced whole.
pub async fn auth_settings_contract<S: AccountStore + ProjectStore>(store: &S) {
    let shop = ProjectId::new("shop").unwrap();
    store.create_project(&shop).await.unwrap();
    assert!(store.auth_settings().await.unwrap().is_empty());
    store
        .set_auth_settings(&shop, &serde_json::json!({"signup": false, "lifetime": 60}))
        .await
        .unwrap();
    store
        .set_auth_settings(&ProjectId::default_project(), &serde_json::json!({}))
        .await
        .unwrap();
    store
        .set_auth_settings(&shop, &serde_json::json!({"signup": true}))
        .await
        .unwrap();
    let mut all = store.auth_settings().await.unwrap();
    all.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
    assert_eq!(
        all,
        [
            (ProjectId::default_project(), serde_json::json!({})),
            (shop, serde_json::json!({"signup": true})),
        ]
    );
}

/// Signing keys: per project, in order, retired with a time.
pub async fn signing_keys_contract<S: AccountStore + ProjectStore>(store: &S) {
    let shop = ProjectId::new("shop").unwrap();
    store.create_project(&shop).await.unwrap();
    let key = |project: &ProjectId, kid: &str, at: i64| SigningKey {
        project: project.clone(),
        kid: kid.to_owned(),
        sealed_private: vec![at as u8; 70],
        created_at: at,
        retired_at: None,
    };
    assert!(store.signing_keys().await.unwrap().is_empty());
    store
        .add_signing_key(&key(&ProjectId::default_project(), "k1", 1))
        .await
        .unwrap();
    store.add_signing_key(&key(&shop, "k2", 2)).await.unwrap();
    store.add_signing_key(&key(&shop, "k3", 3)).await.unwrap();
    assert!(store.retire_signing_key(&shop, "k2", 50).await.unwrap());
    assert!(!store.retire_signing_key(&shop, "k2", 60).await.unwrap());
    assert!(
        !store.retire_signing_key(&shop, "k1", 60).await.unwrap(),
        "another project's key"
    );
    let mut retired = key(&shop, "k2", 2);
    retired.retired_at = Some(50);
    assert_eq!(
        store.signing_keys().await.unwrap(),
        [
            key(&ProjectId::default_project(), "k1", 1),
            retired,
            key(&shop, "k3", 3),
        ]
    );
}

fn code(project: &ProjectId, flow: Flow, email: &str, n: u8, at: i64) -> EmailCode {
    EmailCode {
        project: project.clone(),
        flow,
        email: email.to_owned(),
        user_id: Some(format!("user-of-{email}")),
        code_hash: [n; 32],
        link_hash: [n + 100; 32],
        created_at: at,
        expires_at: at + 600_000,
    }
}

/// One-time email codes: bound to project, flow and address; used once,
/// by code or by link; dead after a few failures or their expiry; a new
/// one replaces the outstanding one.
pub async fn email_codes_contract<S: AccountStore + ProjectStore>(store: &S) {
    let shop = ProjectId::new("shop").unwrap();
    let blog = ProjectId::new("blog").unwrap();
    store.create_project(&shop).await.unwrap();
    store.create_project(&blog).await.unwrap();
    let ann = "ann@example.com";
    let now = 1_000;
    let both = [Flow::Signup, Flow::MagicLink];

    // Used once, by its code, in its flows and project only.
    let first = code(&shop, Flow::MagicLink, ann, 1, now);
    store.put_email_code(&first).await.unwrap();
    assert_eq!(
        store
            .email_code(&shop, Flow::MagicLink, ann, now)
            .await
            .unwrap(),
        Some(first.clone())
    );
    assert_eq!(
        store
            .email_code(&shop, Flow::Recovery, ann, now)
            .await
            .unwrap(),
        None
    );
    for (project, flows) in [(&blog, &both[..]), (&shop, &[Flow::Recovery][..])] {
        assert_eq!(
            store
                .use_email_code(project, ann, flows, &[1; 32], now + 1, 5)
                .await
                .unwrap(),
            CodeUse::None
        );
    }
    assert_eq!(
        store
            .use_email_code(&shop, "bob@example.com", &both, &[1; 32], now + 1, 5)
            .await
            .unwrap(),
        CodeUse::None
    );
    assert_eq!(
        store
            .use_email_code(&shop, ann, &both, &[1; 32], now + 1, 5)
            .await
            .unwrap(),
        CodeUse::Used(first.clone())
    );
    assert_eq!(
        store
            .use_email_code(&shop, ann, &both, &[1; 32], now + 2, 5)
            .await
            .unwrap(),
        CodeUse::None,
        "a code is used once"
    );
    assert_eq!(
        store
            .use_email_link(&shop, &both, &[101; 32], now + 2, 5)
            .await
            .unwrap(),
        None,
        "its link died with it"
    );

    // Used once, by its link, in its flows and project only.
    let linked = code(&shop, Flow::Recovery, ann, 2, now);
    store.put_email_code(&linked).await.unwrap();
    assert_eq!(
        store
            .use_email_link(&blog, &[Flow::Recovery], &[102; 32], now + 1, 5)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .use_email_link(&shop, &both, &[102; 32], now + 1, 5)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .use_email_link(&shop, &[Flow::Recovery], &[102; 32], now + 1, 5)
            .await
            .unwrap(),
        Some(linked.clone())
    );
    assert_eq!(
        store
            .use_email_link(&shop, &[Flow::Recovery], &[102; 32], now + 1, 5)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .use_email_code(&shop, ann, &[Flow::Recovery], &[2; 32], now + 1, 5)
            .await
            .unwrap(),
        CodeUse::None
    );

    // A new code replaces the outstanding one of its flow and address.
    store
        .put_email_code(&code(&shop, Flow::Signup, ann, 3, now))
        .await
        .unwrap();
    store
        .put_email_code(&code(&shop, Flow::Signup, ann, 4, now + 5))
        .await
        .unwrap();
    assert_eq!(
        store
            .use_email_code(&shop, ann, &both, &[3; 32], now + 6, 5)
            .await
            .unwrap(),
        CodeUse::Wrong
    );
    assert!(matches!(
        store.use_email_code(&shop, ann, &both, &[4; 32], now + 6, 5).await.unwrap(),
        CodeUse::Used(used) if used.created_at == now + 5
    ));

    // Expired: neither the code nor the link works.
    let expiring = code(&shop, Flow::MagicLink, ann, 5, now);
    store.put_email_code(&expiring).await.unwrap();
    let after = expiring.expires_at;
    assert_eq!(
        store
            .use_email_code(&shop, ann, &both, &[5; 32], after, 5)
            .await
            .unwrap(),
        CodeUse::None
    );
    assert_eq!(
        store
            .use_email_link(&shop, &both, &[105; 32], after, 5)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .email_code(&shop, Flow::MagicLink, ann, after)
            .await
            .unwrap(),
        None
    );
    // Putting a code forgets the project's expired ones.
    store
        .put_email_code(&code(&shop, Flow::Recovery, "bob@example.com", 6, after))
        .await
        .unwrap();
    assert_eq!(
        store
            .use_email_code(&shop, ann, &both, &[5; 32], now + 1, 5)
            .await
            .unwrap(),
        CodeUse::None,
        "an expired code is gone for good"
    );

    // Wrong codes: each counts; at the limit the right one is dead too,
    // by code and by link. Another address or flow is not touched.
    store
        .put_email_code(&code(&shop, Flow::MagicLink, ann, 7, now))
        .await
        .unwrap();
    store
        .put_email_code(&code(&shop, Flow::Recovery, ann, 8, now))
        .await
        .unwrap();
    store
        .put_email_code(&code(&shop, Flow::MagicLink, "carl@example.com", 9, now))
        .await
        .unwrap();
    for wrong in 0..4 {
        assert_eq!(
            store
                .use_email_code(&shop, ann, &both, &[wrong + 200; 32], now + 1, 5)
                .await
                .unwrap(),
            CodeUse::Wrong
        );
    }
    assert!(
        store
            .email_code(&shop, Flow::MagicLink, ann, now + 1)
            .await
            .unwrap()
            .is_some(),
        "four failures leave it live"
    );
    assert_eq!(
        store
            .use_email_code(&shop, ann, &both, &[250; 32], now + 1, 5)
            .await
            .unwrap(),
        CodeUse::Wrong
    );
    assert_eq!(
        store
            .use_email_code(&shop, ann, &both, &[7; 32], now + 1, 5)
            .await
            .unwrap(),
        CodeUse::None,
        "five failures kill the right code"
    );
    assert_eq!(
        store
            .use_email_link(&shop, &both, &[107; 32], now + 1, 5)
            .await
            .unwrap(),
        None
    );
    assert!(matches!(
        store.use_email_code(&shop, ann, &[Flow::Recovery], &[8; 32], now + 1, 5).await.unwrap(),
        CodeUse::Used(used) if used.flow == Flow::Recovery
    ));
    assert!(matches!(
        store
            .use_email_link(&shop, &both, &[109; 32], now + 1, 5)
            .await
            .unwrap(),
        Some(used) if used.email == "carl@example.com"
    ));

    // A code for nobody is kept like any other (its user is none).
    let mut nobody = code(&blog, Flow::Recovery, "nobody@example.com", 10, now);
    nobody.user_id = None;
    store.put_email_code(&nobody).await.unwrap();
    assert_eq!(
        store
            .use_email_code(
                &blog,
                "nobody@example.com",
                &[Flow::Recovery],
                &[10; 32],
                now + 1,
                5
            )
            .await
            .unwrap(),
        CodeUse::Used(nobody)
    );
}

fn factor(project: &ProjectId, id: &str, user_id: &str, at: i64) -> Factor {
    Factor {
        project: project.clone(),
        id: id.to_owned(),
        user_id: user_id.to_owned(),
        factor_type: "totp".to_owned(),
        friendly_name: Some(format!("phone of {user_id}")),
        sealed_secret: vec![7; 48],
        status: FactorStatus::Unverified,
        last_used_step: None,
        created_at: at,
        updated_at: at,
    }
}

fn challenge(project: &ProjectId, id: &str, factor: &Factor, at: i64) -> Challenge {
    Challenge {
        project: project.clone(),
        id: id.to_owned(),
        factor_id: factor.id.clone(),
        user_id: factor.user_id.clone(),
        created_at: at,
        expires_at: at + 300_000,
    }
}

/// Second factors: per user and project; a code's time step is accepted
/// once, through a live challenge, which is then used up; wrong codes and
/// expiry kill a challenge; deleting a factor or its user forgets both.
pub async fn factors_contract<S: AccountStore + ProjectStore>(store: &S) {
    let shop = ProjectId::new("shop").unwrap();
    let blog = ProjectId::new("blog").unwrap();
    store.create_project(&shop).await.unwrap();
    store.create_project(&blog).await.unwrap();
    for (project, id) in [(&shop, "u1"), (&shop, "u2"), (&blog, "u1")] {
        store
            .create_user(&user(project, id, Some(&format!("{id}@example.com"))))
            .await
            .unwrap();
    }
    let now = 1_000_000;
    let phone = factor(&shop, "f1", "u1", now);
    let mut tablet = factor(&shop, "f2", "u1", now + 1);
    tablet.friendly_name = None;
    store.create_factor(&phone).await.unwrap();
    store.create_factor(&tablet).await.unwrap();
    store
        .create_factor(&factor(&shop, "f3", "u2", now))
        .await
        .unwrap();
    assert_eq!(
        store.factors(&shop, "u1").await.unwrap(),
        [phone.clone(), tablet.clone()]
    );
    assert!(store.factors(&blog, "u1").await.unwrap().is_empty());

    // A code's step is accepted through a live challenge of its factor
    // only; then the factor is verified and remembers the step, and the
    // challenge is used up.
    store
        .create_challenge(&challenge(&shop, "c1", &phone, now))
        .await
        .unwrap();
    assert_eq!(
        store.challenge(&shop, "c1", now + 1, 5).await.unwrap(),
        Some(challenge(&shop, "c1", &phone, now))
    );
    assert_eq!(
        store.challenge(&blog, "c1", now + 1, 5).await.unwrap(),
        None
    );
    assert_eq!(
        store
            .use_totp_step(&shop, "f2", "c1", 100, now + 1, 5)
            .await
            .unwrap(),
        StepUse::NoChallenge,
        "a challenge of another factor"
    );
    assert_eq!(
        store
            .use_totp_step(&blog, "f1", "c1", 100, now + 1, 5)
            .await
            .unwrap(),
        StepUse::NoChallenge
    );
    let StepUse::Used(used) = store
        .use_totp_step(&shop, "f1", "c1", 100, now + 2, 5)
        .await
        .unwrap()
    else {
        panic!("a fresh step was refused");
    };
    assert_eq!(used.status, FactorStatus::Verified);
    assert_eq!(used.last_used_step, Some(100));
    assert_eq!(used.updated_at, now + 2);
    assert_eq!(store.factors(&shop, "u1").await.unwrap()[0], used);
    assert_eq!(
        store.challenge(&shop, "c1", now + 3, 5).await.unwrap(),
        None
    );
    assert_eq!(
        store
            .use_totp_step(&shop, "f1", "c1", 101, now + 3, 5)
            .await
            .unwrap(),
        StepUse::NoChallenge,
        "a challenge is used once"
    );

    // No step is accepted twice, nor an earlier one; each such try is a
    // failure of its challenge. A later step is accepted.
    store
        .create_challenge(&challenge(&shop, "c2", &phone, now + 10))
        .await
        .unwrap();
    for replayed in [100, 99] {
        assert_eq!(
            store
                .use_totp_step(&shop, "f1", "c2", replayed, now + 11, 5)
                .await
                .unwrap(),
            StepUse::Replayed
        );
    }
    assert!(
        store
            .challenge(&shop, "c2", now + 11, 5)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        store.challenge(&shop, "c2", now + 11, 2).await.unwrap(),
        None,
        "two failures count against a limit of two"
    );
    assert!(matches!(
        store.use_totp_step(&shop, "f1", "c2", 101, now + 12, 5).await.unwrap(),
        StepUse::Used(factor) if factor.last_used_step == Some(101)
    ));

    // Wrong codes: at the limit, the challenge is dead, even for a good
    // step, which stays unused.
    store
        .create_challenge(&challenge(&shop, "c3", &phone, now + 20))
        .await
        .unwrap();
    for _ in 0..4 {
        assert!(
            store
                .fail_challenge(&shop, "c3", now + 21, 5)
                .await
                .unwrap()
        );
    }
    assert!(
        store
            .challenge(&shop, "c3", now + 21, 5)
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        store
            .fail_challenge(&shop, "c3", now + 21, 5)
            .await
            .unwrap()
    );
    assert!(
        !store
            .fail_challenge(&shop, "c3", now + 21, 5)
            .await
            .unwrap()
    );
    assert_eq!(
        store.challenge(&shop, "c3", now + 21, 5).await.unwrap(),
        None
    );
    assert_eq!(
        store
            .use_totp_step(&shop, "f1", "c3", 102, now + 22, 5)
            .await
            .unwrap(),
        StepUse::NoChallenge
    );
    assert_eq!(
        store.factors(&shop, "u1").await.unwrap()[0].last_used_step,
        Some(101),
        "a dead challenge uses no step"
    );

    // Expired: neither read nor used; creating a challenge forgets them.
    let expiring = challenge(&shop, "c4", &tablet, now + 30);
    store.create_challenge(&expiring).await.unwrap();
    let after = expiring.expires_at;
    assert_eq!(store.challenge(&shop, "c4", after, 5).await.unwrap(), None);
    assert!(!store.fail_challenge(&shop, "c4", after, 5).await.unwrap());
    assert_eq!(
        store
            .use_totp_step(&shop, "f2", "c4", 500, after, 5)
            .await
            .unwrap(),
        StepUse::NoChallenge
    );
    store
        .create_challenge(&challenge(&shop, "c5", &tablet, after))
        .await
        .unwrap();
    assert_eq!(
        store.challenge(&shop, "c4", now + 31, 5).await.unwrap(),
        None,
        "an expired challenge is gone for good"
    );
    assert_eq!(
        store.factors(&shop, "u1").await.unwrap()[1].status,
        FactorStatus::Unverified
    );

    // Deleting a factor forgets its challenges; only its user's.
    assert!(!store.delete_factor(&shop, "u2", "f2").await.unwrap());
    assert!(!store.delete_factor(&blog, "u1", "f2").await.unwrap());
    assert!(store.delete_factor(&shop, "u1", "f2").await.unwrap());
    assert!(!store.delete_factor(&shop, "u1", "f2").await.unwrap());
    assert_eq!(store.challenge(&shop, "c5", after, 5).await.unwrap(), None);
    assert_eq!(
        store
            .factors(&shop, "u1")
            .await
            .unwrap()
            .into_iter()
            .map(|factor| factor.id)
            .collect::<Vec<_>>(),
        ["f1"]
    );

    // Deleting a user forgets its factors and their challenges.
    store
        .create_challenge(&challenge(&shop, "c6", &phone, after))
        .await
        .unwrap();
    store
        .delete_user(&shop, "u1", after)
        .await
        .unwrap()
        .unwrap();
    assert!(store.factors(&shop, "u1").await.unwrap().is_empty());
    assert_eq!(
        store.challenge(&shop, "c6", after + 1, 5).await.unwrap(),
        None
    );
    assert_eq!(store.factors(&shop, "u2").await.unwrap().len(), 1);
    // A user made again with the same id starts with no factor.
    store
        .create_user(&user(&shop, "u1", Some("u1@example.com")))
        .await
        .unwrap();
    assert!(store.factors(&shop, "u1").await.unwrap().is_empty());
}

/// Concurrent uses of one step through two challenges: one wins.
pub async fn one_step_wins_once_contract<S: AccountStore + ProjectStore>(store: std::sync::Arc<S>) {
    let shop = ProjectId::new("shop").unwrap();
    store.create_project(&shop).await.unwrap();
    store
        .create_user(&user(&shop, "u1", Some("u1@example.com")))
        .await
        .unwrap();
    let phone = factor(&shop, "f1", "u1", 1);
    store.create_factor(&phone).await.unwrap();
    for round in 0..10i64 {
        let mut tasks = Vec::new();
        for n in 0..4 {
            let id = format!("c{round}-{n}");
            store
                .create_challenge(&challenge(&shop, &id, &phone, 10))
                .await
                .unwrap();
            let (store, shop) = (store.clone(), shop.clone());
            tasks.push(tokio::spawn(async move {
                store
                    .use_totp_step(&shop, "f1", &id, 1000 + round, 20, 5)
                    .await
                    .unwrap()
            }));
        }
        let mut used = 0;
        for task in tasks {
            match task.await.unwrap() {
                StepUse::Used(_) => used += 1,
                StepUse::Replayed => {}
                StepUse::NoChallenge => panic!("a live challenge was not found"),
            }
        }
        assert_eq!(used, 1, "round {round}: one use of a step wins");
    }
}

/// Login tickets: bound to their project, used once, dead at expiry.
pub async fn login_tickets_contract<S: AccountStore + ProjectStore>(store: &S) {
    let shop = ProjectId::new("shop").unwrap();
    let blog = ProjectId::new("blog").unwrap();
    store.create_project(&shop).await.unwrap();
    store.create_project(&blog).await.unwrap();
    let now = 5_000;
    let ticket = |n: u8, user_id: &str, at: i64| LoginTicket {
        project: shop.clone(),
        hash: [n; 32],
        user_id: user_id.to_owned(),
        created_at: at,
        expires_at: at + 300_000,
    };
    store.put_login_ticket(&ticket(1, "u1", now)).await.unwrap();
    store.put_login_ticket(&ticket(2, "u1", now)).await.unwrap();
    assert_eq!(
        store
            .use_login_ticket(&blog, &[1; 32], now + 1)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .use_login_ticket(&shop, &[9; 32], now + 1)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .use_login_ticket(&shop, &[1; 32], now + 1)
            .await
            .unwrap(),
        Some(ticket(1, "u1", now))
    );
    assert_eq!(
        store
            .use_login_ticket(&shop, &[1; 32], now + 2)
            .await
            .unwrap(),
        None,
        "a ticket is used once"
    );
    assert_eq!(
        store
            .use_login_ticket(&shop, &[2; 32], now + 2)
            .await
            .unwrap(),
        Some(ticket(2, "u1", now)),
        "two tickets of one user are each good"
    );
    // Expired: not used; putting a ticket forgets them.
    let expiring = ticket(3, "u2", now);
    store.put_login_ticket(&expiring).await.unwrap();
    assert_eq!(
        store
            .use_login_ticket(&shop, &[3; 32], expiring.expires_at)
            .await
            .unwrap(),
        None
    );
    store
        .put_login_ticket(&ticket(4, "u2", expiring.expires_at))
        .await
        .unwrap();
    assert_eq!(
        store
            .use_login_ticket(&shop, &[3; 32], now + 3)
            .await
            .unwrap(),
        None,
        "an expired ticket is gone for good"
    );
    // Deleting a user forgets its tickets.
    store
        .create_user(&user(&shop, "u2", Some("u2@example.com")))
        .await
        .unwrap();
    store
        .delete_user(&shop, "u2", now + 4)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        store
            .use_login_ticket(&shop, &[4; 32], now + 5)
            .await
            .unwrap(),
        None
    );
}

/// A refresh token added to a live session turns like its first one.
pub async fn added_refresh_tokens_contract<S: AccountStore + ProjectStore>(store: &S) {
    let shop = ProjectId::new("shop").unwrap();
    store.create_project(&shop).await.unwrap();
    store
        .create_user(&user(&shop, "u1", Some("u1@example.com")))
        .await
        .unwrap();
    store
        .create_session(&session(&shop, "s1", "u1", 100), &token(1))
        .await
        .unwrap();
    assert!(store.set_session_aal(&shop, "s1", 2).await.unwrap());
    assert!(
        store
            .add_refresh_token(&shop, "s1", &token(2), 110)
            .await
            .unwrap()
    );
    assert!(
        !store
            .add_refresh_token(&shop, "nobody", &token(3), 110)
            .await
            .unwrap()
    );
    let Refreshed::Rotated(turned) = store
        .refresh(&shop, &token(2), &token(4), 120, 10)
        .await
        .unwrap()
    else {
        panic!("the added token did not turn");
    };
    assert_eq!((turned.id.as_str(), turned.aal), ("s1", 2), "aal2 stays");
    store
        .end_sessions(&shop, "u1", Ending::All, 130)
        .await
        .unwrap();
    assert!(
        !store
            .add_refresh_token(&shop, "s1", &token(5), 140)
            .await
            .unwrap(),
        "an ended session takes no token"
    );
    assert_eq!(
        store
            .refresh(&shop, &token(1), &token(6), 141, 10)
            .await
            .unwrap(),
        Refreshed::Refused
    );
}

fn linked(
    project: &ProjectId,
    id: &str,
    user_id: &str,
    issuer: &str,
    subject: &str,
) -> LinkedIdentity {
    LinkedIdentity {
        project: project.clone(),
        id: id.to_owned(),
        user_id: user_id.to_owned(),
        provider: "corp".to_owned(),
        issuer: issuer.to_owned(),
        subject: subject.to_owned(),
        email: Some(format!("{subject}@corp.example")),
        data: serde_json::json!({"sub": subject, "name": "Ann"}),
        created_at: 20,
        updated_at: 20,
        last_sign_in_at: Some(20),
    }
}

/// Linked identities: one user per issuer and subject in a project, made
/// with their user in one transaction, listed, updated, gone with it.
pub async fn linked_identities_contract<S: AccountStore + ProjectStore>(store: &S) {
    let shop = ProjectId::new("shop").unwrap();
    let blog = ProjectId::new("blog").unwrap();
    store.create_project(&shop).await.unwrap();
    store.create_project(&blog).await.unwrap();
    let issuer = "https://idp.example";
    let ann = user(&shop, "u1", Some("ann@example.com"));
    let ann_at_idp = linked(&shop, "i1", "u1", issuer, "s1");
    assert!(
        store
            .create_user_with_identity(&ann, &ann_at_idp)
            .await
            .unwrap()
    );
    assert_eq!(store.user(&shop, "u1").await.unwrap(), Some(ann.clone()));
    assert_eq!(
        store.linked_identity(&shop, issuer, "s1").await.unwrap(),
        Some(ann_at_idp.clone())
    );
    assert_eq!(
        store.linked_identity(&blog, issuer, "s1").await.unwrap(),
        None,
        "an identity belongs to its project"
    );
    assert_eq!(
        store
            .linked_identity(&shop, "https://other.example", "s1")
            .await
            .unwrap(),
        None,
        "a subject is of its issuer"
    );
    // The same issuer and subject again: refused, and no user is made.
    let bob = user(&shop, "u2", Some("bob@example.com"));
    assert!(
        !store
            .create_user_with_identity(&bob, &linked(&shop, "i2", "u2", issuer, "s1"))
            .await
            .unwrap()
    );
    assert_eq!(store.user(&shop, "u2").await.unwrap(), None);
    // A taken email: refused, and no identity is made.
    let taken = user(&shop, "u3", Some("ann@example.com"));
    assert!(matches!(
        store
            .create_user_with_identity(&taken, &linked(&shop, "i3", "u3", issuer, "s3"))
            .await,
        Err(StoreError::EmailTaken)
    ));
    assert_eq!(
        store.linked_identity(&shop, issuer, "s3").await.unwrap(),
        None
    );
    assert_eq!(store.user(&shop, "u3").await.unwrap(), None);
    // The same subject in another project, and another subject: each its own user.
    assert!(
        store
            .create_user_with_identity(
                &user(&blog, "u1", None),
                &linked(&blog, "i1", "u1", issuer, "s1")
            )
            .await
            .unwrap()
    );
    assert!(
        store
            .create_user_with_identity(&bob, &linked(&shop, "i2", "u2", issuer, "s2"))
            .await
            .unwrap()
    );
    assert_eq!(
        store.linked_identities(&shop, "u1").await.unwrap(),
        vec![ann_at_idp.clone()]
    );
    // Updated: email, data and times.
    let mut seen_again = ann_at_idp.clone();
    seen_again.email = Some("ann@new.example".to_owned());
    seen_again.data = serde_json::json!({"sub": "s1", "name": "Ann B."});
    seen_again.updated_at = 30;
    seen_again.last_sign_in_at = Some(30);
    assert!(store.update_linked_identity(&seen_again).await.unwrap());
    assert_eq!(
        store.linked_identity(&shop, issuer, "s1").await.unwrap(),
        Some(seen_again.clone())
    );
    let mut nobody = seen_again.clone();
    nobody.id = "i9".to_owned();
    assert!(!store.update_linked_identity(&nobody).await.unwrap());
    // Linked to an existing user: a second identity of it; a pair linked
    // already (to it or another) is refused.
    let bob_at_other = linked(&shop, "i5", "u2", "https://other.example", "s5");
    assert!(store.create_linked_identity(&bob_at_other).await.unwrap());
    assert!(
        !store
            .create_linked_identity(&linked(&shop, "i6", "u2", issuer, "s1"))
            .await
            .unwrap(),
        "ann's pair is hers"
    );
    assert!(
        !store
            .create_linked_identity(&linked(&shop, "i7", "u2", "https://other.example", "s5"))
            .await
            .unwrap()
    );
    let bobs: Vec<String> = store
        .linked_identities(&shop, "u2")
        .await
        .unwrap()
        .into_iter()
        .map(|identity| identity.id)
        .collect();
    assert_eq!(bobs, ["i2", "i5"]);
    // Unlinked: by its user only, once.
    assert!(
        !store
            .delete_linked_identity(&shop, "u1", "i5")
            .await
            .unwrap()
    );
    assert!(
        store
            .delete_linked_identity(&shop, "u2", "i5")
            .await
            .unwrap()
    );
    assert!(
        !store
            .delete_linked_identity(&shop, "u2", "i5")
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .linked_identity(&shop, "https://other.example", "s5")
            .await
            .unwrap(),
        None
    );
    // Deleting the user forgets its identities; the pair is free again.
    store.delete_user(&shop, "u1", 40).await.unwrap().unwrap();
    assert_eq!(
        store.linked_identity(&shop, issuer, "s1").await.unwrap(),
        None
    );
    assert!(
        store
            .linked_identities(&shop, "u1")
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .linked_identity(&blog, issuer, "s1")
            .await
            .unwrap()
            .is_some(),
        "another project's identity stays"
    );
    assert!(
        store
            .create_user_with_identity(
                &user(&shop, "u4", None),
                &linked(&shop, "i4", "u4", issuer, "s1")
            )
            .await
            .unwrap()
    );
}

/// Pending flows: bound to their project and kind, taken once, dead at
/// expiry.
pub async fn pending_flows_contract<S: AccountStore + ProjectStore>(store: &S) {
    let shop = ProjectId::new("shop").unwrap();
    let blog = ProjectId::new("blog").unwrap();
    store.create_project(&shop).await.unwrap();
    store.create_project(&blog).await.unwrap();
    let now = 5_000;
    let flow = |n: u8, kind: PendingKind, at: i64| PendingFlow {
        project: shop.clone(),
        kind,
        hash: [n; 32],
        data: serde_json::json!({"n": n, "redirect_to": "https://app.example/done"}),
        created_at: at,
        expires_at: at + 600_000,
    };
    store
        .put_pending_flow(&flow(1, PendingKind::ProviderState, now))
        .await
        .unwrap();
    store
        .put_pending_flow(&flow(2, PendingKind::AuthCode, now))
        .await
        .unwrap();
    let take = |project: &ProjectId, kind, n: u8, at| {
        let project = project.clone();
        async move {
            store
                .take_pending_flow(&project, kind, &[n; 32], at)
                .await
                .unwrap()
        }
    };
    assert_eq!(
        take(&blog, PendingKind::ProviderState, 1, now + 1).await,
        None
    );
    assert_eq!(
        take(&shop, PendingKind::AuthCode, 1, now + 1).await,
        None,
        "a flow is taken only as its kind"
    );
    assert_eq!(
        take(&shop, PendingKind::ProviderState, 1, now + 1).await,
        Some(flow(1, PendingKind::ProviderState, now))
    );
    assert_eq!(
        take(&shop, PendingKind::ProviderState, 1, now + 2).await,
        None,
        "a flow is taken once"
    );
    // Expired: never given; putting a flow forgets them.
    let expires_at = flow(2, PendingKind::AuthCode, now).expires_at;
    assert_eq!(
        take(&shop, PendingKind::AuthCode, 2, expires_at).await,
        None
    );
    store
        .put_pending_flow(&flow(3, PendingKind::AuthCode, expires_at))
        .await
        .unwrap();
    assert_eq!(
        take(&shop, PendingKind::AuthCode, 2, now + 3).await,
        None,
        "an expired flow is gone for good"
    );
    assert_eq!(
        take(&shop, PendingKind::AuthCode, 3, expires_at + 1).await,
        Some(flow(3, PendingKind::AuthCode, expires_at))
    );
}
