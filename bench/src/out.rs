//! Writing the report to stdout. A closed pipe (`causeway-bench | head`)
//! ends the process quietly instead of panicking as `println!` would.

#![allow(
    clippy::print_stderr,
    reason = "a failed write to stdout is reported on stderr"
)]

use std::io::Write;

/// Writes one line to stdout.
pub(crate) fn say_line(args: std::fmt::Arguments<'_>) {
    say_raw(format_args!("{args}\n"));
}

/// Writes to stdout without a newline; see [`say_line`].
pub(crate) fn say_raw(args: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("causeway-bench: cannot write to stdout: {e}");
        std::process::exit(2);
    }
}

/// `println!` for the report: see [`say_line`].
macro_rules! say {
    ($($arg:tt)*) => { $crate::out::say_line(format_args!($($arg)*)) };
}
pub(crate) use say;
