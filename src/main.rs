/// mimalloc: the scheduler's hot path allocates per row and per statement,
/// and glibc's malloc was a quarter of its CPU (docs/BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::Context;
use clap::Parser;
use herald::app::{shutdown_signal, App, BOOTSTRAP_KEY_VAR};
use herald::cli::{ApikeyCommand, Cli, Command};
use herald::config::Config;
use herald::sim::{Population, Simulator, SimulatorConfig};
use herald::store::Store;

#[tokio::main]
async fn main() -> anyhow::Result<std::process::ExitCode> {
    let cli = Cli::parse();
    if matches!(cli.command, Command::CheckConfig) {
        return Ok(match Config::load(cli.config.as_deref()) {
            Ok(config) => {
                print!("{}", config.redacted_toml());
                eprintln!("herald check-config: the configuration is valid");
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("herald check-config: {e}");
                std::process::ExitCode::from(2)
            }
        });
    }
    let mut config = Config::load(cli.config.as_deref())?;
    if matches!(cli.command, Command::Demo(_)) {
        // The demo's own output is the point; logs only when something is wrong.
        config.log.level = "warn".into();
    }
    herald::logging::init(&config);
    if let Command::Demo(args) = cli.command {
        let code = herald::demo::run(config, args).await?;
        return Ok(std::process::ExitCode::from(code));
    }
    run(cli.command, config).await?;
    Ok(std::process::ExitCode::SUCCESS)
}

async fn run(command: Command, config: Config) -> anyhow::Result<()> {
    match command {
        Command::Serve => {
            let stop = shutdown_signal();
            let app = App::start(&config, std::env::var(BOOTSTRAP_KEY_VAR).ok()).await?;
            say(format_args!("herald listening on http://{}", app.addr));
            if let Some(sim) = app.simulator_addr {
                say(format_args!("callee simulator listening on sip:{sim}"));
            }
            app.run_until(stop).await
        }
        Command::Sim {
            listen,
            population,
            seed,
        } => {
            let population = match population {
                Some(path) => Population::load(&path)?,
                None => Population::default_population(),
            };
            let listen = listen
                .parse()
                .with_context(|| format!("--listen {listen:?} is not an ip:port"))?;
            let name = population.name.clone();
            let stop = shutdown_signal();
            let sim = Simulator::start(SimulatorConfig {
                listen,
                population,
                seed,
                rtp_port_min: config.simulator.rtp_port_min,
                rtp_port_max: config.simulator.rtp_port_max,
            })
            .await?;
            say(format_args!(
                "herald sim listening on sip:{} (population {name}, seed {seed}); Ctrl-C stops it",
                sim.addr()
            ));
            stop.await;
            let c = sim.shutdown().await;
            say(format_args!(
                "{} calls: {} answered, {} busy, {} unanswered (cancelled), {} invalid number, {} temporary failure, {} other",
                c.calls, c.answered, c.busy, c.cancelled, c.invalid_number, c.temporary_failure, c.other
            ));
            Ok(())
        }
        Command::Demo(_) | Command::CheckConfig => unreachable!("handled above"),
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
        Command::Apikey {
            command: ApikeyCommand::Revoke { id },
        } => {
            let store = Store::open(&config.database.url, 1)
                .await
                .context("opening the database")?;
            let revoked = store
                .revoke_api_key(&id, chrono::Utc::now().timestamp_millis())
                .await?;
            store.close().await;
            if !revoked {
                anyhow::bail!("no live API key with id {id:?}");
            }
            println!("revoked API key {id}");
            Ok(())
        }
    }
}

/// Prints a line for whoever started herald. A closed stdout (the starter
/// stopped reading) is no reason to stop serving, so write errors are ignored.
fn say(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}
