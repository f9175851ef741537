//! One target's health check: a persistent checking connection and the values it reads.
//!
//! Owns the checking connection (opened with [`pgcordon_upstream::connect`] and the target's own
//! upstream settings, so it uses the same verify-full TLS and SCRAM-SHA-256(-PLUS) as the pooled
//! sessions, and is not a second, weaker way in), re-opening it after any failure, and one query
//! per check under `check_timeout`. It does not judge the values; see `health`.

use std::time::Duration;

use pgcordon_upstream::{connect, Backend, UpstreamSettings};

use crate::error::CheckError;
use crate::lsn::Lsn;
use crate::query::first_row;

/// What a check reads, in one statement so the values are from one moment. On a server in
/// recovery the position is the replay position; otherwise it is the current write position
/// (`pg_current_wal_lsn()` fails during recovery, so the CASE picks one). The age of the last
/// replayed transaction is NULL on a server that never replayed one.
const CHECK_SQL: &str = "SELECT pg_is_in_recovery(), \
     CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END, \
     EXTRACT(EPOCH FROM clock_timestamp() - pg_last_xact_replay_timestamp())";

/// The application_name of checking connections, so operators can tell them from pooled
/// sessions in `pg_stat_activity`.
const CHECK_APPLICATION_NAME: &str = "pgcordon health check";

/// The values one successful check read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Observation {
    /// `pg_is_in_recovery()`.
    pub(crate) in_recovery: bool,
    /// The replay position in recovery, the current write position otherwise.
    pub(crate) lsn: Option<Lsn>,
    /// Seconds since the last replayed transaction committed on the primary (replicas only;
    /// never negative, even when the two servers' clocks disagree).
    pub(crate) replay_age: Option<f64>,
}

/// The checking connection of one target.
pub(crate) struct Checker {
    target: String,
    upstream: UpstreamSettings,
    timeout: Duration,
    conn: Option<Backend>,
}

impl Checker {
    /// A checker for `target` that connects with `upstream` (its application_name replaced)
    /// and gives each check `timeout`.
    pub(crate) fn new(target: &str, upstream: &UpstreamSettings, timeout: Duration) -> Checker {
        let mut upstream = upstream.clone();
        upstream
            .startup_params
            .retain(|(name, _)| name != "application_name");
        upstream.startup_params.push((
            "application_name".to_owned(),
            CHECK_APPLICATION_NAME.to_owned(),
        ));
        Checker {
            target: target.to_owned(),
            upstream,
            timeout,
            conn: None,
        }
    }

    /// Runs one check, opening the connection first when there is none. After any failure the
    /// connection is dropped (its state is unknown) and the next check opens a new one.
    ///
    /// # Errors
    /// See [`CheckError`]; a check that takes longer than the timeout is
    /// [`CheckError::Timeout`].
    pub(crate) async fn check(&mut self) -> Result<Observation, CheckError> {
        let result = match tokio::time::timeout(self.timeout, self.check_once()).await {
            Ok(result) => result,
            Err(_) => Err(CheckError::Timeout {
                target: self.target.clone(),
                after: self.timeout,
            }),
        };
        if result.is_err() {
            self.conn = None;
        }
        result
    }

    async fn check_once(&mut self) -> Result<Observation, CheckError> {
        let conn = match &mut self.conn {
            Some(conn) => conn,
            None => {
                let opened = connect(&self.upstream).await.map_err(|source| {
                    let target = self.target.clone();
                    CheckError::Connect { target, source }
                })?;
                tracing::debug!(
                    target.name = %self.target,
                    upstream = %opened.addr,
                    "checking connection opened"
                );
                self.conn.insert(opened)
            }
        };

        let row = first_row(conn, CHECK_SQL, &self.target).await?;
        parse_observation(&row).map_err(|detail| CheckError::Protocol {
            target: self.target.clone(),
            detail,
        })
    }
}

/// Reads the three columns of [`CHECK_SQL`].
fn parse_observation(row: &[Option<String>]) -> Result<Observation, String> {
    let [in_recovery, lsn, replay_age] = row else {
        return Err(format!("expected 3 columns, got {}", row.len()));
    };
    let in_recovery = match in_recovery.as_deref() {
        Some("t") => true,
        Some("f") => false,
        other => return Err(format!("pg_is_in_recovery() returned {other:?}")),
    };
    let lsn = lsn
        .as_deref()
        .map(str::parse::<Lsn>)
        .transpose()
        .map_err(|e| e.to_string())?;
    let replay_age = match replay_age.as_deref() {
        None => None,
        Some(text) => match text.parse::<f64>() {
            Ok(seconds) if seconds.is_finite() => Some(seconds.max(0.0)),
            _ => return Err(format!("replay age {text:?} is not a number of seconds")),
        },
    };
    Ok(Observation {
        in_recovery,
        lsn,
        replay_age,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(values: &[Option<&str>]) -> Vec<Option<String>> {
        values.iter().map(|v| v.map(str::to_owned)).collect()
    }

    #[test]
    fn reads_a_replica_and_a_primary_row() {
        let replica = parse_observation(&row(&[Some("t"), Some("0/3000148"), Some("1.25")]));
        assert_eq!(
            replica,
            Ok(Observation {
                in_recovery: true,
                lsn: Some(Lsn::new(0x300_0148)),
                replay_age: Some(1.25),
            })
        );
        let primary = parse_observation(&row(&[Some("f"), Some("1/0"), None])).unwrap();
        assert!(!primary.in_recovery);
        assert_eq!(primary.lsn, Some(Lsn::new(1 << 32)));
        assert_eq!(primary.replay_age, None);
    }

    #[test]
    fn a_clock_behind_the_primary_gives_no_negative_age() {
        let obs = parse_observation(&row(&[Some("t"), Some("0/1"), Some("-0.004")])).unwrap();
        assert_eq!(obs.replay_age, Some(0.0));
    }

    #[test]
    fn refuses_answers_of_the_wrong_shape() {
        assert!(parse_observation(&row(&[Some("t"), Some("0/1")])).is_err());
        assert!(parse_observation(&row(&[Some("yes"), Some("0/1"), None])).is_err());
        assert!(parse_observation(&row(&[None, Some("0/1"), None])).is_err());
        assert!(parse_observation(&row(&[Some("t"), Some("nope"), None])).is_err());
        assert!(parse_observation(&row(&[Some("t"), Some("0/1"), Some("NaN")])).is_err());
    }
}
