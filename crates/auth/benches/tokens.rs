//! What accounts cost per request, in microseconds: signing an access
//! token, verifying one (first sight, then from the cache), folding a
//! `list` rule into a filter, evaluating a `read` rule on a document, and
//! an argon2id hash. `cargo bench -p auth --bench tokens` (a plain timing
//! loop: medians of several rounds, so a busy machine shows as spread).
use auth::Accounts;
use auth::rules::{Operation, Resource, RuleSet, RuleSource};
use domain::ProjectId;
use std::sync::Arc;
use std::time::Instant;
use store::ProjectStore;

const ROUNDS: usize = 7;

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// Microseconds per call of `work` (called `n` times a round).
fn time(label: &str, n: usize, mut work: impl FnMut(usize)) {
    let mut rounds = Vec::with_capacity(ROUNDS);
    for round in 0..ROUNDS {
        let started = Instant::now();
        for i in 0..n {
            work(round * n + i);
        }
        rounds.push(started.elapsed().as_secs_f64() * 1e6 / n as f64);
    }
    let (low, high) = (
        rounds.iter().copied().fold(f64::MAX, f64::min),
        rounds.iter().copied().fold(0.0, f64::max),
    );
    println!(
        "{label:<48} {:>9.2} µs  (rounds {low:.2}–{high:.2})",
        median(rounds)
    );
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(store_sqlite::SqliteStore::open(&dir.path().join("wok.db")).unwrap());
    let project = ProjectId::new("shop").unwrap();
    runtime.block_on(store.create_project(&project)).unwrap();
    let now = domain::now_millis();
    let accounts = runtime
        .block_on(Accounts::open(store, [1; 32], now))
        .unwrap();
    let issued = runtime
        .block_on(accounts.sign_up(
            &project,
            "ann@example.com",
            "a long passphrase",
            Default::default(),
            now,
        ))
        .unwrap();
    let refresh = issued.refresh_token.clone();

    // Tokens to verify once each: refreshes of one session.
    const TOKENS: usize = 300;
    let mut tokens = Vec::with_capacity(TOKENS * ROUNDS);
    let mut refresh_token = refresh;
    let started = Instant::now();
    for _ in 0..TOKENS * ROUNDS {
        let turned = runtime
            .block_on(accounts.refresh(&project, &refresh_token, now))
            .unwrap();
        refresh_token = turned.refresh_token.clone();
        tokens.push(turned.access_token);
    }
    println!(
        "{:<48} {:>9.2} µs  (one refresh: a transaction and a signature)",
        "refresh (SQLite)",
        started.elapsed().as_secs_f64() * 1e6 / tokens.len() as f64
    );
    time("verify an access token, first sight (ES256)", TOKENS, |i| {
        accounts.verify(&tokens[i], now).unwrap();
    });
    time("verify an access token, cached", 100_000, |_| {
        accounts.verify(&issued.access_token, now).unwrap();
    });

    let rules = RuleSet::compile(RuleSource {
        read: Some(
            "resource.data.visibility == 'public' || resource.data.owner == auth.uid".to_owned(),
        ),
        list: Some(
            "resource.data.visibility == 'public' || resource.data.owner == auth.uid".to_owned(),
        ),
        ..RuleSource::default()
    })
    .unwrap();
    let identity = accounts.verify(&issued.access_token, now).unwrap();
    let subject = auth::subject(&auth::Caller::User(identity.clone()));
    time("fold a list rule into a query filter", 20_000, |_| {
        std::hint::black_box(rules.list_filter(&subject, now));
    });
    let data = serde_json::json!({
        "owner": identity.user_id, "visibility": "private", "created": 12, "title": "a note",
    });
    let data = data.as_object().unwrap();
    let document = Resource {
        id: "n1",
        data,
        version: 3,
    };
    time("evaluate a read rule on a document", 20_000, |_| {
        assert!(rules.allows(Operation::Read, &subject, Some(document), None, now));
    });
    time("argon2id hash (19 MiB, t=2)", 10, |_| {
        use argon2::password_hash::PasswordHasher;
        std::hint::black_box(
            argon2::Argon2::default()
                .hash_password(b"a long passphrase")
                .unwrap(),
        );
    });
}
