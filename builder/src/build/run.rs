//! `RUN`: the executor over the stage's layers (an overlay of their snapshots, or
//! a copy: see [`super::stepfs`]), with the step's mounts ([`super::mounts`]), heredocs ([`super::heredoc`]), network and security
//! mode.
//!
//! `--network=none` (or the build's `--network=none`) gives an empty network
//! namespace; `default` and `host` use the host's network. `--security=insecure`
//! (allowed by the caller only with the `security.insecure` entitlement) keeps every
//! capability and a writable `/sys` ([`executor::Security::Insecure`]).

use super::*;

#[allow(clippy::too_many_arguments)]
pub(super) fn execute_run(
    shared: &Shared<'_>,
    state: &StageState,
    step: &Step,
    run: &dockerfile::RunStep,
    planned: &[mounts::Planned],
    location: &str,
    build: &str,
    number: usize,
) -> Result<StepResult, Error> {
    let exec_err = |source| Error::Executor {
        location: location.to_owned(),
        instruction: step.source.clone(),
        source,
    };
    let mode = stepfs::current_mode(shared);
    let (mut fs, rootfs) = StepFs::prepare(shared, &state.layers, mode, location, &step.source)?;
    // Bind copies, secret files and heredoc scripts live beside the step's
    // file system, in a scratch dir of their own.
    let scratch = shared.snapshots.scratch_dir("run-mounts-")?;
    let scripts = scratch.path().join("heredocs");
    std::fs::create_dir(&scripts).map_err(io_err(&scripts))?;
    let user = match state.config.config.user.as_deref() {
        None | Some("") => executor::User::root(),
        Some(spec) => executor::resolve_user(&rootfs, spec).map_err(exec_err)?,
    };
    let materialized =
        mounts::materialize(shared, planned, scratch.path(), location, &step.source)?;
    let (argv, mut step_mounts) = if run.heredocs.is_empty() {
        (command_vec(&state.config, &run.command), Vec::new())
    } else {
        let made = heredoc::command(&state.config, run, &scripts)?;
        (made.argv, made.mounts)
    };
    step_mounts.extend(materialized.mounts.iter().cloned());
    let mut env: Vec<(String, String)> = step.env.clone();
    for (k, v) in &materialized.env {
        env.retain(|(ek, _)| ek != k);
        env.push((k.clone(), v.clone()));
    }
    for (k, v) in &shared.proxy_args {
        if !env.iter().any(|(ek, _)| ek == k) {
            env.push((k.clone(), v.clone()));
        }
    }
    if !env.iter().any(|(k, _)| k == "HOME") {
        env.push(("HOME".into(), user.home.clone()));
    }
    let network = match (run.network, shared.request.network) {
        (dockerfile::NetworkMode::None, _) | (_, NetworkMode::None) => executor::Network::None,
        _ => executor::Network::Host,
    };
    let cwd = state
        .config
        .config
        .working_dir
        .clone()
        .filter(|w| !w.is_empty())
        .unwrap_or_else(|| "/".into());
    let mut spec = executor::RunSpec {
        rootfs,
        argv,
        env,
        cwd: PathBuf::from(cwd),
        user,
        hostname: "kiln".into(),
        network,
        security: match run.security {
            dockerfile::SecurityMode::Insecure => executor::Security::Insecure,
            _ => executor::Security::Sandbox,
        },
        mounts: step_mounts,
        extra_hosts: shared
            .request
            .extra_hosts
            .iter()
            .map(|host| (host.name.clone(), host.address.ip()))
            .collect(),
        shm_size: shared.request.shm_size,
    };
    let mut tail: Vec<String> = Vec::new();
    let mut partial = Vec::new();
    let reporter = shared.reporter;
    let mut output = |_stream: executor::Stream, bytes: &[u8]| {
        partial.extend_from_slice(bytes);
        while let Some(pos) = partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = partial.drain(..=pos).collect();
            let line = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
            if tail.len() == 20 {
                tail.remove(0);
            }
            tail.push(line.clone());
            reporter.send(Event::StepOutput {
                build: build.to_owned(),
                step: number,
                line,
            });
        }
    };
    let mut result = executor::run(&spec, shared.cancel, &mut output);
    if let Err(error) = &result
        && mode == stepfs::Mode::Overlay
        && stepfs::overlay_refused(shared, error)
    {
        stepfs::fall_back_to_copy(shared, error);
        let (copy_fs, rootfs) = StepFs::prepare(
            shared,
            &state.layers,
            stepfs::Mode::Copy,
            location,
            &step.source,
        )?;
        fs = copy_fs;
        spec.rootfs = rootfs;
        result = executor::run(&spec, shared.cancel, &mut output);
    }
    let outcome = result.map_err(|e| match e {
        executor::Error::Cancelled => Error::Cancelled,
        other => exec_err(other),
    });
    // Cache locks, bind copies and secret files go now, before the layer is written.
    drop(materialized);
    let outcome = outcome?;
    if !partial.is_empty() {
        let line = String::from_utf8_lossy(&partial).into_owned();
        tail.push(line.clone());
        shared.reporter.send(Event::StepOutput {
            build: build.to_owned(),
            step: number,
            line,
        });
    }
    if !outcome.status.success() {
        return Err(Error::StepFailed {
            location: location.to_owned(),
            instruction: step.source.clone(),
            status: outcome.status.to_string(),
            output_tail: tail,
        });
    }
    drop(scratch);
    fs.finish(shared, location, &step.source)
}
