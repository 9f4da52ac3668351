//! `vigil migrate`: creates what the services need and is safe to run again. The database (when
//! missing) and the SQL migrations of `schema/migrations/`; the topics of the v1 contract with
//! the configured partitions, replication, retention and compression.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection};
use vigil_schema::topics;

use crate::config::{Config, KafkaConfig};

pub fn run(config: &Config) -> Result<()> {
    crate::serve::init_logs();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        migrate_postgres(&config.postgres.url).await?;
        if !config.postgres.app_user.is_empty() {
            let postgres = &config.postgres;
            grant_app_user(&postgres.url, &postgres.app_user, &postgres.app_password).await?;
            println!(
                "postgres: {} may use the services' tables",
                postgres.app_user
            );
        }
        create_topics(&config.kafka).await
    })
}

/// Creates (or updates) the login role `user`, with `password` unless empty, as a member of
/// `vigil_app` (the services' privileges, `schema/migrations/0013_app_role.sql`).
pub async fn grant_app_user(url: &str, user: &str, password: &str) -> Result<()> {
    let valid = user.len() <= 63
        && user.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && user
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !valid {
        bail!("postgres.app_user `{user}`: a role name of lowercase letters, digits and `_`");
    }
    let password = match password {
        "" => "NULL".to_owned(),
        p => format!("'{}'", p.replace('\'', "''")),
    };
    let mut connection = url
        .parse::<PgConnectOptions>()
        .context("postgres.url")?
        // The password is in the statements.
        .disable_statement_logging()
        .connect()
        .await
        .context("connecting to postgres")?;
    let statements = [
        format!(
            "DO $$ BEGIN CREATE ROLE {user} LOGIN; \
             EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$"
        ),
        format!("ALTER ROLE {user} LOGIN PASSWORD {password}"),
        format!("GRANT vigil_app TO {user}"),
    ];
    // Roles belong to the whole server: another database's migration may be making the same
    // one at this moment, which Postgres reports as a conflict; the next attempt finds it made.
    for statement in statements {
        let mut attempts = 0;
        while let Err(error) = sqlx::raw_sql(sqlx::AssertSqlSafe(statement.clone()))
            .execute(&mut connection)
            .await
        {
            attempts += 1;
            if attempts == 3 {
                return Err(error).context(format!("granting vigil_app to {user}"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

pub async fn migrate_postgres(url: &str) -> Result<()> {
    let options: PgConnectOptions = url.parse().context("postgres.url")?;
    create_database(&options).await?;
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await
        .context("connecting to postgres")?;
    sqlx::migrate!("../../schema/migrations")
        .run(&pool)
        .await
        .context("running the migrations")?;
    println!("postgres: migrations applied");
    Ok(())
}

/// Drops the database of `url` if it exists (for the demo and the benchmark, which make theirs
/// anew).
pub async fn drop_database(url: &str) -> Result<()> {
    let options: PgConnectOptions = url.parse().context("postgres.url")?;
    let name = options
        .get_database()
        .context("the URL names no database")?
        .to_owned();
    let mut admin = options
        .database("postgres")
        .connect()
        .await
        .context("connecting to postgres")?;
    let drop = sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
        name.replace('"', "\"\"")
    ));
    sqlx::query(drop).execute(&mut admin).await?;
    Ok(())
}

/// Creates the database of `options` when it does not exist, from the server's `postgres`
/// database.
async fn create_database(options: &PgConnectOptions) -> Result<()> {
    let Some(name) = options.get_database().map(str::to_owned) else {
        return Ok(());
    };
    let mut admin = options
        .clone()
        .database("postgres")
        .connect()
        .await
        .context("connecting to postgres")?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&name)
            .fetch_one(&mut admin)
            .await?;
    if !exists {
        let quoted = name.replace('"', "\"\"");
        let create = sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{quoted}\""));
        match sqlx::query(create).execute(&mut admin).await {
            Ok(_) => println!("postgres: created database {name}"),
            // Another migrate created it meanwhile.
            Err(e)
                if e.as_database_error()
                    .and_then(sqlx::error::DatabaseError::code)
                    .as_deref()
                    == Some("42P04") => {}
            Err(e) => return Err(e).context(format!("creating database {name}")),
        }
    }
    admin.close().await?;
    Ok(())
}

pub async fn create_topics(kafka: &KafkaConfig) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = kafka.cluster().client().create()?;
    let metadata = admin
        .inner()
        .fetch_metadata(None, Duration::from_secs(10))
        .with_context(|| format!("reaching the brokers at {}", kafka.brokers))?;
    let existing: Vec<&str> = metadata
        .topics()
        .iter()
        .map(rdkafka::metadata::MetadataTopic::name)
        .collect();
    let retention = (kafka.retention_hours * 3_600_000).to_string();
    let missing: Vec<NewTopic> = topics::ALL
        .iter()
        .filter(|t| !existing.contains(t))
        .map(|t| {
            NewTopic::new(
                t,
                kafka.partitions,
                TopicReplication::Fixed(kafka.replication),
            )
            .set("retention.ms", &retention)
            .set("compression.type", &kafka.compression)
        })
        .collect();
    if missing.is_empty() {
        println!("kafka: topics exist");
        return Ok(());
    }
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in admin.create_topics(&missing, &options).await? {
        match result {
            Ok(topic) => println!("kafka: created {topic}"),
            Err((topic, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {
                println!("kafka: {topic} exists");
            }
            Err((topic, e)) => bail!("creating topic {topic}: {e}"),
        }
    }
    Ok(())
}
