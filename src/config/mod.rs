//! Configuration: TOML text in, validated values out.
//!
//! Parsing runs in two stages. The `toml` crate turns text into a plain table (a syntax error
//! stops here, as one error with its line and column); then the section builders walk that table
//! by hand and collect every problem they find, whether a wrong type, an unknown key, a value out
//! of range, a missing key or two keys that contradict each other, so that one run of
//! `postern check-config` lists them all. A [`Config`] is only returned when nothing was wrong.
//!
//! This module knows nothing of the runtime: it opens no sockets, creates no directories and
//! resolves no names. Its only I/O is reading the file it is given, asking for the system host
//! name, and checking that the key files it names can be opened.

mod cross;
mod error;
mod model;
mod names;
mod sections;
pub mod units;
mod walk;

use std::path::Path;

use toml::Table;

pub use error::{ConfigError, ConfigErrors, EXIT_INVALID_CONFIG};
pub use model::*;
pub use units::{parse_duration, parse_size_bytes};

use error::Errors;
use sections::SystemHostname;
use walk::Fields;

/// The configuration used when no file is given: loopback listener on port 2525, a spool under
/// the working directory, relaying for loopback clients, delivery by MX.
pub const DEFAULT_TOML: &str = include_str!("default.toml");

/// The name errors and logs give to [`DEFAULT_TOML`].
pub const EMBEDDED_SOURCE: &str = "<embedded default>";

/// Parses and validates `text`; `source` names the file in every error.
pub fn parse(text: &str, source: &str) -> Result<Config, ConfigErrors> {
    parse_with_hostname(text, source, &system_hostname)
}

/// Reads and parses the file at `path`. A file that cannot be read is a single error.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let source = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text, &source),
        Err(error) => {
            let mut errors = Errors::new(&source);
            errors.push(
                "(file)",
                format!("cannot read the configuration file: {error}"),
            );
            Err(errors.into_result().expect_err("one error was just pushed"))
        }
    }
}

/// The parsed [`DEFAULT_TOML`].
///
/// Without a file there is nobody to blame for an unusable system host name, so this falls back
/// to `localhost` rather than refusing to start the trial set-up.
pub fn embedded_default() -> Config {
    let hostname = || {
        let usable = system_hostname()
            .ok()
            .filter(|name| names::hostname(name).is_ok());
        Ok(usable.unwrap_or_else(|| "localhost".to_owned()))
    };
    parse_with_hostname(DEFAULT_TOML, EMBEDDED_SOURCE, &hostname)
        .expect("DEFAULT_TOML is valid (test embedded_default_parses) and the host name is usable")
}

/// [`parse`] with the source of the system host name supplied by the caller.
fn parse_with_hostname(
    text: &str,
    source: &str,
    system_hostname: SystemHostname<'_>,
) -> Result<Config, ConfigErrors> {
    let mut errors = Errors::new(source);
    let root: Table = match text.parse() {
        Ok(root) => root,
        Err(error) => {
            errors.push(syntax_place(text, &error), one_line(error.message()));
            return Err(errors.into_result().expect_err("one error was just pushed"));
        }
    };
    let fields = Fields::new(&mut errors, "", &root, sections::ROOT_KEYS);

    let server = sections::server(&mut errors, fields.get("server"), system_hostname);
    let listeners = sections::listeners(&mut errors, fields.get("listener"));
    let tls = sections::tls(&mut errors, fields.get("tls"));
    let relay = sections::relay(&mut errors, fields.get("relay"));
    let smtp = sections::smtp(&mut errors, fields.get("smtp"));
    let routes = sections::routes(&mut errors, fields.get("route"));
    let dkim = sections::dkim(&mut errors, fields.get("dkim"));
    let dns = sections::dns(&mut errors, fields.get("dns"));
    let admin = sections::admin(&mut errors, fields.get("admin"));
    let log = sections::log(&mut errors, fields.get("log"));

    cross::listeners(&mut errors, &listeners, fields.get("tls").is_some());
    cross::routes(&mut errors, &routes);
    cross::dkim(&mut errors, &dkim);
    cross::admin(&mut errors, admin.as_ref(), &listeners);
    errors.into_result()?;

    Ok(Config {
        source: source.to_owned(),
        server,
        listeners: without_index(listeners),
        tls,
        relay,
        smtp,
        routes: without_index(routes),
        dkim: without_index(dkim),
        dns,
        admin,
        log,
    })
}

fn system_hostname() -> Result<String, String> {
    let name = nix::unistd::gethostname()
        .map_err(|error| format!("the system host name cannot be read ({error})"))?;
    name.into_string()
        .map_err(|name| format!("the system host name {name:?} is not valid UTF-8"))
}

/// `line L, column C` (both from 1) for a TOML syntax error, standing in for a key path.
fn syntax_place(text: &str, error: &toml::de::Error) -> String {
    let Some(span) = error.span() else {
        return "(syntax)".to_owned();
    };
    let before = &text.as_bytes()[..span.start.min(text.len())];
    let line = before.iter().filter(|&&byte| byte == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&byte| byte == b'\n')
        .map_or(0, |newline| newline + 1);
    let column = String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count()
        + 1;
    format!("line {line}, column {column}")
}

/// Keeps each error on one line of output, whatever the TOML parser put in its message.
fn one_line(message: &str) -> String {
    let lines: Vec<&str> = message
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect();
    format!("TOML syntax error: {}", lines.join("; "))
}

fn without_index<T>(entries: Vec<(usize, T)>) -> Vec<T> {
    entries.into_iter().map(|(_, entry)| entry).collect()
}
