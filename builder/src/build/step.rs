//! One step: its cache key, a cache hit, or running it and recording the result.

use super::*;

pub(super) fn run_step(
    shared: &Shared<'_>,
    label: &str,
    step: &Step,
    state: &mut StageState,
) -> Result<(), Error> {
    let location = step.location.to_string();
    let workdir = state.config.config.working_dir.clone().unwrap_or_default();
    let mut key = KeyBuilder::new("step");
    key.part(&state.key.to_string());
    key.part(&format!("{:?}", step.instruction));
    for (k, v) in &step.args {
        key.part(k).part(v);
    }
    key.part(&workdir);
    key.part(state.config.config.user.as_deref().unwrap_or(""));

    // WORKDIR other than `/` is BuildKit's `mkdir -p` (owned by USER) as well
    // as metadata: the directory exists in the image even if nothing else
    // touches it. It goes through the cache like any step with a layer.
    let mkdir_target = match &step.instruction {
        ResolvedInstruction::Workdir(dir) => Some(join_path(&workdir, dir)).filter(|t| t != "/"),
        _ => None,
    };
    if let Some(target) = &mkdir_target {
        state.config.config.working_dir = Some(target.clone());
    } else if apply_meta(&mut state.config, &step.instruction, &workdir) {
        state.key = key.finish();
        // The time of the layer below, not now: a cached rebuild must give the
        // same config, and so the same image digest.
        state.config.history.push(History {
            created: Some(state.created.clone().unwrap_or_else(|| shared.now.clone())),
            created_by: Some(step.source.clone()),
            comment: Some("kiln".into()),
            empty_layer: true,
            ..Default::default()
        });
        return Ok(());
    }

    let number = next_step_number(shared);
    let build = shared.request.name.clone();
    shared.reporter.send(Event::StepStarted {
        build: build.clone(),
        step: number,
        stage: label.to_owned(),
        instruction: step.source.lines().next().unwrap_or("").to_owned(),
        location: location.clone(),
    });
    let started = Instant::now();

    // Work out the step's inputs (and for COPY/ADD, its plan) before the cache.
    let mut copy_plan = None;
    let mut run_mounts = Vec::new();
    // `COPY --link`: the cached layer is looked up by a key without the parent's.
    let mut link_key: Option<Digest> = None;
    match &step.instruction {
        ResolvedInstruction::Run(run) => {
            if run.security == dockerfile::SecurityMode::Insecure
                && !shared
                    .request
                    .allow
                    .contains(&Entitlement::SecurityInsecure)
            {
                return Err(Error::Run {
                    location,
                    problem: mounts::RunProblem::InsecureNotAllowed,
                });
            }
            run_mounts = mounts::plan(shared, label, run, &location, &step.source, &mut key)?;
            for (k, v) in &step.env {
                key.part(k).part(v);
            }
            key.part(&format!("{:?}", run.network));
            key.part(&format!("{:?}", shared.request.network));
            // What the step sees of /etc/hosts and /dev/shm can change its output (as
            // in BuildKit's exec op); left out when unset so other keys stay as they were.
            for host in &shared.request.extra_hosts {
                key.part(&format!("add-host {}={}", host.name, host.address.ip()));
            }
            if let Some(size) = shared.request.shm_size {
                key.part(&format!("shm-size {size}"));
            }
        }
        ResolvedInstruction::Copy(c) => {
            let op = copy::CopyOp {
                kind: copy::CopyKind::Copy,
                sources: c.sources.clone(),
                heredocs: copy_heredocs(&c.heredocs),
                dest: c.dest.clone(),
                workdir: copy_workdir(&workdir),
                chown: c.chown.clone(),
                chmod: chmod_of(&c.chmod, &location)?,
                exclude: c.exclude.clone(),
                parents: c.parents,
                link: c.link,
                checksum: None,
                keep_git_dir: false,
            };
            let from = match &c.from {
                None => CopyFrom::Context(&shared.context),
                Some(StageOrImage::Stage(index)) => {
                    let from = wait_for(shared, *index, label)?;
                    key.part(&format!("from-stage {}", from.key));
                    CopyFrom::Layers(from.layers.clone())
                }
                Some(StageOrImage::Image(name)) if shared.named_contexts.contains_key(name) => {
                    key.part(&format!("from-context {name}"));
                    CopyFrom::Context(&shared.named_contexts[name])
                }
                Some(StageOrImage::Image(reference)) => {
                    let info = &shared.images[reference];
                    key.part(&format!("from-image {}", info.manifest_digest));
                    CopyFrom::Layers(info.layers.clone())
                }
            };
            let (digest, plan) = copy_source_digest(shared, &from, &op, &location, &step.source)?;
            key.part(&digest.to_string());
            if c.link {
                let chown = match &op.chown {
                    Some(text) => {
                        Some(
                            text.parse::<copy::ChownSpec>()
                                .map_err(|source| Error::Copy {
                                    location: location.clone(),
                                    instruction: step.source.clone(),
                                    source: source.into(),
                                })?,
                        )
                    }
                    None => None,
                };
                link_key = Some(linked_copy_key(
                    shared,
                    state,
                    step,
                    &digest,
                    chown.as_ref(),
                    &workdir,
                    &location,
                )?);
            }
            copy_plan = Some(PendingCopy {
                plan,
                from,
                op,
                link: c.link,
            });
        }
        ResolvedInstruction::Add(a) => {
            let checksum = match &a.checksum {
                None => None,
                Some(c) => Some(c.parse::<Digest>().map_err(|_| Error::Unsupported {
                    location: location.clone(),
                    what: format!("ADD --checksum={c} (only sha256 checksums)"),
                })?),
            };
            let op = copy::CopyOp {
                kind: copy::CopyKind::Add,
                sources: a.sources.clone(),
                heredocs: copy_heredocs(&a.heredocs),
                dest: a.dest.clone(),
                workdir: copy_workdir(&workdir),
                chown: a.chown.clone(),
                chmod: chmod_of(&a.chmod, &location)?,
                exclude: a.exclude.clone(),
                parents: false,
                link: a.link,
                checksum,
                keep_git_dir: a.keep_git_dir,
            };
            let plan =
                copy::plan(copy::Source::Context(&shared.context), &op).map_err(|source| {
                    Error::Copy {
                        location: location.clone(),
                        instruction: step.source.clone(),
                        source,
                    }
                })?;
            let digest = copy::cache_digest(&plan);
            key.part(&digest.to_string());
            if a.link {
                link_key = Some(linked_copy_key(
                    shared,
                    state,
                    step,
                    &digest,
                    plan.chown(),
                    &workdir,
                    &location,
                )?);
            }
            copy_plan = Some(PendingCopy {
                plan: Some(plan),
                from: CopyFrom::Context(&shared.context),
                op,
                link: a.link,
            });
        }
        ResolvedInstruction::Workdir(_) => {
            // The instruction, the previous WORKDIR and USER are in the key already.
        }
        _ => unreachable!("metadata instructions were handled above"),
    }
    let key = key.finish();
    let (lookup_key, key) = match link_key {
        Some(independent) => {
            let mut chained = KeyBuilder::new("linked");
            chained
                .part(&state.key.to_string())
                .part(&independent.to_string());
            (independent, chained.finish())
        }
        None => (key.clone(), key),
    };

    if !shared.request.no_cache
        && let Some(record) = shared.cache.get(shared.store, &lookup_key)
    {
        {
            apply_record(state, &record, step);
            state.key = key;
            shared.stats.lock().expect("stats lock").1 += 1;
            shared.reporter.send(Event::StepCached {
                build: build.clone(),
                step: number,
            });
            shared.reporter.send(Event::StepFinished {
                build,
                step: number,
                cached: true,
                duration_ms: started.elapsed().as_millis() as u64,
                bytes_written: 0,
            });
            return Ok(());
        }
    }

    let result = match &step.instruction {
        ResolvedInstruction::Run(run) => execute_run(
            shared,
            state,
            step,
            run,
            &run_mounts,
            &location,
            &build,
            number,
        ),
        ResolvedInstruction::Workdir(_) => {
            let target = mkdir_target.as_deref().expect("a WORKDIR other than /");
            execute_workdir(shared, state, step, target, &location)
        }
        _ => {
            let pending = copy_plan.expect("copy plan made above");
            let plan = match pending.plan {
                Some(plan) => plan,
                None => {
                    let CopyFrom::Layers(layers) = &pending.from else {
                        unreachable!("only rootfs sources defer their plan")
                    };
                    let view = rootfs_view(shared, layers, &location, &step.source)?;
                    copy::plan(copy::Source::Rootfs(&view), &pending.op).map_err(|source| {
                        Error::Copy {
                            location: location.clone(),
                            instruction: step.source.clone(),
                            source,
                        }
                    })?
                }
            };
            execute_copy(shared, state, step, &plan, pending.link, &location)
        }
    };
    let (layer_dir, layer) = match result {
        Ok(done) => done,
        Err(error) => {
            shared.reporter.send(Event::StepFailed {
                build: build.clone(),
                step: number,
                error: error.to_string(),
            });
            return Err(error);
        }
    };
    let bytes_written = layer.as_ref().map_or(0, |l| l.size);
    let record = Record {
        layer: layer.as_ref().map(|l| CachedLayer {
            digest: l.digest.clone(),
            diff_id: l.diff_id.clone(),
            size: l.size,
            media_type: l.media_type.clone(),
        }),
        created: shared.now.clone(),
    };
    if let (Some(layer), Some(dir)) = (&layer, &layer_dir) {
        let mut diff_ids: Vec<Digest> = state.layers.iter().map(|l| l.diff_id.clone()).collect();
        diff_ids.push(layer.diff_id.clone());
        let chain = chain_ids(&diff_ids).pop().expect("at least one layer");
        shared.snapshots.commit(&chain, dir.path())?;
    }
    shared.cache.put(&lookup_key, &record)?;
    apply_record(state, &record, step);
    state.key = key;
    shared.stats.lock().expect("stats lock").0 += 1;
    shared.reporter.send(Event::StepFinished {
        build,
        step: number,
        cached: false,
        duration_ms: started.elapsed().as_millis() as u64,
        bytes_written,
    });
    Ok(())
}

/// The cache key of a `COPY --link`/`ADD --link` step: everything its layer depends on
/// — the instruction, its ARGs, WORKDIR, the sources' digest and `--from` — but not
/// the layers below, so the layer is reused when the base changes (as BuildKit's
/// merge-based `--link`). `--chown` names resolve in the destination's `/etc/passwd`
/// and `/etc/group`, so the ids they resolve to are part of the key.
fn linked_copy_key(
    shared: &Shared<'_>,
    state: &StageState,
    step: &Step,
    sources: &Digest,
    chown: Option<&copy::ChownSpec>,
    workdir: &str,
    location: &str,
) -> Result<Digest, Error> {
    let mut key = KeyBuilder::new("linked-copy");
    key.part(&format!("{:?}", step.instruction));
    for (k, v) in &step.args {
        key.part(k).part(v);
    }
    key.part(workdir);
    key.part(&sources.to_string());
    if let Some(chown) = chown.filter(|c| c.has_names()) {
        let view = rootfs_view(shared, &state.layers, location, &step.source)?;
        let (uid, gid) = chown.resolve(&view).map_err(|source| Error::Copy {
            location: location.to_owned(),
            instruction: step.source.clone(),
            source: source.into(),
        })?;
        key.part(&format!("owner {uid}:{gid}"));
    }
    Ok(key.finish())
}

/// Where a COPY reads from: a context, or the layers of a stage or an image.
enum CopyFrom<'a> {
    Context(&'a BuildContext),
    Layers(Vec<LayerRef>),
}

/// A COPY/ADD whose cache key is known; its plan is made now, or — for a
/// rootfs source whose digest was remembered — only if the step must run.
struct PendingCopy<'a> {
    plan: Option<copy::CopyPlan>,
    from: CopyFrom<'a>,
    op: copy::CopyOp,
    link: bool,
}

/// The digest of what `op` selects from `from`, and the plan when one was made.
///
/// Layers never change under their chain ID, so for a stage or image source the
/// digest is remembered per (chain ID, instruction): a cached rebuild neither
/// unpacks that rootfs nor walks and hashes it again (a venv is thousands of
/// files). `--no-cache` recomputes it.
fn copy_source_digest(
    shared: &Shared<'_>,
    from: &CopyFrom<'_>,
    op: &copy::CopyOp,
    location: &str,
    instruction: &str,
) -> Result<(Digest, Option<copy::CopyPlan>), Error> {
    let plan_of = |source| {
        copy::plan(source, op).map_err(|source| Error::Copy {
            location: location.to_owned(),
            instruction: instruction.to_owned(),
            source,
        })
    };
    match from {
        CopyFrom::Context(context) => {
            let plan = plan_of(copy::Source::Context(context))?;
            Ok((copy::cache_digest(&plan), Some(plan)))
        }
        CopyFrom::Layers(layers) => {
            let diff_ids: Vec<Digest> = layers.iter().map(|l| l.diff_id.clone()).collect();
            let mut memo = KeyBuilder::new("copy-source");
            memo.part(
                &chain_ids(&diff_ids)
                    .pop()
                    .map_or_else(String::new, |c| c.to_string()),
            );
            memo.part(&format!("{op:?}"));
            let memo = memo.finish();
            if !shared.request.no_cache
                && let Some(digest) = shared.cache.source_digest(&memo)
            {
                return Ok((digest, None));
            }
            let view = rootfs_view(shared, layers, location, instruction)?;
            let plan = plan_of(copy::Source::Rootfs(&view))?;
            let digest = copy::cache_digest(&plan);
            // Losing the memo only costs hashing next time.
            let _ = shared.cache.put_source_digest(&memo, &digest);
            Ok((digest, Some(plan)))
        }
    }
}

pub(super) fn copy_heredocs(heredocs: &[dockerfile::HeredocSource]) -> Vec<copy::Heredoc> {
    heredocs
        .iter()
        .map(|h| copy::Heredoc {
            name: h.name.clone(),
            body: h.content.clone(),
        })
        .collect()
}

pub(super) fn copy_workdir(workdir: &str) -> String {
    if workdir.is_empty() {
        "/".into()
    } else {
        workdir.to_owned()
    }
}

/// The frontend's typed `--chmod`, as text the copier parses.
pub(super) fn chmod_text(chmod: &dockerfile::Chmod) -> String {
    match chmod {
        dockerfile::Chmod::Octal(mode) => format!("{mode:04o}"),
        dockerfile::Chmod::Symbolic(clauses) => clauses
            .iter()
            .map(|c| {
                let mut who = String::new();
                for (bits, letter) in [(0o700, 'u'), (0o070, 'g'), (0o007, 'o')] {
                    if c.who & bits != 0 {
                        who.push(letter);
                    }
                }
                let op = match c.op {
                    dockerfile::ChmodOp::Add => '+',
                    dockerfile::ChmodOp::Remove => '-',
                    dockerfile::ChmodOp::Set => '=',
                };
                let p = &c.perms;
                let mut perms = String::new();
                for (on, letter) in [
                    (p.read, 'r'),
                    (p.write, 'w'),
                    (p.execute, 'x'),
                    (p.execute_if_any, 'X'),
                    (p.set_id, 's'),
                    (p.sticky, 't'),
                ] {
                    if on {
                        perms.push(letter);
                    }
                }
                format!("{who}{op}{perms}")
            })
            .collect::<Vec<_>>()
            .join(","),
    }
}

pub(super) fn chmod_of(
    chmod: &Option<dockerfile::Chmod>,
    location: &str,
) -> Result<Option<copy::Chmod>, Error> {
    match chmod {
        None => Ok(None),
        Some(c) => {
            let text = chmod_text(c);
            text.parse::<copy::Chmod>()
                .map(Some)
                .map_err(|_| Error::Unsupported {
                    location: location.to_owned(),
                    what: format!("--chmod={text}"),
                })
        }
    }
}

pub(super) fn apply_record(state: &mut StageState, record: &Record, step: &Step) {
    if let Some(layer) = &record.layer {
        state.layers.push(LayerRef {
            digest: layer.digest.clone(),
            diff_id: layer.diff_id.clone(),
            size: layer.size,
            media_type: layer.media_type.clone(),
        });
        state
            .origins
            .push(sbom::LayerOrigin::of_step(&state.stage, step));
        state.config.rootfs.diff_ids.push(layer.diff_id.clone());
    }
    state.config.history.push(History {
        created: Some(record.created.clone()),
        created_by: Some(step.source.clone()),
        comment: Some("kiln".into()),
        empty_layer: record.layer.is_none(),
        ..Default::default()
    });
    state.created = Some(record.created.clone());
}

pub(super) type StepResult = (Option<tempfile::TempDir>, Option<LayerRef>);

/// `WORKDIR target`: the missing directories of `target`, owned by the
/// stage's USER (resolved in the rootfs, as BuildKit does); no layer when
/// they all exist.
fn execute_workdir(
    shared: &Shared<'_>,
    state: &StageState,
    step: &Step,
    target: &str,
    location: &str,
) -> Result<StepResult, Error> {
    let copy_err = |source| Error::Copy {
        location: location.to_owned(),
        instruction: step.source.clone(),
        source,
    };
    let scratch = shared.snapshots.scratch_dir("workdir-")?;
    let view = rootfs_view(shared, &state.layers, location, &step.source)?;
    let owner = match state.config.config.user.as_deref() {
        None | Some("") => (0, 0),
        Some(user) => user
            .parse::<copy::ChownSpec>()
            .and_then(|spec| spec.resolve(&view))
            .map_err(|source| copy_err(source.into()))?,
    };
    let made =
        copy::make_dir_all(&view, scratch.path(), Path::new(target), owner).map_err(copy_err)?;
    if made == 0 {
        return Ok((None, None));
    }
    let layer = store_layer(shared, scratch.path(), location, &step.source)?;
    Ok((Some(scratch), layer))
}

pub(super) fn execute_copy(
    shared: &Shared<'_>,
    state: &StageState,
    step: &Step,
    plan: &copy::CopyPlan,
    link: bool,
    location: &str,
) -> Result<StepResult, Error> {
    let scratch = shared.snapshots.scratch_dir("copy-")?;
    let dest = rootfs_view(shared, &state.layers, location, &step.source)?;
    let copy_err = |source| Error::Copy {
        location: location.to_owned(),
        instruction: step.source.clone(),
        source,
    };
    if link {
        copy::execute_linked(plan, &dest, scratch.path()).map_err(copy_err)?;
    } else {
        copy::execute(plan, &dest, scratch.path()).map_err(copy_err)?;
    }
    let layer = store_layer(shared, scratch.path(), location, &step.source)?;
    Ok((Some(scratch), layer))
}
