//! Renders build progress events on stderr: `tty` (live, one line per running
//! step), `plain` (one line per event) or `json` (one JSON object per event).

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use kiln_builder::progress::{Event, Reporter, Timed};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// `tty` on a terminal, else `plain`
    Auto,
    Tty,
    Plain,
    Json,
}

impl Mode {
    fn resolve(self) -> Mode {
        match self {
            Mode::Auto if std::io::stderr().is_terminal() => Mode::Tty,
            Mode::Auto => Mode::Plain,
            other => other,
        }
    }
}

struct TtyState {
    multi: MultiProgress,
    bars: BTreeMap<(String, usize), ProgressBar>,
}

/// Makes the reporter the build engine sends its events to.
pub fn reporter(mode: Mode) -> Reporter {
    match mode.resolve() {
        Mode::Json => Reporter::new(move |timed: Timed| {
            let line = serde_json::to_string(&timed).expect("events serialise");
            let _ = writeln!(std::io::stderr().lock(), "{line}");
        }),
        Mode::Plain | Mode::Auto => {
            let start = Mutex::new(BTreeMap::<(String, usize), u64>::new());
            Reporter::new(move |timed: Timed| {
                let text = plain_line(&timed, &start);
                if let Some(text) = text {
                    let _ = writeln!(std::io::stderr().lock(), "{text}");
                }
            })
        }
        Mode::Tty => {
            let state = Mutex::new(TtyState {
                multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
                bars: BTreeMap::new(),
            });
            let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
            Reporter::new(move |timed: Timed| tty_event(&state, timed, no_color))
        }
    }
}

fn prefix(build: &str, step: usize) -> String {
    if build.is_empty() {
        format!("#{step}")
    } else {
        format!("[{build}] #{step}")
    }
}

/// ` name`, or nothing for a build without a name (a lone `kiln build`).
fn spaced(name: &str) -> String {
    if name.is_empty() {
        String::new()
    } else {
        format!(" {name}")
    }
}

fn plain_line(timed: &Timed, start: &Mutex<BTreeMap<(String, usize), u64>>) -> Option<String> {
    Some(match &timed.event {
        Event::Notice { message } => message.clone(),
        Event::Warning { message } => format!("warning: {message}"),
        Event::BuildStarted { build } => format!("building{}", spaced(build)),
        Event::BuildFinished {
            build,
            digest,
            duration_ms,
        } => format!(
            "built{} {} in {:.1}s",
            spaced(build),
            digest.as_deref().unwrap_or("-"),
            *duration_ms as f64 / 1000.0
        ),
        Event::StepStarted {
            build,
            step,
            stage,
            instruction,
            location,
        } => {
            start
                .lock()
                .expect("start lock")
                .insert((build.clone(), *step), timed.time_ms);
            format!(
                "{} [{stage}] {instruction}  ({location})",
                prefix(build, *step)
            )
        }
        Event::StepCached { build, step } => format!("{} CACHED", prefix(build, *step)),
        Event::StepOutput { build, step, line } => format!("{} {line}", prefix(build, *step)),
        Event::StepFinished {
            build,
            step,
            cached,
            duration_ms,
            ..
        } => {
            if *cached {
                return None;
            }
            format!(
                "{} DONE {:.1}s",
                prefix(build, *step),
                *duration_ms as f64 / 1000.0
            )
        }
        Event::StepFailed { build, step, error } => {
            format!("{} ERROR {error}", prefix(build, *step))
        }
        Event::Transfer {
            reference,
            digest,
            action,
            bytes,
            total,
        } => {
            let short = digest.get(7..19).unwrap_or(digest);
            match total {
                Some(total) => format!("{action} {reference} {short} {bytes}/{total} bytes"),
                None => format!("{action} {reference} {short} {bytes} bytes"),
            }
        }
    })
}

fn tty_event(state: &Mutex<TtyState>, timed: Timed, no_color: bool) {
    let mut state = state.lock().expect("tty lock");
    let running = ProgressStyle::with_template("{spinner} {prefix} {msg} {elapsed}")
        .expect("template")
        .tick_chars("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏ ");
    match timed.event {
        Event::StepStarted {
            build,
            step,
            stage,
            instruction,
            ..
        } => {
            let bar = state.multi.add(ProgressBar::new_spinner());
            bar.set_style(running);
            bar.set_prefix(prefix(&build, step));
            bar.set_message(format!("[{stage}] {instruction}"));
            bar.enable_steady_tick(Duration::from_millis(100));
            state.bars.insert((build, step), bar);
        }
        Event::StepCached { build, step } => {
            if let Some(bar) = state.bars.remove(&(build, step)) {
                let done = if no_color {
                    "CACHED"
                } else {
                    "\x1b[34mCACHED\x1b[0m"
                };
                bar.set_style(ProgressStyle::with_template("  {prefix} {msg}").expect("template"));
                bar.finish_with_message(format!("{} {done}", bar.message()));
            }
        }
        Event::StepOutput { build, step, line } => {
            if state.bars.contains_key(&(build.clone(), step)) {
                let _ = state.multi.println(format!("    {line}"));
            }
        }
        Event::StepFinished {
            build,
            step,
            duration_ms,
            ..
        } => {
            if let Some(bar) = state.bars.remove(&(build, step)) {
                bar.set_style(ProgressStyle::with_template("  {prefix} {msg}").expect("template"));
                bar.finish_with_message(format!(
                    "{} {:.1}s",
                    bar.message(),
                    duration_ms as f64 / 1000.0
                ));
            }
        }
        Event::StepFailed { build, step, error } => {
            if let Some(bar) = state.bars.remove(&(build, step)) {
                bar.abandon_with_message(format!("{} ERROR: {error}", bar.message()));
            }
        }
        Event::Notice { message } => {
            let _ = state.multi.println(message);
        }
        Event::Warning { message } => {
            let _ = state.multi.println(format!("warning: {message}"));
        }
        Event::BuildStarted { .. } | Event::BuildFinished { .. } | Event::Transfer { .. } => {}
    }
}
