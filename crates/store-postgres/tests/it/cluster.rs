//! What is PostgreSQL's own: several nodes on one database.
use super::Database;

#[tokio::test]
async fn nodes_starting_together_migrate_the_schema_once() {
    let database = Database::new().await;
    let (first, second, third) = tokio::join!(database.store(), database.store(), database.store());
    drop((first, second, third));
    let (client, connection) = tokio_postgres::connect(&database.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let rows = client.query("SELECT version FROM wok_schema", &[]).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, i64>(0), i64::from(store_postgres::SCHEMA_VERSION));
}
