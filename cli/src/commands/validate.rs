//! `gatewayctl validate -f FILE|DIR|-`: parse and validate offline, with no server.

use crate::{
    args::ValidateArgs,
    error::{REJECTED, SUCCESS},
    input,
    output::outln,
};

pub(crate) fn run(args: &ValidateArgs) -> anyhow::Result<u8> {
    let sources = input::load(&args.input.files, &mut std::io::stdin().lock())?;
    let resources = match input::parse(&sources) {
        Ok(resources) => resources,
        Err(errors) => {
            for error in errors {
                eprintln!("error: {error}");
            }
            return Ok(REJECTED);
        }
    };
    let checked = gateway_proto::validate(&resources).and_then(|()| {
        gateway_proto::validate::check_written(&resources, std::time::SystemTime::now())
    });
    if let Err(errors) = checked {
        for error in &errors.0 {
            eprintln!("error: {error}");
        }
        return Ok(REJECTED);
    }
    outln(&format!("valid: {} resources", resources.len()));
    Ok(SUCCESS)
}
