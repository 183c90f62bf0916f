//! ASL, Rust and README agree on error names: every `ErrorEquals` is `States.*`, `Lambda.*` or a
//! `Kind`; every `Fail` name is a `Kind` or declared as one of its workflow's endings; a Lambda
//! step's `Retry` names only retryable kinds; the README's tables list every kind (with the
//! right "retried") and every ending.

use std::path::{Path, PathBuf};

use batchless_core::error::{endings, Kind};
use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn definitions() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(root().join("statemachines")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if let Some(stem) = name.strip_suffix(".asl.json") {
            let text = std::fs::read_to_string(&path).unwrap();
            out.push((stem.to_string(), serde_json::from_str(&text).unwrap()));
        }
    }
    assert!(out.len() >= 4, "statemachines/ has the four workflows");
    out
}

/// Every state, nested Parallel branches and Map iterators included: (name, state).
fn states(def: &Value) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for (name, state) in def["States"].as_object().unwrap() {
        out.push((name.clone(), state.clone()));
        for branch in state["Branches"].as_array().into_iter().flatten() {
            out.extend(states(branch));
        }
        for key in ["Iterator", "ItemProcessor"] {
            if state.get(key).is_some() {
                out.extend(states(&state[key]));
            }
        }
    }
    out
}

fn is_lambda_step(state: &Value) -> bool {
    let resource = state["Resource"].as_str().unwrap_or("");
    resource.contains("FunctionArn") || resource.contains(":::lambda:invoke")
}

/// The problems in one workflow's definition.
fn problems(workflow: &str, def: &Value) -> Vec<String> {
    let declared = endings::of(workflow).unwrap_or(&[]);
    let mut out = Vec::new();
    if endings::of(workflow).is_none() {
        out.push(format!("{workflow}: no endings declared in error::endings"));
    }
    for (name, state) in states(def) {
        let at = format!("{workflow}.{name}");
        for (field, list) in [("Retry", &state["Retry"]), ("Catch", &state["Catch"])] {
            for rule in list.as_array().into_iter().flatten() {
                for e in rule["ErrorEquals"].as_array().unwrap() {
                    let e = e.as_str().unwrap();
                    let kind = Kind::from_name(e);
                    if !(e.starts_with("States.") || e.starts_with("Lambda.") || kind.is_some()) {
                        out.push(format!("{at}: {field} names {e}, which is no Kind"));
                    }
                    if field == "Retry" && is_lambda_step(&state) {
                        if let Some(k) = kind.filter(|k| !k.is_retryable()) {
                            out.push(format!("{at}: Retry retries {k}, which is not retryable"));
                        }
                        if matches!(e, "States.ALL" | "States.TaskFailed") {
                            out.push(format!("{at}: Retry retries {e}: name the retryable kinds"));
                        }
                    }
                }
            }
        }
        if state["Type"] == "Fail" {
            if let Some(e) = state["Error"].as_str() {
                if Kind::from_name(e).is_none() && !declared.contains(&e) {
                    out.push(format!(
                        "{at}: Fail {e} is neither a Kind nor a declared ending"
                    ));
                }
            }
        }
    }
    out
}

#[test]
fn asl_error_names_are_kinds_and_declared_endings() {
    let mut all = Vec::new();
    for (workflow, def) in definitions() {
        all.extend(problems(&workflow, &def));
    }
    assert!(all.is_empty(), "{}", all.join("\n"));
}

#[test]
fn every_declared_ending_is_a_fail_state_of_its_workflow() {
    for (workflow, def) in definitions() {
        let fails: Vec<String> = states(&def)
            .into_iter()
            .filter(|(_, s)| s["Type"] == "Fail")
            .filter_map(|(_, s)| s["Error"].as_str().map(str::to_string))
            .collect();
        for e in endings::of(&workflow).unwrap() {
            assert!(
                fails.iter().any(|f| f == e),
                "{workflow}: ending {e} has no Fail state"
            );
        }
    }
}

/// Rows of the README's tables: first cell a backticked name.
fn readme_rows() -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(root().join("README.md")).unwrap();
    let start = text
        .find("## Errors and endings")
        .expect("README has 'Errors and endings'");
    let section = &text[start..];
    let end = section[3..]
        .find("\n## ")
        .map(|i| i + 3)
        .unwrap_or(section.len());
    section[..end]
        .lines()
        .filter(|l| l.starts_with("| "))
        .map(|l| {
            l.trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_string())
                .collect()
        })
        .collect()
}

#[test]
fn readme_documents_every_kind_and_ending() {
    let rows = readme_rows();
    for k in Kind::ALL {
        let cell = format!("`{}`", k.name());
        let row = rows
            .iter()
            .find(|r| r[0] == cell)
            .unwrap_or_else(|| panic!("README's error table lacks {k}"));
        let want = if k.is_retryable() { "yes" } else { "no" };
        assert_eq!(row[1], want, "README says {k} retried = {}", row[1]);
    }
    for (workflow, _) in definitions() {
        for e in endings::of(&workflow).unwrap() {
            let cell = format!("`{e}`");
            assert!(
                rows.iter().any(|r| r[0] == workflow && r[1] == cell),
                "README's endings table lacks {workflow} {e}"
            );
        }
    }
    for r in rows.iter().filter(|r| r[0].starts_with('`')) {
        let name = r[0].trim_matches('`');
        assert!(
            Kind::from_name(name).is_some(),
            "README lists {name}, which is no Kind"
        );
    }
}

#[test]
fn the_check_finds_a_wrong_name_a_wrong_retry_and_an_undeclared_ending() {
    let def = serde_json::json!({"States": {
        "A": {"Type": "Task", "Resource": "${XFunctionArn}",
              "Retry": [{"ErrorEquals": ["InvalidInput", "States.ALL"]}],
              "Catch": [{"ErrorEquals": ["Conflicts"], "Next": "F"}]},
        "F": {"Type": "Fail", "Error": "SomethingNew"}
    }});
    let p = problems("migration", &def);
    assert_eq!(p.len(), 4, "{p:#?}");
}
