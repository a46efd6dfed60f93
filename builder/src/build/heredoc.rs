//! `RUN` with heredocs, run as BuildKit's `dispatchRun` runs them.
//!
//! - The command is exactly one heredoc (`RUN <<EOF`):
//!   - its body starts with `#!`: the body is written to a 0755 file bound read-only at
//!     `/dev/pipes/<NAME>` (outside the layer) and the shell runs that path, so the
//!     kernel runs the `#!` interpreter;
//!   - otherwise the body itself is the shell's command string (`sh -c BODY`).
//!
//!   `<<-` removes leading tabs from the body first. As in BuildKit the delimiter's
//!   quoting does not stop the shell from expanding the body here.
//! - Anything else (`RUN python3 <<EOF`, `RUN cat <<A <<B`): the command line with
//!   each body and delimiter appended on their own lines goes to the shell, which
//!   handles the heredocs itself (`<<-`, quoted delimiters, file descriptors).
//!
//! Exec-form RUN never has heredocs (the parser rejects them).

use std::os::unix::fs::OpenOptionsExt;

use super::*;

/// Where BuildKit mounts a heredoc script with a `#!` line.
const PIPES_DIR: &str = "/dev/pipes";

/// The argv of a heredoc `RUN`, and the script file to bind (if any).
pub(super) struct HeredocCommand {
    pub argv: Vec<String>,
    pub mounts: Vec<executor::Mount>,
}

/// True when `command` is nothing but a heredoc marker (`<<EOF`, `<<-"EOF"`,
/// `<<E"O"F`, `3<<EOF`): BuildKit's `^(\d*)<<(-?)([^<]*)$` with a single word after.
fn is_only_heredoc(command: &str) -> bool {
    let rest = command
        .trim()
        .trim_start_matches(|c: char| c.is_ascii_digit());
    let Some(rest) = rest.strip_prefix("<<") else {
        return false;
    };
    let word = rest.strip_prefix('-').unwrap_or(rest).trim();
    !word.is_empty() && !word.contains('<') && !word.contains(char::is_whitespace)
}

/// The argv for `run` (shell form with heredocs), writing a `#!` script into
/// `script_dir` when needed.
pub(super) fn command(
    config: &ImageConfig,
    run: &dockerfile::RunStep,
    script_dir: &Path,
) -> Result<HeredocCommand, Error> {
    let CommandLine::Shell(line) = &run.command else {
        return Ok(HeredocCommand {
            argv: command_vec(config, &run.command),
            mounts: Vec::new(),
        });
    };
    let first = &run.heredocs[0];
    let shell = |text: String| command_vec(config, &CommandLine::Shell(text));
    if run.heredocs.len() == 1 && is_only_heredoc(line) {
        let body = first.body();
        if body.starts_with("#!") {
            let script = script_dir.join(&first.name);
            write_script(&script, body.as_bytes()).map_err(io_err(&script))?;
            let target = format!("{PIPES_DIR}/{}", first.name);
            return Ok(HeredocCommand {
                argv: shell(target.clone()),
                mounts: vec![executor::Mount::Bind {
                    source: script,
                    target: PathBuf::from(target),
                    readonly: true,
                }],
            });
        }
        return Ok(HeredocCommand {
            argv: shell(body),
            mounts: Vec::new(),
        });
    }
    let mut full = line.clone();
    for heredoc in &run.heredocs {
        full.push('\n');
        full.push_str(&heredoc.content);
        full.push_str(&heredoc.name);
    }
    Ok(HeredocCommand {
        argv: shell(full),
        mounts: Vec::new(),
    })
}

fn write_script(path: &Path, body: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o755)
        .open(path)?;
    file.write_all(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frontend::dockerfile::{Heredoc, NetworkMode, SecurityMode};

    fn run_step(line: &str, heredocs: &[(&str, &str, bool)]) -> dockerfile::RunStep {
        dockerfile::RunStep {
            command: CommandLine::Shell(line.into()),
            heredocs: heredocs
                .iter()
                .map(|(name, content, chomp)| Heredoc {
                    name: (*name).into(),
                    content: (*content).into(),
                    expand: true,
                    chomp: *chomp,
                    fd: 0,
                })
                .collect(),
            mounts: Vec::new(),
            network: NetworkMode::Default,
            security: SecurityMode::Sandbox,
        }
    }

    #[test]
    fn marker_detection_follows_buildkit() {
        for marker in [
            "<<EOF",
            "<<-EOF",
            "<<'EOF'",
            "<<\"EOF\"",
            "<<E\"O\"F",
            "3<<EOF",
        ] {
            assert!(is_only_heredoc(marker), "{marker}");
        }
        assert!(!is_only_heredoc("cat <<EOF"));
        assert!(!is_only_heredoc("<<A <<B"));
        assert!(!is_only_heredoc("<<EOF > /out"));
    }

    #[test]
    fn single_heredoc_is_the_shell_command() {
        let dir = tempfile::tempdir().unwrap();
        let config = ImageConfig::default();
        let made = command(
            &config,
            &run_step("<<-EOF", &[("EOF", "\techo hi\n", true)]),
            dir.path(),
        )
        .unwrap();
        assert_eq!(made.argv, vec!["/bin/sh", "-c", "echo hi\n"]);
        assert!(made.mounts.is_empty());
    }

    #[test]
    fn shebang_heredoc_becomes_a_script_under_dev_pipes() {
        let dir = tempfile::tempdir().unwrap();
        let config = ImageConfig::default();
        let body = "#!/usr/bin/env python3\nprint('hi')\n";
        let made = command(
            &config,
            &run_step("<<EOF", &[("EOF", body, false)]),
            dir.path(),
        )
        .unwrap();
        assert_eq!(made.argv, vec!["/bin/sh", "-c", "/dev/pipes/EOF"]);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("EOF")).unwrap(),
            body
        );
        assert!(
            matches!(&made.mounts[..], [executor::Mount::Bind { target, readonly: true, .. }] if target == Path::new("/dev/pipes/EOF"))
        );
    }

    #[test]
    fn other_forms_go_to_the_shell_whole() {
        let dir = tempfile::tempdir().unwrap();
        let config = ImageConfig::default();
        let made = command(
            &config,
            &run_step(
                "cat <<A - <<B",
                &[("A", "a\n", false), ("B", "\tb\n", true)],
            ),
            dir.path(),
        )
        .unwrap();
        assert_eq!(made.argv[2], "cat <<A - <<B\na\nA\n\tb\nB");
    }
}
