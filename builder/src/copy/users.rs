//! `--chown` values and the `/etc/passwd` + `/etc/group` lookups they need,
//! read through a [`RootfsView`] of the destination.
//!
//! Resolution follows BuildKit's `readUser`: `user` alone gives the user's uid
//! and its primary gid from passwd when it is a name, or uid = gid = the number
//! when it is numeric; `user:group` then replaces the gid; an empty user part
//! (`:group`) means uid 0. Numeric ids need no lookup. A name that is not found
//! is an error worded like Docker's: `unable to find user NAME: no matching
//! entries in passwd file`.

use std::fmt;
use std::str::FromStr;

use crate::rootfs::{self, RootfsView};

/// Errors from `--chown` parsing and lookups.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("invalid --chown value {value:?}")]
    Invalid { value: String },
    #[error("unable to find user {name}: no matching entries in passwd file")]
    UnknownUser { name: String },
    #[error("unable to find group {name}: no matching entries in group file")]
    UnknownGroup { name: String },
    #[error("reading {file} of the destination: {source}")]
    Read {
        file: &'static str,
        #[source]
        source: rootfs::Error,
    },
}

#[derive(Clone, PartialEq, Eq, Debug)]
enum IdOrName {
    Id(u32),
    Name(String),
}

impl IdOrName {
    fn parse(part: &str) -> Option<IdOrName> {
        if part.is_empty() {
            None
        } else if let Ok(id) = part.parse::<u32>() {
            Some(IdOrName::Id(id))
        } else {
            Some(IdOrName::Name(part.to_owned()))
        }
    }
}

impl fmt::Display for IdOrName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdOrName::Id(id) => write!(f, "{id}"),
            IdOrName::Name(name) => f.write_str(name),
        }
    }
}

/// A parsed `--chown=user[:group]`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ChownSpec {
    user: Option<IdOrName>,
    group: Option<IdOrName>,
}

impl FromStr for ChownSpec {
    type Err = UserError;

    fn from_str(value: &str) -> Result<ChownSpec, UserError> {
        let (user, group) = match value.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (value, None),
        };
        let bad = || UserError::Invalid {
            value: value.to_owned(),
        };
        if value.is_empty() || user.contains(':') || group.is_some_and(|g| g.contains(':')) {
            return Err(bad());
        }
        let spec = ChownSpec {
            user: IdOrName::parse(user),
            group: group.and_then(IdOrName::parse),
        };
        if spec.user.is_none() && spec.group.is_none() {
            return Err(bad());
        }
        Ok(spec)
    }
}

impl fmt::Display for ChownSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(user) = &self.user {
            write!(f, "{user}")?;
        }
        if let Some(group) = &self.group {
            write!(f, ":{group}")?;
        }
        Ok(())
    }
}

impl ChownSpec {
    /// The ids when no lookup is needed (all parts numeric).
    pub fn numeric(&self) -> Option<(u32, u32)> {
        let (uid, gid) = match &self.user {
            None => (0, 0),
            Some(IdOrName::Id(id)) => (*id, *id),
            Some(IdOrName::Name(_)) => return None,
        };
        match &self.group {
            None => Some((uid, gid)),
            Some(IdOrName::Id(g)) => Some((uid, *g)),
            Some(IdOrName::Name(_)) => None,
        }
    }

    /// Whether the spec names a user or group (resolved in the destination), rather
    /// than giving numeric ids only.
    pub fn has_names(&self) -> bool {
        matches!(self.user, Some(IdOrName::Name(_)))
            || matches!(self.group, Some(IdOrName::Name(_)))
    }

    /// Resolves names against the destination's `/etc/passwd` and `/etc/group`.
    pub fn resolve(&self, view: &RootfsView) -> Result<(u32, u32), UserError> {
        let (uid, mut gid) = match &self.user {
            None => (0, 0),
            Some(IdOrName::Id(id)) => (*id, *id),
            Some(IdOrName::Name(name)) => lookup_user(view, name)?
                .ok_or_else(|| UserError::UnknownUser { name: name.clone() })?,
        };
        match &self.group {
            None => {}
            Some(IdOrName::Id(g)) => gid = *g,
            Some(IdOrName::Name(name)) => {
                gid = lookup_group(view, name)?
                    .ok_or_else(|| UserError::UnknownGroup { name: name.clone() })?
            }
        }
        Ok((uid, gid))
    }
}

fn read_db(view: &RootfsView, file: &'static str) -> Result<Option<String>, UserError> {
    match view.read(file) {
        Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
        Err(rootfs::Error::NotFound { .. }) => Ok(None),
        Err(source) => Err(UserError::Read { file, source }),
    }
}

/// (uid, primary gid) of a user name in `/etc/passwd`; `None` when absent
/// (also when the file itself is missing).
pub fn lookup_user(view: &RootfsView, name: &str) -> Result<Option<(u32, u32)>, UserError> {
    let Some(text) = read_db(view, "/etc/passwd")? else {
        return Ok(None);
    };
    for line in text.lines() {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.len() >= 4
            && fields[0] == name
            && let (Ok(uid), Ok(gid)) = (fields[2].parse(), fields[3].parse())
        {
            return Ok(Some((uid, gid)));
        }
    }
    Ok(None)
}

/// The gid of a group name in `/etc/group`; `None` when absent.
pub fn lookup_group(view: &RootfsView, name: &str) -> Result<Option<u32>, UserError> {
    let Some(text) = read_db(view, "/etc/group")? else {
        return Ok(None);
    };
    for line in text.lines() {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.len() >= 3
            && fields[0] == name
            && let Ok(gid) = fields[2].parse()
        {
            return Ok(Some(gid));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_numeric() {
        let s: ChownSpec = "1000".parse().unwrap();
        assert_eq!(s.numeric(), Some((1000, 1000)));
        let s: ChownSpec = "1000:50".parse().unwrap();
        assert_eq!(s.numeric(), Some((1000, 50)));
        let s: ChownSpec = ":50".parse().unwrap();
        assert_eq!(s.numeric(), Some((0, 50)));
        let s: ChownSpec = "app:staff".parse().unwrap();
        assert_eq!(s.numeric(), None);
        assert_eq!(s.to_string(), "app:staff");
        assert!("".parse::<ChownSpec>().is_err());
        assert!("a:b:c".parse::<ChownSpec>().is_err());
        assert!(":".parse::<ChownSpec>().is_err());
    }
}
