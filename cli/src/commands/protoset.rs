//! `gatewayctl protoset NAME DIR... [-o yaml|json]`: a ProtoSet resource from the `.proto`
//! files under directories, each directory an import root (`DIR/kit/v1/kit.proto` is imported
//! as `kit/v1/kit.proto`). The set is compiled first, with the control plane's compiler, so a
//! file that would be refused on apply is reported here with its line and column.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail};
use gateway_proto::{
    document::{to_document, to_yaml},
    v1::{self, resource::Spec},
};

use crate::{
    args::{DocumentFormat, ProtoSetArgs},
    error::{REJECTED, SUCCESS},
    output::out,
};

pub(crate) fn run(args: &ProtoSetArgs) -> anyhow::Result<u8> {
    let mut files = BTreeMap::new();
    for dir in &args.dirs {
        collect(dir, dir, &mut files)?;
    }
    if files.is_empty() {
        bail!("no .proto files under {}", display(&args.dirs));
    }
    let resource = v1::Resource {
        name: args.name.clone(),
        version: 0,
        spec: Some(Spec::ProtoSet(v1::ProtoSetSpec {
            files,
            ..Default::default()
        })),
    };
    let checked = gateway_proto::validate(std::slice::from_ref(&resource));
    if let Err(errors) = checked {
        for error in &errors.0 {
            eprintln!("error: {error}");
        }
        return Ok(REJECTED);
    }
    match args.output {
        DocumentFormat::Yaml => out(&to_yaml(std::slice::from_ref(&resource))),
        DocumentFormat::Json => out(&format!("{:#}\n", to_document(&resource))),
    }
    Ok(SUCCESS)
}

/// The `.proto` files under `dir`, by their path relative to `root` with `/` separators.
fn collect(root: &Path, dir: &Path, files: &mut BTreeMap<String, String>) -> anyhow::Result<()> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    let mut paths: Vec<PathBuf> = entries
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .with_context(|| format!("reading {}", dir.display()))?;
    paths.sort();
    for path in paths {
        if path.is_dir() {
            collect(root, &path, files)?;
            continue;
        }
        if path.extension().is_none_or(|e| e != "proto") {
            continue;
        }
        let relative = path.strip_prefix(root).unwrap_or(&path);
        let name = relative
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/");
        let source = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        if files.insert(name.clone(), source).is_some() {
            bail!("{name} is under two of the directories");
        }
    }
    Ok(())
}

fn display(dirs: &[PathBuf]) -> String {
    dirs.iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collects_import_paths_relative_to_each_root() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("kit/v1");
        std::fs::create_dir_all(&nested).unwrap();
        std::fs::write(
            nested.join("kit.proto"),
            "syntax = \"proto3\";\npackage kit.v1;\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("README.md"), "not a proto").unwrap();
        let mut files = BTreeMap::new();
        collect(dir.path(), dir.path(), &mut files).unwrap();
        assert_eq!(files.keys().collect::<Vec<_>>(), ["kit/v1/kit.proto"]);
    }
}
