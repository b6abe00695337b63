//! Command-line interface: `herald serve | migrate | apikey create`.

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
    /// Manage API keys.
    Apikey {
        #[command(subcommand)]
        command: ApikeyCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum ApikeyCommand {
    /// Create a key and print it once (only its hash is stored).
    Create {
        #[arg(long)]
        name: String,
    },
}
