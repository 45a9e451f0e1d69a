//! `gatewayctl delete KIND NAME`.

use crate::{
    args::{DeleteArgs, GlobalArgs},
    client::Client,
    error::SUCCESS,
    kind::{label, parse_kind},
    output::outln,
};

/// Prints `route/users-api deleted (version N)`.
pub(crate) async fn run(global: &GlobalArgs, args: &DeleteArgs) -> anyhow::Result<u8> {
    let kind = parse_kind(&args.kind)?;
    let mut client = Client::connect(global).await?;
    let version = client.delete(kind, &args.name).await?;
    outln(&format!(
        "{} deleted (version {version})",
        label(kind, &args.name)
    ));
    Ok(SUCCESS)
}
