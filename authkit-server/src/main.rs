//! `authkit-server`: `serve` (default), `migrate`, `check-config`.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use authkit_server::config::{LogFormat, SecretsProviderKind, redact_url};
use authkit_server::{App, Config, Overrides, StartError, Validated};
use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "authkit-server",
    version,
    about = "Reference server for the authkit library: cookie sessions, CSRF protection and password login over a JSON API.",
    after_help = authkit_server::config::documented_variables()
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the server (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Validate the configuration (and secrets) without starting.
    CheckConfig,
}

fn load_config() -> Result<Validated, StartError> {
    let config = Config::from_env().map_err(|e| StartError::Config(vec![e]))?;
    config.validate().map_err(StartError::Config)
}

fn init_logging(config: Option<&Config>) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .or_else(|| config.map(|c| c.log.filter.clone()))
        .unwrap_or_else(|| "info".into());
    let filter = tracing_subscriber::EnvFilter::try_new(&filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(true);
    match config.map(|c| c.log.format) {
        Some(LogFormat::Json) => builder.json().init(),
        _ => builder.init(),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let loaded = load_config();
    init_logging(loaded.as_ref().ok().map(|v| &v.config));
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => match loaded {
            Ok(config) => serve(config).await,
            Err(e) => Err(e),
        },
        Command::Migrate => match loaded {
            Ok(config) => migrate(&config).await,
            Err(e) => Err(e),
        },
        Command::CheckConfig => check_config(loaded).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The whole chain: "not a valid key ring: a key is shorter than 32 bytes".
            let mut message = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                message.push_str(": ");
                message.push_str(&cause.to_string());
                source = cause.source();
            }
            tracing::error!("{message}");
            ExitCode::FAILURE
        }
    }
}

async fn migrate(config: &Validated) -> Result<(), StartError> {
    let store = authkit_server::open_store(config).await?;
    store.close().await;
    tracing::info!(database = %redact_url(&config.config.database.url), "migrations applied");
    Ok(())
}

#[allow(clippy::print_stdout)] // the command's output is its report
async fn check_config(loaded: Result<Validated, StartError>) -> Result<(), StartError> {
    let config = loaded?;
    if config.secrets_provider == SecretsProviderKind::Env {
        authkit_server::secrets::load_keys(&config, Arc::new(authkit::rng::OsRandom)).await?;
    }
    let c = &config.config;
    println!("configuration OK");
    println!("  profile:          {:?}", c.profile);
    println!("  listen:           {}", c.server.listen_addr);
    println!("  public origin:    {}", config.public_origin);
    let origins: Vec<_> = config
        .allowed_origins
        .iter()
        .map(ToString::to_string)
        .collect();
    println!("  allowed origins:  {}", origins.join(", "));
    println!("  database:         {}", redact_url(&c.database.url));
    println!("  secrets provider: {:?}", config.secrets_provider);
    println!("  secure cookies:   {}", config.secure_cookies);
    println!(
        "  session:          idle {:?}, absolute {:?}",
        c.session.idle_timeout, c.session.absolute_timeout
    );
    Ok(())
}

async fn serve(config: Validated) -> Result<(), StartError> {
    let settings = config.config.server.clone();
    if config.config.redis.url.is_some() {
        tracing::warn!("AUTHKIT_REDIS_URL is set but this version does not use Redis yet");
    }
    let app = App::build(config, Overrides::default()).await?;
    spawn_session_sweeper(&app);
    let listener = tokio::net::TcpListener::bind(settings.listen_addr)
        .await
        .map_err(|e| {
            StartError::Config(vec![authkit_server::ConfigError::Invalid {
                setting: "server.listen_addr",
                reason: format!("cannot listen on {}: {e}", settings.listen_addr),
            }])
        })?;
    tracing::info!(addr = %settings.listen_addr, public_url = %settings.public_url, "authkit-server listening");

    let shutdown = Arc::new(tokio::sync::Notify::new());
    let signalled = Arc::clone(&shutdown);
    let server = axum::serve(
        listener,
        app.router()
            .into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        shutdown_signal().await;
        tracing::info!("shutting down: finishing in-flight requests");
        signalled.notify_one();
    });
    let drain_limit = settings.shutdown_timeout;
    tokio::select! {
        result = server => {
            if let Err(e) = result {
                tracing::error!(error = %e, "server error");
            }
        }
        () = async { shutdown.notified().await; tokio::time::sleep(drain_limit).await } => {
            tracing::warn!(?drain_limit, "shutdown timeout reached; closing remaining connections");
        }
    }
    tracing::info!("stopped");
    Ok(())
}

/// Deletes sessions past their absolute expiry every ten minutes (expired sessions are already
/// refused on use; this keeps the table small).
fn spawn_session_sweeper(app: &App) {
    let store = Arc::clone(app.store());
    let clock = app.auth().sessions().clock_handle();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(600));
        loop {
            every.tick().await;
            match store.delete_expired_sessions(clock.now()).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(deleted = n, "expired sessions removed"),
                Err(e) => tracing::warn!(error = %e, "expired-session sweep failed"),
            }
        }
    });
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
