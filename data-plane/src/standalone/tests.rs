use std::fs;

use super::*;

const GOOD: &str = "
kind: Upstream
name: u
spec: { endpoints: [{ address: 127.0.0.1:9001 }] }
---
kind: Route
name: r
spec:
  rules:
    - backendRefs: [{ name: u }]
";

const BAD: &str = "
kind: Upstream
name: u
spec: { endpoints: [{ address: 127.0.0.1:9001 }] }
---
kind: Route
name: r
spec:
  rules:
    - backendRefs: [{ name: missing }]
";

const TWO_ROUTES: &str = "
kind: Upstream
name: u
spec: { endpoints: [{ address: 127.0.0.1:9001 }] }
---
kind: Route
name: r
spec:
  rules:
    - backendRefs: [{ name: u }]
---
kind: Route
name: s
spec:
  rules:
    - matches: [{ path: { type: Exact, value: /s } }]
      backendRefs: [{ name: u }]
";

#[test]
fn reload_keeps_the_old_table_on_a_bad_edit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.yaml");
    fs::write(&path, GOOD).unwrap();
    let state = State::new(crate::state::Settings::default());
    let mut watched = Watched::load(&path, &state).unwrap();
    assert_eq!(state.version(), 1);

    // Unchanged: nothing happens.
    watched.poll(&state);
    assert_eq!(state.version(), 1);

    // A bad edit is refused; the first table keeps serving.
    fs::write(&path, BAD).unwrap();
    watched.poll(&state);
    assert_eq!(state.version(), 1);
    assert_eq!(state.metrics().rejections(), 1);
    // Not retried while the content stays the same.
    for _ in 0..FULL_READ_EVERY {
        watched.poll(&state);
    }
    assert_eq!(state.metrics().rejections(), 1);

    // Malformed YAML too.
    fs::write(&path, "kind: [").unwrap();
    watched.poll(&state);
    assert_eq!(state.version(), 1);
    assert_eq!(state.metrics().rejections(), 2);

    // An editor that writes a new file and renames it over the old one.
    let temp = dir.path().join(".gateway.yaml.swp");
    fs::write(&temp, TWO_ROUTES).unwrap();
    fs::rename(&temp, &path).unwrap();
    watched.poll(&state);
    let table = state.table().unwrap();
    assert_eq!((table.version(), table.routes()), (2, 2));

    // A file that is briefly missing keeps the table.
    fs::remove_file(&path).unwrap();
    watched.poll(&state);
    assert_eq!(state.version(), 2);
    fs::write(&path, GOOD).unwrap();
    watched.poll(&state);
    assert_eq!(state.version(), 3);
}

#[test]
fn a_bad_file_at_start_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.yaml");
    fs::write(&path, BAD).unwrap();
    let state = State::new(crate::state::Settings::default());
    let error = Watched::load(&path, &state).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("Route/r: spec.rules[0].backendRefs[0].name"),
        "{error}"
    );
    assert!(state.table().is_none());
    let missing = Watched::load(&dir.path().join("nope.yaml"), &state).unwrap_err();
    assert!(matches!(missing, FileError::Read { .. }));
}
