//! The Kubernetes example: the pgcordon configuration in the ConfigMap is valid, and the
//! Deployment and the certificates agree with it.

use std::path::{Path, PathBuf};

use pgcordon_config::{AuditOutput, PasswordSource};
use serde_json::Value;

use crate::files::{deploy_dir, str_at, yaml, yaml_documents};

/// The pgcordon configuration of the ConfigMap, validated by pgcordon's loader as if it were
/// the file the sidecar reads.
fn sidecar_config() -> pgcordon_config::Config {
    let map = yaml("kubernetes/configmap.yaml");
    assert_eq!(map["kind"], "ConfigMap");
    let text = str_at(&map, "/data/pgcordon.yaml");
    let origin = Path::new("/etc/pgcordon/config/pgcordon.yaml");
    pgcordon_config::parse(text, origin)
        .unwrap_or_else(|e| panic!("the ConfigMap's pgcordon.yaml is invalid:\n{e}"))
}

fn sidecar() -> Value {
    let deployment = yaml("kubernetes/deployment.yaml");
    let spec = &deployment["spec"]["template"]["spec"];
    let sidecar = spec["initContainers"]
        .as_array()
        .expect("initContainers")
        .iter()
        .find(|c| c["name"] == "pgcordon")
        .expect("the pgcordon init container")
        .clone();
    sidecar
}

fn mount_paths(container: &Value) -> Vec<PathBuf> {
    container["volumeMounts"]
        .as_array()
        .expect("volumeMounts")
        .iter()
        .map(|m| PathBuf::from(str_at(m, "/mountPath")))
        .collect()
}

#[test]
fn pgcordon_runs_as_a_native_sidecar_with_probes_on_the_admin_port() {
    let config = sidecar_config();
    let sidecar = sidecar();
    // A native sidecar is an init container that keeps running.
    assert_eq!(sidecar["restartPolicy"], "Always");

    let admin = config.admin.expect("the example opens the admin listener");
    let port = sidecar["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "pgcordon-admin")
        .expect("a port named pgcordon-admin");
    assert_eq!(
        port["containerPort"].as_u64(),
        Some(u64::from(admin.listen.port()))
    );

    for (probe, path) in [
        ("startupProbe", "/healthz"),
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
    ] {
        let get = &sidecar[probe]["httpGet"];
        assert_eq!(get["path"], path, "{probe}");
        assert_eq!(get["port"], "pgcordon-admin", "{probe}");
    }

    // The probes come from the kubelet, on the pod's address: loopback would never answer.
    assert!(
        !admin.listen.ip().is_loopback(),
        "kubelet probes cannot reach {}",
        admin.listen
    );
    // The application's listener stays on loopback.
    assert!(config.listen.iter().all(|l| l.address.ip().is_loopback()));

    let deployment = yaml("kubernetes/deployment.yaml");
    let grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        .as_u64()
        .expect("terminationGracePeriodSeconds");
    assert!(
        grace > config.shutdown.drain_timeout.as_secs(),
        "grace {grace}s <= drain"
    );
}

#[test]
fn every_file_the_config_names_is_mounted() {
    let config = sidecar_config();
    let sidecar = sidecar();
    let mounts = mount_paths(&sidecar);
    let mut files = vec![
        config.tls.cert.clone(),
        config.tls.key.clone(),
        config.tls.client_ca.clone(),
        config.upstream.tls.ca.clone(),
    ];
    files.extend(config.tls.crl.iter().cloned());
    match &config.upstream.password {
        PasswordSource::File(path) => files.push(path.clone()),
        other => panic!("the example reads the password from a mounted file, not {other:?}"),
    }
    if let Some(AuditOutput::File(path)) = config.audit.as_ref().map(|a| a.output.clone()) {
        files.push(path);
    }
    for file in &files {
        assert!(
            mounts.iter().any(|m| file.starts_with(m)),
            "{} is not under any volume mount of the sidecar {mounts:?}",
            file.display()
        );
    }

    // The container reads the ConfigMap key it is given.
    let args: Vec<&str> = sidecar["args"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let config_path = args
        .windows(2)
        .find(|w| w[0] == "--config")
        .map(|w| PathBuf::from(w[1]))
        .expect("--config argument");
    assert_eq!(config_path.file_name().unwrap(), "pgcordon.yaml");
    assert!(mounts
        .iter()
        .any(|m| config_path.parent() == Some(m.as_path())));

    let security = &sidecar["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_ne!(security["runAsUser"].as_u64(), Some(0));
}

#[test]
fn certificates_carry_the_names_and_identities_the_config_expects() {
    let config = sidecar_config();
    let documents = yaml_documents(&deploy_dir().join("kubernetes/certificates.yaml"));
    let certificates: Vec<&Value> = documents
        .iter()
        .filter(|d| d["kind"] == "Certificate")
        .collect();
    assert_eq!(certificates.len(), 2);

    let client = certificates
        .iter()
        .find(|c| {
            c["spec"]["usages"]
                .as_array()
                .is_some_and(|u| u.iter().any(|x| x == "client auth"))
        })
        .expect("a client certificate");
    let uri = str_at(client, "/spec/uris/0");
    assert!(
        config.identity.pattern.extract(uri).is_some(),
        "identity.pattern does not accept the client certificate's URI {uri}"
    );

    let server = certificates
        .iter()
        .find(|c| str_at(c, "/spec/secretName") == "pgcordon-server-tls")
        .expect("the server certificate");
    let names: Vec<&str> = server["spec"]["dnsNames"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    // The application connects to localhost with verify-full, so that name must be there.
    assert!(names.contains(&"localhost"), "{names:?}");
    let deployment = crate::files::text("kubernetes/deployment.yaml");
    assert!(deployment.contains("@localhost:6432/") && deployment.contains("sslmode=verify-full"));

    // Renewal starts before the 7-day expiry alert would fire.
    let renew = str_at(server, "/spec/renewBefore");
    let hours: u64 = renew
        .trim_end_matches('h')
        .parse()
        .expect("renewBefore in hours");
    assert!(
        hours > 7 * 24,
        "renewBefore {renew} is inside the alert window"
    );

    // Every Secret the Deployment mounts from cert-manager is one these Certificates write.
    let secrets: Vec<&str> = certificates
        .iter()
        .map(|c| str_at(c, "/spec/secretName"))
        .collect();
    for name in ["pgcordon-server-tls", "api-tenant-0f8fad5b-tls"] {
        assert!(
            secrets.contains(&name),
            "{name} is not issued here: {secrets:?}"
        );
        assert!(
            deployment.contains(&format!("secretName: {name}")),
            "{name} is not mounted"
        );
    }
}
