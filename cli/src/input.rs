//! Resource files from `-f FILE|DIR|-`: read them, then parse every document.

use std::{
    fs,
    io::Read,
    path::{Path, PathBuf},
};

use gateway_proto::{document::parse_documents, v1};

use crate::error::usage;

/// The text of one resource file, and how to name it in messages.
#[derive(Debug)]
pub(crate) struct Source {
    pub(crate) label: String,
    pub(crate) text: String,
}

/// Extensions a directory's resource files have.
const EXTENSIONS: [&str; 3] = ["yaml", "yml", "json"];

/// Reads every `-f` argument: a file, every resource file of a directory (sorted, not
/// recursive), or `-` for `stdin`. An unreadable file is a usage error.
pub(crate) fn load(paths: &[PathBuf], stdin: &mut dyn Read) -> anyhow::Result<Vec<Source>> {
    let mut sources = Vec::new();
    let mut read_stdin = false;
    for path in paths {
        if path.as_os_str() == "-" {
            if read_stdin {
                return Err(usage("`-f -` (stdin) may be given only once"));
            }
            read_stdin = true;
            let mut text = String::new();
            stdin
                .read_to_string(&mut text)
                .map_err(|e| usage(format!("cannot read stdin: {e}")))?;
            sources.push(Source {
                label: "<stdin>".into(),
                text,
            });
        } else if path.is_dir() {
            let files = directory_files(path)?;
            if files.is_empty() {
                return Err(usage(format!(
                    "{}: no *.yaml, *.yml or *.json files in this directory",
                    path.display()
                )));
            }
            for file in files {
                sources.push(read_file(&file)?);
            }
        } else {
            sources.push(read_file(path)?);
        }
    }
    Ok(sources)
}

fn directory_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let unreadable = |e: std::io::Error| usage(format!("{}: {e}", dir.display()));
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).map_err(unreadable)? {
        let path = entry.map_err(unreadable)?.path();
        let wanted = path
            .extension()
            .and_then(|ext| ext.to_str())
            .is_some_and(|ext| EXTENSIONS.iter().any(|e| ext.eq_ignore_ascii_case(e)));
        if wanted && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

fn read_file(path: &Path) -> anyhow::Result<Source> {
    let text = fs::read_to_string(path).map_err(|e| usage(format!("{}: {e}", path.display())))?;
    Ok(Source {
        label: path.display().to_string(),
        text,
    })
}

/// Parses every source. On failure, one line per problem:
/// `FILE: document N (Kind/name): field: message`.
pub(crate) fn parse(sources: &[Source]) -> Result<Vec<v1::Resource>, Vec<String>> {
    let mut resources = Vec::new();
    let mut errors = Vec::new();
    for source in sources {
        match parse_documents(&source.text) {
            Ok(parsed) => resources.extend(parsed),
            Err(problems) => errors.extend(
                problems
                    .0
                    .iter()
                    .map(|problem| format!("{}: {problem}", source.label)),
            ),
        }
    }
    if errors.is_empty() {
        Ok(resources)
    } else {
        Err(errors)
    }
}

/// Loads and parses the files for a command that sends them: parse errors are reported and
/// exit 1 before anything is sent; no resources at all is a usage error.
pub(crate) fn load_resources(paths: &[PathBuf]) -> anyhow::Result<Vec<v1::Resource>> {
    let sources = load(paths, &mut std::io::stdin().lock())?;
    let resources = parse(&sources).map_err(|errors| anyhow::anyhow!(errors.join("\n")))?;
    if resources.is_empty() {
        return Err(usage("no resources in the given files"));
    }
    Ok(resources)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{REJECTED, USAGE, exit_code};

    const UPSTREAM: &str =
        "kind: Upstream\nname: users\nspec:\n  endpoints:\n    - address: 127.0.0.1:9001\n";
    const ROUTE: &str = "kind: Route\nname: users-api\nspec:\n  rules:\n    - backendRefs:\n        - name: users\n";

    fn names(resources: &[v1::Resource]) -> Vec<&str> {
        resources.iter().map(|r| r.name.as_str()).collect()
    }

    #[test]
    fn loads_a_file_and_stdin() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("u.yaml");
        fs::write(&file, UPSTREAM).unwrap();
        let mut stdin = ROUTE.as_bytes();
        let sources = load(&[file.clone(), "-".into()], &mut stdin).unwrap();
        assert_eq!(sources.len(), 2);
        assert_eq!(sources[0].label, file.display().to_string());
        assert_eq!(sources[1].label, "<stdin>");
        assert_eq!(names(&parse(&sources).unwrap()), ["users", "users-api"]);
    }

    #[test]
    fn loads_a_directory_sorted_and_not_recursive() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("b.yml"), ROUTE).unwrap();
        fs::write(dir.path().join("a.yaml"), UPSTREAM).unwrap();
        fs::write(
            dir.path().join("c.json"),
            r#"{"kind": "Upstream", "name": "json", "spec": {"endpoints": [{"address": "10.0.0.1:80"}]}}"#,
        )
        .unwrap();
        fs::write(dir.path().join("notes.txt"), "not a resource").unwrap();
        fs::create_dir(dir.path().join("nested.yaml")).unwrap();
        fs::write(dir.path().join("nested.yaml").join("x.yaml"), "bad: [").unwrap();
        let sources = load(&[dir.path().to_owned()], &mut std::io::empty()).unwrap();
        let labels: Vec<_> = sources.iter().map(|s| s.label.clone()).collect();
        assert_eq!(labels.len(), 3, "{labels:?}");
        assert!(labels[0].ends_with("a.yaml") && labels[2].ends_with("c.json"));
        assert_eq!(
            names(&parse(&sources).unwrap()),
            ["users", "users-api", "json"]
        );
    }

    #[test]
    fn unreadable_input_is_a_usage_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = load(&[dir.path().join("missing.yaml")], &mut std::io::empty());
        assert_eq!(exit_code(&missing.unwrap_err()), USAGE);
        let empty_dir = load(&[dir.path().to_owned()], &mut std::io::empty());
        assert_eq!(exit_code(&empty_dir.unwrap_err()), USAGE);
        let twice = load(&["-".into(), "-".into()], &mut std::io::empty());
        assert_eq!(exit_code(&twice.unwrap_err()), USAGE);
    }

    #[test]
    fn parse_errors_name_the_file_document_and_field() {
        let sources = [
            Source {
                label: "ok.yaml".into(),
                text: UPSTREAM.into(),
            },
            Source {
                label: "bad.yaml".into(),
                text: format!(
                    "{UPSTREAM}---\nkind: Route\nname: r\nspec:\n  rules:\n    - matches:\n        - path: {{ type: Prefix }}\n"
                ),
            },
        ];
        let errors = parse(&sources).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with(
                "bad.yaml: document 2 (Route/r): spec.rules[0].matches[0].path.type: "
            ),
            "{}",
            errors[0]
        );
        let err = anyhow::anyhow!(errors.join("\n"));
        assert_eq!(exit_code(&err), REJECTED);
    }

    #[test]
    fn malformed_yaml_names_the_file() {
        let sources = [Source {
            label: "x.yaml".into(),
            text: "kind: [".into(),
        }];
        let errors = parse(&sources).unwrap_err();
        assert!(
            errors[0].starts_with("x.yaml: malformed YAML: "),
            "{errors:?}"
        );
    }
}
