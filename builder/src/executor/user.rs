//! `USER` resolution against the image's `/etc/passwd` and `/etc/group`, with runc's
//! rules (`moby/sys/user.GetExecUser`), which Docker and BuildKit use:
//!
//! - `""` means uid 0; `name` or `uid`, optionally `:group` or `:gid`;
//! - a user matches a passwd entry by name, or (numeric) by name or uid; a name with no
//!   entry is an error with Docker's message, a numeric uid with no entry is used as
//!   is with gid 0 and home `/`;
//! - an explicit group is looked up the same way in `/etc/group` (by name, or numeric
//!   by name or gid); without one, the primary gid is the passwd entry's and the
//!   supplementary groups are every group listing the user's name as a member.
//!
//! The files are read through the overlay stack without mounting it: top-most layer
//! first, honouring whiteouts (`0:0` character devices), opaque directories and
//! symlinks inside the rootfs.

use std::os::unix::fs::FileTypeExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use super::{Error, Rootfs, User};

/// Ids above this are refused, as runc does.
const MAX_ID: u64 = (1 << 31) - 1;

/// Resolve a Docker `USER` value (`name[:group]`, `uid[:gid]`) in `rootfs`.
pub fn resolve_user(rootfs: &Rootfs, spec: &str) -> Result<User, Error> {
    let layers: Vec<&Path> = match rootfs {
        Rootfs::Overlay { lowers, upper, .. } => std::iter::once(upper.as_path())
            .chain(lowers.iter().map(PathBuf::as_path))
            .collect(),
        Rootfs::Dir(dir) => vec![dir.as_path()],
    };
    let passwd = read_layered(&layers, Path::new("etc/passwd"))?.unwrap_or_default();
    let group = read_layered(&layers, Path::new("etc/group"))?.unwrap_or_default();
    resolve_from_files(spec, &passwd, &group)
}

#[derive(Debug)]
struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

#[derive(Debug)]
struct GroupEntry<'a> {
    name: &'a str,
    gid: u32,
    members: Vec<&'a str>,
}

fn passwd_entries(passwd: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    passwd.lines().filter_map(|line| {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return None;
        }
        let fields: Vec<&str> = line.split(':').collect();
        Some(PasswdEntry {
            name: fields.first()?,
            uid: fields.get(2)?.parse().ok()?,
            gid: fields.get(3)?.parse().ok()?,
            home: fields.get(5).copied().unwrap_or(""),
        })
    })
}

fn group_entries(group: &str) -> impl Iterator<Item = GroupEntry<'_>> {
    group.lines().filter_map(|line| {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return None;
        }
        let fields: Vec<&str> = line.split(':').collect();
        Some(GroupEntry {
            name: fields.first()?,
            gid: fields.get(2)?.parse().ok()?,
            members: fields
                .get(3)
                .map(|list| {
                    list.split(',')
                        .map(str::trim)
                        .filter(|m| !m.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
        })
    })
}

fn parse_id(spec: &str, value: &str) -> Result<Option<u32>, Error> {
    match value.parse::<u64>() {
        Ok(id) if id <= MAX_ID => Ok(Some(id as u32)),
        Ok(_) => Err(Error::InvalidUser {
            spec: spec.to_owned(),
            reason: "uids and gids must be in range 0-2147483647",
        }),
        Err(_) => Ok(None),
    }
}

/// The resolution itself, on the files' contents.
fn resolve_from_files(spec: &str, passwd: &str, group: &str) -> Result<User, Error> {
    let (user_arg, group_arg) = match spec.split_once(':') {
        Some((user, group)) => (user, Some(group)),
        None => (spec, None),
    };
    let user_arg = if user_arg.is_empty() { "0" } else { user_arg };
    let numeric_uid = parse_id(spec, user_arg)?;

    let matched = passwd_entries(passwd)
        .find(|entry| entry.name == user_arg || numeric_uid == Some(entry.uid));
    let mut user = match (&matched, numeric_uid) {
        (Some(entry), _) => User {
            uid: entry.uid,
            gid: entry.gid,
            additional_gids: Vec::new(),
            home: if entry.home.is_empty() {
                "/"
            } else {
                entry.home
            }
            .to_owned(),
        },
        (None, Some(uid)) => User {
            uid,
            gid: 0,
            additional_gids: Vec::new(),
            home: "/".to_owned(),
        },
        (None, None) => {
            return Err(Error::UnknownUser {
                name: user_arg.to_owned(),
            });
        }
    };

    match group_arg {
        Some(group_arg) if !group_arg.is_empty() => {
            let numeric_gid = parse_id(spec, group_arg)?;
            let found = group_entries(group)
                .find(|entry| entry.name == group_arg || numeric_gid == Some(entry.gid));
            user.gid = match (found, numeric_gid) {
                (Some(entry), _) => entry.gid,
                (None, Some(gid)) => gid,
                (None, None) => {
                    return Err(Error::UnknownGroup {
                        name: group_arg.to_owned(),
                    });
                }
            };
        }
        _ => {
            if let Some(entry) = &matched {
                for group in group_entries(group) {
                    if group.members.contains(&entry.name)
                        && !user.additional_gids.contains(&group.gid)
                    {
                        user.additional_gids.push(group.gid);
                    }
                }
            }
        }
    }
    Ok(user)
}

/// Symlinks followed at most, as the kernel's `MAXSYMLINKS`.
const MAX_SYMLINKS: usize = 40;

fn is_whiteout(metadata: &std::fs::Metadata) -> bool {
    metadata.file_type().is_char_device() && metadata.rdev() == 0
}

fn is_opaque(dir: &Path) -> bool {
    ["user.overlay.opaque", "trusted.overlay.opaque"]
        .iter()
        .any(|name| {
            let mut value = [0u8; 4];
            matches!(rustix::fs::lgetxattr(dir, *name, &mut value), Ok(1) if value[0] == b'y')
        })
}

/// What one layer says about a path.
enum Lookup {
    /// Not in this layer; look further down (unless `stop`, an opaque parent).
    Absent {
        stop: bool,
    },
    /// Deleted by a whiteout: hidden from the layers below.
    WhitedOut,
    Found(PathBuf, std::fs::Metadata),
}

fn lookup_in_layer(layer: &Path, relative: &Path) -> Lookup {
    let mut current = layer.to_path_buf();
    let mut stop = false;
    let count = relative.components().count();
    for (i, component) in relative.components().enumerate() {
        current.push(component);
        let metadata = match std::fs::symlink_metadata(&current) {
            Ok(metadata) => metadata,
            Err(_) => return Lookup::Absent { stop },
        };
        if is_whiteout(&metadata) {
            return Lookup::WhitedOut;
        }
        if i + 1 == count {
            return Lookup::Found(current, metadata);
        }
        if !metadata.is_dir() {
            // A file or symlink where a directory is needed: this layer decides.
            return Lookup::Found(current, metadata);
        }
        stop = stop || is_opaque(&current);
    }
    Lookup::Absent { stop }
}

/// Read `relative` (no leading `/`) through the layers, top-most first.
fn read_layered(layers: &[&Path], relative: &Path) -> Result<Option<String>, Error> {
    let mut wanted = relative.to_path_buf();
    for _ in 0..MAX_SYMLINKS {
        let mut found = None;
        for layer in layers {
            match lookup_in_layer(layer, &wanted) {
                Lookup::Absent { stop: false } => continue,
                Lookup::Absent { stop: true } | Lookup::WhitedOut => break,
                Lookup::Found(path, metadata) => {
                    found = Some((layer, path, metadata));
                    break;
                }
            }
        }
        let Some((layer, path, metadata)) = found else {
            return Ok(None);
        };
        if metadata.file_type().is_symlink() {
            let target = std::fs::read_link(&path).map_err(|source| Error::ReadRootfsFile {
                path: path.clone(),
                source,
            })?;
            let link_dir = path
                .strip_prefix(layer)
                .ok()
                .and_then(Path::parent)
                .unwrap_or(Path::new(""));
            let rest = wanted
                .strip_prefix(path.strip_prefix(layer).unwrap_or(Path::new("")))
                .unwrap_or(Path::new(""))
                .to_path_buf();
            let joined = if target.is_absolute() {
                target.join(rest)
            } else {
                link_dir.join(target).join(rest)
            };
            wanted = clean(&joined);
            continue;
        }
        if !metadata.is_file() {
            return Ok(None);
        }
        return std::fs::read_to_string(&path)
            .map(Some)
            .map_err(|source| Error::ReadRootfsFile { path, source });
    }
    Ok(None)
}

/// Lexically clean a path relative to the root, `..` clamped at the root.
fn clean(path: &Path) -> PathBuf {
    let mut clean = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(name) => clean.push(name),
            Component::ParentDir => {
                clean.pop();
            }
            _ => {}
        }
    }
    clean
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
        # comment\n\
        daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
        app:x:1000:1000:App:/home/app:/bin/sh\n\
        1234:x:4321:4321::/home/numeric:/bin/sh\n\
        nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";
    const GROUP: &str = "root:x:0:\n\
        wheel:x:10:root,app\n\
        audio:x:29:app\n\
        app:x:1000:\n\
        staff:x:50:\n\
        nogroup:x:65534:\n";

    fn resolve(spec: &str) -> Result<User, Error> {
        resolve_from_files(spec, PASSWD, GROUP)
    }

    #[test]
    fn name_gives_passwd_ids_home_and_member_groups() {
        let user = resolve("app").unwrap();
        assert_eq!(
            user,
            User {
                uid: 1000,
                gid: 1000,
                additional_gids: vec![10, 29],
                home: "/home/app".into()
            }
        );
    }

    #[test]
    fn empty_is_root_with_its_groups() {
        let user = resolve("").unwrap();
        assert_eq!((user.uid, user.gid, user.home.as_str()), (0, 0, "/root"));
        assert_eq!(user.additional_gids, vec![10]);
    }

    #[test]
    fn numeric_uid_in_passwd_uses_its_entry() {
        let user = resolve("65534").unwrap();
        assert_eq!((user.uid, user.gid), (65534, 65534));
    }

    #[test]
    fn numeric_uid_not_in_passwd_is_fine_with_gid_zero() {
        let user = resolve("4242").unwrap();
        assert_eq!(
            user,
            User {
                uid: 4242,
                gid: 0,
                additional_gids: vec![],
                home: "/".into()
            }
        );
    }

    #[test]
    fn numeric_looking_name_matches_by_name_first() {
        assert_eq!(resolve("1234").unwrap().uid, 4321);
    }

    #[test]
    fn explicit_group_replaces_primary_and_drops_supplementary() {
        let user = resolve("app:staff").unwrap();
        assert_eq!((user.uid, user.gid), (1000, 50));
        assert!(user.additional_gids.is_empty());
        assert_eq!(resolve("app:777").unwrap().gid, 777);
        assert_eq!(resolve("5000:5001").unwrap().gid, 5001);
    }

    #[test]
    fn unknown_user_has_dockers_message() {
        let error = resolve("ghost").unwrap_err();
        assert_eq!(
            error.to_string(),
            "unable to find user ghost: no matching entries in passwd file"
        );
    }

    #[test]
    fn unknown_group_has_dockers_message() {
        let error = resolve("app:ghosts").unwrap_err();
        assert_eq!(
            error.to_string(),
            "unable to find group ghosts: no matching entries in group file"
        );
    }

    #[test]
    fn out_of_range_ids_are_refused() {
        assert!(matches!(
            resolve("4294967296"),
            Err(Error::InvalidUser { .. })
        ));
        assert!(matches!(
            resolve("app:2147483648"),
            Err(Error::InvalidUser { .. })
        ));
    }

    #[test]
    fn missing_files_allow_numeric_ids_only() {
        assert_eq!(resolve_from_files("12:34", "", "").unwrap().gid, 34);
        assert!(matches!(
            resolve_from_files("app", "", ""),
            Err(Error::UnknownUser { .. })
        ));
    }

    #[test]
    fn layered_lookup_honours_order_whiteouts_opaque_dirs_and_symlinks() {
        let temp = tempfile::tempdir().unwrap();
        let top = temp.path().join("top");
        let middle = temp.path().join("middle");
        let bottom = temp.path().join("bottom");
        for layer in [&top, &middle, &bottom] {
            std::fs::create_dir_all(layer.join("etc")).unwrap();
        }
        std::fs::write(bottom.join("etc/passwd"), "app:x:1:1::/:/bin/sh\n").unwrap();
        std::fs::write(middle.join("etc/passwd"), "app:x:2:2::/:/bin/sh\n").unwrap();
        let rootfs = |layers: &[&PathBuf]| Rootfs::Overlay {
            lowers: layers.iter().map(|p| p.to_path_buf()).collect(),
            upper: temp.path().join("upper-none"),
            work: temp.path().join("work"),
        };
        assert_eq!(
            resolve_user(&rootfs(&[&top, &middle, &bottom]), "app")
                .unwrap()
                .uid,
            2
        );

        // A whiteout in the top layer hides both.
        rustix::fs::mknodat(
            rustix::fs::CWD,
            top.join("etc/passwd"),
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::Mode::from_raw_mode(0),
            0,
        )
        .unwrap();
        assert!(matches!(
            resolve_user(&rootfs(&[&top, &middle, &bottom]), "app"),
            Err(Error::UnknownUser { .. })
        ));
        std::fs::remove_file(top.join("etc/passwd")).unwrap();

        // An opaque /etc in the middle layer hides the bottom one.
        std::fs::remove_file(middle.join("etc/passwd")).unwrap();
        assert_eq!(
            resolve_user(&rootfs(&[&middle, &bottom]), "app")
                .unwrap()
                .uid,
            1
        );
        rustix::fs::setxattr(
            middle.join("etc"),
            "user.overlay.opaque",
            b"y",
            rustix::fs::XattrFlags::empty(),
        )
        .unwrap();
        assert!(matches!(
            resolve_user(&rootfs(&[&middle, &bottom]), "app"),
            Err(Error::UnknownUser { .. })
        ));

        // An absolute symlink is resolved inside the rootfs, across layers.
        std::fs::create_dir_all(bottom.join("real")).unwrap();
        std::fs::write(bottom.join("real/passwd"), "app:x:3:3::/:/bin/sh\n").unwrap();
        std::os::unix::fs::symlink("/real/passwd", top.join("etc/passwd")).unwrap();
        assert_eq!(
            resolve_user(&rootfs(&[&top, &bottom]), "app").unwrap().uid,
            3
        );
        // …and `..` cannot leave it.
        std::fs::remove_file(top.join("etc/passwd")).unwrap();
        std::os::unix::fs::symlink("../../../../real/passwd", top.join("etc/passwd")).unwrap();
        assert_eq!(
            resolve_user(&rootfs(&[&top, &bottom]), "app").unwrap().uid,
            3
        );
    }
}
