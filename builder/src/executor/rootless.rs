//! Rootless kiln: become root of a user namespace before doing anything else, as
//! `buildah unshare` does.
//!
//! [`ensure_root_in_userns`] is the first call of `main`, before any thread starts:
//!
//! - already uid 0: returns [`UsernsMode::Root`] (the initial namespace) or the mode of
//!   the namespace we are in (kiln run inside `buildah unshare`, a rootless container);
//! - otherwise it re-executes `/proc/self/exe` with the same arguments in new user and
//!   mount namespaces. The child (blocked before `exec`) sends its pid through a pipe;
//!   the parent maps ids — `0 → uid`, `1..=N → the user's /etc/subuid ranges` with
//!   `newuidmap`/`newgidmap` — or, without subordinate ids (or without the helpers), a
//!   single-id map `0 → uid` it writes itself; then releases the child. The parent
//!   forwards the signals sent to it and ends the way the child ends; it never returns.
//!   The re-executed process sees the environment marker [`MARKER`], checks it is
//!   uid 0 and returns [`UsernsMode::Mapped`] or [`UsernsMode::SingleId`].
//!
//! Unpacking layers, overlay mounts (`userxattr`) and `RUN` all happen as that root,
//! so they share one id map: `chown 1000` in a step stores uid `subuid_start + 999` on
//! disk, and an unpacked layer's files keep their ids inside the namespace. With a
//! single-id map only uid/gid 0 exist: `chown` to any other id fails, and
//! [`UsernsMode::warning`] says so.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::process::Command;

use super::{Error, sys};
use crate::progress::Event;

/// Environment variable marking the re-executed child.
pub const MARKER: &str = "_KILN_USERNS_CHILD";

/// One line of `/proc/<pid>/uid_map` or `gid_map`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    pub inside: u32,
    pub outside: u32,
    pub count: u32,
}

/// Which identity kiln builds with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UsernsMode {
    /// Real root, no user namespace.
    Root,
    /// Root of a user namespace with more than one id mapped (subordinate ranges).
    Mapped {
        uid_map: Vec<IdRange>,
        gid_map: Vec<IdRange>,
    },
    /// Root of a user namespace where only 0 is mapped (to `uid`/`gid` outside).
    SingleId { uid: u32, gid: u32 },
}

impl UsernsMode {
    /// Read the mode of the current process from `/proc/self/{uid,gid}_map`.
    pub fn current() -> Result<UsernsMode, Error> {
        let read = |path: &str| {
            std::fs::read_to_string(path).map_err(|source| Error::Userns {
                what: format!("reading {path}"),
                source,
            })
        };
        let uid_map = parse_id_map(&read("/proc/self/uid_map")?);
        let gid_map = parse_id_map(&read("/proc/self/gid_map")?);
        let identity = |map: &[IdRange]| {
            map.len() == 1 && map[0].inside == 0 && map[0].outside == 0 && map[0].count == u32::MAX
        };
        let mapped_ids =
            |map: &[IdRange]| map.iter().map(|range| u64::from(range.count)).sum::<u64>();
        Ok(if identity(&uid_map) {
            UsernsMode::Root
        } else if mapped_ids(&uid_map) <= 1 {
            UsernsMode::SingleId {
                uid: uid_map.first().map_or(0, |range| range.outside),
                gid: gid_map.first().map_or(0, |range| range.outside),
            }
        } else {
            UsernsMode::Mapped { uid_map, gid_map }
        })
    }

    /// The event to show the user: a notice for a mapped namespace, a warning for the
    /// single-id mode, nothing for real root.
    pub fn event(&self) -> Option<Event> {
        match self {
            UsernsMode::Root => None,
            UsernsMode::Mapped { uid_map, .. } => {
                let count: u64 = uid_map.iter().map(|range| u64::from(range.count)).sum();
                Some(Event::Notice {
                    message: format!(
                        "rootless: user namespace with {count} mapped ids (/etc/subuid)"
                    ),
                })
            }
            UsernsMode::SingleId { uid, .. } => Some(Event::Warning {
                message: self
                    .warning()
                    .unwrap_or_else(|| format!("rootless single-id mode (uid {uid})")),
            }),
        }
    }

    /// The single-id mode's warning text.
    pub fn warning(&self) -> Option<String> {
        match self {
            UsernsMode::SingleId { uid, .. } => Some(format!(
                "rootless single-id mode: no subordinate ids for uid {uid} in /etc/subuid and /etc/subgid \
                 (or no newuidmap/newgidmap), so only root exists in builds; steps that chown to other \
                 users (apt-get, useradd) will fail. Add a range with `usermod --add-subuids 100000-165535 \
                 --add-subgids 100000-165535 USER`."
            )),
            _ => None,
        }
    }
}

/// Parse an id map (`inside outside count` per line); malformed lines are skipped.
pub fn parse_id_map(text: &str) -> Vec<IdRange> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace().map(str::parse::<u32>);
            Some(IdRange {
                inside: fields.next()?.ok()?,
                outside: fields.next()?.ok()?,
                count: fields.next()?.ok()?,
            })
        })
        .collect()
}

/// Subordinate id ranges (`start`, `count`) for `user` (name or uid) in a
/// `/etc/subuid`-format file.
pub fn subordinate_ranges(text: &str, name: Option<&str>, id: u32) -> Vec<(u32, u32)> {
    let id = id.to_string();
    text.lines()
        .filter_map(|line| {
            let mut fields = line.trim().split(':');
            let owner = fields.next()?;
            if owner != id && Some(owner) != name {
                return None;
            }
            let start = fields.next()?.trim().parse().ok()?;
            let count: u32 = fields.next()?.trim().parse().ok()?;
            (count > 0).then_some((start, count))
        })
        .collect()
}

/// Become root of a user namespace (see the module docs). Returns in the process that
/// is (or became) root; in the original unprivileged process it never returns.
pub fn ensure_root_in_userns() -> Result<UsernsMode, Error> {
    let uid = rustix::process::getuid().as_raw();
    if std::env::var_os(MARKER).is_some() {
        if uid != 0 {
            return Err(Error::UsernsNotRoot { uid });
        }
        return UsernsMode::current();
    }
    if uid == 0 {
        return UsernsMode::current();
    }
    let status = reexec_in_userns(uid, rustix::process::getgid().as_raw())?;
    sys::die_like(status)
}

/// The id-mapping commands for a child pid, or `None` for the single-id map.
#[derive(Debug)]
struct MapPlan {
    user: String,
    uid_args: Vec<String>,
    gid_args: Vec<String>,
}

fn find_helper(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .chain(["/usr/bin".into(), "/bin".into()])
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

fn user_name(uid: u32) -> Option<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        (fields.nth(1)?.parse::<u32>().ok()? == uid).then(|| name.to_owned())
    })
}

fn map_args(outside_self: u32, ranges: &[(u32, u32)]) -> Vec<String> {
    let mut args = vec!["0".to_owned(), outside_self.to_string(), "1".to_owned()];
    let mut inside: u64 = 1;
    for &(start, count) in ranges {
        args.extend([inside.to_string(), start.to_string(), count.to_string()]);
        inside += u64::from(count);
    }
    args
}

fn plan_maps(uid: u32, gid: u32) -> Option<(MapPlan, std::path::PathBuf, std::path::PathBuf)> {
    let name = user_name(uid);
    let subuid = std::fs::read_to_string("/etc/subuid").unwrap_or_default();
    let subgid = std::fs::read_to_string("/etc/subgid").unwrap_or_default();
    let uid_ranges = subordinate_ranges(&subuid, name.as_deref(), uid);
    let gid_ranges = subordinate_ranges(&subgid, name.as_deref(), uid);
    if uid_ranges.is_empty() || gid_ranges.is_empty() {
        return None;
    }
    let newuidmap = find_helper("newuidmap")?;
    let newgidmap = find_helper("newgidmap")?;
    Some((
        MapPlan {
            user: name.unwrap_or_else(|| uid.to_string()),
            uid_args: map_args(uid, &uid_ranges),
            gid_args: map_args(gid, &gid_ranges),
        },
        newuidmap,
        newgidmap,
    ))
}

fn userns_error(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Userns { what, source }
}

/// Write the maps of `pid`'s new user namespace.
fn write_maps(pid: i32, uid: u32, gid: u32) -> Result<(), Error> {
    match plan_maps(uid, gid) {
        Some((plan, newuidmap, newgidmap)) => {
            for (program, helper, args) in [
                ("newuidmap", newuidmap, &plan.uid_args),
                ("newgidmap", newgidmap, &plan.gid_args),
            ] {
                let status = Command::new(&helper)
                    .arg(pid.to_string())
                    .args(args)
                    .status()
                    .map_err(userns_error(format!("running {}", helper.display())))?;
                if !status.success() {
                    return Err(Error::IdMapHelper {
                        program,
                        user: plan.user.clone(),
                        status,
                    });
                }
            }
        }
        None => {
            // An unprivileged process may map its own ids, once, with setgroups denied.
            for (file, contents) in [
                ("uid_map", format!("0 {uid} 1\n")),
                ("setgroups", "deny\n".to_owned()),
                ("gid_map", format!("0 {gid} 1\n")),
            ] {
                let path = format!("/proc/{pid}/{file}");
                std::fs::write(&path, contents).map_err(userns_error(format!("writing {path}")))?;
            }
        }
    }
    Ok(())
}

fn reexec_in_userns(uid: u32, gid: u32) -> Result<std::process::ExitStatus, Error> {
    let pipe = || {
        rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
            .map_err(|errno| userns_error("creating a pipe")(errno.into()))
    };
    let (ready_read, ready_write) = pipe()?;
    let (go_read, go_write) = pipe()?;

    // The mapper runs while `spawn` blocks (std's spawn waits for the child's exec,
    // which waits for the maps).
    let mapper = std::thread::spawn(move || -> Result<(), Error> {
        let mut ready = std::fs::File::from(ready_read);
        let mut go = std::fs::File::from(go_write);
        let mut pid_bytes = [0u8; 4];
        if ready.read_exact(&mut pid_bytes).is_err() {
            // The child failed before unsharing; spawn reports why.
            return Ok(());
        }
        let pid = i32::from_ne_bytes(pid_bytes);
        let result = write_maps(pid, uid, gid);
        let verdict = if result.is_ok() { 1u8 } else { 0u8 };
        go.write_all(&[verdict])
            .map_err(userns_error("releasing the re-executed child"))?;
        result
    });

    let mut command = Command::new("/proc/self/exe");
    let mut args = std::env::args_os();
    if let Some(arg0) = args.next() {
        std::os::unix::process::CommandExt::arg0(&mut command, arg0);
    }
    command.args(args).env(MARKER, "1");
    let spawned =
        sys::spawn_in_new_userns(&mut command, ready_write.as_raw_fd(), go_read.as_raw_fd());
    drop(ready_write);
    drop(go_read);
    let mapped = mapper.join().unwrap_or_else(|_| {
        Err(userns_error("id mapper thread")(std::io::Error::other(
            "panicked",
        )))
    });
    let mut child = match (spawned, mapped) {
        (_, Err(error)) => return Err(error),
        (Err(source), Ok(())) => {
            return Err(Error::Userns {
                what: "re-executing kiln in a new user namespace".into(),
                source,
            });
        }
        (Ok(child), Ok(())) => child,
    };
    sys::forward_signals_to(child.id()).map_err(userns_error("installing signal forwarding"))?;
    child
        .wait()
        .map_err(userns_error("waiting for the re-executed kiln"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_maps_parse() {
        let map =
            parse_id_map("         0       1001          1\n         1     100000      65536\n");
        assert_eq!(
            map,
            vec![
                IdRange {
                    inside: 0,
                    outside: 1001,
                    count: 1
                },
                IdRange {
                    inside: 1,
                    outside: 100000,
                    count: 65536
                },
            ]
        );
    }

    #[test]
    fn subordinate_ranges_match_name_or_uid() {
        let text = "alice:100000:65536\n1001:300000:10\nbob:200000:65536\nalice:500000:0\n";
        assert_eq!(
            subordinate_ranges(text, Some("alice"), 1000),
            vec![(100000, 65536)]
        );
        assert_eq!(
            subordinate_ranges(text, Some("carol"), 1001),
            vec![(300000, 10)]
        );
        assert!(subordinate_ranges(text, None, 42).is_empty());
    }

    #[test]
    fn map_arguments_stack_ranges_after_zero() {
        assert_eq!(
            map_args(1001, &[(100000, 65536), (300000, 10)]),
            [
                "0", "1001", "1", "1", "100000", "65536", "65537", "300000", "10"
            ]
        );
    }
}
