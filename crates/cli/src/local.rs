//! `batchless local up|down|status`: a thin wrapper around the Python launcher.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, Result};

use crate::args::LocalArgs;
use crate::context;

pub const DEFAULT_NAME: &str = "dev";

/// The interpreter: the repository's venv, else `python3` from PATH.
pub fn python(root: &Path) -> (PathBuf, bool) {
    let venv = root.join(".venv").join("bin").join("python");
    if venv.is_file() {
        (venv, true)
    } else {
        (PathBuf::from("python3"), false)
    }
}

/// The launcher's arguments: `local/replica.py <verb> --name NAME [--time-scale X] [extra...]`.
pub fn launcher_args(root: &Path, args: &LocalArgs, name: &str) -> Vec<String> {
    let mut out = vec![
        root.join("local").join("replica.py").display().to_string(),
        args.verb.as_str().to_string(),
        "--name".to_string(),
        name.to_string(),
    ];
    if let Some(x) = args.time_scale {
        out.push("--time-scale".to_string());
        out.push(x.to_string());
    }
    out.extend(args.extra.iter().cloned());
    out
}

pub async fn local(stack: Option<&str>, args: LocalArgs) -> Result<ExitCode> {
    let root = context::repo_root()?;
    let name = args.name.as_deref().or(stack).unwrap_or(DEFAULT_NAME);
    let (python, in_venv) = python(&root);
    if !in_venv {
        eprintln!(
            "warning: no {}; using python3 from PATH (run `make setup` for the pinned environment)",
            root.join(".venv/bin/python").display()
        );
    }
    let mut child = tokio::process::Command::new(&python)
        .args(launcher_args(&root, &args, name))
        .current_dir(&root)
        .spawn()
        .with_context(|| format!("starting {}", python.display()))?;
    // Ctrl-C reaches the launcher too (same process group): let it shut down and report.
    let status = loop {
        tokio::select! {
            status = child.wait() => break status.context("waiting for the launcher")?,
            _ = tokio::signal::ctrl_c() => continue,
        }
    };
    Ok(match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        None => ExitCode::from(130), // killed by a signal
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::LocalVerb;

    #[test]
    fn launcher_arguments() {
        let args = LocalArgs {
            verb: LocalVerb::Up,
            name: None,
            time_scale: Some(0.25),
            extra: vec!["--port".into(), "4599".into()],
        };
        assert_eq!(
            launcher_args(Path::new("/repo"), &args, "ci"),
            vec![
                "/repo/local/replica.py",
                "up",
                "--name",
                "ci",
                "--time-scale",
                "0.25",
                "--port",
                "4599"
            ]
        );
        let args = LocalArgs {
            verb: LocalVerb::Status,
            name: None,
            time_scale: None,
            extra: vec![],
        };
        assert_eq!(
            launcher_args(Path::new("/repo"), &args, "dev"),
            vec!["/repo/local/replica.py", "status", "--name", "dev"]
        );
    }

    #[test]
    fn the_venv_interpreter_is_preferred() {
        let root = std::env::temp_dir().join(format!("batchless-venv-{}", std::process::id()));
        assert_eq!(python(&root), (PathBuf::from("python3"), false));
        std::fs::create_dir_all(root.join(".venv/bin")).unwrap();
        std::fs::write(root.join(".venv/bin/python"), "").unwrap();
        assert_eq!(python(&root), (root.join(".venv/bin/python"), true));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
