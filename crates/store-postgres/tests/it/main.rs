//! The PostgreSQL backend: the contract suite every backend passes, on a
//! real PostgreSQL cluster (`scripts/start-postgres.sh` starts it once per
//! test run; each test gets a database of its own), then what is
//! PostgreSQL's own: migrations by several nodes at once, commit order of
//! events, wake-ups across nodes.
use std::sync::OnceLock;
use store_postgres::{PgOptions, PgStore};

mod cluster;

/// The admin URL of the test cluster, started once per test run.
fn server() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../scripts/start-postgres.sh");
        #[allow(clippy::disallowed_methods)] // tests start their database
        let output = std::process::Command::new("bash")
            .arg(script)
            .output()
            .expect("running scripts/start-postgres.sh");
        assert!(
            output.status.success(),
            "scripts/start-postgres.sh failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    })
}

/// A database of its own for one test, dropped when the guard is.
pub struct Database {
    pub url: String,
    name: String,
}

impl Database {
    pub async fn new() -> Self {
        let admin = server();
        let name = format!("wok_test_{}", uuid::Uuid::now_v7().simple());
        let (client, connection) = tokio_postgres::connect(admin, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        let url = admin.rsplit_once('/').unwrap().0.to_owned() + "/" + &name;
        Self { url, name }
    }

    pub async fn store(&self) -> PgStore {
        PgStore::connect(&PgOptions::new(&self.url)).await.unwrap()
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        // On a thread of its own: the test's runtime may be ending.
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                if let Ok((client, connection)) =
                    tokio_postgres::connect(server(), tokio_postgres::NoTls).await
                {
                    tokio::spawn(connection);
                    let _ = client
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                }
            });
        })
        .join();
    }
}

async fn fresh() -> (Database, PgStore) {
    let database = Database::new().await;
    let store = database.store().await;
    (database, store)
}

store::contract_tests!(fresh());
