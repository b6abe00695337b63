//! Command-line interface: `herald serve | migrate | apikey create | apikey revoke | sim | demo`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "herald", version, about = "Outbound dialer campaign engine")]
pub struct Cli {
    /// Configuration file (merged over the embedded default; HERALD__SECTION__KEY overrides both).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the REST API (and, as they land, the scheduler and call control).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Check the configuration (the file, merged over the embedded default,
    /// with HERALD__SECTION__KEY overrides) and print it as herald would run
    /// with it, secrets shown as ***. Exit status 2 when it is not valid.
    CheckConfig,
    /// Manage API keys.
    Apikey {
        #[command(subcommand)]
        command: ApikeyCommand,
    },
    /// Run the callee simulator alone: a SIP UAS answering like a population
    /// of people, until Ctrl-C.
    Sim {
        /// UDP address of its SIP socket (port 0 picks one; it is printed).
        #[arg(long, default_value = "127.0.0.1:5090")]
        listen: String,
        /// Population file (TOML, see scenarios/population/); default: the embedded default.
        #[arg(long, value_name = "FILE")]
        population: Option<PathBuf>,
        /// Seed of the per-call choices.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Run a self-contained demonstration: a temporary herald, the simulator,
    /// and an appointment-confirmation campaign to 1,000 synthetic people.
    Demo(DemoArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// How many people to call.
    #[arg(long, default_value_t = 1000)]
    pub targets: u32,
    /// The campaign's calls per second.
    #[arg(long, default_value_t = 50.0)]
    pub cps: f64,
    /// The campaign's concurrent calls.
    #[arg(long, default_value_t = 100)]
    pub concurrency: u32,
    /// Seed of the simulator's per-call choices.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Keep the SQLite database at this path (default: a temporary one, removed at the end).
    #[arg(long, value_name = "PATH")]
    pub db: Option<PathBuf>,
    /// Keep herald running after the summary, until Ctrl-C.
    #[arg(long)]
    pub keep: bool,
}

#[derive(Debug, Subcommand)]
pub enum ApikeyCommand {
    /// Create a key and print it once (only its hash is stored).
    Create {
        #[arg(long)]
        name: String,
    },
    /// Revoke a key by its id: API requests and console sessions with it stop.
    Revoke { id: String },
}
