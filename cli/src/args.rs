//! Command-line flags. Every global flag has an environment variable.

use std::{path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum};

/// The command-line client of the gateway's admin API.
#[derive(Debug, Parser)]
#[command(name = "gatewayctl", version, about, propagate_version = true)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: GlobalArgs,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Args)]
pub(crate) struct GlobalArgs {
    /// URL of a control plane's admin gRPC API.
    #[arg(
        long,
        global = true,
        env = "GATEWAYCTL_SERVER",
        default_value = "http://127.0.0.1:18000",
        value_name = "URL"
    )]
    pub(crate) server: String,
    /// Admin token, sent as `authorization: Bearer <token>`.
    #[arg(
        long,
        global = true,
        env = "GATEWAY_ADMIN_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub(crate) token: Option<String>,
    /// File holding the admin token (it wins over --token and GATEWAY_ADMIN_TOKEN).
    #[arg(
        long,
        global = true,
        env = "GATEWAYCTL_TOKEN_FILE",
        value_name = "FILE"
    )]
    pub(crate) token_file: Option<PathBuf>,
    /// The CA (PEM) an `https://` server's certificate chains to.
    #[arg(long, global = true, env = "GATEWAYCTL_CA_FILE", value_name = "FILE")]
    pub(crate) ca_file: Option<PathBuf>,
    /// A client certificate chain (PEM), for a server that requires mutual TLS.
    #[arg(
        long,
        global = true,
        env = "GATEWAYCTL_CLIENT_CERT",
        value_name = "FILE",
        requires = "client_key"
    )]
    pub(crate) client_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(
        long,
        global = true,
        env = "GATEWAYCTL_CLIENT_KEY",
        value_name = "FILE",
        requires = "client_cert"
    )]
    pub(crate) client_key: Option<PathBuf>,
    /// Time allowed for connecting and for each request (e.g. 10s, 500ms, 1m).
    #[arg(
        long,
        global = true,
        env = "GATEWAYCTL_TIMEOUT",
        default_value = "10s",
        value_parser = gateway_proto::duration::parse_positive_duration,
        value_name = "DURATION"
    )]
    pub(crate) timeout: Duration,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Create or update every resource in the files, in one transaction.
    Apply(ApplyArgs),
    /// Show resources of one kind, or one resource.
    Get(GetArgs),
    /// Delete one resource.
    Delete(DeleteArgs),
    /// Show what `apply` would change.
    Diff(DiffArgs),
    /// Check resource files offline, with the control plane's validation.
    Validate(ValidateArgs),
    /// Show every connected data plane and the config version it runs.
    #[command(visible_alias = "data-planes")]
    Dataplanes(DataplanesArgs),
    /// Show one data plane's upstream endpoints: up, ejected, requests in flight (read from
    /// its admin listener).
    Health(HealthArgs),
    /// Print a ProtoSet resource made from the .proto files under directories (import paths
    /// relative to each), compiled first; pipe it to `apply -f -`.
    #[command(name = "protoset")]
    ProtoSet(ProtoSetArgs),
    /// Register a service instance and keep it registered until stopped (SIGINT or SIGTERM:
    /// deregistered at once); killed, it is gone within its TTL.
    Register(RegisterArgs),
    /// Show the registered service instances.
    Services(ServicesArgs),
}

#[derive(Debug, Args)]
pub(crate) struct RegisterArgs {
    /// The service (what Upstreams name in `discovery.service`).
    #[arg(long, value_name = "NAME")]
    pub(crate) service: String,
    /// Where the instance serves, as an Upstream endpoint.
    #[arg(long, value_name = "HOST:PORT")]
    pub(crate) address: String,
    /// The lease's time to live, 1s to 1h: how long the instance outlives its holder.
    #[arg(
        long,
        default_value = "10s",
        value_parser = gateway_proto::duration::parse_positive_duration,
        value_name = "DURATION"
    )]
    pub(crate) ttl: Duration,
    /// The instance's id within the service (default: the address, so that registering the
    /// same address again replaces the entry instead of adding one).
    #[arg(long, value_name = "ID")]
    pub(crate) id: Option<String>,
    /// Relative share of traffic (0 drains the instance).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub(crate) weight: u32,
}

#[derive(Debug, Args)]
pub(crate) struct ServicesArgs {
    /// Only this service's instances.
    pub(crate) service: Option<String>,
    #[arg(short = 'o', long, value_enum, default_value_t = ListFormat::Table)]
    pub(crate) output: ListFormat,
}

#[derive(Debug, Args)]
pub(crate) struct ProtoSetArgs {
    /// The resource's name.
    pub(crate) name: String,
    /// Directories whose .proto files (recursive) go in; each is an import root.
    #[arg(required = true, value_name = "DIR")]
    pub(crate) dirs: Vec<PathBuf>,
    #[arg(short = 'o', long, value_enum, default_value_t = DocumentFormat::Yaml)]
    pub(crate) output: DocumentFormat,
}

/// Output of a resource document.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum DocumentFormat {
    Yaml,
    Json,
}

/// Resource files: `-f FILE|DIR|-`, repeatable.
#[derive(Debug, Args)]
pub(crate) struct FileArgs {
    /// A resource file, a directory (its *.yaml, *.yml and *.json files), or `-` for stdin.
    #[arg(
        short = 'f',
        long = "filename",
        visible_alias = "file",
        required = true,
        value_name = "FILE|DIR|-"
    )]
    pub(crate) files: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct ApplyArgs {
    #[command(flatten)]
    pub(crate) input: FileArgs,
    /// Wait until every connected data plane has acknowledged the new version.
    #[arg(long)]
    pub(crate) wait: bool,
    /// How long --wait waits.
    #[arg(
        long,
        env = "GATEWAYCTL_WAIT_TIMEOUT",
        default_value = "60s",
        value_parser = gateway_proto::duration::parse_positive_duration,
        value_name = "DURATION"
    )]
    pub(crate) wait_timeout: Duration,
}

#[derive(Debug, Args)]
pub(crate) struct GetArgs {
    /// routes, upstreams (or route, upstream; any case).
    pub(crate) kind: String,
    /// One resource; all of the kind when absent.
    pub(crate) name: Option<String>,
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
    pub(crate) output: Format,
}

#[derive(Debug, Args)]
pub(crate) struct DeleteArgs {
    /// route or upstream (plural forms and any case too).
    pub(crate) kind: String,
    pub(crate) name: String,
}

#[derive(Debug, Args)]
pub(crate) struct DiffArgs {
    #[command(flatten)]
    pub(crate) input: FileArgs,
    /// Exit 3 when there are changes, 0 when there are none.
    #[arg(long)]
    pub(crate) exit_code: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ValidateArgs {
    #[command(flatten)]
    pub(crate) input: FileArgs,
}

#[derive(Debug, Args)]
pub(crate) struct HealthArgs {
    /// The data plane's admin listener, e.g. http://127.0.0.1:9901.
    #[arg(long, value_name = "URL")]
    pub(crate) data_plane: String,
    #[arg(short = 'o', long, value_enum, default_value_t = ListFormat::Table)]
    pub(crate) output: ListFormat,
}

#[derive(Debug, Args)]
pub(crate) struct DataplanesArgs {
    #[arg(short = 'o', long, value_enum, default_value_t = ListFormat::Table)]
    pub(crate) output: ListFormat,
}

/// Output of `get`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    Table,
    Yaml,
    Json,
}

/// Output of `dataplanes`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum ListFormat {
    Table,
    Json,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn the_cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_repeated_files_and_global_flags_after_the_verb() {
        let cli = Cli::try_parse_from([
            "gatewayctl",
            "apply",
            "-f",
            "a.yaml",
            "-f",
            "-",
            "--server",
            "http://cp:1",
            "--wait",
        ])
        .unwrap();
        assert_eq!(cli.global.server, "http://cp:1");
        let Command::Apply(apply) = cli.command else {
            panic!("not apply");
        };
        assert_eq!(apply.input.files, [PathBuf::from("a.yaml"), "-".into()]);
        assert!(apply.wait);
        assert_eq!(apply.wait_timeout, Duration::from_secs(60));
    }

    #[test]
    fn get_takes_an_output_format() {
        let cli = Cli::try_parse_from(["gatewayctl", "get", "routes", "-o", "json"]).unwrap();
        let Command::Get(get) = cli.command else {
            panic!("not get");
        };
        assert_eq!(get.output, Format::Json);
        assert!(Cli::try_parse_from(["gatewayctl", "get", "routes", "-o", "xml"]).is_err());
        assert!(Cli::try_parse_from(["gatewayctl", "apply"]).is_err());
    }
}
