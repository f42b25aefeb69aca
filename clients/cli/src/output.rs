//! Everything `vanna` prints on stdout goes through [`outln!`], so that a
//! closed stdout (`vanna demo | head -2`) is handled in one place: the reader
//! has all it wanted, so the process ends at once, quietly, with exit 0. Any
//! other write failure (a full disk) ends it with exit 1 and the reason.
//!
//! Chosen over resetting SIGPIPE to its default: that needs `unsafe` FFI,
//! ends the process by a signal rather than exit 0, and would apply to every
//! pipe and socket the process writes (the feeder's HTTP sources, the node
//! later), where a closed peer is an error to handle, not a reason to die.
//! `clippy.toml` forbids `print!`/`println!` in this crate so nothing bypasses it.

/// Prints one line on stdout, like `println!`, through [`line`].
macro_rules! outln {
    () => {
        $crate::output::line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::output::line(format_args!($($arg)*))
    };
}

/// Writes `text` and a newline on stdout. A write that fails ends the
/// process: quietly with exit 0 when the reader has gone (broken pipe), else
/// with the reason and exit 1.
pub fn line(text: std::fmt::Arguments) {
    // Unit tests print through `println!` so that the test harness captures it.
    #[cfg(test)]
    #[allow(clippy::disallowed_macros)]
    {
        println!("{text}");
    }
    #[cfg(not(test))]
    {
        use std::io::Write;
        if let Err(error) = writeln!(std::io::stdout().lock(), "{text}") {
            if error.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
            eprintln!("error: cannot write to stdout: {error}");
            std::process::exit(1);
        }
    }
}

/// Prints `report` as JSON when asked, else as the human summary.
pub fn emit<T: serde::Serialize>(json: bool, report: &T, human: impl FnOnce(&T)) -> crate::CliResult {
    if json {
        outln!("{}", serde_json::to_string_pretty(report)?);
    } else {
        human(report);
    }
    Ok(())
}
