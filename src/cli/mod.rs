//! The `postern` command line: subcommands, their arguments, and their exit codes.
//!
//! Each subcommand returns a `Fatal` on failure; this module is the single place that prints it
//! and turns its reason into the exit status, so the codes documented in
//! `docs/operations.md` are the only ones the binary produces (besides 2 for usage errors).

mod spool_export;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{self, Config, ConfigErrors};
use crate::fatal::{ExitReason, Fatal};

#[derive(Parser)]
#[command(
    name = "postern",
    version,
    about = "SMTP edge relay: durable before 250"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the relay (with no --config: the embedded default, listening on 127.0.0.1:2525).
    Serve {
        /// Configuration file (TOML).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Validate a configuration file and print every error in it.
    CheckConfig {
        /// Configuration file (TOML); without it the embedded default is checked.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Print the embedded default configuration, a commented starting point.
    DefaultConfig,
    /// Offline spool tools.
    #[command(subcommand)]
    Spool(SpoolCommand),
}

#[derive(Subcommand)]
enum SpoolCommand {
    /// Copy every queued message out of a spool as `<queue id>.msg` files (envelope + message).
    Export {
        /// The spool directory (`server.spool`).
        #[arg(long)]
        spool: PathBuf,
        /// Where to write the files (created if missing).
        #[arg(long)]
        output: PathBuf,
    },
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Serve { config } => load(config.as_deref()).and_then(|config| {
            crate::logging::init(&config.log);
            crate::serve::serve(config).inspect_err(|fatal| {
                tracing::error!(cause = %fatal.cause, fix = %fatal.fix, "postern cannot run");
            })
        }),
        Command::CheckConfig { config } => load(config.as_deref()).map(|config| {
            println!("{}: configuration is valid", config.source);
        }),
        Command::Spool(SpoolCommand::Export { spool, output }) => {
            spool_export::export(&spool, &output).map(|count| {
                println!("{count} message(s) exported to {}", output.display());
            })
        }
        Command::DefaultConfig => {
            print!("{}", config::DEFAULT_TOML);
            Ok(())
        }
    };

    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(fatal) => {
            eprintln!("postern: {}", fatal.cause);
            if !fatal.fix.is_empty() {
                eprintln!("postern: fix: {}", fatal.fix);
            }
            ExitCode::from(fatal.reason.code())
        }
    }
}

fn load(path: Option<&std::path::Path>) -> Result<Config, Fatal> {
    let loaded = match path {
        Some(path) => config::load(path),
        None => Ok(config::embedded_default()),
    };
    loaded.map_err(config_fatal)
}

fn config_fatal(errors: ConfigErrors) -> Fatal {
    let count = errors.errors.len();
    Fatal::new(
        ExitReason::ConfigInvalid,
        format!("{errors}\n{count} configuration error(s)"),
        "",
    )
}
