//! Logging to stdout with `tracing`; the level comes from `RUST_LOG`.

use tracing::level_filters::LevelFilter;

/// Parses `RUST_LOG` as one of `off`, `error`, `warn`, `info`, `debug`, `trace`.
pub fn parse_level(value: &str) -> Option<LevelFilter> {
    value.trim().parse().ok()
}

/// Installs the subscriber. An unreadable `RUST_LOG` falls back to `info` and says so.
pub fn init(rust_log: Option<&str>) {
    let parsed = rust_log.map(|value| (value, parse_level(value)));
    let level = match parsed {
        Some((_, Some(level))) => level,
        _ => LevelFilter::INFO,
    };
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_writer(std::io::stdout)
        .init();
    if let Some((value, None)) = parsed {
        tracing::warn!(
            rust_log = value,
            "RUST_LOG is not one of off, error, warn, info, debug, trace; logging at info"
        );
    }
}

/// Displays an error followed by its causes. tokio-postgres and hyper keep the useful part
/// (the server's message, the I/O error) in `source()`, which `Display` alone leaves out.
pub struct Chain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_levels_only() {
        assert_eq!(parse_level("off"), Some(LevelFilter::OFF));
        assert_eq!(parse_level("DEBUG"), Some(LevelFilter::DEBUG));
        assert_eq!(parse_level(" trace "), Some(LevelFilter::TRACE));
        assert_eq!(parse_level("loud"), None);
    }
}
