//! The direction of dependencies is the architecture: domain ← ports ← use case ← adapters ← app.
//! This reads the resolved dependency graph (`cargo metadata`) and fails when an import breaks it,
//! so a wrong dependency fails CI instead of waiting for a review.

use std::collections::{BTreeSet, HashMap};

use cargo_metadata::{DependencyKind, Metadata, MetadataCommand, PackageId};

/// Crates that do I/O or run an async runtime or a framework.
const IO_CRATES: &[&str] = &[
    "tokio",
    "sqlx",
    "sqlx-core",
    "sqlx-postgres",
    "redis",
    "deadpool-redis",
    "actix-web",
    "actix-rt",
    "hyper",
    "reqwest",
    "mio",
    "async-std",
];
const ADAPTERS: &[&str] = &[
    "relay-postgres",
    "relay-sqlite",
    "relay-redis",
    "relay-memory-cache",
    "relay-http",
];

fn metadata() -> Metadata {
    MetadataCommand::new()
        .manifest_path(concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.toml"))
        .exec()
        .expect("cargo metadata")
}

/// Every crate `root` depends on at build or run time (not its dev-dependencies), transitively.
fn normal_closure(meta: &Metadata, root: &str) -> BTreeSet<String> {
    let resolve = meta.resolve.as_ref().expect("resolved graph");
    let nodes: HashMap<&PackageId, _> = resolve.nodes.iter().map(|n| (&n.id, n)).collect();
    let name_of: HashMap<&PackageId, &str> = meta
        .packages
        .iter()
        .map(|p| (&p.id, p.name.as_str()))
        .collect();
    let root_id = meta
        .workspace_packages()
        .into_iter()
        .find(|p| p.name.as_str() == root)
        .unwrap_or_else(|| panic!("{root} is a workspace member"))
        .id
        .clone();
    let mut seen = BTreeSet::new();
    let mut stack = vec![root_id];
    while let Some(id) = stack.pop() {
        for dep in &nodes[&id].deps {
            let normal = dep
                .dep_kinds
                .iter()
                .any(|k| k.kind == DependencyKind::Normal);
            if normal && seen.insert(name_of[&dep.pkg].to_owned()) {
                stack.push(dep.pkg.clone());
            }
        }
    }
    seen
}

fn offending<'a>(closure: &BTreeSet<String>, banned: &[&'a str]) -> Vec<&'a str> {
    banned
        .iter()
        .copied()
        .filter(|b| closure.contains(*b))
        .collect()
}

#[test]
fn domain_depends_on_no_io_framework_or_runtime() {
    let closure = normal_closure(&metadata(), "relay-domain");
    assert_eq!(offending(&closure, IO_CRATES), Vec::<&str>::new());
    assert!(
        !closure.iter().any(|c| c.starts_with("relay-")),
        "{closure:?}"
    );
}

#[test]
fn ports_depend_only_on_the_domain() {
    let meta = metadata();
    let closure = normal_closure(&meta, "relay-ports");
    let workspace: Vec<_> = closure.iter().filter(|c| c.starts_with("relay-")).collect();
    assert_eq!(workspace, ["relay-domain"]);
    // The resolved graph unifies features across the workspace, and other crates' tests turn on
    // the ports' `test-helpers` (which needs tokio for its fakes). What the ports crate itself
    // always pulls in are its non-optional dependencies: those must do no I/O.
    let ports = meta
        .workspace_packages()
        .into_iter()
        .find(|p| p.name.as_str() == "relay-ports")
        .unwrap();
    let always: Vec<&str> = ports
        .dependencies
        .iter()
        .filter(|d| d.kind == DependencyKind::Normal && !d.optional)
        .map(|d| d.name.as_str())
        .collect();
    assert_eq!(
        offending(&always.iter().map(|s| (*s).to_owned()).collect(), IO_CRATES),
        Vec::<&str>::new()
    );
    for optional in ports.dependencies.iter().filter(|d| d.optional) {
        let gated_by: Vec<&String> = ports
            .features
            .iter()
            .filter(|(_, enables)| {
                enables
                    .iter()
                    .any(|e| e == &format!("dep:{}", optional.name))
            })
            .map(|(feature, _)| feature)
            .collect();
        assert!(
            gated_by
                .iter()
                .all(|f| *f == "mocks" || *f == "test-helpers"),
            "{} is enabled by {gated_by:?}",
            optional.name
        );
    }
}

#[test]
fn use_case_knows_ports_not_adapters_or_drivers() {
    let closure = normal_closure(&metadata(), "relay-usecase");
    assert_eq!(offending(&closure, ADAPTERS), Vec::<&str>::new());
    assert_eq!(
        offending(
            &closure,
            &["sqlx", "redis", "deadpool-redis", "actix-web", "hyper"]
        ),
        Vec::<&str>::new()
    );
}

#[test]
fn http_adapter_knows_neither_sqlx_nor_redis_nor_another_adapter() {
    let closure = normal_closure(&metadata(), "relay-http");
    assert_eq!(
        offending(
            &closure,
            &[
                "sqlx",
                "sqlx-core",
                "redis",
                "deadpool-redis",
                "moka",
                "relay-postgres",
                "relay-sqlite",
                "relay-redis",
                "relay-memory-cache",
            ]
        ),
        Vec::<&str>::new()
    );
}

#[test]
fn storage_adapters_do_not_know_each_other_or_http() {
    let meta = metadata();
    for adapter in [
        "relay-postgres",
        "relay-sqlite",
        "relay-redis",
        "relay-memory-cache",
    ] {
        let closure = normal_closure(&meta, adapter);
        let others: Vec<&str> = ADAPTERS.iter().copied().filter(|a| *a != adapter).collect();
        assert_eq!(
            offending(&closure, &others),
            Vec::<&str>::new(),
            "{adapter}"
        );
        assert_eq!(
            offending(&closure, &["actix-web", "hyper"]),
            Vec::<&str>::new(),
            "{adapter}"
        );
    }
}

#[test]
fn only_the_app_names_adapters() {
    let meta = metadata();
    for package in meta.workspace_packages() {
        // The two composition roots: the service binary and the load benchmark, which calls the
        // adapters directly to measure the raw dependency limit.
        if ["relay-app", "relay-bench"].contains(&package.name.as_str()) {
            continue;
        }
        let named: Vec<_> = package
            .dependencies
            .iter()
            .filter(|d| d.kind == DependencyKind::Normal && ADAPTERS.contains(&d.name.as_str()))
            .map(|d| d.name.clone())
            .filter(|d| *d != package.name.as_str())
            .collect();
        assert!(
            named.is_empty(),
            "{} depends on adapters {named:?}",
            package.name
        );
    }
}

#[test]
fn observability_does_no_io_and_knows_no_adapter_or_use_case() {
    let meta = metadata();
    // Its resolved closure holds tokio only through the ports' test-helpers feature, which
    // other crates' tests turn on (see the ports test above); what it declares is checked.
    let package = meta
        .workspace_packages()
        .into_iter()
        .find(|p| p.name.as_str() == "relay-observability")
        .unwrap();
    let declared: std::collections::BTreeSet<String> = package
        .dependencies
        .iter()
        .filter(|d| d.kind == DependencyKind::Normal)
        .map(|d| d.name.clone())
        .collect();
    assert_eq!(offending(&declared, IO_CRATES), Vec::<&str>::new());
    assert_eq!(offending(&declared, ADAPTERS), Vec::<&str>::new());
    assert!(!declared.contains("relay-usecase"), "{declared:?}");
    let closure = normal_closure(&meta, "relay-observability");
    assert_eq!(
        offending(
            &closure,
            &["sqlx", "redis", "actix-web", "hyper", "reqwest"]
        ),
        Vec::<&str>::new()
    );
}

#[test]
fn contact_files_depend_on_no_io_runtime_or_store() {
    // A format library (CSV, NDJSON → the import's rows) that the app and the HTTP adapter both
    // read with: it is not an adapter (the HTTP adapter may depend on it), so it must not pull in
    // an adapter, a driver or a runtime. It needs the use case's row types, and the use case
    // depends on tokio: what it declares itself is checked against the I/O crates, its closure
    // against the drivers and frameworks.
    let meta = metadata();
    let package = meta
        .workspace_packages()
        .into_iter()
        .find(|p| p.name.as_str() == "relay-contact-files")
        .expect("relay-contact-files is a workspace member");
    let declared: BTreeSet<String> = package
        .dependencies
        .iter()
        .filter(|d| d.kind == DependencyKind::Normal)
        .map(|d| d.name.clone())
        .collect();
    assert_eq!(offending(&declared, IO_CRATES), Vec::<&str>::new());
    let closure = normal_closure(&meta, "relay-contact-files");
    assert_eq!(offending(&closure, ADAPTERS), Vec::<&str>::new());
    assert!(!closure.contains("relay-app"), "{closure:?}");
    assert_eq!(
        offending(
            &closure,
            &[
                "sqlx",
                "sqlx-core",
                "redis",
                "deadpool-redis",
                "moka",
                "actix-web",
                "actix-rt",
                "hyper",
                "reqwest",
                "async-std",
            ]
        ),
        Vec::<&str>::new()
    );
}

/// The top-level modules of a crate's `src/` that each module names through `crate::` (its
/// `use` lines and paths; `super::` stays inside a subtree and is not counted).
fn module_imports(src: &std::path::Path) -> HashMap<String, BTreeSet<String>> {
    let mut graph = HashMap::new();
    for entry in std::fs::read_dir(src).expect("src directory") {
        let path = entry.expect("directory entry").path();
        let (module, files) = if path.is_dir() {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, rust_files(&path))
        } else if path.extension().is_some_and(|e| e == "rs") {
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            if name == "lib" || name == "main" {
                continue;
            }
            (name, vec![path])
        } else {
            continue;
        };
        let mut named = BTreeSet::new();
        for file in files {
            let text = std::fs::read_to_string(&file).expect("readable source");
            named.extend(crate_paths(&text));
        }
        named.remove(&module);
        graph.insert(module, named);
    }
    graph
}

fn rust_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("module directory") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

/// The first segment after each `crate::` in `text`, including each of `crate::{a, b::c}`.
fn crate_paths(text: &str) -> BTreeSet<String> {
    let ident = |s: &str| -> String {
        s.trim_start()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let mut found = BTreeSet::new();
    for (at, _) in text.match_indices("crate::") {
        let rest = &text[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let mut segment_start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => segment_start = true,
                    _ if segment_start && !c.is_whitespace() => {
                        found.insert(ident(&group[i..]));
                        segment_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            found.insert(ident(rest));
        }
    }
    found.retain(|name| !name.is_empty() && name.chars().next().is_some_and(char::is_lowercase));
    found
}

/// A cycle in `graph`, if any, as the modules along it.
fn find_cycle(graph: &HashMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &HashMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if graph.contains_key(next)
                && let Some(cycle) = visit(next, graph, path, done)
            {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    let mut nodes: Vec<&String> = graph.keys().collect();
    nodes.sort();
    nodes
        .into_iter()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

#[test]
fn the_cycle_finder_finds_a_cycle_and_reads_grouped_imports() {
    let paths = crate_paths(
        "use crate::cli::{A, B};\nuse crate::{adapters, config::{X, Y}, failure::Failure};\nlet x = crate::telemetry::f();",
    );
    assert_eq!(
        paths.into_iter().collect::<Vec<_>>(),
        ["adapters", "cli", "config", "failure", "telemetry"]
    );
    let graph: HashMap<String, BTreeSet<String>> =
        [("a", vec!["b"]), ("b", vec!["c"]), ("c", vec!["a"])]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.into_iter().map(str::to_owned).collect()))
            .collect();
    assert_eq!(
        find_cycle(&graph),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
}

#[test]
fn no_crate_has_an_import_cycle_between_its_modules() {
    let meta = metadata();
    for package in meta.workspace_packages() {
        let src = package
            .manifest_path
            .parent()
            .expect("crate directory")
            .join("src");
        let graph = module_imports(src.as_std_path());
        assert_eq!(
            find_cycle(&graph),
            None,
            "{}: modules that import each other (a module that needs another's item should \
             not be needed by it: move the shared item to a module both can depend on)",
            package.name
        );
    }
}
