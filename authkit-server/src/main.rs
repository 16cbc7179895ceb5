//! `authkit-server`: `serve` (default), `migrate`, `check-config`, `import-users`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use authkit_server::config::{LogFormat, SecretsProviderKind, redact_url};
use authkit_server::{App, Config, Overrides, StartError, Validated};
use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "authkit-server",
    version,
    about = "Reference server for the authkit library over a JSON API: cookie sessions, CSRF protection, password login, e-mail verification and reset (mail through a durable queue), rate limits and lockout, and an audit trail.",
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
    /// Apply database migrations (authkit's schema and the job queue's) and exit.
    Migrate,
    /// Validate the configuration (and secrets) without starting.
    CheckConfig,
    /// Inspect or rotate secrets.
    Secrets {
        #[command(subcommand)]
        action: SecretsCommand,
    },
    /// Create users from a JSON Lines file, keeping their password hashes (argon2id, bcrypt,
    /// PBKDF2-SHA256, Django), upgraded to argon2id at each user's next login. Existing
    /// addresses are skipped. Exits non-zero if any line failed. See docs/migrating-users.md.
    ImportUsers {
        /// The JSON Lines file: one user per line.
        file: PathBuf,
        /// Check every line and report, without writing anything.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Subcommand, Debug)]
enum SecretsCommand {
    /// List every secret the configuration reads: provider, version and status, never a
    /// value. Exits non-zero when a required secret is missing or invalid.
    Check,
    /// Add a new newest key to key ring NAME (`session_key`, `encryption_key`, `pepper`) of
    /// the `local` provider; older keys stay. With other providers, store a new version in the
    /// provider: running servers pick it up within `secrets.refresh_interval`.
    Rotate {
        /// The key ring.
        name: String,
    },
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
        Command::Secrets { action } => match loaded {
            Ok(config) => match secrets_command(&config, action).await {
                Ok(code) => return code,
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        },
        Command::ImportUsers { file, dry_run } => match loaded {
            Ok(config) => match import_users(&config, &file, dry_run).await {
                Ok(code) => return code,
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The whole chain: "not a valid key ring: a key is shorter than 32 bytes".
            tracing::error!("{}", authkit::error::error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// The database secrets, if the provider has them (commands that open only the database).
async fn database_secrets(
    config: &Validated,
) -> Result<authkit_server::secrets::DatabaseSecrets, StartError> {
    let provider =
        authkit_server::secrets::provider(config, Arc::new(authkit::rng::OsRandom)).await?;
    let cache = authkit::secrets::SecretCache::new(provider);
    Ok(authkit_server::secrets::DatabaseSecrets::read(&cache).await?)
}

async fn migrate(config: &Validated) -> Result<(), StartError> {
    let db = database_secrets(config).await?;
    let store = authkit_server::open_store(config, &db).await?;
    store.close().await;
    // The job queue's tables (apalis, with its own migrations table) live in the same database.
    let jobs = authkit::jobs::JobQueue::connect(
        &authkit_server::database_url(config, &db)?,
        authkit::jobs::JobQueueOptions::default(),
    )
    .await?;
    jobs.close().await;
    tracing::info!(database = %redact_url(&config.config.database.url), "migrations applied");
    Ok(())
}

/// Runs the import. Configuration and database errors are returned; a missing file, a failed
/// import or failed lines end in a non-zero exit code after their report. The report names
/// lines and reasons only, never an address or a hash.
#[allow(clippy::print_stdout)] // the command's output is its report
async fn import_users(
    config: &Validated,
    file: &Path,
    dry_run: bool,
) -> Result<ExitCode, StartError> {
    use authkit::clock::Clock as _;
    let input = match std::fs::File::open(file) {
        Ok(f) => std::io::BufReader::new(f),
        Err(e) => {
            tracing::error!(file = %file.display(), error = %e, "cannot open the import file");
            return Ok(ExitCode::FAILURE);
        }
    };
    let db = database_secrets(config).await?;
    let store = authkit_server::open_store(config, &db).await?;
    let result = authkit_server::import::import_users(
        &store,
        input,
        authkit::clock::SystemClock.now(),
        &authkit::rng::OsRandom,
        dry_run,
    )
    .await;
    store.close().await;
    match result {
        Ok(report) => {
            for failure in &report.failed {
                println!("{failure}");
            }
            println!("{report}");
            Ok(if report.failed.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Err(e) => {
            tracing::error!("import stopped: {}", authkit::error::error_chain(&e));
            Ok(ExitCode::FAILURE)
        }
    }
}

#[allow(clippy::print_stdout)] // the command's output is its report
async fn check_config(loaded: Result<Validated, StartError>) -> Result<(), StartError> {
    let config = loaded?;
    // The key rings must be readable and valid (the `local` provider would generate them).
    if config.secrets_provider != SecretsProviderKind::Local {
        authkit_server::secrets::cache(&config, Arc::new(authkit::rng::OsRandom)).await?;
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

/// `secrets check` and `secrets rotate NAME`.
#[allow(clippy::print_stdout)] // the command's output is its report
async fn secrets_command(
    config: &Validated,
    action: SecretsCommand,
) -> Result<ExitCode, StartError> {
    use authkit::secrets::{REQUIRED_KEY_RINGS, SecretError};
    let rng: Arc<dyn authkit::rng::RandomSource> = Arc::new(authkit::rng::OsRandom);
    match action {
        SecretsCommand::Check => {
            let provider = authkit_server::secrets::provider(config, rng).await?;
            println!("secret provider: {}", provider.name());
            let mut ok = true;
            for (name, required) in authkit_server::secrets::names(config) {
                let line = match provider.get(&name).await {
                    Ok(value) => {
                        let version = value.version().unwrap_or("-").to_owned();
                        if REQUIRED_KEY_RINGS.contains(&name.as_str()) {
                            match authkit::secret::KeyRing::parse(value.expose()) {
                                Ok(ring) => {
                                    let ids: Vec<String> =
                                        ring.ids().map(ToString::to_string).collect();
                                    format!(
                                        "ok, version {version}, key ids {} (newest first)",
                                        ids.join(", ")
                                    )
                                }
                                Err(e) => {
                                    ok = false;
                                    format!("INVALID key ring, version {version}: {e}")
                                }
                            }
                        } else {
                            format!("ok, version {version}")
                        }
                    }
                    Err(SecretError::NotFound { .. }) if !required => {
                        "not set (optional)".to_owned()
                    }
                    Err(e) => {
                        ok = false;
                        format!(
                            "{}: {}",
                            if required { "MISSING" } else { "error" },
                            authkit::error::error_chain(&e)
                        )
                    }
                };
                println!("  {name:<32} {line}");
            }
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        SecretsCommand::Rotate { name } => {
            if config.secrets_provider != SecretsProviderKind::Local {
                println!(
                    "`secrets rotate` writes only to the `local` provider; this configuration uses `{}`.\n\
                     Rotate `{name}` in the provider in three steps, waiting one secrets.refresh_interval after each:\n\
                     1. add the new key LAST:  k1:<old key>,k2:<new key>\n\
                     2. move it first:         k2:<new key>,k1:<old key>\n\
                     3. retire the old key:    k2:<new key>   (once nothing needs k1; see docs/security.md, \"Rotating secrets\")",
                    config.secrets_provider.as_str()
                );
                return Ok(ExitCode::FAILURE);
            }
            let local =
                authkit::secrets::LocalSecrets::new(&config.config.secrets.local_dir).with_rng(rng);
            let id = local.rotate(&name).await?;
            println!(
                "{name}: new newest key `{id}`; older keys still verify. A running server picks it up within {:?}.",
                config.config.secrets.refresh_interval
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn serve(config: Validated) -> Result<(), StartError> {
    let settings = config.config.server.clone();
    if config.config.redis.url.is_some() {
        tracing::warn!("AUTHKIT_REDIS_URL is set but this version does not use Redis yet");
    }
    // The job workers (mail, cleanup of expired sessions and tokens, audit retention) start
    // with the app.
    let app = App::build(config, Overrides::default()).await?;
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
    // Jobs in progress finish; queued ones stay in the database for the next start.
    app.shutdown_jobs().await;
    tracing::info!("stopped");
    Ok(())
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
