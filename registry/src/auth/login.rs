//! Saving and removing logins as `docker login` / `docker logout` do.
//!
//! When Docker's `config.json` names a credential helper for the registry
//! (`credHelpers`, else `credsStore`), the helper's `store`/`erase` action is used.
//! Otherwise `auths.<server>.auth` (base64 `user:password`) is written to
//! `config.json`, keeping every other key of the file as it was; the file is created
//! with mode 0600 (its directory 0700) and replaced atomically. Docker Hub's key is
//! `https://index.docker.io/v1/`; other registries use their `host[:port]`.
//! Checking that credentials work is [`RegistryClient::check_credentials`](crate::RegistryClient::check_credentials).

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::credentials::{config_key, find_entry_key, read_json_file, run_helper};
use super::{CredentialError, CredentialSources};

/// Where a login was stored or erased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginStorage {
    /// In `auths` of this config file.
    ConfigFile(PathBuf),
    /// With this credential helper (`docker-credential-<name>`).
    Helper(String),
}

fn configured_helper(config: &serde_json::Value, key: &str) -> Option<String> {
    config
        .get("credHelpers")
        .and_then(|helpers| helpers.as_object())
        .and_then(|helpers| find_entry_key(helpers, key).and_then(|k| helpers.get(k)))
        .and_then(|name| name.as_str())
        .or_else(|| config.get("credsStore").and_then(|store| store.as_str()))
        .filter(|name| !name.is_empty())
        .map(str::to_owned)
}

/// Saves `username`/`password` for `registry` (any spelling: `docker.io`, `ghcr.io`,
/// `https://index.docker.io/v1/`).
pub fn store_login(
    sources: &CredentialSources,
    registry: &str,
    username: &str,
    password: &str,
) -> Result<LoginStorage, CredentialError> {
    let path = sources.docker_config_path()?;
    let key = config_key(registry);
    let mut config = read_json_file(&path)?.unwrap_or_else(|| serde_json::json!({}));
    if let Some(helper) = configured_helper(&config, &key) {
        let input = serde_json::json!({"ServerURL": key, "Username": username, "Secret": password});
        run_helper(
            &helper,
            "store",
            &key,
            input.to_string().as_bytes(),
            sources.helper_dir.as_deref(),
        )?
        .map_err(|reason| CredentialError::Helper {
            helper: helper.clone(),
            action: "store",
            server: key.clone(),
            reason,
        })?;
        return Ok(LoginStorage::Helper(helper));
    }
    let not_an_object = || CredentialError::Parse {
        path: path.clone(),
        source: serde::de::Error::custom("expected a JSON object with an \"auths\" object"),
    };
    let root = config.as_object_mut().ok_or_else(not_an_object)?;
    let auths = root
        .entry("auths")
        .or_insert_with(|| serde_json::json!({}))
        .as_object_mut()
        .ok_or_else(not_an_object)?;
    // Replace any differently spelled key for the same registry.
    if let Some(existing) = find_entry_key(auths, &key).map(str::to_owned) {
        auths.remove(&existing);
    }
    auths.insert(
        key,
        serde_json::json!({"auth": BASE64.encode(format!("{username}:{password}"))}),
    );
    write_config(&path, &config)?;
    Ok(LoginStorage::ConfigFile(path))
}

/// Removes the saved login for `registry`; `Ok(None)` when there was none.
pub fn erase_login(
    sources: &CredentialSources,
    registry: &str,
) -> Result<Option<LoginStorage>, CredentialError> {
    let path = sources.docker_config_path()?;
    let key = config_key(registry);
    let Some(mut config) = read_json_file(&path)? else {
        return Ok(None);
    };
    if let Some(helper) = configured_helper(&config, &key) {
        return match run_helper(
            &helper,
            "erase",
            &key,
            key.as_bytes(),
            sources.helper_dir.as_deref(),
        )? {
            Ok(_) => Ok(Some(LoginStorage::Helper(helper))),
            Err(reason) if reason.to_lowercase().contains("not found") => Ok(None),
            Err(reason) => Err(CredentialError::Helper {
                helper,
                action: "erase",
                server: key,
                reason,
            }),
        };
    }
    let Some(auths) = config
        .get_mut("auths")
        .and_then(|auths| auths.as_object_mut())
    else {
        return Ok(None);
    };
    let Some(existing) = find_entry_key(auths, &key).map(str::to_owned) else {
        return Ok(None);
    };
    auths.remove(&existing);
    write_config(&path, &config)?;
    Ok(Some(LoginStorage::ConfigFile(path)))
}

fn write_config(path: &Path, config: &serde_json::Value) -> Result<(), CredentialError> {
    let write_error = |source| CredentialError::Write {
        path: path.to_owned(),
        source,
    };
    let directory = path.parent().unwrap_or(Path::new("."));
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(directory)
        .map_err(write_error)?;
    let mut bytes = serde_json::to_vec_pretty(config).expect("a JSON value always serialises");
    bytes.push(b'\n');
    let temp = directory.join(format!(".config.json.tmp-{}", std::process::id()));
    let result = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temp)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        fs::rename(&temp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result.map_err(write_error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Credential;
    use std::os::unix::fs::PermissionsExt;

    fn sources(dir: &Path) -> CredentialSources {
        let mut sources = CredentialSources::anonymous();
        sources.docker_config_dir = Some(dir.join("docker"));
        sources.helper_dir = Some(dir.to_owned());
        sources
    }

    #[test]
    fn login_writes_auths_and_keeps_other_keys() {
        let temp = tempfile::tempdir().unwrap();
        let sources = sources(temp.path());
        let path = sources.docker_config_path().unwrap();
        let stored = store_login(&sources, "docker.io", "hub", "pw").unwrap();
        assert_eq!(stored, LoginStorage::ConfigFile(path.clone()));
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let config: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        assert_eq!(
            config["auths"]["https://index.docker.io/v1/"]["auth"],
            BASE64.encode("hub:pw")
        );

        fs::write(
            &path,
            r#"{"proxies":{"default":{"httpProxy":"http://p:3128"}},"auths":{"https://ghcr.io":{"auth":"b2xkOm9sZA=="}},"detachKeys":"ctrl-e"}"#,
        )
        .unwrap();
        store_login(&sources, "ghcr.io", "new", "secret").unwrap();
        let config: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        assert_eq!(config["proxies"]["default"]["httpProxy"], "http://p:3128");
        assert_eq!(config["detachKeys"], "ctrl-e");
        assert!(config["auths"].get("https://ghcr.io").is_none());
        assert_eq!(
            sources.lookup("ghcr.io").unwrap().0,
            Credential::Basic {
                username: "new".to_owned(),
                password: "secret".to_owned()
            }
        );

        assert!(erase_login(&sources, "ghcr.io").unwrap().is_some());
        assert_eq!(sources.lookup("ghcr.io").unwrap().0, Credential::Anonymous);
        assert!(erase_login(&sources, "ghcr.io").unwrap().is_none());
        let config: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        assert_eq!(config["detachKeys"], "ctrl-e");
    }

    #[test]
    fn login_uses_the_configured_helper() {
        let temp = tempfile::tempdir().unwrap();
        let sources = sources(temp.path());
        let path = sources.docker_config_path().unwrap();
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, r#"{"credsStore":"rec"}"#).unwrap();
        let log = temp.path().join("log");
        let helper = temp.path().join("docker-credential-rec");
        fs::write(
            &helper,
            format!("#!/bin/sh\necho \"$1 $(cat)\" >> {}\n", log.display()),
        )
        .unwrap();
        fs::set_permissions(&helper, fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(
            store_login(&sources, "ghcr.io", "u", "p").unwrap(),
            LoginStorage::Helper("rec".to_owned())
        );
        assert_eq!(
            erase_login(&sources, "ghcr.io").unwrap(),
            Some(LoginStorage::Helper("rec".to_owned()))
        );
        let log = fs::read_to_string(log).unwrap();
        assert!(
            log.contains(r#"store {"ServerURL":"ghcr.io","Username":"u","Secret":"p"}"#),
            "{log}"
        );
        assert!(log.contains("erase ghcr.io"), "{log}");
    }
}
