//! The `gemgate` command line (SPEC 1): run the proxy, `check` a config, `demo` against the
//! built-in mock, or run the `mock` upstream alone. Parsing and exit codes only.

use clap::{Parser, Subcommand};
use gemgate::config::Config;
use gemgate::telemetry::{self, LogFormat};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "gemgate",
    version,
    about = "A transparent gateway for the Gemini API: key pool, quotas, cache, routing."
)]
struct Cli {
    /// Config file (YAML).
    #[arg(long, global = true, env = "GEMGATE_CONFIG", default_value = "proxy.yaml")]
    config: PathBuf,
    /// Log line format.
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Validate the config and print `ok` or every error.
    Check,
    /// Try gemgate without keys: the proxy in front of the built-in mock upstream.
    Demo {
        /// Where the demo proxy listens.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
    },
    /// Run the mock Gemini upstream alone (for tests, benchmarks and demos).
    Mock {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        /// YAML/JSON script of per-key behaviour (latency, 429s, errors, streams).
        #[arg(long)]
        script: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Check) => check(&cli.config),
        Some(Command::Demo { listen }) => with_runtime(cli.log_format, demo(listen)),
        Some(Command::Mock { listen, script }) => with_runtime(cli.log_format, mock(listen, script)),
        None => serve(&cli.config, cli.log_format),
    }
}

fn with_runtime(format: LogFormat, work: impl std::future::Future<Output = Result<(), String>>) -> ExitCode {
    telemetry::init(format);
    let result = tokio::runtime::Runtime::new().map_err(|e| e.to_string()).and_then(|rt| rt.block_on(work));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gemgate: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The demo keys are not real keys: the mock accepts any key.
const DEMO_CONFIG: &str = "\
listen: LISTEN
admin: { listen: 127.0.0.1:0 }
upstream: { base_url: UPSTREAM }
pools:
  default:
    keys:
      - { id: demo-a, key: demo-key-aaaa }
      - { id: demo-b, key: demo-key-bbbb }
";

async fn demo(listen: SocketAddr) -> Result<(), String> {
    let mock = mock_gemini::MockServer::spawn(mock_gemini::Script::default()).await;
    let yaml = DEMO_CONFIG.replace("LISTEN", &listen.to_string()).replace("UPSTREAM", &mock.base_url());
    let config = Config::from_yaml(&yaml, std::path::Path::new("<demo>")).map_err(|e| e.to_string())?;
    let gate = gemgate::Running::start(config).await.map_err(|e| e.to_string())?;
    let url = gate.base_url();
    println!(
        "gemgate demo: the proxy listens on {url}, in front of a mock Gemini upstream at {}.\n\
         Try it (any API key works):\n\n  \
         curl -s {url}/v1beta/models/gemini-2.5-flash:generateContent -H 'x-goog-api-key: anything' \\\n    \
         -H 'content-type: application/json' -d '{{\"contents\":[{{\"parts\":[{{\"text\":\"Hello\"}}]}}]}}' -i\n\n  \
         GOOGLE_GEMINI_BASE_URL={url} GEMINI_API_KEY=anything python your_app.py\n\n\
         Answers carry x-gemgate-key (which pool key served them). Ctrl-C stops.",
        mock.base_url()
    );
    shutdown_signal().await;
    gate.shutdown().await.map_err(|e| e.to_string())
}

async fn mock(listen: SocketAddr, script: Option<PathBuf>) -> Result<(), String> {
    let script = match script {
        Some(path) => mock_gemini::Script::from_yaml_file(&path).map_err(|e| e.to_string())?,
        None => mock_gemini::Script::default(),
    };
    let listener =
        tokio::net::TcpListener::bind(listen).await.map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    println!("mock-gemini listening on http://{addr}");
    use std::io::Write;
    let _ = std::io::stdout().flush();
    mock_gemini::serve(listener, script, shutdown_signal()).await.map_err(|e| e.to_string())
}

fn check(path: &std::path::Path) -> ExitCode {
    match Config::from_file(path) {
        Ok(_) => {
            println!("ok");
            ExitCode::SUCCESS
        }
        Err(errors) => {
            println!("{errors}");
            ExitCode::FAILURE
        }
    }
}

fn serve(path: &std::path::Path, format: LogFormat) -> ExitCode {
    let config = match Config::from_file(path) {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("gemgate: invalid config: {}", errors.one_line());
            return ExitCode::FAILURE;
        }
    };
    telemetry::init(format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("gemgate: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let listeners = match gemgate::Listeners::bind(&config).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("gemgate: {e}");
                return ExitCode::FAILURE;
            }
        };
        tracing::info!(
            listen = %config.listen,
            admin = %config.admin.listen,
            upstream = %config.upstream.base_url,
            pools = config.pools.len(),
            "gemgate listening"
        );
        match gemgate::run(listeners, config, shutdown_signal()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("gemgate: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
}
