//! Logging: pretty on a terminal, JSON lines otherwise (journald, log shippers).

use std::io::IsTerminal;

use tracing_subscriber::{fmt, EnvFilter};

/// `--log-format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Pretty,
    Json,
}

/// Installs the global subscriber. `RUST_LOG` overrides `default_level`.
pub fn init(format: Option<LogFormat>, default_level: &str) {
    let format = format.unwrap_or(if std::io::stderr().is_terminal() { LogFormat::Pretty } else { LogFormat::Json });
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{default_level},sqlx=warn,tokio_cron_scheduler=warn")));
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Pretty => builder.compact().try_init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).try_init(),
    };
    // A second init (tests) keeps the first subscriber.
    drop(result);
}

/// An error and all its sources on one line, for `last_error` columns and the command line.
/// A source whose words its error already ends with (sqlx, PostgreSQL and io errors often
/// repeat their source) is not said twice.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let said = s.to_string();
        if !text.ends_with(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    enum Outer {
        #[error("cannot connect")]
        Connect(#[source] Middle),
    }

    #[derive(Debug, thiserror::Error)]
    #[error("error communicating with database: {0}")]
    struct Middle(#[source] std::io::Error);

    #[test]
    fn an_error_chain_says_each_thing_once() {
        let e = Outer::Connect(Middle(std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "Connection refused")));
        assert_eq!(error_chain(&e), "cannot connect: error communicating with database: Connection refused");
    }
}
