//! Progress reporting: a redrawn bar on a terminal, plain lines otherwise.

use std::io::Write;
use std::time::{Duration, Instant};

pub trait Progress {
    /// A new step begins.
    fn stage(&mut self, name: &str);
    /// Bytes processed in the current step (`total` when known).
    fn bytes(&mut self, done: u64, total: Option<u64>);
    /// All done.
    fn finish(&mut self, summary: &str);
}

/// Reports nothing.
pub struct Quiet;

impl Progress for Quiet {
    fn stage(&mut self, _: &str) {}
    fn bytes(&mut self, _: u64, _: Option<u64>) {}
    fn finish(&mut self, _: &str) {}
}

/// Writes to stderr; `tty` selects the redrawn bar.
pub struct Console {
    tty: bool,
    start: Instant,
    stage_start: Instant,
    last_draw: Option<Instant>,
    stage: String,
}

impl Console {
    pub fn new(tty: bool) -> Console {
        Console {
            tty,
            start: Instant::now(),
            stage_start: Instant::now(),
            last_draw: None,
            stage: String::new(),
        }
    }

    fn end_line(&mut self) {
        if self.tty && self.last_draw.is_some() {
            eprintln!();
        }
        self.last_draw = None;
    }
}

fn mib(b: u64) -> f64 {
    b as f64 / (1 << 20) as f64
}

impl Progress for Console {
    fn stage(&mut self, name: &str) {
        self.end_line();
        if !self.stage.is_empty() && !self.tty {
            eprintln!("  done in {:.1}s", self.stage_start.elapsed().as_secs_f64());
        }
        self.stage = name.to_string();
        self.stage_start = Instant::now();
        eprintln!("[{:>6.1}s] {name}", self.start.elapsed().as_secs_f64());
    }

    fn bytes(&mut self, done: u64, total: Option<u64>) {
        let now = Instant::now();
        let every = if self.tty {
            Duration::from_millis(100)
        } else {
            Duration::from_secs(5)
        };
        if self.last_draw.is_some_and(|t| now - t < every) {
            return;
        }
        if self.last_draw.is_none() && !self.tty && now - self.stage_start < every {
            return;
        }
        self.last_draw = Some(now);
        let secs = self.stage_start.elapsed().as_secs_f64().max(0.001);
        let rate = mib(done) / secs;
        let line = match total {
            Some(t) if t > 0 => {
                let frac = (done as f64 / t as f64).min(1.0);
                let w = 30;
                let filled = (frac * w as f64) as usize;
                format!(
                    "  [{}{}] {:>5.1}% {:.0}/{:.0} MiB {:.0} MiB/s",
                    "#".repeat(filled),
                    " ".repeat(w - filled),
                    frac * 100.0,
                    mib(done),
                    mib(t),
                    rate
                )
            }
            _ => format!("  {:.0} MiB {:.0} MiB/s", mib(done), rate),
        };
        if self.tty {
            let mut e = std::io::stderr();
            let _ = write!(e, "\r\x1b[2K{line}");
            let _ = e.flush();
        } else {
            eprintln!("{line}");
        }
    }

    fn finish(&mut self, summary: &str) {
        self.end_line();
        eprintln!("[{:>6.1}s] {summary}", self.start.elapsed().as_secs_f64());
    }
}
