//! The `postern` binary: parses the command line and hands over to `postern::cli`.
//!
//! Everything testable lives in the library; this file only turns the outcome into a process exit
//! status, so that every way out of the program goes through one place.

fn main() -> std::process::ExitCode {
    postern::cli::main()
}
