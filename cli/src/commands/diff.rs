//! `gatewayctl diff -f FILE|DIR|- [--exit-code]`: a dry-run `Apply`, shown as line diffs of
//! each changed resource's YAML.

use gateway_proto::{document::to_yaml, v1};

use super::change_label;
use crate::{
    args::{DiffArgs, GlobalArgs},
    client::Client,
    error::{CHANGES, SUCCESS},
    input,
    output::{out, unified},
};

pub(crate) async fn run(global: &GlobalArgs, args: &DiffArgs) -> anyhow::Result<u8> {
    let resources = input::load_resources(&args.input.files)?;
    let mut client = Client::connect(global).await?;
    let response = client.apply(resources, true).await?;
    let mut changed = false;
    for change in &response.changes {
        let text = change_diff(change);
        if !text.is_empty() {
            changed = true;
            out(&text);
        }
    }
    Ok(if changed && args.exit_code {
        CHANGES
    } else {
        SUCCESS
    })
}

/// The diff of one change; empty when unchanged.
fn change_diff(change: &v1::Change) -> String {
    use v1::change::Action;
    if matches!(
        Action::try_from(change.action),
        Ok(Action::Unchanged) | Err(_)
    ) {
        return String::new();
    }
    let label = change_label(change);
    unified(
        &yaml(change.before.as_ref()),
        &yaml(change.after.as_ref()),
        &format!("{label} (stored)"),
        &format!("{label} (applied)"),
    )
}

/// The YAML of a resource without its version, which is not the user's to change.
fn yaml(resource: Option<&v1::Resource>) -> String {
    match resource {
        Some(resource) => to_yaml(&[v1::Resource {
            version: 0,
            ..resource.clone()
        }]),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gateway_proto::document::parse_documents;
    use v1::change::Action;

    fn upstream(address: &str, version: i64) -> v1::Resource {
        let mut resource = parse_documents(&format!(
            "kind: Upstream\nname: users\nspec:\n  endpoints:\n    - address: {address}\n"
        ))
        .unwrap()
        .remove(0);
        resource.version = version;
        resource
    }

    #[test]
    fn shows_an_update_without_versions() {
        let change = v1::Change {
            kind: v1::Kind::Upstream.into(),
            name: "users".into(),
            action: Action::Updated.into(),
            before: Some(upstream("10.0.0.1:80", 4)),
            after: Some(upstream("10.0.0.2:80", 0)),
        };
        let diff = change_diff(&change);
        assert!(
            diff.starts_with("--- upstream/users (stored)\n+++ upstream/users (applied)\n@@ "),
            "{diff}"
        );
        assert!(diff.contains("\n-  - address: 10.0.0.1:80\n"), "{diff}");
        assert!(diff.contains("\n+  - address: 10.0.0.2:80\n"), "{diff}");
        assert!(!diff.contains("version"), "{diff}");
    }

    #[test]
    fn shows_a_creation_and_nothing_for_unchanged() {
        let created = v1::Change {
            kind: v1::Kind::Upstream.into(),
            name: "users".into(),
            action: Action::Created.into(),
            before: None,
            after: Some(upstream("10.0.0.1:80", 0)),
        };
        let diff = change_diff(&created);
        assert!(diff.contains("@@ -0,0 +1,"), "{diff}");
        assert!(diff.contains("\n+kind: Upstream\n"), "{diff}");
        let unchanged = v1::Change {
            action: Action::Unchanged.into(),
            before: Some(upstream("10.0.0.1:80", 3)),
            ..created
        };
        assert_eq!(change_diff(&unchanged), "");
    }
}
