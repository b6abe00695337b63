use anyhow::Context;
use clap::Parser;
use herald::app::{App, BOOTSTRAP_KEY_VAR};
use herald::cli::{ApikeyCommand, Cli, Command};
use herald::config::{Config, LogFormat};
use herald::store::Store;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = Config::load(cli.config.as_deref())?;
    init_tracing(&config);
    match cli.command {
        Command::Serve => {
            let app = App::start(&config, std::env::var(BOOTSTRAP_KEY_VAR).ok()).await?;
            println!("herald listening on http://{}", app.addr);
            app.run_until_signal().await
        }
        Command::Migrate => {
            let store = Store::open(&config.database.url, 1)
                .await
                .context("migrating the database")?;
            store.close().await;
            println!("migrations applied");
            Ok(())
        }
        Command::Apikey {
            command: ApikeyCommand::Create { name },
        } => {
            let store = Store::open(&config.database.url, 1)
                .await
                .context("opening the database")?;
            let (id, key) = store
                .create_api_key(&name, chrono::Utc::now().timestamp_millis())
                .await?;
            store.close().await;
            eprintln!("created API key {id} ({name}); it is shown only once:");
            println!("{key}");
            Ok(())
        }
    }
}

fn init_tracing(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.log.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}
