//! The `postern` command line: subcommands, their arguments, and their exit codes.
//!
//! Each subcommand returns a `Fatal` on failure; this module is the single place that prints it
//! and turns its reason into the exit status, so the codes documented in
//! `docs/operations.md` are the only ones the binary produces (besides 2 for usage errors).

mod queue;
mod spool_export;
mod spool_keygen;
mod user;

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
    /// The SMTP AUTH users file (`[auth] users_file`): add, remove and list users.
    User {
        /// Configuration file whose `[auth] users_file` to edit (default: the embedded default).
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
        /// The users file, overriding the configuration.
        #[arg(long, global = true)]
        users_file: Option<PathBuf>,
        #[command(subcommand)]
        action: UserCommand,
    },
    /// Queue administration of the running relay, through its admin API (`[admin] address`).
    Queue {
        /// Configuration file whose `[admin] address` to use (default: the embedded default).
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
        /// The admin API address, overriding the configuration (e.g. 127.0.0.1:8025).
        #[arg(long, global = true)]
        admin: Option<std::net::SocketAddr>,
        /// Print the API's JSON answer instead of a table.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        action: QueueCommand,
    },
}

#[derive(Subcommand)]
enum QueueCommand {
    /// Every queued message, like `mailq` (`!` held, `*` being delivered).
    List,
    /// One message in detail.
    Show { queue_id: String },
    /// Try every deferred message now, like `postqueue -f`.
    Flush,
    /// Keep a message without trying it, like `postsuper -h`.
    Hold { queue_id: String },
    /// Release a held message and try it now, like `postsuper -H`.
    Release { queue_id: String },
    /// Remove a message without delivering it, like `postsuper -d`.
    Delete { queue_id: String },
    /// Route one message (or all) afresh and try now, lifting destination pauses (`postsuper -r`).
    Requeue { queue_id: Option<String> },
    /// Counts per shard.
    Stats,
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add a user, or set a new password for an existing one. The password is prompted for
    /// (twice, without echo) or read from standard input; never give it on the command line.
    Add {
        username: String,
        /// Read the password from the first line of standard input instead of prompting.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Remove a user.
    Remove { username: String },
    /// Print every user name, one per line.
    List,
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
        /// The spool key directory (`server.spool_keys`), needed when the spool is encrypted.
        #[arg(long)]
        keys: Option<PathBuf>,
    },
    /// Write a new encryption-at-rest key, `<id>.key`, mode 0600, into the key directory.
    Keygen {
        /// The key directory (`server.spool_keys`); created with mode 0700 if missing.
        #[arg(long)]
        directory: PathBuf,
        /// The key id (the file name without `.key`); default: the current UTC time.
        #[arg(long)]
        id: Option<String>,
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
        Command::CheckConfig { config } => load(config.as_deref())
            .and_then(|config| check_material(&config).map(|()| config))
            .map(|config| {
                println!("{}: configuration is valid", config.source);
            }),
        Command::Spool(SpoolCommand::Export {
            spool,
            output,
            keys,
        }) => spool_export::export(&spool, &output, keys.as_deref()).map(|count| {
            println!("{count} message(s) exported to {}", output.display());
        }),
        Command::Spool(SpoolCommand::Keygen { directory, id }) => {
            spool_keygen::keygen(&directory, id.as_deref()).map(|path| {
                println!(
                    "wrote {}; set server.spool_key to its id to seal new segments with it",
                    path.display()
                );
            })
        }
        Command::Queue {
            config,
            admin,
            json,
            action,
        } => admin_address(config.as_deref(), admin)
            .and_then(|address| queue::run(address, &queue_action(action), json)),
        Command::User {
            config,
            users_file,
            action,
        } => users_file_path(config.as_deref(), users_file)
            .and_then(|path| user::run(&path, user_action(action)))
            .map(|message| print!("{message}")),
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

fn queue_action(command: QueueCommand) -> queue::Action {
    match command {
        QueueCommand::List => queue::Action::List,
        QueueCommand::Show { queue_id } => queue::Action::Show(queue_id),
        QueueCommand::Flush => queue::Action::Flush,
        QueueCommand::Hold { queue_id } => queue::Action::Hold(queue_id),
        QueueCommand::Release { queue_id } => queue::Action::Release(queue_id),
        QueueCommand::Delete { queue_id } => queue::Action::Delete(queue_id),
        QueueCommand::Requeue { queue_id } => queue::Action::Requeue(queue_id),
        QueueCommand::Stats => queue::Action::Stats,
    }
}

fn user_action(command: UserCommand) -> user::Action {
    match command {
        UserCommand::Add {
            username,
            password_stdin,
        } => user::Action::Add {
            username,
            password_stdin,
        },
        UserCommand::Remove { username } => user::Action::Remove { username },
        UserCommand::List => user::Action::List,
    }
}

/// `--users-file`, else the configuration's `[auth] users_file`.
fn users_file_path(
    config: Option<&std::path::Path>,
    users_file: Option<PathBuf>,
) -> Result<PathBuf, Fatal> {
    if let Some(path) = users_file {
        return Ok(path);
    }
    let config = load(config)?;
    config.auth.users_file.ok_or_else(|| {
        Fatal::new(
            ExitReason::ConfigInvalid,
            format!("{} has no [auth] users_file", config.source),
            "add [auth] with users_file = \"/etc/postern/users\", or pass --users-file FILE",
        )
    })
}

/// `--admin`, else the configuration's `[admin] address`.
fn admin_address(
    config: Option<&std::path::Path>,
    admin: Option<std::net::SocketAddr>,
) -> Result<std::net::SocketAddr, Fatal> {
    if let Some(address) = admin {
        return Ok(address);
    }
    let config = load(config)?;
    config.admin.map(|admin| admin.address).ok_or_else(|| {
        Fatal::new(
            ExitReason::ConfigInvalid,
            format!(
                "{} has no [admin] section, so there is no API to ask",
                config.source
            ),
            "add [admin] with address = \"127.0.0.1:8025\", or pass --admin ADDR",
        )
    })
}

fn load(path: Option<&std::path::Path>) -> Result<Config, Fatal> {
    let loaded = match path {
        Some(path) => config::load(path),
        None => Ok(config::embedded_default()),
    };
    loaded.map_err(config_fatal)
}

/// Reads the files the configuration names, as `serve` will: certificates, keys and CAs.
fn check_material(config: &Config) -> Result<(), Fatal> {
    if let Some(tls) = &config.tls {
        crate::tls::InboundTls::load(tls, &config.source).map_err(config_fatal)?;
    }
    crate::tls::client::OutboundTlsConfigs::load(config).map_err(config_fatal)?;
    // The users file as `serve` would load it: present, and every line valid.
    let auth_offered = config
        .listeners
        .iter()
        .any(|listener| listener.auth != config::AuthMode::None);
    if let (true, Some(users_file)) = (auth_offered, &config.auth.users_file) {
        crate::sasl::UserTable::load(users_file).map_err(|error| {
            Fatal::new(
                ExitReason::ConfigInvalid,
                format!("{}: auth.users_file: {error}", config.source),
                "fix the line named, or (re)create the file with `postern user add NAME`",
            )
        })?;
    }
    Ok(())
}

fn config_fatal(errors: ConfigErrors) -> Fatal {
    Fatal::config(&errors)
}
