//! TLS towards endpoints from PEM files that rotate: the configuration is
//! rebuilt when a file changes (cert-manager and Kubernetes Secret mounts
//! replace files in place, or swap symlinks), checked at each new
//! connection and probe.
//!
//! Owns: the file paths, the last configuration that loaded, and when the
//! files were last looked at. Must never: let a set of files that does not
//! load (half written, a key that does not match) replace a good
//! configuration; it is logged and the previous one keeps serving.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use tracing::{info, warn};

use super::tls::{TlsError, client_config};

/// The CA file, and a client certificate and key for mutual TLS.
#[derive(Debug)]
pub(crate) struct TlsFiles {
    ca: PathBuf,
    identity: Option<(PathBuf, PathBuf)>,
    loaded: Mutex<Loaded>,
    /// One reload at a time: callers that find the files changed while
    /// another reads them wait, then use what it loaded.
    reloading: tokio::sync::Mutex<()>,
}

/// What the files looked like when last read, and the configuration in use.
#[derive(Debug)]
struct Loaded {
    stamps: Vec<Stamp>,
    config: Arc<rustls::ClientConfig>,
}

/// What identifies a file's content without reading it: modification
/// time, length and (on Unix) device, inode and change time, which no tool
/// sets back (a copy that keeps the modification time, a same-length
/// rewrite within one clock tick). None: it could not be looked at.
type Stamp = Option<(SystemTime, u64, [i64; 4])>;

impl TlsFiles {
    /// Reads the files now: a set that does not load is an error here.
    pub(crate) fn open(
        ca: PathBuf,
        identity: Option<(PathBuf, PathBuf)>,
    ) -> Result<Self, TlsError> {
        let paths = paths(&ca, identity.as_ref());
        let stamps = paths
            .iter()
            .map(|path| stamp(std::fs::metadata(path)))
            .collect();
        let contents = paths
            .iter()
            .map(|path| read(path, std::fs::read(path)))
            .collect::<Result<Vec<_>, _>>()?;
        let config = build(&contents)?;
        Ok(Self {
            ca,
            identity,
            loaded: Mutex::new(Loaded {
                stamps,
                config: Arc::new(config),
            }),
            reloading: tokio::sync::Mutex::new(()),
        })
    }

    /// The configuration for a new connection: rebuilt first if a file
    /// changed since it was last looked at.
    pub(crate) async fn current(&self) -> Arc<rustls::ClientConfig> {
        let paths = paths(&self.ca, self.identity.as_ref());
        if let Ok(config) = self.unchanged(&paths).await {
            return config;
        }
        let _reloading = self.reloading.lock().await;
        // Another caller may have reloaded them meanwhile.
        let stamps = match self.unchanged(&paths).await {
            Ok(config) => return config,
            Err(stamps) => stamps,
        };
        let mut contents = Vec::with_capacity(paths.len());
        for path in &paths {
            match read(path, tokio::fs::read(path).await) {
                Ok(content) => contents.push(content),
                Err(error) => {
                    // Maybe passing (no file handle left, a permission being
                    // changed): read again at the next connection.
                    warn!(error = %crate::telemetry::error_chain(&error), "endpoint TLS files changed but cannot be read; new connections keep the previous ones");
                    return self.config();
                }
            }
        }
        let built = build(&contents);
        let mut loaded = self.loaded.lock().unwrap_or_else(PoisonError::into_inner);
        // Looked at: a set that does not load is read again once it changes.
        loaded.stamps = stamps;
        match built {
            Ok(config) => {
                info!(ca = %self.ca.display(), "endpoint TLS files changed; new connections use them");
                loaded.config = Arc::new(config);
            }
            Err(error) => {
                warn!(ca = %self.ca.display(), error = %crate::telemetry::error_chain(&error), "endpoint TLS files changed but do not load; new connections keep the previous ones");
            }
        }
        loaded.config.clone()
    }

    /// The configuration in use if the files look as when last read, else
    /// how they look now.
    async fn unchanged(&self, paths: &[&Path]) -> Result<Arc<rustls::ClientConfig>, Vec<Stamp>> {
        let stamps = stamps(paths).await;
        let loaded = self.loaded.lock().unwrap_or_else(PoisonError::into_inner);
        match loaded.stamps == stamps {
            true => Ok(loaded.config.clone()),
            false => Err(stamps),
        }
    }

    /// The configuration in use.
    fn config(&self) -> Arc<rustls::ClientConfig> {
        let loaded = self.loaded.lock().unwrap_or_else(PoisonError::into_inner);
        loaded.config.clone()
    }
}

async fn stamps(paths: &[&Path]) -> Vec<Stamp> {
    let mut stamps = Vec::with_capacity(paths.len());
    for path in paths {
        stamps.push(stamp(tokio::fs::metadata(path).await));
    }
    stamps
}

fn paths<'a>(ca: &'a Path, identity: Option<&'a (PathBuf, PathBuf)>) -> Vec<&'a Path> {
    let mut paths = vec![ca];
    if let Some((cert, key)) = identity {
        paths.push(cert);
        paths.push(key);
    }
    paths
}

fn stamp(metadata: std::io::Result<std::fs::Metadata>) -> Stamp {
    let metadata = metadata.ok()?;
    #[cfg(unix)]
    let identity = {
        use std::os::unix::fs::MetadataExt;
        // Bit patterns, compared only for equality.
        [
            metadata.dev() as i64,
            metadata.ino() as i64,
            metadata.ctime(),
            metadata.ctime_nsec(),
        ]
    };
    #[cfg(not(unix))]
    let identity = [0; 4];
    Some((metadata.modified().ok()?, metadata.len(), identity))
}

fn read(path: &Path, content: std::io::Result<Vec<u8>>) -> Result<Vec<u8>, TlsError> {
    content.map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// A configuration from the CA's PEM and, when given, the certificate's and
/// key's (in the order of [`paths`]).
fn build(contents: &[Vec<u8>]) -> Result<rustls::ClientConfig, TlsError> {
    match contents {
        [ca] => client_config(ca, None),
        [ca, cert, key] => client_config(ca, Some((cert, key))),
        _ => Err(TlsError::Pem {
            what: "TLS files",
            reason: format!("{} files read, expected 1 or 3", contents.len()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::endpoint::tls::tests::fixture_path as fixture;

    /// A copy that keeps the modification time and the length (`cp -p` of
    /// a same-size certificate) is still a change.
    #[tokio::test]
    async fn a_same_length_copy_with_the_old_time_is_a_change() {
        let dir = tempfile::tempdir().unwrap_or_else(|error| panic!("{error}"));
        let ca = dir.path().join("ca.pem");
        let content = std::fs::read(fixture("ca.pem")).unwrap_or_default();
        std::fs::write(&ca, &content).unwrap_or_else(|error| panic!("{error}"));
        let files = TlsFiles::open(ca.clone(), None).unwrap_or_else(|error| panic!("{error}"));
        let paths = [ca.as_path()];
        assert!(files.unchanged(&paths).await.is_ok());
        let modified = std::fs::metadata(&ca).and_then(|m| m.modified());
        let next = dir.path().join("next.pem");
        std::fs::write(&next, &content).unwrap_or_else(|error| panic!("{error}"));
        let kept = std::fs::File::options()
            .write(true)
            .open(&next)
            .and_then(|file| file.set_modified(modified?));
        assert!(kept.is_ok(), "{kept:?}");
        std::fs::rename(&next, &ca).unwrap_or_else(|error| panic!("{error}"));
        assert!(
            files.unchanged(&paths).await.is_err(),
            "the swap went unnoticed"
        );
    }

    #[tokio::test]
    async fn a_client_identity_loads_from_files_and_a_mismatched_key_is_refused() {
        let identity = Some((fixture("client.pem"), fixture("client.key")));
        let files = TlsFiles::open(fixture("ca.pem"), identity);
        let config = match &files {
            Ok(files) => Some(files.current().await),
            Err(_) => None,
        };
        assert!(
            config.is_some_and(|c| c.client_auth_cert_resolver.has_certs()),
            "{files:?}"
        );
        let mismatched = Some((fixture("client.pem"), fixture("server.key")));
        let refused = TlsFiles::open(fixture("ca.pem"), mismatched);
        assert!(
            matches!(refused, Err(TlsError::Rustls { .. })),
            "{refused:?}"
        );
        let missing = TlsFiles::open(fixture("nowhere.pem"), None);
        assert!(matches!(missing, Err(TlsError::Read { .. })), "{missing:?}");
    }
}
