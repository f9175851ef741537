//! Live reload of TLS material: the server certificate and key, the client CA bundle and CRLs,
//! the upstream CA and client certificate. cert-manager and similar tools rewrite these files in
//! place (often by swapping a symlink), so files are watched by content, and SIGHUP (handled by
//! the binary) asks for a reload too. A new file that does not load leaves the previous material
//! in force; the error names the file and a failed reload is counted. Established connections are
//! untouched; each new handshake takes the configuration in force. The upstream password file is
//! read for every new backend session anyway.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use pgcordon_metrics::{CertificateKind, ReloadOutcome};

use crate::listener::Shared;
use crate::settings::LoadError;

/// Reloads the TLS material of a running proxy.
#[derive(Clone)]
pub struct Reloader {
    shared: Arc<Shared>,
}

impl Reloader {
    pub(crate) fn new(shared: Arc<Shared>) -> Reloader {
        Reloader { shared }
    }

    /// Every file whose change triggers a reload.
    pub fn files(&self) -> Vec<PathBuf> {
        let s = &self.shared.settings;
        let mut files = vec![s.tls_files.cert.clone(), s.tls_files.key.clone()];
        files.push(s.tls_files.client_ca.clone());
        files.extend(s.tls_files.crls.iter().cloned());
        files.push(s.upstream_tls_files.ca.clone());
        if let Some((cert, key)) = &s.upstream_tls_files.client_cert {
            files.push(cert.clone());
            files.push(key.clone());
        }
        files
    }

    /// Loads every file again and puts the new material in force, or keeps the old on error.
    ///
    /// # Errors
    /// The first file that does not load; nothing changes then.
    pub fn reload(&self) -> Result<(), LoadError> {
        let result = self.load_and_swap();
        let metrics = &self.shared.obs.metrics;
        match &result {
            Ok(()) => {
                metrics.reload(ReloadOutcome::Success);
                tracing::info!("TLS material reloaded");
            }
            Err(e) => {
                metrics.reload(ReloadOutcome::Failure);
                tracing::error!(error = %e, "reload failed; the previous TLS material stays in force");
            }
        }
        result
    }

    fn load_and_swap(&self) -> Result<(), LoadError> {
        let s = &self.shared.settings;
        let server = pgcordon_tls::server_config(&s.tls_files)?;
        let (client, server_name) =
            pgcordon_tls::upstream_config(&s.upstream_tls_files).map_err(LoadError::UpstreamTls)?;
        // Both loaded: swap together. A fresh server config also means a fresh session cache,
        // so no session resumed from before a CRL change skips the new revocation check.
        self.shared.tls.store(server);
        // The primary takes the configured server name; replicas keep their own names.
        let targets = &self.shared.router.targets;
        for (i, target) in std::iter::once(targets.primary())
            .chain(targets.replicas())
            .enumerate()
        {
            let mut upstream = (*target.pool().upstream()).clone();
            upstream.tls = client.clone();
            if i == 0 {
                upstream.server_name = server_name.clone();
            }
            target.pool().set_upstream(upstream);
        }
        self.record_expiry();
        Ok(())
    }

    /// Sets the certificate expiry and CRL gauges from the files now in force.
    pub fn record_expiry(&self) {
        let s = &self.shared.settings;
        let m = &self.shared.obs.metrics;
        let expiry = |path: &std::path::Path| match pgcordon_tls::earliest_expiry(path) {
            Ok(at) => Some(at),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read a certificate's expiry");
                None
            }
        };
        m.set_certificate_expiry(CertificateKind::Server, expiry(&s.tls_files.cert));
        m.set_certificate_expiry(CertificateKind::ClientCa, expiry(&s.tls_files.client_ca));
        m.set_certificate_expiry(
            CertificateKind::UpstreamCa,
            expiry(&s.upstream_tls_files.ca),
        );
        let client = s
            .upstream_tls_files
            .client_cert
            .as_ref()
            .and_then(|(c, _)| expiry(c));
        m.set_certificate_expiry(CertificateKind::UpstreamClient, client);
        match pgcordon_tls::crl_next_update(&s.tls_files.crls) {
            Ok(next) => m.set_crl_next_update(next),
            Err(e) => tracing::warn!(error = %e, "cannot read a CRL's next update"),
        }
    }

    /// Polls the files every `every` and reloads when any content changed.
    pub fn spawn_watch(self, every: Duration) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut last = self.fingerprint().await;
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let now = self.fingerprint().await;
                if now != last {
                    tracing::info!("TLS files changed on disk");
                    // On failure keep the old fingerprint, so a fixed file triggers a retry.
                    if self.reload().is_ok() {
                        last = now;
                    }
                }
            }
        })
    }

    /// A digest of every watched file's content (a missing file counts as empty).
    async fn fingerprint(&self) -> Vec<u8> {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        for path in self.files() {
            let content = tokio::fs::read(&path).await.unwrap_or_default();
            ctx.update(&(content.len() as u64).to_be_bytes());
            ctx.update(&content);
        }
        ctx.finish().as_ref().to_vec()
    }
}
