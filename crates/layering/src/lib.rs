//! The walk both layering tests share (`batchless-core`'s and the CLI's): every `.rs` file
//! below a crate's `src`, each one's problems as the crate's own rule finds them, and one
//! failure that lists them all.

use std::path::{Path, PathBuf};

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Panics with every problem `rule` finds in the `.rs` files below `src`. `rule` gets a file's
/// path below `src` as components without `.rs` (`["commands", "jobs", "template"]`) and its
/// text, and returns that file's problems.
pub fn assert_no_violations(src: &Path, rule: impl Fn(&[String], &str) -> Vec<String>) {
    let mut all = Vec::new();
    files(src, &mut all);
    all.sort();
    let mut problems = Vec::new();
    for path in all {
        let rel = path.strip_prefix(src).unwrap();
        let parts: Vec<String> = rel
            .components()
            .map(|c| {
                c.as_os_str()
                    .to_string_lossy()
                    .trim_end_matches(".rs")
                    .to_string()
            })
            .collect();
        let text = std::fs::read_to_string(&path).unwrap();
        for v in rule(&parts, &text) {
            problems.push(format!("{}: {v}", rel.display()));
        }
    }
    assert!(
        problems.is_empty(),
        "layering broken:\n{}",
        problems.join("\n")
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_below_src_is_seen_with_its_components() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let seen = std::cell::RefCell::new(Vec::new());
        assert_no_violations(&src, |parts, text| {
            seen.borrow_mut()
                .push((parts.to_vec(), text.contains("fn files")));
            vec![]
        });
        assert_eq!(seen.into_inner(), vec![(vec!["lib".to_string()], true)]);
    }

    #[test]
    #[should_panic(expected = "layering broken:\nlib.rs: found one")]
    fn a_problem_fails_naming_its_file() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        assert_no_violations(&src, |_, _| vec!["found one".into()]);
    }
}
