//! Command-line options of the `klingwatch-mock` binary (also embedded by `klingwatch mock`)
//! and the `run` entry point: start, print the URL line, wait for SIGINT/SIGTERM, stop.

use std::io::{self, Write};
use std::path::PathBuf;
use std::time::Duration;

use crate::config::{Account, FileConfig, MockConfig};
use crate::server::MockServer;

/// Options of the emulator. Precedence: flags > `--config` file > defaults. When no account
/// and no API key is configured anywhere, the documented test account
/// (`klingwatch-test-ak` / `klingwatch-test-sk`) and API key (`klingwatch-test-api-key`) apply.
#[derive(Debug, Clone, Default, clap::Parser)]
#[command(
    name = "klingwatch-mock",
    version,
    about = "A faithful emulator of the Kling AI HTTP API"
)]
pub struct MockArgs {
    /// Interface to bind [default: 127.0.0.1]
    #[arg(long)]
    pub host: Option<String>,
    /// Port to bind; 0 picks a free port [default: 0]
    #[arg(long)]
    pub port: Option<u16>,
    /// Serve HTTPS with a certificate generated at start (for localhost and 127.0.0.1)
    #[arg(long)]
    pub tls: bool,
    /// With --tls, write the CA certificate PEM that clients must trust to this path
    #[arg(long, value_name = "PATH")]
    pub ca_out: Option<PathBuf>,
    /// AccessKey of an account (repeatable; pair each with a --secret-key)
    #[arg(long = "access-key", value_name = "AK", env = "KLING_MOCK_ACCESS_KEY")]
    pub access_key: Vec<String>,
    /// SecretKey of an account (repeatable; in the same order as --access-key)
    #[arg(
        long = "secret-key",
        value_name = "SK",
        env = "KLING_MOCK_SECRET_KEY",
        hide_env_values = true
    )]
    pub secret_key: Vec<String>,
    /// An accepted API key (repeatable)
    #[arg(
        long = "api-key",
        value_name = "KEY",
        env = "KLING_MOCK_API_KEY",
        hide_env_values = true
    )]
    pub api_key: Vec<String>,
    /// JSON configuration file (fields: host, port, tls, ca_pem_path, accounts
    /// [{access_key, secret_key}], api_keys, processing_after_ms, finish_after_ms, time_scale,
    /// concurrency_limit, webhook_secret, seed, faults)
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Multiplier of lifecycle durations (0.01 = 100x faster) [default: 1]
    #[arg(long)]
    pub time_scale: Option<f64>,
    /// Milliseconds from create to `processing` (before scaling) [default: 1000]
    #[arg(long)]
    pub processing_after_ms: Option<u64>,
    /// Milliseconds from create to the terminal status (before scaling) [default: 4000]
    #[arg(long)]
    pub finish_after_ms: Option<u64>,
    /// Running tasks per account before create answers 429/1303 [default: 100]
    #[arg(long)]
    pub concurrency_limit: Option<usize>,
    /// Standard Webhooks secret (`whsec_...`): sign callbacks
    #[arg(long, env = "KLING_MOCK_WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<String>,
    /// Seed of the deterministic generators (task ids, fault probabilities) [default: 0]
    #[arg(long)]
    pub seed: Option<u64>,
    /// Worker threads of the emulator's runtime [default: one per core]. One worker costs
    /// the least CPU per request when clients share the machine's cores (no hand-offs
    /// between workers); more serve more connections at once on a machine to itself.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub worker_threads: Option<u16>,
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg.into())
}

impl MockArgs {
    /// The builder of the multi-thread tokio runtime the emulator runs on, with
    /// `--worker-threads` workers (one per core without it); nothing else is set, so a host
    /// of the emulator (the `klingwatch mock` command) adds what it needs.
    pub fn runtime_builder(&self) -> tokio::runtime::Builder {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        if let Some(n) = self.worker_threads {
            b.worker_threads(usize::from(n));
        }
        b
    }

    /// The runtime of [`runtime_builder`](Self::runtime_builder), with I/O and timers.
    pub fn runtime(&self) -> io::Result<tokio::runtime::Runtime> {
        self.runtime_builder().enable_all().build()
    }

    /// Resolve the options (reading `--config` if given) into a [`MockConfig`].
    pub fn into_config(self) -> io::Result<MockConfig> {
        let file: FileConfig = match &self.config {
            None => FileConfig::default(),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    io::Error::new(e.kind(), format!("cannot read {}: {e}", path.display()))
                })?;
                serde_json::from_str(&text)
                    .map_err(|e| invalid(format!("invalid config file {}: {e}", path.display())))?
            }
        };
        let mut c = MockConfig::default();
        if self.access_key.len() != self.secret_key.len() {
            return Err(invalid(format!(
                "{} --access-key but {} --secret-key: give them in pairs",
                self.access_key.len(),
                self.secret_key.len()
            )));
        }
        let mut accounts = file.accounts.unwrap_or_default();
        accounts.extend(
            self.access_key
                .into_iter()
                .zip(self.secret_key)
                .map(|(a, s)| Account::new(a, s)),
        );
        let mut api_keys = file.api_keys.unwrap_or_default();
        api_keys.extend(self.api_key);
        if !accounts.is_empty() || !api_keys.is_empty() {
            c.accounts = accounts;
            c.api_keys = api_keys;
        }
        if let Some(h) = self.host.or(file.host) {
            c.host = h;
        }
        if let Some(p) = self.port.or(file.port) {
            c.port = p;
        }
        c.tls = self.tls || file.tls.unwrap_or(false);
        c.ca_pem_path = self.ca_out.or(file.ca_pem_path);
        if let Some(v) = self.processing_after_ms.or(file.processing_after_ms) {
            c.timing.processing_after = Duration::from_millis(v);
        }
        if let Some(v) = self.finish_after_ms.or(file.finish_after_ms) {
            c.timing.finish_after = Duration::from_millis(v);
        }
        if let Some(v) = self.time_scale.or(file.time_scale) {
            if !v.is_finite() || v < 0.0 {
                return Err(invalid("time scale must be a finite number >= 0"));
            }
            c.timing.time_scale = v;
        }
        if let Some(v) = self.concurrency_limit.or(file.concurrency_limit) {
            c.concurrency_limit = v;
        }
        c.webhook_secret = self.webhook_secret.or(file.webhook_secret);
        if let Some(s) = self.seed.or(file.seed) {
            c.seed = s;
        }
        c.faults = file.faults.unwrap_or_default();
        Ok(c)
    }
}

/// Install a stderr tracing subscriber (`RUST_LOG`, default `info`) unless one is set already.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .with_ansi(io::stderr().is_terminal())
        .try_init();
}

/// Run the emulator until SIGINT or SIGTERM: prints exactly one line
/// `klingwatch-mock listening on <URL>` to stdout once it accepts connections.
pub async fn run(args: MockArgs) -> io::Result<()> {
    init_tracing();
    let config = args.into_config()?;
    let server = MockServer::start(config).await?;
    // The handlers are installed before the line is printed: a SIGTERM sent as soon as the
    // line is read must stop the server gracefully, not kill the process.
    let shutdown = Shutdown::install();
    {
        let mut out = io::stdout().lock();
        writeln!(out, "klingwatch-mock listening on {}", server.url())?;
        out.flush()?;
    }
    shutdown.recv().await;
    tracing::info!("shutting down");
    server.stop().await;
    Ok(())
}

/// SIGINT and SIGTERM (Ctrl-C elsewhere), registered when made.
struct Shutdown {
    #[cfg(unix)]
    signals: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl Shutdown {
    fn install() -> Shutdown {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let signals = match (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) {
                (Ok(term), Ok(int)) => Some((term, int)),
                _ => None,
            };
            Shutdown { signals }
        }
        #[cfg(not(unix))]
        {
            Shutdown {}
        }
    }

    async fn recv(self) {
        #[cfg(unix)]
        if let Some((mut term, mut int)) = self.signals {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            return;
        }
        let _ = tokio::signal::ctrl_c().await;
    }
}
