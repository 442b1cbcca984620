//! What every benchmark does first: read its knobs from the environment and find a
//! database (`DATABASE_URL`, or a private server started for the run).

use std::str::FromStr;

use partnerstack_mirror::private_postgres::PrivatePostgres;

/// `name` from the environment, or `default` when it is unset or does not parse.
pub fn knob<T: FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The benchmark's PostgreSQL server.
pub struct Database {
    private: Option<PrivatePostgres>,
    pub url: String,
}

impl Database {
    /// `DATABASE_URL` when set, otherwise a private server of the benchmark's own,
    /// reached over its Unix socket.
    pub async fn start() -> anyhow::Result<Database> {
        if let Ok(url) = std::env::var("DATABASE_URL") {
            return Ok(Database { private: None, url });
        }
        let private = PrivatePostgres::start().await?;
        // Over the Unix socket, as a mirror on the database's host should connect.
        let url = private.socket_url();
        Ok(Database { private: Some(private), url })
    }

    /// Stops the private server, if the benchmark started one.
    pub async fn stop(self) -> anyhow::Result<()> {
        if let Some(private) = self.private {
            private.stop().await?;
        }
        Ok(())
    }
}
