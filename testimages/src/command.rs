//! Running the host tools (openssl, skopeo, debootstrap, chroot, mount) with
//! errors that say which command failed and what it printed.

use std::ffi::OsStr;
use std::process::{Command, Output};

use crate::Error;

/// Renders a command line for error messages.
pub(crate) fn describe(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(OsStr::to_string_lossy)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `command` to completion; fails unless it exits 0. Returns its output.
pub(crate) fn run(command: &mut Command) -> Result<Output, Error> {
    let output = command.output().map_err(|source| Error::Spawn {
        program: command.get_program().to_string_lossy().into_owned(),
        source,
    })?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(Error::Command {
            command: describe(command),
            status: output.status.to_string(),
            stderr: tail(&String::from_utf8_lossy(&output.stderr), 4000),
        })
    }
}

/// Runs `command` and returns its standard output as text.
pub(crate) fn stdout(command: &mut Command) -> Result<String, Error> {
    let output = run(command)?;
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The last `max` bytes of `text` (on a char boundary), for error messages.
pub(crate) fn tail(text: &str, max: usize) -> String {
    let text = text.trim_end();
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failing_command_reports_its_stderr() {
        let err = run(Command::new("sh").args(["-c", "echo oops >&2; exit 3"])).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("sh -c"), "{text}");
        assert!(text.contains("oops"), "{text}");
        assert!(text.contains('3'), "{text}");
    }

    #[test]
    fn missing_program_is_a_spawn_error() {
        let err = run(&mut Command::new("kiln-no-such-program")).unwrap_err();
        assert!(matches!(err, Error::Spawn { .. }), "{err}");
    }

    #[test]
    fn tail_keeps_the_end() {
        assert_eq!(tail("abcdef\n", 3), "def");
        assert_eq!(tail("ab", 10), "ab");
        assert_eq!(tail("aé", 1), "");
    }
}
