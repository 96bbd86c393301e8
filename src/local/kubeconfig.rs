//! The cluster's kubeconfig: a file of its own in the data directory, and a context of the
//! cluster's name merged into the user's kubeconfig (`$KUBECONFIG`'s first file, or
//! `~/.kube/config`) without touching the other clusters, users and contexts there.

use std::path::{Path, PathBuf};

use serde_yaml::{Mapping, Value};

use super::{Common, Error, io};

/// Writes the cluster's own kubeconfig and merges its context into the user's, making it current.
/// Returns the user's kubeconfig path.
pub(super) fn install(common: &Common) -> Result<PathBuf, Error> {
    let own = common.kubeconfig_file();
    let mut config = empty();
    upsert(&mut config, &common.name, &common.server());
    save(&own, &config)?;
    let user = user_file();
    let mut merged = load(&user)?;
    upsert(&mut merged, &common.name, &common.server());
    save(&user, &merged)?;
    Ok(user)
}

/// Removes the cluster's context, cluster and user from the user's kubeconfig; `true` if it had them.
pub(super) fn uninstall(common: &Common) -> Result<bool, Error> {
    let user = user_file();
    if !user.exists() {
        return Ok(false);
    }
    let mut config = load(&user)?;
    let mut removed = false;
    for section in ["clusters", "users", "contexts"] {
        if let Some(list) = config.get_mut(section).and_then(Value::as_sequence_mut) {
            let before = list.len();
            list.retain(|entry| entry.get("name").and_then(Value::as_str) != Some(&common.name));
            removed |= list.len() != before;
        }
    }
    if config.get("current-context").and_then(Value::as_str) == Some(&common.name) {
        config["current-context"] = Value::String(String::new());
    }
    if removed && config == empty() {
        // Nothing but ours was in it, so `up` made it: it goes, as the rest of what up made.
        std::fs::remove_file(&user).map_err(io(format!("removing {}", user.display())))?;
    } else if removed {
        save(&user, &config)?;
    }
    Ok(removed)
}

fn user_file() -> PathBuf {
    if let Some(first) = std::env::var_os("KUBECONFIG").and_then(|v| std::env::split_paths(&v).next())
        && !first.as_os_str().is_empty()
    {
        return first;
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    home.join(".kube").join("config")
}

fn empty() -> Value {
    serde_yaml::from_str(
        "apiVersion: v1\nkind: Config\nclusters: []\nusers: []\ncontexts: []\ncurrent-context: ''\npreferences: {}\n",
    )
    .unwrap_or_default()
}

fn load(path: &Path) -> Result<Value, Error> {
    match std::fs::read_to_string(path) {
        Ok(text) if !text.trim().is_empty() => {
            serde_yaml::from_str(&text).map_err(|e| Error::Kubeconfig(format!("{}: {e}", path.display())))
        }
        Ok(_) => Ok(empty()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(empty()),
        Err(e) => Err(io(format!("reading {}", path.display()))(e)),
    }
}

fn save(path: &Path, config: &Value) -> Result<(), Error> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
    }
    let text = serde_yaml::to_string(config).map_err(|e| Error::Kubeconfig(e.to_string()))?;
    std::fs::write(path, text).map_err(io(format!("writing {}", path.display())))
}

/// Puts cluster, user and context `name` (pointing at `server`) into `config`, replacing any
/// entries of that name, and makes the context current.
fn upsert(config: &mut Value, name: &str, server: &str) {
    let entry = |key: &str, body: &str| -> Value {
        serde_yaml::from_str(&format!("name: {name}\n{key}: {body}\n")).unwrap_or_default()
    };
    let entries = [
        ("clusters", entry("cluster", &format!("{{server: '{server}'}}"))),
        ("users", entry("user", "{}")),
        (
            "contexts",
            entry("context", &format!("{{cluster: {name}, user: {name}}}")),
        ),
    ];
    if !config.is_mapping() {
        *config = empty();
    }
    for (section, new) in entries {
        let map = config.as_mapping_mut().map(|m| m as &mut Mapping);
        let Some(map) = map else { return };
        let list = map
            .entry(Value::String(section.into()))
            .or_insert_with(|| Value::Sequence(Vec::new()));
        if !list.is_sequence() {
            *list = Value::Sequence(Vec::new());
        }
        if let Some(list) = list.as_sequence_mut() {
            list.retain(|e| e.get("name").and_then(Value::as_str) != Some(name));
            list.push(new);
        }
    }
    config["current-context"] = Value::String(name.into());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_keeps_other_contexts_and_replaces_our_own() {
        let mut config: Value = serde_yaml::from_str(
            "apiVersion: v1\nkind: Config\nclusters: [{name: prod, cluster: {server: 'https://prod'}}]\n\
             users: [{name: prod, user: {token: secret}}]\ncontexts: [{name: prod, context: {cluster: prod, user: prod}}]\n\
             current-context: prod\n",
        )
        .unwrap();
        upsert(&mut config, "hyperkube", "http://127.0.0.1:8080");
        upsert(&mut config, "hyperkube", "http://127.0.0.1:9090");
        let names = |section: &str| -> Vec<String> {
            config[section]
                .as_sequence()
                .unwrap()
                .iter()
                .map(|e| e["name"].as_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(names("clusters"), ["prod", "hyperkube"]);
        assert_eq!(names("contexts"), ["prod", "hyperkube"]);
        assert_eq!(config["clusters"][1]["cluster"]["server"], "http://127.0.0.1:9090");
        assert_eq!(config["users"][0]["user"]["token"], "secret");
        assert_eq!(config["current-context"], "hyperkube");
    }
}
