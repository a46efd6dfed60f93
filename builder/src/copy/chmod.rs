//! `--chmod` values: octal (`755`, `0644`, `4755`) or symbolic
//! (`u+x,g-w,a+rX`, `go=u`, `+t`), as chmod(1) understands them.
//!
//! Symbolic clauses are `[ugoa]*([-+=]([rwxXst]*|[ugo]))+`, separated by commas
//! and applied left to right. A clause without `u`, `g`, `o` or `a` applies to
//! all (no umask is involved in a build). `X` adds execute only to directories
//! and to files that are already executable by someone; `s` is setuid for `u`
//! and setgid for `g`; `t` is the sticky bit (for `o`/`a`). `=` clears the
//! named classes' permission and special bits before setting.

use std::fmt;
use std::str::FromStr;

/// A parsed `--chmod` value.
#[derive(Clone, PartialEq, Eq)]
pub struct Chmod {
    text: String,
    kind: ChmodKind,
}

#[derive(Clone, PartialEq, Eq, Debug)]
enum ChmodKind {
    Octal(u32),
    Symbolic(Vec<Clause>),
}

#[derive(Clone, PartialEq, Eq, Debug)]
struct Clause {
    /// Bits the clause may touch: 0o4700 for u, 0o2070 for g, 0o1007 for o.
    who: u32,
    actions: Vec<(Op, Perm)>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Op {
    Add,
    Remove,
    Set,
}

#[derive(Clone, PartialEq, Eq, Debug)]
enum Perm {
    /// r, w, x, s, t as bit masks over all classes; `cond_x`: X.
    Bits { bits: u32, cond_x: bool },
    /// Copy the permissions of u, g or o (shift of that class).
    CopyFrom(u32),
}

/// Why a `--chmod` value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid --chmod value {value:?}: {reason}")]
pub struct ChmodError {
    pub value: String,
    pub reason: &'static str,
}

const WHO_U: u32 = 0o4700;
const WHO_G: u32 = 0o2070;
const WHO_O: u32 = 0o1007;

impl FromStr for Chmod {
    type Err = ChmodError;

    fn from_str(value: &str) -> Result<Chmod, ChmodError> {
        let err = |reason| ChmodError {
            value: value.to_owned(),
            reason,
        };
        if value.is_empty() {
            return Err(err("empty"));
        }
        if value.bytes().all(|b| b.is_ascii_digit()) {
            let mode = u32::from_str_radix(value, 8).map_err(|_| err("not an octal number"))?;
            if mode > 0o7777 {
                return Err(err("octal mode above 7777"));
            }
            return Ok(Chmod {
                text: value.to_owned(),
                kind: ChmodKind::Octal(mode),
            });
        }
        let mut clauses = Vec::new();
        for clause in value.split(',') {
            let bytes = clause.as_bytes();
            let mut i = 0;
            let mut who = 0;
            while i < bytes.len() && matches!(bytes[i], b'u' | b'g' | b'o' | b'a') {
                who |= match bytes[i] {
                    b'u' => WHO_U,
                    b'g' => WHO_G,
                    b'o' => WHO_O,
                    _ => WHO_U | WHO_G | WHO_O,
                };
                i += 1;
            }
            if who == 0 {
                who = WHO_U | WHO_G | WHO_O;
            }
            let mut actions = Vec::new();
            while i < bytes.len() {
                let op = match bytes[i] {
                    b'+' => Op::Add,
                    b'-' => Op::Remove,
                    b'=' => Op::Set,
                    _ => return Err(err("expected +, - or = in a symbolic clause")),
                };
                i += 1;
                let perm = match bytes.get(i) {
                    Some(b'u') => {
                        i += 1;
                        Perm::CopyFrom(6)
                    }
                    Some(b'g') => {
                        i += 1;
                        Perm::CopyFrom(3)
                    }
                    Some(b'o') => {
                        i += 1;
                        Perm::CopyFrom(0)
                    }
                    _ => {
                        let mut bits = 0;
                        let mut cond_x = false;
                        while i < bytes.len() && !matches!(bytes[i], b'+' | b'-' | b'=') {
                            bits |= match bytes[i] {
                                b'r' => 0o444,
                                b'w' => 0o222,
                                b'x' => 0o111,
                                b'X' => {
                                    cond_x = true;
                                    0
                                }
                                b's' => 0o6000,
                                b't' => 0o1000,
                                _ => return Err(err("unknown permission letter")),
                            };
                            i += 1;
                        }
                        Perm::Bits { bits, cond_x }
                    }
                };
                actions.push((op, perm));
            }
            if actions.is_empty() {
                return Err(err("a symbolic clause needs an operator"));
            }
            clauses.push(Clause { who, actions });
        }
        Ok(Chmod {
            text: value.to_owned(),
            kind: ChmodKind::Symbolic(clauses),
        })
    }
}

impl Chmod {
    /// The new permission bits (`0o7777` range) for an object whose current
    /// bits are `mode`.
    pub fn apply(&self, mode: u32, is_dir: bool) -> u32 {
        let mut mode = mode & 0o7777;
        match &self.kind {
            ChmodKind::Octal(m) => *m,
            ChmodKind::Symbolic(clauses) => {
                for clause in clauses {
                    for (op, perm) in &clause.actions {
                        let bits = match perm {
                            Perm::Bits { bits, cond_x } => {
                                let x = if *cond_x && (is_dir || mode & 0o111 != 0) {
                                    0o111
                                } else {
                                    0
                                };
                                bits | x
                            }
                            Perm::CopyFrom(shift) => {
                                let b = (mode >> shift) & 0o7;
                                b | (b << 3) | (b << 6)
                            }
                        };
                        let bits = bits & clause.who;
                        mode = match op {
                            Op::Add => mode | bits,
                            Op::Remove => mode & !bits,
                            Op::Set => (mode & !clause.who) | bits,
                        };
                    }
                }
                mode
            }
        }
    }

    /// The value as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Debug for Chmod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Chmod({})", self.text)
    }
}

impl fmt::Display for Chmod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chmod(s: &str) -> Chmod {
        s.parse().unwrap()
    }

    #[test]
    fn octal() {
        assert_eq!(chmod("755").apply(0o644, false), 0o755);
        assert_eq!(chmod("0644").apply(0o4755, false), 0o644);
        assert_eq!(chmod("4755").apply(0, false), 0o4755);
        assert!("7777".parse::<Chmod>().is_ok());
        assert!("17777".parse::<Chmod>().is_err());
        assert!("0x9".parse::<Chmod>().is_err());
        assert!("8".parse::<Chmod>().is_err());
    }

    #[test]
    fn symbolic() {
        let c = chmod("u+x,g-w,a+rX");
        // u+x makes the file executable, so X then applies to everyone.
        assert_eq!(c.apply(0o664, false), 0o755);
        assert_eq!(c.apply(0o660, true), 0o755);
        assert_eq!(chmod("g-w,a+rX").apply(0o664, false), 0o644);
        assert_eq!(chmod("g-w,a+rX").apply(0o600, true), 0o755);
        assert_eq!(chmod("a+X").apply(0o600, false), 0o600);
        assert_eq!(chmod("go=u").apply(0o640, false), 0o666);
        assert_eq!(chmod("u=rw,go=").apply(0o4755, false), 0o600);
        assert_eq!(chmod("+t").apply(0o755, true), 0o1755);
        assert_eq!(chmod("u+s,g+s").apply(0o755, false), 0o6755);
        assert_eq!(chmod("o-rwx").apply(0o777, false), 0o770);
        assert_eq!(chmod("=r").apply(0o777, false), 0o444);
        assert_eq!(chmod("u+rw-x").apply(0o100, false), 0o600);
        for bad in ["u", "u+q", "z+x", "u+x,", ""] {
            assert!(bad.parse::<Chmod>().is_err(), "{bad}");
        }
    }
}
