//! One module per verb. Each returns the exit code of a command that ran to its end, or an
//! error that [`crate::error`] maps to one.

use gateway_proto::{ResourceKind, v1};

use crate::{
    args::{Cli, Command},
    kind::label,
};

mod apply;
mod dataplanes;
mod delete;
mod diff;
mod get;
mod health;
mod protoset;
mod register;
mod services;
mod validate;

/// Runs the command line's verb.
pub(crate) async fn run(cli: Cli) -> anyhow::Result<u8> {
    let global = &cli.global;
    match &cli.command {
        Command::Apply(args) => apply::run(global, args).await,
        Command::Get(args) => get::run(global, args).await,
        Command::Delete(args) => delete::run(global, args).await,
        Command::Diff(args) => diff::run(global, args).await,
        Command::Validate(args) => validate::run(args),
        Command::Dataplanes(args) => dataplanes::run(global, args).await,
        Command::Health(args) => health::run(args).await,
        Command::ProtoSet(args) => protoset::run(args),
        Command::Register(args) => register::run(global, args).await,
        Command::Services(args) => services::run(global, args).await,
    }
}

/// `route/users-api` for a change, from its kind or else the resource it carries.
fn change_label(change: &v1::Change) -> String {
    let kind = ResourceKind::from_proto(change.kind)
        .or_else(|| change.after.as_ref().and_then(ResourceKind::of))
        .or_else(|| change.before.as_ref().and_then(ResourceKind::of));
    match kind {
        Some(kind) => label(kind, &change.name),
        None => format!("resource/{}", change.name),
    }
}

/// `created`, `updated`, `deleted` or `unchanged`.
fn action_name(change: &v1::Change) -> &'static str {
    use v1::change::Action;
    match Action::try_from(change.action) {
        Ok(Action::Created) => "created",
        Ok(Action::Updated) => "updated",
        Ok(Action::Deleted) => "deleted",
        Ok(Action::Unchanged) | Err(_) => "unchanged",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use v1::change::Action;

    #[test]
    fn names_changes() {
        let change = v1::Change {
            kind: v1::Kind::Route.into(),
            name: "users-api".into(),
            action: Action::Created.into(),
            ..Default::default()
        };
        assert_eq!(change_label(&change), "route/users-api");
        assert_eq!(action_name(&change), "created");
        let unspecified = v1::Change {
            name: "users".into(),
            action: Action::Updated.into(),
            after: Some(v1::Resource {
                name: "users".into(),
                version: 0,
                spec: Some(v1::resource::Spec::Upstream(Default::default())),
            }),
            ..Default::default()
        };
        assert_eq!(change_label(&unspecified), "upstream/users");
        assert_eq!(action_name(&unspecified), "updated");
    }
}
