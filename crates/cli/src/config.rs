//! The CLI's config file: where the server is and the API key of the logged-in user.
//! `REDCLOUD_CONFIG` names the file; otherwise `$XDG_CONFIG_HOME/redcloud/config.json` or
//! `~/.config/redcloud/config.json`.

use std::path::PathBuf;

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// What the CLI remembers between runs.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Saved {
    /// The key from the last register or login.
    #[serde(default)]
    pub api_key: Option<String>,
    /// Who that key belongs to.
    #[serde(default)]
    pub username: Option<String>,
    /// The newest `X-RedCloud-Frontier` a controller answered with: sent back on every request
    /// so that any controller shows this user's own writes.
    #[serde(default)]
    pub frontier: Option<String>,
}

/// The config file's path.
pub fn path() -> PathBuf {
    if let Some(path) = std::env::var_os("REDCLOUD_CONFIG") {
        return PathBuf::from(path);
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("redcloud").join("config.json")
}

/// Reads the config; a missing file is an empty config.
pub fn load() -> anyhow::Result<Saved> {
    let path = path();
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not a valid config file", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Saved::default()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Writes the config atomically, readable by the owner only (it holds a key).
pub fn save(saved: &Saved) -> anyhow::Result<()> {
    let path = path();
    let dir = path
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let tmp = tempfile::NamedTempFile::new_in(&dir)
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    serde_json::to_writer_pretty(tmp.as_file(), saved)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o600))?;
    }
    tmp.persist(&path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
