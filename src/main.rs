//! The `gemgate` command line (SPEC 1): run the proxy, `check` a config, `demo` against the
//! built-in mock, or run the `mock` upstream alone. Parsing and exit codes only.

use clap::{Parser, Subcommand};
use gemgate::config::Config;
use gemgate::telemetry::{self, LogFormat};
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Check) => check(&cli.config),
        None => serve(&cli.config, cli.log_format),
    }
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
