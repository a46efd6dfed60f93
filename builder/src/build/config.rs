//! Metadata instructions: how ENV, CMD, HEALTHCHECK and the rest change the image config.

use super::*;

pub(super) fn healthcheck_config(hc: &Healthcheck) -> Option<image::Healthcheck> {
    let nanos = |d: &Option<std::time::Duration>| d.map(|d| d.as_nanos() as i64);
    match hc {
        Healthcheck::None => Some(image::Healthcheck {
            test: Some(vec!["NONE".into()]),
            ..Default::default()
        }),
        Healthcheck::Check(check) => {
            let test = match &check.command {
                CommandLine::Shell(s) => vec!["CMD-SHELL".into(), s.clone()],
                CommandLine::Exec(v) => {
                    let mut t = vec!["CMD".to_owned()];
                    t.extend(v.iter().cloned());
                    t
                }
            };
            Some(image::Healthcheck {
                test: Some(test),
                interval: nanos(&check.interval),
                timeout: nanos(&check.timeout),
                start_period: nanos(&check.start_period),
                start_interval: nanos(&check.start_interval),
                retries: check.retries.map(i64::from),
            })
        }
    }
}

pub(super) fn command_vec(config: &ImageConfig, command: &CommandLine) -> Vec<String> {
    match command {
        CommandLine::Exec(v) => v.clone(),
        CommandLine::Shell(s) => {
            let mut argv = config
                .config
                .shell
                .clone()
                .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()]);
            argv.push(s.clone());
            argv
        }
    }
}

/// Applies a metadata instruction to the config; false if `instruction` is not one.
pub(super) fn apply_meta(
    config: &mut ImageConfig,
    instruction: &ResolvedInstruction,
    workdir_base: &str,
) -> bool {
    let c = &mut config.config;
    match instruction {
        ResolvedInstruction::Env(vars) => {
            for (k, v) in vars {
                config.set_env(k, v);
            }
        }
        ResolvedInstruction::Arg(_) => {}
        ResolvedInstruction::Label(labels) => {
            let map = c.labels.get_or_insert_with(BTreeMap::new);
            for (k, v) in labels {
                map.insert(k.clone(), v.clone());
            }
        }
        ResolvedInstruction::Maintainer(m) => config.author = Some(m.clone()),
        ResolvedInstruction::Expose(ports) => {
            let map = c.exposed_ports.get_or_insert_with(BTreeMap::new);
            for p in ports {
                map.insert(p.clone(), serde_json::json!({}));
            }
        }
        ResolvedInstruction::Volume(volumes) => {
            let map = c.volumes.get_or_insert_with(BTreeMap::new);
            for v in volumes {
                map.insert(v.clone(), serde_json::json!({}));
            }
        }
        ResolvedInstruction::User(user) => c.user = Some(user.clone()),
        ResolvedInstruction::StopSignal(signal) => c.stop_signal = Some(signal.clone()),
        ResolvedInstruction::Shell(shell) => c.shell = Some(shell.clone()),
        ResolvedInstruction::Onbuild(trigger) => c
            .on_build
            .get_or_insert_with(Vec::new)
            .push(trigger.clone()),
        ResolvedInstruction::Healthcheck(hc) => c.healthcheck = healthcheck_config(hc),
        ResolvedInstruction::Cmd(cmd) => {
            let argv = command_vec(config, cmd);
            config.config.cmd = Some(argv);
        }
        ResolvedInstruction::Entrypoint(ep) => {
            let argv = command_vec(config, ep);
            config.config.entrypoint = Some(argv);
            // Docker: ENTRYPOINT resets a CMD inherited from the base image or
            // set earlier in the stage.
            config.config.cmd = None;
        }
        ResolvedInstruction::Workdir(dir) => {
            c.working_dir = Some(join_path(workdir_base, dir));
        }
        ResolvedInstruction::Run(_)
        | ResolvedInstruction::Copy(_)
        | ResolvedInstruction::Add(_) => {
            return false;
        }
    }
    true
}

pub(super) fn join_path(base: &str, path: &str) -> String {
    if path.starts_with('/') {
        clean_path(path)
    } else {
        clean_path(&format!(
            "{}/{}",
            if base.is_empty() { "/" } else { base },
            path
        ))
    }
}

pub(super) fn clean_path(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}
