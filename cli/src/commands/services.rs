//! `gatewayctl services [SERVICE] [-o table|json]`: the registered instances.

use gateway_proto::v1;
use serde_json::{Value, json};

use crate::{
    args::{GlobalArgs, ListFormat, ServicesArgs},
    client::Client,
    error::SUCCESS,
    output::{Table, out},
};

pub(crate) async fn run(global: &GlobalArgs, args: &ServicesArgs) -> anyhow::Result<u8> {
    let mut client = Client::connect(global).await?;
    let service = args.service.as_deref().unwrap_or_default();
    let response = client.list_services(service).await?;
    match args.output {
        ListFormat::Table if response.instances.is_empty() => {
            eprintln!("no instances registered");
        }
        ListFormat::Table => out(&table(&response).render()),
        ListFormat::Json => {
            let text = serde_json::to_string_pretty(&to_json(&response))?;
            out(&format!("{text}\n"));
        }
    }
    Ok(SUCCESS)
}

fn table(response: &v1::ListServicesResponse) -> Table {
    let mut table = Table::new(&["SERVICE", "ID", "ADDRESS", "WEIGHT"]);
    for instance in &response.instances {
        table.push(vec![
            instance.service.clone(),
            instance.id.clone(),
            instance.address.clone(),
            instance.weight.to_string(),
        ]);
    }
    table
}

/// `{"instances": [{"service", "id", "address", "weight"}]}`.
fn to_json(response: &v1::ListServicesResponse) -> Value {
    let instances: Vec<Value> = response
        .instances
        .iter()
        .map(|i| json!({ "service": i.service, "id": i.id, "address": i.address, "weight": i.weight }))
        .collect();
    json!({ "instances": instances })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_a_table_and_json() {
        let response = v1::ListServicesResponse {
            instances: vec![v1::RegisteredInstance {
                service: "users".into(),
                id: "127.0.0.1:9001".into(),
                address: "127.0.0.1:9001".into(),
                weight: 1,
            }],
        };
        assert_eq!(
            table(&response).render(),
            "SERVICE  ID              ADDRESS         WEIGHT\n\
             users    127.0.0.1:9001  127.0.0.1:9001  1\n"
        );
        assert_eq!(
            to_json(&response)["instances"][0]["address"],
            "127.0.0.1:9001"
        );
    }
}
