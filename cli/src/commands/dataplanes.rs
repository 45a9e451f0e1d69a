//! `gatewayctl dataplanes [-o table|json]`: every connected data plane and its version.

use std::time::SystemTime;

use gateway_proto::v1;
use serde_json::{Value, json};

use crate::{
    args::{DataplanesArgs, GlobalArgs, ListFormat},
    client::Client,
    error::SUCCESS,
    output::{Table, age, or_dash, out},
};

pub(crate) async fn run(global: &GlobalArgs, args: &DataplanesArgs) -> anyhow::Result<u8> {
    let mut client = Client::connect(global).await?;
    let mut response = client.list_data_planes().await?;
    response.data_planes.sort_by(|a, b| a.id.cmp(&b.id));
    match args.output {
        ListFormat::Table if response.data_planes.is_empty() => {
            eprintln!(
                "no data planes connected (config version {})",
                response.version
            );
        }
        ListFormat::Table => out(&table(&response, SystemTime::now()).render()),
        ListFormat::Json => {
            let text = serde_json::to_string_pretty(&to_json(&response))?;
            out(&format!("{text}\n"));
        }
    }
    Ok(SUCCESS)
}

/// How many versions a data plane is behind; `None` when it acknowledged none.
fn lag(current: i64, plane: &v1::DataPlaneStatus) -> Option<i64> {
    (plane.acked_version > 0).then(|| (current - plane.acked_version).max(0))
}

fn table(response: &v1::ListDataPlanesResponse, now: SystemTime) -> Table {
    let mut table = Table::new(&[
        "ID",
        "ADDRESS",
        "VERSION",
        "LAG",
        "LAST SEEN",
        "CONTROL PLANE",
        "LAST ERROR",
    ]);
    for plane in &response.data_planes {
        let version = if plane.acked_version > 0 {
            plane.acked_version.to_string()
        } else {
            "-".into()
        };
        let lag = lag(response.version, plane).map_or("-".into(), |lag| lag.to_string());
        let last_error = if plane.last_error.is_empty() {
            String::new()
        } else {
            format!("version {}: {}", plane.nacked_version, plane.last_error)
        };
        table.push(vec![
            plane.id.clone(),
            or_dash(plane.address.clone()),
            version,
            lag,
            age(now, plane.last_seen.as_ref()),
            or_dash(plane.control_plane.clone()),
            or_dash(one_line(&last_error)),
        ]);
    }
    table
}

/// A reason on one line, for a table cell.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `{"version": N, "dataPlanes": [...]}` with the proto3 JSON field names, and `lag`.
fn to_json(response: &v1::ListDataPlanesResponse) -> Value {
    let timestamp = |t: Option<&prost_types::Timestamp>| t.map(|t| t.to_string());
    let planes: Vec<Value> = response
        .data_planes
        .iter()
        .map(|plane| {
            json!({
                "id": plane.id,
                "address": plane.address,
                "buildVersion": plane.build_version,
                "ackedVersion": plane.acked_version,
                "pendingVersion": plane.pending_version,
                "nackedVersion": plane.nacked_version,
                "lastError": plane.last_error,
                "lag": lag(response.version, plane),
                "controlPlane": plane.control_plane,
                "connectedAt": timestamp(plane.connected_at.as_ref()),
                "lastSeen": timestamp(plane.last_seen.as_ref()),
            })
        })
        .collect();
    json!({ "version": response.version, "dataPlanes": planes })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn response() -> v1::ListDataPlanesResponse {
        let seen = |seconds| Some(prost_types::Timestamp { seconds, nanos: 0 });
        v1::ListDataPlanesResponse {
            version: 9,
            data_planes: vec![
                v1::DataPlaneStatus {
                    id: "dp-1".into(),
                    address: "10.0.0.1:8080".into(),
                    acked_version: 9,
                    control_plane: "cp-a".into(),
                    last_seen: seen(998),
                    ..Default::default()
                },
                v1::DataPlaneStatus {
                    id: "dp-2".into(),
                    address: "10.0.0.2:8080".into(),
                    acked_version: 7,
                    nacked_version: 9,
                    last_error: "Route/r: spec.rules[0]:\n bad".into(),
                    control_plane: "cp-b".into(),
                    last_seen: seen(940),
                    ..Default::default()
                },
                v1::DataPlaneStatus {
                    id: "dp-3".into(),
                    ..Default::default()
                },
            ],
        }
    }

    #[test]
    fn renders_the_table_with_lag_and_age() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        assert_eq!(
            table(&response(), now).render(),
            "ID    ADDRESS        VERSION  LAG  LAST SEEN  CONTROL PLANE  LAST ERROR\n\
             dp-1  10.0.0.1:8080  9        0    2s ago     cp-a           -\n\
             dp-2  10.0.0.2:8080  7        2    1m ago     cp-b           version 9: Route/r: spec.rules[0]: bad\n\
             dp-3  -              -        -    -          -              -\n"
        );
    }

    #[test]
    fn renders_json() {
        let value = to_json(&response());
        assert_eq!(value["version"], 9);
        assert_eq!(value["dataPlanes"][1]["lag"], 2);
        assert_eq!(value["dataPlanes"][2]["lag"], Value::Null);
        assert_eq!(value["dataPlanes"][0]["lastSeen"], "1970-01-01T00:16:38Z");
    }
}
