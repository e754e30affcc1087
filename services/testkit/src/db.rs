//! A database that exists for one test (or one bench measurement): a new
//! Postgres database, dropped again when the value is dropped, or a SQLite
//! file in a temporary directory, removed with it.

use anyhow::Context as _;
use sqlx::Connection as _;

/// The Postgres server tests create their databases on, unless
/// `TESTRUNNER_TEST_POSTGRES` names another (a URL of a database the user
/// may connect to and create databases from).
pub const DEFAULT_POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/postgres";
/// Prefix of every database the tests create (`.ci/run` drops leftovers of
/// runs that were killed before they could drop their own).
pub const TEST_DB_PREFIX: &str = "trtest_";

/// `TESTRUNNER_TEST_POSTGRES`, else [`DEFAULT_POSTGRES`].
pub fn postgres_admin_url() -> String {
    std::env::var("TESTRUNNER_TEST_POSTGRES").unwrap_or_else(|_| DEFAULT_POSTGRES.to_owned())
}

/// Which store a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// A fresh, empty database. Dropping it removes it: the SQLite file's
/// directory, or the Postgres database (`DROP DATABASE ... WITH (FORCE)`,
/// so connections a coordinator still holds do not keep it alive).
#[derive(Debug)]
pub struct TestDb {
    /// What a coordinator's `--database-url` takes.
    pub url: String,
    owned: Owned,
}

#[derive(Debug)]
enum Owned {
    /// Removed (with the SQLite file and its -wal/-shm) on drop.
    Sqlite {
        _dir: tempfile::TempDir,
    },
    Postgres {
        admin: String,
        name: String,
    },
}

impl TestDb {
    /// A new database for a test, named `trtest_<uuid>` on Postgres.
    pub async fn new(backend: Backend) -> anyhow::Result<Self> {
        Self::create(backend, &postgres_admin_url(), TEST_DB_PREFIX).await
    }

    /// A new database named `<prefix><uuid>` on the Postgres server of
    /// `admin` (a URL whose user may create databases), or a SQLite file in
    /// a temporary directory whose name starts with `prefix`. `prefix` is
    /// lower-case letters and `_`.
    pub async fn create(backend: Backend, admin: &str, prefix: &str) -> anyhow::Result<Self> {
        anyhow::ensure!(
            prefix.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
            "database prefix {prefix:?}: only a-z and _"
        );
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::Builder::new().prefix(prefix).tempdir()?;
                let url = format!("sqlite://{}", dir.path().join("testrunner.db").display());
                Ok(Self {
                    url,
                    owned: Owned::Sqlite { _dir: dir },
                })
            }
            Backend::Postgres => {
                let name = format!("{prefix}{}", uuid::Uuid::new_v4().simple());
                let mut conn = sqlx::PgConnection::connect(admin).await.with_context(|| {
                    format!(
                        "connecting to {admin} (is Postgres running? TESTRUNNER_TEST_POSTGRES \
                         names another server)"
                    )
                })?;
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut conn)
                    .await
                    .with_context(|| format!("creating database {name}"))?;
                let _ = conn.close().await;
                let base = admin.rsplit_once('/').map_or(admin, |(base, _)| base);
                Ok(Self {
                    url: format!("{base}/{name}"),
                    owned: Owned::Postgres {
                        admin: admin.to_owned(),
                        name,
                    },
                })
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Owned::Postgres { admin, name } = &self.owned else {
            return;
        };
        // Drop runs inside the test's async runtime, which cannot be
        // blocked on from here: drop the database from a thread with a
        // runtime of its own, and wait for it, so that it is gone before
        // the test process exits.
        let (admin, name) = (admin.clone(), name.clone());
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(drop_database(&admin, &name))
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(err)) => eprintln!("warning: test database {} not dropped: {err:#}", self.url),
            Err(_) => eprintln!("warning: test database {} not dropped", self.url),
        }
    }
}

async fn drop_database(admin: &str, name: &str) -> anyhow::Result<()> {
    let mut conn = sqlx::PgConnection::connect(admin).await?;
    let statement = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
    sqlx::query(sqlx::AssertSqlSafe(statement))
        .execute(&mut conn)
        .await?;
    let _ = conn.close().await;
    Ok(())
}
