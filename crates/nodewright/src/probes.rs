//! `--metrics-port` and `--health-probe-port` (Karpenter's `METRICS_PORT` and
//! `HEALTH_PROBE_PORT`): where the controller's `/metrics`, `/healthz` and `/readyz` are served.

use std::net::{Ipv4Addr, SocketAddr};

use anyhow::{Context, Result};
use clap::Args;
use nodewright_controller::metrics::server;
use tokio::{net::TcpListener, task::JoinHandle};

#[derive(Debug, Clone, Args)]
pub(crate) struct ProbeArgs {
    /// Serve Prometheus metrics at /metrics on this port, on every interface (Karpenter's
    /// chart uses 8080). `nodewright controller` defaults to 8080; `nodewright sim` serves none
    /// unless set.
    #[arg(long, env = "METRICS_PORT", value_name = "PORT")]
    pub(crate) metrics_port: Option<u16>,
    /// Serve /healthz and /readyz on this port, on every interface (Karpenter's chart uses
    /// 8081). May equal --metrics-port. `nodewright controller` defaults to 8081; `nodewright
    /// sim` serves none unless set.
    #[arg(long, env = "HEALTH_PROBE_PORT", value_name = "PORT")]
    pub(crate) health_probe_port: Option<u16>,
}

impl ProbeArgs {
    /// Binds the ports given and serves on them in the background; a port that cannot be bound
    /// is an error naming its setting.
    pub(crate) async fn serve(&self) -> Result<Vec<JoinHandle<std::io::Result<()>>>> {
        let mut servers = Vec::new();
        match (self.metrics_port, self.health_probe_port) {
            (Some(metrics), Some(probes)) if metrics == probes => {
                let listener = bind(
                    metrics,
                    "--metrics-port/METRICS_PORT and --health-probe-port/HEALTH_PROBE_PORT",
                )
                .await?;
                servers.push(tokio::spawn(server::serve_all(listener)));
            }
            (metrics, probes) => {
                if let Some(port) = metrics {
                    let listener = bind(port, "--metrics-port/METRICS_PORT").await?;
                    servers.push(tokio::spawn(server::serve_metrics(listener)));
                }
                if let Some(port) = probes {
                    let listener = bind(port, "--health-probe-port/HEALTH_PROBE_PORT").await?;
                    servers.push(tokio::spawn(server::serve_probes(listener)));
                }
            }
        }
        Ok(servers)
    }
}

async fn bind(port: u16, setting: &str) -> Result<TcpListener> {
    let addr = SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("{setting}: cannot listen on {addr}"))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::ProbeArgs;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        probes: ProbeArgs,
    }

    #[test]
    fn ports_are_flags() {
        let cli = Cli::try_parse_from([
            "nodewright",
            "--metrics-port",
            "9090",
            "--health-probe-port",
            "9091",
        ])
        .unwrap();
        assert_eq!(cli.probes.metrics_port, Some(9090));
        assert_eq!(cli.probes.health_probe_port, Some(9091));
    }

    #[test]
    fn a_port_that_is_not_a_port_is_refused_naming_the_flag() {
        let error = Cli::try_parse_from(["nodewright", "--metrics-port", "80800"]).unwrap_err();
        assert!(error.to_string().contains("--metrics-port"), "{error}");
    }

    #[tokio::test]
    async fn a_busy_port_is_an_error_naming_the_setting() {
        let taken = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
        let port = taken.local_addr().unwrap().port();
        let args = ProbeArgs {
            metrics_port: Some(port),
            health_probe_port: None,
        };
        let error = args.serve().await.unwrap_err();
        assert!(format!("{error:#}").contains("METRICS_PORT"), "{error:#}");
    }
}
