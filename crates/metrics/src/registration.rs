//! Registration of collectors, keeping the list of the names they define.
//!
//! Owns [`Registrar`], the one place collectors enter the registry, so that
//! [`crate::Metrics::metric_names`] is read from the registered descriptors (not from a second,
//! hand-kept list that could drift from them).

use prometheus::core::Collector;
use prometheus::Registry;

use crate::error::MetricsError;

/// Registers collectors into a registry and records every metric name they declare.
pub(crate) struct Registrar {
    pub(crate) registry: Registry,
    pub(crate) names: Vec<String>,
}

impl Registrar {
    pub(crate) fn new() -> Self {
        Registrar {
            registry: Registry::new(),
            names: Vec::new(),
        }
    }

    /// Registers a freshly built collector and hands back a handle to it (prometheus
    /// handles are cheap clones sharing one value).
    pub(crate) fn add<C>(&mut self, built: prometheus::Result<C>) -> Result<C, MetricsError>
    where
        C: Collector + Clone + 'static,
    {
        let collector = built.map_err(|source| MetricsError::Define {
            name: "(unnamed)".to_owned(),
            source,
        })?;
        self.add_boxed(Box::new(collector.clone()))?;
        Ok(collector)
    }

    /// Registers a collector that the caller keeps no handle to (or shares through an `Arc`).
    pub(crate) fn add_boxed(&mut self, collector: Box<dyn Collector>) -> Result<(), MetricsError> {
        let names: Vec<String> = collector.desc().iter().map(|d| d.fq_name.clone()).collect();
        self.registry
            .register(collector)
            .map_err(|source| MetricsError::Define {
                name: names.first().cloned().unwrap_or_default(),
                source,
            })?;
        self.names.extend(names);
        Ok(())
    }
}
