//! `klingwatch`: command-line face of the klingwatch library.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use futures::StreamExt;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use klingwatch::{
    Client, ClientBuilder, Error, ErrorKind, ImageGenerationRequest, Region, Task, TaskKind,
    TaskStatus, TaskUpdate, WatchOptions,
};
use serde_json::{json, Value};

mod mcp;

const AFTER_HELP: &str = "\
Exit codes:
  0    every task succeeded
  1    a task failed
  2    usage or configuration error (config, invalid_request)
  3    authentication, permission_denied or account error
  4    not found
  5    wait timeout
  6    other API or network error
  130  interrupted (Ctrl-C)

Credentials: KLING_ACCESS_KEY + KLING_SECRET_KEY, or KLING_API_KEY.
Try `klingwatch demo` first: it needs no credentials and no network.";

#[derive(Parser, Debug)]
#[command(name = "klingwatch", version, about = "Submit, watch and download Kling AI tasks", after_help = AFTER_HELP)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Debug, Clone)]
struct Global {
    /// Task kind (image_generation, text2video, ...)
    #[arg(long, global = true, default_value = "image_generation")]
    kind: String,
    /// API region: global or china
    #[arg(long, global = true, env = "KLING_REGION")]
    region: Option<String>,
    /// API base URL (overrides --region)
    #[arg(long, global = true, env = "KLING_BASE_URL")]
    base_url: Option<String>,
    /// AccessKey
    #[arg(long, global = true, env = "KLING_ACCESS_KEY", hide_env_values = true)]
    access_key: Option<String>,
    /// SecretKey
    #[arg(long, global = true, env = "KLING_SECRET_KEY", hide_env_values = true)]
    secret_key: Option<String>,
    /// API key (instead of AccessKey/SecretKey)
    #[arg(long, global = true, env = "KLING_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Per-request timeout (e.g. 30s)
    #[arg(long = "request-timeout", global = true, value_parser = parse_duration)]
    request_timeout: Option<Duration>,
    /// Maximum retries of a request
    #[arg(long, global = true)]
    max_retries: Option<u32>,
    /// Less output
    #[arg(long, short, global = true)]
    quiet: bool,
    /// Log to stderr: -v info, -vv debug, -vvv trace (RUST_LOG, when set, wins). Logs never
    /// contain secrets or tokens.
    #[arg(long, short, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
}

/// Logs go to stderr only (stdout carries results, or protocol messages for `mcp`).
pub(crate) fn init_logging(verbose: u8, default: &str) {
    let level = match verbose {
        0 => default,
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| tracing_subscriber::EnvFilter::try_new(v).ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a self-contained demo against an in-process emulator (no credentials, no network)
    Demo {
        /// Where to download results
        #[arg(long, default_value = "./klingwatch-demo-output")]
        dir: PathBuf,
    },
    /// Show the status of tasks
    Status {
        /// Task ids (or use --ids-from)
        #[arg(required_unless_present = "ids_from")]
        ids: Vec<String>,
        /// File of task ids (one per line, `#` comments; `-` for stdin), added to IDS
        #[arg(long, value_name = "FILE")]
        ids_from: Option<String>,
        /// Queries in flight at once
        #[arg(long, default_value_t = klingwatch::batch::DEFAULT_CONCURRENCY as u16,
              value_parser = clap::value_parser!(u16).range(1..=1024))]
        concurrency: u16,
        /// One pretty JSON array
        #[arg(long, conflicts_with = "jsonl")]
        json: bool,
        /// One JSON object per line
        #[arg(long)]
        jsonl: bool,
    },
    /// Wait for tasks to finish, printing each status change
    Wait {
        #[arg(required = true)]
        ids: Vec<String>,
        #[command(flatten)]
        w: WaitArgs,
    },
    /// Like `wait`, for many ids read from a file or stdin (`-`), one per line
    Watch {
        /// File of task ids (one per line; `-` for stdin)
        #[arg(long)]
        ids_from: String,
        #[command(flatten)]
        w: WaitArgs,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    Completions { shell: clap_complete::Shell },
    /// Print a signed JWT for the configured credentials
    Token,
    /// Run the Kling API emulator
    Mock(klingwatch_mock::MockArgs),
    /// List tasks
    List {
        #[arg(long, default_value_t = 1)]
        page: u32,
        #[arg(long, default_value_t = 30)]
        page_size: u32,
        /// Every page
        #[arg(long)]
        all: bool,
        /// Only tasks with this status
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        jsonl: bool,
    },
    /// Submit an image generation task
    Submit {
        #[arg(long)]
        prompt: String,
        #[arg(long)]
        model: Option<String>,
        #[arg(long)]
        n: Option<u32>,
        #[arg(long)]
        aspect_ratio: Option<String>,
        #[arg(long)]
        external_id: Option<String>,
        /// Wait for the task to finish
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        w: WaitArgs,
    },
    /// Serve the task tools to AI agents over stdio (Model Context Protocol)
    ///
    /// Tools: get_task_status, get_task_statuses, wait_for_task, list_tasks, and
    /// create_image_task with --allow-create. stdout carries only protocol messages; logs go
    /// to stderr (RUST_LOG sets the level).
    Mcp {
        /// Also offer create_image_task (it spends credits)
        #[arg(long)]
        allow_create: bool,
        /// Serve against an embedded emulator with sample tasks (no credentials, no network)
        #[arg(long)]
        mock: bool,
    },
    /// Download the results of succeeded tasks
    Download {
        #[arg(required = true)]
        ids: Vec<String>,
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
}

#[derive(Args, Debug, Clone)]
struct WaitArgs {
    /// Overall deadline (e.g. 10m)
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    timeout: Duration,
    /// First poll interval
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    interval: Duration,
    /// One JSON line per status change
    #[arg(long)]
    jsonl: bool,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let v: f64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?} (e.g. 500ms, 1s, 10m)"))?;
    let secs = match unit.trim() {
        "ms" => v / 1000.0,
        "" | "s" => v,
        "m" => v * 60.0,
        "h" => v * 3600.0,
        _ => return Err(format!("invalid duration unit in {s:?} (ms, s, m, h)")),
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("invalid duration {s:?}"));
    }
    Ok(Duration::from_secs_f64(secs))
}

struct Out {
    tty: bool,
    color: bool,
    quiet: bool,
}

impl Out {
    fn new(quiet: bool) -> Out {
        let tty = std::io::stdout().is_terminal();
        let color = tty && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        Out { tty, color, quiet }
    }
    fn paint(&self, s: &str, code: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
    fn status(&self, st: &TaskStatus) -> String {
        let code = match st {
            TaskStatus::Succeed => "32",
            TaskStatus::Failed => "31",
            TaskStatus::Processing => "33",
            _ => "36",
        };
        self.paint(st.as_str(), code)
    }
}

fn exit_code_for(kind: ErrorKind) -> u8 {
    match kind {
        ErrorKind::Config | ErrorKind::InvalidRequest => 2,
        ErrorKind::Authentication | ErrorKind::PermissionDenied | ErrorKind::Account => 3,
        ErrorKind::NotFound => 4,
        ErrorKind::WaitTimeout => 5,
        ErrorKind::TaskFailed => 1,
        ErrorKind::Cancelled => 130,
        _ => 6,
    }
}

fn error_line(e: &Error) -> String {
    let mut s = format!("error: {}", e.kind());
    if let Some(c) = e.kling_code() {
        s.push_str(&format!(" (code {c})"));
    }
    // API errors carry "<kind> (HTTP n, code c): " in their message: keep only the text.
    let mut msg = e.message();
    let prefix = format!("{} (HTTP ", e.kind());
    if msg.starts_with(&prefix) {
        if let Some(i) = msg.find("): ") {
            msg = &msg[i + 3..];
        }
    }
    s.push_str(&format!(": {msg}"));
    if let Some(h) = e.http_status() {
        s.push_str(&format!(" (HTTP {h})"));
    }
    if let Some(r) = e.request_id() {
        s.push_str(&format!(" [request_id {r}]"));
    }
    if matches!(e.kling_code(), Some(1003) | Some(1004)) {
        s.push_str(
            "\nhint: the token was refused as not yet valid / expired: check the machine clock",
        );
    }
    s
}

fn task_json(t: &Task) -> Value {
    json!({
        "id": t.id,
        "kind": t.kind.as_str(),
        "status": t.status.as_str(),
        "status_msg": t.status_msg,
        "external_task_id": t.external_task_id,
        "created_at_ms": t.created_at_ms,
        "updated_at_ms": t.updated_at_ms,
        "urls": t.result_urls().collect::<Vec<_>>(),
    })
}

fn err_json(id: &str, e: &Error) -> Value {
    json!({
        "id": id,
        "error": e.kind().as_str(),
        "code": e.kling_code(),
        "message": e.message(),
        "request_id": e.request_id(),
        "retryable": e.is_retryable(),
    })
}

fn build_client(g: &Global, base_url: Option<String>) -> Result<Client, Error> {
    let mut b: ClientBuilder = Client::builder();
    if let Some(a) = &g.access_key {
        b = b.access_key(a.clone());
    }
    if let Some(s) = &g.secret_key {
        b = b.secret_key(s.clone());
    }
    if let Some(k) = &g.api_key {
        b = b.api_key(k.clone());
    }
    if let Some(r) = &g.region {
        b = b.region(Region::from_str(r)?);
    }
    if let Some(u) = base_url.or_else(|| g.base_url.clone()) {
        b = b.base_url(u);
    }
    if let Some(t) = g.request_timeout {
        b = b.timeout(t);
    }
    if let Some(n) = g.max_retries {
        b = b.max_retries(n);
    }
    b.build()
}

fn parse_kind(g: &Global) -> Result<TaskKind, Error> {
    TaskKind::from_str(&g.kind)
}

/// mimalloc: the per-request allocations of HTTP/2, TLS and JSON cost less CPU than with
/// glibc malloc (docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    klingwatch::install_crypto_provider();
    // The emulator-hosting commands get a worker per core (`mock --worker-threads N`: N,
    // as the emulator's own binary does). The client commands are I/O on one HTTP/2
    // connection: one thread (klingwatch::runtime_threads, default 1) does them with the
    // least CPU.
    let threads = klingwatch::runtime_threads();
    let mut builder = if let Command::Mock(args) = &cli.command {
        args.runtime_builder()
    } else if matches!(
        cli.command,
        Command::Demo { .. } | Command::Mcp { mock: true, .. }
    ) {
        tokio::runtime::Builder::new_multi_thread()
    } else if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(threads);
        b
    };
    let rt = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start runtime: {e}");
            return ExitCode::from(6);
        }
    };
    let code = rt.block_on(async {
        tokio::select! {
            r = run(cli) => match r {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("{}", error_line(&e));
                    exit_code_for(e.kind())
                }
            },
            _ = tokio::signal::ctrl_c() => {
                eprintln!("interrupted");
                130
            }
        }
    });
    rt.shutdown_timeout(Duration::from_millis(200));
    ExitCode::from(code)
}

async fn run(cli: Cli) -> Result<u8, Error> {
    let g = cli.global;
    let default_level = if matches!(cli.command, Command::Mcp { .. }) {
        "info,klingwatch_mock=warn"
    } else {
        "off"
    };
    init_logging(g.verbose, default_level);
    let out = Out::new(g.quiet);
    match cli.command {
        Command::Mock(args) => {
            klingwatch_mock::run(args)
                .await
                .map_err(|e| Error::config(format!("emulator: {e}")))?;
            Ok(0)
        }
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "klingwatch", &mut std::io::stdout());
            Ok(0)
        }
        Command::Demo { dir } => demo(&g, &out, dir).await,
        Command::Mcp { allow_create, mock } => mcp::serve(&g, allow_create, mock).await,
        Command::Token => {
            let client = build_client(&g, None)?;
            println!("{}", client.token()?);
            Ok(0)
        }
        Command::Status {
            mut ids,
            ids_from,
            concurrency,
            json,
            jsonl,
        } => {
            let kind = parse_kind(&g)?;
            if let Some(from) = &ids_from {
                ids.extend(read_ids(from)?);
            }
            let client = build_client(&g, None)?;
            // Each task is reduced to what is printed as soon as it arrives (the full task,
            // raw object included, is not kept until the batch ends).
            let results = client
                .get_many_with(kind, &ids, usize::from(concurrency), |r| {
                    r.map(|t| {
                        let failed = t.status == TaskStatus::Failed;
                        let shown = if json || jsonl {
                            Shown::Json(task_json(&t))
                        } else {
                            Shown::Line(task_line(&out, &t))
                        };
                        (failed, shown)
                    })
                })
                .await;
            // One buffered writer for the whole batch (stdout is line-buffered otherwise:
            // a write per task).
            let stdout = std::io::stdout();
            let mut w = std::io::BufWriter::new(stdout.lock());
            let mut worst: u8 = 0;
            let mut arr = Vec::new();
            for (id, r) in ids.iter().zip(results) {
                match r {
                    Ok((failed, shown)) => {
                        if failed {
                            worst = worst.max(1);
                        }
                        match shown {
                            Shown::Json(v) if json => arr.push(v),
                            Shown::Json(v) => writeln!(w, "{v}").map_err(stdout_error)?,
                            Shown::Line(l) => writeln!(w, "{l}").map_err(stdout_error)?,
                        }
                    }
                    Err(e) => {
                        eprintln!("{} (task {id})", error_line(&e));
                        worst = worst.max(exit_code_for(e.kind()));
                        if json {
                            arr.push(err_json(id, &e));
                        } else if jsonl {
                            writeln!(w, "{}", err_json(id, &e)).map_err(stdout_error)?;
                        }
                    }
                }
            }
            if json {
                let text = serde_json::to_string_pretty(&Value::Array(arr)).unwrap_or_default();
                writeln!(w, "{text}").map_err(stdout_error)?;
            }
            w.flush().map_err(stdout_error)?;
            Ok(worst)
        }
        Command::Wait { ids, w } => {
            let kind = parse_kind(&g)?;
            let client = build_client(&g, None)?;
            let (_, code) = watch_tasks(&client, kind, ids, &w, &out, false, true).await;
            Ok(code)
        }
        Command::Watch { ids_from, w } => {
            let kind = parse_kind(&g)?;
            let ids = read_ids(&ids_from)?;
            let client = build_client(&g, None)?;
            let (_, code) = watch_tasks(&client, kind, ids, &w, &out, false, true).await;
            Ok(code)
        }
        Command::List {
            page,
            page_size,
            all,
            status,
            jsonl,
        } => {
            let kind = parse_kind(&g)?;
            let client = build_client(&g, None)?;
            let want = status.map(|s| TaskStatus::parse(&s));
            let show = |t: &Task| {
                if want.as_ref().is_some_and(|w| *w != t.status) {
                    return;
                }
                if jsonl {
                    println!("{}", task_json(t));
                } else {
                    print_task_line(&out, t);
                }
            };
            if all {
                let mut s = std::pin::pin!(client.iter_tasks(kind, page_size));
                while let Some(t) = s.next().await {
                    show(&t?);
                }
            } else {
                for t in client.list_tasks(kind, page, page_size).await? {
                    show(&t);
                }
            }
            Ok(0)
        }
        Command::Submit {
            prompt,
            model,
            n,
            aspect_ratio,
            external_id,
            wait,
            w,
        } => {
            let kind = parse_kind(&g)?;
            let client = build_client(&g, None)?;
            let mut req = ImageGenerationRequest::new(prompt);
            req.model_name = model;
            req.n = n;
            req.aspect_ratio = aspect_ratio;
            req.external_task_id = external_id;
            let task = if kind == TaskKind::ImageGeneration {
                client.create_image_task(&req).await?
            } else {
                let body = serde_json::to_value(&req).map_err(|e| Error::invalid(e.to_string()))?;
                client.create_task(kind, body).await?
            };
            if w.jsonl || !out.tty {
                println!("{}", task_json(&task));
            } else {
                println!("{}", task.id);
            }
            if wait {
                let (_, code) =
                    watch_tasks(&client, kind, vec![task.id.clone()], &w, &out, false, true).await;
                return Ok(code);
            }
            Ok(0)
        }
        Command::Download { ids, dir } => {
            let kind = parse_kind(&g)?;
            let client = build_client(&g, None)?;
            let mut worst = 0u8;
            for (id, r) in ids.iter().zip(client.get_many(kind, &ids, 8).await) {
                match r {
                    Ok(t) => match client.download_results(&t, &dir).await {
                        Ok(paths) => {
                            for p in paths {
                                println!("{}", p.display());
                            }
                        }
                        Err(e) => {
                            eprintln!("{} (task {id})", error_line(&e));
                            worst = worst.max(exit_code_for(e.kind()));
                        }
                    },
                    Err(e) => {
                        eprintln!("{} (task {id})", error_line(&e));
                        worst = worst.max(exit_code_for(e.kind()));
                    }
                }
            }
            Ok(worst)
        }
    }
}

/// Prints the summary table; true when every task ended as expected (failed when its id is
/// in `designed_fail`, succeeded otherwise).
fn print_table(
    out: &Out,
    ids: &[String],
    last: &BTreeMap<String, Result<Task, Error>>,
    designed_fail: &std::collections::HashSet<String>,
) -> bool {
    println!();
    println!("{:<20} {:<10} {:<40} RESULT", "TASK", "STATUS", "MESSAGE");
    let mut ok = true;
    let mut seen = std::collections::HashSet::new();
    for id in ids {
        if !seen.insert(id) {
            continue;
        }
        match last.get(id) {
            Some(Ok(t)) => {
                let expected = if designed_fail.contains(id) {
                    TaskStatus::Failed
                } else {
                    TaskStatus::Succeed
                };
                if t.status != expected {
                    ok = false;
                }
                let urls: Vec<&str> = t.result_urls().collect();
                let result = match urls.first() {
                    Some(u) => format!("{} image(s) {u}", urls.len()),
                    None => "-".into(),
                };
                let mut msg = t
                    .status_msg
                    .clone()
                    .filter(|m| !m.is_empty())
                    .unwrap_or_else(|| "-".into());
                if designed_fail.contains(id) && t.status == TaskStatus::Failed {
                    msg.push_str(" (failed by design)");
                }
                let st = format!("{:<10}", t.status.as_str());
                let st = match t.status {
                    TaskStatus::Succeed => out.paint(&st, "32"),
                    TaskStatus::Failed => out.paint(&st, "31"),
                    _ => out.paint(&st, "33"),
                };
                println!("{id:<20} {st} {msg:<40} {result}");
            }
            Some(Err(e)) => {
                ok = false;
                let st = out.paint(&format!("{:<10}", "error"), "31");
                println!("{id:<20} {st} {}", error_line(e));
            }
            None => {
                ok = false;
                println!("{id:<20} {:<10} -", "unknown");
            }
        }
    }
    ok
}

fn age(t: &Task) -> String {
    let Some(ms) = t.created_at_ms else {
        return "-".into();
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(ms);
    let secs = ((now - ms) / 1000).max(0);
    match secs {
        0..=119 => format!("{secs}s"),
        120..=7199 => format!("{}m", secs / 60),
        7200..=172_799 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86_400),
    }
}

/// What `status` prints for one task.
#[derive(Clone)]
enum Shown {
    Json(Value),
    Line(String),
}

/// Task ids from a file (or stdin for `-`): one per line, blank lines and `#` comments
/// skipped; an empty list is an error.
fn read_ids(from: &str) -> Result<Vec<String>, Error> {
    let text = if from == "-" {
        std::io::read_to_string(std::io::stdin())
    } else {
        std::fs::read_to_string(from)
    }
    .map_err(|e| Error::config(format!("cannot read ids from {from}: {e}")))?;
    let ids: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect();
    if ids.is_empty() {
        return Err(Error::invalid(format!("no task ids in {from}")));
    }
    Ok(ids)
}

/// A failure to write stdout (a closed pipe, say).
fn stdout_error(e: std::io::Error) -> Error {
    Error::config(format!("cannot write to stdout: {e}"))
}

fn print_task_line(out: &Out, t: &Task) {
    println!("{}", task_line(out, t));
}

fn task_line(out: &Out, t: &Task) -> String {
    let mut line = format!("{}  {}  {}", t.id, out.status(&t.status), age(t));
    if let Some(m) = t.status_msg.as_deref().filter(|m| !m.is_empty()) {
        line.push_str(&format!("  {m}"));
    }
    let urls: Vec<&str> = t.result_urls().collect();
    if let Some(u) = urls.first() {
        line.push_str(&format!("  {} image(s) {u}", urls.len()));
    }
    line
}

/// Watches tasks; returns the last task seen per id (or the error) and the exit code.
async fn watch_tasks(
    client: &Client,
    kind: TaskKind,
    ids: Vec<String>,
    w: &WaitArgs,
    out: &Out,
    plain_when_not_tty: bool,
    print_summary: bool,
) -> (BTreeMap<String, Result<Task, Error>>, u8) {
    let opts = WatchOptions {
        timeout: w.timeout,
        poll_interval: w.interval,
        max_poll_interval: w.interval.max(Duration::from_secs(10)),
        ..Default::default()
    };
    let jsonl = w.jsonl || (!out.tty && !plain_when_not_tty);
    let plain = !jsonl && !out.tty;
    let bars = (!jsonl && !plain && !out.quiet).then(|| {
        let mp = MultiProgress::new();
        let style = ProgressStyle::with_template("{spinner} {prefix} [{elapsed:>4}] {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        let map: BTreeMap<String, ProgressBar> = ids
            .iter()
            .map(|id| {
                let pb = mp.add(ProgressBar::new_spinner());
                pb.set_style(style.clone());
                pb.set_prefix(id.clone());
                pb.set_message("waiting");
                pb.enable_steady_tick(Duration::from_millis(120));
                (id.clone(), pb)
            })
            .collect();
        (mp, map)
    });
    let mut last: BTreeMap<String, Result<Task, Error>> = BTreeMap::new();
    let mut stream = std::pin::pin!(client.watch(kind, ids.clone(), opts));
    while let Some(item) = stream.next().await {
        match item {
            Ok(TaskUpdate { task, previous }) => {
                if jsonl {
                    let mut v = task_json(&task);
                    v["previous"] = json!(previous.as_ref().map(|p| p.as_str()));
                    println!("{v}");
                } else if plain {
                    if !out.quiet {
                        let mut line = format!("{}: {}", task.id, task.status);
                        if let Some(m) = task.status_msg.as_deref().filter(|m| !m.is_empty()) {
                            line.push_str(&format!(" ({m})"));
                        }
                        println!("{line}");
                    }
                } else if let Some((_, map)) = &bars {
                    if let Some(pb) = map.get(&task.id) {
                        let mut msg = out.status(&task.status);
                        if let Some(m) = task.status_msg.as_deref().filter(|m| !m.is_empty()) {
                            msg.push_str(&format!(" {m}"));
                        }
                        if task.is_terminal() {
                            pb.finish_with_message(msg);
                        } else {
                            pb.set_message(msg);
                        }
                    }
                }
                last.insert(task.id.clone(), Ok(task));
            }
            Err(e) => {
                let id = e.task_id().unwrap_or("").to_string();
                if jsonl {
                    println!("{}", err_json(&id, &e));
                }
                if let Some((_, map)) = &bars {
                    if let Some(pb) = map.get(&id) {
                        pb.finish_with_message(format!("{}", e.kind()));
                    }
                }
                if !jsonl {
                    eprintln!("{} (task {id})", error_line(&e));
                }
                last.insert(id, Err(e));
            }
        }
    }
    let _ = std::io::stdout().flush();
    if let Some((_mp, map)) = bars {
        for pb in map.values() {
            if !pb.is_finished() {
                pb.finish();
            }
        }
    }
    if !jsonl && print_summary {
        print_table(out, &ids, &last, &std::collections::HashSet::new());
    }
    let mut code = 0u8;
    for r in last.values() {
        let c = match r {
            Ok(t) if t.status == TaskStatus::Succeed => 0,
            Ok(t) if t.status == TaskStatus::Failed => 1,
            Ok(_) => 5,
            Err(e) => exit_code_for(e.kind()),
        };
        code = code.max(c);
    }
    (last, code)
}

/// Starts the embedded emulator (for `demo` and `mcp --mock`) and a client of its default
/// account. Tasks start processing after `processing_after` and finish after `finish_after`.
pub(crate) async fn embedded_emulator(
    processing_after: Duration,
    finish_after: Duration,
) -> Result<(klingwatch_mock::MockServer, Client), Error> {
    let config = klingwatch_mock::MockConfig {
        timing: klingwatch_mock::Timing {
            processing_after,
            finish_after,
            time_scale: 1.0,
        },
        ..Default::default()
    };
    let server = klingwatch_mock::MockServer::start(config)
        .await
        .map_err(|e| Error::config(format!("cannot start the emulator: {e}")))?;
    let client = Client::builder()
        .access_key(klingwatch_mock::DEFAULT_ACCESS_KEY)
        .secret_key(klingwatch_mock::DEFAULT_SECRET_KEY)
        .base_url(server.url())
        .build()?;
    Ok((server, client))
}

async fn demo(g: &Global, out: &Out, dir: PathBuf) -> Result<u8, Error> {
    let (server, client) =
        embedded_emulator(Duration::from_secs(1), Duration::from_secs(3)).await?;
    let url = server.url();
    let say = |s: String| {
        if !out.quiet {
            println!("{s}");
        }
    };
    say(format!(
        "klingwatch demo: emulator of the Kling API running at {url}"
    ));
    let http = reqwest::Client::new();
    let fault = json!({"fault":"rate_limit","code":1302,"retry_after":"1","match":{"method":"POST"},"times":1});
    http.post(format!("{url}/__mock/faults"))
        .json(&fault)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| Error::config(format!("cannot configure the emulator: {e}")))?;
    say("injected: one rate limit (code 1302) on the first create; the client retries it".into());

    let _ = g;
    let prompts = [
        ("a lighthouse at dawn, watercolor", false),
        ("a red fox in fresh snow", false),
        ("a tiny robot watering a bonsai", false),
        ("[fail] this one fails by design", true),
        ("a city skyline made of books", false),
    ];
    let mut designed_fail = std::collections::HashSet::new();
    let mut ids = Vec::new();
    for (p, fails) in prompts {
        let mut req = ImageGenerationRequest::new(p);
        req.n = Some(if fails { 1 } else { 2 });
        let t = client.create_image_task(&req).await?;
        say(format!("submitted {}  {p:?}", t.id));
        if fails {
            designed_fail.insert(t.id.clone());
        }
        ids.push(t.id);
    }
    // How many times the rate limit fault fired.
    let fired = match http.get(format!("{url}/__mock/faults")).send().await {
        Ok(r) => r.json::<Value>().await.ok().and_then(|v| {
            v["faults"].as_array().map(|a| {
                a.iter()
                    .map(|f| f["fired"].as_u64().unwrap_or(0))
                    .sum::<u64>()
            })
        }),
        Err(_) => None,
    };
    if let Some(n) = fired {
        say(format!(
            "rate limited {n} time(s) during submission: retried automatically, no task lost"
        ));
    }
    say("watching...".into());
    let w = WaitArgs {
        timeout: Duration::from_secs(60),
        interval: Duration::from_millis(500),
        jsonl: false,
    };
    let (last, _) = watch_tasks(
        &client,
        TaskKind::ImageGeneration,
        ids.clone(),
        &w,
        out,
        true,
        false,
    )
    .await;

    let ok_table = print_table(out, &ids, &last, &designed_fail);
    let mut ok = ok_table;
    let succeeded: Vec<Task> = ids
        .iter()
        .filter_map(|id| match last.get(id) {
            Some(Ok(t)) if t.status == TaskStatus::Succeed => Some(t.clone()),
            _ => None,
        })
        .collect();
    println!();
    let mut files = 0;
    for t in &succeeded {
        match client.download_results(t, &dir).await {
            Ok(p) => files += p.len(),
            Err(e) => {
                ok = false;
                eprintln!("{} (task {})", error_line(&e), t.id);
            }
        }
    }
    let shown = std::fs::canonicalize(&dir).unwrap_or_else(|_| dir.clone());
    println!("downloaded {files} file(s) to {}", shown.display());
    println!(
        "to use the real API: export KLING_ACCESS_KEY=... KLING_SECRET_KEY=... then run e.g. `klingwatch submit --prompt \"...\" --wait`"
    );
    server.stop().await;
    if ok {
        println!("demo finished: every task ended as designed");
        Ok(0)
    } else {
        println!("demo finished: some tasks did not end as designed");
        Ok(1)
    }
}
