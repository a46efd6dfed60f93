//! `RUN --mount`: from the frontend's typed mounts to the executor's, as BuildKit
//! gives them.
//!
//! Two phases, because the cache key must be known before anything is prepared:
//!
//! - [`plan`] (before the cache lookup) resolves `from=` stages and images and, for
//!   binds of the build context, selects the files (after `.dockerignore`); it adds to
//!   the step's key what the mounts' *contents* are: the context files' digest, the
//!   `from` stage's key or image digest. Secrets and SSH agents add only what the
//!   instruction text already has (id, target, options), never their contents; cache
//!   mounts add nothing of their contents either.
//! - [`materialize`] (only when the step runs) makes host paths for the executor:
//!   - `type=cache`: a [`crate::cache_mounts`] directory, locked per `sharing`, created
//!     with `mode`/`uid`/`gid` and seeded from `from`+`source` on first use; bound
//!     read-write (or read-only with `readonly`). It lives in the store, never in a
//!     layer.
//!   - `type=bind`: a private copy of the source (context, stage or image), so writes
//!     with `rw` are discarded and `.dockerignore`d files stay out.
//!   - `type=tmpfs`: a tmpfs (`size`), mode 1777.
//!   - `type=secret`: `--secret` file or environment value, copied by the executor onto
//!     a private tmpfs at `target` (default `/run/secrets/<id>`, mode 0400) and/or put in
//!     the step's environment as `env=NAME`. Secrets given as environment values are
//!     written to a 0600 file on a tmpfs (`/dev/shm`) outside the store for the
//!     duration of the step.
//!   - `type=ssh`: the `--ssh` agent socket bound at `target` (default
//!     `/run/buildkit/ssh_agent.0`, which also sets `SSH_AUTH_SOCK`).
//!
//! Mount targets the image lacks are created by the executor outside the layer (see
//! [`crate::executor`]): no mountpoint ever appears in a layer.
//!
//! # Errors
//!
//! [`RunProblem`]s, with the Dockerfile location in [`Error::Run`]: a missing
//! `required` secret or SSH agent, an SSH source that is not an agent socket,
//! `--security=insecure` without `--allow security.insecure`, unreadable secret
//! sources; cache mount and copy errors.

use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};

use super::*;
use crate::cache_mounts;
use crate::frontend::dockerfile::{CacheSharing, Mount as MountSpec};

/// Why a `RUN` step could not be set up (shown after its Dockerfile location).
#[derive(Debug, thiserror::Error)]
pub enum RunProblem {
    #[error(
        "secret {id:?} is required but was not given (pass it with --secret id={id},src=PATH or --secret id={id},env=VAR)"
    )]
    MissingSecret { id: String },
    #[error("reading secret {id:?} from {path}: {source}")]
    SecretSource {
        id: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("secret {id:?}: environment variable {var} is not set")]
    SecretEnvUnset { id: String, var: String },
    #[error(
        "ssh agent {id:?} is required but was not given (pass it with --ssh {id}=$SSH_AUTH_SOCK)"
    )]
    MissingSsh { id: String },
    #[error(
        "ssh {id:?}: {path} is not an SSH agent socket (kiln forwards agents only; start ssh-agent, ssh-add the key, and pass --ssh {id}=$SSH_AUTH_SOCK)"
    )]
    SshNotASocket { id: String, path: PathBuf },
    #[error(
        "RUN --security=insecure needs the security.insecure entitlement (kiln build --allow security.insecure)"
    )]
    InsecureNotAllowed,
    #[error(transparent)]
    CacheMount(#[from] cache_mounts::Error),
    #[error("preparing {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The default target of `type=ssh`; with it the step also gets `SSH_AUTH_SOCK`.
const DEFAULT_SSH_TARGET: &str = "/run/buildkit/ssh_agent.0";

/// Where a bind mount's or a cache seed's files come from, selected before the cache
/// lookup.
pub(super) struct Selected {
    plan: copy::CopyPlan,
    /// Kept alive for the copy (`from=` a stage or image).
    view: Option<RootfsView>,
}

/// One mount, ready for [`materialize`].
pub(super) enum Planned {
    Cache {
        mount: dockerfile::CacheMount,
        seed: Option<Selected>,
    },
    Bind {
        mount: dockerfile::BindMount,
        selected: Selected,
    },
    Tmpfs(dockerfile::TmpfsMount),
    Secret(dockerfile::SecretMount),
    Ssh(dockerfile::SshMount),
}

/// Selects the files of `source` in `from` (the context when `None`) as a copy to
/// `/<name>` of an empty directory, and adds their identity to `key`.
fn select(
    shared: &Shared<'_>,
    label: &str,
    from: &Option<StageOrImage>,
    source: &str,
    location: &str,
    instruction: &str,
    key: &mut KeyBuilder,
) -> Result<Selected, Error> {
    let source = source.trim_start_matches('/');
    let op = copy::CopyOp {
        kind: copy::CopyKind::Copy,
        sources: vec![if source.is_empty() {
            ".".to_owned()
        } else {
            source.to_owned()
        }],
        dest: "/mount".to_owned(),
        workdir: "/".to_owned(),
        ..Default::default()
    };
    let copy_err = |source| Error::Copy {
        location: location.to_owned(),
        instruction: instruction.to_owned(),
        source,
    };
    let (plan, view) = match from {
        None => {
            let plan = copy::plan(copy::Source::Context(&shared.context), &op).map_err(copy_err)?;
            key.part("mount-context")
                .part(&copy::cache_digest(&plan).to_string());
            (plan, None)
        }
        Some(StageOrImage::Stage(index)) => {
            let state = wait_for(shared, *index, label)?;
            let view = rootfs_view(shared, &state.layers, location, instruction)?;
            let plan = copy::plan(copy::Source::Rootfs(&view), &op).map_err(copy_err)?;
            key.part("mount-stage").part(&state.key.to_string());
            (plan, Some(view))
        }
        Some(StageOrImage::Image(name)) if shared.named_contexts.contains_key(name) => {
            let plan = copy::plan(copy::Source::Context(&shared.named_contexts[name]), &op)
                .map_err(copy_err)?;
            key.part("mount-named-context")
                .part(name)
                .part(&copy::cache_digest(&plan).to_string());
            (plan, None)
        }
        Some(StageOrImage::Image(reference)) => {
            let info = &shared.images[reference];
            let view = rootfs_view(shared, &info.layers, location, instruction)?;
            let plan = copy::plan(copy::Source::Rootfs(&view), &op).map_err(copy_err)?;
            key.part("mount-image")
                .part(&info.manifest_digest.to_string());
            (plan, Some(view))
        }
    };
    key.part(source);
    Ok(Selected { plan, view })
}

impl Selected {
    /// Copies the selection into the empty directory `dir`; returns the copy's path.
    fn copy_into(&self, dir: &Path) -> Result<PathBuf, copy::Error> {
        copy::execute_linked(
            &self.plan,
            self.view.as_ref().unwrap_or(&RootfsView::empty()),
            dir,
        )?;
        Ok(dir.join("mount"))
    }
}

/// The images `run`'s mounts read from (`from=` naming no stage).
pub(super) fn images(run: &dockerfile::RunStep) -> impl Iterator<Item = String> + '_ {
    run.mounts.iter().filter_map(|mount| match mount {
        MountSpec::Bind(dockerfile::BindMount {
            from: Some(StageOrImage::Image(reference)),
            ..
        })
        | MountSpec::Cache(dockerfile::CacheMount {
            from: Some(StageOrImage::Image(reference)),
            ..
        }) => Some(reference.clone()),
        _ => None,
    })
}

/// Phase one: resolves every mount of `run` and adds the mounts' contents to `key`.
pub(super) fn plan(
    shared: &Shared<'_>,
    label: &str,
    run: &dockerfile::RunStep,
    location: &str,
    instruction: &str,
    key: &mut KeyBuilder,
) -> Result<Vec<Planned>, Error> {
    let mut planned = Vec::with_capacity(run.mounts.len());
    for mount in &run.mounts {
        planned.push(match mount {
            MountSpec::Cache(cache) => {
                let seed = match &cache.from {
                    Some(_) => Some(select(
                        shared,
                        label,
                        &cache.from,
                        &cache.source,
                        location,
                        instruction,
                        key,
                    )?),
                    None => None,
                };
                Planned::Cache {
                    mount: cache.clone(),
                    seed,
                }
            }
            MountSpec::Bind(bind) => Planned::Bind {
                selected: select(
                    shared,
                    label,
                    &bind.from,
                    &bind.source,
                    location,
                    instruction,
                    key,
                )?,
                mount: bind.clone(),
            },
            MountSpec::Tmpfs(tmpfs) => Planned::Tmpfs(tmpfs.clone()),
            MountSpec::Secret(secret) => Planned::Secret(secret.clone()),
            MountSpec::Ssh(ssh) => Planned::Ssh(ssh.clone()),
        });
    }
    Ok(planned)
}

/// The host side of a running step's mounts; dropping it releases cache locks and
/// removes copies and secret files.
pub(super) struct Materialized {
    pub mounts: Vec<executor::Mount>,
    /// Variables for the step's environment (`type=secret,env=…`, `SSH_AUTH_SOCK`).
    pub env: Vec<(String, String)>,
    _leases: Vec<cache_mounts::Lease>,
    _dirs: Vec<tempfile::TempDir>,
}

/// A private directory for secrets taken from environment variables: on a tmpfs when
/// there is one, never in the store.
fn secret_dir() -> Result<tempfile::TempDir, RunProblem> {
    let shm = Path::new("/dev/shm");
    let base = if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    tempfile::Builder::new()
        .prefix("kiln-secret-")
        .tempdir_in(&base)
        .map_err(|source| RunProblem::Io { path: base, source })
}

/// Phase two: host paths for every planned mount. `scratch` is the step's scratch
/// directory (in the store) for bind copies.
pub(super) fn materialize(
    shared: &Shared<'_>,
    planned: &[Planned],
    scratch: &Path,
    location: &str,
    instruction: &str,
) -> Result<Materialized, Error> {
    let problem = |problem: RunProblem| Error::Run {
        location: location.to_owned(),
        problem,
    };
    let copy_err = |source| Error::Copy {
        location: location.to_owned(),
        instruction: instruction.to_owned(),
        source,
    };
    let mut out = Materialized {
        mounts: Vec::new(),
        env: Vec::new(),
        _leases: Vec::new(),
        _dirs: Vec::new(),
    };
    let mut secrets: Option<tempfile::TempDir> = None;
    for (index, mount) in planned.iter().enumerate() {
        match mount {
            Planned::Cache { mount, seed } => {
                let sharing = match mount.sharing {
                    CacheSharing::Shared => cache_mounts::Sharing::Shared,
                    CacheSharing::Private => cache_mounts::Sharing::Private,
                    CacheSharing::Locked => cache_mounts::Sharing::Locked,
                };
                let new = cache_mounts::NewDir {
                    mode: mount.mode,
                    uid: mount.uid,
                    gid: mount.gid,
                };
                let mut seed_into = |dir: &Path| -> Result<(), String> {
                    let Some(selected) = seed else {
                        return Ok(());
                    };
                    let staging = tempfile::tempdir_in(dir).map_err(|e| e.to_string())?;
                    let copied = selected
                        .copy_into(staging.path())
                        .map_err(|e| e.to_string())?;
                    // Move the seed's entries up into `dir` itself.
                    if copied.is_dir() {
                        for entry in std::fs::read_dir(&copied).map_err(|e| e.to_string())? {
                            let entry = entry.map_err(|e| e.to_string())?;
                            std::fs::rename(entry.path(), dir.join(entry.file_name()))
                                .map_err(|e| e.to_string())?;
                        }
                    }
                    Ok(())
                };
                let lease = cache_mounts::open(
                    shared.store,
                    &mount.id,
                    sharing,
                    new,
                    &rfc3339(now_secs()),
                    &mut seed_into,
                )
                .map_err(|e| problem(e.into()))?;
                out.mounts.push(executor::Mount::Bind {
                    source: lease.path().to_owned(),
                    target: PathBuf::from(&mount.target),
                    readonly: mount.read_only,
                });
                out._leases.push(lease);
            }
            Planned::Bind { mount, selected } => {
                let dir = tempfile::Builder::new()
                    .prefix(&format!("bind-{index}-"))
                    .tempdir_in(scratch)
                    .map_err(io_err(scratch))?;
                let source = selected.copy_into(dir.path()).map_err(copy_err)?;
                out.mounts.push(executor::Mount::Bind {
                    source,
                    target: PathBuf::from(&mount.target),
                    readonly: !mount.read_write,
                });
                out._dirs.push(dir);
            }
            Planned::Tmpfs(tmpfs) => out.mounts.push(executor::Mount::Tmpfs {
                target: PathBuf::from(&tmpfs.target),
                size: tmpfs.size,
                mode: 0o1777,
            }),
            Planned::Secret(secret) => {
                let given = shared.request.secrets.iter().find(|s| s.id == secret.id);
                let Some(given) = given else {
                    if secret.required {
                        return Err(problem(RunProblem::MissingSecret {
                            id: secret.id.clone(),
                        }));
                    }
                    continue;
                };
                let (path, value) = match &given.source {
                    SecretValue::File(path) => {
                        let value = match &secret.env {
                            Some(_) => Some(std::fs::read(path).map_err(|source| {
                                problem(RunProblem::SecretSource {
                                    id: secret.id.clone(),
                                    path: path.clone(),
                                    source,
                                })
                            })?),
                            None => None,
                        };
                        if !path.is_file() {
                            return Err(problem(RunProblem::SecretSource {
                                id: secret.id.clone(),
                                path: path.clone(),
                                source: std::io::Error::from(std::io::ErrorKind::NotFound),
                            }));
                        }
                        (path.clone(), value)
                    }
                    SecretValue::Env(var) => {
                        let value = std::env::var_os(var).ok_or_else(|| {
                            problem(RunProblem::SecretEnvUnset {
                                id: secret.id.clone(),
                                var: var.clone(),
                            })
                        })?;
                        let value = value.into_encoded_bytes();
                        let dir = match &secrets {
                            Some(dir) => dir,
                            None => secrets.insert(secret_dir().map_err(problem)?),
                        };
                        let path = dir.path().join(index.to_string());
                        write_private(&path, &value).map_err(|source| {
                            problem(RunProblem::Io {
                                path: path.clone(),
                                source,
                            })
                        })?;
                        (path, Some(value))
                    }
                };
                if let Some(target) = &secret.target {
                    out.mounts.push(executor::Mount::SecretFile {
                        source: path,
                        target: PathBuf::from(target),
                        mode: secret.mode,
                        uid: secret.uid,
                        gid: secret.gid,
                    });
                }
                if let (Some(name), Some(value)) = (&secret.env, value) {
                    out.env
                        .push((name.clone(), String::from_utf8_lossy(&value).into_owned()));
                }
            }
            Planned::Ssh(ssh) => {
                let given = shared.request.ssh.iter().find(|s| s.id == ssh.id);
                let Some(given) = given else {
                    if ssh.required {
                        return Err(problem(RunProblem::MissingSsh { id: ssh.id.clone() }));
                    }
                    continue;
                };
                let socket = match given.paths.as_slice() {
                    [one] if std::fs::metadata(one).is_ok_and(|m| m.file_type().is_socket()) => {
                        one.clone()
                    }
                    other => {
                        return Err(problem(RunProblem::SshNotASocket {
                            id: ssh.id.clone(),
                            path: other.first().cloned().unwrap_or_default(),
                        }));
                    }
                };
                out.mounts.push(executor::Mount::Bind {
                    source: socket,
                    target: PathBuf::from(&ssh.target),
                    readonly: false,
                });
                if ssh.target == DEFAULT_SSH_TARGET {
                    out.env
                        .push(("SSH_AUTH_SOCK".to_owned(), DEFAULT_SSH_TARGET.to_owned()));
                }
            }
        }
    }
    if let Some(dir) = secrets {
        out._dirs.push(dir);
    }
    Ok(out)
}

/// Writes `bytes` to a new file only its owner may read.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)
}
