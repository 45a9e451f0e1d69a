//! `gatewayctl health --data-plane URL [-o table|json]`: the health of one data plane's
//! upstream endpoints (active checks, ejections, requests in flight), read from its admin
//! listener's `/config`. Health is each data plane's own view, so it is asked of each.

use anyhow::{Context as _, bail};
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::{
    args::{HealthArgs, ListFormat},
    error::SUCCESS,
    output::{Table, out},
};

pub(crate) async fn run(args: &HealthArgs) -> anyhow::Result<u8> {
    let config = admin_config(&args.data_plane).await?;
    let health = config
        .get("health")
        .cloned()
        .unwrap_or(Value::Array(Vec::new()));
    match args.output {
        ListFormat::Json => out(&format!("{}\n", serde_json::to_string_pretty(&health)?)),
        ListFormat::Table => {
            let mut table = Table::new(&["UPSTREAM", "ENDPOINT", "UP", "EJECTED", "IN FLIGHT"]);
            for upstream in health.as_array().into_iter().flatten() {
                let name = upstream["name"].as_str().unwrap_or("-");
                for endpoint in upstream["state"].as_array().into_iter().flatten() {
                    let yes_no = |v: &Value| if v == &Value::Bool(true) { "yes" } else { "no" };
                    table.push(vec![
                        name.to_owned(),
                        endpoint["address"].as_str().unwrap_or("-").to_owned(),
                        yes_no(&endpoint["up"]).to_owned(),
                        yes_no(&endpoint["ejected"]).to_owned(),
                        endpoint["in_flight"].to_string(),
                    ]);
                }
            }
            if health.as_array().is_none_or(Vec::is_empty) {
                eprintln!("no upstream of this data plane tracks health");
            } else {
                out(&table.render());
            }
        }
    }
    Ok(SUCCESS)
}

/// `GET /config` on a data plane's admin listener (`http://host:port`, plain HTTP/1.1).
async fn admin_config(url: &str) -> anyhow::Result<Value> {
    let Some(authority) = url.strip_prefix("http://") else {
        bail!("--data-plane {url:?}: give the admin listener as http://host:port");
    };
    let authority = authority.trim_end_matches('/');
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(authority).await?;
        let request =
            format!("GET /config HTTP/1.1\r\nhost: {authority}\r\nconnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        anyhow::Ok(response)
    };
    let response = tokio::time::timeout(std::time::Duration::from_secs(5), exchange)
        .await
        .with_context(|| format!("{url}: no answer within 5s"))?
        .with_context(|| format!("cannot read {url}/config"))?;
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .with_context(|| format!("{url}/config: not an HTTP answer"))?;
    let status_ok = response.starts_with(b"HTTP/1.1 200") || response.starts_with(b"HTTP/1.0 200");
    if !status_ok {
        bail!("{url}/config did not answer 200");
    }
    serde_json::from_slice(&response[split + 4..])
        .with_context(|| format!("{url}/config: not JSON"))
}
