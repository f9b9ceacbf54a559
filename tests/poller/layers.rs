//! The module graph of `src/`, read from the source: layers only point down, and no two
//! files import each other, directly or round a circle.
//!
//! Every `crate::…`, `super::…`, `self::…` and child-module path outside test modules and
//! `pub use` re-exports (a module's public face, which a parent may give its children) is
//! resolved to the file that defines the module it names (the longest known prefix), and
//! the graph of files is checked for cycles; each file's top-level module is checked
//! against the layer order of `lib.rs`'s Layout doc.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each top-level module and the ones it may import. (The simulator is a crate of its own,
/// which cannot import the poller; only `cli` may start it.)
const ALLOWED: &[(&str, &[&str])] = &[
    ("core", &[]),
    ("limiter", &["core"]),
    ("store", &["core"]),
    ("bitget", &["core", "limiter"]),
    ("scheduler", &["core", "limiter", "store", "bitget"]),
    ("feed", &["core", "limiter", "store", "bitget"]),
    ("strategy", &["core"]),
    (
        "telemetry",
        &["core", "limiter", "store", "bitget", "scheduler", "feed"],
    ),
    (
        "trading",
        &[
            "core",
            "limiter",
            "store",
            "bitget",
            "scheduler",
            "strategy",
        ],
    ),
    (
        "gateway",
        &[
            "core",
            "limiter",
            "store",
            "bitget",
            "scheduler",
            "feed",
            "telemetry",
        ],
    ),
    (
        "config",
        &[
            "gateway",
            "core",
            "limiter",
            "store",
            "bitget",
            "scheduler",
            "feed",
            "strategy",
            "telemetry",
            "trading",
        ],
    ),
    (
        "app",
        &[
            "gateway",
            "core",
            "limiter",
            "store",
            "bitget",
            "scheduler",
            "feed",
            "strategy",
            "telemetry",
            "trading",
            "config",
        ],
    ),
    (
        "cli",
        &[
            "gateway",
            "core",
            "limiter",
            "store",
            "bitget",
            "scheduler",
            "feed",
            "strategy",
            "telemetry",
            "trading",
            "config",
            "app",
        ],
    ),
];

/// Module path (`trading::live`) → its file, for every file under `src/`.
fn modules(src: &Path) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(src).unwrap().with_extension("");
            let mut parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if parts.last().is_some_and(|p| p == "mod") {
                parts.pop();
            }
            if parts == ["lib"] || parts == ["main"] {
                continue;
            }
            out.insert(parts.join("::"), path);
        }
    }
    out
}

/// The source without test modules, comments and string literals, which may mention
/// paths without importing them, and without `pub use` re-exports.
fn code_of(text: &str) -> String {
    let text = text
        .find("#[cfg(test)]\nmod tests")
        .map_or(text, |i| &text[..i]);
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        // A `pub use` is the module's public face, not something its own code relies on.
        if line.trim_start().starts_with("pub use ") {
            continue;
        }
        let line = line.split("//").next().unwrap_or("");
        let mut in_string = false;
        let mut previous = ' ';
        for ch in line.chars() {
            if ch == '"' && previous != '\\' {
                in_string = !in_string;
            } else if !in_string {
                out.push(ch);
            }
            previous = ch;
        }
        out.push('\n');
    }
    out
}

/// Paths this file names: `crate::a::b`, `super::x`, `self::x`, and the first segment of a
/// `use` of a child module (`use live::…`). Returned as absolute module paths.
fn references(module: &str, code: &str, known: &BTreeMap<String, PathBuf>) -> BTreeSet<String> {
    // `self::` is this module, `super::` its parent, whether the file is `x.rs` or
    // `x/mod.rs`.
    let own: Vec<&str> = module.split("::").collect();
    let parent: Vec<&str> = own[..own.len().saturating_sub(1)].to_vec();
    let mut out = BTreeSet::new();
    let tokens: Vec<&str> = code
        .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
        .filter(|t| t.contains("::"))
        .collect();
    for token in tokens {
        let segments: Vec<&str> = token.split("::").filter(|s| !s.is_empty()).collect();
        let Some(first) = segments.first() else {
            continue;
        };
        let absolute: Vec<&str> = match *first {
            "crate" => segments[1..].to_vec(),
            "super" => {
                let mut base = parent.clone();
                let mut rest = &segments[1..];
                while rest.first() == Some(&"super") {
                    base.pop();
                    rest = &rest[1..];
                }
                base.extend_from_slice(rest);
                base
            }
            "self" => {
                let mut base = own.clone();
                base.extend_from_slice(&segments[1..]);
                base
            }
            child if known.contains_key(&format!("{module}::{child}")) => {
                let mut base = own.clone();
                base.extend_from_slice(&segments);
                base
            }
            _ => continue,
        };
        // The longest prefix that is a module file.
        for len in (1..=absolute.len()).rev() {
            let candidate = absolute[..len].join("::");
            if known.contains_key(&candidate) {
                if candidate != module {
                    out.insert(candidate);
                }
                break;
            }
        }
    }
    out
}

fn top(module: &str) -> &str {
    module.split("::").next().unwrap()
}

fn allowed(from: &str, to: &str) -> bool {
    let (from_top, to_top) = (top(from), top(to));
    if from_top == to_top {
        return true;
    }
    ALLOWED
        .iter()
        .find(|(m, _)| *m == from_top)
        .is_some_and(|(_, ok)| {
            ok.iter()
                .any(|o| *o == to_top || to == *o || to.starts_with(&format!("{o}::")))
        })
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let known = modules(&src);
    known
        .iter()
        .map(|(module, path)| {
            let text = std::fs::read_to_string(path).unwrap();
            (module.clone(), references(module, &code_of(&text), &known))
        })
        .collect()
}

/// A cycle in `graph`, if there is one, as the modules round it.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        marks: &mut BTreeMap<String, Mark>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match marks.get(node) {
            Some(Mark::Done) => return None,
            Some(Mark::Open) => {
                let start = path.iter().position(|n| n == node).unwrap();
                let mut cycle = path[start..].to_vec();
                cycle.push(node.to_owned());
                return Some(cycle);
            }
            None => {}
        }
        marks.insert(node.to_owned(), Mark::Open);
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, marks, path) {
                return Some(cycle);
            }
        }
        path.pop();
        marks.insert(node.to_owned(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for node in graph.keys() {
        if let Some(cycle) = visit(node, graph, &mut marks, &mut Vec::new()) {
            return Some(cycle);
        }
    }
    None
}

#[test]
fn every_import_points_down_the_layers() {
    let graph = graph();
    assert!(graph.contains_key("bitget::endpoints") && graph.contains_key("scheduler::core"));
    let upward: Vec<String> = graph
        .iter()
        .flat_map(|(from, tos)| {
            tos.iter()
                .filter(|to| !allowed(from, to))
                .map(move |to| format!("{from} -> {to}"))
        })
        .collect();
    assert!(
        upward.is_empty(),
        "imports against the layers:\n{}",
        upward.join("\n")
    );
}

/// The simulator serves `sim` and `demo`: no layer below the command line may lean on it,
/// so the poller's own code can never depend on the oracle that checks it.
#[test]
fn only_the_command_line_reaches_the_simulator() {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let reaching: Vec<String> = modules(&src)
        .into_iter()
        .filter(|(module, _)| top(module) != "cli")
        .filter(|(_, file)| code_of(&std::fs::read_to_string(file).unwrap()).contains("bitget_sim"))
        .map(|(module, _)| module)
        .collect();
    assert!(reaching.is_empty(), "outside cli: {reaching:?}");
    let cli = code_of(&std::fs::read_to_string(src.join("cli/sim.rs")).unwrap());
    assert!(
        cli.contains("bitget_sim::"),
        "the checker reads the cli's use of it"
    );
}

#[test]
fn no_module_imports_another_that_imports_it_back() {
    let graph = graph();
    if let Some(cycle) = find_cycle(&graph) {
        panic!("module cycle: {}", cycle.join(" -> "));
    }
}

#[test]
fn the_checker_sees_a_cycle_and_an_upward_import() {
    let mut graph = BTreeMap::new();
    graph.insert("a".to_owned(), BTreeSet::from(["b".to_owned()]));
    graph.insert("b".to_owned(), BTreeSet::from(["c".to_owned()]));
    graph.insert("c".to_owned(), BTreeSet::from(["a".to_owned()]));
    assert_eq!(
        find_cycle(&graph),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
    assert!(!allowed("bitget::http", "telemetry::metrics"));
    assert!(allowed("telemetry::metrics", "bitget::http"));
    assert!(!allowed("core::clock", "limiter::offset"));
    let known: BTreeMap<String, PathBuf> = ["trading", "trading::live", "core::market"]
        .iter()
        .map(|m| ((*m).to_owned(), PathBuf::new()))
        .collect();
    let code = code_of("use live::{place_order};\nuse crate::core::market::Symbol; // crate::x\nlet s = \"crate::trading\";\n");
    assert_eq!(
        references("trading", &code, &known),
        BTreeSet::from(["trading::live".to_owned(), "core::market".to_owned()])
    );
}
