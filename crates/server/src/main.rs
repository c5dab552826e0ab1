use clap::Parser;
use papo_server::{shutdown_signal, Config, Server};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("PAPO_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let config = Config::parse();
    let admin_change = match &config.command {
        Some(papo_server::Command::GrantAdmin { username }) => Some((username.clone(), true)),
        Some(papo_server::Command::RevokeAdmin { username }) => Some((username.clone(), false)),
        _ => None,
    };
    if let Some((username, admin)) = admin_change {
        return report(papo_server::set_admin(&config, &username, admin).await);
    }
    if let Some(papo_server::Command::RotateTokenKey) = config.command {
        return report(papo_server::rotate_token_key(&config));
    }
    let server = match Server::start(config).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("papo-server: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match server.local_addr() {
        // Tests and scripts read this line to learn the port.
        Ok(addr) => println!("listening on {addr}"),
        Err(e) => {
            eprintln!("papo-server: {e}");
            return std::process::ExitCode::FAILURE;
        }
    }
    server.serve(shutdown_signal()).await;
    tracing::info!("stopped");
    std::process::ExitCode::SUCCESS
}

/// A command's outcome: what it did on stdout, or why not on stderr.
fn report(outcome: Result<String, papo_server::StartError>) -> std::process::ExitCode {
    match outcome {
        Ok(done) => {
            println!("{done}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("papo-server: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
