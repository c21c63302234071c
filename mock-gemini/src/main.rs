//! The `mock-gemini` binary: `mock-gemini --listen 127.0.0.1:0 [--script FILE]`. Prints
//! `mock-gemini listening on http://ADDR` first, then serves until SIGINT/SIGTERM.

#![forbid(unsafe_code)]

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use mock_gemini::{MockServer, Script};

const USAGE: &str = "usage: mock-gemini [--listen ADDR] [--script FILE]\n\
                     \n  --listen ADDR   address to bind (default 127.0.0.1:0)\
                     \n  --script FILE   YAML/JSON script (default: every key answers normally)";

struct Args {
    listen: String,
    script: Option<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args { listen: "127.0.0.1:0".to_owned(), script: None };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) => (f.to_owned(), Some(v.to_owned())),
            None => (arg.clone(), None),
        };
        let mut value = |name: &str| inline.clone().or_else(|| it.next()).ok_or(format!("{name} needs a value"));
        match flag.as_str() {
            "--listen" | "-l" => args.listen = value("--listen")?,
            "--script" | "-s" => args.script = Some(PathBuf::from(value("--script")?)),
            "--help" | "-h" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(args)
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(msg) => {
            if !msg.is_empty() {
                eprintln!("mock-gemini: {msg}");
            }
            eprintln!("{USAGE}");
            return if msg.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(2) };
        }
    };
    let script = match &args.script {
        Some(path) => match Script::from_yaml_file(path) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("mock-gemini: {e}");
                return ExitCode::FAILURE;
            }
        },
        None => Script::default(),
    };
    let listener = match tokio::net::TcpListener::bind(&args.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("mock-gemini: cannot listen on {}: {e}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    match listener.local_addr() {
        Ok(addr) => {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "mock-gemini listening on http://{addr}");
            let _ = out.flush();
        }
        Err(e) => {
            eprintln!("mock-gemini: {e}");
            return ExitCode::FAILURE;
        }
    }
    match MockServer::serve(listener, script, shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mock-gemini: {e}");
            ExitCode::FAILURE
        }
    }
}
