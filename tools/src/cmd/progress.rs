//! Progress of long measurements on stderr. On a terminal one line is rewritten in
//! place (`\r`) and cleared at the end; anywhere else (a log file, a pipe, CI) a
//! carriage return would pile every update into one long line, so a plain line is
//! written at most every [`LOG_INTERVAL`] (counted across phases, so a long run of
//! short phases still reports) and nothing is cleared.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Least time between two progress lines when stderr is not a terminal.
pub const LOG_INTERVAL: Duration = Duration::from_secs(5);

/// When the last plain progress line was written (the first phase's start
/// before any).
static LAST_LINE: Mutex<Option<Instant>> = Mutex::new(None);

/// One phase of progress reports (a resolution's rounds, a profile's runs).
pub struct Progress {
    terminal: bool,
}

impl Progress {
    /// Starts a phase; whether stderr is a terminal decides the style.
    pub fn new() -> Self {
        let terminal = std::io::stderr().is_terminal();
        if let Ok(mut last) = LAST_LINE.lock() {
            last.get_or_insert_with(Instant::now);
        }
        Progress { terminal }
    }

    /// Reports `what` (for example "480x640: round 3/8").
    pub fn update(&mut self, what: &str) {
        let mut err = std::io::stderr().lock();
        if self.terminal {
            let _ = write!(err, "\r{what}   ");
        } else if let Ok(mut last) = LAST_LINE.lock() {
            if last.is_none_or(|t| t.elapsed() >= LOG_INTERVAL) {
                let _ = writeln!(err, "{what}");
                *last = Some(Instant::now());
            }
        }
        let _ = err.flush();
    }
}

impl Drop for Progress {
    /// Clears the terminal line the phase wrote.
    fn drop(&mut self) {
        if self.terminal {
            let _ = write!(std::io::stderr().lock(), "\r{:<60}\r", "");
        }
    }
}
